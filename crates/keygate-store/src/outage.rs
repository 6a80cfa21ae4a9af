//! How a watcher that lost its database waits before trying again:
//! exponentially longer, with jitter (so that replicas cut off together do
//! not come back in step), warning once per outage rather than once per
//! attempt, and saying when it is over.

use std::fmt::Display;
use std::time::Duration;

/// The state of one watcher's connection to the database.
#[derive(Debug)]
pub(crate) struct Outage {
    /// What stops working meanwhile, for the log.
    what: &'static str,
    first: Duration,
    max: Duration,
    /// The next wait's upper bound; `None` while all is well.
    next: Option<Duration>,
}

impl Outage {
    pub(crate) fn new(what: &'static str, first: Duration, max: Duration) -> Self {
        Self { what, first, max, next: None }
    }

    /// An attempt failed: warns if it starts an outage, and tells how long
    /// to wait: between half and all of the current bound, which doubles up
    /// to `max`.
    #[must_use = "wait this long before trying again"]
    pub(crate) fn failed(&mut self, error: &dyn Display) -> Duration {
        let bound = match self.next {
            None => {
                let error = crate::redact_credentials(&error.to_string());
                tracing::warn!(%error, "{}; retrying with backoff, quietly until it works again", self.what);
                self.first
            }
            Some(bound) => {
                tracing::debug!(%error, "{}: still failing", self.what);
                bound
            }
        };
        self.next = Some((bound * 2).min(self.max));
        jittered(bound)
    }

    /// An attempt worked: ends the outage, if there was one.
    pub(crate) fn recovered(&mut self) {
        if self.next.take().is_some() {
            tracing::info!("{}: working again", self.what);
        }
    }

    /// The next wait's upper bound, during an outage.
    #[cfg(test)]
    fn bound(&self) -> Option<Duration> {
        self.next
    }
}

/// A duration between half of `bound` and `bound`.
fn jittered(bound: Duration) -> Duration {
    let fraction = getrandom::u32().unwrap_or(u32::MAX / 2) as f64 / u32::MAX as f64;
    bound.mul_f64(0.5 + fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_and_reset_once_it_works() {
        let mut outage = Outage::new("test", Duration::from_millis(100), Duration::from_secs(1));
        let waited: Vec<Duration> = (0..6).map(|_| outage.failed(&"down")).collect();
        let bounds = [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis);
        for (wait, bound) in waited.iter().zip(bounds) {
            assert!(*wait >= bound / 2 && *wait <= bound, "{wait:?} outside {:?}..={bound:?}", bound / 2);
        }
        outage.recovered();
        assert_eq!(outage.bound(), None);
        let _ = outage.failed(&"down again");
        assert_eq!(
            outage.bound(),
            Some(Duration::from_millis(200)),
            "a new outage starts from the first wait"
        );
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_bound() {
        for _ in 0..1000 {
            let wait = jittered(Duration::from_secs(2));
            assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2), "{wait:?}");
        }
    }
}
