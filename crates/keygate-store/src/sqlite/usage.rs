//! What keys did, per day. A batch is one write (all or nothing, like any
//! other), merged per key and in key-id order ([`crate::usage::per_key`]);
//! a key's last use never moves backwards, daily counts add up, and a key
//! deleted meanwhile is skipped rather than an error. Usage is not a change
//! of anything an administrator did, so it is not audited.

use async_trait::async_trait;
use chrono::NaiveDate;

use super::SqliteStore;
use crate::usage::per_key;
use crate::{DailyUse, KeyUse, Result, UsageStore};

#[async_trait]
impl UsageStore for SqliteStore {
    async fn record_usage(&self, uses: &[KeyUse]) -> Result<()> {
        let keys = per_key(uses);
        self.write(move |conn| {
            Box::pin(async move {
                for key in keys {
                    // The key's row first: a key deleted meanwhile is
                    // skipped, never a foreign-key error.
                    let touched = sqlx::query(
                        "UPDATE api_keys SET last_used_at = CASE \
                         WHEN $2 IS NOT NULL AND (last_used_at IS NULL OR last_used_at < $2) THEN $2 \
                         ELSE last_used_at END WHERE id = $1",
                    )
                    .bind(key.key_id)
                    .bind(key.last_used_at)
                    .execute(&mut *conn)
                    .await?;
                    if touched.rows_affected() == 0 {
                        continue;
                    }
                    for day in key.days {
                        sqlx::query(
                            "INSERT INTO key_usage (key_id, day, requests, denied) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (key_id, day) DO UPDATE SET \
                             requests = key_usage.requests + excluded.requests, \
                             denied = key_usage.denied + excluded.denied",
                        )
                        .bind(key.key_id)
                        .bind(day.date)
                        .bind(day.requests)
                        .bind(day.denied)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                Ok(((), vec![]))
            })
        })
        .await
    }

    async fn key_usage(&self, key_id: i64, since: NaiveDate) -> Result<Vec<DailyUse>> {
        let sql = "SELECT day, requests, denied FROM key_usage WHERE key_id = $1 AND day >= $2 ORDER BY day";
        Ok(sqlx::query_as(sql).bind(key_id).bind(since).fetch_all(&self.reader).await?)
    }
}
