//! A self-signed TLS certificate for the federation listener when none is
//! configured: good for development and test networks, where the peers turn
//! certificate verification off. Generated once per host name and kept, so
//! restarts present the same certificate.

use std::{
    io::{ErrorKind, Write},
    path::Path,
};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use ruma::ServerName;

use crate::{Error, Result};

/// A certificate and its private key, PEM-encoded (PKCS#8 key).
#[derive(Clone)]
pub struct TlsIdentity {
    pub certificate_pem: String,
    pub private_key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

/// The self-signed certificate for `server_name`'s host, read from `dir`
/// (`<host>.crt`, `<host>.key`), or generated and written there first. The
/// file names carry the host so a change of server name gets a fresh
/// certificate instead of one for the old name.
pub fn self_signed(dir: &Path, server_name: &ServerName) -> Result<TlsIdentity> {
    // Certificates name IPv6 addresses without the URL brackets.
    let host = server_name
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let certificate_path = dir.join(format!("{host}.crt"));
    let key_path = dir.join(format!("{host}.key"));
    let failed = |path: &Path, reason: String| Error::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let read = |path: &Path| match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed(path, e.to_string())),
    };
    if let (Some(certificate_pem), Some(private_key_pem)) =
        (read(&certificate_path)?, read(&key_path)?)
    {
        return Ok(TlsIdentity {
            certificate_pem,
            private_key_pem,
        });
    }

    let generated = generate(host).map_err(|e| failed(&certificate_path, e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e.to_string()))?;
    // The key first: a certificate without its key is useless, and a crash
    // between the two writes leads to a fresh pair on the next start.
    write_atomically(&key_path, &generated.private_key_pem, 0o600)
        .map_err(|e| failed(&key_path, e.to_string()))?;
    write_atomically(&certificate_path, &generated.certificate_pem, 0o644)
        .map_err(|e| failed(&certificate_path, e.to_string()))?;
    Ok(generated)
}

fn generate(host: &str) -> Result<TlsIdentity, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![host.to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, host);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let certificate = params.self_signed(&key)?;
    Ok(TlsIdentity {
        certificate_pem: certificate.pem(),
        private_key_pem: key.serialize_pem(),
    })
}

/// Writes `contents` to a temporary file beside `path` and renames it into
/// place, so a reader never sees half a file.
fn write_atomically(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let mut file = options.open(&temporary)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
