//! Typed values parsed at the edge: once a request holds one of these, the
//! value is known to be valid, and nothing downstream checks it again.

use std::fmt;

use serde::Serialize;

/// Why a value was refused, in words that say what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(message: impl Into<String>) -> InvalidValue {
    InvalidValue(message.into())
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// An email address, trimmed and lower-cased so that one person is one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let email = raw.trim().to_lowercase();
        let well_formed = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
        if !well_formed || email.chars().any(char::is_whitespace) || has_control(&email) {
            return Err(invalid("email must look like name@example.com"));
        }
        if email.len() > Self::MAX_LEN {
            return Err(invalid(format!("email must be at most {} bytes", Self::MAX_LEN)));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A human-chosen name: non-empty once trimmed, bounded, no control characters.
fn parse_name(raw: &str, what: &str, max_chars: usize) -> Result<String, InvalidValue> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if name.chars().count() > max_chars {
        return Err(invalid(format!("{what} must be at most {max_chars} characters")));
    }
    if has_control(name) {
        return Err(invalid(format!("{what} must not contain control characters")));
    }
    Ok(name.to_owned())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                parse_name(raw, $what, Self::MAX_CHARS).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// The name of an API key, such as `CI/CD Read Key`.
    KeyName,
    "name",
    200
);
name_type!(
    /// The name of an organization.
    OrgName,
    "name",
    200
);

impl KeyName {
    pub fn default_name() -> Self {
        Self("New API Key".to_owned())
    }
}

/// An app's reverse-domain identifier, such as `com.example.app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AppId(String);

impl AppId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let explain = || {
            invalid(format!(
                "app_id `{}` must be a reverse-domain name such as com.example.app: \
                 at least two dot-separated parts of letters, digits, `_` or `-`, \
                 each starting with a letter or digit, at most {} characters",
                raw.chars().take(Self::MAX_LEN).collect::<String>(),
                Self::MAX_LEN
            ))
        };
        if raw.len() > Self::MAX_LEN {
            return Err(explain());
        }
        let parts: Vec<&str> = raw.split('.').collect();
        let part_ok = |p: &&str| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if parts.len() < 2 || !parts.iter().all(part_ok) {
            return Err(explain());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Ada@Example.COM ").map(|e| e.0), Ok("ada@example.com".into()));
        for bad in ["", "ada", "@example.com", "ada@", "a b@example.com", "a@b@c", "ada@.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn names_are_trimmed_bounded_and_unicode_friendly() {
        assert_eq!(KeyName::parse("  CI/CD Read Key ").map(|n| n.0), Ok("CI/CD Read Key".into()));
        assert!(KeyName::parse("déploiement 🚀").is_ok());
        assert!(KeyName::parse("   ").is_err());
        assert!(KeyName::parse("tab\tinside").is_err());
        assert!(KeyName::parse(&"é".repeat(200)).is_ok());
        assert!(KeyName::parse(&"é".repeat(201)).is_err());
    }

    #[test]
    fn app_ids_are_reverse_domain_names() {
        for good in ["com.example.app", "io.capgo.demo-app", "ee.forgr.capacitor_go", "com.1password.x"] {
            assert!(AppId::parse(good).is_ok(), "{good} refused");
        }
        for bad in ["", "app", "com..app", ".com.app", "com.app.", "com.exa mple", "com.-app", "com.app/x"] {
            assert!(AppId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,300}") {
            let _ = (Email::parse(&s), KeyName::parse(&s), OrgName::parse(&s), AppId::parse(&s));
        }

        #[test]
        fn accepted_app_ids_round_trip(s in "[a-z][a-z0-9_-]{0,10}(\\.[a-z0-9][a-z0-9_-]{0,10}){1,4}") {
            prop_assert_eq!(AppId::parse(&s).map(|a| a.0), Ok(s));
        }
    }
}
