//! The admin API under `/_teatime/admin/v1/`: only for server administrators
//! (everyone else gets 403 `M_FORBIDDEN`). `teatime admin` prints the same shapes.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};

use super::{AdminToken, Tag, parse_user_id, session::Empty};
use crate::{
    admin::{self, Page, Shutdown, UserDetails},
    directory::parse_room_id,
    error::Result,
    state::AppState,
    storage::{DestinationRow, FederationRules, RegistrationTokenRow, RoomSummary},
};

/// An account with its devices.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AdminUser {
    user_id: String,
    displayname: Option<String>,
    admin: bool,
    deactivated: bool,
    /// When the account was created (ms since the Unix epoch).
    creation_ts: i64,
    devices: Vec<AdminDevice>,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct AdminDevice {
    device_id: String,
    display_name: Option<String>,
    last_seen_ip: Option<String>,
    last_seen_ts: Option<i64>,
}

impl From<UserDetails> for AdminUser {
    fn from(details: UserDetails) -> Self {
        AdminUser {
            user_id: details.user.user_id,
            displayname: details.user.displayname,
            admin: details.user.is_admin,
            deactivated: details.user.deactivated,
            creation_ts: details.user.created_ts,
            devices: details
                .devices
                .into_iter()
                .map(|d| AdminDevice {
                    device_id: d.device_id,
                    display_name: d.display_name,
                    last_seen_ip: d.last_seen_ip,
                    last_seen_ts: d.last_seen_ts,
                })
                .collect(),
        }
    }
}

/// A page of accounts.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UserList {
    users: Vec<AdminUser>,
    /// Pass as `from` for the next page; absent on the last page.
    next_from: Option<String>,
}

impl From<Page<UserDetails>> for UserList {
    fn from(page: Page<UserDetails>) -> Self {
        UserList {
            users: page.items.into_iter().map(AdminUser::from).collect(),
            next_from: page.next_from,
        }
    }
}

#[derive(Object)]
struct NewUser {
    /// The localpart of the new user id.
    #[oai(deserialize_with = "crate::api::strings_only")]
    username: String,
    /// Without a password nobody can log in until one is set.
    #[oai(deserialize_with = "crate::api::strings_only")]
    password: Option<String>,
    #[oai(default)]
    admin: bool,
}

#[derive(Object)]
struct PasswordReset {
    #[oai(deserialize_with = "crate::api::strings_only")]
    new_password: String,
    /// End every session of the account (default true).
    logout_devices: Option<bool>,
}

#[derive(Object)]
struct Deactivation {
    /// Also forget the display name and avatar.
    #[oai(default)]
    erase: bool,
}

#[derive(Object)]
struct Reactivation {
    #[oai(deserialize_with = "crate::api::strings_only")]
    password: String,
}

#[derive(Object)]
struct AdminFlag {
    admin: bool,
}

/// A room as an administrator sees it.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AdminRoom {
    room_id: String,
    name: Option<String>,
    topic: Option<String>,
    canonical_alias: Option<String>,
    join_rule: Option<String>,
    room_version: String,
    creator: String,
    /// Listed in the public room directory.
    public: bool,
    /// Shut down by an administrator: nobody may join.
    blocked: bool,
    creation_ts: i64,
    joined_members: i64,
    /// The servers of the joined members.
    servers: Vec<String>,
    /// The joined members (only in a single room's details).
    members: Option<Vec<String>>,
}

impl AdminRoom {
    fn new(room: RoomSummary, with_members: bool) -> Self {
        let text = |kind: &str, key: &str| {
            room.state
                .get(kind)
                .and_then(|content| content[key].as_str())
                .map(str::to_owned)
        };
        let mut servers: Vec<String> = room
            .joined
            .iter()
            .filter_map(|user| user.split_once(':').map(|(_, server)| server.to_owned()))
            .collect();
        servers.sort();
        servers.dedup();
        AdminRoom {
            name: text("m.room.name", "name"),
            topic: text("m.room.topic", "topic"),
            canonical_alias: text("m.room.canonical_alias", "alias"),
            join_rule: text("m.room.join_rules", "join_rule"),
            room_id: room.room_id,
            room_version: room.room_version,
            creator: room.creator,
            public: room.published,
            blocked: room.blocked,
            creation_ts: room.created_ts,
            joined_members: room.joined_members,
            servers,
            members: with_members.then_some(room.joined),
        }
    }

    /// A single room's details, with its members.
    pub fn detailed(room: RoomSummary) -> Self {
        Self::new(room, true)
    }
}

/// A page of rooms.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RoomList {
    rooms: Vec<AdminRoom>,
    /// Pass as `from` for the next page; absent on the last page.
    next_from: Option<String>,
}

impl From<Page<RoomSummary>> for RoomList {
    fn from(page: Page<RoomSummary>) -> Self {
        RoomList {
            rooms: page
                .items
                .into_iter()
                .map(|room| AdminRoom::new(room, false))
                .collect(),
            next_from: page.next_from,
        }
    }
}

#[derive(Object)]
struct ShutdownRequest {
    /// Also delete everything the server keeps about the room.
    #[oai(default)]
    purge: bool,
    /// Shown to the members in their leave events.
    #[oai(deserialize_with = "crate::api::strings_only")]
    reason: Option<String>,
}

/// What a room shutdown did.
#[derive(Object)]
pub struct ShutdownResult {
    /// Local users made to leave.
    removed: Vec<String>,
    purged: bool,
}

impl From<Shutdown> for ShutdownResult {
    fn from(shutdown: Shutdown) -> Self {
        ShutdownResult {
            removed: shutdown.removed,
            purged: shutdown.purged,
        }
    }
}

/// The federation allow and deny lists: server name patterns where `*`
/// matches any run of characters. A deny pattern always refuses; with any
/// allow pattern, only matching servers federate.
#[derive(Object)]
pub struct FederationLists {
    #[oai(deserialize_with = "crate::api::strings_only")]
    allow: Vec<String>,
    #[oai(deserialize_with = "crate::api::strings_only")]
    deny: Vec<String>,
}

impl From<FederationRules> for FederationLists {
    fn from(rules: FederationRules) -> Self {
        FederationLists {
            allow: rules.allow,
            deny: rules.deny,
        }
    }
}

/// A server this one sends to, and how sending to it fares.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Destination {
    destination: String,
    /// Failed attempts in a row (0: the last attempt succeeded).
    failures: i64,
    /// When the next attempt may start (ms since the epoch); absent: now.
    retry_at: Option<i64>,
    last_error: Option<String>,
    /// When a transaction last went through (ms since the epoch).
    last_success_ts: Option<i64>,
    /// Events waiting to be sent to it.
    queued: i64,
}

/// Every destination.
#[derive(Object)]
pub struct Destinations {
    destinations: Vec<Destination>,
}

impl From<Vec<DestinationRow>> for Destinations {
    fn from(rows: Vec<DestinationRow>) -> Self {
        Destinations {
            destinations: rows
                .into_iter()
                .map(|row| Destination {
                    destination: row.destination,
                    failures: row.failures,
                    retry_at: (row.retry_at > 0).then_some(row.retry_at),
                    last_error: row.last_error,
                    last_success_ts: row.last_success_ts,
                    queued: row.queued,
                })
                .collect(),
        }
    }
}

/// A registration token.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RegistrationToken {
    token: String,
    /// How many registrations it allows; absent: unlimited.
    uses_allowed: Option<i64>,
    /// Registrations completed with it.
    completed: i64,
    /// When it expires (ms since the Unix epoch); absent: never.
    expiry_time: Option<i64>,
}

impl From<RegistrationTokenRow> for RegistrationToken {
    fn from(row: RegistrationTokenRow) -> Self {
        RegistrationToken {
            token: row.token,
            uses_allowed: row.uses_allowed,
            completed: row.completed,
            expiry_time: row.expiry_ts,
        }
    }
}

/// Every registration token.
#[derive(Object)]
pub struct RegistrationTokens {
    registration_tokens: Vec<RegistrationToken>,
}

impl From<Vec<RegistrationTokenRow>> for RegistrationTokens {
    fn from(rows: Vec<RegistrationTokenRow>) -> Self {
        RegistrationTokens {
            registration_tokens: rows.into_iter().map(RegistrationToken::from).collect(),
        }
    }
}

#[derive(Object)]
struct NewRegistrationToken {
    /// The token; absent: a random one.
    #[oai(deserialize_with = "crate::api::strings_only")]
    token: Option<String>,
    uses_allowed: Option<i64>,
    expiry_time: Option<i64>,
}

pub struct AdminApi;

#[OpenApi(prefix_path = "/_teatime/admin/v1", tag = "Tag::Admin")]
impl AdminApi {
    /// # GET /_teatime/admin/v1/users
    /// Accounts with their devices, by user id; `search` matches part of the
    /// user id or display name.
    #[oai(path = "/users", method = "get", operation_id = "adminListUsers")]
    async fn list_users(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        search: Query<Option<String>>,
        from: Query<Option<String>>,
        limit: Query<Option<i64>>,
    ) -> Result<Json<UserList>> {
        let page = admin::list_users(&state, search.as_deref(), from.as_deref(), limit.0).await?;
        Ok(Json(page.into()))
    }

    /// # POST /_teatime/admin/v1/users
    /// Creates an account whatever the registration mode.
    #[oai(path = "/users", method = "post", operation_id = "adminCreateUser")]
    async fn create_user(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        body: Json<NewUser>,
    ) -> Result<Json<AdminUser>> {
        let body = body.0;
        let user_id = state
            .accounts
            .create_user(&body.username, body.password, body.admin)
            .await?;
        Ok(Json(admin::user_details(&state, &user_id).await?.into()))
    }

    /// # GET /_teatime/admin/v1/users/{userId}
    /// One account with its devices.
    #[oai(
        path = "/users/:user_id",
        method = "get",
        operation_id = "adminGetUser"
    )]
    async fn user(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        user_id: Path<String>,
    ) -> Result<Json<AdminUser>> {
        let user_id = parse_user_id(&user_id.0)?;
        Ok(Json(
            admin::user_details(&state, user_id.as_str()).await?.into(),
        ))
    }

    /// # POST /_teatime/admin/v1/users/{userId}/password
    /// Sets a new password; by default every session of the account ends.
    #[oai(
        path = "/users/:user_id/password",
        method = "post",
        operation_id = "adminResetPassword"
    )]
    async fn reset_password(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        user_id: Path<String>,
        body: Json<PasswordReset>,
    ) -> Result<Json<Empty>> {
        let user_id = parse_user_id(&user_id.0)?;
        let body = body.0;
        state
            .accounts
            .reset_password(
                user_id.as_str(),
                body.new_password,
                body.logout_devices.unwrap_or(true),
            )
            .await?;
        Ok(Json(Empty {}))
    }

    /// # POST /_teatime/admin/v1/users/{userId}/deactivate
    /// Deactivates the account; its sessions end at once.
    #[oai(
        path = "/users/:user_id/deactivate",
        method = "post",
        operation_id = "adminDeactivateUser"
    )]
    async fn deactivate(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        user_id: Path<String>,
        body: Json<Deactivation>,
    ) -> Result<Json<Empty>> {
        let user_id = parse_user_id(&user_id.0)?;
        state
            .accounts
            .deactivate_user(user_id.as_str(), body.0.erase)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # POST /_teatime/admin/v1/users/{userId}/reactivate
    /// Reactivates a deactivated account with a new password.
    #[oai(
        path = "/users/:user_id/reactivate",
        method = "post",
        operation_id = "adminReactivateUser"
    )]
    async fn reactivate(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        user_id: Path<String>,
        body: Json<Reactivation>,
    ) -> Result<Json<Empty>> {
        let user_id = parse_user_id(&user_id.0)?;
        state
            .accounts
            .reactivate_user(user_id.as_str(), body.0.password)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # PUT /_teatime/admin/v1/users/{userId}/admin
    /// Grants or takes away server administration.
    #[oai(
        path = "/users/:user_id/admin",
        method = "put",
        operation_id = "adminSetAdmin"
    )]
    async fn set_admin(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        user_id: Path<String>,
        body: Json<AdminFlag>,
    ) -> Result<Json<Empty>> {
        let user_id = parse_user_id(&user_id.0)?;
        state
            .accounts
            .set_admin(user_id.as_str(), body.0.admin)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_teatime/admin/v1/rooms
    /// Rooms with their member counts and servers, by room id; `search`
    /// matches part of the room id, name or canonical alias.
    #[oai(path = "/rooms", method = "get", operation_id = "adminListRooms")]
    async fn list_rooms(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        search: Query<Option<String>>,
        from: Query<Option<String>>,
        limit: Query<Option<i64>>,
    ) -> Result<Json<RoomList>> {
        let page = admin::list_rooms(&state, search.as_deref(), from.as_deref(), limit.0).await?;
        Ok(Json(page.into()))
    }

    /// # GET /_teatime/admin/v1/rooms/{roomId}
    /// One room with its joined members.
    #[oai(
        path = "/rooms/:room_id",
        method = "get",
        operation_id = "adminGetRoom"
    )]
    async fn room(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        room_id: Path<String>,
    ) -> Result<Json<AdminRoom>> {
        let room_id = parse_room_id(&room_id.0)?;
        let room = admin::room_details(&state, room_id.as_str()).await?;
        Ok(Json(AdminRoom::detailed(room)))
    }

    /// # POST /_teatime/admin/v1/rooms/{roomId}/shutdown
    /// Makes every local member leave, blocks the room against joins and,
    /// with `purge`, deletes what the server keeps of it.
    #[oai(
        path = "/rooms/:room_id/shutdown",
        method = "post",
        operation_id = "adminShutdownRoom"
    )]
    async fn shutdown_room(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AdminToken,
        room_id: Path<String>,
        body: Json<ShutdownRequest>,
    ) -> Result<Json<ShutdownResult>> {
        let room_id = parse_room_id(&room_id.0)?;
        let body = body.0;
        let shutdown = admin::shutdown_room(
            &state,
            room_id,
            auth.0.user_id.as_str(),
            body.reason,
            body.purge,
        )
        .await?;
        Ok(Json(shutdown.into()))
    }

    /// # GET /_teatime/admin/v1/federation/rules
    /// The federation allow and deny lists.
    #[oai(
        path = "/federation/rules",
        method = "get",
        operation_id = "adminGetFederationRules"
    )]
    async fn federation_rules(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
    ) -> Result<Json<FederationLists>> {
        Ok(Json(state.store.federation_rules().await?.into()))
    }

    /// # PUT /_teatime/admin/v1/federation/rules
    /// Replaces both federation lists; they apply at once.
    #[oai(
        path = "/federation/rules",
        method = "put",
        operation_id = "adminSetFederationRules"
    )]
    async fn set_federation_rules(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        body: Json<FederationLists>,
    ) -> Result<Json<FederationLists>> {
        let body = body.0;
        let rules = FederationRules {
            allow: body.allow,
            deny: body.deny,
        };
        admin::set_federation_rules(&state, rules).await?;
        Ok(Json(state.store.federation_rules().await?.into()))
    }

    /// # GET /_teatime/admin/v1/federation/destinations
    /// The servers this one sends to, with their retry state and queues.
    #[oai(
        path = "/federation/destinations",
        method = "get",
        operation_id = "adminListDestinations"
    )]
    async fn destinations(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
    ) -> Result<Json<Destinations>> {
        Ok(Json(state.store.destinations().await?.into()))
    }

    /// # GET /_teatime/admin/v1/registration_tokens
    /// Every registration token with its use count.
    #[oai(
        path = "/registration_tokens",
        method = "get",
        operation_id = "adminListRegistrationTokens"
    )]
    async fn registration_tokens(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
    ) -> Result<Json<RegistrationTokens>> {
        Ok(Json(state.store.registration_tokens().await?.into()))
    }

    /// # POST /_teatime/admin/v1/registration_tokens
    /// Creates a registration token (accepted when `registration = "token"`).
    #[oai(
        path = "/registration_tokens",
        method = "post",
        operation_id = "adminCreateRegistrationToken"
    )]
    async fn create_registration_token(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        body: Json<NewRegistrationToken>,
    ) -> Result<Json<RegistrationToken>> {
        let body = body.0;
        let row = admin::create_registration_token(
            &state,
            body.token,
            body.uses_allowed,
            body.expiry_time,
        )
        .await?;
        Ok(Json(row.into()))
    }

    /// # DELETE /_teatime/admin/v1/registration_tokens/{token}
    /// Revokes a registration token.
    #[oai(
        path = "/registration_tokens/:token",
        method = "delete",
        operation_id = "adminRevokeRegistrationToken"
    )]
    async fn revoke_registration_token(
        &self,
        state: Data<&Arc<AppState>>,
        _admin: AdminToken,
        token: Path<String>,
    ) -> Result<Json<Empty>> {
        admin::revoke_registration_token(&state, &token.0).await?;
        Ok(Json(Empty {}))
    }
}
