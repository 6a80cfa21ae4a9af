//! Rate-limit windows shared by every replica, in the unlogged table
//! `rate_windows`: one row per limit, holding the current window's start
//! and how much of it replicas have leased. A lease locks the row for the
//! length of one short transaction; a window that has passed starts over
//! at zero. Losing the table in a crash forgets at most one window's count.

use async_trait::async_trait;
use keygate_core::limits::{Window, lease_size};
use sqlx::PgPool;

use crate::{RateWindows, Result};

pub(super) struct PgRateWindows {
    pub(super) pool: PgPool,
}

#[async_trait]
impl RateWindows for PgRateWindows {
    async fn lease(
        &self,
        subject: &str,
        name: &str,
        window: Window,
        limit: u64,
        need: u64,
    ) -> Result<(u64, u64)> {
        let window_start_ms = window.start_ms;
        let mut tx = self.pool.begin().await?;
        // The row, moved to this window if it still holds an older one (a
        // replica whose clock runs behind leases from the newer window).
        let used: i64 = sqlx::query_scalar(
            "INSERT INTO rate_windows AS w (subject, name, window_start, used) VALUES ($1, $2, $3, 0) \
             ON CONFLICT (subject, name) DO UPDATE SET \
             used = CASE WHEN w.window_start < $3 THEN 0 ELSE w.used END, \
             window_start = GREATEST(w.window_start, $3) \
             RETURNING used",
        )
        .bind(subject)
        .bind(name)
        .bind(window_start_ms)
        .fetch_one(&mut *tx)
        .await?;
        let available = limit.saturating_sub(u64::try_from(used).unwrap_or(0));
        let granted = lease_size(available, need);
        if granted > 0 {
            sqlx::query("UPDATE rate_windows SET used = used + $3 WHERE subject = $1 AND name = $2")
                .bind(subject)
                .bind(name)
                .bind(i64::try_from(granted).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((granted, available - granted))
    }

    async fn give_back(&self, subject: &str, name: &str, window_start_ms: i64, amount: u64) -> Result<()> {
        sqlx::query(
            "UPDATE rate_windows SET used = GREATEST(used - $4, 0) \
             WHERE subject = $1 AND name = $2 AND window_start = $3",
        )
        .bind(subject)
        .bind(name)
        .bind(window_start_ms)
        .bind(i64::try_from(amount).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
