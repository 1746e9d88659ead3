//! Object keys: the only names a store ever touches, so nothing may escape it.

use media::{Error, ObjectKey};

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn content_keys_are_sharded_by_hash_prefix() {
    let key = ObjectKey::content(HASH).unwrap();
    assert_eq!(key.as_str(), format!("content/9f/86/{HASH}"));
    assert_eq!(key.as_str().parse::<ObjectKey>().unwrap(), key);
    assert!(!key.is_upload());
}

#[test]
fn upload_keys_take_url_safe_ids() {
    let key = ObjectKey::upload("AbC-123_xyz").unwrap();
    assert_eq!(key.to_string(), "uploads/AbC-123_xyz");
    assert_eq!("uploads/AbC-123_xyz".parse::<ObjectKey>().unwrap(), key);
    assert!(key.is_upload());
    assert!(ObjectKey::upload(&"a".repeat(128)).is_ok());
}

#[test]
fn traversal_and_odd_keys_are_refused() {
    let refused = [
        "../etc/passwd",
        "../../content/9f/86/x",
        "uploads/..",
        "uploads/../content",
        "uploads/../../etc/passwd",
        "uploads/a/../../b",
        "uploads/a/b",
        "uploads/",
        "uploads",
        "/uploads/a",
        "uploads//a",
        "uploads/a/",
        "uploads/a.png",
        "uploads/a%2F..",
        "uploads/a\\..\\b",
        "uploads/a\0",
        "uploads/ä",
        "uploads/a b",
        "staging/0123456789abcdef",
        "tmp/put-1",
        "content/../../etc/passwd",
        "content/9f/86/..",
        "content/00/00/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "content/9F/86/9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
        "content/9f/86/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0",
        "content/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "",
    ];
    for key in refused {
        assert!(
            matches!(key.parse::<ObjectKey>(), Err(Error::InvalidKey(_))),
            "accepted {key:?}"
        );
    }
}

#[test]
fn constructors_refuse_what_is_not_a_segment() {
    for id in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "a.b",
        "a\0",
        &"a".repeat(129),
    ] {
        assert!(
            matches!(ObjectKey::upload(id), Err(Error::InvalidKey(_))),
            "accepted upload id {id:?}"
        );
    }
    let uppercase = HASH.to_ascii_uppercase();
    let too_short = &HASH[..63];
    for hash in [
        "",
        "../../../../etc/passwd",
        uppercase.as_str(),
        too_short,
        &format!("{HASH}0"),
    ] {
        assert!(
            matches!(ObjectKey::content(hash), Err(Error::InvalidKey(_))),
            "accepted hash {hash:?}"
        );
    }
}
