//! The `uia_sessions` table: progress through user-interactive authentication.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::{Error, Result};

/// Sessions older than this are forgotten.
const UIA_SESSION_LIFETIME_MS: i64 = 60 * 60 * 1000;

/// A stored UIA session.
#[derive(Debug, Clone)]
pub struct UiaSessionRow {
    pub purpose: String,
    pub user_id: Option<String>,
    pub completed: Vec<String>,
}

impl Store {
    /// Starts a UIA session (and forgets expired ones).
    pub async fn create_uia_session(
        &self,
        session_id: &str,
        purpose: &str,
        user_id: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query("DELETE FROM uia_sessions WHERE created_ts < $1")
            .bind(now - UIA_SESSION_LIFETIME_MS)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO uia_sessions (session_id, purpose, user_id, created_ts) VALUES ($1, $2, $3, $4)")
            .bind(session_id)
            .bind(purpose)
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A live UIA session.
    pub async fn uia_session(&self, session_id: &str) -> Result<Option<UiaSessionRow>> {
        let row = sqlx::query(
            "SELECT purpose, user_id, completed FROM uia_sessions WHERE session_id = $1 AND created_ts >= $2",
        )
        .bind(session_id)
        .bind(now_ms() - UIA_SESSION_LIFETIME_MS)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let completed: String = row.try_get("completed")?;
            Ok(UiaSessionRow {
                purpose: row.try_get("purpose")?,
                user_id: row.try_get("user_id")?,
                completed: serde_json::from_str(&completed)
                    .map_err(|e| Error::Internal(format!("corrupt UIA session: {e}")))?,
            })
        })
        .transpose()
    }

    /// Records the stages completed so far.
    pub async fn set_uia_completed(&self, session_id: &str, completed: &[String]) -> Result<()> {
        let completed =
            serde_json::to_string(completed).map_err(|e| Error::Internal(e.to_string()))?;
        sqlx::query("UPDATE uia_sessions SET completed = $1 WHERE session_id = $2")
            .bind(completed)
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a UIA session once its request has been carried out.
    pub async fn delete_uia_session(&self, session_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uia_sessions WHERE session_id = $1")
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
