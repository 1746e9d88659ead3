//! Discovery: supported versions, `.well-known` documents and capabilities.

use std::{collections::BTreeMap, sync::Arc};

use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};

use super::{AccessToken, Tag};
use crate::{error::Result, state::AppState};

/// Spec versions whose account endpoints this server implements in their
/// current form.
const SPEC_VERSIONS: &[&str] = &[
    "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
    "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19",
];

#[derive(Object)]
struct Versions {
    /// Supported versions of the Client-Server specification.
    versions: Vec<String>,
    /// Unstable features, by name.
    unstable_features: BTreeMap<String, bool>,
}

#[derive(Object)]
struct HomeserverInfo {
    /// The base URL of the homeserver's client API.
    base_url: String,
}

#[derive(Object)]
struct ClientWellKnown {
    #[oai(rename = "m.homeserver")]
    homeserver: HomeserverInfo,
}

#[derive(Object)]
struct ServerWellKnown {
    /// Where other servers reach this server's federation API (`host:port`).
    #[oai(rename = "m.server")]
    server: String,
}

#[derive(Object)]
struct Enabled {
    enabled: bool,
}

#[derive(Object)]
struct CapabilityMap {
    #[oai(rename = "m.change_password")]
    change_password: Enabled,
    #[oai(rename = "m.set_displayname")]
    set_displayname: Enabled,
    #[oai(rename = "m.set_avatar_url")]
    set_avatar_url: Enabled,
    #[oai(rename = "m.3pid_changes")]
    third_party_id_changes: Enabled,
    #[oai(rename = "m.get_login_token")]
    get_login_token: Enabled,
}

#[derive(Object)]
struct Capabilities {
    capabilities: CapabilityMap,
}

pub struct DiscoveryApi;

#[OpenApi(tag = "Tag::Discovery")]
impl DiscoveryApi {
    /// # GET /_matrix/client/versions
    /// The specification versions this server supports.
    #[oai(
        path = "/_matrix/client/versions",
        method = "get",
        operation_id = "versions"
    )]
    async fn versions(&self) -> Json<Versions> {
        Json(Versions {
            versions: SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
            unstable_features: BTreeMap::new(),
        })
    }

    /// # GET /.well-known/matrix/client
    /// Where clients find this homeserver.
    #[oai(
        path = "/.well-known/matrix/client",
        method = "get",
        operation_id = "wellKnownClient"
    )]
    async fn well_known_client(&self, state: Data<&Arc<AppState>>) -> Json<ClientWellKnown> {
        Json(ClientWellKnown {
            homeserver: HomeserverInfo {
                base_url: state.config.public_baseurl(),
            },
        })
    }

    /// # GET /.well-known/matrix/server
    /// Where other servers find this server's federation API.
    #[oai(
        path = "/.well-known/matrix/server",
        method = "get",
        operation_id = "wellKnownServer"
    )]
    async fn well_known_server(&self, state: Data<&Arc<AppState>>) -> Json<ServerWellKnown> {
        let config = &state.config;
        Json(ServerWellKnown {
            server: format!(
                "{}:{}",
                config.server_host(),
                config.federation_listen.port()
            ),
        })
    }

    /// # GET /_matrix/client/v3/capabilities
    /// What the logged-in user may do on this server.
    #[oai(
        path = "/_matrix/client/v3/capabilities",
        method = "get",
        operation_id = "capabilities"
    )]
    async fn capabilities(&self, _auth: AccessToken) -> Result<Json<Capabilities>> {
        Ok(Json(Capabilities {
            capabilities: CapabilityMap {
                change_password: Enabled { enabled: true },
                set_displayname: Enabled { enabled: true },
                set_avatar_url: Enabled { enabled: true },
                third_party_id_changes: Enabled { enabled: false },
                get_login_token: Enabled { enabled: false },
            },
        }))
    }
}
