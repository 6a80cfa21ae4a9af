//! What a key may spend: rate limits over fixed windows, usage credits with
//! an optional refill, and whether the key is enabled at all.
//!
//! - A **rate limit** admits at most `limit` requests per window of
//!   `duration_ms`; windows are fixed, aligned to the Unix epoch, so every
//!   replica agrees on where one starts and when it resets.
//! - **Credits** are a balance each admitted request spends `cost` of
//!   (1 by default); a refill sets the balance back to `amount` once per
//!   UTC day, or once a month on `day` (the month's last day when shorter).
//!
//! Replicas never spend what they have not taken from the database: they
//! lease blocks ([`lease_size`]) and hand back what they did not use.
//! Everything here is pure; the store keeps the balances and the service
//! the leases.

use std::fmt;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::InvalidValue;

/// At most this many named rate limits on one key or organization.
pub const MAX_RATELIMITS: usize = 5;
/// The largest `limit` of one window.
pub const MAX_LIMIT: u64 = 1_000_000_000;
/// Windows last from a second to 30 days.
pub const MIN_DURATION_MS: u64 = 1_000;
pub const MAX_DURATION_MS: u64 = 30 * 24 * 3_600_000;
/// The largest credit balance or refill amount.
pub const MAX_CREDITS: i64 = 1_000_000_000_000;
/// The largest `cost` of one verification.
pub const MAX_COST: u64 = 1_000_000;
/// The name of a rate limit given without one (`"ratelimit": {…}`).
pub const DEFAULT_NAME: &str = "default";
/// The longest rate-limit name.
pub const MAX_NAME_LEN: usize = 32;
/// The most one lease takes at once.
pub const MAX_BLOCK: u64 = 10_000;
/// A lease takes at most this fraction of what is left (1/16), so that
/// replicas sharing a balance leave little idle in each other's leases.
pub const LEASE_FRACTION: u64 = 16;

/// One rate limit: at most `limit` requests per window of `duration_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub name: String,
    pub limit: u64,
    pub duration_ms: u64,
}

impl RateLimit {
    /// A limit within the documented bounds, or what to fix.
    pub fn new(name: Option<&str>, limit: u64, duration_ms: u64) -> Result<Self, InvalidValue> {
        let name = name.unwrap_or(DEFAULT_NAME);
        let valid_name = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(InvalidValue(format!(
                "a rate limit's name is 1 to {MAX_NAME_LEN} characters of a-z, 0-9, `_` and `-`"
            )));
        }
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(InvalidValue(format!("a rate limit's limit is from 1 to {MAX_LIMIT}")));
        }
        if !(MIN_DURATION_MS..=MAX_DURATION_MS).contains(&duration_ms) {
            return Err(InvalidValue(format!(
                "a rate limit's duration_ms is from {MIN_DURATION_MS} (a second) to {MAX_DURATION_MS} (30 days)"
            )));
        }
        Ok(Self { name: name.to_owned(), limit, duration_ms })
    }

    /// The window holding `now`.
    pub fn window(&self, now: DateTime<Utc>) -> Window {
        let now_ms = now.timestamp_millis().max(0) as u64;
        let start = now_ms - now_ms % self.duration_ms;
        Window { start_ms: start as i64, reset_ms: (start + self.duration_ms) as i64 }
    }
}

/// A set of named rate limits, each name once.
pub fn check_ratelimits(limits: &[RateLimit]) -> Result<(), InvalidValue> {
    if limits.len() > MAX_RATELIMITS {
        return Err(InvalidValue(format!("at most {MAX_RATELIMITS} rate limits")));
    }
    for (i, limit) in limits.iter().enumerate() {
        if limits[..i].iter().any(|other| other.name == limit.name) {
            return Err(InvalidValue(format!("the rate limit name `{}` is given twice", limit.name)));
        }
    }
    Ok(())
}

/// One fixed window of a rate limit, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub reset_ms: i64,
}

/// How often credits are refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Daily,
    Monthly,
}

impl Interval {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "daily" => Some(Self::Daily),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        })
    }
}

/// Sets the balance back to `amount` at the start of every period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    pub amount: i64,
    pub interval: Interval,
    /// The day of the month of a monthly refill (1–31; the month's last day
    /// when it is shorter); 1 for a daily one.
    pub day: u8,
}

impl Refill {
    pub fn new(amount: i64, interval: Interval, day: Option<u8>) -> Result<Self, InvalidValue> {
        if !(0..=MAX_CREDITS).contains(&amount) {
            return Err(InvalidValue(format!("credits.refill.amount is from 0 to {MAX_CREDITS}")));
        }
        let day = match (interval, day) {
            (_, Some(day)) if !(1..=31).contains(&day) => {
                return Err(InvalidValue("credits.refill.day is a day of the month, from 1 to 31".into()));
            }
            (Interval::Daily, Some(day)) if day != 1 => {
                return Err(InvalidValue("credits.refill.day applies to a monthly refill only".into()));
            }
            (_, day) => day.unwrap_or(1),
        };
        Ok(Self { amount, interval, day })
    }

    /// The start of the period holding `now` (UTC midnight).
    pub fn period_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now.date_naive();
        let date = match self.interval {
            Interval::Daily => today,
            Interval::Monthly => {
                let this_month = refill_date(today.year(), today.month(), self.day);
                if this_month <= today {
                    this_month
                } else {
                    let previous = today.checked_sub_months(Months::new(1)).unwrap_or(today);
                    refill_date(previous.year(), previous.month(), self.day)
                }
            }
        };
        Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
    }
}

/// `day` of the month, or the month's last day when it is shorter.
fn refill_date(year: i32, month: u32, day: u8) -> NaiveDate {
    (1..=u32::from(day)).rev().find_map(|d| NaiveDate::from_ymd_opt(year, month, d)).unwrap_or(NaiveDate::MIN)
}

/// A key's credits as set: the balance, and its refill if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credits {
    pub remaining: i64,
    pub refill: Option<Refill>,
}

impl Credits {
    pub fn new(remaining: i64, refill: Option<Refill>) -> Result<Self, InvalidValue> {
        if !(0..=MAX_CREDITS).contains(&remaining) {
            return Err(InvalidValue(format!("credits.remaining is from 0 to {MAX_CREDITS}")));
        }
        Ok(Self { remaining, refill })
    }
}

/// A credit balance as the database keeps it: what is not leased, the
/// refill period it belongs to (ms since the epoch), and a generation that
/// changes whenever someone sets it, so that a lease taken before is never
/// handed back into the new balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub remaining: i64,
    pub period_ms: Option<i64>,
    pub generation: i64,
}

impl Balance {
    /// The balance as it stands at `now`: refilled if a period began since.
    pub fn at(self, refill: Option<&Refill>, now: DateTime<Utc>) -> Self {
        match refill {
            Some(refill) => {
                let period = refill.period_start(now).timestamp_millis();
                if self.period_ms.is_none_or(|p| p < period) {
                    Self { remaining: refill.amount, period_ms: Some(period), ..self }
                } else {
                    self
                }
            }
            None => self,
        }
    }

    /// Takes a lease of at least `need` (all or nothing) from the balance
    /// as it stands at `now`: the new balance and what was granted.
    pub fn lease(self, refill: Option<&Refill>, now: DateTime<Utc>, need: u64) -> (Self, u64) {
        let current = self.at(refill, now);
        let granted = lease_size(current.remaining.max(0) as u64, need);
        (Self { remaining: current.remaining - granted as i64, ..current }, granted)
    }
}

/// What a request lacks from one budget (a key's, or what its
/// organization's keys share): the windows with nothing left, and the
/// credits beyond what is at hand. Nothing lacking admits it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shortfall {
    /// Indexes of the budget's windows with nothing left.
    pub windows: Vec<usize>,
    /// Credits needed beyond what is at hand.
    pub credits: u64,
}

impl Shortfall {
    /// What a request costing `cost` lacks, given what each window has
    /// left (`windows_left`) and the credits at hand (`credits_left`:
    /// `None` with none at hand, when the budget has credits at all).
    pub fn of(windows_left: impl IntoIterator<Item = u64>, credits: Option<Option<u64>>, cost: u64) -> Self {
        let windows =
            windows_left.into_iter().enumerate().filter(|(_, left)| *left == 0).map(|(i, _)| i).collect();
        let credits = match credits {
            Some(at_hand) => cost.saturating_sub(at_hand.unwrap_or(0)),
            None => 0,
        };
        Self { windows, credits }
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.credits == 0
    }

    /// What refuses the request, rate limits first: the first window
    /// short (`RATE_LIMITED`), else the credits (`USAGE_EXCEEDED`).
    pub fn refused_by(&self) -> Option<Refused> {
        match (self.windows.first(), self.credits) {
            (Some(&window), _) => Some(Refused::RateLimit(window)),
            (None, 1..) => Some(Refused::Credits),
            (None, 0) => None,
        }
    }
}

/// What refuses a request ([`Shortfall::refused_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The window at this index has nothing left.
    RateLimit(usize),
    Credits,
}

/// Whether a request that ended with HTTP `status` keeps what its key's
/// limits took: only one that did not fail. A refused or failed request
/// (4xx, 5xx) is handed back its charge, so that it consumes nothing.
pub fn charge_kept(status: u16) -> bool {
    !(400..600).contains(&status)
}

/// How much to take when `available` is left and a request needs `need`:
/// nothing if that is not enough; else at least `need`, and beyond it up to
/// a [`LEASE_FRACTION`] of what is left, at most [`MAX_BLOCK`].
pub fn lease_size(available: u64, need: u64) -> u64 {
    if available < need {
        return 0;
    }
    let block = available.div_ceil(LEASE_FRACTION).min(MAX_BLOCK);
    block.max(need).min(available)
}

/// A rate limit as a verdict or a header reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReport {
    pub name: String,
    pub limit: u64,
    pub remaining: u64,
    pub duration_ms: u64,
    /// When the window resets, in milliseconds since the Unix epoch.
    pub reset_ms: i64,
    /// Whole seconds from the report until the reset, at least 1.
    pub reset_seconds: u64,
    /// A limit the key's organization shares among its keys, not the key's own.
    pub shared: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn windows_are_fixed_and_aligned_to_the_epoch() {
        let limit = RateLimit::new(None, 10, 60_000).expect("limit");
        let window = limit.window(at("2026-11-28T10:00:59.999Z"));
        assert_eq!(window.start_ms, at("2026-11-28T10:00:00Z").timestamp_millis());
        assert_eq!(window.reset_ms, at("2026-11-28T10:01:00Z").timestamp_millis());
        assert_eq!(limit.window(at("2026-11-28T10:01:00Z")).start_ms, window.reset_ms);
        assert_eq!(limit.name, "default");
    }

    #[test]
    fn limits_out_of_bounds_say_what_to_fix() {
        assert!(RateLimit::new(None, 0, 60_000).is_err());
        assert!(RateLimit::new(None, MAX_LIMIT + 1, 60_000).is_err());
        assert!(RateLimit::new(None, 1, 999).is_err());
        assert!(RateLimit::new(None, 1, MAX_DURATION_MS + 1).is_err());
        assert!(RateLimit::new(Some("Requests"), 1, 1_000).is_err());
        assert!(RateLimit::new(Some(""), 1, 1_000).is_err());
        let twice = [
            RateLimit::new(Some("a"), 1, 1_000).expect("limit"),
            RateLimit::new(Some("a"), 2, 1_000).expect("limit"),
        ];
        assert!(check_ratelimits(&twice).is_err());
        assert!(Credits::new(-1, None).is_err());
        assert!(Refill::new(5, Interval::Monthly, Some(32)).is_err());
        assert!(Refill::new(5, Interval::Daily, Some(3)).is_err());
    }

    #[test]
    fn a_monthly_refill_falls_on_its_day_or_the_months_last() {
        let refill = Refill::new(100, Interval::Monthly, Some(31)).expect("refill");
        assert_eq!(refill.period_start(at("2026-02-27T12:00:00Z")), at("2026-01-31T00:00:00Z"));
        assert_eq!(refill.period_start(at("2026-02-28T00:00:00Z")), at("2026-02-28T00:00:00Z"));
        assert_eq!(refill.period_start(at("2026-03-30T23:59:59Z")), at("2026-02-28T00:00:00Z"));
        assert_eq!(refill.period_start(at("2026-03-31T00:00:01Z")), at("2026-03-31T00:00:00Z"));
        let first = Refill::new(100, Interval::Monthly, None).expect("refill");
        assert_eq!(first.period_start(at("2027-01-01T00:00:00Z")), at("2027-01-01T00:00:00Z"));
        assert_eq!(first.period_start(at("2026-12-31T23:59:59Z")), at("2026-12-01T00:00:00Z"));
        let daily = Refill::new(100, Interval::Daily, None).expect("refill");
        assert_eq!(daily.period_start(at("2026-11-28T23:59:59Z")), at("2026-11-28T00:00:00Z"));
    }

    #[test]
    fn a_balance_refills_once_per_period() {
        let refill = Refill::new(10, Interval::Daily, None).expect("refill");
        let empty = Balance { remaining: 0, period_ms: None, generation: 0 };
        let (after, granted) = empty.lease(Some(&refill), at("2026-11-28T10:00:00Z"), 1);
        assert_eq!((after.remaining, granted), (9, 1));
        let (drained, granted) = after.lease(Some(&refill), at("2026-11-28T23:00:00Z"), 9);
        assert_eq!((drained.remaining, granted), (0, 9));
        assert_eq!(drained.lease(Some(&refill), at("2026-11-28T23:59:59Z"), 1).1, 0, "no second refill");
        let (next_day, granted) = drained.lease(Some(&refill), at("2026-11-29T00:00:00Z"), 1);
        assert_eq!((next_day.remaining, granted), (9, 1));
    }

    #[test]
    fn leases_are_all_or_nothing_and_shrink_as_the_balance_does() {
        assert_eq!(lease_size(0, 1), 0);
        assert_eq!(lease_size(4, 5), 0);
        assert_eq!(lease_size(1, 1), 1);
        assert_eq!(lease_size(1_000, 1), 63);
        assert_eq!(lease_size(1_000, 100), 100);
        assert_eq!(lease_size(10_000_000, 1), MAX_BLOCK);
        assert_eq!(lease_size(10, 0), 1);
        // Over many leases, nothing is granted beyond the balance.
        let (mut left, mut granted) = (1_000u64, 0u64);
        while let n @ 1.. = lease_size(left, 1) {
            left -= n;
            granted += n;
        }
        assert_eq!((left, granted), (0, 1_000));
    }

    #[test]
    fn only_a_request_that_did_not_fail_keeps_its_charge() {
        for status in [200, 201, 204, 304] {
            assert!(super::charge_kept(status), "{status}");
        }
        for status in [400, 401, 404, 409, 429, 499, 500, 503, 599] {
            assert!(!super::charge_kept(status), "{status}");
        }
    }

    #[test]
    fn a_shortfall_refuses_by_a_rate_limit_before_the_credits() {
        use super::{Refused, Shortfall};
        let full = Shortfall::of([3, 1], Some(Some(5)), 5);
        assert!(full.is_empty() && full.refused_by().is_none());
        let both = Shortfall::of([3, 0], Some(Some(1)), 5);
        assert_eq!((both.windows.clone(), both.credits), (vec![1], 4));
        assert_eq!(both.refused_by(), Some(Refused::RateLimit(1)), "RATE_LIMITED before USAGE_EXCEEDED");
        assert_eq!(
            Shortfall::of([1], Some(None), 2).refused_by(),
            Some(Refused::Credits),
            "no credits at hand"
        );
        assert!(Shortfall::of(Vec::new(), None, 7).is_empty(), "no credits at all: unlimited");
    }
}
