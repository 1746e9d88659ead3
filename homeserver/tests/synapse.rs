//! Federation with Synapse, the reference peer (started per test through
//! `scripts/synapse.sh`): server keys fetched and notarised by each side,
//! X-Matrix signed requests accepted (and forged ones refused) both ways,
//! profiles and media of one server's users read through the other's client
//! API. TeaTime runs on SQLite here: what is under test is the protocol
//! between the servers; tests/federation.rs covers the same paths between
//! TeaTime servers on both databases.

mod common;

use common::{
    Backend, PASSWORD, Session, TestServer, assert_error, client::Client, encode, png, send_json,
    synapse::Synapse,
};
use federation::{
    keys::SigningKey,
    request_auth::{RequestParts, authorization_header},
    server_keys::verify_server_keys,
};
use reqwest::{Method, StatusCode};
use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, ServerName,
    signatures::{PublicKeyMap, PublicKeySet, verify_json},
};
use serde_json::{Value, json};

/// A TeaTime server that federates on loopback (named `127.0.0.1:<port>`).
async fn teatime() -> TestServer {
    TestServer::start_federating(Backend::Sqlite).await
}

/// A Synapse with a user `sam` and a TeaTime with a user `alice`.
async fn peers() -> (Synapse, Session, TestServer, Session) {
    let synapse = Synapse::start().await;
    let teatime = teatime().await;
    let sam = synapse.register("sam", PASSWORD).await;
    let alice = teatime.register("alice", PASSWORD).await;
    (synapse, sam, teatime, alice)
}

fn server_name(name: &str) -> &ServerName {
    <&ServerName>::try_from(name).expect("server name")
}

fn teatime_name(server: &TestServer) -> &ServerName {
    server_name(&server.config().server_name)
}

fn teatime_key(server: &TestServer) -> SigningKey {
    SigningKey::load_or_generate(&server.config().data_dir.join("signing.key"))
        .expect("TeaTime's signing key")
}

/// A server's verify keys as its own key document publishes them, after
/// checking the document's self-signature.
fn checked_keys(document: &Value, server: &ServerName) -> PublicKeySet {
    let document: CanonicalJsonObject =
        serde_json::from_value(document.clone()).expect("a key document");
    let checked = verify_server_keys(document, server, MilliSecondsSinceUnixEpoch::now())
        .unwrap_or_else(|e| panic!("key document of {server}: {e}"));
    assert!(!checked.expired, "the key document of {server} is expired");
    checked.public_keys()
}

/// Checks a notary's answer to a key query about one server: 200 with one
/// key document, signed by its `server` and by the `notary`, each with the
/// keys it publishes.
fn assert_notarised(
    (status, answer): &(StatusCode, Value),
    server: &ServerName,
    server_keys: &PublicKeySet,
    notary: &ServerName,
    notary_keys: &PublicKeySet,
) {
    assert_eq!(*status, StatusCode::OK, "{answer}");
    let documents = answer["server_keys"].as_array().expect("server_keys");
    assert_eq!(
        documents.len(),
        1,
        "not one key document of {server}: {answer}"
    );
    let document = &documents[0];
    assert_eq!(document["server_name"], server.as_str(), "{document}");
    assert_eq!(
        &checked_keys(document, server),
        server_keys,
        "the notary serves other keys than {server} publishes"
    );
    let public_keys: PublicKeyMap = [
        (server.to_string(), server_keys.clone()),
        (notary.to_string(), notary_keys.clone()),
    ]
    .into();
    let object: CanonicalJsonObject = serde_json::from_value(document.clone()).unwrap();
    let signers: Vec<&String> = document["signatures"]
        .as_object()
        .expect("signatures")
        .keys()
        .collect();
    assert_eq!(signers.len(), 2, "signed by {signers:?}");
    verify_json(&public_keys, &object)
        .unwrap_or_else(|e| panic!("signatures of {server} and notary {notary}: {e}"));
}

async fn own_keys_of_synapse(synapse: &Synapse) -> PublicKeySet {
    let (status, document) = synapse
        .federation_call(Method::GET, "/_matrix/key/v2/server", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{document}");
    checked_keys(&document, server_name(&synapse.server_name))
}

async fn own_keys_of_teatime(teatime: &TestServer) -> PublicKeySet {
    let (status, document) = teatime.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::OK, "{document}");
    checked_keys(&document, teatime_name(teatime))
}

#[tokio::test]
async fn teatime_fetches_and_notarises_synapse_keys() {
    let synapse = Synapse::start().await;
    let teatime = teatime().await;
    let synapse_name = server_name(&synapse.server_name);
    let synapse_keys = own_keys_of_synapse(&synapse).await;
    let teatime_keys = own_keys_of_teatime(&teatime).await;

    let answer = teatime
        .get(
            &format!("/_matrix/key/v2/query/{}", encode(synapse_name.as_str())),
            None,
        )
        .await;
    assert_notarised(
        &answer,
        synapse_name,
        &synapse_keys,
        teatime_name(&teatime),
        &teatime_keys,
    );
    assert!(
        teatime
            .state()
            .store
            .server_key_document(synapse_name.as_str())
            .await
            .unwrap()
            .is_some(),
        "TeaTime keeps the keys it fetched"
    );

    let answer = teatime
        .post(
            "/_matrix/key/v2/query",
            None,
            json!({ "server_keys": { synapse_name.as_str(): {} } }),
        )
        .await;
    assert_notarised(
        &answer,
        synapse_name,
        &synapse_keys,
        teatime_name(&teatime),
        &teatime_keys,
    );
    teatime.finish().await;
}

#[tokio::test]
async fn synapse_fetches_and_notarises_teatime_keys() {
    let synapse = Synapse::start().await;
    let teatime = teatime().await;
    let synapse_name = server_name(&synapse.server_name);
    let synapse_keys = own_keys_of_synapse(&synapse).await;
    let teatime_keys = own_keys_of_teatime(&teatime).await;
    let name = teatime_name(&teatime);

    // Synapse fetches keys it lacks only when asked for them by id (asked
    // for all of a server's keys, it answers from its cache alone).
    let key_id = teatime_keys.keys().next().expect("a key id");
    let answer = synapse
        .federation_call(
            Method::POST,
            "/_matrix/key/v2/query",
            Some(json!({ "server_keys": { name.as_str(): {
                key_id: { "minimum_valid_until_ts": MilliSecondsSinceUnixEpoch::now() },
            } } })),
        )
        .await;
    assert_notarised(&answer, name, &teatime_keys, synapse_name, &synapse_keys);

    let answer = synapse
        .federation_call(
            Method::GET,
            &format!("/_matrix/key/v2/query/{}", encode(name.as_str())),
            None,
        )
        .await;
    assert_notarised(&answer, name, &teatime_keys, synapse_name, &synapse_keys);
    teatime.finish().await;
}

/// Sends `method target` with `body` to Synapse's federation listener,
/// signed as `origin` with `key`.
async fn signed_to_synapse(
    synapse: &Synapse,
    method: Method,
    target: &str,
    body: Option<&Value>,
    origin: &ServerName,
    key: &SigningKey,
) -> (StatusCode, Value) {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let authorization = authorization_header(
        key,
        origin,
        server_name(&synapse.server_name),
        RequestParts {
            method: &method,
            uri: target,
            body: &bytes,
        },
    )
    .expect("signed");
    let mut request = synapse
        .http
        .request(method, format!("{}{target}", synapse.federation_base))
        .header("authorization", authorization);
    if body.is_some() {
        request = request
            .header("content-type", "application/json")
            .body(bytes);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn synapse_checks_teatime_signed_requests() {
    let synapse = Synapse::start().await;
    let teatime = teatime().await;
    let sam = synapse.register("sam", PASSWORD).await;
    let name = teatime_name(&teatime);
    let key = teatime_key(&teatime);
    let profile_target = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        encode(&sam.user_id)
    );

    // A GET signed with TeaTime's key: Synapse fetches TeaTime's keys and answers.
    let (status, profile) =
        signed_to_synapse(&synapse, Method::GET, &profile_target, None, name, &key).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "sam");

    // A POST whose JSON body the signature covers.
    let query = json!({ "device_keys": { &sam.user_id: [] } });
    let (status, keys) = signed_to_synapse(
        &synapse,
        Method::POST,
        "/_matrix/federation/v1/user/keys/query",
        Some(&query),
        name,
        &key,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    assert!(keys["device_keys"].is_object(), "{keys}");

    // Refused: a key TeaTime does not have, and no signature at all.
    let dir = tempfile::tempdir().unwrap();
    let forged = SigningKey::load_or_generate(&dir.path().join("forged.key")).unwrap();
    let (status, body) =
        signed_to_synapse(&synapse, Method::GET, &profile_target, None, name, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = synapse
        .federation_call(Method::GET, &profile_target, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    teatime.finish().await;
}

/// Sets the user's display name and avatar through their own server.
async fn set_profile(api: &Client, user_id: &str, displayname: &str, avatar_url: &str) {
    for (field, value) in [("displayname", displayname), ("avatar_url", avatar_url)] {
        let (status, body) = send_json(
            &api.http,
            Method::PUT,
            &format!(
                "{}/_matrix/client/v3/profile/{}/{field}",
                api.base,
                encode(user_id)
            ),
            Some(&api.token),
            Some(json!({ field: value })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn profiles_are_read_across_both_ways() {
    let (synapse, sam, teatime, alice) = peers().await;
    set_profile(
        &synapse.client(&sam),
        &sam.user_id,
        "Sam on Synapse",
        "mxc://example.org/sam",
    )
    .await;
    set_profile(
        &teatime.client(&alice),
        &alice.user_id,
        "Alice on TeaTime",
        "mxc://example.org/alice",
    )
    .await;
    let profile_path = |user_id: &str| format!("/_matrix/client/v3/profile/{}", encode(user_id));

    // TeaTime asks Synapse (X-Matrix signed by TeaTime, checked by Synapse).
    let (status, profile) = teatime
        .get(&profile_path(&sam.user_id), Some(&alice.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "Sam on Synapse");
    assert_eq!(profile["avatar_url"], "mxc://example.org/sam");
    let (status, name) = teatime
        .get(
            &format!("{}/displayname", profile_path(&sam.user_id)),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["displayname"], "Sam on Synapse");
    let ghost = format!("@ghost:{}", synapse.server_name);
    let missing = teatime
        .get(&profile_path(&ghost), Some(&alice.access_token))
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Synapse asks TeaTime (X-Matrix signed by Synapse, checked by TeaTime).
    let (status, profile) = synapse
        .call(
            Method::GET,
            &profile_path(&alice.user_id),
            Some(&sam.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "Alice on TeaTime");
    assert_eq!(profile["avatar_url"], "mxc://example.org/alice");
    let (status, url) = synapse
        .call(
            Method::GET,
            &format!("{}/avatar_url", profile_path(&alice.user_id)),
            Some(&sam.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{url}");
    assert_eq!(url["avatar_url"], "mxc://example.org/alice");
    let ghost = format!("@ghost:{}", teatime_name(&teatime));
    let (status, body) = synapse
        .call(
            Method::GET,
            &profile_path(&ghost),
            Some(&sam.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    teatime.finish().await;
}

/// Uploads a picture through `uploader` (whose server is `origin`), then
/// downloads it and a 32x32 thumbnail of it through `downloader`, a user
/// of the other server, whose server fetches them over federation.
async fn media_crosses(uploader: Client, origin: &str, downloader: Client) {
    let picture = png(120, 80);
    let response = uploader
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename=picture.png",
            uploader.base
        ))
        .bearer_auth(&uploader.token)
        .header("content-type", "image/png")
        .body(picture.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::OK);
    let uri = response.json::<Value>().await.unwrap()["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned();
    let media_id = uri
        .strip_prefix(&format!("mxc://{origin}/"))
        .unwrap_or_else(|| panic!("not an mxc URI of {origin}: {uri}"));
    let media = format!("{}/{media_id}", encode(origin));

    let response = downloader
        .get_raw(&format!("/_matrix/client/v1/media/download/{media}"))
        .await;
    let status = response.status();
    let content_type = response.headers().get("content-type").cloned();
    let body = response.bytes().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type.unwrap(), "image/png");
    assert!(body.as_ref() == picture.as_slice(), "the bytes differ");

    let response = downloader
        .get_raw(&format!(
            "/_matrix/client/v1/media/thumbnail/{media}?width=32&height=32&method=crop"
        ))
        .await;
    let status = response.status();
    let body = response.bytes().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let thumbnail = image::load_from_memory(&body).expect("an image");
    assert_eq!((thumbnail.width(), thumbnail.height()), (32, 32));

    let missing = downloader
        .get_raw(&format!(
            "/_matrix/client/v1/media/download/{}/nosuchmedia",
            encode(origin)
        ))
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn synapse_media_is_downloaded_through_teatime() {
    let (synapse, sam, teatime, alice) = peers().await;
    media_crosses(
        synapse.client(&sam),
        &synapse.server_name,
        teatime.client(&alice),
    )
    .await;
    teatime.finish().await;
}

#[tokio::test]
async fn teatime_media_is_downloaded_through_synapse() {
    let (synapse, sam, teatime, alice) = peers().await;
    media_crosses(
        teatime.client(&alice),
        teatime_name(&teatime).as_str(),
        synapse.client(&sam),
    )
    .await;
    teatime.finish().await;
}
