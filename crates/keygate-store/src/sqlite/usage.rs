//! A batch of usage on SQLite: one job of the writer, two statements per
//! [`CHUNK`] keys rather than two per key (each statement is a hand-off to
//! SQLite's thread, and a flush may carry every key in use).

use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::usage::{ADD_DAYS, KeyTotal};
use crate::{DailyUse, Result};

/// Keys per statement: far below SQLite's 32,766 bound parameters.
const CHUNK: usize = 1_000;

pub(super) async fn write(store: &SqliteStore, keys: Vec<KeyTotal>) -> Result<()> {
    store
        .write(move |conn| {
            Box::pin(async move {
                for chunk in keys.chunks(CHUNK) {
                    // The keys' rows first; a key deleted meanwhile matches
                    // nothing here and is skipped below, never a
                    // foreign-key error.
                    let mut update = QueryBuilder::<Sqlite>::new(
                        "UPDATE api_keys SET last_used_at = CASE \
                     WHEN b.column2 IS NOT NULL AND (api_keys.last_used_at IS NULL \
                     OR api_keys.last_used_at < b.column2) THEN b.column2 \
                     ELSE api_keys.last_used_at END FROM (",
                    );
                    update.push_values(chunk, |mut row, key| {
                        row.push_bind(key.key_id).push_bind(key.last_used_at);
                    });
                    update.push(") AS b WHERE api_keys.id = b.column1");
                    update.build().execute(&mut *conn).await?;
                    let days: Vec<(i64, DailyUse)> =
                        chunk.iter().flat_map(|key| key.days.iter().map(|day| (key.key_id, *day))).collect();
                    if days.is_empty() {
                        continue;
                    }
                    let mut insert = QueryBuilder::<Sqlite>::new(
                        "INSERT INTO key_usage (key_id, day, requests, denied, credits, rate_limited, \
                     usage_exceeded, disabled) \
                     SELECT column1, column2, column3, column4, column5, column6, column7, column8 FROM (",
                    );
                    insert.push_values(&days, |mut row, (key_id, day)| {
                        row.push_bind(*key_id)
                            .push_bind(day.date)
                            .push_bind(day.requests)
                            .push_bind(day.denied)
                            .push_bind(day.credits)
                            .push_bind(day.rate_limited)
                            .push_bind(day.usage_exceeded)
                            .push_bind(day.disabled);
                    });
                    insert.push(") WHERE EXISTS (SELECT 1 FROM api_keys WHERE id = column1) ");
                    insert.push(ADD_DAYS);
                    insert.build().execute(&mut *conn).await?;
                }
                Ok(((), vec![]))
            })
        })
        .await
}
