//! The `users` table: accounts, their password hashes and profiles.

use sqlx::Row;

use super::{NewDevice, Store, devices::insert_device_in, now_ms};
use crate::error::Result;

/// One account as stored.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
}

impl Store {
    /// Creates the account and, unless `device` is `None`, its first device in
    /// one transaction. Returns `false` when the user id is taken.
    pub async fn create_user(
        &self,
        user_id: &str,
        password_hash: Option<&str>,
        displayname: &str,
        device: Option<&NewDevice<'_>>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (user_id, password_hash, displayname, created_ts) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(password_hash)
        .bind(displayname)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        if let Some(device) = device {
            insert_device_in(&mut tx, device).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The account, if it exists (deactivated or not).
    pub async fn user(&self, user_id: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(
            "SELECT user_id, password_hash, displayname, avatar_url, is_admin, deactivated \
             FROM users WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(UserRow {
                user_id: row.try_get("user_id")?,
                password_hash: row.try_get("password_hash")?,
                displayname: row.try_get("displayname")?,
                avatar_url: row.try_get("avatar_url")?,
                is_admin: row.try_get::<i64, _>("is_admin")? != 0,
                deactivated: row.try_get::<i64, _>("deactivated")? != 0,
            })
        })
        .transpose()
    }

    /// Whether a user id is taken, by a live or a deactivated account.
    pub async fn user_exists(&self, user_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Grants (or takes away) server administration.
    pub async fn set_admin(&self, user_id: &str, admin: bool) -> Result<()> {
        sqlx::query("UPDATE users SET is_admin = $1 WHERE user_id = $2")
            .bind(i64::from(admin))
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Replaces the password hash.
    pub async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets (or with `None` clears) the display name.
    pub async fn set_displayname(&self, user_id: &str, displayname: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE users SET displayname = $1 WHERE user_id = $2")
            .bind(displayname)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets (or with `None` clears) the avatar URL.
    pub async fn set_avatar_url(&self, user_id: &str, avatar_url: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE users SET avatar_url = $1 WHERE user_id = $2")
            .bind(avatar_url)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks the account deactivated, forgets its password (and with `erase`
    /// its profile) and deletes every device. Returns the ended session ids.
    pub async fn deactivate_user(&self, user_id: &str, erase: bool) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let sql = if erase {
            "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL, \
             avatar_url = NULL WHERE user_id = $1"
        } else {
            "UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = $1"
        };
        sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        let sessions = super::devices::delete_devices_in(&mut tx, user_id, None, None).await?;
        tx.commit().await?;
        Ok(sessions)
    }
}
