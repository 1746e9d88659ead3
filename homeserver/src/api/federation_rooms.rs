//! The Server-Server API for rooms: transactions, joins, leaves and
//! invites of other servers' users, and a room's history and state for
//! the servers in it. Every request is X-Matrix signed by its origin.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{
    OpenApi,
    param::{Path, Query},
    payload::Json,
};
use ruma::{CanonicalJsonObject, OwnedEventId, OwnedServerName};
use serde_json::{Value, json};

use super::{
    ServerSignature, Tag,
    directory::{PublicRoomsRequest, PublicRoomsResponse},
    parse_event_id, parse_user_id,
};
use crate::{
    directory::{PublicRoomsQuery, parse_room_id},
    error::{Error, Result},
    servers::{history, membership, transactions},
    state::AppState,
};

/// Events one history request may ask for at most.
const MAX_LIMIT: usize = 100;

fn event_object(body: Value) -> Result<CanonicalJsonObject> {
    serde_json::from_value(body).map_err(|e| Error::BadJson(format!("not an event: {e}")))
}

fn event_ids(ids: &[String]) -> Result<Vec<OwnedEventId>> {
    ids.iter()
        .map(|id| parse_event_id(id).map(ToOwned::to_owned))
        .collect()
}

pub struct FederationRoomsApi;

#[OpenApi(tag = "Tag::Federation")]
impl FederationRoomsApi {
    /// # PUT /_matrix/federation/v1/send/{txnId}
    /// A transaction of PDUs and EDUs from another server.
    #[oai(
        path = "/_matrix/federation/v1/send/:txn_id",
        method = "put",
        operation_id = "sendTransaction"
    )]
    async fn send_transaction(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        #[oai(name = "txn_id")] _txn_id: Path<String>,
        body: Json<Value>,
    ) -> Result<Json<Value>> {
        Ok(Json(
            transactions::receive_transaction(&state, &origin.0, &body.0).await?,
        ))
    }

    /// # GET /_matrix/federation/v1/make_join/{roomId}/{userId}
    /// A join event template for a user of the asking server.
    #[oai(
        path = "/_matrix/federation/v1/make_join/:room_id/:user_id",
        method = "get",
        operation_id = "makeJoin"
    )]
    async fn make_join(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        user_id: Path<String>,
        ver: Query<Option<Vec<String>>>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let user_id = parse_user_id(&user_id.0)?;
        // Servers that name no version speak only version 1.
        let versions = ver.0.unwrap_or_else(|| vec!["1".into()]);
        Ok(Json(
            membership::make_membership(&state, &origin.0, room_id, &user_id, "join", &versions)
                .await?,
        ))
    }

    /// # PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}
    /// A signed join: the user joins, the server gets the room's state.
    #[oai(
        path = "/_matrix/federation/v2/send_join/:room_id/:event_id",
        method = "put",
        operation_id = "sendJoinV2"
    )]
    async fn send_join(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        event_id: Path<String>,
        body: Json<Value>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = parse_event_id(&event_id.0)?;
        Ok(Json(
            membership::send_membership(
                &state,
                &origin.0,
                room_id,
                event_id,
                "join",
                event_object(body.0)?,
            )
            .await?,
        ))
    }

    /// # GET /_matrix/federation/v1/make_leave/{roomId}/{userId}
    /// A leave event template for a user of the asking server.
    #[oai(
        path = "/_matrix/federation/v1/make_leave/:room_id/:user_id",
        method = "get",
        operation_id = "makeLeave"
    )]
    async fn make_leave(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        user_id: Path<String>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let user_id = parse_user_id(&user_id.0)?;
        Ok(Json(
            membership::make_membership(&state, &origin.0, room_id, &user_id, "leave", &[]).await?,
        ))
    }

    /// # PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}
    /// A signed leave (or refused invite) of a user of the asking server.
    #[oai(
        path = "/_matrix/federation/v2/send_leave/:room_id/:event_id",
        method = "put",
        operation_id = "sendLeaveV2"
    )]
    async fn send_leave(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        event_id: Path<String>,
        body: Json<Value>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = parse_event_id(&event_id.0)?;
        Ok(Json(
            membership::send_membership(
                &state,
                &origin.0,
                room_id,
                event_id,
                "leave",
                event_object(body.0)?,
            )
            .await?,
        ))
    }

    /// # PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
    /// An invite of a user of this server: co-signed and kept for them.
    #[oai(
        path = "/_matrix/federation/v2/invite/:room_id/:event_id",
        method = "put",
        operation_id = "sendInviteV2"
    )]
    async fn invite(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        event_id: Path<String>,
        body: Json<Value>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = parse_event_id(&event_id.0)?;
        Ok(Json(
            membership::receive_invite(&state, &origin.0, room_id, event_id, &body.0).await?,
        ))
    }

    /// # GET /_matrix/federation/v1/event/{eventId}
    /// One event, as the asking server may see it.
    #[oai(
        path = "/_matrix/federation/v1/event/:event_id",
        method = "get",
        operation_id = "getFederationEvent"
    )]
    async fn event(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        event_id: Path<String>,
    ) -> Result<Json<Value>> {
        let event_id = parse_event_id(&event_id.0)?;
        Ok(Json(history::event(&state, &origin.0, event_id).await?))
    }

    /// # GET /_matrix/federation/v1/state/{roomId}
    /// The room's state before an event, with its auth chain.
    #[oai(
        path = "/_matrix/federation/v1/state/:room_id",
        method = "get",
        operation_id = "getFederationRoomState"
    )]
    async fn room_state(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        event_id: Query<String>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = parse_event_id(&event_id.0)?;
        Ok(Json(
            history::state_at(&state, &origin.0, room_id, event_id, false).await?,
        ))
    }

    /// # GET /_matrix/federation/v1/state_ids/{roomId}
    /// The ids of the room's state before an event, and of its auth chain.
    #[oai(
        path = "/_matrix/federation/v1/state_ids/:room_id",
        method = "get",
        operation_id = "getFederationRoomStateIds"
    )]
    async fn room_state_ids(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        event_id: Query<String>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = parse_event_id(&event_id.0)?;
        Ok(Json(
            history::state_at(&state, &origin.0, room_id, event_id, true).await?,
        ))
    }

    /// # GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
    /// The auth chain of an event.
    #[oai(
        path = "/_matrix/federation/v1/event_auth/:room_id/:event_id",
        method = "get",
        operation_id = "getEventAuth"
    )]
    async fn event_auth(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        event_id: Path<String>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let event_id = parse_event_id(&event_id.0)?;
        Ok(Json(
            history::event_auth(&state, &origin.0, room_id, event_id).await?,
        ))
    }

    /// # GET /_matrix/federation/v1/backfill/{roomId}
    /// Older events, from the given ones backwards.
    #[oai(
        path = "/_matrix/federation/v1/backfill/:room_id",
        method = "get",
        operation_id = "backfillRoom"
    )]
    async fn backfill(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        v: Query<Vec<String>>,
        limit: Query<usize>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let from = event_ids(&v.0)?;
        Ok(Json(
            history::backfill(&state, &origin.0, room_id, &from, limit.0.min(MAX_LIMIT)).await?,
        ))
    }

    /// # POST /_matrix/federation/v1/get_missing_events/{roomId}
    /// The events between what the asking server has and what it received.
    #[oai(
        path = "/_matrix/federation/v1/get_missing_events/:room_id",
        method = "post",
        operation_id = "getMissingPreviousEvents"
    )]
    async fn missing_events(
        &self,
        state: Data<&Arc<AppState>>,
        origin: ServerSignature,
        room_id: Path<String>,
        body: Json<Value>,
    ) -> Result<Json<Value>> {
        let room_id = parse_room_id(&room_id.0)?;
        let list = |field: &str| -> Result<Vec<OwnedEventId>> {
            let ids: Vec<String> = serde_json::from_value(body.0[field].clone())
                .map_err(|e| Error::BadJson(format!("{field}: {e}")))?;
            event_ids(&ids)
        };
        let limit = body.0["limit"]
            .as_u64()
            .map_or(10, |l| usize::try_from(l).unwrap_or(MAX_LIMIT));
        let min_depth = body.0["min_depth"].as_u64().unwrap_or(0);
        Ok(Json(
            history::missing_events(
                &state,
                &origin.0,
                room_id,
                &list("earliest_events")?,
                &list("latest_events")?,
                limit.min(MAX_LIMIT),
                min_depth,
            )
            .await?,
        ))
    }

    /// # GET /_matrix/federation/v1/publicRooms
    /// A page of this server's published room directory, for another server.
    #[oai(
        path = "/_matrix/federation/v1/publicRooms",
        method = "get",
        operation_id = "federationPublicRooms"
    )]
    async fn public_rooms(
        &self,
        state: Data<&Arc<AppState>>,
        _origin: ServerSignature,
        limit: Query<Option<i64>>,
        since: Query<Option<String>>,
        third_party_instance_id: Query<Option<String>>,
    ) -> Result<Json<PublicRoomsResponse>> {
        let query = PublicRoomsQuery {
            limit: limit.0,
            since: since.0,
            third_party_instance_id: third_party_instance_id.0,
            ..PublicRoomsQuery::default()
        };
        Ok(Json(
            state.directory.local_public_rooms(&query).await?.into(),
        ))
    }

    /// # POST /_matrix/federation/v1/publicRooms
    /// A page of this server's published room directory, filtered, for
    /// another server.
    #[oai(
        path = "/_matrix/federation/v1/publicRooms",
        method = "post",
        operation_id = "federationQueryPublicRooms"
    )]
    async fn query_public_rooms(
        &self,
        state: Data<&Arc<AppState>>,
        _origin: ServerSignature,
        body: Json<PublicRoomsRequest>,
    ) -> Result<Json<PublicRoomsResponse>> {
        let query = body.0.into_query(None);
        Ok(Json(
            state.directory.local_public_rooms(&query).await?.into(),
        ))
    }

    /// # GET /_matrix/federation/v1/query/directory
    /// The room a local alias names, and servers in it.
    #[oai(
        path = "/_matrix/federation/v1/query/directory",
        method = "get",
        operation_id = "queryRoomDirectory"
    )]
    async fn query_directory(
        &self,
        state: Data<&Arc<AppState>>,
        _origin: ServerSignature,
        room_alias: Query<String>,
    ) -> Result<Json<Value>> {
        let alias = crate::directory::parse_alias(&room_alias.0)?;
        let room_id = state
            .directory
            .resolve_alias(alias)
            .await?
            .ok_or_else(|| Error::NotFound("no such alias here".into()))?;
        let servers: Vec<OwnedServerName> = membership::room_servers(&state, &room_id).await?;
        Ok(Json(json!({ "room_id": room_id, "servers": servers })))
    }
}
