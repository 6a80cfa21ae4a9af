//! A batch of usage on PostgreSQL, in two statements over arrays: one
//! touching the keys, one adding up their days. Both go in key-id order, so
//! that replicas writing at once take their row locks in the same order and
//! never deadlock.

use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::Result;
use crate::usage::{ADD_DAYS, KeyTotal};

pub(super) async fn write(store: &PostgresStore, keys: Vec<KeyTotal>) -> Result<()> {
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
    let mut tx = store.pool.begin().await?;
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
    let insert = format!(
        "INSERT INTO key_usage (key_id, day, requests, denied, credits, rate_limited, usage_exceeded, \
         disabled) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::DATE[], $3::BIGINT[], $4::BIGINT[], $6::BIGINT[], \
             $7::BIGINT[], $8::BIGINT[], $9::BIGINT[]) \
             AS b (key_id, day, requests, denied, credits, rate_limited, usage_exceeded, disabled) \
         WHERE b.key_id = ANY($5) ORDER BY b.key_id, b.day {ADD_DAYS}"
    );
    sqlx::query(&insert)
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
