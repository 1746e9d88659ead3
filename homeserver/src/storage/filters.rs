//! The `filters` table: the filters users upload, immutable once stored.

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::Result;

/// The row key a filter id names: only the exact decimal text
/// [`Store::create_filter`] handed out (no sign, no leading zeros), so that
/// each filter has exactly one id.
fn parse_filter_id(filter_id: &str) -> Option<i64> {
    let key: i64 = filter_id.parse().ok()?;
    (key >= 0 && key.to_string() == filter_id).then_some(key)
}

impl Store {
    /// Stores a filter (JSON text) of `user_id` and returns its new id, never
    /// handed out before.
    pub async fn create_filter(&self, user_id: &str, filter_json: &str) -> Result<String> {
        let filter_id: i64 = sqlx::query(
            "INSERT INTO filters (user_id, filter, created_ts) VALUES ($1, $2, $3) \
             RETURNING filter_id",
        )
        .bind(user_id)
        .bind(filter_json)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?
        .try_get("filter_id")?;
        Ok(filter_id.to_string())
    }

    /// The filter (JSON text) `filter_id` of `user_id`; `None` when there is
    /// no such filter or it belongs to someone else.
    pub async fn filter(&self, user_id: &str, filter_id: &str) -> Result<Option<String>> {
        let Some(key) = parse_filter_id(filter_id) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT filter FROM filters WHERE filter_id = $1 AND user_id = $2")
            .bind(key)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok(row.try_get("filter")?)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_filter_id;

    #[test]
    fn only_canonical_decimal_ids_name_a_row() {
        assert_eq!(parse_filter_id("0"), Some(0));
        assert_eq!(parse_filter_id("42"), Some(42));
        assert_eq!(parse_filter_id(&i64::MAX.to_string()), Some(i64::MAX));
        for other in [
            "",
            "042",
            "+42",
            "-1",
            "4 2",
            " 42",
            "42a",
            "1e3",
            "abc",
            "{}",
            "9223372036854775808",
        ] {
            assert_eq!(parse_filter_id(other), None, "{other:?}");
        }
    }
}
