//! Self-signed certificates: kept and reused, and valid for their name when
//! a client trusts them.

use poem::{Route, get, handler};

use crate::support::{identity, serve_https};

#[test]
fn certificates_are_stored_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first = identity(dir.path(), "teatime.example:8448");
    assert!(
        first
            .certificate_pem
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(
        first
            .private_key_pem
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let key_file = dir.path().join("teatime.example.key");
    assert!(dir.path().join("teatime.example.crt").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Another start, even with another port, presents the same certificate.
    let again = identity(dir.path(), "teatime.example");
    assert_eq!(again.certificate_pem, first.certificate_pem);
    assert_eq!(again.private_key_pem, first.private_key_pem);

    // Another name gets its own; IPv6 names are stored without brackets.
    let other = identity(dir.path(), "[::1]:8448");
    assert_ne!(other.certificate_pem, first.certificate_pem);
    assert!(dir.path().join("::1.crt").is_file());

    // A lost key means a new pair, not a certificate without its key.
    std::fs::remove_file(&key_file).unwrap();
    let renewed = identity(dir.path(), "teatime.example");
    assert_ne!(renewed.certificate_pem, first.certificate_pem);
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        renewed.private_key_pem
    );
}

#[handler]
fn hello() -> &'static str {
    "hello"
}

/// GETs `https://{host}:{port}/` trusting only `certificate_pem`, with
/// verification on.
async fn get_trusting(certificate_pem: &str, host: &str, port: u16) -> reqwest::Result<String> {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(certificate_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    client
        .get(format!("https://{host}:{port}/"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

#[tokio::test]
async fn a_trusted_certificate_is_valid_for_its_host_name_or_ip_address() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["localhost", "127.0.0.1:8448"] {
        let identity = identity(dir.path(), name);
        let port = serve_https(&identity, Route::new().at("/", get(hello))).await;
        let host = name.split(':').next().unwrap();
        let answer = get_trusting(&identity.certificate_pem, host, port).await;
        assert_eq!(answer.unwrap(), "hello", "{name}");
    }

    // And for no other name.
    let other = identity(dir.path(), "other.example");
    let port = serve_https(&other, Route::new().at("/", get(hello))).await;
    let result = get_trusting(&other.certificate_pem, "localhost", port).await;
    assert!(result.is_err(), "{result:?}");
}
