//! Request parts parsed at the edge, with rejections in the contract's shape.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::http::error::ApiError;

/// A request body of at most `LIMIT` bytes, read whole, and only once the
/// server's budget of body bytes in flight has room for it
/// ([`BodyBudget`]): a body that would not fit is refused (503
/// `server_busy`, `Retry-After: 1`) rather than buffered. A declared
/// length over `LIMIT` is refused (413) before a byte is read. Read last,
/// after every extractor that checks a credential.
pub struct RawBody<const LIMIT: usize = { crate::http::BODY_LIMIT }> {
    bytes: Bytes,
    /// The share of the budget the body holds, until the request ends.
    _budget: Option<Reservation>,
}

/// What an endpoint that needs no key reads at most: a few KiB.
pub const SMALL_BODY_LIMIT: usize = 4 * 1024;

/// A body of an endpoint that needs no key: at most [`SMALL_BODY_LIMIT`].
pub type SmallBody = RawBody<SMALL_BODY_LIMIT>;

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for RawBody<LIMIT>
where
    BodyBudget: FromRef<S>,
    crate::http::client_address::ClientAddressPolicy: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let too_large = || ApiError::payload_too_large("The request body", LIMIT as u64);
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .map(|length| length.to_str().ok().and_then(|l| l.parse::<u64>().ok()).ok_or_else(too_large))
            .transpose()?;
        if declared.is_some_and(|length| length > LIMIT as u64) {
            return Err(too_large());
        }
        let reserve = declared.map_or(LIMIT, |length| length as usize);
        let (mut parts, body) = req.into_parts();
        let client = crate::http::client_address::client_address(&mut parts, &FromRef::from_ref(state));
        let budget = match reserve {
            0 => None,
            bytes => {
                Some(BodyBudget::from_ref(state).reserve(bytes, client).ok_or_else(ApiError::server_busy)?)
            }
        };
        // Copied out frame by frame: a frame is a slice of the connection's
        // read buffer, and keeping one would keep that whole buffer, so a
        // client trickling a byte at a time would pin a buffer per byte.
        let mut body = body;
        // Grown as bytes arrive, not all at once: the budget bounds what a
        // body may take, and a declared length costs nothing until it comes.
        let mut bytes = Vec::with_capacity(reserve.min(16 * 1024));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                ApiError::invalid_body(format!("Could not read the request body: {error}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > LIMIT {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&data);
            }
        }
        let bytes = Bytes::from(bytes);
        Ok(Self { bytes, _budget: budget })
    }
}

/// The bytes of request bodies the server holds at once, at most: each
/// body reserves its declared length (or its limit, when it declares none)
/// before it is read, and gives it back when its request ends. One client
/// address (an IPv6 one by its /64) holds an eighth of it at most, so that
/// one caller's slow bodies, with whatever key, leave the rest to others.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    /// Permits of [`BodyBudget::UNIT`] bytes.
    units: std::sync::Arc<tokio::sync::Semaphore>,
    /// Units held per client address.
    held: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>>,
    /// The most units one client address holds.
    share: u32,
}

/// Room in the [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    _units: tokio::sync::OwnedSemaphorePermit,
    client: Option<(std::net::IpAddr, u32, BodyBudget)>,
}

impl Reservation {
    fn release(budget: &BodyBudget, client: std::net::IpAddr, units: u32) {
        let mut held = budget.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let std::collections::hash_map::Entry::Occupied(mut entry) = held.entry(client) {
            *entry.get_mut() = entry.get().saturating_sub(units);
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((client, units, budget)) = self.client.take() {
            Reservation::release(&budget, client, units);
        }
    }
}

impl BodyBudget {
    const UNIT: usize = 1024;

    /// The default budget: 64 MiB of bodies in flight.
    pub const DEFAULT_BYTES: usize = 64 * 1024 * 1024;

    pub fn new(bytes: usize) -> Self {
        let units = (bytes / Self::UNIT).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        // A body at its largest always fits one client's share.
        let largest = u32::try_from(crate::http::BODY_LIMIT.div_ceil(Self::UNIT)).unwrap_or(u32::MAX);
        let share = u32::try_from(units / 8).unwrap_or(u32::MAX).max(largest);
        Self {
            units: std::sync::Arc::new(tokio::sync::Semaphore::new(units)),
            held: std::sync::Arc::default(),
            share,
        }
    }

    /// Room for `bytes` of `client`'s now, or `None`: nothing waits for it.
    fn reserve(&self, bytes: usize, client: Option<std::net::IpAddr>) -> Option<Reservation> {
        let units = u32::try_from(bytes.div_ceil(Self::UNIT)).ok()?;
        // An IPv4 address mapped into IPv6 is that IPv4 address; a request
        // whose address cannot be told counts with every other such one.
        let client = Some(match client.map(|address| address.to_canonical()) {
            Some(std::net::IpAddr::V6(v6)) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
            Some(v4) => v4,
            None => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        });
        if let Some(client) = client {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let holding = held.entry(client).or_default();
            if holding.saturating_add(units) > self.share {
                return None;
            }
            *holding += units;
        }
        let reservation =
            |permit| Reservation { _units: permit, client: client.map(|c| (c, units, self.clone())) };
        match self.units.clone().try_acquire_many_owned(units) {
            Ok(permit) => Some(reservation(permit)),
            Err(_) => {
                // Not taken after all: give the client's count back.
                if let Some(client) = client {
                    Reservation::release(self, client, units);
                }
                None
            }
        }
    }
}

impl<const LIMIT: usize> RawBody<LIMIT> {
    /// The body as JSON, `None` when it is empty or only white space. A body
    /// that does not parse is read a second time, tracking the path, so
    /// that the error names the field; a good one is read once, untracked.
    pub fn json<T: DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if let Ok(parsed) = serde_json::from_slice(&self.bytes) {
            return Ok(Some(parsed));
        }
        let deserializer = &mut serde_json::Deserializer::from_slice(&self.bytes);
        serde_path_to_error::deserialize(deserializer).map(Some).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                ApiError::invalid_body(format!("Invalid JSON body: {inner}"))
            } else {
                // Quoted, so that a secret sent as a field name is masked too.
                ApiError::invalid_body(format!("Invalid JSON body at `{path}`: {inner}"))
            }
        })
    }
}

/// Query parameters deserialized into `T`.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query).map(Params).map_err(|e| {
            let message = crate::http::redact::redact_quoted(&e.to_string());
            ApiError::bad_request("invalid_query", format!("Invalid query parameters: {message}"))
        })
    }
}

/// For `Option<Option<T>>` fields: a field set to `null` is `Some(None)`, an
/// absent one `None` (with `#[serde(default)]`).
pub fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A whole number, also when written with a zero fraction (`8.0`, `1e3`),
/// as JSON Schema's `integer` allows.
pub fn whole<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_i64().or_else(|| {
        // Within ±2^63, the cast below is exact for every whole float.
        number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64)
    });
    whole.map(Some).ok_or_else(|| D::Error::custom(format!("expected a whole number, found {number}")))
}

/// [`whole`] for `Option<Option<i64>>` fields: `null` is `Some(None)`.
pub fn present_whole<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<i64>>, D::Error> {
    whole(deserializer).map(Some)
}

/// An organization id; one that is not a UUID names no organization (404).
pub fn parse_org_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::org_not_found())
}

/// A required organization id: 400 when missing or empty.
pub fn require_org_id(raw: Option<&str>) -> Result<Uuid, ApiError> {
    required(raw).map_or_else(|| Err(ApiError::org_id_required()), parse_org_id)
}

/// A required app id, checked for its reverse-domain form.
pub fn require_app_id(raw: Option<&str>) -> Result<keygate_core::AppId, ApiError> {
    let id = required(raw).ok_or_else(|| ApiError::bad_request("app_id_required", "app_id is required"))?;
    keygate_core::AppId::parse(id).map_err(|e| ApiError::bad_request("invalid_app_id", e.to_string()))
}

/// The largest whole number a JSON number holds exactly (2^53 − 1): the
/// bound of query parameters that count ids.
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// A query parameter that must be a whole number in `range`, written in
/// decimal digits with an optional `-` (as the OpenAPI document's
/// `integer`); `code` names the error when it is not.
pub fn int_in_range(
    raw: Option<&str>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    code: &'static str,
) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    let well_formed = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<i64>() {
        Ok(n) if well_formed && range.contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::bad_request(
            code,
            format!("{name} must be a whole number from {} to {}", range.start(), range.end()),
        )),
    }
}

/// A parameter that must be present and not blank, trimmed.
pub fn required(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    /// Twelfth review: a request whose address could not be told, or an
    /// IPv4 address written as IPv6, escaped the share of one client.
    #[test]
    fn every_client_holds_an_eighth_of_the_budget_however_its_address_is_written() {
        const MIB: usize = 1024 * 1024;
        let budget = BodyBudget::new(64 * MIB);
        let mapped: std::net::IpAddr = "::ffff:10.0.0.1".parse().expect("address");
        let plain: std::net::IpAddr = "10.0.0.1".parse().expect("address");
        for client in [None, Some(plain)] {
            let held: Vec<_> =
                (0..8).map(|_| budget.reserve(MIB, client).expect("within the share")).collect();
            assert!(budget.reserve(MIB, client).is_none(), "{client:?}: past its share");
            if client == Some(plain) {
                assert!(budget.reserve(MIB, Some(mapped)).is_none(), "the same client, written as IPv6");
            }
            assert!(
                budget.reserve(MIB, Some("10.0.0.2".parse().expect("address"))).is_some(),
                "another client"
            );
            drop(held);
        }
    }
}
