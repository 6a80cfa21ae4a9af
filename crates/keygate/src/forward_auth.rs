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
//!   what both methods need.
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

use std::borrow::Cow;
use std::path::Path;

use axum::http::{HeaderMap, HeaderName, Method, Uri};
use keygate_core::authz::Action;

use crate::auth::KEY_HEADERS;
use serde::Deserialize;

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
    fn family(self) -> Option<&'static Family> {
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
struct Family {
    method: HeaderName,
    target: HeaderName,
}

static NGINX: Family = Family {
    method: HeaderName::from_static("x-original-method"),
    target: HeaderName::from_static("x-original-uri"),
};

static FORWARDED: Family = Family {
    method: HeaderName::from_static("x-forwarded-method"),
    target: HeaderName::from_static("x-forwarded-uri"),
};

/// Headers some frameworks read as the request's path or method: a
/// client's copy of one that keygate does not read for the proxy
/// configured is refused, as the upstream might honour it.
const PATH_OVERRIDES: [HeaderName; 2] =
    [HeaderName::from_static("x-original-url"), HeaderName::from_static("x-rewrite-url")];

/// Headers that override the method in some frameworks.
const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-http-method"),
];

/// `--forward-auth-proxy` with its rules: everything `/auth` needs to
/// judge a forwarded request.
#[derive(Debug, Clone)]
pub struct ForwardAuth {
    proxy: Proxy,
    rules: Rules,
}

/// Why a forwarded request was refused before any key was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadForward {
    /// A stable snake_case code, for `X-Keygate-Reason`.
    pub code: &'static str,
    /// What is wrong, and what to fix.
    pub message: Cow<'static, str>,
}

impl BadForward {
    fn header(code: &'static str, name: &HeaderName, what: &str) -> Self {
        Self { code, message: format!("The forwarded request's {name} header {what}").into() }
    }

    fn target(why: &'static str) -> Self {
        Self {
            code: "bad_forwarded_target",
            message: format!("The forwarded request's target is not an origin-form path: {why}").into(),
        }
    }

    fn ambiguous(why: &'static str) -> Self {
        Self {
            code: "ambiguous_path",
            message: format!(
                "The forwarded request's path has {why}, which an upstream may read differently: refused"
            )
            .into(),
        }
    }

    fn method(raw: &str) -> Self {
        Self {
            code: "ambiguous_method",
            message: format!(
                "The forwarded request's method `{}` is not an upper-case HTTP method: refused",
                raw.escape_default()
            )
            .into(),
        }
    }
}

/// What a forwarded request needs, as one reading of it (its method, or a
/// method override) is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub need: Need,
    /// The organization, as sent (a path segment or a header value).
    pub org_id: Option<String>,
    /// The app, as sent.
    pub app_id: Option<String>,
}

/// What a matched request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No key at all.
    Public,
    Key(Action),
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
        let mut methods = vec![method];
        overrides(&header_overrides, query, &mut methods)?;
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

/// Whether `name` is `target` as an upstream may read it: any case, `_` for `-`.
fn folded_eq(name: &str, target: &str) -> bool {
    name.len() == target.len() && folded_starts_with(name, target)
}

/// Whether `name` begins with `prefix` as an upstream may read it.
fn folded_starts_with(name: &str, prefix: &str) -> bool {
    let fold = |b: u8| if b == b'_' { b'-' } else { b.to_ascii_lowercase() };
    name.len() >= prefix.len() && name.bytes().zip(prefix.bytes()).all(|(a, b)| fold(a) == fold(b))
}

/// The one value of a header the proxy writes: missing, repeated or not
/// visible ASCII text is refused.
fn one_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, BadForward> {
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

/// An organization or app id as the upstream receives it must be the one
/// keygate judges: ids that parse only after normalizing (upper case, other
/// UUID forms, white space) are refused.
fn canonical_ids(judged: &Judged) -> Result<(), BadForward> {
    if let Some(raw) = &judged.org_id
        && uuid::Uuid::parse_str(raw).is_ok_and(|id| id.hyphenated().to_string() != *raw)
    {
        return Err(BadForward::ambiguous(
            "an organization id not in its canonical form (lower-case, hyphenated)",
        ));
    }
    if let Some(raw) = &judged.app_id
        && keygate_core::AppId::parse(raw).is_ok_and(|app| app.as_str() != raw)
    {
        return Err(BadForward::ambiguous(
            "an app id not in its canonical form (lower case, no white space)",
        ));
    }
    Ok(())
}

/// A method as an upstream reads it: an upper-case token (`-` allowed, as
/// in WebDAV's); anything else is ambiguous.
fn parse_method(raw: &str) -> Result<Method, BadForward> {
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
fn overrides(headers: &[String], query: Option<&str>, methods: &mut Vec<Method>) -> Result<(), BadForward> {
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

/// Whether a case-insensitive upstream could read `c` as something else
/// than keygate does: a letter outside ASCII whose lower or upper case is
/// not one letter of its own (`İ` lowers to `i̇`, an `i` to Java), is
/// ASCII (the Kelvin sign), or whose upper case lowers to another letter
/// (`ı`, `ſ`).
fn folds_two_ways(c: char) -> bool {
    if c.is_ascii() {
        return false;
    }
    let (lower, upper): (Vec<char>, Vec<char>) = (c.to_lowercase().collect(), c.to_uppercase().collect());
    let single = |chars: &[char]| chars.len() == 1 && !chars[0].is_ascii();
    let changes = lower != [c] || upper != [c];
    changes
        && (!single(&lower)
            || !single(&upper)
            || !c.to_lowercase().eq(c.to_uppercase().flat_map(char::to_lowercase)))
}

/// A query parameter's name as PHP (Symfony, Laravel) reads it: `+` as a
/// space, decoded, cut at a NUL, leading spaces dropped, and ` `, `.` and
/// `[` as `_`, so that `.method` and `+_method` are `_method` there.
fn php_name(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy();
    let name = decoded.split('\0').next().unwrap_or_default().trim_start_matches(' ');
    name.chars().map(|c| if matches!(c, ' ' | '.' | '[') { '_' } else { c }).collect()
}

/// The path and the query of an origin-form target.
fn split_target(target: &str) -> Result<(&str, Option<&str>), BadForward> {
    if !target.starts_with('/') {
        return Err(BadForward::target("it does not start with /"));
    }
    if let Some(bad) = target.bytes().find(|&b| !b.is_ascii_graphic() || b == b'\\' || b == b'#') {
        return Err(match bad {
            b'\\' => BadForward::ambiguous("a `\\`"),
            b'#' => BadForward::target("it holds a `#`"),
            _ => BadForward::target("it holds a space, a control character or a byte that is not ASCII"),
        });
    }
    Ok(match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    })
}

/// The path's segments, each decoded once, as every upstream reads them;
/// any segment an upstream could read otherwise is refused (see the
/// module's documentation).
fn path_segments(path: &str) -> Result<Vec<Cow<'_, str>>, BadForward> {
    let mut segments = Vec::new();
    // A trailing `/` ends the path; any other empty segment is ambiguous:
    // some upstreams merge `//`, others read a leading `//` as the start
    // of a host name, shifting every segment after it.
    let path = path.strip_suffix('/').unwrap_or(path);
    for raw in path.split('/').skip(1) {
        if raw.is_empty() {
            return Err(BadForward::ambiguous("an empty segment (`//`)"));
        }
        // Most segments are plain: unreserved characters only, nothing to decode.
        let plain = raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        if plain && !raw.ends_with('.') {
            segments.push(Cow::Borrowed(raw));
            continue;
        }
        if raw.contains(';') {
            return Err(BadForward::ambiguous("a `;` path parameter"));
        }
        if raw == "." || raw == ".." {
            return Err(BadForward::ambiguous("a dot segment"));
        }
        let segment = decode(raw)?;
        if segment == "." || segment == ".." {
            return Err(BadForward::ambiguous("an encoded dot segment"));
        }
        if segment.chars().any(|c| c.is_control() || matches!(c, '/' | '\\' | ';' | '%' | '?' | '#')) {
            return Err(BadForward::ambiguous(
                "an encoded `/`, `\\`, `;`, `?`, `#`, `%` (a second level of encoding) or control character",
            ));
        }
        if segment.chars().any(is_default_ignorable) {
            return Err(BadForward::ambiguous("an invisible character (such as U+00AD or U+200B)"));
        }
        if segment.starts_with(char::is_whitespace)
            || segment.ends_with(char::is_whitespace)
            || segment.ends_with('.')
        {
            return Err(BadForward::ambiguous(
                "a segment that begins or ends with white space, or ends with a dot",
            ));
        }
        if !segment.is_ascii() && !unicode_normalization::is_nfkc(&segment) {
            return Err(BadForward::ambiguous("characters that compatibility normalization (NFKC) changes"));
        }
        segments.push(segment);
    }
    Ok(segments)
}

/// Unicode's default-ignorable code points: invisible, and dropped by some
/// normalizations, so that `ad\u{AD}min` may serve as `admin`.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// One segment, percent-decoded once; a `%` not followed by two hex digits,
/// or bytes that are not UTF-8, are refused.
fn decode(raw: &str) -> Result<Cow<'_, str>, BadForward> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(BadForward::ambiguous("a `%` that is not followed by two hex digits"));
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| BadForward::ambiguous("percent-encoded bytes that are not UTF-8"))
}

/// The rules file, as operators write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// Any method when absent.
    methods: Option<Vec<String>>,
    path: String,
    action: String,
    org_id_header: Option<String>,
    app_id_header: Option<String>,
    #[serde(default)]
    case_insensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
    OrgId,
    AppId,
    Rest,
}

#[derive(Debug, Clone)]
struct Rule {
    methods: Option<Vec<Method>>,
    path: Vec<Segment>,
    need: Need,
    org_id_header: Option<HeaderName>,
    app_id_header: Option<HeaderName>,
    case_insensitive: bool,
}

/// The rules of `--forward-auth-rules`, or none (the method decides).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    /// Every header a rule reads an organization or app from.
    headers: Vec<HeaderName>,
}

impl Rules {
    /// Reads a rules file; the error names the file and what to fix.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let rules = file.rule.into_iter().enumerate().map(|(i, raw)| {
            Rule::parse(raw)
                .map_err(|e| format!("rule {} (the [[rule]] number {} in the file): {e}", i + 1, i + 1))
        });
        let rules: Vec<Rule> = rules.collect::<Result<_, _>>()?;
        let headers = rules
            .iter()
            .flat_map(|rule| [rule.org_id_header.clone(), rule.app_id_header.clone()])
            .flatten()
            .collect();
        Ok(Self { rules, headers })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What a request with `method` on the decoded path `segments` needs,
    /// and the organization and app it names.
    fn judge(
        &self,
        method: &Method,
        segments: &[Cow<'_, str>],
        headers: &HeaderMap,
    ) -> Result<Judged, BadForward> {
        // A letter whose upper case lowers to another letter (`ı`, `ſ`) is
        // one letter to lower-casing and another to upper-casing: upstreams
        // that compare either way would disagree on which rule it is.
        if segments.iter().any(|s| s.chars().any(folds_two_ways)) {
            return Err(BadForward::ambiguous(
                "a letter that upper and lower case fold differently (such as `ı` or `ſ`)",
            ));
        }
        let found = self.find(method, segments, false);
        // A case-insensitive upstream would serve the path as the rule its
        // lower-case form matches: the two readings must agree.
        if segments.iter().any(|s| s.chars().any(char::is_uppercase)) {
            let folded: Vec<Cow<'_, str>> = segments.iter().map(|s| Cow::Owned(s.to_lowercase())).collect();
            let other = self.find(method, &folded, true);
            if found.as_ref().map(|(i, _)| *i) != other.map(|(i, _)| i) {
                return Err(BadForward::ambiguous(
                    "letters whose case decides which rule applies (a case-insensitive upstream would read it as another rule's)",
                ));
            }
        }
        let Some((index, captures)) = found else {
            let action = Action::for_method(method.as_str());
            return Ok(Judged { need: Need::Key(action), org_id: None, app_id: None });
        };
        let rule = &self.rules[index];
        let header = |name: &Option<HeaderName>| -> Result<Option<String>, BadForward> {
            match name {
                Some(name) if headers.contains_key(name) => Ok(Some(one_header(headers, name)?.to_owned())),
                _ => Ok(None),
            }
        };
        let judged = Judged {
            need: rule.need,
            org_id: match captures.org_id {
                Some(org_id) => Some(org_id),
                None => header(&rule.org_id_header)?,
            },
            app_id: match captures.app_id {
                Some(app_id) => Some(app_id),
                None => header(&rule.app_id_header)?,
            },
        };
        canonical_ids(&judged)?;
        Ok(judged)
    }

    /// The first rule matching `method` on `segments`, with its captures;
    /// `fold`: every rule compared case-insensitively (`segments` already
    /// lower-cased).
    fn find(&self, method: &Method, segments: &[Cow<'_, str>], fold: bool) -> Option<(usize, Captures)> {
        self.rules.iter().enumerate().find_map(|(i, rule)| {
            if rule.methods.as_ref().is_some_and(|methods| !methods.contains(method)) {
                return None;
            }
            matches(&rule.path, segments, fold || rule.case_insensitive).map(|captures| (i, captures))
        })
    }
}

impl Rule {
    fn parse(raw: RawRule) -> Result<Self, String> {
        let need = match raw.action.as_str() {
            "public" => Need::Public,
            other => Need::Key(Action::parse(other).ok_or_else(|| {
                format!("action `{other}`: one of public, read, write, upload, admin, own")
            })?),
        };
        let methods = raw
            .methods
            .map(|methods| {
                methods
                    .iter()
                    .map(|m| {
                        parse_method(&m.trim().to_ascii_uppercase())
                            .map_err(|_| format!("method `{m}` is not an HTTP method"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if !raw.path.starts_with('/') {
            return Err(format!("path `{}` must start with /", raw.path));
        }
        let parts: Vec<&str> = raw.path.split('/').filter(|s| !s.is_empty()).collect();
        let mut path = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            path.push(match *part {
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(format!("path `{}`: `**` may only end a path", raw.path)),
                "*" => Segment::Any,
                "{org_id}" => Segment::OrgId,
                "{app_id}" => Segment::AppId,
                other if other.contains(['{', '}', '*']) => {
                    return Err(format!(
                        "path `{}`: segment `{other}`: use a literal, `*`, `**`, `{{org_id}}` or `{{app_id}}`",
                        raw.path
                    ));
                }
                literal => {
                    // A literal is compared with decoded segments: it must be one.
                    let path = format!("/{literal}");
                    let decoded = path_segments(&path).map_err(|e| {
                        format!("path `{}`: segment `{literal}`: {}", raw.path, e.message)
                    })?;
                    Segment::Literal(decoded.concat())
                }
            });
        }
        let header = |name: Option<String>, what: &str| {
            name.map(|n| {
                HeaderName::from_bytes(n.trim().as_bytes())
                    .map_err(|_| format!("{what} `{n}` is not a header name"))
            })
            .transpose()
        };
        Ok(Self {
            methods,
            path,
            need,
            org_id_header: header(raw.org_id_header, "org_id_header")?,
            app_id_header: header(raw.app_id_header, "app_id_header")?,
            case_insensitive: raw.case_insensitive,
        })
    }
}

#[derive(Default)]
struct Captures {
    org_id: Option<String>,
    app_id: Option<String>,
}

fn matches(pattern: &[Segment], segments: &[Cow<'_, str>], case_insensitive: bool) -> Option<Captures> {
    let mut captures = Captures::default();
    let mut rest = segments.iter();
    for part in pattern {
        if *part == Segment::Rest {
            return Some(captures);
        }
        let segment = rest.next()?;
        match part {
            Segment::Literal(literal)
                if case_insensitive && literal.to_lowercase() == segment.to_lowercase() => {}
            Segment::Literal(literal) if literal == segment => {}
            Segment::Literal(_) => return None,
            Segment::Any => {}
            Segment::OrgId => captures.org_id = Some(segment.clone().into_owned()),
            Segment::AppId => captures.app_id = Some(segment.clone().into_owned()),
            Segment::Rest => return Some(captures),
        }
    }
    rest.next().is_none().then_some(captures)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
        [[rule]]
        path = "/health"
        action = "public"

        [[rule]]
        methods = ["post", "PUT"]
        path = "/apps/{app_id}/bundles/**"
        action = "upload"

        [[rule]]
        path = "/apps/{app_id}/**"
        action = "read"
        methods = ["GET"]

        [[rule]]
        path = "/orgs/{org_id}/members/*"
        action = "admin"

        [[rule]]
        path = "/admin/**"
        action = "own"

        [[rule]]
        path = "/Reports/**"
        action = "admin"
        case_insensitive = true

        [[rule]]
        path = "/v1/**"
        action = "write"
        app_id_header = "x-app"
        org_id_header = "x-org"
    "#;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("value"));
        }
        map
    }

    fn caddy() -> ForwardAuth {
        ForwardAuth::new(Proxy::Caddy, Rules::parse(RULES).expect("rules"))
    }

    /// What `/auth` judges for a Caddy-forwarded `method target`.
    fn judge(method: &str, target: &str) -> Result<Vec<Judged>, BadForward> {
        judge_with(method, target, &[])
    }

    fn judge_with(
        method: &str,
        target: &str,
        extra: &[(&'static str, &str)],
    ) -> Result<Vec<Judged>, BadForward> {
        let mut map = headers(&[("x-forwarded-method", method), ("x-forwarded-uri", target)]);
        for (name, value) in extra {
            map.append(*name, value.parse().expect("value"));
        }
        caddy().judge(&Method::GET, &"/auth".parse().expect("uri"), &map)
    }

    fn need(method: &str, target: &str) -> Need {
        let judged = judge(method, target).unwrap_or_else(|e| panic!("{method} {target}: {e:?}"));
        assert_eq!(judged.len(), 1);
        judged[0].need
    }

    fn refused(method: &str, target: &str) -> &'static str {
        match judge(method, target) {
            Err(bad) => bad.code,
            Ok(judged) => panic!("{method} {target} was judged {judged:?}"),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_captures() {
        assert_eq!(need("GET", "/health"), Need::Public);
        assert_eq!(need("GET", "/health?x=1"), Need::Public);
        let upload = &judge("POST", "/apps/com.a.b/bundles/1.0.0").expect("judged")[0];
        assert_eq!((upload.need, upload.app_id.as_deref()), (Need::Key(Action::Upload), Some("com.a.b")));
        assert_eq!(need("POST", "/apps/com.a.b/bundles"), Need::Key(Action::Upload), "** may be empty");
        let read = &judge("GET", "/apps/com.a.b/bundles/1.0.0").expect("judged")[0];
        assert_eq!((read.need, read.app_id.as_deref()), (Need::Key(Action::Read), Some("com.a.b")));
        let org = &judge("DELETE", "/orgs/0190/members/42").expect("judged")[0];
        assert_eq!((org.need, org.org_id.as_deref()), (Need::Key(Action::Administer), Some("0190")));
        assert_eq!(need("DELETE", "/orgs/0190/members/42/x"), Need::Key(Action::Write), "no rule");
        assert_eq!(need("GET", "/health/"), Need::Public, "a trailing slash is dropped");
        assert_eq!(need("GET", "/"), Need::Key(Action::Read));
        // Seventh review: `//public/admin/x` is `/admin/x` to a WHATWG URL parser.
        for path in ["//health/", "//health/admin", "/health//x", "///x", "/apps//x"] {
            assert_eq!(judge("GET", path).expect_err("refused").code, "ambiguous_path", "{path}");
        }
        assert_eq!(need("GET", "/%68ealth"), Need::Public, "decoded once");
    }

    #[test]
    fn without_a_rule_the_method_decides() {
        for method in ["GET", "HEAD", "OPTIONS"] {
            assert_eq!(need(method, "/anything"), Need::Key(Action::Read));
        }
        for method in ["POST", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND"] {
            assert_eq!(need(method, "/anything"), Need::Key(Action::Write));
        }
    }

    /// Every trick an upstream could resolve to another path than keygate
    /// judged is refused, never guessed.
    #[test]
    fn ambiguous_paths_are_refused() {
        for target in [
            "/admin%2fsecret",
            "/admin%2Fsecret",
            "/x/%2e%2e/admin",
            "/x/%2E/admin",
            "/x/../admin",
            "/x/./admin",
            "/public/..;/admin",
            "/admin;jsessionid=1/secret",
            "/admin%3bx/secret",
            "/admin%5csecret",
            "/admin%252fsecret",
            "/auth/admin/%252e%252e/health",
            "/admin%25/secret",
            "/admin%00/secret",
            "/admin%0a/secret",
            "/admin%ff/secret",
            "/admin%3f/secret",
            "/admin%23/secret",
            "/ad%c2%admin/secret",
            "/ad%e2%80%8bmin/secret",
            "/%c0%ae%c0%ae/admin",
            "/admin./secret",
            "/admin%20/secret",
            "/%20admin/secret",
            "/%EF%BD%81dmin/secret",
            "/admin%e2%80%a4/secret",
            "/ad%min",
            "/admin%2",
            "/ADMIN/secret",
            "/Admin/secret",
        ] {
            let code = refused("GET", target);
            assert_eq!(code, "ambiguous_path", "{target}");
        }
        for target in ["admin", "*", "http://evil/admin", "/admin#x", "/adm in"] {
            let code = match judge("GET", target) {
                Err(bad) => bad.code,
                Ok(judged) => panic!("{target} was judged {judged:?}"),
            };
            assert_eq!(code, "bad_forwarded_target", "{target}");
        }
        assert_eq!(refused("GET", "/admin\\secret"), "ambiguous_path");
    }

    #[test]
    fn well_formed_paths_pass_whatever_their_script() {
        for target in [
            "/apps/com.a.b/x",
            "/caf%C3%A9/menu",
            "/%E6%97%A5%E6%9C%AC/x",
            "/v1/items?q=a%2Fb&x=..",
            "/.well-known/x",
            "/a-b_c~d/1.0.0",
        ] {
            judge("GET", target).unwrap_or_else(|e| panic!("{target}: {e:?}"));
        }
    }

    #[test]
    fn a_path_whose_case_decides_the_rule_is_refused_unless_the_rule_ignores_case() {
        assert_eq!(refused("GET", "/ADMIN/x"), "ambiguous_path");
        assert_eq!(need("GET", "/admin/x"), Need::Key(Action::Own));
        assert_eq!(need("GET", "/REPORTS/x"), Need::Key(Action::Administer), "the rule says so");
        assert_eq!(need("GET", "/reports/x"), Need::Key(Action::Administer));
        assert_eq!(need("GET", "/Users/X"), Need::Key(Action::Read), "no rule either way");
        // An app id the upstream receives in another form than keygate judges.
        assert_eq!(refused("GET", "/apps/COM.A.B/x"), "ambiguous_path");
    }

    #[test]
    fn methods_are_upper_case_and_overrides_add_what_they_need() {
        assert_eq!(refused("get", "/health"), "ambiguous_method");
        assert_eq!(refused("Delete", "/x"), "ambiguous_method");
        assert_eq!(refused("GE T", "/x"), "ambiguous_method");
        let both = judge_with("GET", "/admin/x", &[("x-http-method-override", "delete")]).expect("judged");
        assert_eq!(both.len(), 2);
        let read_and_write = judge_with("GET", "/x", &[("x-method-override", "PUT")]).expect("judged");
        let needs: Vec<Need> = read_and_write.iter().map(|j| j.need).collect();
        assert_eq!(needs, [Need::Key(Action::Read), Need::Key(Action::Write)]);
        let query = judge_with("GET", "/apps/com.a.b/x?a=1&_method=delete", &[]).expect("judged");
        let needs: Vec<Need> = query.iter().map(|j| j.need).collect();
        assert_eq!(needs, [Need::Key(Action::Read), Need::Key(Action::Write)], "GET is read, DELETE write");
        let bad = judge_with("GET", "/x", &[("x-http-method", "DEL ETE")]).expect_err("refused");
        assert_eq!(bad.code, "ambiguous_method");
        // Fourth review: a dotless i is an `I` to Java and .NET, an `ı` to keygate.
        for path in ["/adm%C4%B1n/x", "/%C5%BFecret", "/ADM%C4%B0N/x", "/%E2%84%AAey"] {
            assert_eq!(judge_with("GET", path, &[]).expect_err("refused").code, "ambiguous_path", "{path}");
        }
        assert!(judge_with("GET", "/caf%C3%A9", &[]).is_ok(), "other letters are letters");
        // Fourth review: spellings PHP reads as `_method`.
        for spelling in [
            ".method",
            "%2Emethod",
            "[method",
            "%5Bmethod",
            "_METHOD",
            "+_method",
            "%20_method",
            "_method%00x",
            "a=1;_method",
        ] {
            let target = format!("/x?{spelling}=DELETE");
            let judged = judge_with("GET", &target, &[]).expect("judged");
            let needs: Vec<Need> = judged.iter().map(|j| j.need).collect();
            assert_eq!(needs, [Need::Key(Action::Read), Need::Key(Action::Write)], "{spelling}");
        }
    }

    #[test]
    fn only_the_configured_proxys_headers_are_read() {
        let auth: Uri = "/auth".parse().expect("uri");
        let nginx = ForwardAuth::new(Proxy::Nginx, Rules::default());
        let caddy = ForwardAuth::new(Proxy::Caddy, Rules::default());
        let ours = headers(&[("x-original-method", "POST"), ("x-original-uri", "/x")]);
        assert_eq!(
            nginx.judge(&Method::GET, &auth, &ours).expect("judged")[0].need,
            Need::Key(Action::Write)
        );
        // Another family's headers: a client's copy, passed on by the proxy.
        let code = |forward: &ForwardAuth, pairs: &[(&'static str, &str)]| {
            forward.judge(&Method::GET, &auth, &headers(pairs)).expect_err("refused").code
        };
        assert_eq!(
            code(
                &caddy,
                &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/x"), ("x-original-uri", "/health")]
            ),
            "conflicting_header"
        );
        assert_eq!(
            code(
                &nginx,
                &[("x-original-method", "GET"), ("x-original-uri", "/x"), ("x-forwarded-method", "GET")]
            ),
            "conflicting_header"
        );
        assert_eq!(
            code(
                &caddy,
                &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/x"), ("x-original-url", "/admin")]
            ),
            "conflicting_header"
        );
        // Missing, repeated, unreadable: never a fallback.
        assert_eq!(code(&caddy, &[("x-forwarded-method", "GET")]), "forwarded_header_missing");
        assert_eq!(code(&caddy, &[("x-forwarded-uri", "/x")]), "forwarded_header_missing");
        assert_eq!(code(&nginx, &[]), "forwarded_header_missing");
        assert_eq!(
            code(
                &caddy,
                &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/x"), ("x-forwarded-uri", "/health")]
            ),
            "forwarded_header_repeated"
        );
        let mut raw = headers(&[("x-original-method", "DELETE")]);
        raw.insert("x-original-uri", axum::http::HeaderValue::from_bytes(b"/admin?x=\xff").expect("bytes"));
        assert_eq!(
            nginx.judge(&Method::GET, &auth, &raw).expect_err("refused").code,
            "forwarded_header_unreadable"
        );
    }

    #[test]
    fn envoy_sends_its_own_method_and_the_target_after_auth() {
        let envoy = ForwardAuth::new(Proxy::Envoy, Rules::parse(RULES).expect("rules"));
        let judge =
            |method: Method, uri: &str| envoy.judge(&method, &uri.parse().expect("uri"), &HeaderMap::new());
        assert_eq!(judge(Method::GET, "/auth/health").expect("judged")[0].need, Need::Public);
        assert_eq!(judge(Method::GET, "/auth").expect("judged")[0].need, Need::Key(Action::Read), "the root");
        let upload = judge(Method::PUT, "/auth/apps/com.a.b/bundles/x?y=1").expect("judged");
        assert_eq!(upload[0].need, Need::Key(Action::Upload));
        assert_eq!(
            judge(Method::GET, "/auth/admin/%252e%252e/health").expect_err("refused").code,
            "ambiguous_path"
        );
        assert_eq!(judge(Method::GET, "/authx/health").expect_err("refused").code, "bad_forwarded_target");
        let headers = headers(&[("x-original-uri", "/health")]);
        let refused = envoy.judge(&Method::GET, &"/auth/admin".parse().expect("uri"), &headers);
        assert_eq!(refused.expect_err("refused").code, "conflicting_header");
    }

    /// A header an upstream folds into one keygate guards (any case, `_`
    /// for `-`) is refused, or, for a method override, counted as one.
    #[test]
    fn every_spelling_of_a_guarded_header_is_screened() {
        let conflicting = [
            ("X_Keygate_Mode", "all"),
            ("x-keygate-user-id", "forged"),
            ("X_keygate-Org-Id", "forged"),
            ("x_original_url", "/admin"),
            ("X-Original_URL", "/admin"),
            ("x_rewrite_url", "/admin"),
            ("x_forwarded_uri", "/health"),
            ("X-Original-URI", "/health"),
            ("x_api_key", "ak_x"),
            ("X_Org", "other"),
        ];
        for (name, value) in conflicting {
            let refused = judge_with("POST", "/v1/things", &[(name, value)]).expect_err(name);
            assert_eq!(refused.code, "conflicting_header", "{name}");
        }
        for name in ["X_HTTP_Method_Override", "x-http-method_override", "X_Method_Override", "x_http_method"]
        {
            let judged = judge_with("GET", "/x", &[(name, "DELETE")]).expect(name);
            assert_eq!(judged.len(), 2, "{name}: an override, whatever its spelling");
        }
        let twice = judge_with("GET", "/x", &[("authorization", "ak_a"), ("x-api-key", "ak_b")]);
        assert_eq!(twice.expect_err("refused").code, "ambiguous_credentials");
        let repeated = judge_with("GET", "/x", &[("authorization", "ak_a"), ("authorization", "ak_b")]);
        assert_eq!(repeated.expect_err("refused").code, "ambiguous_credentials");
        judge_with("GET", "/x", &[("x-api-key", "ak_a"), ("x-request-id", "1")]).expect("one credential");
    }

    #[test]
    fn ids_are_judged_as_the_upstream_receives_them() {
        let org = "01234567-89ab-7def-8123-456789abcdef";
        assert!(judge("DELETE", &format!("/orgs/{org}/members/1")).is_ok());
        for other in [org.to_uppercase(), org.replace('-', ""), format!("{{{org}}}")] {
            assert_eq!(refused("DELETE", &format!("/orgs/{other}/members/1")), "ambiguous_path", "{other}");
        }
        let padded = judge_with("POST", "/v1/x", &[("x-app", " com.a.b")]);
        assert_eq!(padded.expect_err("refused").code, "ambiguous_path");
    }

    #[test]
    fn headers_name_the_organization_and_app_when_the_path_does_not() {
        let judged =
            &judge_with("POST", "/v1/things", &[("x-app", "com.a.b"), ("x-org", "0190")]).expect("judged")[0];
        assert_eq!((judged.app_id.as_deref(), judged.org_id.as_deref()), (Some("com.a.b"), Some("0190")));
        let twice = judge_with("POST", "/v1/things", &[("x-app", "com.a.b"), ("x-app", "com.c.d")]);
        assert_eq!(twice.expect_err("refused").code, "forwarded_header_repeated");
    }

    #[test]
    fn a_bad_rules_file_says_what_to_fix() {
        let error = |text: &str| Rules::parse(text).expect_err("refused");
        assert!(error("[[rule]]\npath = \"/a\"\naction = \"delete\"").contains("action `delete`"));
        assert!(error("[[rule]]\npath = \"a\"\naction = \"read\"").contains("must start with /"));
        assert!(error("[[rule]]\npath = \"/**/a\"\naction = \"read\"").contains("may only end"));
        assert!(error("[[rule]]\npath = \"/{user}\"\naction = \"read\"").contains("segment `{user}`"));
        assert!(error("[[rule]]\npath = \"/a\"\naction = \"read\"\nmethods = [\"GE T\"]").contains("GE T"));
        assert!(error("[[rule]]\npath = \"/a\"\naction = \"read\"\nverb = \"GET\"").contains("verb"));
        assert!(error("[[rule]]\npath = \"/a%2fb\"\naction = \"read\"").contains("segment `a%2fb`"));
        assert!(error("[[rule]]\npath = \"/a/../b\"\naction = \"read\"").contains("dot segment"));
    }

    #[test]
    fn proxies_are_named_by_their_own_names() {
        for proxy in Proxy::ALL {
            assert_eq!(Proxy::parse(proxy.as_str()), Some(proxy));
        }
        assert_eq!(Proxy::parse("apache"), None);
    }
}
