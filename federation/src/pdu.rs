//! PDUs: building, hashing and signing events, computing their ids,
//! verifying them, redacting them, and parsing them for the auth rules.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, UserId,
    canonical_json::{RedactedBecause, redact},
    events::TimelineEventType,
    room_version_rules::RoomVersionRules,
    serde::Base64,
    signatures::{
        PublicKeyMap, Verified, hash_and_sign_event, reference_hash,
        required_server_signatures_to_verify_event, verify_event,
    },
    state_res::check_pdu_format,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{Error, Result, keys::SigningKey};

/// Room versions this server creates rooms in and takes part in.
pub const SUPPORTED_ROOM_VERSIONS: [RoomVersionId; 3] =
    [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

/// The rules of a supported room version.
pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules> {
    if !SUPPORTED_ROOM_VERSIONS.contains(version) {
        return Err(Error::UnsupportedRoomVersion(version.to_string()));
    }
    version
        .rules()
        .ok_or_else(|| Error::UnsupportedRoomVersion(version.to_string()))
}

/// A signed PDU with the fields the authorisation rules read.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: u64,
    /// The signed event as it travels between servers.
    pub json: CanonicalJsonObject,
}

#[derive(Deserialize)]
struct PduFields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawValue>,
    state_key: Option<String>,
    prev_events: Vec<OwnedEventId>,
    auth_events: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
    depth: u64,
}

#[derive(Deserialize)]
struct RedactsInContent {
    redacts: Option<OwnedEventId>,
}

impl Pdu {
    /// Parses a signed event whose id is already known.
    pub fn from_json(event_id: OwnedEventId, json: CanonicalJsonObject) -> Result<Pdu> {
        let text = serde_json::to_string(&json).map_err(|e| Error::InvalidEvent(e.to_string()))?;
        let fields: PduFields =
            serde_json::from_str(&text).map_err(|e| Error::InvalidEvent(e.to_string()))?;
        // Since room version 11, `redacts` lives in the content.
        let redacts = match fields.redacts {
            Some(redacts) => Some(redacts),
            None if fields.kind == TimelineEventType::RoomRedaction => {
                serde_json::from_str::<RedactsInContent>(fields.content.get())
                    .map_err(|e| Error::InvalidEvent(e.to_string()))?
                    .redacts
            }
            None => None,
        };
        Ok(Pdu {
            event_id,
            room_id: fields.room_id,
            sender: fields.sender,
            origin_server_ts: fields.origin_server_ts,
            kind: fields.kind,
            content: fields.content,
            state_key: fields.state_key,
            prev_events: fields.prev_events,
            auth_events: fields.auth_events,
            redacts,
            depth: fields.depth,
            json,
        })
    }

    /// Parses event JSON text whose id is already known.
    pub fn from_str(event_id: OwnedEventId, json: &str) -> Result<Pdu> {
        let object: CanonicalJsonObject =
            serde_json::from_str(json).map_err(|e| Error::InvalidEvent(e.to_string()))?;
        Self::from_json(event_id, object)
    }

    /// The content as JSON.
    pub fn content_value(&self) -> Result<serde_json::Value> {
        serde_json::from_str(self.content.get()).map_err(|e| Error::InvalidEvent(e.to_string()))
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

/// What a new event says, before the server places it in the room's graph.
#[derive(Debug)]
pub struct EventTemplate<'a> {
    /// `None` only for the create event of a room version whose room id is
    /// derived from that event (v12).
    pub room_id: Option<&'a RoomId>,
    pub sender: &'a UserId,
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub content: serde_json::Value,
    pub redacts: Option<&'a EventId>,
}

/// Where a new event goes in the room's graph.
#[derive(Debug)]
pub struct Placement<'a> {
    pub prev_events: &'a [OwnedEventId],
    pub auth_events: &'a [OwnedEventId],
    pub depth: u64,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
}

fn to_canonical(value: serde_json::Value) -> Result<CanonicalJsonValue> {
    CanonicalJsonValue::try_from(value).map_err(|e| Error::InvalidEvent(e.to_string()))
}

fn id_list(ids: &[OwnedEventId]) -> CanonicalJsonValue {
    CanonicalJsonValue::Array(
        ids.iter()
            .map(|id| CanonicalJsonValue::String(id.to_string()))
            .collect(),
    )
}

/// Builds, hashes and signs an event as `server_name`, and computes its id.
pub fn build_event(
    template: EventTemplate<'_>,
    placement: Placement<'_>,
    server_name: &str,
    key: &SigningKey,
    rules: &RoomVersionRules,
) -> Result<Pdu> {
    sign_event(
        event_json(template, placement, rules)?,
        server_name,
        key,
        rules,
    )
}

/// The JSON of an event before it is hashed and signed (as `make_join`
/// hands it to the joining server).
pub fn event_json(
    template: EventTemplate<'_>,
    placement: Placement<'_>,
    rules: &RoomVersionRules,
) -> Result<CanonicalJsonObject> {
    let mut content = match to_canonical(template.content)? {
        CanonicalJsonValue::Object(content) => content,
        _ => return Err(Error::InvalidEvent("content must be an object".into())),
    };
    let mut json = CanonicalJsonObject::new();
    if let Some(redacts) = template.redacts {
        // Room version 11 moved `redacts` into the content; older servers read the top level.
        if rules.redaction.content_field_redacts {
            content.insert(
                "redacts".into(),
                CanonicalJsonValue::String(redacts.to_string()),
            );
        } else {
            json.insert(
                "redacts".into(),
                CanonicalJsonValue::String(redacts.to_string()),
            );
        }
    }
    json.insert("auth_events".into(), id_list(placement.auth_events));
    json.insert("content".into(), CanonicalJsonValue::Object(content));
    json.insert(
        "depth".into(),
        CanonicalJsonValue::Integer(placement.depth.try_into().unwrap_or_default()),
    );
    json.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(placement.origin_server_ts.get().into()),
    );
    json.insert("prev_events".into(), id_list(placement.prev_events));
    if let Some(room_id) = template.room_id {
        json.insert(
            "room_id".into(),
            CanonicalJsonValue::String(room_id.to_string()),
        );
    }
    json.insert(
        "sender".into(),
        CanonicalJsonValue::String(template.sender.to_string()),
    );
    if let Some(state_key) = template.state_key {
        json.insert(
            "state_key".into(),
            CanonicalJsonValue::String(state_key.to_owned()),
        );
    }
    json.insert(
        "type".into(),
        CanonicalJsonValue::String(template.kind.to_owned()),
    );
    Ok(json)
}

/// Hashes and signs event JSON as `server_name` (adding this server's
/// signature to any already there, as an invitee's server does) and
/// computes its id.
pub fn sign_event(
    mut json: CanonicalJsonObject,
    server_name: &str,
    key: &SigningKey,
    rules: &RoomVersionRules,
) -> Result<Pdu> {
    json.remove("event_id");
    json.remove("unsigned");
    hash_and_sign_event(server_name, key.pair(), &mut json, &rules.redaction)?;
    let event_id = event_id_of(&json, rules)?;
    Pdu::from_json(event_id, json)
}

/// The room id a v12 create event defines: its event id with `!` for `$`.
pub fn room_id_from_create(create_event_id: &EventId) -> Result<OwnedRoomId> {
    let hash = create_event_id.as_str().trim_start_matches('$');
    RoomId::parse(format!("!{hash}")).map_err(|e| Error::InvalidEvent(e.to_string()))
}

/// The event id of signed event JSON (its reference hash).
pub fn event_id_of(json: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId> {
    EventId::parse(format!("${}", reference_hash(json, rules)?))
        .map_err(|e| Error::InvalidEvent(e.to_string()))
}

/// Checks an event's signature by `server_name`'s key and its content hash.
pub fn verify(
    json: &CanonicalJsonObject,
    server_name: &str,
    key_id: &str,
    public_key_base64: &str,
    rules: &RoomVersionRules,
) -> Result<()> {
    let key = Base64::parse(public_key_base64).map_err(|e| Error::Verification(e.to_string()))?;
    let keys: PublicKeyMap = BTreeMap::from([(
        server_name.to_owned(),
        BTreeMap::from([(key_id.to_owned(), key)]),
    )]);
    match verify_event(&keys, json, rules) {
        Ok(Verified::All) => Ok(()),
        Ok(Verified::Signatures) => Err(Error::Verification("content hash does not match".into())),
        Err(e) => Err(Error::Verification(e.to_string())),
    }
}

/// A PDU received from another server, its format checked: its id and the
/// servers whose signatures it needs.
pub fn parse_incoming(
    json: &CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<(OwnedEventId, BTreeSet<OwnedServerName>)> {
    check_pdu_format(json, &rules.event_format).map_err(Error::InvalidEvent)?;
    let event_id = event_id_of(json, rules)?;
    let servers = required_server_signatures_to_verify_event(json, &rules.signatures)
        .map_err(|e| Error::InvalidEvent(e.to_string()))?;
    Ok((event_id, servers))
}

/// Checks a received PDU's signatures with `keys` (of every server
/// [`parse_incoming`] named) and returns what to keep of it: the event as
/// it is, or redacted when its content does not match its hash (as the
/// spec asks). Bad signatures are an error: the event is dropped.
pub fn verify_incoming(
    json: CanonicalJsonObject,
    keys: &PublicKeyMap,
    rules: &RoomVersionRules,
) -> Result<CanonicalJsonObject> {
    match verify_event(keys, &json, rules) {
        Ok(Verified::All) => Ok(json),
        Ok(Verified::Signatures) => redacted(&json, rules, None),
        Err(e) => Err(Error::Verification(e.to_string())),
    }
}

/// The redacted form of an event, recording the redaction that caused it.
pub fn redacted(
    json: &CanonicalJsonObject,
    rules: &RoomVersionRules,
    because: Option<CanonicalJsonObject>,
) -> Result<CanonicalJsonObject> {
    redact(
        json.clone(),
        &rules.redaction,
        because.map(RedactedBecause::from_json),
    )
    .map_err(|e| Error::InvalidEvent(e.to_string()))
}

#[cfg(test)]
mod tests {
    use ruma::{room_id, user_id};
    use serde_json::json;

    use super::*;

    fn key() -> (tempfile::TempDir, SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_generate(&dir.path().join("k")).unwrap();
        (dir, key)
    }

    fn message(rules: &RoomVersionRules, key: &SigningKey, body: &str) -> Pdu {
        build_event(
            EventTemplate {
                room_id: Some(room_id!("!room:example.org")),
                sender: user_id!("@alice:example.org"),
                kind: "m.room.message",
                state_key: None,
                content: json!({ "msgtype": "m.text", "body": body }),
                redacts: None,
            },
            Placement {
                prev_events: &[],
                auth_events: &[],
                depth: 3,
                origin_server_ts: MilliSecondsSinceUnixEpoch(1_000_000u32.into()),
            },
            "example.org",
            key,
            rules,
        )
        .unwrap()
    }

    #[test]
    fn built_events_verify_and_have_reference_hash_ids() {
        let (_dir, key) = key();
        for version in SUPPORTED_ROOM_VERSIONS {
            let rules = rules_for(&version).unwrap();
            let pdu = message(&rules, &key, "hello");
            let id = pdu.event_id.as_str();
            assert_eq!(id.len(), 44, "$ and 43 base64url characters: {id}");
            assert!(
                id[1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{id}"
            );
            assert_eq!(event_id_of(&pdu.json, &rules).unwrap(), pdu.event_id);
            verify(
                &pdu.json,
                "example.org",
                &key.key_id(),
                &key.public_key_base64(),
                &rules,
            )
            .unwrap();
        }
    }

    #[test]
    fn tampering_is_detected() {
        let (_dir, key) = key();
        let rules = rules_for(&RoomVersionId::V12).unwrap();
        let pdu = message(&rules, &key, "hello");
        let mut content_changed = pdu.json.clone();
        content_changed.insert(
            "content".into(),
            to_canonical(json!({ "body": "bye" })).unwrap(),
        );
        let err = verify(
            &content_changed,
            "example.org",
            &key.key_id(),
            &key.public_key_base64(),
            &rules,
        );
        assert!(
            matches!(err, Err(Error::Verification(_))),
            "content hash mismatch: {err:?}"
        );
        let mut sender_changed = pdu.json.clone();
        sender_changed.insert("depth".into(), CanonicalJsonValue::Integer(99u32.into()));
        assert!(
            verify(
                &sender_changed,
                "example.org",
                &key.key_id(),
                &key.public_key_base64(),
                &rules
            )
            .is_err()
        );
        let (_other_dir, other) = self::key();
        assert!(
            verify(
                &pdu.json,
                "example.org",
                &key.key_id(),
                &other.public_key_base64(),
                &rules
            )
            .is_err()
        );
    }

    #[test]
    fn redaction_strips_content_and_keeps_signatures_valid() {
        let (_dir, key) = key();
        let rules = rules_for(&RoomVersionId::V11).unwrap();
        let pdu = message(&rules, &key, "secret");
        let redacted = redacted(&pdu.json, &rules, None).unwrap();
        assert_eq!(
            redacted["content"],
            CanonicalJsonValue::Object(CanonicalJsonObject::new())
        );
        // The id is computed over the redacted form, so it does not change.
        assert_eq!(event_id_of(&redacted, &rules).unwrap(), pdu.event_id);
    }

    #[test]
    fn floats_and_non_objects_are_not_valid_content() {
        let (_dir, key) = key();
        let rules = rules_for(&RoomVersionId::V12).unwrap();
        let build = |content| {
            build_event(
                EventTemplate {
                    room_id: Some(room_id!("!room:example.org")),
                    sender: user_id!("@alice:example.org"),
                    kind: "m.room.message",
                    state_key: None,
                    content,
                    redacts: None,
                },
                Placement {
                    prev_events: &[],
                    auth_events: &[],
                    depth: 1,
                    origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
                },
                "example.org",
                &key,
                &rules,
            )
        };
        assert!(build(json!({ "n": 1.5 })).is_err());
        assert!(build(json!("text")).is_err());
        assert!(build(json!({ "n": 1 })).is_ok());
    }

    #[test]
    fn unsupported_room_versions_are_refused() {
        assert!(rules_for(&RoomVersionId::V9).is_err());
        assert!(rules_for(&RoomVersionId::V12).is_ok());
    }
}
