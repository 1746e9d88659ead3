//! Registration, password change and deactivation.

use std::sync::Arc;

use poem::{Request, web::Data};
use poem_openapi::{Object, OpenApi, param::Query, payload::Json};

use super::{
    AccessToken, Tag, client_ip,
    session::{Empty, UserIdentifier},
};
use crate::{
    accounts::Registration,
    config::RegistrationMode,
    error::{Error, Result},
    state::AppState,
    uia::AuthSubmission,
};

/// The `auth` object of user-interactive authentication.
#[derive(Object)]
pub(super) struct AuthData {
    /// The stage being completed, e.g. `m.login.password`.
    #[oai(rename = "type", deserialize_with = "crate::api::strings_only")]
    kind: Option<String>,
    /// The UIA session from the 401 response.
    #[oai(deserialize_with = "crate::api::strings_only")]
    session: Option<String>,
    /// For `m.login.password`.
    identifier: Option<UserIdentifier>,
    /// Deprecated form of `identifier`.
    #[oai(deserialize_with = "crate::api::strings_only")]
    user: Option<String>,
    /// For `m.login.password`.
    #[oai(deserialize_with = "crate::api::strings_only")]
    password: Option<String>,
    /// For `m.login.registration_token`.
    #[oai(deserialize_with = "crate::api::strings_only")]
    token: Option<String>,
}

impl AuthData {
    pub(super) fn into_submission(self) -> Result<AuthSubmission> {
        let user = match &self.identifier {
            Some(identifier) => Some(identifier.user()?.to_owned()),
            None => self.user,
        };
        Ok(AuthSubmission {
            stage: self.kind,
            session: self.session,
            user,
            password: self.password,
            token: self.token,
        })
    }
}

/// Parses an optional `auth` object.
pub(super) fn submission(auth: Option<AuthData>) -> Result<Option<AuthSubmission>> {
    auth.map(AuthData::into_submission).transpose()
}

#[derive(Object)]
struct RegisterRequest {
    auth: Option<AuthData>,
    /// The localpart of the new user id; generated when absent.
    #[oai(deserialize_with = "crate::api::strings_only")]
    username: Option<String>,
    #[oai(deserialize_with = "crate::api::strings_only")]
    password: Option<String>,
    #[oai(deserialize_with = "crate::api::strings_only")]
    device_id: Option<String>,
    #[oai(deserialize_with = "crate::api::strings_only")]
    initial_device_display_name: Option<String>,
    /// Create the account without logging it in.
    inhibit_login: Option<bool>,
    refresh_token: Option<bool>,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct RegisterResponse {
    user_id: String,
    access_token: Option<String>,
    device_id: Option<String>,
    expires_in_ms: Option<u64>,
    refresh_token: Option<String>,
}

#[derive(Object)]
struct Available {
    available: bool,
}

#[derive(Object)]
struct TokenValidity {
    valid: bool,
}

#[derive(Object)]
struct PasswordRequest {
    #[oai(deserialize_with = "crate::api::strings_only")]
    new_password: String,
    /// Log out every other device (default true).
    logout_devices: Option<bool>,
    auth: Option<AuthData>,
}

#[derive(Object)]
struct DeactivateRequest {
    auth: Option<AuthData>,
    /// Also erase the profile.
    erase: Option<bool>,
}

#[derive(Object)]
struct DeactivateResponse {
    /// Always `success`: this server binds no third-party ids, so none need unbinding.
    id_server_unbind_result: String,
}

/// Registration tokens are at most 64 of these characters (spec).
fn is_token_shaped(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
}

pub struct AccountApi;

#[OpenApi(tag = "Tag::Account")]
impl AccountApi {
    /// # POST /_matrix/client/v3/register
    /// Creates an account. Uses user-interactive authentication: `m.login.dummy`
    /// on open servers, `m.login.registration_token` on token-gated ones.
    #[oai(
        path = "/_matrix/client/v3/register",
        method = "post",
        operation_id = "register"
    )]
    async fn register(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        kind: Query<Option<String>>,
        body: Json<RegisterRequest>,
    ) -> Result<Json<RegisterResponse>> {
        let body = body.0;
        let guest = match kind.0.as_deref() {
            None | Some("user") => false,
            Some("guest") => true,
            Some(other) => {
                return Err(Error::InvalidParam(format!("unknown account kind {other}")));
            }
        };
        let registration = Registration {
            username: body.username,
            password: body.password,
            device_id: body.device_id,
            initial_device_display_name: body.initial_device_display_name,
            inhibit_login: body.inhibit_login.unwrap_or(false),
            refresh_token: body.refresh_token.unwrap_or(false),
            guest,
            auth: submission(body.auth)?,
        };
        let registered = state
            .accounts
            .register(registration, client_ip(req).as_deref())
            .await?;
        let tokens = registered.tokens;
        Ok(Json(RegisterResponse {
            user_id: registered.user_id,
            device_id: registered.device_id,
            expires_in_ms: tokens.as_ref().and_then(|t| t.expires_in_ms),
            refresh_token: tokens.as_ref().and_then(|t| t.refresh_token.clone()),
            access_token: tokens.map(|t| t.access_token),
        }))
    }

    /// # GET /_matrix/client/v3/register/available
    /// Whether a username is valid and free.
    #[oai(
        path = "/_matrix/client/v3/register/available",
        method = "get",
        operation_id = "registerAvailable"
    )]
    async fn available(
        &self,
        state: Data<&Arc<AppState>>,
        username: Query<String>,
    ) -> Result<Json<Available>> {
        state.accounts.check_available(&username.0).await?;
        Ok(Json(Available { available: true }))
    }

    /// # GET /_matrix/client/v1/register/m.login.registration_token/validity
    /// Whether a registration token would be accepted.
    #[oai(
        path = "/_matrix/client/v1/register/m.login.registration_token/validity",
        method = "get",
        operation_id = "registrationTokenValidity"
    )]
    async fn token_validity(
        &self,
        state: Data<&Arc<AppState>>,
        token: Query<String>,
    ) -> Result<Json<TokenValidity>> {
        let config = &state.config;
        if config.registration == RegistrationMode::Closed {
            return Err(Error::Forbidden(
                "registration is disabled on this server".into(),
            ));
        }
        if !is_token_shaped(&token.0) {
            return Err(Error::InvalidParam("malformed registration token".into()));
        }
        // An open server takes no tokens: none is valid there.
        let valid = config.registration == RegistrationMode::Token
            && (config.registration_token.as_deref() == Some(token.0.as_str())
                || state.store.registration_token_valid(&token.0).await?);
        Ok(Json(TokenValidity { valid }))
    }

    /// # POST /_matrix/client/v3/account/password
    /// Changes the password (user-interactive authentication with the current password).
    #[oai(
        path = "/_matrix/client/v3/account/password",
        method = "post",
        operation_id = "changePassword"
    )]
    async fn change_password(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        body: Json<PasswordRequest>,
    ) -> Result<Json<Empty>> {
        let body = body.0;
        let logout_devices = body.logout_devices.unwrap_or(true);
        let uia = submission(body.auth)?;
        state
            .accounts
            .change_password(&auth.0, body.new_password, logout_devices, uia)
            .await?;
        Ok(Json(Empty {}))
    }

    /// # POST /_matrix/client/v3/account/deactivate
    /// Deactivates the account for good (user-interactive authentication with the password).
    #[oai(
        path = "/_matrix/client/v3/account/deactivate",
        method = "post",
        operation_id = "deactivate"
    )]
    async fn deactivate(
        &self,
        state: Data<&Arc<AppState>>,
        auth: AccessToken,
        body: Json<Option<DeactivateRequest>>,
    ) -> Result<Json<DeactivateResponse>> {
        let (uia, erase) = match body.0 {
            Some(body) => (submission(body.auth)?, body.erase.unwrap_or(false)),
            None => (None, false),
        };
        state.accounts.deactivate(&auth.0, erase, uia).await?;
        Ok(Json(DeactivateResponse {
            id_server_unbind_result: "success".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::is_token_shaped;

    #[test]
    fn registration_token_shape() {
        assert!(is_token_shaped("abc-DEF_1.2~3"));
        assert!(!is_token_shaped(""));
        assert!(!is_token_shaped("has space"));
        assert!(!is_token_shaped(&"a".repeat(65)));
    }
}
