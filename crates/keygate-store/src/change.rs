//! How a committed change reaches what depends on it: the caches attached
//! to the store, synchronously, before the write returns; then subscribers.

use std::sync::{Arc, PoisonError, RwLock};

use crate::{AuthCache, AuthChange};

/// Where a backend announces [`AuthChange`]s after its commits: to the
/// caches attached to the store, synchronously, then to subscribers.
#[derive(Clone)]
pub(crate) struct ChangeFeed {
    sender: tokio::sync::broadcast::Sender<AuthChange>,
    caches: Arc<RwLock<Vec<Arc<dyn AuthCache>>>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self { sender: tokio::sync::broadcast::channel(1024).0, caches: Arc::default() }
    }
}

impl ChangeFeed {
    /// Announces `changes`, just committed: invalidates the attached caches,
    /// then tells subscribers.
    pub(crate) fn published(&self, changes: Vec<AuthChange>) {
        if !changes.is_empty() {
            let caches = self.caches.read().unwrap_or_else(PoisonError::into_inner);
            for change in &changes {
                caches.iter().for_each(|cache| cache.changed(change));
            }
        }
        for change in changes {
            let _ = self.sender.send(change);
        }
    }

    /// From now on, every change committed through this feed invalidates
    /// `cache` before the write returns.
    pub(crate) fn attach(&self, cache: Arc<dyn AuthCache>) {
        self.caches.write().unwrap_or_else(PoisonError::into_inner).push(cache);
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<AuthChange> {
        self.sender.subscribe()
    }
}
