//! The server's ed25519 signing key: generated on first use and kept in a
//! file as `ed25519 <version> <unpadded base64 PKCS#8>` (Synapse's format).

use std::{io::Write, path::Path};

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use ruma::signatures::Ed25519KeyPair;

use crate::{Error, Result};

/// The key this server signs events and requests with.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads the key at `path`, or generates one and writes it there (mode 0600).
    pub fn load_or_generate(path: &Path) -> Result<Self> {
        let key_error = |reason: String| Error::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(key_error),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = Ed25519KeyPair::generate();
                let version = version_from(&der).map_err(key_error)?;
                let line = format!("ed25519 {version} {}\n", STANDARD_NO_PAD.encode(&*der));
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(|e| key_error(e.to_string()))?;
                file.write_all(line.as_bytes())
                    .map_err(|e| key_error(e.to_string()))?;
                file.sync_all().map_err(|e| key_error(e.to_string()))?;
                Self::parse(&line).map_err(key_error)
            }
            Err(e) => Err(key_error(e.to_string())),
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split_whitespace();
        let (Some("ed25519"), Some(version), Some(der), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected `ed25519 <version> <base64 key>`".into());
        };
        let der = STANDARD_NO_PAD
            .decode(der.trim_end_matches('='))
            .map_err(|e| e.to_string())?;
        let pair = Ed25519KeyPair::from_der(&der, version.to_owned()).map_err(|e| e.to_string())?;
        Ok(Self { pair })
    }

    /// The key pair, for ruma's signing functions.
    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    /// `ed25519:<version>`, as it appears in `signatures` and key queries.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    /// The public key, unpadded base64.
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.pair.public_key())
    }
}

/// A version name derived from the key itself: `a_` and the first public key characters.
fn version_from(der: &[u8]) -> Result<String, String> {
    let pair = Ed25519KeyPair::from_der(der, String::new()).map_err(|e| e.to_string())?;
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key());
    Ok(format!("a_{}", &public[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_kept_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let first = SigningKey::load_or_generate(&path).unwrap();
        let second = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key_base64(), second.public_key_base64());
        assert!(first.key_id().starts_with("ed25519:a_"));
        assert_eq!(first.public_key_base64().len(), 43);
    }

    #[test]
    fn corrupt_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        std::fs::write(&path, "ed25519 v1 not-base64!!").unwrap();
        let err = SigningKey::load_or_generate(&path).unwrap_err();
        assert!(err.to_string().contains("signing.key"), "{err}");
    }
}
