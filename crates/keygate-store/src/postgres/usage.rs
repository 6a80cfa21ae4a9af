//! Usage per key and day, a batch in two statements: one touching the keys,
//! one adding up their days. Both go in key-id order
//! ([`crate::usage::per_key`]), so that replicas writing at once take their
//! row locks in the same order and never deadlock; `last_used_at` never
//! moves backwards, so an older batch cannot undo a newer one; keys deleted
//! meanwhile are skipped. Usage is telemetry, not a change, so it writes no
//! audit event.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::PostgresStore;
use crate::usage::per_key;
use crate::{DailyUse, KeyUse, Result, UsageStore};

#[async_trait]
impl UsageStore for PostgresStore {
    async fn record_usage(&self, uses: &[KeyUse]) -> Result<()> {
        let keys = per_key(uses);
        let ids: Vec<i64> = keys.iter().map(|key| key.key_id).collect();
        let last_used: Vec<Option<DateTime<Utc>>> = keys.iter().map(|key| key.last_used_at).collect();
        let days = keys.iter().flat_map(|key| key.days.iter().map(|day| (key.key_id, day)));
        let (mut day_ids, mut dates) = (vec![], vec![]);
        let mut counts: [Vec<i64>; 6] = Default::default();
        for (key_id, day) in days {
            day_ids.push(key_id);
            dates.push(day.date);
            let values =
                [day.requests, day.denied, day.credits, day.rate_limited, day.usage_exceeded, day.disabled];
            for (column, value) in counts.iter_mut().zip(values) {
                column.push(value);
            }
        }
        let [requests, denied, credits, rate_limited, usage_exceeded, disabled] = counts;
        let mut tx = self.pool.begin().await?;
        // Locks the keys that still exist, in id order, and moves their last
        // use forward (GREATEST passes over NULL).
        let touched: Vec<i64> = sqlx::query_scalar(
            "WITH batch AS MATERIALIZED ( \
                 SELECT k.id, b.last_used_at FROM api_keys k \
                 JOIN UNNEST($1::BIGINT[], $2::TIMESTAMPTZ[]) AS b (id, last_used_at) ON b.id = k.id \
                 ORDER BY k.id FOR NO KEY UPDATE OF k \
             ) \
             UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, batch.last_used_at) \
             FROM batch WHERE k.id = batch.id RETURNING k.id",
        )
        .bind(&ids)
        .bind(&last_used)
        .fetch_all(&mut *tx)
        .await?;
        // The days of those keys; their rows are locked, so none is deleted
        // before the commit.
        sqlx::query(
            "INSERT INTO key_usage (key_id, day, requests, denied, credits, rate_limited, usage_exceeded, \
             disabled) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::DATE[], $3::BIGINT[], $4::BIGINT[], $6::BIGINT[], \
                 $7::BIGINT[], $8::BIGINT[], $9::BIGINT[]) \
                 AS b (key_id, day, requests, denied, credits, rate_limited, usage_exceeded, disabled) \
             WHERE b.key_id = ANY($5) ORDER BY b.key_id, b.day \
             ON CONFLICT (key_id, day) DO UPDATE SET \
             requests = key_usage.requests + excluded.requests, denied = key_usage.denied + excluded.denied, \
             credits = key_usage.credits + excluded.credits, \
             rate_limited = key_usage.rate_limited + excluded.rate_limited, \
             usage_exceeded = key_usage.usage_exceeded + excluded.usage_exceeded, \
             disabled = key_usage.disabled + excluded.disabled",
        )
        .bind(&day_ids)
        .bind(&dates)
        .bind(&requests)
        .bind(&denied)
        .bind(&touched)
        .bind(&credits)
        .bind(&rate_limited)
        .bind(&usage_exceeded)
        .bind(&disabled)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key_usage(&self, key_id: i64, since: NaiveDate) -> Result<Vec<DailyUse>> {
        let sql = "SELECT day, requests, denied, credits, rate_limited, usage_exceeded, disabled \
                   FROM key_usage WHERE key_id = $1 AND day >= $2 ORDER BY day";
        Ok(sqlx::query_as(sql).bind(key_id).bind(since).fetch_all(&self.pool).await?)
    }
}
