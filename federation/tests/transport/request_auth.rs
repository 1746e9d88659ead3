//! X-Matrix: known answers from Synapse, round trips, and every way a
//! request can fail to verify.

use federation::{
    Error,
    request_auth::{RequestParts, authorization_header, parse_authorization, verify_request},
};
use http::Method;
use ruma::signatures::PublicKeySet;

use crate::support::{new_key, server_name, synapse_test_key};

// Requests a Synapse made under sytest, recorded in gomatrixserverlib's
// fclient/request_test.go with the signatures for the key in
// `synapse_test_key` (the signed JSON includes `destination`).
const SYNAPSE_GET_URI: &str =
    "/_matrix/federation/v1/query/directory?room_alias=%23test%3Alocalhost%3A44033";
const SYNAPSE_GET_HEADER: &str = "X-Matrix origin=\"localhost:8800\",key=\"ed25519:a_Obwu\",sig=\"7vt4vP/w8zYB3Zg77nuTPwie3TxEy2OHZQMsSa4nsXZzL4/qw+DguXbyMy3BF77XvSJmBt+Gw+fU6T4HId7fBg\",destination=\"localhost:44033\"";
const SYNAPSE_PUT_URI: &str = "/_matrix/federation/v1/send/1493385816575/";
const SYNAPSE_PUT_BODY: &str = concat!(
    r#"{"edus":[{"content":{"device_id":"YHRUBZNPFS","#,
    r#""keys":{"device_id":"YHRUBZNPFS","device_keys":{},"user_id":"#,
    r#""@ANON-22:localhost:8800"},"prev_id":[],"stream_id":30,"user_id":"#,
    r#""@ANON-22:localhost:8800"},"edu_type":"m.device_list_update"}],"origin""#,
    r#":"localhost:8800","origin_server_ts":1493385822396,"pdu_failures":[],"#,
    r#""pdus":[]}"#
);
const SYNAPSE_PUT_SIG: &str =
    "+hmW6UjEXx7vMt2+MXO/EImSfdEYdBsZEOmpiz3evYktAgGNpGuNMBYXIA969WGubmceREKA/r1phasUFHBpDg";

fn synapse_keys() -> PublicKeySet {
    let (_dir, key) = synapse_test_key();
    PublicKeySet::from([(
        key.key_id(),
        ruma::serde::Base64::parse(key.public_key_base64()).unwrap(),
    )])
}

#[test]
fn signatures_match_synapse() {
    let (_dir, key) = synapse_test_key();
    let origin = server_name("localhost:8800");
    let destination = server_name("localhost:44033");

    let get = authorization_header(
        &key,
        origin,
        destination,
        RequestParts {
            method: &Method::GET,
            uri: SYNAPSE_GET_URI,
            body: b"",
        },
    )
    .unwrap();
    let expected = parse_authorization(SYNAPSE_GET_HEADER).unwrap();
    assert_eq!(
        parse_authorization(&get).unwrap().sig,
        expected.sig,
        "{get}"
    );

    let put = authorization_header(
        &key,
        origin,
        destination,
        RequestParts {
            method: &Method::PUT,
            uri: SYNAPSE_PUT_URI,
            body: SYNAPSE_PUT_BODY.as_bytes(),
        },
    )
    .unwrap();
    assert_eq!(
        parse_authorization(&put).unwrap().sig.encode(),
        SYNAPSE_PUT_SIG,
        "{put}"
    );
}

#[test]
fn synapse_requests_verify() {
    let auth = parse_authorization(SYNAPSE_GET_HEADER).unwrap();
    assert_eq!(auth.origin, "localhost:8800");
    verify_request(
        &auth,
        RequestParts {
            method: &Method::GET,
            uri: SYNAPSE_GET_URI,
            body: b"",
        },
        server_name("localhost:44033"),
        &synapse_keys(),
    )
    .unwrap();

    let put_header = format!(
        "X-Matrix origin=\"localhost:8800\",key=\"ed25519:a_Obwu\",sig=\"{SYNAPSE_PUT_SIG}\",destination=\"localhost:44033\""
    );
    verify_request(
        &parse_authorization(&put_header).unwrap(),
        RequestParts {
            method: &Method::PUT,
            uri: SYNAPSE_PUT_URI,
            body: SYNAPSE_PUT_BODY.as_bytes(),
        },
        server_name("localhost:44033"),
        &synapse_keys(),
    )
    .unwrap();
}

#[test]
fn our_header_follows_the_compatibility_advice() {
    let (_dir, key) = new_key();
    let header = authorization_header(
        &key,
        server_name("origin.example"),
        server_name("destination.example:8448"),
        RequestParts {
            method: &Method::GET,
            uri: "/_matrix/federation/v1/version",
            body: b"",
        },
    )
    .unwrap();
    // One space after the scheme, lower-case names, no backslashes, no
    // whitespace around commas; values with ':' or '/' quoted.
    let params = header.strip_prefix("X-Matrix ").unwrap();
    assert!(!params.contains(' ') && !params.contains('\\'), "{header}");
    let mut names: Vec<&str> = params
        .split(',')
        .map(|param| param.split('=').next().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["destination", "key", "origin", "sig"], "{header}");
    assert!(
        params.contains("destination=\"destination.example:8448\""),
        "{header}"
    );
    assert!(
        params.contains(&format!("key=\"{}\"", key.key_id())),
        "{header}"
    );
}

/// A signed PUT from `origin.example` to `dest.example`, with the sender's keys.
struct Signed {
    header: String,
    keys: PublicKeySet,
    _dir: tempfile::TempDir,
}

const URI: &str = "/_matrix/federation/v2/send_join/!room:dest.example/$event?omit_members=true";
const BODY: &[u8] = br#"{"content":{"membership":"join"},"type":"m.room.member"}"#;

fn signed_put() -> Signed {
    let (dir, key) = new_key();
    let header = authorization_header(
        &key,
        server_name("origin.example"),
        server_name("dest.example"),
        RequestParts {
            method: &Method::PUT,
            uri: URI,
            body: BODY,
        },
    )
    .unwrap();
    let keys = PublicKeySet::from([(
        key.key_id(),
        ruma::serde::Base64::parse(key.public_key_base64()).unwrap(),
    )]);
    Signed {
        header,
        keys,
        _dir: dir,
    }
}

fn verify(
    signed: &Signed,
    header: &str,
    method: &Method,
    uri: &str,
    body: &[u8],
    us: &str,
) -> federation::Result<()> {
    verify_request(
        &parse_authorization(header)?,
        RequestParts { method, uri, body },
        server_name(us),
        &signed.keys,
    )
}

#[test]
fn a_signed_request_verifies() {
    let signed = signed_put();
    verify(
        &signed,
        &signed.header,
        &Method::PUT,
        URI,
        BODY,
        "dest.example",
    )
    .unwrap();
    // The same JSON with other whitespace and key order is the same content.
    let reformatted = br#"{ "type": "m.room.member", "content": { "membership": "join" } }"#;
    verify(
        &signed,
        &signed.header,
        &Method::PUT,
        URI,
        reformatted,
        "dest.example",
    )
    .unwrap();
}

#[test]
fn tampering_breaks_the_signature() {
    let signed = signed_put();
    let bad_signature = |result: federation::Result<()>| {
        assert!(matches!(result, Err(Error::Verification(_))), "{result:?}");
    };
    let other_body = br#"{"content":{"membership":"leave"},"type":"m.room.member"}"#;
    bad_signature(verify(
        &signed,
        &signed.header,
        &Method::PUT,
        URI,
        other_body,
        "dest.example",
    ));
    bad_signature(verify(
        &signed,
        &signed.header,
        &Method::PUT,
        URI,
        b"",
        "dest.example",
    ));
    let other_uri = URI.replace("omit_members=true", "omit_members=false");
    bad_signature(verify(
        &signed,
        &signed.header,
        &Method::PUT,
        &other_uri,
        BODY,
        "dest.example",
    ));
    bad_signature(verify(
        &signed,
        &signed.header,
        &Method::POST,
        URI,
        BODY,
        "dest.example",
    ));

    // Another origin claimed with the same signature.
    let other_origin = signed
        .header
        .replace("origin=origin.example", "origin=evil.example");
    assert_ne!(other_origin, signed.header);
    bad_signature(verify(
        &signed,
        &other_origin,
        &Method::PUT,
        URI,
        BODY,
        "dest.example",
    ));

    // The key id the sender named, but another key behind it.
    let (_dir, impostor) = new_key();
    let mut wrong_key = signed_put();
    wrong_key.keys = signed
        .keys
        .keys()
        .map(|id| {
            let key = ruma::serde::Base64::parse(impostor.public_key_base64()).unwrap();
            (id.clone(), key)
        })
        .collect();
    bad_signature(verify(
        &wrong_key,
        &signed.header,
        &Method::PUT,
        URI,
        BODY,
        "dest.example",
    ));
}

#[test]
fn requests_for_other_servers_are_refused() {
    let signed = signed_put();
    let result = verify(
        &signed,
        &signed.header,
        &Method::PUT,
        URI,
        BODY,
        "other.example",
    );
    assert!(
        matches!(&result, Err(Error::WrongDestination { destination }) if destination == "dest.example"),
        "{result:?}"
    );

    // Without `destination` in the header (older senders) the signature is
    // checked as if made for us, so a request signed for another server fails.
    let without_destination: String = signed
        .header
        .split(',')
        .filter(|param| !param.contains("destination="))
        .collect::<Vec<_>>()
        .join(",");
    let without_destination = if without_destination.starts_with("X-Matrix") {
        without_destination
    } else {
        format!("X-Matrix {without_destination}")
    };
    assert!(
        parse_authorization(&without_destination)
            .unwrap()
            .destination
            .is_none()
    );
    verify(
        &signed,
        &without_destination,
        &Method::PUT,
        URI,
        BODY,
        "dest.example",
    )
    .unwrap();
    let result = verify(
        &signed,
        &without_destination,
        &Method::PUT,
        URI,
        BODY,
        "other.example",
    );
    assert!(matches!(result, Err(Error::Verification(_))), "{result:?}");
}

#[test]
fn unknown_keys_are_named() {
    let mut signed = signed_put();
    let key_id = signed.keys.keys().next().unwrap().clone();
    signed.keys.clear();
    let result = verify(
        &signed,
        &signed.header,
        &Method::PUT,
        URI,
        BODY,
        "dest.example",
    );
    assert!(
        matches!(&result, Err(Error::UnknownKey { server, key_id: id }) if server == "origin.example" && *id == key_id),
        "{result:?}"
    );
}

#[test]
fn bodies_and_targets_that_cannot_be_signed_are_invalid_requests() {
    let signed = signed_put();
    for (uri, body) in [
        (URI, b"not json".as_slice()),
        (URI, br#"{"float":1.5}"#.as_slice()),
        ("https://dest.example/_matrix/x", BODY),
        ("relative/path", BODY),
    ] {
        let result = verify(
            &signed,
            &signed.header,
            &Method::PUT,
            uri,
            body,
            "dest.example",
        );
        assert!(
            matches!(result, Err(Error::InvalidRequest(_))),
            "{uri} {result:?}"
        );
    }
    let (_dir, key) = new_key();
    let result = authorization_header(
        &key,
        server_name("origin.example"),
        server_name("dest.example"),
        RequestParts {
            method: &Method::PUT,
            uri: URI,
            body: b"{oops",
        },
    );
    assert!(
        matches!(result, Err(Error::InvalidRequest(_))),
        "{result:?}"
    );
}

#[test]
fn headers_are_parsed_by_the_spec_rules() {
    let parsed = |header: &str| parse_authorization(header);
    let sig = "dGVzdA";

    // Bare tokens, any name case, any order, spaces and tabs around commas,
    // unknown parameters (even holding quoted commas) ignored.
    let auth = parsed(&format!(
        "X-Matrix ORIGIN=origin.example , Key=\"ed25519:k1\",\textra=\"a,b=c\",sig={sig},destination=\"dest.example:8448\""
    ))
    .unwrap();
    assert_eq!(auth.origin, "origin.example");
    assert_eq!(auth.key, "ed25519:k1");
    assert_eq!(
        auth.destination.as_deref().map(|d| d.as_str()),
        Some("dest.example:8448")
    );
    assert_eq!(auth.sig.encode(), sig);
    // Older senders leave values with colons unquoted (the spec asks
    // recipients to accept that).
    let auth = parsed(&format!(
        "X-Matrix origin=origin.example:8448,key=ed25519:k1,sig={sig},destination=dest.example:8448"
    ))
    .unwrap();
    assert_eq!(auth.origin, "origin.example:8448");
    assert_eq!(auth.key, "ed25519:k1");
    // The scheme name is case-insensitive too, and escapes are undone.
    let auth = parsed(&format!(
        "x-matrix origin=\"origin\\.example\",key=\"ed25519:k1\",sig=\"{sig}\""
    ))
    .unwrap();
    assert_eq!(auth.origin, "origin.example");

    for malformed in [
        String::new(),
        "X-Matrix".to_owned(),
        "Bearer abc".to_owned(),
        format!("X-Matrix key=\"ed25519:k1\",sig={sig}"),
        format!("X-Matrix origin=o.example,sig={sig}"),
        "X-Matrix origin=o.example,key=\"ed25519:k1\"".to_owned(),
        format!("X-Matrix origin=o.example,origin=p.example,key=\"ed25519:k1\",sig={sig}"),
        format!("X-Matrix origin=\"o.example,key=\"ed25519:k1\",sig={sig}"),
        format!("X-Matrix origin=\"not a server\",key=\"ed25519:k1\",sig={sig}"),
        format!("X-Matrix origin=o.example,key=\"ed25519:k-1\",sig={sig}"),
        "X-Matrix origin=o.example,key=\"ed25519:k1\",sig=\"not base64!\"".to_owned(),
    ] {
        let result = parsed(&malformed);
        assert!(
            matches!(result, Err(Error::MalformedAuthorization(_))),
            "{malformed:?}: {result:?}"
        );
    }
}
