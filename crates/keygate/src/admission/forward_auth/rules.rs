//! The rules file of `--forward-auth-rules`: which action a request takes
//! and where its organization and app come from; the first rule that
//! matches decides.

use std::borrow::Cow;
use std::path::Path;

use axum::http::{HeaderMap, HeaderName, Method};
use keygate_core::authz::Action;
use serde::Deserialize;

use super::headers::{one_header, parse_method};
use super::judged::{BadForward, Judged, Need, canonical_ids};
use super::path::{folds_two_ways, path_segments};

/// The rules file, as operators write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    /// Whether the upstream may take a POST's method from its body.
    #[serde(default = "yes")]
    body_may_override_method: bool,
    #[serde(default)]
    rule: Vec<RawRule>,
}

fn yes() -> bool {
    true
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

/// A method no rule names, standing for every other one a body may name
/// (Express takes any of Node's methods, Symfony any upper-case word): it
/// is judged by the rules that name no method, or by the default.
static ANY_OTHER_METHOD: std::sync::LazyLock<Method> =
    std::sync::LazyLock::new(|| Method::from_bytes(b"KEYGATE-ANY-OTHER-METHOD").expect("a method token"));

/// The rules of `--forward-auth-rules`, or none (the method decides).
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
    /// Every header a rule reads an organization or app from.
    pub(super) headers: Vec<HeaderName>,
    /// Whether a rule's literal has an upper-case letter: then a path in
    /// lower case may also be one a case-insensitive upstream reads as it.
    cased_literals: bool,
    /// The methods a POST's body could turn it into (`_method`, as Rails,
    /// Laravel, Symfony and Express read it): the standard ones, every
    /// method a rule names, and [`ANY_OTHER_METHOD`] for the rest; none
    /// when the file says the upstream never reads one.
    body_methods: Vec<Method>,
}

impl Default for Rules {
    fn default() -> Self {
        Self::from_rules(Vec::new(), true)
    }
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
        Ok(Self::from_rules(rules, file.body_may_override_method))
    }

    fn from_rules(rules: Vec<Rule>, body_may_override_method: bool) -> Self {
        let headers = rules
            .iter()
            .flat_map(|rule| [rule.org_id_header.clone(), rule.app_id_header.clone()])
            .flatten()
            .collect();
        let cased_literals = rules.iter().flat_map(|rule| &rule.path).any(
            |segment| matches!(segment, Segment::Literal(literal) if literal.chars().any(char::is_uppercase)),
        );
        let mut body_methods = Vec::new();
        if body_may_override_method {
            body_methods =
                vec![Method::GET, Method::HEAD, Method::OPTIONS, Method::PUT, Method::PATCH, Method::DELETE];
            let named = rules.iter().flat_map(|rule| rule.methods.iter().flatten());
            for method in named.chain([&*ANY_OTHER_METHOD]) {
                if *method != Method::POST && !body_methods.contains(method) {
                    body_methods.push(method.clone());
                }
            }
        }
        Self { rules, headers, cased_literals, body_methods }
    }

    /// The methods a POST's body could name, for an upstream that reads one.
    pub(super) fn methods_a_body_may_name(&self) -> &[Method] {
        &self.body_methods
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What a request with `method` on the decoded path `segments` needs,
    /// and the organization and app it names.
    pub(super) fn judge(
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
        // lower-case form matches: the two readings must agree, whichever
        // side (the path or a rule) has the upper-case letters.
        if self.cased_literals || segments.iter().any(|s| s.chars().any(char::is_uppercase)) {
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
        // Named twice, in the path and in a header, it must be named alike:
        // the upstream may read either.
        let named = |captured: Option<String>, name: &Option<HeaderName>| match (captured, header(name)?) {
            (Some(path), Some(header)) if path != header => {
                Err(BadForward::ambiguous("an organization or app that its rule's header names differently"))
            }
            (captured, header) => Ok(captured.or(header)),
        };
        let judged = Judged {
            need: rule.need,
            org_id: named(captures.org_id, &rule.org_id_header)?,
            app_id: named(captures.app_id, &rule.app_id_header)?,
        };
        // A rule that names the organization or the app by a header needs
        // one of them: left out, the request would name neither, and an
        // unscoped key would be judged by its mode alone.
        let by_header = rule.org_id_header.iter().chain(&rule.app_id_header).next();
        if let Some(name) = by_header
            && judged.org_id.is_none()
            && judged.app_id.is_none()
        {
            return Err(BadForward::header(
                "forwarded_header_missing",
                name,
                "is missing: this path's rule takes the organization or the app from it",
            ));
        }
        canonical_ids(&judged)?;
        Ok(judged)
    }

    /// The first rule matching `method` on `segments`, with its captures;
    /// `fold`: every rule compared case-insensitively (`segments` already
    /// lower-cased).
    fn find(&self, method: &Method, segments: &[Cow<'_, str>], fold: bool) -> Option<(usize, Captures)> {
        self.rules.iter().enumerate().find_map(|(i, rule)| {
            // HEAD is GET without the body: upstreams answer it with GET's
            // handler, so a rule for GET is one for HEAD.
            let listed = |methods: &Vec<Method>| {
                methods.contains(method) || (*method == Method::HEAD && methods.contains(&Method::GET))
            };
            if rule.methods.as_ref().is_some_and(|methods| !listed(methods)) {
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
