//! Key documents: ours, a recorded Synapse one, the spec's signing test
//! vectors, tampering, and notary countersignatures.

use std::collections::BTreeMap;

use base64::{
    Engine, alphabet,
    engine::{
        DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD_NO_PAD,
    },
};

use federation::{
    Error,
    server_keys::{MAX_KEY_TRUST, add_notary_signature, our_server_keys, verify_server_keys},
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, UInt,
    api::federation::discovery::OldVerifyKey,
    serde::Base64,
    signatures::{PublicKeyMap, PublicKeySet, verify_json},
};

use crate::support::{key_from_seed, new_key, server_name};

fn ms(millis: u64) -> MilliSecondsSinceUnixEpoch {
    MilliSecondsSinceUnixEpoch(UInt::new(millis).unwrap())
}

fn object(json: &str) -> CanonicalJsonObject {
    serde_json::from_str(json).unwrap()
}

const NOW: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;

/// A key document that Synapse served for `localhost:8800`, from
/// gomatrixserverlib's keyring_test.go (it still has the long-removed
/// `tls_fingerprints`, which must not matter).
const SYNAPSE_KEYS: &str = r#"{
    "old_verify_keys": {
        "ed25519:old": {
            "expired_ts": 929059200,
            "key": "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik"
        }
    },
    "server_name": "localhost:8800",
    "signatures": {
        "localhost:8800": {
            "ed25519:a_Obwu": "xkr4Z49ODoQnRi//ePfXlt8Q68vzd+DkzBNCt60NcwnLjNREx0qVQrw1iTFSoxkgGtz30NDkmyffDrCrmX5KBw"
        }
    },
    "tls_fingerprints": [{ "sha256": "I2ohBnqpb5m3HldWFwyA10WdjqDksukiKVUdZ690WzM" }],
    "valid_until_ts": 1493142432964,
    "verify_keys": {
        "ed25519:a_Obwu": { "key": "2UwTWD4+tgTgENV7znGGNqhAOGY+BW1mRAnC6W6FBQg" }
    }
}"#;

#[test]
fn our_document_verifies_and_says_what_it_should() {
    let (_dir, key) = new_key();
    let name = server_name("teatime.example:8448");
    let old = BTreeMap::from([(
        "ed25519:retired".try_into().unwrap(),
        OldVerifyKey::new(ms(NOW - HOUR), Base64::new(vec![7; 32])),
    )]);
    let document = our_server_keys(name, &key, old, ms(NOW + 24 * HOUR)).unwrap();

    let json = serde_json::to_value(&document).unwrap();
    assert_eq!(json["server_name"], "teatime.example:8448");
    assert_eq!(
        json["verify_keys"][key.key_id()]["key"],
        key.public_key_base64()
    );
    assert_eq!(
        json["old_verify_keys"]["ed25519:retired"]["expired_ts"],
        NOW - HOUR
    );
    assert_eq!(json["valid_until_ts"], NOW + 24 * HOUR);
    assert!(json["signatures"]["teatime.example:8448"][key.key_id()].is_string());

    let checked = verify_server_keys(document.clone(), name, ms(NOW)).unwrap();
    assert_eq!(checked.server_name, name);
    assert!(!checked.expired);
    assert_eq!(checked.valid_until_ts, ms(NOW + 24 * HOUR));
    assert_eq!(checked.trusted_until, ms(NOW + 24 * HOUR));
    assert_eq!(checked.old_verify_keys.len(), 1);
    assert_eq!(checked.document, document);
    assert_eq!(
        checked.public_keys(),
        PublicKeySet::from([(
            key.key_id(),
            Base64::parse(key.public_key_base64()).unwrap()
        )])
    );
}

#[test]
fn a_synapse_document_verifies_and_its_expiry_is_reported() {
    let name = server_name("localhost:8800");
    let before_expiry =
        verify_server_keys(object(SYNAPSE_KEYS), name, ms(1_493_142_000_000)).unwrap();
    assert!(!before_expiry.expired);
    assert_eq!(before_expiry.trusted_until, ms(1_493_142_432_964));
    assert_eq!(
        before_expiry.verify_keys[<&ruma::ServerSigningKeyId>::try_from("ed25519:a_Obwu").unwrap()]
            .encode(),
        "2UwTWD4+tgTgENV7znGGNqhAOGY+BW1mRAnC6W6FBQg"
    );
    assert_eq!(before_expiry.old_verify_keys.len(), 1);

    let today = verify_server_keys(object(SYNAPSE_KEYS), name, ms(NOW)).unwrap();
    assert!(today.expired);
}

#[test]
fn trust_is_capped_at_seven_days() {
    let (_dir, key) = new_key();
    let name = server_name("teatime.example");
    let document = our_server_keys(name, &key, BTreeMap::new(), ms(NOW + 365 * 24 * HOUR)).unwrap();
    let checked = verify_server_keys(document, name, ms(NOW)).unwrap();
    let seven_days = u64::try_from(MAX_KEY_TRUST.as_millis()).unwrap();
    assert_eq!(seven_days, 7 * 24 * HOUR);
    assert_eq!(checked.trusted_until, ms(NOW + seven_days));
    assert_eq!(checked.valid_until_ts, ms(NOW + 365 * 24 * HOUR));
}

#[test]
fn documents_for_other_servers_or_without_keys_are_refused() {
    let server_keys_error = |result: federation::Result<_>| {
        assert!(
            matches!(result, Err(Error::ServerKeys { .. })),
            "{result:?}"
        );
    };
    server_keys_error(verify_server_keys(
        object(SYNAPSE_KEYS),
        server_name("localhost:8801"),
        ms(NOW),
    ));

    let mut unsigned = object(SYNAPSE_KEYS);
    unsigned.insert(
        "signatures".into(),
        CanonicalJsonValue::Object(Default::default()),
    );
    server_keys_error(verify_server_keys(
        unsigned,
        server_name("localhost:8800"),
        ms(NOW),
    ));

    let mut no_keys = object(SYNAPSE_KEYS);
    no_keys.insert(
        "verify_keys".into(),
        CanonicalJsonValue::Object(Default::default()),
    );
    server_keys_error(verify_server_keys(
        no_keys,
        server_name("localhost:8800"),
        ms(NOW),
    ));

    server_keys_error(verify_server_keys(
        object(r#"{"server_name": "localhost:8800"}"#),
        server_name("localhost:8800"),
        ms(NOW),
    ));
}

#[test]
fn tampered_or_foreign_signed_documents_are_refused() {
    let name = server_name("localhost:8800");
    let bad_signature = |result: federation::Result<_>| {
        assert!(matches!(result, Err(Error::Verification(_))), "{result:?}");
    };

    let mut extended = object(SYNAPSE_KEYS);
    extended.insert(
        "valid_until_ts".into(),
        CanonicalJsonValue::Integer(UInt::MAX.into()),
    );
    bad_signature(verify_server_keys(extended, name, ms(NOW)));

    // A key swapped in under the signing key's id.
    let (_dir, attacker) = new_key();
    let mut swapped = object(SYNAPSE_KEYS);
    swapped.insert(
        "verify_keys".into(),
        object(&format!(
            r#"{{"ed25519:a_Obwu": {{"key": "{}"}}}}"#,
            attacker.public_key_base64()
        ))
        .into(),
    );
    bad_signature(verify_server_keys(swapped, name, ms(NOW)));

    // Signed by the server name, but with a key the document does not list.
    let mut foreign = our_server_keys(name, &attacker, BTreeMap::new(), ms(NOW + HOUR)).unwrap();
    foreign.insert(
        "verify_keys".into(),
        object(SYNAPSE_KEYS)["verify_keys"].clone(),
    );
    bad_signature(verify_server_keys(foreign, name, ms(NOW)));
}

#[test]
fn notaries_add_their_signature_without_breaking_the_servers() {
    let origin = server_name("localhost:8800");
    let (_dir, notary_key) = new_key();
    let notary = server_name("notary.example");
    let mut document = verify_server_keys(object(SYNAPSE_KEYS), origin, ms(NOW))
        .unwrap()
        .document;
    add_notary_signature(&mut document, notary, &notary_key).unwrap();

    let signatures = serde_json::to_value(&document["signatures"]).unwrap();
    assert!(signatures["localhost:8800"]["ed25519:a_Obwu"].is_string());
    assert!(signatures["notary.example"][notary_key.key_id()].is_string());

    // The origin's own signature still checks out, notary or not...
    verify_server_keys(document.clone(), origin, ms(NOW)).unwrap();
    // ...and so does the notary's, with its key.
    let keys: PublicKeyMap = BTreeMap::from([
        (
            "localhost:8800".to_owned(),
            PublicKeySet::from([(
                "ed25519:a_Obwu".to_owned(),
                Base64::parse("2UwTWD4+tgTgENV7znGGNqhAOGY+BW1mRAnC6W6FBQg").unwrap(),
            )]),
        ),
        (
            "notary.example".to_owned(),
            PublicKeySet::from([(
                notary_key.key_id(),
                Base64::parse(notary_key.public_key_base64()).unwrap(),
            )]),
        ),
    ]);
    verify_json(&keys, &document).unwrap();
}

#[test]
fn signing_matches_the_spec_test_vectors() {
    // Appendices, "Cryptographic Test Vectors": seed, server "domain", key
    // "ed25519:1". The spec's seed has stray trailing bits in its last
    // base64 character, which strict decoders (ours) refuse: re-encode it.
    let lenient = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let seed = lenient
        .decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
        .unwrap();
    let (_dir, key) = key_from_seed("1", &STANDARD_NO_PAD.encode(seed));
    let domain = server_name("domain");
    for (json, signature) in [
        (
            "{}",
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ",
        ),
        (
            r#"{"one": 1, "two": "Two"}"#,
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw",
        ),
    ] {
        let mut document = object(json);
        add_notary_signature(&mut document, domain, &key).unwrap();
        let signed = serde_json::to_value(&document).unwrap();
        assert_eq!(
            signed["signatures"]["domain"]["ed25519:1"], signature,
            "{json}"
        );
    }
}
