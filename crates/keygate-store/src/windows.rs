//! Rate-limit windows in this process's memory ([`LocalWindows`]), for a
//! database one process serves (SQLite): the service's quotas use them
//! when the store has no [`RateWindows`] of its own. Windows that every
//! replica shares are PostgreSQL's (`postgres/windows.rs`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use keygate_core::limits::{Window, lease_size};

use crate::{RateWindows, Result};

/// Rate-limit windows in this process's memory: exact, for a database one
/// process serves (SQLite). A window that has ended is dropped the next
/// time the map doubles, so the map holds about the windows in use, not
/// every key that was ever limited.
pub struct LocalWindows {
    state: Mutex<Local>,
}

struct Local {
    used: HashMap<(String, String), LocalWindow>,
    /// The latest window start leased: the clock is at least there.
    latest_start_ms: i64,
    /// The size at which ended windows are dropped next.
    prune_at: usize,
}

struct LocalWindow {
    window: Window,
    used: u64,
}

/// Below this many windows, none is dropped.
const LOCAL_WINDOWS_KEPT: usize = 1024;

impl Default for LocalWindows {
    fn default() -> Self {
        let local = Local { used: HashMap::new(), latest_start_ms: i64::MIN, prune_at: LOCAL_WINDOWS_KEPT };
        Self { state: Mutex::new(local) }
    }
}

#[cfg(test)]
impl LocalWindows {
    /// How many windows are held.
    fn held(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).used.len()
    }
}

#[async_trait]
impl RateWindows for LocalWindows {
    async fn lease(
        &self,
        subject: &str,
        name: &str,
        window: Window,
        limit: u64,
        need: u64,
    ) -> Result<(u64, u64)> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let local = &mut *state;
        local.latest_start_ms = local.latest_start_ms.max(window.start_ms);
        if local.used.len() >= local.prune_at {
            let now_at_least = local.latest_start_ms;
            local.used.retain(|_, held| held.window.reset_ms > now_at_least);
            local.prune_at = (local.used.len() * 2).max(LOCAL_WINDOWS_KEPT);
        }
        let entry = local
            .used
            .entry((subject.to_owned(), name.to_owned()))
            .or_insert(LocalWindow { window, used: 0 });
        if entry.window.start_ms < window.start_ms {
            *entry = LocalWindow { window, used: 0 };
        }
        let available = limit.saturating_sub(entry.used);
        let granted = lease_size(available, need);
        entry.used += granted;
        Ok((granted, available - granted))
    }

    async fn give_back(&self, subject: &str, name: &str, window_start_ms: i64, amount: u64) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = state.used.get_mut(&(subject.to_owned(), name.to_owned()))
            && entry.window.start_ms == window_start_ms
        {
            entry.used = entry.used.saturating_sub(amount);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start_ms: i64, duration_ms: i64) -> Window {
        Window { start_ms, reset_ms: start_ms + duration_ms }
    }

    #[tokio::test]
    async fn local_windows_drop_ended_windows_and_keep_live_ones_exact() {
        let windows = LocalWindows::default();
        // A day-long window, then many minute-long ones that all end.
        let day = window(0, 86_400_000);
        assert_eq!(windows.lease("key:0", "daily", day, 10, 1).await.expect("lease"), (1, 9));
        for key in 1..=LOCAL_WINDOWS_KEPT {
            windows.lease(&format!("key:{key}"), "default", window(0, 60_000), 100, 1).await.expect("lease");
        }
        assert_eq!(windows.held(), LOCAL_WINDOWS_KEPT + 1);
        // Leases in the next minute, when the minute-long windows have
        // ended: once the map has doubled, they are dropped.
        let mut new = 0;
        loop {
            let before = windows.held();
            new += 1;
            windows
                .lease(&format!("next:{new}"), "default", window(60_000, 60_000), 100, 1)
                .await
                .expect("lease");
            if windows.held() <= before || new == 4 * LOCAL_WINDOWS_KEPT {
                break;
            }
        }
        assert_eq!(windows.held(), 1 + new, "the day-long window and the next minute's");
        assert!(new < 2 * LOCAL_WINDOWS_KEPT, "dropped only after {new} leases");
        // The day-long window kept its count: 1 of 10 is leased.
        assert_eq!(windows.lease("key:0", "daily", day, 10, 9).await.expect("lease"), (9, 0));
        assert_eq!(windows.lease("key:0", "daily", day, 10, 1).await.expect("lease"), (0, 0));
        // A dropped window that comes back starts afresh in its new window.
        let (granted, left) =
            windows.lease("key:1", "default", window(60_000, 60_000), 100, 1).await.expect("lease");
        assert_eq!(granted + left, 100);
    }
}
