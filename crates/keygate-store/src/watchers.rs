//! The tasks a store runs beside the requests (listeners, heartbeats,
//! writers): kept until the store closes, then stopped.

use std::sync::{Mutex, PoisonError};

use tokio::task::{AbortHandle, JoinHandle};

#[derive(Default)]
pub(crate) struct Watchers(Mutex<Vec<AbortHandle>>);

impl Watchers {
    /// Keeps `task` until [`Watchers::stop`].
    pub(crate) fn keep<T>(&self, task: &JoinHandle<T>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(task.abort_handle());
    }

    /// Stops every task kept.
    pub(crate) fn stop(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).drain(..).for_each(|task| task.abort());
    }
}
