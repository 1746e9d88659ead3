//! The server's ed25519 signing key: generated on first use and kept in a
//! file as `ed25519 <version> <unpadded base64 PKCS#8>`. Synapse's key files
//! have the same shape with the bare 32-byte seed in place of PKCS#8, and
//! load too, so a Synapse server's key can be taken over.

use std::{io::Write, path::Path};

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use ruma::{
    OwnedServerSigningKeyId, ServerSigningKeyId, ServerSigningKeyVersion, SigningKeyAlgorithm,
    signatures::Ed25519KeyPair,
};

use crate::{Error, Result};

/// Length of a bare ed25519 seed, as Synapse stores it.
const SEED_LEN: usize = 32;

/// PKCS#8 v1 (RFC 8410) framing of an ed25519 seed: the DER header that
/// precedes the 32 seed bytes.
const PKCS8_SEED_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The key this server signs events and requests with.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    id: OwnedServerSigningKeyId,
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
        let mut der = STANDARD_NO_PAD
            .decode(der.trim_end_matches('='))
            .map_err(|e| e.to_string())?;
        if der.len() == SEED_LEN {
            der = [PKCS8_SEED_PREFIX.as_slice(), &der].concat();
        }
        // Other servers reject key ids outside `ed25519:[A-Za-z0-9_]+`.
        let version = <&ServerSigningKeyVersion>::try_from(version)
            .map_err(|e| format!("key version {version:?}: {e}"))?;
        let id = ServerSigningKeyId::from_parts(SigningKeyAlgorithm::Ed25519, version);
        let pair =
            Ed25519KeyPair::from_der(&der, version.to_string()).map_err(|e| e.to_string())?;
        Ok(Self { pair, id })
    }

    /// The key pair, for ruma's signing functions.
    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }

    /// `ed25519:<version>`, as it appears in `signatures` and key queries.
    pub fn key_id(&self) -> String {
        self.id.to_string()
    }

    /// [`Self::key_id`] as ruma's identifier.
    pub fn id(&self) -> &ServerSigningKeyId {
        &self.id
    }

    /// The public key, unpadded base64.
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.pair.public_key())
    }
}

/// A version name derived from the key itself: `a_` and the first six
/// letters and digits of the public key (versions allow only `[A-Za-z0-9_]`).
fn version_from(der: &[u8]) -> Result<String, String> {
    let pair = Ed25519KeyPair::from_der(der, String::new()).map_err(|e| e.to_string())?;
    let public = STANDARD_NO_PAD.encode(pair.public_key());
    let name: String = public
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    Ok(format!("a_{name}"))
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
        assert!(
            first.key_id()["ed25519:".len()..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{}",
            first.key_id()
        );
        assert_eq!(first.public_key_base64().len(), 43);
    }

    #[test]
    fn synapse_key_files_load() {
        // A Synapse signing key from gomatrixserverlib's test suite
        // (fclient/request_test.go) with its published public key.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synapse.signing.key");
        std::fs::write(
            &path,
            "ed25519 a_Obwu QJvXAPj0D9MUb1exkD8pIWmCvT1xajlsB8jRYz/G5HE\n",
        )
        .unwrap();
        let key = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(key.key_id(), "ed25519:a_Obwu");
        assert_eq!(
            key.public_key_base64(),
            "2UwTWD4+tgTgENV7znGGNqhAOGY+BW1mRAnC6W6FBQg"
        );
    }

    #[test]
    fn corrupt_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        std::fs::write(&path, "ed25519 v1 not-base64!!").unwrap();
        let err = SigningKey::load_or_generate(&path).unwrap_err();
        assert!(err.to_string().contains("signing.key"), "{err}");

        std::fs::write(
            &path,
            "ed25519 a-b QJvXAPj0D9MUb1exkD8pIWmCvT1xajlsB8jRYz/G5HE\n",
        )
        .unwrap();
        let err = SigningKey::load_or_generate(&path).unwrap_err();
        assert!(err.to_string().contains("a-b"), "{err}");
    }
}
