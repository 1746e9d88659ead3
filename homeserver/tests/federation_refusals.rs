//! What a server refuses from others: PDUs with bad signatures or hashes,
//! events a server makes for another server's users, servers it does not
//! federate with, and servers a room's ACL bars.

mod common;

use std::time::Duration;

use common::{
    Backend, PASSWORD, TestServer, encode,
    signed::{server_name, signed_request, signing_key},
};
use federation::pdu::{EventTemplate, Placement, build_event, rules_for};
use reqwest::{Method, StatusCode};
use ruma::{
    CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, RoomVersionId,
    UserId,
};
use serde_json::{Value, json};

on_both_backends!(
    forged_and_tampered_pdus_are_not_taken_as_they_are,
    denied_and_acl_barred_servers_are_refused,
);

/// A room on `a` with alice, public, that bob of `b` joined.
async fn shared_room(a: &TestServer, b: &TestServer, initial_state: Value) -> (String, String) {
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let room = a
        .create_room(
            &alice.access_token,
            json!({ "preset": "public_chat", "initial_state": initial_state }),
        )
        .await;
    let (status, body) = b
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                encode(&room),
                encode(server_name(a).as_str())
            ),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (room, bob.user_id)
}

/// A message by `sender` in `room` as `a` holds it now, signed with `b`'s
/// key (so `b` vouches for it).
async fn message_from(
    a: &TestServer,
    b: &TestServer,
    room: &str,
    sender: &str,
    body: &str,
) -> ruma::CanonicalJsonObject {
    let store = &a.state().store;
    let head = store.extremities(room).await.unwrap();
    let prev_events: Vec<OwnedEventId> = head
        .iter()
        .map(|p| EventId::parse(&p.event_id).unwrap())
        .collect();
    let depth = head.iter().map(|p| p.depth).max().unwrap_or(0);
    let state = store.current_state(room, None).await.unwrap();
    let auth_events: Vec<OwnedEventId> = state
        .iter()
        .filter(|e| {
            e.event_type == "m.room.power_levels"
                || (e.event_type == "m.room.member" && e.state_key.as_deref() == Some(sender))
        })
        .map(|e| EventId::parse(&e.event_id).unwrap())
        .collect();
    let rules = rules_for(&RoomVersionId::V12).unwrap();
    let pdu = build_event(
        EventTemplate {
            room_id: Some(<&RoomId>::try_from(room).unwrap()),
            sender: <&UserId>::try_from(sender).unwrap(),
            kind: "m.room.message",
            state_key: None,
            content: json!({ "msgtype": "m.text", "body": body }),
            redacts: None,
        },
        Placement {
            prev_events: &prev_events,
            auth_events: &auth_events,
            depth: u64::try_from(depth).unwrap() + 1,
            origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
        },
        server_name(b).as_str(),
        &signing_key(b),
        &rules,
    )
    .unwrap();
    pdu.json
}

/// Sends PDUs to `a` in a transaction signed as `b`; returns the answer.
async fn send_as(
    a: &TestServer,
    b: &TestServer,
    pdus: &[&ruma::CanonicalJsonObject],
) -> (StatusCode, Value) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static TXN: AtomicU64 = AtomicU64::new(0);
    let body = json!({
        "origin": server_name(b).as_str(),
        "origin_server_ts": 1,
        "pdus": pdus,
        "edus": [],
    });
    let target = format!(
        "/_matrix/federation/v1/send/refusal{}",
        TXN.fetch_add(1, Ordering::Relaxed)
    );
    signed_request(
        a,
        Method::PUT,
        &target,
        Some(&body),
        server_name(b),
        server_name(a),
        &signing_key(b),
    )
    .await
}

fn event_id_of(json: &ruma::CanonicalJsonObject) -> String {
    federation::pdu::event_id_of(json, &rules_for(&RoomVersionId::V12).unwrap())
        .unwrap()
        .to_string()
}

async fn stored_json(server: &TestServer, event_id: &str) -> Option<Value> {
    let stored = server.state().store.event(event_id).await.unwrap()?;
    Some(serde_json::from_str(&stored.json).unwrap())
}

async fn forged_and_tampered_pdus_are_not_taken_as_they_are(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let (room, bob) = shared_room(&a, &b, json!([])).await;
    let alice = format!("@alice:{}", server_name(&a));

    // A genuine message goes in.
    let genuine = message_from(&a, &b, &room, &bob, "genuine").await;
    let (status, answer) = send_as(&a, &b, &[&genuine]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let genuine_id = event_id_of(&genuine);
    assert_eq!(answer["pdus"][&genuine_id], json!({}), "{answer}");
    assert!(stored_json(&a, &genuine_id).await.is_some());

    // A broken signature: dropped.
    let mut forged = message_from(&a, &b, &room, &bob, "forged").await;
    let signatures = forged
        .get_mut("signatures")
        .and_then(CanonicalJsonValue::as_object_mut)
        .unwrap();
    let ours = signatures
        .values_mut()
        .next()
        .and_then(CanonicalJsonValue::as_object_mut)
        .unwrap();
    for signature in ours.values_mut() {
        *signature = CanonicalJsonValue::String("AAAA".repeat(22));
    }
    let forged_id = event_id_of(&forged);
    let (status, answer) = send_as(&a, &b, &[&forged]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        stored_json(&a, &forged_id).await.is_none(),
        "a badly signed event was stored"
    );

    // Content changed after signing: the hash fails, the event is kept redacted.
    let mut tampered = message_from(&a, &b, &room, &bob, "original").await;
    tampered.insert(
        "content".into(),
        CanonicalJsonValue::try_from(json!({ "msgtype": "m.text", "body": "altered" })).unwrap(),
    );
    let tampered_id = event_id_of(&tampered);
    let (status, answer) = send_as(&a, &b, &[&tampered]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let kept = stored_json(&a, &tampered_id).await.expect("kept, redacted");
    assert_eq!(kept["content"], json!({}), "{kept}");

    // B speaking for alice of A: refused (A's signature is missing).
    let impersonation = message_from(&a, &b, &room, &alice, "as alice").await;
    let impersonation_id = event_id_of(&impersonation);
    let (status, answer) = send_as(&a, &b, &[&impersonation]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        stored_json(&a, &impersonation_id).await.is_none(),
        "an event made up for alice was stored"
    );

    // A transaction whose origin is not its signer.
    let body = json!({ "origin": server_name(&a).as_str(), "origin_server_ts": 1, "pdus": [], "edus": [] });
    let (status, _) = signed_request(
        &a,
        Method::PUT,
        "/_matrix/federation/v1/send/spoofed",
        Some(&body),
        server_name(&b),
        server_name(&a),
        &signing_key(&b),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An unsigned request.
    let unsigned = common::signed::https()
        .put(format!(
            "https://{}/_matrix/federation/v1/send/unsigned",
            a.federation_addr()
        ))
        .json(&json!({ "pdus": [], "edus": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    a.finish().await;
    b.finish().await;
}

async fn denied_and_acl_barred_servers_are_refused(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let acl = json!([{
        "type": "m.room.server_acl",
        "state_key": "",
        "content": { "allow": ["*"], "deny": [], "allow_ip_literals": true },
    }]);
    let (room, bob) = shared_room(&a, &b, acl).await;

    // The room's ACL changes to bar b: its events for the room are refused.
    // ACLs match the host without its port, which here bars every server on
    // loopback; a's own users' events are local and not subject to it.
    let alice_token = a.login("alice", PASSWORD).await.access_token;
    let (status, body) = a
        .put(
            &TestServer::room_path(&room, "state/m.room.server_acl/"),
            Some(&alice_token),
            json!({ "allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let barred = message_from(&a, &b, &room, &bob, "barred").await;
    let (status, answer) = send_as(&a, &b, &[&barred]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let barred_id = event_id_of(&barred);
    assert!(answer["pdus"][&barred_id]["error"].is_string(), "{answer}");
    assert!(stored_json(&a, &barred_id).await.is_none());
    let make_join = format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=12",
        encode(&room),
        encode(&format!("@carol:{}", server_name(&b)))
    );
    let (status, _) = signed_request(
        &a,
        Method::GET,
        &make_join,
        None,
        server_name(&b),
        server_name(&a),
        &signing_key(&b),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A server administrator denies b entirely: every request from it is refused.
    a.make_admin(&format!("@alice:{}", server_name(&a))).await;
    let (status, body) = a
        .put(
            "/_teatime/admin/v1/federation/rules",
            Some(&alice_token),
            json!({ "allow": [], "deny": [server_name(&b).as_str()] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let profile = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        encode(&format!("@alice:{}", server_name(&a)))
    );
    let (status, _) = signed_request(
        &a,
        Method::GET,
        &profile,
        None,
        server_name(&b),
        server_name(&a),
        &signing_key(&b),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // And nothing is sent to it: a message on a stays queued.
    let sent = a.say(&alice_token, &room, "not for b").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        stored_json(&b, &sent).await.is_none(),
        "a denied server received an event"
    );
    a.finish().await;
    b.finish().await;
}
