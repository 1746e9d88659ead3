//! Login, token refresh, logout and whoami.

use std::sync::Arc;

use poem::{Request, web::Data};
use poem_openapi::{Object, OpenApi, payload::Json};

use super::{AccessToken, Tag, client_ip};
use crate::{
    accounts::{LoggedIn, PasswordLogin},
    auth::IssuedTokens,
    error::{Error, Result},
    state::AppState,
};

#[derive(Object)]
struct LoginFlow {
    #[oai(rename = "type")]
    kind: String,
}

#[derive(Object)]
struct LoginFlows {
    flows: Vec<LoginFlow>,
}

/// Who is logging in (`m.id.user`).
#[derive(Object)]
pub(super) struct UserIdentifier {
    /// `m.id.user`; other identifier types are not supported.
    #[oai(rename = "type", deserialize_with = "crate::api::strings_only")]
    pub kind: String,
    /// A user id or its localpart.
    #[oai(deserialize_with = "crate::api::strings_only")]
    pub user: Option<String>,
}

impl UserIdentifier {
    /// The user named by an `m.id.user` identifier.
    pub(super) fn user(&self) -> Result<&str> {
        if self.kind != "m.id.user" {
            return Err(Error::Unknown(format!(
                "identifier type {} is not supported",
                self.kind
            )));
        }
        self.user
            .as_deref()
            .ok_or_else(|| Error::MissingParam("identifier.user is required".into()))
    }
}

#[derive(Object)]
struct LoginRequest {
    /// `m.login.password`.
    #[oai(rename = "type", deserialize_with = "crate::api::strings_only")]
    kind: String,
    identifier: Option<UserIdentifier>,
    /// Deprecated: the user id or localpart, when `identifier` is absent.
    #[oai(deserialize_with = "crate::api::strings_only")]
    user: Option<String>,
    #[oai(deserialize_with = "crate::api::strings_only")]
    password: Option<String>,
    /// Log in as this existing device, or create it.
    #[oai(deserialize_with = "crate::api::strings_only")]
    device_id: Option<String>,
    #[oai(deserialize_with = "crate::api::strings_only")]
    initial_device_display_name: Option<String>,
    /// Ask for a refresh token and a short-lived access token.
    refresh_token: Option<bool>,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct LoginResponse {
    user_id: String,
    access_token: String,
    device_id: String,
    /// Lifetime of the access token, when it expires.
    expires_in_ms: Option<u64>,
    refresh_token: Option<String>,
}

#[derive(Object)]
struct RefreshRequest {
    #[oai(deserialize_with = "crate::api::strings_only")]
    refresh_token: String,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct RefreshResponse {
    access_token: String,
    expires_in_ms: Option<u64>,
    refresh_token: Option<String>,
}

#[derive(Object)]
struct Whoami {
    user_id: String,
    device_id: String,
    is_guest: bool,
}

/// An empty JSON object, the success body of many endpoints.
#[derive(Object, Default)]
pub(super) struct Empty {}

pub struct SessionApi;

#[OpenApi(tag = "Tag::Session")]
impl SessionApi {
    /// # GET /_matrix/client/v3/login
    /// The login types this server accepts.
    #[oai(
        path = "/_matrix/client/v3/login",
        method = "get",
        operation_id = "loginFlows"
    )]
    async fn login_flows(&self) -> Json<LoginFlows> {
        Json(LoginFlows {
            flows: vec![LoginFlow {
                kind: "m.login.password".into(),
            }],
        })
    }

    /// # POST /_matrix/client/v3/login
    /// Logs in with a password, creating (or taking over) a device.
    #[oai(
        path = "/_matrix/client/v3/login",
        method = "post",
        operation_id = "login"
    )]
    async fn login(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> Result<Json<LoginResponse>> {
        let body = body.0;
        if body.kind != "m.login.password" {
            return Err(Error::Unknown(format!(
                "login type {} is not supported",
                body.kind
            )));
        }
        let user = match (&body.identifier, body.user) {
            (Some(identifier), _) => identifier.user()?.to_owned(),
            (None, Some(user)) => user,
            (None, None) => return Err(Error::MissingParam("identifier is required".into())),
        };
        let password = body
            .password
            .ok_or_else(|| Error::MissingParam("password is required".into()))?;
        let login = PasswordLogin {
            user,
            password,
            device_id: body.device_id,
            initial_device_display_name: body.initial_device_display_name,
            refresh_token: body.refresh_token.unwrap_or(false),
        };
        let logged_in = state
            .accounts
            .login(login, client_ip(req).as_deref())
            .await?;
        login_response(logged_in).map(Json)
    }

    /// # POST /_matrix/client/v3/refresh
    /// Exchanges a refresh token for a new access token and refresh token.
    #[oai(
        path = "/_matrix/client/v3/refresh",
        method = "post",
        operation_id = "refresh"
    )]
    async fn refresh(
        &self,
        state: Data<&Arc<AppState>>,
        body: Json<RefreshRequest>,
    ) -> Result<Json<RefreshResponse>> {
        let IssuedTokens {
            access_token,
            refresh_token,
            expires_in_ms,
        } = state.accounts.refresh(&body.0.refresh_token).await?;
        Ok(Json(RefreshResponse {
            access_token,
            expires_in_ms,
            refresh_token,
        }))
    }

    /// # POST /_matrix/client/v3/logout
    /// Ends this session and deletes its device.
    #[oai(
        path = "/_matrix/client/v3/logout",
        method = "post",
        operation_id = "logout"
    )]
    async fn logout(&self, state: Data<&Arc<AppState>>, auth: AccessToken) -> Result<Json<Empty>> {
        state.accounts.logout(&auth.0).await?;
        Ok(Json(Empty {}))
    }

    /// # POST /_matrix/client/v3/logout/all
    /// Ends every session of the user.
    #[oai(
        path = "/_matrix/client/v3/logout/all",
        method = "post",
        operation_id = "logoutAll"
    )]
    async fn logout_all(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
    ) -> Result<Json<Empty>> {
        state.accounts.logout_all(&auth.0).await?;
        Ok(Json(Empty {}))
    }

    /// # GET /_matrix/client/v3/account/whoami
    /// Who owns this access token.
    #[oai(
        path = "/_matrix/client/v3/account/whoami",
        method = "get",
        operation_id = "whoami"
    )]
    async fn whoami(&self, auth: AccessToken) -> Result<Json<Whoami>> {
        let authed = auth.0;
        Ok(Json(Whoami {
            user_id: authed.user_id.to_string(),
            device_id: authed.device_id.to_string(),
            is_guest: false,
        }))
    }
}

fn login_response(logged_in: LoggedIn) -> Result<LoginResponse> {
    let (Some(device_id), Some(tokens)) = (logged_in.device_id, logged_in.tokens) else {
        return Err(Error::Internal("login produced no session".into()));
    };
    Ok(LoginResponse {
        user_id: logged_in.user_id,
        access_token: tokens.access_token,
        device_id,
        expires_in_ms: tokens.expires_in_ms,
        refresh_token: tokens.refresh_token,
    })
}
