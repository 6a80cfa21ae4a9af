//! Where each proxy writes the original request ([`Proxy`], its header
//! family), and how those headers are read: one value each, method
//! overrides, names compared as an upstream may fold them.

use axum::http::{HeaderMap, HeaderName, Method};

use super::judged::BadForward;

/// The reverse proxy in front of `/auth`, which decides what is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    Nginx,
    Caddy,
    Traefik,
    Envoy,
}

impl Proxy {
    pub const ALL: [Proxy; 4] = [Proxy::Nginx, Proxy::Caddy, Proxy::Traefik, Proxy::Envoy];

    pub const fn as_str(self) -> &'static str {
        match self {
            Proxy::Nginx => "nginx",
            Proxy::Caddy => "caddy",
            Proxy::Traefik => "traefik",
            Proxy::Envoy => "envoy",
        }
    }

    pub fn parse(name: &str) -> Option<Proxy> {
        Proxy::ALL.into_iter().find(|proxy| proxy.as_str() == name)
    }

    /// The headers this proxy writes the original method and target in;
    /// `None` for Envoy, which sends them as the request's own.
    pub(super) fn family(self) -> Option<&'static Family> {
        match self {
            Proxy::Nginx => Some(&NGINX),
            Proxy::Caddy | Proxy::Traefik => Some(&FORWARDED),
            Proxy::Envoy => None,
        }
    }

    /// The status of a refusal of the forwarded request itself: 400, but
    /// 403 for nginx, which turns any status but 401 and 403 into a 500.
    pub fn bad_request_status(self) -> axum::http::StatusCode {
        match self {
            Proxy::Nginx => axum::http::StatusCode::FORBIDDEN,
            _ => axum::http::StatusCode::BAD_REQUEST,
        }
    }
}

/// A header family: the original method and target.
#[derive(Debug)]
pub(super) struct Family {
    pub(super) method: HeaderName,
    pub(super) target: HeaderName,
}

pub(super) static NGINX: Family = Family {
    method: HeaderName::from_static("x-original-method"),
    target: HeaderName::from_static("x-original-uri"),
};

pub(super) static FORWARDED: Family = Family {
    method: HeaderName::from_static("x-forwarded-method"),
    target: HeaderName::from_static("x-forwarded-uri"),
};

/// Headers some frameworks read as the request's path or method: a
/// client's copy of one that keygate does not read for the proxy
/// configured is refused, as the upstream might honour it.
pub(super) const PATH_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    // A path prefix WSGI middlewares (Flask's "ReverseProxied", pgAdmin)
    // strip from the path before routing it.
    HeaderName::from_static("x-script-name"),
];

/// Headers that override the method in some frameworks.
pub(super) const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-http-method"),
];

/// Whether `name` is `target` as an upstream may read it: any case, `_` for `-`.
pub(super) fn folded_eq(name: &str, target: &str) -> bool {
    name.len() == target.len() && folded_starts_with(name, target)
}

/// Whether `name` begins with `prefix` as an upstream may read it: case
/// aside, and every character but a letter or digit as `-` (CGI and PHP
/// turn each into `_`, so `X.Keygate.Mode` is their `HTTP_X_KEYGATE_MODE`).
pub(super) fn folded_starts_with(name: &str, prefix: &str) -> bool {
    let fold = |b: u8| if b.is_ascii_alphanumeric() { b.to_ascii_lowercase() } else { b'-' };
    name.len() >= prefix.len() && name.bytes().zip(prefix.bytes()).all(|(a, b)| fold(a) == fold(b))
}

/// The one value of a header the proxy writes: missing, repeated or not
/// visible ASCII text is refused.
pub(super) fn one_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, BadForward> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or_else(|| {
        BadForward::header(
            "forwarded_header_missing",
            name,
            "is missing: is --forward-auth-proxy the proxy in front?",
        )
    })?;
    if values.next().is_some() {
        return Err(BadForward::header("forwarded_header_repeated", name, "is repeated"));
    }
    value
        .to_str()
        .map_err(|_| BadForward::header("forwarded_header_unreadable", name, "is not visible ASCII text"))
}

/// A method as an upstream reads it: an upper-case token (`-` allowed, as
/// in WebDAV's); anything else is ambiguous.
pub(super) fn parse_method(raw: &str) -> Result<Method, BadForward> {
    let well_formed =
        !raw.is_empty() && raw.len() <= 32 && raw.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
    if !well_formed {
        return Err(BadForward::method(raw));
    }
    Method::from_bytes(raw.as_bytes()).map_err(|_| BadForward::method(raw))
}

/// Method overrides a framework may honour (the values of override
/// headers, and a `_method` query parameter), upper-cased as frameworks do,
/// added to `methods`.
pub(super) fn overrides(
    headers: &[String],
    query: Option<&str>,
    methods: &mut Vec<Method>,
) -> Result<(), BadForward> {
    let mut add = |raw: &str| -> Result<(), BadForward> {
        let method = parse_method(&raw.trim().to_ascii_uppercase())?;
        if !methods.contains(&method) {
            methods.push(method);
        }
        Ok(())
    };
    for value in headers {
        add(value)?;
    }
    // `;` too: Perl's CGI, Rack before 3 and older Pythons split on it.
    for pair in query.unwrap_or_default().split(['&', ';']) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if folded_eq(&php_name(name), "_method") {
            add(&percent_encoding::percent_decode_str(value).decode_utf8_lossy())?;
        }
    }
    Ok(())
}

/// A query parameter's name as PHP (Symfony, Laravel) reads it: `+` as a
/// space, decoded, cut at a NUL, leading spaces dropped, and ` `, `.` and
/// `[` as `_`, so that `.method` and `+_method` are `_method` there.
pub(super) fn php_name(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy();
    let name = decoded.split('\0').next().unwrap_or_default().trim_start_matches(' ');
    name.chars().map(|c| if matches!(c, ' ' | '.' | '[') { '_' } else { c }).collect()
}
