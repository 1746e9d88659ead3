//! The `server_keys` table: other servers' key documents, kept across restarts.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;

impl Store {
    /// The kept key document of `server_name` and until when it is trusted.
    pub async fn server_key_document(&self, server_name: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT document, trusted_until_ts FROM server_keys WHERE server_name = $1",
        )
        .bind(server_name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.try_get("document")?, row.try_get("trusted_until_ts")?)))
            .transpose()
    }

    /// Keeps the latest checked key document of `server_name`.
    pub async fn put_server_key_document(
        &self,
        server_name: &str,
        document: &str,
        trusted_until_ts: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO server_keys (server_name, document, trusted_until_ts, fetched_ts) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (server_name) DO UPDATE SET \
             document = excluded.document, trusted_until_ts = excluded.trusted_until_ts, \
             fetched_ts = excluded.fetched_ts",
        )
        .bind(server_name)
        .bind(document)
        .bind(trusted_until_ts)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
