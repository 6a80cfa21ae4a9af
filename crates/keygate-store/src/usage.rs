//! What keys did, per day. A batch is one write (all or nothing, like any
//! other), merged per key and day and in key-id order ([`per_key`]), which
//! each backend writes in as few statements as it can
//! ([`Backend::write_usage`]): a key's last use never moves backwards, daily
//! counts add up, and a key deleted meanwhile is skipped rather than an
//! error. Usage is not a change of anything an administrator did, so it is
//! not audited.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::backend::Backend;
use crate::sql::sql;
use crate::{DailyUse, KeyUse, Result, UsageStore};

#[async_trait]
impl<B: Backend> UsageStore for B {
    async fn record_usage(&self, uses: &[KeyUse]) -> Result<()> {
        self.write_usage(per_key(uses)).await
    }

    async fn key_usage(&self, key_id: i64, since: NaiveDate) -> Result<Vec<DailyUse>> {
        let days = sql("SELECT day, requests, denied, credits, rate_limited, usage_exceeded, disabled \
                        FROM key_usage WHERE key_id = $1 AND day >= $2 ORDER BY day");
        Ok(days.bind(key_id).bind(since).fetch_all(&mut self.reads()).await?)
    }
}

/// How the days of a batch add to those already stored: the end of the
/// `INSERT INTO key_usage` of every backend.
pub(crate) const ADD_DAYS: &str = "ON CONFLICT (key_id, day) DO UPDATE SET \
     requests = key_usage.requests + excluded.requests, \
     denied = key_usage.denied + excluded.denied, \
     credits = key_usage.credits + excluded.credits, \
     rate_limited = key_usage.rate_limited + excluded.rate_limited, \
     usage_exceeded = key_usage.usage_exceeded + excluded.usage_exceeded, \
     disabled = key_usage.disabled + excluded.disabled";

/// What one key did in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyTotal {
    pub key_id: i64,
    /// The latest use in the batch; `None` when only denials were counted.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Requests and denials per day, added up, oldest first.
    pub days: Vec<DailyUse>,
}

/// The batch with one entry per key, in key-id order: the order in which
/// every backend touches the keys' rows, so that writers taking their locks
/// at once never deadlock. Uses of one key keep the latest `last_used_at`,
/// and their counts of one day add up, so the batch writes what writing
/// its uses one by one would have.
pub(crate) fn per_key(uses: &[KeyUse]) -> Vec<KeyTotal> {
    let mut latest: BTreeMap<i64, Option<DateTime<Utc>>> = BTreeMap::new();
    let mut per_day: BTreeMap<(i64, NaiveDate), DailyUse> = BTreeMap::new();
    for KeyUse { key_id, last_used_at, days } in uses {
        let last = latest.entry(*key_id).or_default();
        *last = (*last).max(*last_used_at);
        for day in days {
            per_day.entry((*key_id, day.date)).or_insert(DailyUse::zero(day.date)).add(day);
        }
    }
    let days_of =
        |key_id| per_day.range((key_id, NaiveDate::MIN)..=(key_id, NaiveDate::MAX)).map(|(_, day)| *day);
    latest
        .into_iter()
        .map(|(key_id, last_used_at)| KeyTotal { key_id, last_used_at, days: days_of(key_id).collect() })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn a_batch_is_merged_per_key_and_day_in_key_order() {
        let now = crate::now();
        let (today, yesterday) = (now.date_naive(), (now - Duration::days(1)).date_naive());
        let day = |date, requests, denied| DailyUse { requests, denied, ..DailyUse::zero(date) };
        let uses = [
            KeyUse { key_id: 9, last_used_at: Some(now), days: vec![day(today, 2, 0)] },
            KeyUse { key_id: 3, last_used_at: None, days: vec![day(today, 0, 1)] },
            KeyUse {
                key_id: 9,
                last_used_at: Some(now - Duration::hours(1)),
                days: vec![day(yesterday, 1, 1)],
            },
            KeyUse { key_id: 9, last_used_at: None, days: vec![day(today, 3, 1)] },
        ];
        let merged = per_key(&uses);
        assert_eq!(
            merged,
            [
                KeyTotal { key_id: 3, last_used_at: None, days: vec![day(today, 0, 1)] },
                KeyTotal {
                    key_id: 9,
                    last_used_at: Some(now),
                    days: vec![day(yesterday, 1, 1), day(today, 5, 1)]
                },
            ]
        );
        assert!(per_key(&[]).is_empty());
    }
}
