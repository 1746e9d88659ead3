//! Server signing keys as published at `GET /_matrix/key/v2/server`: our own
//! signed document, checking a remote server's document, and countersigning
//! a stored one as a notary (`/_matrix/key/v2/query` answers are the queried
//! servers' documents with the notary's signature added).

use std::{collections::BTreeMap, time::Duration};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedServerName,
    OwnedServerSigningKeyId, ServerName, UInt,
    api::federation::discovery::{OldVerifyKey, ServerSigningKeys, VerifyKey},
    canonical_json::to_canonical_value,
    serde::Base64,
    signatures::{PublicKeyMap, PublicKeySet, sign_json, verify_json},
};

use crate::{Error, Result, keys::SigningKey};

/// However far ahead `valid_until_ts` lies, a remote key is trusted at most
/// this long from when it was checked (spec: "the lesser of this field and 7
/// days into the future").
pub const MAX_KEY_TRUST: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Our key document, signed with `key`: the body of `GET /_matrix/key/v2/server`.
///
/// `old_verify_keys` are keys we no longer sign with; `valid_until_ts` is when
/// other servers should fetch the document again (the spec asks for at least
/// an hour ahead).
pub fn our_server_keys(
    server_name: &ServerName,
    key: &SigningKey,
    old_verify_keys: BTreeMap<OwnedServerSigningKeyId, OldVerifyKey>,
    valid_until_ts: MilliSecondsSinceUnixEpoch,
) -> Result<CanonicalJsonObject> {
    let mut keys = ServerSigningKeys::new(server_name.to_owned(), valid_until_ts);
    keys.verify_keys.insert(
        key.id().to_owned(),
        VerifyKey::new(Base64::new(key.pair().public_key().to_vec())),
    );
    keys.old_verify_keys = old_verify_keys;
    let invalid = |reason: String| Error::ServerKeys {
        server: server_name.to_string(),
        reason,
    };
    let CanonicalJsonValue::Object(mut document) =
        to_canonical_value(&keys).map_err(|e| invalid(e.to_string()))?
    else {
        return Err(invalid("the key document is not a JSON object".into()));
    };
    sign_json(server_name.as_str(), key.pair(), &mut document)?;
    Ok(document)
}

/// A remote server's key document whose self-signature checked out.
#[derive(Debug, Clone)]
pub struct RemoteServerKeys {
    pub server_name: OwnedServerName,
    /// The keys that sign the server's requests and events.
    pub verify_keys: BTreeMap<OwnedServerSigningKeyId, Base64>,
    /// Keys the server no longer uses; each still verifies events from
    /// before its `expired_ts`.
    pub old_verify_keys: BTreeMap<OwnedServerSigningKeyId, OldVerifyKey>,
    /// When the server asks to be asked again, as published.
    pub valid_until_ts: MilliSecondsSinceUnixEpoch,
    /// `valid_until_ts` had already passed when the document was checked:
    /// fetch it again before trusting `verify_keys` for new requests.
    pub expired: bool,
    /// How long `verify_keys` may be relied on: the lesser of
    /// `valid_until_ts` and [`MAX_KEY_TRUST`] after the check.
    pub trusted_until: MilliSecondsSinceUnixEpoch,
    /// The signed document as received, to store and to serve as a notary.
    pub document: CanonicalJsonObject,
}

impl RemoteServerKeys {
    /// `verify_keys` in the shape [`crate::request_auth::verify_request`] and
    /// ruma's verifiers take.
    pub fn public_keys(&self) -> PublicKeySet {
        self.verify_keys
            .iter()
            .map(|(id, key)| (id.to_string(), key.clone()))
            .collect()
    }
}

/// Checks a key document fetched for `expected_server` (directly or through a
/// notary): it names that server and carries a valid signature by the server
/// with one of the document's own `verify_keys`. Signatures by anyone else
/// (notaries) are left alone. Expiry is reported, not refused, so that old
/// events can still be checked with the keys of a server that is gone.
pub fn verify_server_keys(
    document: CanonicalJsonObject,
    expected_server: &ServerName,
    now: MilliSecondsSinceUnixEpoch,
) -> Result<RemoteServerKeys> {
    let invalid = |reason: String| Error::ServerKeys {
        server: expected_server.to_string(),
        reason,
    };
    let keys: ServerSigningKeys = serde_json::to_value(&document)
        .and_then(serde_json::from_value)
        .map_err(|e| invalid(e.to_string()))?;
    if keys.server_name != expected_server {
        return Err(invalid(format!("the document is for {}", keys.server_name)));
    }
    if keys.verify_keys.is_empty() {
        return Err(invalid("the document has no verify_keys".into()));
    }

    // Only the server's own signatures are checked here; ruma's verifier
    // would otherwise demand keys for every notary that signed as well.
    let own_signatures = document
        .get("signatures")
        .and_then(|signatures| match signatures {
            CanonicalJsonValue::Object(by_server) => by_server.get(expected_server.as_str()),
            _ => None,
        })
        .cloned()
        .ok_or_else(|| invalid("the document is not signed by its server".into()))?;
    let mut self_signed = document.clone();
    self_signed.insert(
        "signatures".into(),
        CanonicalJsonValue::Object(BTreeMap::from([(
            expected_server.to_string(),
            own_signatures,
        )])),
    );
    let public_keys: PublicKeyMap = BTreeMap::from([(
        expected_server.to_string(),
        keys.verify_keys
            .iter()
            .map(|(id, key)| (id.to_string(), key.key.clone()))
            .collect(),
    )]);
    verify_json(&public_keys, &self_signed)
        .map_err(|e| Error::Verification(format!("key document of {expected_server}: {e}")))?;

    let max_trust = UInt::new_saturating(MAX_KEY_TRUST.as_millis().try_into().unwrap_or(u64::MAX));
    let trusted_until = MilliSecondsSinceUnixEpoch(
        keys.valid_until_ts
            .get()
            .min(now.get().saturating_add(max_trust)),
    );
    Ok(RemoteServerKeys {
        server_name: keys.server_name,
        verify_keys: keys
            .verify_keys
            .into_iter()
            .map(|(id, key)| (id, key.key))
            .collect(),
        old_verify_keys: keys.old_verify_keys,
        expired: keys.valid_until_ts <= now,
        valid_until_ts: keys.valid_until_ts,
        trusted_until,
        document,
    })
}

/// Adds our signature as a notary to a key document we fetched from another
/// server (checked with [`verify_server_keys`]), for
/// `/_matrix/key/v2/query` answers. Existing signatures stay.
pub fn add_notary_signature(
    document: &mut CanonicalJsonObject,
    notary: &ServerName,
    key: &SigningKey,
) -> Result<()> {
    sign_json(notary.as_str(), key.pair(), document)?;
    Ok(())
}
