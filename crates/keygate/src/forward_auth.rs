//! What a request forwarded by a reverse proxy needs (`/auth`, see
//! [`crate::api::forward`]): the original request's method and path, and the
//! rule that says which action it takes and where the organization and app
//! come from.
//!
//! Policy:
//!
//! - The original request is read from `X-Original-Method` / `X-Original-URI`
//!   (nginx), else `X-Forwarded-Method` / `X-Forwarded-Uri` (Traefik, Caddy),
//!   else the request itself: its method, and the path after `/auth` (Envoy).
//! - The path is judged as an upstream would serve it: split at `/`, each
//!   segment percent-decoded, empty and `.` segments dropped, `..` removing
//!   the one before; the query is ignored.
//! - Rules are tried in the order of the file; the first whose methods and
//!   path match decides. Without a match, GET, HEAD and OPTIONS need `read`
//!   and every other method `write`.
//! - A rule's path is literal segments, `*` (any one segment), `{org_id}` or
//!   `{app_id}` (one segment, taken as the organization or the app), and a
//!   final `**` (any rest, or nothing). An organization or app may also come
//!   from a header the rule names; a path capture wins over a header.

use std::path::Path;

use axum::http::{HeaderMap, Method};
use keygate_core::authz::Action;
use serde::Deserialize;

/// What a matched request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No key at all.
    Public,
    Key(Action),
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
    org_id_header: Option<axum::http::HeaderName>,
    app_id_header: Option<axum::http::HeaderName>,
}

/// The rules of `--forward-auth-rules`, or none (the method decides).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// What a forwarded request asks for, as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub need: Need,
    /// The organization, as sent (a path segment or a header value).
    pub org_id: Option<String>,
    /// The app, as sent.
    pub app_id: Option<String>,
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
        Ok(Self { rules: rules.collect::<Result<_, _>>()? })
    }

    /// What a request with `method` on `path` (its query, if any, ignored)
    /// needs, and the organization and app it names.
    pub fn judge(&self, method: &Method, path: &str, headers: &HeaderMap) -> Judged {
        let segments = normalize(path);
        for rule in &self.rules {
            if rule.methods.as_ref().is_some_and(|methods| !methods.contains(method)) {
                continue;
            }
            let Some(captures) = matches(&rule.path, &segments) else { continue };
            let header = |name: &Option<axum::http::HeaderName>| {
                name.as_ref().and_then(|n| headers.get(n)).and_then(|v| v.to_str().ok()).map(str::to_owned)
            };
            return Judged {
                need: rule.need,
                org_id: captures.org_id.or_else(|| header(&rule.org_id_header)),
                app_id: captures.app_id.or_else(|| header(&rule.app_id_header)),
            };
        }
        let action = if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Action::Read
        } else {
            Action::Write
        };
        Judged { need: Need::Key(action), org_id: None, app_id: None }
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
                        Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
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
                literal => Segment::Literal(literal.to_owned()),
            });
        }
        let header = |name: Option<String>, what: &str| {
            name.map(|n| {
                axum::http::HeaderName::from_bytes(n.trim().as_bytes())
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
        })
    }
}

#[derive(Default)]
struct Captures {
    org_id: Option<String>,
    app_id: Option<String>,
}

fn matches(pattern: &[Segment], segments: &[String]) -> Option<Captures> {
    let mut captures = Captures::default();
    let mut rest = segments.iter();
    for (i, part) in pattern.iter().enumerate() {
        if *part == Segment::Rest {
            debug_assert_eq!(i + 1, pattern.len());
            return Some(captures);
        }
        let segment = rest.next()?;
        match part {
            Segment::Literal(literal) if literal == segment => {}
            Segment::Literal(_) => return None,
            Segment::Any => {}
            Segment::OrgId => captures.org_id = Some(segment.clone()),
            Segment::AppId => captures.app_id = Some(segment.clone()),
            Segment::Rest => unreachable!("handled above"),
        }
    }
    rest.next().is_none().then_some(captures)
}

/// The path's segments as an upstream would resolve them (see the module's
/// documentation).
fn normalize(path: &str) -> Vec<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let segment = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        match segment.as_ref() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment.into_owned()),
        }
    }
    segments
}

/// The method and path of the request a proxy asks about (see the module's
/// documentation). `rest` is what followed `/auth` in this request's path.
pub fn original(method: &Method, rest: &str, query: Option<&str>, headers: &HeaderMap) -> (Method, String) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let method = header("x-original-method")
        .or_else(|| header("x-forwarded-method"))
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .unwrap_or_else(|| method.clone());
    let uri = header("x-original-uri").or_else(|| header("x-forwarded-uri")).map(str::to_owned);
    let uri = uri.unwrap_or_else(|| match query {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    });
    (method, uri)
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
        path = "/v1/**"
        action = "write"
        app_id_header = "x-app"
        org_id_header = "x-org"
    "#;

    fn judge(method: Method, path: &str) -> Judged {
        Rules::parse(RULES).expect("rules").judge(&method, path, &HeaderMap::new())
    }

    fn needs(action: Action) -> Need {
        Need::Key(action)
    }

    #[test]
    fn the_first_matching_rule_decides_and_captures() {
        assert_eq!(judge(Method::GET, "/health").need, Need::Public);
        assert_eq!(judge(Method::GET, "/health?x=1").need, Need::Public);
        let upload = judge(Method::POST, "/apps/com.a.b/bundles/1.0.0");
        assert_eq!((upload.need, upload.app_id.as_deref()), (needs(Action::Upload), Some("com.a.b")));
        assert_eq!(
            judge(Method::POST, "/apps/com.a.b/bundles").need,
            needs(Action::Upload),
            "** may be empty"
        );
        let read = judge(Method::GET, "/apps/com.a.b/bundles/1.0.0");
        assert_eq!((read.need, read.app_id.as_deref()), (needs(Action::Read), Some("com.a.b")));
        let org = judge(Method::DELETE, "/orgs/0190/members/42");
        assert_eq!((org.need, org.org_id.as_deref()), (needs(Action::Administer), Some("0190")));
        assert_eq!(judge(Method::DELETE, "/orgs/0190/members/42/x").need, needs(Action::Write), "no rule");
    }

    #[test]
    fn without_a_rule_the_method_decides() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(judge(method, "/anything").need, needs(Action::Read));
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(judge(method, "/anything").need, needs(Action::Write));
        }
        assert_eq!(
            Rules::default().judge(&Method::GET, "/health", &HeaderMap::new()).need,
            needs(Action::Read)
        );
    }

    #[test]
    fn paths_are_judged_as_an_upstream_resolves_them() {
        // Dot segments, doubled slashes and encodings cannot step around a rule.
        assert_eq!(judge(Method::GET, "/x/../health").need, Need::Public);
        assert_eq!(judge(Method::GET, "//health/").need, Need::Public);
        assert_eq!(judge(Method::GET, "/%68ealth").need, Need::Public);
        let other = judge(Method::GET, "/apps/com.mine.app/../../apps/com.other.app/x");
        assert_eq!(other.app_id.as_deref(), Some("com.other.app"));
        assert_eq!(judge(Method::GET, "/apps/com.a.b/%2e%2e/%2e%2e/health").need, Need::Public);
    }

    #[test]
    fn headers_name_the_organization_and_app_when_the_path_does_not() {
        let mut headers = HeaderMap::new();
        headers.insert("x-app", "com.a.b".parse().expect("value"));
        headers.insert("x-org", "0190".parse().expect("value"));
        let judged = Rules::parse(RULES).expect("rules").judge(&Method::POST, "/v1/things", &headers);
        assert_eq!(judged.app_id.as_deref(), Some("com.a.b"));
        assert_eq!(judged.org_id.as_deref(), Some("0190"));
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
    }

    #[test]
    fn the_original_request_comes_from_nginx_traefik_caddy_or_envoy() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().expect("value"));
            }
            map
        };
        let nginx = headers(&[("x-original-method", "POST"), ("x-original-uri", "/apps/a.b/x?y=1")]);
        assert_eq!(original(&Method::GET, "", None, &nginx), (Method::POST, "/apps/a.b/x?y=1".into()));
        let traefik = headers(&[("x-forwarded-method", "delete"), ("x-forwarded-uri", "/v1/x")]);
        assert_eq!(original(&Method::GET, "", None, &traefik), (Method::DELETE, "/v1/x".into()));
        let envoy = headers(&[]);
        assert_eq!(original(&Method::PUT, "v1/x", Some("q=1"), &envoy), (Method::PUT, "/v1/x?q=1".into()));
    }
}
