//! How a committed change reaches the caches attached to the store:
//! synchronously, before the write returns.

use std::sync::{Arc, PoisonError, RwLock};

use crate::{AuthCache, AuthChange};

/// Where a backend announces [`AuthChange`]s after its commits.
#[derive(Clone, Default)]
pub(crate) struct ChangeFeed {
    caches: Arc<RwLock<Vec<Arc<dyn AuthCache>>>>,
}

impl ChangeFeed {
    /// Announces `changes`, just committed: invalidates the attached caches.
    pub(crate) fn published(&self, changes: &[AuthChange]) {
        if changes.is_empty() {
            return;
        }
        let caches = self.caches.read().unwrap_or_else(PoisonError::into_inner);
        for change in changes {
            caches.iter().for_each(|cache| cache.changed(change));
        }
    }

    /// From now on, every change committed through this feed invalidates
    /// `cache` before the write returns.
    pub(crate) fn attach(&self, cache: Arc<dyn AuthCache>) {
        self.caches.write().unwrap_or_else(PoisonError::into_inner).push(cache);
    }
}
