//! What judging a forwarded request yields: what it needs ([`Judged`],
//! [`Need`]), or why it is refused before any key is looked at
//! ([`BadForward`]).

use std::borrow::Cow;

use axum::http::HeaderName;
use keygate_core::authz::Action;

/// Why a forwarded request was refused before any key was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadForward {
    /// A stable snake_case code, for `X-Keygate-Reason`.
    pub code: &'static str,
    /// What is wrong, and what to fix.
    pub message: Cow<'static, str>,
}

impl BadForward {
    pub(super) fn header(code: &'static str, name: &HeaderName, what: &str) -> Self {
        Self { code, message: format!("The forwarded request's {name} header {what}").into() }
    }

    pub(super) fn target(why: &'static str) -> Self {
        Self {
            code: "bad_forwarded_target",
            message: format!("The forwarded request's target is not an origin-form path: {why}").into(),
        }
    }

    pub(super) fn ambiguous(why: &'static str) -> Self {
        Self {
            code: "ambiguous_path",
            message: format!(
                "The forwarded request's path has {why}, which an upstream may read differently: refused"
            )
            .into(),
        }
    }

    pub(super) fn method(raw: &str) -> Self {
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

/// An organization or app id as the upstream receives it must be the one
/// keygate judges: ids that parse only after normalizing (upper case, other
/// UUID forms, white space) are refused.
pub(super) fn canonical_ids(judged: &Judged) -> Result<(), BadForward> {
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
