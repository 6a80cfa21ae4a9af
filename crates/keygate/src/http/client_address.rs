//! Where a request comes from: the peer, or the client a trusted proxy
//! names ([`ClientAddressPolicy`]), as rate limiting, the failed-
//! authentication throttle, the audit log and the access log see it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The client's address of a request, for handlers without a caller's key.
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress
where
    ClientAddressPolicy: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_address(parts, &ClientAddressPolicy::from_ref(state))))
    }
}

/// Where a request's client address comes from: the peer's address, or,
/// from a proxy trusted to speak for clients, the last entry the proxy wrote
/// into a header (such as `x-forwarded-for`).
///
/// - With `--trusted-proxy CIDR`s, only a peer inside one of them is read
///   from the header (by default `x-forwarded-for`); any other peer is the
///   client itself, whatever it claims.
/// - With `--client-ip-header` alone, every peer is taken to be the proxy
///   (keygate is reachable only through it).
/// - With a header to read but unusable, `None`: counting such a request
///   against the peer would let one client get the proxy itself blocked.
#[derive(Debug, Clone, Default)]
pub struct ClientAddressPolicy {
    header: Option<HeaderName>,
    trusted: std::sync::Arc<[ipnet::IpNet]>,
}

impl ClientAddressPolicy {
    pub fn new(header: Option<HeaderName>, trusted: Vec<ipnet::IpNet>) -> Self {
        let header =
            header.or_else(|| (!trusted.is_empty()).then(|| HeaderName::from_static("x-forwarded-for")));
        Self { header, trusted: trusted.into() }
    }

    /// The header to read for a request from `peer`; `None`: the peer is the client.
    pub fn header_for(&self, peer: Option<IpAddr>) -> Option<&HeaderName> {
        let header = self.header.as_ref()?;
        let trusted = self.trusted.is_empty()
            || peer.is_some_and(|peer| self.trusted.iter().any(|net| net.contains(&peer)));
        trusted.then_some(header)
    }

    /// The client's address of a request from `peer` with `headers`.
    pub fn address(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        match self.header_for(peer) {
            Some(header) => address_from_header_value(headers.get_all(header).iter().next_back()?),
            None => peer,
        }
    }
}

/// The client's address of a request (see [`ClientAddressPolicy`]),
/// resolved once: kept in the request's extensions for the next extractor
/// that asks (a key's caller, then its body's share of the budget).
pub fn client_address(parts: &mut Parts, policy: &ClientAddressPolicy) -> Option<IpAddr> {
    if let Some(Resolved(address)) = parts.extensions.get::<Resolved>() {
        return *address;
    }
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let address = policy.address(peer, &parts.headers);
    parts.extensions.insert(Resolved(address));
    address
}

/// A request's client address, once resolved.
#[derive(Clone, Copy)]
struct Resolved(Option<IpAddr>);

/// The last entry of a client address header's value.
pub fn address_from_header_value(value: &HeaderValue) -> Option<IpAddr> {
    let last_entry = value.as_bytes().rsplit(|&b| b == b',').next()?;
    parse_address(std::str::from_utf8(last_entry).ok()?.trim())
}

/// `203.0.113.5`, `2001:db8::1`, `203.0.113.5:4711` or `[2001:db8::1]:4711`.
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn forwarded_addresses_are_read_from_the_last_entry_only() {
        let parts = |value: &'static [u8]| {
            let mut request = axum::http::Request::new(());
            request.headers_mut().insert("x-forwarded-for", HeaderValue::from_bytes(value).expect("header"));
            request.into_parts().0
        };
        let policy = ClientAddressPolicy::new(Some(HeaderName::from_static("x-forwarded-for")), Vec::new());
        let address = |value| client_address(&mut parts(value), &policy);
        assert_eq!(address(b"198.51.100.1, 203.0.113.5"), "203.0.113.5".parse().ok());
        assert_eq!(address(b"203.0.113.5:4711"), "203.0.113.5".parse().ok());
        assert_eq!(address(b"[2001:db8::1]:4711"), "2001:db8::1".parse().ok());
        assert_eq!(address(b"1.2.3.4, \x80garbage"), None);
        assert_eq!(address(b"\x80, 203.0.113.9"), "203.0.113.9".parse().ok());
        assert_eq!(address(b"unknown"), None);
    }

    #[test]
    fn only_trusted_proxies_speak_for_clients() {
        let policy = ClientAddressPolicy::new(None, vec!["10.0.0.0/8".parse().expect("cidr")]);
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.5")]);
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(policy.address(Some(proxy), &forwarded), "203.0.113.5".parse().ok());
        assert_eq!(
            policy.address(Some(stranger), &forwarded),
            Some(stranger),
            "a stranger cannot claim an address"
        );
        assert_eq!(policy.address(Some(proxy), &headers(&[])), None, "a proxy that names nobody");
        assert_eq!(ClientAddressPolicy::default().address(Some(stranger), &forwarded), Some(stranger));
    }
}
