//! The `federation_outbox` and `destinations` tables: events owed to other
//! servers, and how sending to each of them fares.

use sqlx::Row;

use super::Store;
use crate::error::Result;

/// A destination as an administrator sees it.
#[derive(Debug, Clone)]
pub struct DestinationRow {
    pub destination: String,
    pub failures: i64,
    /// When the next attempt may start (ms since the epoch; 0: now).
    pub retry_at: i64,
    pub last_error: Option<String>,
    pub last_success_ts: Option<i64>,
    /// Events waiting for it.
    pub queued: i64,
}

impl Store {
    /// Servers with events waiting for them.
    pub async fn outbox_destinations(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT destination FROM federation_outbox")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The oldest events waiting for `destination`: `(position, event JSON)`.
    pub async fn outbox_batch(&self, destination: &str, limit: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT o.stream_ordering, e.json FROM federation_outbox o \
             JOIN events e ON e.event_id = o.event_id WHERE o.destination = $1 \
             ORDER BY o.stream_ordering LIMIT $2",
        )
        .bind(destination)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("stream_ordering")?, row.try_get("json")?)))
            .collect()
    }

    /// `destination` received every event up to position `upto`.
    pub async fn outbox_delivered(&self, destination: &str, upto: i64) -> Result<()> {
        sqlx::query(
            "DELETE FROM federation_outbox WHERE destination = $1 AND stream_ordering <= $2",
        )
        .bind(destination)
        .bind(upto)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes `owner` the instance sending to `destination` until `until`
    /// (ms), unless another instance holds an unexpired lease.
    pub async fn lease_destination(
        &self,
        destination: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool> {
        sqlx::query(
            "INSERT INTO destinations (destination) VALUES ($1) ON CONFLICT (destination) DO NOTHING",
        )
        .bind(destination)
        .execute(&self.pool)
        .await?;
        let leased = sqlx::query(
            "UPDATE destinations SET lease_owner = $2, lease_until = $3 WHERE destination = $1 \
             AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $4)",
        )
        .bind(destination)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(leased.rows_affected() == 1)
    }

    /// Gives up `owner`'s lease on `destination`.
    pub async fn release_destination(&self, destination: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE destinations SET lease_owner = NULL, lease_until = 0 \
             WHERE destination = $1 AND lease_owner = $2",
        )
        .bind(destination)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how the last attempt to send to `destination` went.
    pub async fn record_attempt(
        &self,
        destination: &str,
        failure: Option<(i64, i64, &str)>,
        now: i64,
    ) -> Result<()> {
        let query = match failure {
            Some((failures, retry_at, error)) => sqlx::query(
                "UPDATE destinations SET failures = $2, retry_at = $3, last_error = $4 \
                 WHERE destination = $1",
            )
            .bind(destination)
            .bind(failures)
            .bind(retry_at)
            .bind(error),
            None => sqlx::query(
                "UPDATE destinations SET failures = 0, retry_at = 0, last_success_ts = $2 \
                 WHERE destination = $1",
            )
            .bind(destination)
            .bind(now),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// `(failures, retry_at)` of a destination this server has sent to.
    pub async fn destination_backoff(&self, destination: &str) -> Result<(i64, i64)> {
        let row = sqlx::query("SELECT failures, retry_at FROM destinations WHERE destination = $1")
            .bind(destination)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok((row.try_get("failures")?, row.try_get("retry_at")?)),
            None => Ok((0, 0)),
        }
    }

    /// Every destination, with its retry state and queue length.
    pub async fn destinations(&self) -> Result<Vec<DestinationRow>> {
        let rows = sqlx::query(
            "SELECT d.destination, d.failures, d.retry_at, d.last_error, d.last_success_ts, \
             (SELECT COUNT(*) FROM federation_outbox o WHERE o.destination = d.destination) AS queued \
             FROM destinations d ORDER BY d.destination",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DestinationRow {
                    destination: row.try_get("destination")?,
                    failures: row.try_get("failures")?,
                    retry_at: row.try_get("retry_at")?,
                    last_error: row.try_get("last_error")?,
                    last_success_ts: row.try_get("last_success_ts")?,
                    queued: row.try_get("queued")?,
                })
            })
            .collect()
    }
}
