//! Rooms shared with Synapse, the reference peer, in both directions: a
//! TeaTime user joins a room created on Synapse and a Synapse user joins a
//! room created on TeaTime. In each, history and messages flow both ways,
//! typing notifications cross, and the room's creator kicks the remote user,
//! who then can no longer send or receive.

mod common;

use std::time::Duration;

use common::{
    Backend, PASSWORD, TestServer,
    client::{Client, eventually},
    synapse::Synapse,
};
use reqwest::StatusCode;
use serde_json::json;

/// `host` (on server `host_server`) creates a public room; `guest`, a user of
/// the other server, joins it and both talk, type, and then `host` kicks `guest`.
async fn room_shared_across(host: &Client, host_server: &str, guest: &Client) {
    let room = host
        .create_room(json!({ "preset": "public_chat", "name": "Interop" }))
        .await;
    host.say(&room, "before the guest came").await;

    let (status, joined) = guest.join_via(&room, host_server).await;
    assert_eq!(status, StatusCode::OK, "the remote join failed: {joined}");
    assert_eq!(joined["room_id"], room.as_str());
    host.sees_membership(&room, &guest.user_id, "join").await;
    let on_guest = guest.sees(&room, "before the guest came").await;
    assert_eq!(on_guest, ["before the guest came"]);

    // Messages both ways, each delivered once.
    guest.say(&room, "hello from the guest").await;
    host.say(&room, "hello from the host").await;
    let on_host = host.sees(&room, "hello from the guest").await;
    let on_guest = guest.sees(&room, "hello from the host").await;
    for (side, bodies) in [("host", &on_host), ("guest", &on_guest)] {
        for text in ["hello from the guest", "hello from the host"] {
            let copies = bodies.iter().filter(|b| *b == text).count();
            assert!(
                copies <= 1,
                "{text:?} {copies} times on the {side}: {bodies:?}"
            );
        }
    }
    let on_guest = guest.sees(&room, "hello from the guest").await;
    assert!(
        on_guest.iter().any(|b| b == "hello from the host"),
        "{on_guest:?}"
    );
    let on_host = host.sees(&room, "hello from the host").await;
    assert!(
        on_host.iter().any(|b| b == "hello from the guest"),
        "{on_host:?}"
    );

    // Typing both ways, and its end.
    guest.set_typing(&room, true).await;
    host.sees_typing(&room, &guest.user_id, true).await;
    host.set_typing(&room, true).await;
    guest.sees_typing(&room, &host.user_id, true).await;
    guest.set_typing(&room, false).await;
    host.sees_typing(&room, &guest.user_id, false).await;

    // The host kicks the guest: both servers agree, the guest can no longer
    // send, and what the host says afterwards never reaches the guest's server.
    host.kick(&room, &guest.user_id, "interop test").await;
    guest.sees_membership(&room, &guest.user_id, "leave").await;
    let (status, refused) = guest.send_text(&room, "still here?").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    host.say(&room, "after the kick").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let on_guest = guest.bodies(&room).await;
    assert!(
        !on_guest
            .iter()
            .any(|b| b == "after the kick" || b == "still here?"),
        "{on_guest:?}"
    );
    let on_host = host.bodies(&room).await;
    assert!(!on_host.iter().any(|b| b == "still here?"), "{on_host:?}");
}

#[tokio::test]
async fn a_teatime_user_joins_a_room_on_synapse() {
    let synapse = Synapse::start().await;
    let teatime = TestServer::start_federating(Backend::Sqlite).await;
    let sam = synapse.register("sam", PASSWORD).await;
    let alice = teatime.register("alice", PASSWORD).await;
    room_shared_across(
        &synapse.client(&sam),
        &synapse.server_name,
        &teatime.client(&alice),
    )
    .await;
    teatime.finish().await;
}

#[tokio::test]
async fn a_synapse_user_joins_a_room_on_teatime() {
    let synapse = Synapse::start().await;
    let teatime = TestServer::start_federating(Backend::Sqlite).await;
    let sam = synapse.register("sam", PASSWORD).await;
    let alice = teatime.register("alice", PASSWORD).await;
    let server_name = teatime.config().server_name.clone();
    room_shared_across(&teatime.client(&alice), &server_name, &synapse.client(&sam)).await;
    teatime.finish().await;
}

/// A direct message from TeaTime to Synapse: the invite crosses, Synapse's
/// user accepts it and the two talk.
#[tokio::test]
async fn a_teatime_user_invites_a_synapse_user_to_a_direct_message() {
    let synapse = Synapse::start().await;
    let teatime = TestServer::start_federating(Backend::Sqlite).await;
    let sam = synapse.client(&synapse.register("sam", PASSWORD).await);
    let alice = teatime.client(&teatime.register("alice", PASSWORD).await);
    let room = alice
        .create_room(json!({
            "preset": "trusted_private_chat",
            "is_direct": true,
            "invite": [sam.user_id],
        }))
        .await;
    eventually("the invite on Synapse", async || {
        let sync = sam
            .ok(reqwest::Method::GET, "/_matrix/client/v3/sync", json!(null))
            .await;
        sync["rooms"]["invite"][&room].is_object().then_some(())
    })
    .await;
    let (status, joined) = sam.join_via(&room, &teatime.config().server_name).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    alice.sees_membership(&room, &sam.user_id, "join").await;
    sam.say(&room, "hi alice").await;
    alice.sees(&room, "hi alice").await;
    teatime.finish().await;
}

/// The names of the rooms in `server`'s published directory, as `client`'s
/// own server fetches it (over federation when `server` is the other one).
async fn listed_rooms(client: &Client, server: &str, filter: serde_json::Value) -> Vec<String> {
    let path = format!(
        "/_matrix/client/v3/publicRooms?server={}",
        common::encode(server)
    );
    let page = client
        .ok(reqwest::Method::POST, &path, json!({ "filter": filter }))
        .await;
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|room| room["name"].as_str().map(str::to_owned))
        .collect()
}

/// Each server's published rooms are listed through the other's client API.
#[tokio::test]
async fn public_rooms_are_listed_across_both_ways() {
    let synapse = Synapse::start().await;
    let teatime = TestServer::start_federating(Backend::Sqlite).await;
    let sam = synapse.client(&synapse.register("sam", PASSWORD).await);
    let alice = teatime.client(&teatime.register("alice", PASSWORD).await);
    let teatime_name = teatime.config().server_name.clone();
    for (client, name) in [(&sam, "Synapse lobby"), (&alice, "TeaTime lobby")] {
        client
            .create_room(json!({ "preset": "public_chat", "visibility": "public", "name": name }))
            .await;
        client
            .create_room(json!({ "preset": "public_chat", "name": format!("{name} (unlisted)") }))
            .await;
    }

    let on_synapse = listed_rooms(&alice, &synapse.server_name, json!({})).await;
    assert_eq!(on_synapse, ["Synapse lobby"]);
    let on_teatime = listed_rooms(&sam, &teatime_name, json!({})).await;
    assert_eq!(on_teatime, ["TeaTime lobby"]);
    let searched = listed_rooms(
        &sam,
        &teatime_name,
        json!({ "generic_search_term": "nothing" }),
    )
    .await;
    assert!(searched.is_empty(), "{searched:?}");
    let searched = listed_rooms(
        &alice,
        &synapse.server_name,
        json!({ "generic_search_term": "lobby" }),
    )
    .await;
    assert_eq!(searched, ["Synapse lobby"]);

    // Without an access token, TeaTime lists only its own directory.
    let (status, body) = teatime
        .get(
            &format!(
                "/_matrix/client/v3/publicRooms?server={}",
                common::encode(&synapse.server_name)
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], "M_MISSING_TOKEN", "{body}");
    teatime.finish().await;
}
