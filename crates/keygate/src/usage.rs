//! When each key was last used.
//!
//! Authentication must not write to the database on every request, so uses
//! are gathered in memory and written in one transaction every
//! [`FLUSH_EVERY`], and once more at shutdown. `last_used_at` may therefore
//! lag by up to that interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keygate_store::Store;

pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<HashMap<i64, DateTime<Utc>>>>,
}

impl UsageRecorder {
    pub fn record(&self, key_id: i64, at: DateTime<Utc>) {
        let at = keygate_store::truncate(at);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let last = pending.entry(key_id).or_insert(at);
        *last = (*last).max(at);
    }

    /// Writes what was gathered; on failure keeps it for the next attempt.
    pub async fn flush(&self, store: &dyn Store) {
        let batch: Vec<(i64, DateTime<Utc>)> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.drain().collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(error) = store.record_key_use(&batch).await {
            tracing::warn!(%error, keys = batch.len(), "could not record key use; will retry");
            for (id, at) in batch {
                self.record(id, at);
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until the store is dropped by the server.
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
