//! The limit fields of a key, as `POST /apikey` and `PUT /apikey/:id` take
//! them and the ApiKey object shows them: `enabled`, `ratelimit` (one
//! limit, named `default`) or `ratelimits` (several, named), and `credits`.
//! Bounds are [`keygate_core::limits`]'s; anything outside them is a 400
//! that names the field.

use keygate_core::limits::{self, Credits, Interval, RateLimit, Refill};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::error::{ApiError, ApiResult};

/// A rate limit as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitInput {
    /// a-z, 0-9, `_` and `-`, at most 32; `default` when absent.
    #[schema(nullable = true, max_length = 32, pattern = "^[a-z0-9_-]{1,32}$")]
    name: Option<String>,
    /// Requests per window, from 1 to 1,000,000,000.
    #[serde(default, deserialize_with = "crate::http::extract::whole")]
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 1_000_000_000)]
    limit: Option<i64>,
    /// The window, from 1,000 ms to 30 days.
    #[serde(default, deserialize_with = "crate::http::extract::whole")]
    #[schema(value_type = i64, required = true, minimum = 1_000, maximum = 2_592_000_000_i64)]
    duration_ms: Option<i64>,
}

/// Credits as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditsInput {
    /// The balance, from 0 to 10^12.
    #[serde(default, deserialize_with = "crate::http::extract::whole")]
    #[schema(value_type = i64, required = true, minimum = 0, maximum = 1_000_000_000_000_i64)]
    remaining: Option<i64>,
    /// Sets the balance back to `amount` every day, or every month.
    #[schema(nullable = true)]
    refill: Option<RefillInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefillInput {
    #[serde(default, deserialize_with = "crate::http::extract::whole")]
    #[schema(value_type = i64, required = true, minimum = 0, maximum = 1_000_000_000_000_i64)]
    amount: Option<i64>,
    /// `daily` (at 00:00 UTC) or `monthly`.
    #[schema(schema_with = interval, required = true)]
    interval: Option<String>,
    /// The day of a monthly refill, 1–31 (the month's last day when it is
    /// shorter); 1 by default.
    #[serde(default, deserialize_with = "crate::http::extract::whole")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 31)]
    day: Option<i64>,
}

fn interval() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["daily", "monthly"]))
        .build()
}

/// What the limit fields of a request change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct LimitChanges {
    pub enabled: Option<bool>,
    pub ratelimits: Option<Vec<RateLimit>>,
    /// `Some(None)`: unlimited.
    pub credits: Option<Option<Credits>>,
}

impl LimitChanges {
    /// The fields as sent: each `None` when absent, `Some(None)` when `null`.
    pub fn parse(
        enabled: Option<bool>,
        ratelimit: Option<Option<RateLimitInput>>,
        ratelimits: Option<Option<Vec<RateLimitInput>>>,
        credits: Option<Option<CreditsInput>>,
    ) -> ApiResult<Self> {
        let one = ratelimit.map(|one| one.map(|one| parse_limit(one, false)).transpose()).transpose()?;
        let list = ratelimits
            .map(|list| {
                let list = list
                    .unwrap_or_default()
                    .into_iter()
                    .map(|limit| parse_limit(limit, true))
                    .collect::<ApiResult<Vec<_>>>()?;
                limits::check_ratelimits(&list)
                    .map_err(|e| invalid("invalid_ratelimits", format!("ratelimits: {e}")))?;
                Ok::<_, ApiError>(list)
            })
            .transpose()?;
        let ratelimits = match (one, list) {
            (None, list) => list,
            (Some(one), None) => Some(one.into_iter().collect()),
            // Both, as in an ApiKey object sent back: they must agree.
            (Some(one), Some(list)) => {
                let default = list.iter().find(|l| l.name == limits::DEFAULT_NAME);
                if one.is_some() && one.as_ref() != default {
                    return Err(invalid(
                        "invalid_ratelimit",
                        "ratelimit and ratelimits disagree: send one of them, or a ratelimit equal to \
                         the `default` entry of ratelimits",
                    ));
                }
                Some(list)
            }
        };
        let credits = credits.map(|credits| credits.map(parse_credits).transpose()).transpose()?;
        Ok(Self { enabled, ratelimits, credits })
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message.into())
}

fn parse_limit(input: RateLimitInput, named: bool) -> ApiResult<RateLimit> {
    let code = if named { "invalid_ratelimits" } else { "invalid_ratelimit" };
    let field = if named { "ratelimits[]" } else { "ratelimit" };
    let (Some(limit), Some(duration_ms)) = (input.limit, input.duration_ms) else {
        return Err(invalid(code, format!("{field} needs limit and duration_ms")));
    };
    let (Ok(limit), Ok(duration_ms)) = (u64::try_from(limit), u64::try_from(duration_ms)) else {
        return Err(invalid(code, format!("{field}: limit and duration_ms are positive whole numbers")));
    };
    RateLimit::new(input.name.as_deref(), limit, duration_ms)
        .map_err(|e| invalid(code, format!("{field}: {e}")))
}

fn parse_credits(input: CreditsInput) -> ApiResult<Credits> {
    let code = "invalid_credits";
    let remaining = input.remaining.ok_or_else(|| invalid(code, "credits needs remaining"))?;
    let refill = match input.refill {
        None => None,
        Some(refill) => {
            let amount = refill.amount.ok_or_else(|| invalid(code, "credits.refill needs amount"))?;
            let interval = refill
                .interval
                .as_deref()
                .and_then(Interval::parse)
                .ok_or_else(|| invalid(code, "credits.refill.interval is daily or monthly"))?;
            let day = refill
                .day
                .map(|day| u8::try_from(day).map_err(|_| invalid(code, "credits.refill.day is from 1 to 31")))
                .transpose()?;
            Some(Refill::new(amount, interval, day).map_err(|e| invalid(code, e.0))?)
        }
    };
    Credits::new(remaining, refill).map_err(|e| invalid(code, e.0))
}

/// A rate limit as the ApiKey object shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitView {
    pub name: String,
    pub limit: u64,
    pub duration_ms: u64,
}

impl From<&RateLimit> for RateLimitView {
    fn from(limit: &RateLimit) -> Self {
        Self { name: limit.name.clone(), limit: limit.limit, duration_ms: limit.duration_ms }
    }
}

/// Credits as the ApiKey object shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsView {
    /// What is left now: exact on one replica; with several, each other
    /// replica may hold up to one lease of it unspent.
    pub remaining: u64,
    pub refill: Option<RefillView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefillView {
    pub amount: i64,
    /// `daily` or `monthly`.
    #[schema(value_type = String)]
    pub interval: Interval,
    pub day: u8,
}

impl From<Refill> for RefillView {
    fn from(refill: Refill) -> Self {
        Self { amount: refill.amount, interval: refill.interval, day: refill.day }
    }
}
