//! Account operations an administrator performs on other users' accounts:
//! no registration mode, rate limit or user-interactive authentication applies.

use super::{Accounts, check_password_shape};
use crate::{
    auth::passwords,
    error::{Error, Result},
    storage::UserRow,
};

impl Accounts {
    /// Creates an account. Without a password nobody can log in to it until
    /// an administrator sets one.
    pub async fn create_user(
        &self,
        localpart: &str,
        password: Option<String>,
        admin: bool,
    ) -> Result<String> {
        let user_id = self.check_available(localpart).await?;
        let hash = match password {
            Some(password) => {
                check_password_shape(&password)?;
                Some(passwords::hash(password).await?)
            }
            None => None,
        };
        if !self
            .store
            .create_user(&user_id, hash.as_deref(), localpart, None)
            .await?
        {
            return Err(Error::UserInUse);
        }
        if admin {
            self.store.set_admin(&user_id, true).await?;
        }
        tracing::info!(%user_id, admin, "user created by an administrator");
        Ok(user_id)
    }

    /// The local account `user_id`, or `M_NOT_FOUND`.
    pub async fn existing_user(&self, user_id: &str) -> Result<UserRow> {
        self.store
            .user(user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no account {user_id} on this server")))
    }

    /// Sets a new password, ending every session of the account when asked.
    pub async fn reset_password(
        &self,
        user_id: &str,
        password: String,
        logout_devices: bool,
    ) -> Result<()> {
        check_password_shape(&password)?;
        let user = self.existing_user(user_id).await?;
        if user.deactivated {
            return Err(Error::Forbidden(
                "the account is deactivated; reactivate it with a password".into(),
            ));
        }
        let hash = passwords::hash(password).await?;
        self.store.set_password_hash(user_id, &hash).await?;
        if logout_devices {
            let ended = self.store.delete_all_devices(user_id, None).await?;
            self.sessions.forget(&ended);
        }
        tracing::info!(%user_id, logout_devices, "password reset by an administrator");
        Ok(())
    }

    /// Deactivates the account: its password and sessions end at once.
    pub async fn deactivate_user(&self, user_id: &str, erase: bool) -> Result<()> {
        self.existing_user(user_id).await?;
        let ended = self.store.deactivate_user(user_id, erase).await?;
        self.sessions.forget(&ended);
        tracing::info!(%user_id, erase, "deactivated by an administrator");
        Ok(())
    }

    /// Reactivates a deactivated account with a new password.
    pub async fn reactivate_user(&self, user_id: &str, password: String) -> Result<()> {
        check_password_shape(&password)?;
        let user = self.existing_user(user_id).await?;
        if !user.deactivated {
            return Err(Error::InvalidParam("the account is active".into()));
        }
        let hash = passwords::hash(password).await?;
        self.store.reactivate_user(user_id, &hash).await?;
        tracing::info!(%user_id, "reactivated by an administrator");
        Ok(())
    }

    /// Grants or takes away server administration.
    pub async fn set_admin(&self, user_id: &str, admin: bool) -> Result<()> {
        self.existing_user(user_id).await?;
        self.store.set_admin(user_id, admin).await?;
        tracing::info!(%user_id, admin, "administration rights changed");
        Ok(())
    }
}
