//! The accounts service: registration, login, logout, password change,
//! deactivation, and (in submodules) devices and profiles.

mod admin;
mod devices;
mod profile;

use std::{sync::Arc, time::Duration};

use ruma::UserId;

pub use profile::Profile;

use crate::{
    auth::{
        Authed, IssuedTokens, Sessions,
        passwords::{self, MAX_PASSWORD_BYTES},
        ratelimit::FailureLimiter,
    },
    config::{Config, RegistrationMode},
    error::{Error, Result},
    storage::Store,
    uia::{AuthSubmission, Purpose, Uia, qualify_user_id},
};

/// Everything a login (or registration) hands back.
#[derive(Debug)]
pub struct LoggedIn {
    pub user_id: String,
    /// `None` when registration was asked not to log in.
    pub device_id: Option<String>,
    pub tokens: Option<IssuedTokens>,
}

/// A parsed `POST /register` request.
#[derive(Debug, Default)]
pub struct Registration {
    pub username: Option<String>,
    pub password: Option<String>,
    pub device_id: Option<String>,
    pub initial_device_display_name: Option<String>,
    pub inhibit_login: bool,
    pub refresh_token: bool,
    pub guest: bool,
    pub auth: Option<AuthSubmission>,
}

/// A parsed `POST /login` request with `m.login.password`.
#[derive(Debug)]
pub struct PasswordLogin {
    pub user: String,
    pub password: String,
    pub device_id: Option<String>,
    pub initial_device_display_name: Option<String>,
    pub refresh_token: bool,
}

/// Account operations over the store and the session registry.
pub struct Accounts {
    store: Store,
    sessions: Arc<Sessions>,
    config: Arc<Config>,
    login_failures_by_user: FailureLimiter,
    login_failures_by_ip: FailureLimiter,
    registrations_by_ip: FailureLimiter,
}

/// The longest accepted device id or display name.
const MAX_NAME_CHARS: usize = 256;

impl Accounts {
    /// The service, with rate limits from `config`.
    pub fn new(store: Store, sessions: Arc<Sessions>, config: Arc<Config>) -> Self {
        let login_refill = Duration::from_secs(config.login_failure_refill_secs);
        let registration_refill = Duration::from_secs(config.registration_refill_secs);
        Self {
            login_failures_by_user: FailureLimiter::new(config.login_failure_burst, login_refill),
            login_failures_by_ip: FailureLimiter::new(config.login_failure_burst * 4, login_refill),
            registrations_by_ip: FailureLimiter::new(
                config.registration_burst,
                registration_refill,
            ),
            store,
            sessions,
            config,
        }
    }

    fn uia(&self) -> Uia<'_> {
        Uia {
            store: &self.store,
            server_name: &self.config.server_name,
            registration: self.config.registration,
            registration_token: self.config.registration_token.as_deref(),
        }
    }

    /// Checks that `localpart` may be registered: valid and not taken.
    pub async fn check_available(&self, localpart: &str) -> Result<String> {
        let user_id = UserId::parse_with_server_name(localpart, self.server_name()?)
            .map_err(|e| Error::InvalidUsername(format!("invalid username: {e}")))?;
        if !user_id.is_historical() && user_id.validate_strict().is_ok() {
            if self.store.user_exists(user_id.as_str()).await? {
                return Err(Error::UserInUse);
            }
            return Ok(user_id.to_string());
        }
        Err(Error::InvalidUsername(
            "usernames may contain only a-z, 0-9, and . _ = - / +".into(),
        ))
    }

    fn server_name(&self) -> Result<&ruma::ServerName> {
        <&ruma::ServerName>::try_from(self.config.server_name.as_str())
            .map_err(|e| Error::Internal(format!("server name: {e}")))
    }

    /// `POST /register`.
    pub async fn register(&self, request: Registration, ip: Option<&str>) -> Result<LoggedIn> {
        if request.guest {
            return Err(Error::GuestAccessForbidden);
        }
        if self.config.registration == RegistrationMode::Closed {
            return Err(Error::RegistrationDisabled);
        }
        if let Some(ip) = ip {
            self.registrations_by_ip.check(ip).map_err(limit_exceeded)?;
        }
        let localpart = match &request.username {
            Some(username) => username.clone(),
            None => crate::auth::tokens::random_device_id().to_lowercase(),
        };
        let user_id = self.check_available(&localpart).await?;
        let password = request
            .password
            .ok_or_else(|| Error::MissingParam("a password is required".into()))?;
        check_password_shape(&password)?;
        check_device_fields(
            request.device_id.as_deref(),
            request.initial_device_display_name.as_deref(),
        )?;
        self.uia()
            .authenticate(Purpose::Register, None, request.auth)
            .await?;
        if let Some(ip) = ip {
            self.registrations_by_ip.charge(ip);
        }

        let hash = passwords::hash(password).await?;
        let login = if request.inhibit_login {
            None
        } else {
            Some(
                self.sessions
                    .prepare_login(&user_id, request.device_id, request.refresh_token)?,
            )
        };
        let displayname = localpart.as_str();
        let device = login
            .as_ref()
            .map(|l| l.device(&user_id, request.initial_device_display_name.as_deref(), ip));
        if !self
            .store
            .create_user(&user_id, Some(&hash), displayname, device.as_ref())
            .await?
        {
            return Err(Error::UserInUse);
        }
        tracing::info!(%user_id, "registered");
        Ok(LoggedIn {
            user_id,
            device_id: login.as_ref().map(|l| l.device_id.clone()),
            tokens: login.map(|l| l.tokens),
        })
    }

    /// `POST /login` with a password.
    pub async fn login(&self, request: PasswordLogin, ip: Option<&str>) -> Result<LoggedIn> {
        let user_id = qualify_user_id(&request.user, &self.config.server_name);
        self.login_failures_by_user
            .check(&user_id)
            .map_err(limit_exceeded)?;
        if let Some(ip) = ip {
            self.login_failures_by_ip
                .check(ip)
                .map_err(limit_exceeded)?;
        }
        check_device_fields(
            request.device_id.as_deref(),
            request.initial_device_display_name.as_deref(),
        )?;
        let user = if request.password.len() > MAX_PASSWORD_BYTES {
            None
        } else {
            self.store.user(&user_id).await?
        };
        let valid = passwords::verify(
            request.password,
            user.as_ref().and_then(|u| u.password_hash.clone()),
        )
        .await?;
        // Deactivation wipes the password, so no password can prove this
        // account; say what happened to it, as other homeservers do.
        if user.as_ref().is_some_and(|u| u.deactivated) {
            return Err(Error::UserDeactivated);
        }
        let Some(user) = user.filter(|_| valid) else {
            self.login_failures_by_user.charge(&user_id);
            if let Some(ip) = ip {
                self.login_failures_by_ip.charge(ip);
            }
            return Err(Error::Forbidden("Invalid username or password".into()));
        };
        let login =
            self.sessions
                .prepare_login(&user.user_id, request.device_id, request.refresh_token)?;
        let device = login.device(
            &user.user_id,
            request.initial_device_display_name.as_deref(),
            ip,
        );
        if let Some(replaced) = self.store.login_device(&device).await? {
            self.sessions.forget(&[replaced]);
        }
        Ok(LoggedIn {
            user_id: user.user_id,
            device_id: Some(login.device_id),
            tokens: Some(login.tokens),
        })
    }

    /// `POST /refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens> {
        self.sessions.refresh(refresh_token).await
    }

    /// `POST /logout`: ends this session and deletes its device.
    pub async fn logout(&self, authed: &Authed) -> Result<()> {
        let ended = self
            .store
            .delete_devices(authed.user_id.as_str(), &[authed.device_id.to_string()])
            .await?;
        self.sessions.forget(&ended);
        Ok(())
    }

    /// `POST /logout/all`: ends every session of the user.
    pub async fn logout_all(&self, authed: &Authed) -> Result<()> {
        let ended = self
            .store
            .delete_all_devices(authed.user_id.as_str(), None)
            .await?;
        self.sessions.forget(&ended);
        Ok(())
    }

    /// `POST /account/password`.
    pub async fn change_password(
        &self,
        authed: &Authed,
        new_password: String,
        logout_devices: bool,
        auth: Option<AuthSubmission>,
    ) -> Result<()> {
        check_password_shape(&new_password)?;
        let user_id = authed.user_id.as_str();
        self.uia()
            .authenticate(Purpose::ChangePassword, Some(user_id), auth)
            .await?;
        let hash = passwords::hash(new_password).await?;
        self.store.set_password_hash(user_id, &hash).await?;
        if logout_devices {
            let ended = self
                .store
                .delete_all_devices(user_id, Some(authed.device_id.as_str()))
                .await?;
            self.sessions.forget(&ended);
        }
        Ok(())
    }

    /// `POST /account/deactivate`.
    pub async fn deactivate(
        &self,
        authed: &Authed,
        erase: bool,
        auth: Option<AuthSubmission>,
    ) -> Result<()> {
        let user_id = authed.user_id.as_str();
        self.uia()
            .authenticate(Purpose::Deactivate, Some(user_id), auth)
            .await?;
        let ended = self.store.deactivate_user(user_id, erase).await?;
        self.sessions.forget(&ended);
        tracing::info!(%user_id, erase, "deactivated");
        Ok(())
    }
}

fn limit_exceeded(wait: Duration) -> Error {
    let retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    Error::LimitExceeded { retry_after_ms }
}

fn check_password_shape(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::InvalidParam("the password must not be empty".into()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::InvalidParam(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_device_fields(device_id: Option<&str>, display_name: Option<&str>) -> Result<()> {
    if device_id.is_some_and(|d| d.is_empty() || d.chars().count() > MAX_NAME_CHARS) {
        return Err(Error::InvalidParam(
            "device_id must be 1 to 256 characters".into(),
        ));
    }
    check_display_name(display_name)
}

fn check_display_name(display_name: Option<&str>) -> Result<()> {
    if display_name.is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
        return Err(Error::InvalidParam(
            "display names are at most 256 characters".into(),
        ));
    }
    Ok(())
}
