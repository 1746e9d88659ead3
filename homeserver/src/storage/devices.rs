//! The `devices` and `refresh_tokens` tables: one login session per device.

use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Store, now_ms};
use crate::error::Result;

/// A device to create (or to take over, when the user logs in again with a known device id).
#[derive(Debug)]
pub struct NewDevice<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub display_name: Option<&'a str>,
    pub session_id: &'a str,
    pub refresh_token_hash: Option<&'a str>,
    pub ip: Option<&'a str>,
}

/// One device as stored.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub user_id: String,
    pub device_id: String,
    pub display_name: Option<String>,
    pub session_id: String,
    pub token_generation: i64,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The token was current: it is now spent and `new` replaces it.
    Rotated(DeviceRow),
    /// The token had been used before: the session is ended.
    Reused { session_id: String },
    /// No session knows this token.
    Unknown,
}

const DEVICE_COLUMNS: &str = "user_id, device_id, display_name, session_id, token_generation, \
                              last_seen_ts, last_seen_ip";

fn device_from_row(row: &AnyRow) -> Result<DeviceRow> {
    Ok(DeviceRow {
        user_id: row.try_get("user_id")?,
        device_id: row.try_get("device_id")?,
        display_name: row.try_get("display_name")?,
        session_id: row.try_get("session_id")?,
        token_generation: row.try_get("token_generation")?,
        last_seen_ts: row.try_get("last_seen_ts")?,
        last_seen_ip: row.try_get("last_seen_ip")?,
    })
}

/// Inserts the device, replacing an earlier login on the same device id.
/// Returns the session id that the new login replaced, if any.
pub(super) async fn insert_device_in(
    conn: &mut AnyConnection,
    device: &NewDevice<'_>,
) -> Result<Option<String>> {
    let replaced: Option<String> =
        sqlx::query_scalar("SELECT session_id FROM devices WHERE user_id = $1 AND device_id = $2")
            .bind(device.user_id)
            .bind(device.device_id)
            .fetch_optional(&mut *conn)
            .await?;
    let now = now_ms();
    if let Some(old) = &replaced {
        sqlx::query("DELETE FROM refresh_tokens WHERE session_id = $1")
            .bind(old)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE devices SET session_id = $1, token_generation = 0, \
             display_name = COALESCE($2, display_name), last_seen_ts = $3, last_seen_ip = $4 \
             WHERE user_id = $5 AND device_id = $6",
        )
        .bind(device.session_id)
        .bind(device.display_name)
        .bind(now)
        .bind(device.ip)
        .bind(device.user_id)
        .bind(device.device_id)
        .execute(&mut *conn)
        .await?;
    } else {
        sqlx::query(
            "INSERT INTO devices (user_id, device_id, display_name, session_id, \
             last_seen_ts, last_seen_ip, created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(device.user_id)
        .bind(device.device_id)
        .bind(device.display_name)
        .bind(device.session_id)
        .bind(now)
        .bind(device.ip)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(hash) = device.refresh_token_hash {
        insert_refresh_token(conn, hash, device.session_id, now).await?;
    }
    Ok(replaced)
}

async fn insert_refresh_token(
    conn: &mut AnyConnection,
    hash: &str,
    session_id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_ts) VALUES ($1, $2, $3)",
    )
    .bind(hash)
    .bind(session_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the user's devices: those in `only` when given, all but `except`
/// otherwise. Returns the ended session ids.
pub(super) async fn delete_devices_in(
    tx: &mut AnyConnection,
    user_id: &str,
    only: Option<&[String]>,
    except: Option<&str>,
) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT device_id, session_id FROM devices WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
    let mut ended = Vec::new();
    for row in rows {
        let device_id: String = row.try_get("device_id")?;
        let session_id: String = row.try_get("session_id")?;
        let chosen = only.is_none_or(|only| only.contains(&device_id));
        if !chosen || except == Some(device_id.as_str()) {
            continue;
        }
        sqlx::query("DELETE FROM refresh_tokens WHERE session_id = $1")
            .bind(&session_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM devices WHERE session_id = $1")
            .bind(&session_id)
            .execute(&mut *tx)
            .await?;
        ended.push(session_id);
    }
    Ok(ended)
}

impl Store {
    /// Logs a device in: creates it, or takes it over from an earlier login.
    /// Returns the replaced session id, if any.
    pub async fn login_device(&self, device: &NewDevice<'_>) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        let replaced = insert_device_in(&mut tx, device).await?;
        tx.commit().await?;
        Ok(replaced)
    }

    /// The device behind a session id.
    pub async fn session(&self, session_id: &str) -> Result<Option<DeviceRow>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE session_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// One of the user's devices.
    pub async fn device(&self, user_id: &str, device_id: &str) -> Result<Option<DeviceRow>> {
        let sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 AND device_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// All of the user's devices, oldest first.
    pub async fn devices(&self, user_id: &str) -> Result<Vec<DeviceRow>> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY created_ts, device_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// Renames a device; `false` when the user has no such device.
    pub async fn set_device_display_name(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3",
        )
        .bind(display_name)
        .bind(user_id)
        .bind(device_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    /// Deletes the named devices of the user; returns the ended session ids.
    pub async fn delete_devices(
        &self,
        user_id: &str,
        device_ids: &[String],
    ) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let ended = delete_devices_in(&mut tx, user_id, Some(device_ids), None).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Deletes every device of the user except `except`; returns the ended session ids.
    pub async fn delete_all_devices(
        &self,
        user_id: &str,
        except: Option<&str>,
    ) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let ended = delete_devices_in(&mut tx, user_id, None, except).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Spends a refresh token: rotates to `new_hash` when it is current, ends
    /// the session when it was spent before.
    pub async fn use_refresh_token(&self, hash: &str, new_hash: &str) -> Result<RefreshOutcome> {
        let mut tx = self.begin_write().await?;
        // Marking it used first makes two concurrent uses race on one row update.
        let spent =
            sqlx::query("UPDATE refresh_tokens SET used = 1 WHERE token_hash = $1 AND used = 0")
                .bind(hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let session_id: Option<String> =
            sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(session_id) = session_id else {
            return Ok(RefreshOutcome::Unknown);
        };
        if spent == 0 {
            let ended = sqlx::query("SELECT user_id, device_id FROM devices WHERE session_id = $1")
                .bind(&session_id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = ended {
                let user_id: String = row.try_get("user_id")?;
                let device_id: String = row.try_get("device_id")?;
                delete_devices_in(&mut tx, &user_id, Some(&[device_id]), None).await?;
            }
            tx.commit().await?;
            return Ok(RefreshOutcome::Reused { session_id });
        }
        sqlx::query(
            "UPDATE devices SET token_generation = token_generation + 1 WHERE session_id = $1",
        )
        .bind(&session_id)
        .execute(&mut *tx)
        .await?;
        insert_refresh_token(&mut tx, new_hash, &session_id, now_ms()).await?;
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE session_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&session_id)
            .fetch_one(&mut *tx)
            .await?;
        let device = device_from_row(&row)?;
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated(device))
    }

    /// Records when and from where a session was last used.
    pub async fn touch_session(&self, session_id: &str, ts: i64, ip: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE devices SET last_seen_ts = $1, last_seen_ip = $2 WHERE session_id = $3",
        )
        .bind(ts)
        .bind(ip)
        .bind(session_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
