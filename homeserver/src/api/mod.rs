//! The documented Client-Server API: poem-openapi endpoint groups, one file
//! each, thin handlers that parse, call a service and return its result.

mod account;
mod account_data;
pub mod admin;
mod devices;
mod directory;
mod discovery;
mod ephemeral;
mod federation;
mod federation_rooms;
mod filters;
mod media;
mod profile;
mod push_rules;
mod room_events;
mod rooms;
mod security;
mod session;
mod sync;
mod voip;

use poem::Request;
use poem_openapi::{
    OpenApiService, Tags,
    types::{ParseError, ParseFromJSON, ParseResult},
};
use ruma::{EventId, OwnedUserId, UserId};
use serde_json::Value;

use crate::error::{Error, Result};

pub use security::{AccessToken, AdminToken, ServerSignature};

#[derive(Tags)]
enum Tag {
    /// Server discovery and capabilities.
    Discovery,
    /// Login, token refresh, logout.
    Session,
    /// Registration and account management.
    Account,
    /// The user's devices.
    Devices,
    /// User profiles.
    Profile,
    /// Push notifications: the push rules.
    Push,
    /// Room aliases and the published room directory.
    RoomDirectory,
    /// Account data: the user's own configuration, global or per room.
    UserData,
    /// Filters: uploaded once, then named by id in `/sync`.
    Filters,
    /// Rooms: creation, membership, events, state and history.
    Rooms,
    /// Synchronisation: everything new since a token, long-polled.
    Sync,
    /// Voice and video calls: TURN credentials.
    Voip,
    /// The media repository: uploads, downloads, thumbnails.
    Media,
    /// The Server-Server API: keys, queries from other servers.
    Federation,
    /// Server administration (`/_teatime/admin/v1`): server administrators only.
    Admin,
}

/// All endpoint groups of the client API.
pub type ClientApi = (
    discovery::DiscoveryApi,
    session::SessionApi,
    account::AccountApi,
    devices::DevicesApi,
    profile::ProfileApi,
    push_rules::PushRulesApi,
    directory::DirectoryApi,
    account_data::AccountDataApi,
    filters::FiltersApi,
    rooms::RoomsApi,
    room_events::RoomEventsApi,
    sync::SyncApi,
    // poem-openapi takes tuples of up to 16 groups: calls ride with ephemeral.
    (ephemeral::EphemeralApi, voip::VoipApi),
    media::MediaApi,
    admin::AdminApi,
    (
        federation::FederationApi,
        federation_rooms::FederationRoomsApi,
    ),
);

/// The OpenAPI service for the client API.
pub fn service() -> OpenApiService<ClientApi, ()> {
    OpenApiService::new(
        (
            discovery::DiscoveryApi,
            session::SessionApi,
            account::AccountApi,
            devices::DevicesApi,
            profile::ProfileApi,
            push_rules::PushRulesApi,
            directory::DirectoryApi,
            account_data::AccountDataApi,
            filters::FiltersApi,
            rooms::RoomsApi,
            room_events::RoomEventsApi,
            sync::SyncApi,
            (ephemeral::EphemeralApi, voip::VoipApi),
            media::MediaApi,
            admin::AdminApi,
            (
                federation::FederationApi,
                federation_rooms::FederationRoomsApi,
            ),
        ),
        "TeaTime Client-Server API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "The Matrix Client-Server API as served by TeaTime (Matrix specification v1.19). \
         Errors are Matrix errors: a JSON body with `errcode` and `error`. \
         Live updates are also pushed over the WebSocket at `GET /_teatime/ws` \
         (JSON frames; see docs/websocket.md in the repository).",
    )
}

/// The OpenAPI document, as `teatime openapi` prints it and `openapi/` keeps it.
pub fn document() -> String {
    service().spec()
}

/// Rejects malformed user ids (`M_INVALID_PARAM`) before they reach storage.
pub(crate) fn parse_user_id(user_id: &str) -> Result<OwnedUserId> {
    UserId::parse(user_id)
        .map_err(|e| Error::InvalidParam(format!("invalid user id {user_id}: {e}")))
}

/// Rejects malformed event ids (`M_INVALID_PARAM`).
pub(crate) fn parse_event_id(event_id: &str) -> Result<&EventId> {
    <&EventId>::try_from(event_id)
        .map_err(|e| Error::InvalidParam(format!("invalid event id: {e}")))
}

/// The client's address, for rate limits and the device list.
fn client_ip(req: &Request) -> Option<String> {
    req.remote_addr()
        .as_socket_addr()
        .map(|addr| addr.ip().to_string())
}

/// Parses a request field of string type (`String`, `Option<String>`,
/// `Vec<String>`) without poem-openapi's coercion of JSON numbers and booleans
/// to strings: `"password": 5` is malformed (`M_BAD_JSON`), not `"5"`.
pub(crate) fn strings_only<T: ParseFromJSON>(value: Option<Value>) -> ParseResult<T> {
    let is_scalar = |v: &Value| matches!(v, Value::Number(_) | Value::Bool(_));
    match &value {
        Some(Value::Array(items)) if items.iter().any(is_scalar) => {
            Err(ParseError::custom("expected an array of strings"))
        }
        Some(v) if is_scalar(v) => Err(ParseError::expected_type(v.clone())),
        _ => T::parse_from_json(value),
    }
}
