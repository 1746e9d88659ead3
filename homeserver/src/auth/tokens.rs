//! Access tokens (HS256 JWTs naming a device session) and refresh tokens
//! (random strings stored only as hashes).

use std::{io::Write, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What an access token says about its bearer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The device id.
    pub dev: String,
    /// The login session; ends when the device is deleted or logged in again.
    pub sid: String,
    /// The refresh generation the token belongs to.
    pub generation: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds; absent for tokens issued without a refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

/// Why an access token was refused before any session lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenRejection {
    /// Not a token this server signed.
    Invalid,
    /// Signed by us but past its expiry; carries the session it belonged to.
    Expired { sid: String },
}

/// The key that signs and verifies access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// File in the data dir holding the generated token secret.
const SECRET_FILE: &str = "token_secret";

impl TokenKeys {
    /// From the configured secret, or the one kept in `data_dir` (generated on first start).
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<Self> {
        let secret = match configured {
            Some(secret) => secret.as_bytes().to_vec(),
            None => load_or_create_secret(&data_dir.join(SECRET_FILE))?,
        };
        Ok(Self::from_secret(&secret))
    }

    fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked by `verify` itself: an expired token still names its
        // session, which decides whether the client is told `soft_logout`.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a token.
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("token signing failed: {e}")))
    }

    /// Checks signature and expiry.
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<Claims, TokenRejection> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenRejection::Invalid)?
            .claims;
        match claims.exp {
            Some(exp) if exp <= now_secs => Err(TokenRejection::Expired { sid: claims.sid }),
            _ => Ok(claims),
        }
    }
}

fn load_or_create_secret(path: &Path) -> Result<Vec<u8>> {
    let io_error =
        |e: std::io::Error| Error::Internal(format!("token secret {}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => URL_SAFE_NO_PAD.decode(text.trim()).map_err(|e| {
            Error::Internal(format!("token secret {} is corrupt: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_bytes::<32>();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io_error)?;
            file.write_all(URL_SAFE_NO_PAD.encode(secret).as_bytes())
                .map_err(io_error)?;
            file.sync_all().map_err(io_error)?;
            Ok(secret.to_vec())
        }
        Err(e) => Err(io_error(e)),
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A fresh random identifier: 128 bits, URL-safe.
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// A fresh device id: ten upper-case letters, as other homeservers make them.
pub fn random_device_id() -> String {
    random_bytes::<10>()
        .iter()
        .map(|b| char::from(b'A' + b % 26))
        .collect()
}

/// A fresh refresh token.
pub fn new_refresh_token() -> String {
    format!("ttr_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// How a refresh token is stored: only its SHA-256, so a database leak yields no usable token.
pub fn refresh_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<i64>) -> Claims {
        Claims {
            sub: "@a:localhost".into(),
            dev: "DEV".into(),
            sid: "s1".into(),
            generation: 0,
            iat: 100,
            exp,
        }
    }

    #[test]
    fn signed_tokens_verify_and_expire() {
        let keys = TokenKeys::from_secret(b"secret");
        let token = keys.sign(&claims(Some(200))).unwrap();
        assert_eq!(keys.verify(&token, 150).unwrap().sid, "s1");
        assert_eq!(
            keys.verify(&token, 200).unwrap_err(),
            TokenRejection::Expired { sid: "s1".into() }
        );
        let forever = keys.sign(&claims(None)).unwrap();
        assert!(keys.verify(&forever, i64::MAX).is_ok());
    }

    #[test]
    fn tokens_from_another_key_or_tampered_are_invalid() {
        let ours = TokenKeys::from_secret(b"secret");
        let theirs = TokenKeys::from_secret(b"other");
        let token = theirs.sign(&claims(None)).unwrap();
        assert_eq!(ours.verify(&token, 0).unwrap_err(), TokenRejection::Invalid);
        let mut tampered = ours.sign(&claims(None)).unwrap();
        tampered.insert(tampered.len() / 2, 'x');
        assert_eq!(
            ours.verify(&tampered, 0).unwrap_err(),
            TokenRejection::Invalid
        );
        assert_eq!(
            ours.verify("syt_not_a_jwt", 0).unwrap_err(),
            TokenRejection::Invalid
        );
    }

    #[test]
    fn secret_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(&dir.path().join(SECRET_FILE)).unwrap();
        let second = load_or_create_secret(&dir.path().join(SECRET_FILE)).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(first, second);
    }

    #[test]
    fn ids_have_their_shapes() {
        let device = random_device_id();
        assert_eq!(device.len(), 10);
        assert!(device.chars().all(|c| c.is_ascii_uppercase()));
        assert_ne!(random_id(), random_id());
        let token = new_refresh_token();
        assert_ne!(refresh_token_hash(&token), token);
    }
}
