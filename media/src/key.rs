use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

const CONTENT_PREFIX: &str = "content";
const UPLOAD_PREFIX: &str = "uploads";
const STAGING_PREFIX: &str = "staging";
const MAX_UPLOAD_ID_LEN: usize = 128;

/// The key of a stored object, in one of the layouts described in the crate
/// docs. Every constructor validates it: segments are `[A-Za-z0-9_-]` under a
/// fixed prefix, so a key can never name anything outside the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// `content/<h0h1>/<h2h3>/<sha256>` for a lowercase hex SHA-256.
    pub fn content(sha256_hex: &str) -> Result<Self> {
        let is_sha256 = sha256_hex.len() == 64
            && sha256_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_sha256 {
            return Err(Error::InvalidKey(sha256_hex.to_owned()));
        }
        Ok(Self(format!(
            "{CONTENT_PREFIX}/{}/{}/{sha256_hex}",
            &sha256_hex[..2],
            &sha256_hex[2..4]
        )))
    }

    /// `uploads/<id>` for an id of 1 to 128 characters `[A-Za-z0-9_-]`.
    pub fn upload(id: &str) -> Result<Self> {
        if !is_segment(id) || id.len() > MAX_UPLOAD_ID_LEN {
            return Err(Error::InvalidKey(id.to_owned()));
        }
        Ok(Self(format!("{UPLOAD_PREFIX}/{id}")))
    }

    /// A fresh `staging/<random>` key for an upload whose hash is not known yet.
    pub(crate) fn staging() -> Self {
        Self(format!(
            "{STAGING_PREFIX}/{}",
            hex::encode(rand::random::<[u8; 16]>())
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is an `uploads/` key, the only kind clients write directly.
    pub fn is_upload(&self) -> bool {
        self.0
            .strip_prefix(UPLOAD_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The path segments, for the filesystem store to join one by one.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl FromStr for ObjectKey {
    type Err = Error;

    /// Accepts exactly the keys [`ObjectKey::content`] and
    /// [`ObjectKey::upload`] build.
    fn from_str(key: &str) -> Result<Self> {
        let invalid = || Error::InvalidKey(key.to_owned());
        match key.split('/').collect::<Vec<_>>().as_slice() {
            [CONTENT_PREFIX, _, _, hash] => {
                let parsed = Self::content(hash).map_err(|_| invalid())?;
                if parsed.0 == key {
                    Ok(parsed)
                } else {
                    Err(invalid())
                }
            }
            [UPLOAD_PREFIX, id] => Self::upload(id).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
