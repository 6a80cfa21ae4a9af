//! What a request forwarded by a reverse proxy asks for (`/auth`, see
//! [`crate::api::forward`]): the original request's method and target, read
//! exactly as the configured proxy writes them, and the rule that says which
//! action it takes and where the organization and app come from.
//!
//! Policy: nothing is trusted that the client could have written, and what
//! an upstream could read in two ways is refused rather than guessed.
//!
//! - **One header family, named by `--forward-auth-proxy`**: nginx writes
//!   `X-Original-Method` / `X-Original-URI`; Caddy and Traefik write
//!   `X-Forwarded-Method` / `X-Forwarded-Uri`; Envoy sends the original
//!   method and the original target after `/auth`. Nothing else is read: no
//!   other family, no fallback to the path after `/auth` or to `/`. A header
//!   of the family that is missing, repeated or not readable text, a header
//!   of another family (a client's own copy, which the proxy passed on),
//!   or a path override some frameworks honour (`X-Original-URL`,
//!   `X-Rewrite-URL`) → a refusal, never an allow.
//! - **The target is origin-form** (`/path?query`), visible ASCII without
//!   `\` or `#`. Its path is decoded once, segment by segment, and refused
//!   when an upstream could resolve it differently: an encoded `/`, `\`,
//!   `;` or `%` (a second level of encoding), a `;` path parameter, a dot
//!   segment before or after decoding, a control character, bytes that are
//!   not UTF-8, characters that compatibility normalization (NFKC) changes,
//!   a segment that begins or ends with white space or ends with a dot.
//!   An empty segment (`//`) is refused too: some upstreams merge it, and
//!   others read a leading `//` as a host name. A trailing `/` is
//!   dropped. The query is not judged.
//! - **The method** is an upper-case token; a lower-case one is refused.
//!   Method overrides (`X-HTTP-Method-Override`, `X-Method-Override`,
//!   `X-HTTP-Method`, a `_method` query parameter, between `&` or `;`) make the request need
//!   what both methods need. A POST's body, which keygate never sees, may
//!   carry one too (a form's or a JSON body's `_method`, whatever its
//!   `Content-Type` says): a POST needs what every method it could become
//!   needs — GET, HEAD, OPTIONS, PUT, PATCH, DELETE, every method a rule
//!   names and any other (judged by the rules that name no method) — unless the
//!   rules file says the upstream never reads a method from a body.
//! - **Rules** are tried in the order of the file; the first whose methods
//!   and path match decides. Without a match, GET, HEAD and OPTIONS need
//!   `read` and every other method `write`. A rule's path is literal
//!   segments, `*` (any one segment), `{org_id}` or `{app_id}` (one segment,
//!   taken as the organization or the app), and a final `**` (any rest, or
//!   nothing); it matches case-sensitively unless it says
//!   `case_insensitive = true`. A path that a different rule would judge if
//!   letter case were ignored is refused: a case-insensitive upstream would
//!   serve it as that other rule's. An organization or app may also come
//!   from a header the rule names (exactly one, readable); a path capture
//!   wins over a header.
//!
//! The parts: [`headers`] (each proxy's header family and how it is read),
//! [`path`] (judging the target's path), [`rules`] (the rules file), and
//! here the decision that puts them together ([`ForwardAuth::judge`]).

mod headers;
mod judged;
mod path;
mod rules;

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, Uri};

use crate::admission::verification::KEY_HEADERS;
use headers::{
    FORWARDED, METHOD_OVERRIDES, NGINX, PATH_OVERRIDES, folded_eq, folded_starts_with, one_header,
};
use headers::{overrides, parse_method};
use path::{path_segments, split_target};

pub use headers::Proxy;
pub use judged::{BadForward, Judged, Need};
pub use rules::Rules;

/// What `/auth` is configured with, as its handler takes it from the
/// app's state: how to judge a forwarded request (`None`: `/auth` is
/// disabled), and the status a throttled address or a refusing limit gets.
#[derive(Debug, Clone)]
pub struct Forwarding {
    pub judge: Option<Arc<ForwardAuth>>,
    pub throttled: StatusCode,
}

/// `--forward-auth-proxy` with its rules: everything `/auth` needs to
/// judge a forwarded request.
#[derive(Debug, Clone)]
pub struct ForwardAuth {
    proxy: Proxy,
    rules: Rules,
}

impl ForwardAuth {
    pub fn new(proxy: Proxy, rules: Rules) -> Self {
        Self { proxy, rules }
    }

    pub fn proxy(&self) -> Proxy {
        self.proxy
    }

    /// What the request a proxy asks about needs: one judgement for its
    /// method and one for each method override, every one of which must
    /// be met. `method`, `uri` and `headers` are those of the `/auth`
    /// request itself.
    pub fn judge(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Vec<Judged>, BadForward> {
        let header_overrides = self.screen(headers)?;
        let (method, target) = self.original(method, uri, headers)?;
        let (path, query) = split_target(&target)?;
        let segments = path_segments(path)?;
        let post = method == Method::POST;
        let mut methods = vec![method];
        overrides(&header_overrides, query, &mut methods)?;
        // Rails, Laravel, Symfony and Express's method-override take a
        // POST's method from its body, be it a form, a multipart body, JSON
        // or one sent without a `Content-Type`: keygate cannot tell.
        if post {
            for method in self.rules.methods_a_body_may_name() {
                if !methods.contains(method) {
                    methods.push(method.clone());
                }
            }
        }
        methods.iter().map(|method| self.rules.judge(method, &segments, headers)).collect()
    }

    /// The original method and target, from where this proxy writes them.
    fn original<'a>(
        &self,
        method: &Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
    ) -> Result<(Method, Cow<'a, str>), BadForward> {
        match self.proxy.family() {
            Some(family) => {
                let method = parse_method(one_header(headers, &family.method)?)?;
                let target = one_header(headers, &family.target)?;
                Ok((method, Cow::Borrowed(target)))
            }
            None => {
                // Envoy: the original target after the `/auth` prefix, as sent.
                let method = parse_method(method.as_str())?;
                let path = uri.path().strip_prefix("/auth").unwrap_or_default();
                let path = if path.is_empty() { "/" } else { path };
                if !path.starts_with('/') {
                    return Err(BadForward::target("it does not follow /auth/"));
                }
                Ok((
                    method,
                    match uri.query() {
                        Some(query) => Cow::Owned(format!("{path}?{query}")),
                        None => Cow::Borrowed(path),
                    },
                ))
            }
        }
    }

    /// Every header of the forwarded request, screened under every spelling
    /// an upstream may fold together (any case, `_` for `-`): keygate's own
    /// identity headers, another family's original-request headers, path
    /// overrides, or a second spelling of a header keygate reads are
    /// refused; method overrides are returned.
    fn screen(&self, headers: &HeaderMap) -> Result<Vec<String>, BadForward> {
        let ours = self.proxy.family();
        let mut overrides = Vec::new();
        let mut credentials = 0;
        for (name, value) in headers {
            let name = name.as_str();
            let conflict = |why: &'static str| BadForward {
                code: "conflicting_header",
                message: format!("The forwarded request's `{name}` header {why}: refused").into(),
            };
            // Every guarded name but two credentials starts with `x`: the
            // common headers (host, accept, user-agent…) pass at a glance.
            let x = name.starts_with('x');
            if x {
                if folded_starts_with(name, "x-keygate-") {
                    return Err(conflict("is keygate's own, which only keygate writes"));
                }
                if PATH_OVERRIDES.iter().any(|o| folded_eq(name, o.as_str())) {
                    return Err(conflict(
                        "overrides the path in some frameworks, and keygate does not read it",
                    ));
                }
                for family in [&NGINX, &FORWARDED] {
                    for header in [&family.method, &family.target] {
                        let exact =
                            ours.is_some_and(|ours| std::ptr::eq(ours, family)) && name == header.as_str();
                        if !exact && folded_eq(name, header.as_str()) {
                            return Err(conflict(
                                "is not written, in that spelling, by the proxy keygate is configured for \
                                 (--forward-auth-proxy)",
                            ));
                        }
                    }
                }
                if METHOD_OVERRIDES.iter().any(|o| folded_eq(name, o.as_str())) {
                    let value = value.to_str().map_err(|_| conflict("is not visible ASCII text"))?;
                    overrides.push(value.to_owned());
                }
            }
            if (x || name.starts_with(['a', 'c'])) && KEY_HEADERS.iter().any(|c| folded_eq(name, c)) {
                if !KEY_HEADERS.contains(&name) {
                    return Err(conflict("spells a credential header otherwise than keygate reads it"));
                }
                credentials += 1;
            }
            if self.rules.headers.iter().any(|h| name != h.as_str() && folded_eq(name, h.as_str())) {
                return Err(conflict("spells a header a rule reads otherwise than the rule names it"));
            }
        }
        if credentials > 1 {
            return Err(BadForward {
                code: "ambiguous_credentials",
                message: "The forwarded request carries more than one credential header (authorization, \
                          x-api-key, capgkey): refused, as the upstream may read another than keygate"
                    .into(),
            });
        }
        Ok(overrides)
    }
}

#[cfg(test)]
mod tests;
