//! The bounds of what a request may ask for, in one place: the API checks
//! its input against these (answering 400 with the bound), and the OpenAPI
//! document states them.

use std::ops::RangeInclusive;

/// Days an organization may allow its keys to live (`max_apikey_expiration_days`).
pub const POLICY_MAX_DAYS: RangeInclusive<i64> = 1..=365;

/// Days an invitation stays redeemable (`expires_in_days`), and its default.
pub const INVITATION_DAYS: RangeInclusive<i64> = 1..=30;
pub const INVITATION_DEFAULT_DAYS: i64 = 7;

/// Seconds a rotated key's previous secret may keep working: up to a week.
pub const GRACE_SECONDS: RangeInclusive<i64> = 0..=604_800;

/// Apps a key may be limited to.
pub const APP_COUNT: RangeInclusive<usize> = 0..=100;
pub const MAX_APPS: usize = *APP_COUNT.end();

/// What one request may cost in credits (`cost`).
pub const COST: RangeInclusive<i64> = 0..=crate::limits::MAX_COST as i64;

/// `value`, if `range` holds it.
pub fn within<T: PartialOrd>(value: T, range: &RangeInclusive<T>) -> Option<T> {
    range.contains(&value).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_holds_its_ends_and_nothing_past_them() {
        for range in [POLICY_MAX_DAYS, INVITATION_DAYS, GRACE_SECONDS] {
            assert_eq!(within(*range.start(), &range), Some(*range.start()));
            assert_eq!(within(*range.end(), &range), Some(*range.end()));
            assert_eq!(within(range.start() - 1, &range), None);
            assert_eq!(within(range.end() + 1, &range), None);
        }
        assert!(INVITATION_DAYS.contains(&INVITATION_DEFAULT_DAYS));
    }
}
