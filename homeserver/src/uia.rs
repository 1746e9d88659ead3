//! User-interactive authentication (UIA): the 401 challenge and the stage
//! bookkeeping shared by registration, password change, deactivation and
//! device deletion.

use serde_json::{Map, Value, json};

use crate::{
    auth::passwords,
    config::RegistrationMode,
    error::{Error, Result},
    storage::Store,
};

/// Stage types this server offers.
pub const DUMMY: &str = "m.login.dummy";
pub const PASSWORD: &str = "m.login.password";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";

/// The 401 response that asks the client to complete (more) stages.
#[derive(Debug, Clone)]
pub struct UiaChallenge {
    pub flows: Vec<Vec<&'static str>>,
    pub session: String,
    pub completed: Vec<String>,
    /// Why the last attempt failed, as `(errcode, message)`.
    pub error: Option<(&'static str, String)>,
}

impl UiaChallenge {
    /// The response body defined by the spec.
    pub fn to_json(&self) -> Map<String, Value> {
        let flows: Vec<Value> = self
            .flows
            .iter()
            .map(|stages| json!({ "stages": stages }))
            .collect();
        let mut body = Map::new();
        body.insert("flows".into(), flows.into());
        body.insert("params".into(), json!({}));
        body.insert("session".into(), self.session.clone().into());
        if !self.completed.is_empty() {
            body.insert("completed".into(), self.completed.clone().into());
        }
        if let Some((errcode, error)) = &self.error {
            body.insert("errcode".into(), (*errcode).into());
            body.insert("error".into(), error.clone().into());
        }
        body
    }
}

/// What the request is for; a UIA session serves only the purpose it began with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Register,
    ChangePassword,
    Deactivate,
    DeleteDevices,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::ChangePassword => "password",
            Purpose::Deactivate => "deactivate",
            Purpose::DeleteDevices => "delete_devices",
        }
    }
}

/// The `auth` object a client sent, already parsed.
#[derive(Debug, Default, Clone)]
pub struct AuthSubmission {
    pub stage: Option<String>,
    pub session: Option<String>,
    /// For `m.login.password`: the user the client says it is (a localpart or full id).
    pub user: Option<String>,
    pub password: Option<String>,
    /// For `m.login.registration_token`.
    pub token: Option<String>,
}

/// Runs user-interactive authentication for one request.
pub struct Uia<'a> {
    pub store: &'a Store,
    pub server_name: &'a str,
    pub registration: RegistrationMode,
    pub registration_token: Option<&'a str>,
}

impl Uia<'_> {
    fn flows(&self, purpose: Purpose) -> Vec<Vec<&'static str>> {
        match (purpose, self.registration) {
            (Purpose::Register, RegistrationMode::Token) => vec![vec![REGISTRATION_TOKEN]],
            (Purpose::Register, _) => vec![vec![DUMMY]],
            _ => vec![vec![PASSWORD]],
        }
    }

    /// `Ok` once a whole flow is complete; otherwise the challenge to send.
    /// `user_id` is the authenticated user, for every purpose but registration.
    pub async fn authenticate(
        &self,
        purpose: Purpose,
        user_id: Option<&str>,
        auth: Option<AuthSubmission>,
    ) -> Result<()> {
        let flows = self.flows(purpose);
        let Some(auth) = auth else {
            let session = crate::auth::tokens::random_id();
            self.store
                .create_uia_session(&session, purpose.as_str(), user_id)
                .await?;
            return Err(challenge(flows, session, Vec::new(), None));
        };
        let (session, mut completed) = match &auth.session {
            Some(session) => {
                let row = self
                    .store
                    .uia_session(session)
                    .await?
                    .filter(|row| {
                        row.purpose == purpose.as_str() && row.user_id.as_deref() == user_id
                    })
                    .ok_or_else(|| Error::Unknown("unknown or expired UIA session".into()))?;
                (session.clone(), row.completed)
            }
            // A single-stage flow may be completed without first fetching a session.
            None => {
                let session = crate::auth::tokens::random_id();
                self.store
                    .create_uia_session(&session, purpose.as_str(), user_id)
                    .await?;
                (session, Vec::new())
            }
        };
        let Some(stage) = auth.stage.as_deref() else {
            return Err(challenge(flows, session, completed, None));
        };
        let offered = flows.iter().flatten().any(|s| *s == stage);
        if !offered {
            let error = (
                "M_UNRECOGNIZED",
                format!("authentication stage {stage} is not offered"),
            );
            return Err(challenge(flows, session, completed, Some(error)));
        }
        if let Err(reason) = self.check_stage(stage, user_id, &auth).await? {
            return Err(challenge(
                flows,
                session,
                completed,
                Some(("M_FORBIDDEN", reason)),
            ));
        }
        if !completed.iter().any(|s| s == stage) {
            completed.push(stage.to_owned());
        }
        let done = flows
            .iter()
            .any(|flow| flow.iter().all(|s| completed.iter().any(|c| c == s)));
        if done {
            self.store.delete_uia_session(&session).await?;
            Ok(())
        } else {
            self.store.set_uia_completed(&session, &completed).await?;
            Err(challenge(flows, session, completed, None))
        }
    }

    /// `Ok(Err(reason))` when the stage was attempted and failed.
    async fn check_stage(
        &self,
        stage: &str,
        user_id: Option<&str>,
        auth: &AuthSubmission,
    ) -> Result<Result<(), String>> {
        match stage {
            DUMMY => Ok(Ok(())),
            REGISTRATION_TOKEN => {
                let valid = match auth.token.as_deref() {
                    None => false,
                    Some(token) if Some(token) == self.registration_token => true,
                    // Tokens an administrator created are used up as they succeed.
                    Some(token) => self.store.use_registration_token(token).await?,
                };
                Ok(if valid {
                    Ok(())
                } else {
                    Err("invalid registration token".into())
                })
            }
            PASSWORD => {
                let Some(user_id) = user_id else {
                    return Ok(Err("no user to authenticate".into()));
                };
                let claimed = auth
                    .user
                    .as_deref()
                    .map(|u| qualify_user_id(u, self.server_name));
                if claimed.is_some_and(|claimed| claimed != user_id) {
                    return Ok(Err(
                        "the identifier does not match the logged-in user".into()
                    ));
                }
                let Some(password) = auth.password.clone() else {
                    return Ok(Err("missing password".into()));
                };
                let stored = self
                    .store
                    .user(user_id)
                    .await?
                    .and_then(|u| u.password_hash);
                let valid = passwords::verify(password, stored).await?;
                Ok(if valid {
                    Ok(())
                } else {
                    Err("invalid password".into())
                })
            }
            other => Err(Error::Internal(format!(
                "stage {other} offered but not implemented"
            ))),
        }
    }
}

fn challenge(
    flows: Vec<Vec<&'static str>>,
    session: String,
    completed: Vec<String>,
    error: Option<(&'static str, String)>,
) -> Error {
    Error::AuthRequired(Box::new(UiaChallenge {
        flows,
        session,
        completed,
        error,
    }))
}

/// `alice` -> `@alice:server`; a full user id is returned as is (lower-cased
/// localpart, as logins are case-insensitive for conforming ids).
pub fn qualify_user_id(user: &str, server_name: &str) -> String {
    if user.starts_with('@') {
        match user.split_once(':') {
            Some((localpart, server)) => format!("{}:{server}", localpart.to_lowercase()),
            None => user.to_owned(),
        }
    } else {
        format!("@{}:{server_name}", user.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifies_localparts_and_keeps_full_ids() {
        assert_eq!(
            qualify_user_id("Alice", "example.org"),
            "@alice:example.org"
        );
        assert_eq!(
            qualify_user_id("@Bob:other.org", "example.org"),
            "@bob:other.org"
        );
    }

    #[test]
    fn challenge_body_has_spec_shape() {
        let body = UiaChallenge {
            flows: vec![vec![PASSWORD]],
            session: "s".into(),
            completed: vec![],
            error: Some(("M_FORBIDDEN", "invalid password".into())),
        }
        .to_json();
        assert_eq!(body["flows"], json!([{ "stages": ["m.login.password"] }]));
        assert_eq!(body["params"], json!({}));
        assert_eq!(body["session"], "s");
        assert_eq!(body["errcode"], "M_FORBIDDEN");
        assert!(!body.contains_key("completed"));
    }
}
