//! Membership across servers: users of other servers joining and leaving
//! rooms here (`make_join`/`send_join`, `make_leave`/`send_leave`), this
//! server's users joining rooms held elsewhere, and invites both ways.

use std::collections::HashSet;

use federation::pdu::{Pdu, rules_for, sign_event};
use poem::http::Method;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId,
    RoomVersionId, ServerName, UserId,
};
use serde_json::{Value, json};

use super::intake::{object_list, take_pdus, verify_pdus};
use crate::{
    auth::Authed,
    error::{Error, Result},
    remote::encode,
    rooms::{Draft, JoinedRoom, Reception, Relay, membership::MembershipChange},
    state::AppState,
};

/// Joins and leaves go through one of the room's servers; how many to try.
const MAX_VIA: usize = 5;

fn to_value(pdu: &Pdu) -> Result<Value> {
    serde_json::to_value(&pdu.json).map_err(|e| Error::Internal(format!("event JSON: {e}")))
}

fn values(list: &[std::sync::Arc<Pdu>]) -> Result<Vec<Value>> {
    list.iter().map(|pdu| to_value(pdu)).collect()
}

/// The events of `list` that checked out and belong to `room_id`.
fn checked_events(list: Vec<Result<Pdu>>, room_id: &RoomId, what: &str) -> Vec<Pdu> {
    list.into_iter()
        .filter_map(|checked| match checked {
            Ok(pdu) if pdu.room_id.as_deref().is_none_or(|r| r == room_id) => Some(pdu),
            Ok(pdu) => {
                tracing::info!(event_id = %pdu.event_id, "{what} of another room dropped");
                None
            }
            Err(e) => {
                tracing::info!(error = %e, "{what} dropped");
                None
            }
        })
        .collect()
}

/// Refuses `origin` where the policy or the room's ACL does.
async fn check_origin(state: &AppState, origin: &ServerName, room_id: &RoomId) -> Result<()> {
    if !state.policy.room_allows(room_id.as_str(), origin).await? {
        return Err(Error::Forbidden(format!(
            "{origin} is not allowed in this room by its server ACL"
        )));
    }
    Ok(())
}

/// `GET /make_join` and `/make_leave`: an unsigned membership event for a
/// user of `origin`, in a room version the joining server supports.
pub async fn make_membership(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    membership: &str,
    supported_versions: &[String],
) -> Result<Value> {
    if user_id.server_name() != origin {
        return Err(Error::Forbidden(format!(
            "{user_id} is not a user of {origin}"
        )));
    }
    check_origin(state, origin, room_id).await?;
    if state.store.room(room_id.as_str()).await?.is_none() {
        return Err(Error::NotFound("this server is not in that room".into()));
    }
    let (version, event) = state
        .rooms
        .membership_template(room_id, user_id, membership, json!({}))
        .await?;
    if membership == "join" && !supported_versions.iter().any(|v| v == version.as_str()) {
        return Err(Error::IncompatibleRoomVersion(version.to_string()));
    }
    Ok(json!({ "room_version": version.as_str(), "event": event }))
}

/// `PUT /v2/send_join` and `/v2/send_leave`: takes the signed membership
/// event of a user of `origin` into the room and relays it to the room's
/// other servers. A join gets the room's state and auth chain back.
pub async fn send_membership(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    membership: &str,
    event: CanonicalJsonObject,
) -> Result<Value> {
    check_origin(state, origin, room_id).await?;
    let sender = event.get("sender").and_then(CanonicalJsonValue::as_str);
    let state_key = event.get("state_key").and_then(CanonicalJsonValue::as_str);
    let content_membership = event
        .get("content")
        .and_then(CanonicalJsonValue::as_object)
        .and_then(|c| c.get("membership"))
        .and_then(CanonicalJsonValue::as_str);
    let from_origin = sender
        .and_then(|s| <&UserId>::try_from(s).ok())
        .is_some_and(|user| user.server_name() == origin);
    if event.get("type").and_then(CanonicalJsonValue::as_str) != Some("m.room.member")
        || sender.is_none()
        || sender != state_key
        || content_membership != Some(membership)
        || !from_origin
    {
        return Err(Error::BadJson(format!(
            "expected the {membership} of a user of {origin} by themselves"
        )));
    }
    let outcomes = take_pdus(state, origin, room_id, vec![event], Relay::AllBut(origin)).await?;
    match outcomes.iter().find(|(id, _)| **id == *event_id) {
        Some((_, Reception::Stored | Reception::Known)) => {}
        Some((_, Reception::Rejected(reason))) => return Err(Error::Forbidden(reason.clone())),
        Some((_, Reception::SoftFailed)) => {
            return Err(Error::Forbidden(
                "the room's current state does not allow it".into(),
            ));
        }
        None => {
            return Err(Error::BadJson(
                "the event id does not match the event, or its signature is invalid".into(),
            ));
        }
    }
    if membership != "join" {
        return Ok(json!({}));
    }
    let at = state.rooms.state_and_auth_before(room_id, event_id).await?;
    let stored = state
        .rooms
        .stored_events(&[event_id.to_string()])
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the join just stored is gone".into()))?;
    Ok(json!({
        "origin": state.remote.server_name().as_str(),
        "state": values(&at.state)?,
        "auth_chain": values(&at.auth_chain)?,
        "event": serde_json::from_str::<Value>(&stored.json).unwrap_or(Value::Null),
        "members_omitted": false,
    }))
}

/// The servers to ask about a room: those given, then the one in a room
/// id that names its server (room versions before 12).
fn candidates(room_id: &RoomId, via: &[OwnedServerName], own: &ServerName) -> Vec<OwnedServerName> {
    let mut servers: Vec<OwnedServerName> = via.to_vec();
    if let Some(server) = room_id.server_name() {
        servers.push(server.to_owned());
    }
    let mut seen = HashSet::new();
    servers.retain(|s| s != own && seen.insert(s.clone()));
    servers.truncate(MAX_VIA);
    servers
}

/// Joins `user` to a room this server is not in, through one of `via`.
pub async fn join_remote(
    state: &AppState,
    user: &Authed,
    room_id: &RoomId,
    via: &[OwnedServerName],
    content: Value,
) -> Result<OwnedEventId> {
    let servers = candidates(room_id, via, state.remote.server_name());
    if servers.is_empty() {
        return Err(Error::NotFound(
            "no server to join the room through is known (give server_name)".into(),
        ));
    }
    let mut last_error = None;
    for server in servers {
        if !state.policy.may_federate_with(&server).await {
            last_error = Some(Error::Forbidden(format!(
                "federation with {server} is not allowed"
            )));
            continue;
        }
        match join_through(state, user, room_id, &server, content.clone()).await {
            Ok(event_id) => return Ok(event_id),
            Err(e) => {
                tracing::info!(%room_id, %server, error = %e, "joining through this server failed");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| Error::NotFound("the room could not be joined".into())))
}

/// Fills, signs and sends a membership template another server made.
async fn complete_template(
    state: &AppState,
    server: &ServerName,
    user: &UserId,
    room_id: &RoomId,
    membership: &str,
    content: Value,
) -> Result<(RoomVersionId, Pdu)> {
    let versions: String = federation::pdu::SUPPORTED_ROOM_VERSIONS
        .iter()
        .map(|v| format!("ver={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let path = format!(
        "/_matrix/federation/v1/make_{membership}/{}/{}?{versions}",
        encode(room_id.as_str()),
        encode(user.as_str()),
    );
    let answer = state
        .remote
        .request(server, Method::GET, &path, None)
        .await?;
    let version = answer["room_version"]
        .as_str()
        .and_then(|v| RoomVersionId::try_from(v).ok())
        .unwrap_or(RoomVersionId::V1);
    let rules =
        rules_for(&version).map_err(|_| Error::IncompatibleRoomVersion(version.to_string()))?;
    let mut template: CanonicalJsonObject = serde_json::from_value(answer["event"].clone())
        .map_err(|e| Error::BadGateway(format!("{server} sent a bad template: {e}")))?;
    let is_ours = |field: &str, expected: &str| {
        template.get(field).and_then(CanonicalJsonValue::as_str) == Some(expected)
    };
    if !is_ours("sender", user.as_str())
        || !is_ours("state_key", user.as_str())
        || !is_ours("type", "m.room.member")
        || !is_ours("room_id", room_id.as_str())
    {
        return Err(Error::BadGateway(format!(
            "{server} sent a template for something else"
        )));
    }
    let mut content = content;
    content["membership"] = membership.into();
    template.insert(
        "content".into(),
        CanonicalJsonValue::try_from(content).map_err(|e| Error::BadJson(e.to_string()))?,
    );
    template.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(ruma::MilliSecondsSinceUnixEpoch::now().get().into()),
    );
    let origin = state.remote.server_name().as_str();
    let pdu = sign_event(template, origin, state.rooms.signing_key(), &rules)?;
    Ok((version, pdu))
}

async fn join_through(
    state: &AppState,
    user: &Authed,
    room_id: &RoomId,
    server: &ServerName,
    content: Value,
) -> Result<OwnedEventId> {
    let (version, join) =
        complete_template(state, server, &user.user_id, room_id, "join", content).await?;
    let rules = rules_for(&version)?;
    let path = format!(
        "/_matrix/federation/v2/send_join/{}/{}",
        encode(room_id.as_str()),
        encode(join.event_id.as_str()),
    );
    let body = to_value(&join)?;
    let answer = state
        .remote
        .request(server, Method::PUT, &path, Some(&body))
        .await?;
    // The resident server may have added its signature (restricted joins).
    let join = match serde_json::from_value::<CanonicalJsonObject>(answer["event"].clone()) {
        Ok(signed) => verify_pdus(&state.remote, &rules, vec![signed])
            .await
            .pop()
            .and_then(Result::ok)
            .filter(|pdu| pdu.event_id == join.event_id)
            .unwrap_or(join),
        Err(_) => join,
    };
    let room_state = checked_events(
        verify_pdus(&state.remote, &rules, object_list(&answer["state"])).await,
        room_id,
        "state event",
    );
    let auth_chain = checked_events(
        verify_pdus(&state.remote, &rules, object_list(&answer["auth_chain"])).await,
        room_id,
        "auth chain event",
    );
    let room_state = federation::state::authorised_state(&rules, room_state, &auth_chain)?;
    let event_id = join.event_id.clone();
    state
        .rooms
        .enter_remote_room(
            room_id,
            JoinedRoom {
                version,
                join,
                state: room_state,
                auth_chain,
            },
        )
        .await?;
    tracing::info!(%room_id, %server, user = %user.user_id, "joined a room on another server");
    Ok(event_id)
}

/// Leaves (or refuses an invite to) a room this server is not in, through
/// `via`; returns the leave event the other server took.
pub async fn leave_remote(
    state: &AppState,
    user: &Authed,
    room_id: &RoomId,
    via: &[OwnedServerName],
) -> Result<(RoomVersionId, Pdu)> {
    let mut last_error = None;
    for server in candidates(room_id, via, state.remote.server_name()) {
        let attempt = async {
            let (version, leave) =
                complete_template(state, &server, &user.user_id, room_id, "leave", json!({}))
                    .await?;
            let path = format!(
                "/_matrix/federation/v2/send_leave/{}/{}",
                encode(room_id.as_str()),
                encode(leave.event_id.as_str()),
            );
            state
                .remote
                .request(&server, Method::PUT, &path, Some(&to_value(&leave)?))
                .await?;
            Ok::<_, Error>((version, leave))
        };
        match attempt.await {
            Ok(left) => return Ok(left),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| Error::NotFound("no server to leave the room through".into())))
}

/// Invites a user of another server to a room here: their server co-signs
/// the invite, then it enters the room like any event.
pub async fn invite_remote(
    state: &AppState,
    sender: &Authed,
    room_id: &RoomId,
    invitee: &UserId,
    content: Value,
) -> Result<OwnedEventId> {
    let server = invitee.server_name();
    if !state.policy.may_federate_with(server).await {
        return Err(Error::Forbidden(format!(
            "federation with {server} is not allowed"
        )));
    }
    let mut content = content;
    content["membership"] = "invite".into();
    let draft = Draft::state("m.room.member", invitee.as_str(), content);
    let (version, invite) = state
        .rooms
        .event_to_complete(room_id, &sender.user_id, draft)
        .await?;
    let path = format!(
        "/_matrix/federation/v2/invite/{}/{}",
        encode(room_id.as_str()),
        encode(invite.event_id.as_str()),
    );
    let body = json!({
        "event": to_value(&invite)?,
        "room_version": version.as_str(),
        "invite_room_state": state.rooms.stripped_state(room_id).await?,
    });
    let answer = state
        .remote
        .request(server, Method::PUT, &path, Some(&body))
        .await?;
    let signed: CanonicalJsonObject = serde_json::from_value(answer["event"].clone())
        .map_err(|e| Error::BadGateway(format!("{server} answered the invite badly: {e}")))?;
    let own = state.remote.server_name().to_owned();
    let outcomes = take_pdus(state, &own, room_id, vec![signed], Relay::AllBut(&own)).await?;
    match outcomes.into_iter().find(|(id, _)| *id == invite.event_id) {
        Some((id, Reception::Stored | Reception::Known)) => Ok(id),
        Some((_, other)) => Err(Error::Forbidden(format!(
            "the invite was not accepted: {other:?}"
        ))),
        None => Err(Error::BadGateway(format!(
            "{server} changed the invite it signed"
        ))),
    }
}

/// `PUT /v2/invite`: a user of this server is invited to a room on
/// `origin`: the invite is co-signed and kept for the user's sync.
pub async fn receive_invite(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    body: &Value,
) -> Result<Value> {
    let version = body["room_version"]
        .as_str()
        .and_then(|v| RoomVersionId::try_from(v).ok())
        .ok_or_else(|| Error::BadJson("room_version is required".into()))?;
    let rules =
        rules_for(&version).map_err(|_| Error::IncompatibleRoomVersion(version.to_string()))?;
    let event: CanonicalJsonObject = serde_json::from_value(body["event"].clone())
        .map_err(|e| Error::BadJson(format!("event: {e}")))?;
    let invite = verify_pdus(&state.remote, &rules, vec![event])
        .await
        .pop()
        .unwrap_or_else(|| Err(Error::BadJson("no event".into())))?;
    let invitee = invite
        .state_key
        .as_deref()
        .and_then(|k| <&UserId>::try_from(k).ok())
        .ok_or_else(|| Error::BadJson("the invite has no valid state_key".into()))?;
    let membership = invite.content_value()?["membership"].clone();
    if invite.event_id != event_id
        || invite.kind.to_string() != "m.room.member"
        || membership != "invite"
        || invite.room_id.as_deref().is_some_and(|r| r != room_id)
        || invite.sender.server_name() != origin
    {
        return Err(Error::BadJson(format!(
            "expected an invite from a user of {origin} with id {event_id}"
        )));
    }
    if invitee.server_name() != state.remote.server_name() {
        return Err(Error::BadJson(format!(
            "{invitee} is not a user of this server"
        )));
    }
    if state.store.user(invitee.as_str()).await?.is_none() {
        return Err(Error::NotFound(format!("{invitee} does not exist")));
    }
    let signed = sign_event(
        invite.json.clone(),
        state.remote.server_name().as_str(),
        state.rooms.signing_key(),
        &rules,
    )?;
    state
        .rooms
        .keep_remote_membership(room_id, &version, &signed, Some(&body["invite_room_state"]))
        .await?;
    Ok(json!({ "event": to_value(&signed)? }))
}

/// How this server stands in a room.
struct Standing {
    /// It holds the room's graph (it created or joined it, not only invited).
    has_graph: bool,
    local_joined: bool,
    /// Other servers with users joined.
    others: Vec<OwnedServerName>,
}

async fn standing(state: &AppState, room_id: &RoomId) -> Result<Standing> {
    let own = state.remote.server_name();
    let joined = state.store.joined_users(room_id.as_str()).await?;
    let mut others = Vec::new();
    let mut local_joined = false;
    for user in &joined {
        match <&UserId>::try_from(user.as_str()) {
            Ok(user) if user.server_name() == own => local_joined = true,
            Ok(user) => {
                if !others
                    .iter()
                    .any(|s: &OwnedServerName| s == user.server_name())
                {
                    others.push(user.server_name().to_owned());
                }
            }
            Err(_) => {}
        }
    }
    let has_graph = !state.store.extremities(room_id.as_str()).await?.is_empty();
    Ok(Standing {
        has_graph,
        local_joined,
        others,
    })
}

/// The server whose user sent `user_id`'s current membership event (the
/// inviter's, for an invite).
async fn membership_sender_server(
    state: &AppState,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<Option<OwnedServerName>> {
    let events = state
        .store
        .current_state(room_id.as_str(), Some("m.room.member"))
        .await?;
    Ok(events
        .iter()
        .find(|e| e.state_key.as_deref() == Some(user_id.as_str()))
        .and_then(|e| UserId::parse(&e.sender).ok())
        .map(|sender| sender.server_name().to_owned()))
}

/// `POST /join/{roomIdOrAlias}` and `/rooms/{roomId}/join`: a join here when
/// this server is in the room, else through one of the room's servers.
pub async fn join(
    state: &AppState,
    user: &Authed,
    room_id: &RoomId,
    via: &[OwnedServerName],
    reason: Option<String>,
) -> Result<()> {
    let standing = standing(state, room_id).await?;
    if standing.has_graph && (standing.local_joined || standing.others.is_empty()) {
        state.rooms.join(room_id, user, reason).await?;
        return Ok(());
    }
    let mut servers = via.to_vec();
    servers.extend(membership_sender_server(state, room_id, &user.user_id).await?);
    servers.extend(standing.others);
    let mut content = state
        .rooms
        .member_content(&user.user_id, "join", reason)
        .await?;
    if let Some(object) = content.as_object_mut() {
        object.remove("membership");
    }
    join_remote(state, user, room_id, &servers, content).await?;
    state
        .store
        .unforget_room(user.user_id.as_str(), room_id.as_str())
        .await
}

/// `POST /rooms/{roomId}/leave`: here, or (for an invite to a room this
/// server is not in) through the inviting server.
pub async fn leave(
    state: &AppState,
    user: &Authed,
    room_id: &RoomId,
    reason: Option<String>,
) -> Result<()> {
    let standing = standing(state, room_id).await?;
    if standing.has_graph {
        state.rooms.leave(room_id, user, reason).await?;
        return Ok(());
    }
    let Some(inviter) = membership_sender_server(state, room_id, &user.user_id).await? else {
        return Err(Error::NotFound("you are not in this room".into()));
    };
    let (version, leave) = match leave_remote(state, user, room_id, &[inviter]).await {
        Ok(left) => left,
        // The inviting server cannot be reached: the invite is refused here alone.
        Err(e) => {
            tracing::info!(%room_id, error = %e, "the inviting server did not take the refusal");
            let version = state
                .store
                .room(room_id.as_str())
                .await?
                .and_then(|room| RoomVersionId::try_from(room.room_version.as_str()).ok())
                .unwrap_or(RoomVersionId::V12);
            let leave = state
                .rooms
                .local_only_leave(room_id, &user.user_id, &version)?;
            (version, leave)
        }
    };
    state
        .rooms
        .keep_remote_membership(room_id, &version, &leave, None)
        .await
}

/// `POST /rooms/{roomId}/invite`: users of other servers through their server.
pub async fn invite(
    state: &AppState,
    sender: &Authed,
    room_id: &RoomId,
    invitee: &UserId,
    reason: Option<String>,
) -> Result<()> {
    if invitee.server_name() == state.remote.server_name() {
        state
            .rooms
            .change_membership(room_id, sender, invitee, MembershipChange::Invite, reason)
            .await?;
        return Ok(());
    }
    let mut content = json!({});
    if let Some(reason) = reason {
        content["reason"] = reason.into();
    }
    invite_remote(state, sender, room_id, invitee, content).await?;
    Ok(())
}

/// The servers with users in the room, this one first (where to join it).
pub async fn room_servers(state: &AppState, room_id: &RoomId) -> Result<Vec<OwnedServerName>> {
    let standing = standing(state, room_id).await?;
    let mut servers = Vec::with_capacity(standing.others.len() + 1);
    if standing.local_joined {
        servers.push(state.remote.server_name().to_owned());
    }
    servers.extend(standing.others);
    Ok(servers)
}

/// A room id, or the room an alias names (asking the alias's server for
/// aliases of other servers), with servers to join it through.
pub async fn resolve_room(
    state: &AppState,
    id_or_alias: &str,
) -> Result<(ruma::OwnedRoomId, Vec<OwnedServerName>)> {
    if !id_or_alias.starts_with('#') {
        return Ok((state.directory.resolve_room(id_or_alias).await?, Vec::new()));
    }
    let alias = crate::directory::parse_alias(id_or_alias)?;
    if alias.server_name() == state.remote.server_name() {
        return Ok((state.directory.resolve_room(id_or_alias).await?, Vec::new()));
    }
    let path = format!(
        "/_matrix/federation/v1/query/directory?room_alias={}",
        encode(alias.as_str())
    );
    let answer = state
        .remote
        .request(alias.server_name(), Method::GET, &path, None)
        .await?;
    let room_id = answer["room_id"]
        .as_str()
        .and_then(|id| ruma::RoomId::parse(id).ok())
        .ok_or_else(|| {
            Error::BadGateway(format!(
                "{} answered the alias query badly",
                alias.server_name()
            ))
        })?;
    let mut servers: Vec<OwnedServerName> = answer["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().and_then(|s| ServerName::parse(s).ok()))
        .collect();
    servers.push(alias.server_name().to_owned());
    Ok((room_id, servers))
}

/// `POST /createRoom`: invitees of other servers are invited through their
/// servers once the room exists.
pub async fn create_room(
    state: &AppState,
    creator: &Authed,
    mut request: crate::rooms::CreateRoom,
) -> Result<ruma::OwnedRoomId> {
    let own = state.remote.server_name();
    let (local, remote): (Vec<_>, Vec<_>) = std::mem::take(&mut request.invite)
        .into_iter()
        .partition(|user| user.server_name() == own);
    request.invite = local;
    let is_direct = request.is_direct;
    let room_id = state.rooms.create_room(creator, request).await?;
    for invitee in remote {
        let content = if is_direct {
            json!({ "is_direct": true })
        } else {
            json!({})
        };
        invite_remote(state, creator, &room_id, &invitee, content).await?;
    }
    Ok(room_id)
}
