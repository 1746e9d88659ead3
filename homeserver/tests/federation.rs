//! The Server-Server API between TeaTime servers on loopback: server keys
//! and the notary, X-Matrix signed requests (and the refusal of bad ones),
//! and a remote profile looked up through the user's server.

mod common;

use std::sync::Arc;

use common::{
    Backend, PASSWORD, TestServer, assert_error, encode, png,
    signed::{https, server_name, signed_request},
};
use federation::{
    keys::SigningKey,
    request_auth::{RequestParts, authorization_header},
    server_keys::verify_server_keys,
};
use reqwest::{Method, StatusCode};
use ruma::{CanonicalJsonObject, MilliSecondsSinceUnixEpoch, ServerName};
use serde_json::{Value, json};

on_both_backends!(
    servers_publish_and_notarise_keys,
    signed_requests_are_checked,
    remote_profiles_come_from_the_users_server,
    remote_media_is_fetched_once_and_kept,
);

async fn get_json(url: &str) -> (StatusCode, Value) {
    let response = https().get(url).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn servers_publish_and_notarise_keys(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    // Over the federation listener (HTTPS), as other servers ask.
    let (status, document) = get_json(&format!(
        "https://{}/_matrix/key/v2/server",
        b.federation_addr()
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{document}");
    let document: CanonicalJsonObject = serde_json::from_value(document).unwrap();
    let checked = verify_server_keys(document, server_name(&b), MilliSecondsSinceUnixEpoch::now())
        .expect("a self-signed key document");
    assert!(!checked.expired);
    assert_eq!(checked.verify_keys.len(), 1);

    // A notarises B's keys: B's signature and A's.
    let (status, answer) = a
        .get(
            &format!("/_matrix/key/v2/query/{}", encode(server_name(&b).as_str())),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let documents = answer["server_keys"].as_array().unwrap();
    assert_eq!(documents.len(), 1, "{answer}");
    let signatures = documents[0]["signatures"].as_object().unwrap();
    assert!(
        signatures.contains_key(server_name(&a).as_str()),
        "{answer}"
    );
    assert!(
        signatures.contains_key(server_name(&b).as_str()),
        "{answer}"
    );
    let notarised: CanonicalJsonObject = serde_json::from_value(documents[0].clone()).unwrap();
    verify_server_keys(
        notarised,
        server_name(&b),
        MilliSecondsSinceUnixEpoch::now(),
    )
    .expect("still B's own document");

    // The batch form; a server that cannot be reached is left out.
    let (status, answer) = a
        .post(
            "/_matrix/key/v2/query",
            None,
            json!({ "server_keys": {
                server_name(&b).as_str(): {},
                server_name(&a).as_str(): {},
                "127.0.0.1:1": {},
            } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut named: Vec<&str> = answer["server_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["server_name"].as_str().unwrap())
        .collect();
    named.sort();
    let mut expected = vec![server_name(&a).as_str(), server_name(&b).as_str()];
    expected.sort();
    assert_eq!(named, expected);

    let (status, version) = get_json(&format!(
        "https://{}/_matrix/federation/v1/version",
        a.federation_addr()
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version["server"]["name"], "TeaTime");
    a.finish().await;
    b.finish().await;
}

async fn signed_get(
    to: &TestServer,
    target: &str,
    origin: &ServerName,
    destination: &ServerName,
    key: &SigningKey,
) -> (StatusCode, Value) {
    signed_request(to, Method::GET, target, None, origin, destination, key).await
}

async fn signed_requests_are_checked(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let bob = b.register("bob", PASSWORD).await;
    let target = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        encode(&bob.user_id)
    );
    let a_key = SigningKey::load_or_generate(&a.config().data_dir.join("signing.key")).unwrap();

    // Signed by A with A's real key: B fetches A's keys and accepts.
    let (status, profile) = signed_get(&b, &target, server_name(&a), server_name(&b), &a_key).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "bob");

    // Unsigned.
    let (status, body) = get_json(&format!("https://{}{target}", b.federation_addr())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Signed for another destination.
    let (status, body) = signed_get(&b, &target, server_name(&a), server_name(&a), &a_key).await;
    assert_error(&(status, body), StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
    // Claiming to be A with a key A does not have.
    let dir = tempfile::tempdir().unwrap();
    let forged = SigningKey::load_or_generate(&dir.path().join("forged.key")).unwrap();
    let (status, body) = signed_get(&b, &target, server_name(&a), server_name(&b), &forged).await;
    assert_error(&(status, body), StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
    // A signature over another request (a different user asked about).
    let other_target = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        encode(&format!("@eve:{}", server_name(&b)))
    );
    let authorization = authorization_header(
        &a_key,
        server_name(&a),
        server_name(&b),
        RequestParts {
            method: &Method::GET,
            uri: &other_target,
            body: b"",
        },
    )
    .unwrap();
    let replayed = https()
        .get(format!("https://{}{target}", b.federation_addr()))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    // Claiming to be B itself, from outside.
    let b_key =
        Arc::new(SigningKey::load_or_generate(&b.config().data_dir.join("signing.key")).unwrap());
    let (status, body) = signed_get(&b, &target, server_name(&b), server_name(&b), &b_key).await;
    assert_error(&(status, body), StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
    a.finish().await;
    b.finish().await;
}

async fn remote_profiles_come_from_the_users_server(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let (status, _) = b
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                encode(&bob.user_id)
            ),
            Some(&bob.access_token),
            json!({ "displayname": "Bob on B" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, profile) = a
        .get(
            &format!("/_matrix/client/v3/profile/{}", encode(&bob.user_id)),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "Bob on B");
    let (status, name) = a
        .get(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                encode(&bob.user_id)
            ),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["displayname"], "Bob on B");
    let ghost = format!("@ghost:{}", server_name(&b));
    let missing = a
        .get(
            &format!("/_matrix/client/v3/profile/{}", encode(&ghost)),
            Some(&alice.access_token),
        )
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    a.finish().await;
    b.finish().await;
}

async fn remote_media_is_fetched_once_and_kept(backend: Backend) {
    let a = TestServer::start_federating(backend).await;
    let b = TestServer::start_federating(backend).await;
    let alice = a.register("alice", PASSWORD).await;
    let bob = b.register("bob", PASSWORD).await;
    let picture = png(200, 100);
    let uploaded = a
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename=cat.png",
            a.base
        ))
        .bearer_auth(&alice.access_token)
        .header("content-type", "image/png")
        .body(picture.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::OK);
    let content_uri = uploaded.json::<Value>().await.unwrap()["content_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let (origin, media_id) = content_uri
        .strip_prefix("mxc://")
        .unwrap()
        .split_once('/')
        .unwrap();
    assert_eq!(origin, server_name(&a).as_str());

    // Bob's server fetches it from Alice's over federation.
    let download = |path: String| {
        let http = b.http.clone();
        let url = format!("{}{path}", b.base);
        let token = bob.access_token.clone();
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let response = download(format!(
        "/_matrix/client/v1/media/download/{}/{media_id}",
        encode(origin)
    ))
    .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.text().await
    );
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(
        response.headers()["content-disposition"],
        "inline; filename*=utf-8''cat.png"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), picture.as_slice());
    assert!(
        b.state()
            .store
            .remote_media(origin, media_id)
            .await
            .unwrap()
            .is_some(),
        "kept on Bob's server"
    );
    let thumbnail = download(format!(
        "/_matrix/client/v1/media/thumbnail/{}/{media_id}?width=32&height=32&method=crop",
        encode(origin)
    ))
    .await;
    assert_eq!(thumbnail.status(), StatusCode::OK);
    let decoded = image::load_from_memory(&thumbnail.bytes().await.unwrap()).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (32, 32));

    // Served from Bob's server once kept, even with Alice's server gone.
    a.finish().await;
    let again = download(format!(
        "/_matrix/client/v1/media/download/{}/{media_id}",
        encode(origin)
    ))
    .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.bytes().await.unwrap().as_ref(), picture.as_slice());
    let missing = download(format!(
        "/_matrix/client/v1/media/download/{}/nosuchmedia",
        encode(origin)
    ))
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The federation endpoint itself wants a signed request.
    let (status, _) = get_json(&format!(
        "https://{}/_matrix/federation/v1/media/download/{media_id}",
        b.federation_addr()
    ))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    b.finish().await;
}
