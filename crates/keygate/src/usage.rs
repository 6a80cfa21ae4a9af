//! What each key does: when it was last used, and its requests (and how
//! many were denied) per UTC day.
//!
//! Authentication must not write to the database on every request, so uses
//! are gathered in memory and written in one transaction every
//! [`FLUSH_EVERY`], and once more at shutdown: `last_used_at` and the day's
//! counts may lag by up to that interval. If the database is unavailable the
//! batch is kept for the next attempt.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use keygate_store::{DailyUse, KeyUse, Store, StoreError};

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Pending {
    last_used_at: Option<DateTime<Utc>>,
    /// (requests, denied) per day.
    days: BTreeMap<NaiveDate, (i64, i64)>,
}

#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<HashMap<i64, Pending>>>,
}

impl UsageRecorder {
    /// A request authenticated with the key.
    pub fn record(&self, key_id: i64, at: DateTime<Utc>) {
        self.add(key_id, at, 1, 0, true);
    }

    /// A request authenticated with the key, then refused by authorization;
    /// called only by [`crate::observe`], the one place denials are counted:
    /// a 403 against the key that made the request, or a [`DeniedKey`]
    /// against the key it names.
    pub(crate) fn record_denied(&self, key_id: i64, at: DateTime<Utc>) {
        self.add(key_id, at, 0, 1, false);
    }

    fn add(&self, key_id: i64, at: DateTime<Utc>, requests: i64, denied: i64, used: bool) {
        let at = keygate_store::truncate(at);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = pending.entry(key_id).or_default();
        if used {
            entry.last_used_at = entry.last_used_at.max(Some(at));
        }
        let day = entry.days.entry(at.date_naive()).or_default();
        day.0 += requests;
        day.1 += denied;
    }

    /// Writes what was gathered.
    pub async fn flush(&self, store: &dyn Store) {
        let batch: Vec<KeyUse> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending
                .drain()
                .map(|(key_id, p)| {
                    let days = p
                        .days
                        .into_iter()
                        .map(|(date, (requests, denied))| DailyUse { date, requests, denied })
                        .collect();
                    KeyUse { key_id, last_used_at: p.last_used_at, days }
                })
                .collect()
        };
        if batch.is_empty() {
            return;
        }
        match store.record_usage(&batch).await {
            Ok(()) => {}
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(%error, keys = batch.len(), "could not record key usage; will retry");
                for key in batch {
                    for day in key.days {
                        if let Some(midnight) = day.date.and_hms_opt(0, 0, 0) {
                            self.add(key.key_id, midnight.and_utc(), day.requests, day.denied, false);
                        }
                    }
                    if let Some(at) = key.last_used_at {
                        self.add(key.key_id, at, 0, 0, true);
                    }
                }
            }
            Err(error) => tracing::error!(%error, keys = batch.len(), "key usage lost"),
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until told to stop, then once more.
    pub async fn run(self, store: Arc<dyn Store>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(store.as_ref()).await,
                _ = stop.changed() => break,
            }
        }
        self.flush(store.as_ref()).await;
    }
}

/// Set by authentication to the key behind a request, so that a 403 can be
/// counted against it ([`crate::observe`]).
#[derive(Clone, Default)]
pub struct RequestKey(Arc<OnceLock<i64>>);

impl RequestKey {
    pub fn set(&self, key_id: i64) {
        let _ = self.0.set(key_id);
    }

    pub fn get(&self) -> Option<i64> {
        self.0.get().copied()
    }
}

/// Put on a response that refuses a key it did not authenticate with (such
/// as `/verify` answering `FORBIDDEN` with a 200), so that the denial is
/// counted against that key.
#[derive(Clone, Copy, Debug)]
pub struct DeniedKey(pub i64);
