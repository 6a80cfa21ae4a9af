//! What each key does: when it was last used, and per UTC day its requests,
//! how many were denied, the credits they spent and how many its limits
//! refused.
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

use keygate_core::limits::LimitReport;

use crate::admission::quota::Charge;

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Pending {
    last_used_at: Option<DateTime<Utc>>,
    days: BTreeMap<NaiveDate, DailyUse>,
}

/// Why a key's request was refused by its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    RateLimited,
    UsageExceeded,
    Disabled,
}

impl Refused {
    /// The verdict code, also the label of `keygate_limit_refusals_total`.
    pub fn code(self) -> &'static str {
        match self {
            Self::RateLimited => "RATE_LIMITED",
            Self::UsageExceeded => "USAGE_EXCEEDED",
            Self::Disabled => "DISABLED",
        }
    }
}

#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<HashMap<i64, Pending>>>,
}

impl UsageRecorder {
    /// A request authenticated with the key.
    pub fn record(&self, key_id: i64, at: DateTime<Utc>) {
        self.add(key_id, at, true, |day| day.requests += 1);
    }

    /// Credits an admitted request spent.
    pub fn record_credits(&self, key_id: i64, at: DateTime<Utc>, credits: u64) {
        let credits = i64::try_from(credits).unwrap_or(i64::MAX);
        self.add(key_id, at, false, |day| day.credits += credits);
    }

    /// A request of the key refused by its limits (counted also in
    /// `keygate_limit_refusals_total`).
    pub fn record_refused(&self, key_id: i64, at: DateTime<Utc>, why: Refused) {
        if let Some(metrics) = crate::telemetry::metrics::get() {
            metrics.limit_refusal(why.code());
        }
        self.add(key_id, at, false, |day| match why {
            Refused::RateLimited => day.rate_limited += 1,
            Refused::UsageExceeded => day.usage_exceeded += 1,
            Refused::Disabled => day.disabled += 1,
        });
    }

    /// A request authenticated with the key, then refused by authorization;
    /// called only by [`crate::server::observe`], the one place denials are counted:
    /// a 403 against the key that made the request, or a [`DeniedKey`]
    /// against the key it names.
    pub(crate) fn record_denied(&self, key_id: i64, at: DateTime<Utc>) {
        self.add(key_id, at, false, |day| day.denied += 1);
    }

    fn add(&self, key_id: i64, at: DateTime<Utc>, used: bool, count: impl FnOnce(&mut DailyUse)) {
        let at = keygate_store::truncate(at);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = pending.entry(key_id).or_default();
        if used {
            entry.last_used_at = entry.last_used_at.max(Some(at));
        }
        let date = at.date_naive();
        count(entry.days.entry(date).or_insert(DailyUse::zero(date)));
    }

    /// Writes what was gathered.
    pub async fn flush(&self, store: &dyn Store) {
        let batch: Vec<KeyUse> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending
                .drain()
                .map(|(key_id, p)| KeyUse {
                    key_id,
                    last_used_at: p.last_used_at,
                    days: p.days.into_values().collect(),
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
                            self.add(key.key_id, midnight.and_utc(), false, |pending| pending.add(&day));
                        }
                    }
                    if let Some(at) = key.last_used_at {
                        self.add(key.key_id, at, true, |_| {});
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
/// counted against it, and to what its limits charged or refused, so that
/// a failed request is refunded and every answer carries the limit's
/// headers ([`crate::server::observe`]).
#[derive(Clone, Default)]
pub struct RequestKey(Arc<Slot>);

#[derive(Default)]
struct Slot {
    key: OnceLock<i64>,
    /// What was charged, and the rate limit that refused the request.
    limits: Mutex<(Option<Charge>, Option<LimitReport>)>,
}

impl RequestKey {
    pub fn set(&self, key_id: i64) {
        let _ = self.0.key.set(key_id);
    }

    pub fn get(&self) -> Option<i64> {
        self.0.key.get().copied()
    }

    /// What the key's limits took for this request (nothing is kept for a
    /// key without limits: the common path stays lock-free).
    pub fn charged(&self, charge: Charge) {
        if !charge.is_empty() {
            self.0.limits.lock().unwrap_or_else(PoisonError::into_inner).0 = Some(charge);
        }
    }

    /// The rate limit that refused this request.
    pub fn refused_by(&self, limit: LimitReport) {
        self.0.limits.lock().unwrap_or_else(PoisonError::into_inner).1 = Some(limit);
    }

    /// What was charged, and the rate limit that refused the request.
    pub(crate) fn take_limits(&self) -> (Option<Charge>, Option<LimitReport>) {
        std::mem::take(&mut *self.0.limits.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Put on a response that refuses a key it did not authenticate with (such
/// as `/verify` answering `FORBIDDEN` with a 200), so that the denial is
/// counted against that key.
#[derive(Clone, Copy, Debug)]
pub struct DeniedKey(pub i64);
