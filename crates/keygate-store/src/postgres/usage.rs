//! Usage per key and day. A batch is written in key-id order, so that
//! replicas writing at once take their row locks in the same order and never
//! deadlock; `last_used_at` never moves backwards, so an older batch cannot
//! undo a newer one; keys deleted meanwhile are skipped. Usage is telemetry,
//! not a change, so it writes no audit event.

use async_trait::async_trait;
use chrono::NaiveDate;

use super::PostgresStore;
use crate::{DailyUse, KeyUse, Result, UsageStore};

#[async_trait]
impl UsageStore for PostgresStore {
    async fn record_usage(&self, uses: &[KeyUse]) -> Result<()> {
        let mut uses: Vec<&KeyUse> = uses.iter().collect();
        uses.sort_unstable_by_key(|u| u.key_id);
        let mut tx = self.pool.begin().await?;
        for key in uses {
            // Always touches the key's row, which locks it until commit: a
            // key deleted meanwhile is skipped, never a foreign-key error.
            let found = sqlx::query(
                "UPDATE api_keys SET last_used_at = CASE \
                 WHEN $2::TIMESTAMPTZ IS NOT NULL AND (last_used_at IS NULL OR last_used_at < $2) THEN $2 \
                 ELSE last_used_at END WHERE id = $1",
            )
            .bind(key.key_id)
            .bind(key.last_used_at)
            .execute(&mut *tx)
            .await?;
            if found.rows_affected() == 0 {
                continue;
            }
            for day in &key.days {
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
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn key_usage(&self, key_id: i64, since: NaiveDate) -> Result<Vec<DailyUse>> {
        Ok(sqlx::query_as(
            "SELECT day, requests, denied FROM key_usage WHERE key_id = $1 AND day >= $2 ORDER BY day",
        )
        .bind(key_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }
}
