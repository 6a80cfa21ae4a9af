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

/// Characters that show nothing yet change how a text reads or compares:
/// zero-width spaces and joiners between words, byte-order marks, and the
/// bidirectional controls that can make `txt.exe` display as `exe.txt`.
/// (The zero-width joiner and non-joiner are left alone: emoji sequences and
/// several scripts need them. They do not count as visible.)
fn is_hidden_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

fn has_hidden_control(s: &str) -> bool {
    s.chars().any(is_hidden_control)
}

/// Whether `c` puts ink on the screen: not a space, a control, a joiner or
/// one of the blank fillers that pass for a letter.
fn is_visible(c: char) -> bool {
    !c.is_whitespace()
        && !c.is_control()
        && !is_hidden_control(c)
        && !matches!(
            c,
            '\u{200C}' | '\u{200D}' | '\u{115F}' | '\u{1160}' | '\u{2800}' | '\u{3164}' | '\u{FFA0}'
        )
}

const HIDDEN_CONTROLS: &str = "zero-width or bidirectional control characters (such as U+200B or U+202E)";

/// The parsers' rules as ECMA-262 regular expressions, for the OpenAPI
/// document: each pattern, with the type's length limit counted over the
/// whole input, accepts exactly what the parser accepts (a property test
/// holds them to it). The character classes spell out Rust's sets: what
/// [`str::trim`] removes, what [`char::is_control`] and [`is_hidden_control`]
/// refuse, and what [`is_visible`] does not count as ink.
pub mod patterns {
    /// What `str::trim` removes (Unicode `White_Space`).
    pub const SPACE: &str = r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
    /// `char::is_control`: general category Cc.
    pub const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
    /// `is_hidden_control`.
    pub const HIDDEN: &str = r"\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff";
    /// Neither white space, control nor hidden, yet blank: `is_visible` refuses them.
    pub const BLANK: &str = r"\u200c\u200d\u115f\u1160\u2800\u3164\uffa0";

    /// [`AppId`](super::AppId), at most `AppId::MAX_LEN` characters.
    pub fn app_id() -> String {
        format!(r"^[{SPACE}]*[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)+[{SPACE}]*$")
    }

    /// [`KeyName`](super::KeyName) and [`OrgName`](super::OrgName), at most
    /// `MAX_CHARS` characters.
    pub fn name() -> String {
        format!(
            "^[{SPACE}]*[^{CONTROL}{HIDDEN}]*[^{CONTROL}{HIDDEN}{SPACE}{BLANK}][^{CONTROL}{HIDDEN}]*[{SPACE}]*$"
        )
    }

    /// [`Email`](super::Email), at most `Email::MAX_LEN` characters.
    pub fn email() -> String {
        // Printable ASCII but `@` and the specials `"(),:;<>[\]` (and `.` at
        // the domain's edges).
        let part = r"[\u0021\u0023-\u0027\u002a\u002b\u002d-\u0039\u003d\u003f\u0041-\u005a\u005e-\u007e]";
        let edge =
            r"[\u0021\u0023-\u0027\u002a\u002b\u002d\u002f-\u0039\u003d\u003f\u0041-\u005a\u005e-\u007e]";
        format!("^[{SPACE}]*{part}+@({edge}|{edge}{part}*{edge})[{SPACE}]*$")
    }
}

/// An email address, trimmed and lower-cased so that one person is one user.
/// Only ASCII: letters from other scripts, full-width forms and invisible
/// joiners would let two addresses read alike and be two users (an
/// internationalised domain is written in its `xn--` form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.chars().count() > Self::MAX_LEN {
            return Err(invalid(format!("email must be at most {} characters", Self::MAX_LEN)));
        }
        let trimmed = raw.trim();
        if !trimmed.is_ascii() {
            return Err(invalid(
                "email must be written in ASCII (an internationalised domain in its xn-- form)",
            ));
        }
        let email = trimmed.to_ascii_lowercase();
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
        // A quoted name (`"ada"@example.com`) or an address literal
        // (`ada@[192.0.2.1]`) is one mailbox written two ways: two users.
        if email.bytes().any(|b| b"\"(),:;<>[\\]".contains(&b)) {
            return Err(invalid(
                "email must be a plain address: no quotes, brackets, parentheses, commas, colons, \
                 semicolons, angle brackets or backslashes",
            ));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A human-chosen name: trimmed, bounded, with at least one visible
/// character, and without control, zero-width or bidirectional control
/// characters.
fn parse_name(raw: &str, what: &str, max_chars: usize) -> Result<String, InvalidValue> {
    if raw.chars().count() > max_chars {
        return Err(invalid(format!("{what} must be at most {max_chars} characters")));
    }
    let name = raw.trim();
    if name.is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if has_control(name) {
        return Err(invalid(format!("{what} must not contain control characters")));
    }
    if has_hidden_control(name) {
        return Err(invalid(format!("{what} must not contain {HIDDEN_CONTROLS}")));
    }
    if !name.chars().any(is_visible) {
        return Err(invalid(format!("{what} must contain a visible character")));
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

/// An app's reverse-domain identifier, such as `com.example.app`: trimmed
/// and lower-cased, so that `COM.Example.App` and `com.example.app` are one
/// app wherever an id is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AppId(String);

impl AppId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let too_long = raw.chars().count() > Self::MAX_LEN;
        let raw = raw.trim();
        let explain = || {
            invalid(format!(
                "app_id `{}` must be a reverse-domain name such as com.example.app: \
                 at least two dot-separated parts of letters, digits, `_` or `-`, \
                 each starting with a letter or digit, at most {} characters",
                raw.chars().take(Self::MAX_LEN).collect::<String>(),
                Self::MAX_LEN
            ))
        };
        if too_long {
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
        Ok(Self(raw.to_ascii_lowercase()))
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
    fn names_and_emails_refuse_what_hides_or_reorders_text() {
        for bad in [
            "\u{200b}",
            "\u{200b}\u{200b}",
            "\u{202e}gpj.exe",
            "a\u{2066}b",
            "\u{feff}Key",
            "\u{200d}",
            "\u{3164}",
        ] {
            assert!(KeyName::parse(bad).is_err(), "{bad:?} accepted");
            assert!(OrgName::parse(bad).is_err(), "{bad:?} accepted");
        }
        let hidden = KeyName::parse("\u{202e}txt").expect_err("bidi");
        assert!(hidden.0.contains("U+202E"), "{hidden}");
        assert!(KeyName::parse("\u{200b}").expect_err("zero-width").0.contains("zero-width"));
        // Joiners inside visible text are fine: emoji sequences and scripts need them.
        assert!(KeyName::parse("family 👨\u{200d}👩\u{200d}👧").is_ok());
        assert!(KeyName::parse("می\u{200c}خواهم").is_ok());
        for bad in ["ada\u{200b}@example.com", "ada@exa\u{202e}mple.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn emails_that_could_read_as_another_are_refused() {
        // Trailing joiner, full-width letter, Cyrillic о, Kelvin sign (lower-cases to k).
        for bad in
            ["ceo@corp.test\u{200d}", "\u{ff43}eo@corp.test", "ce\u{43e}@corp.test", "\u{212a}@corp.test"]
        {
            let error = Email::parse(bad).expect_err(bad);
            assert!(error.0.contains("ASCII"), "{bad:?}: {error}");
        }
        assert!(Email::parse("ceo@xn--bcher-kva.example").is_ok());
        // Fourteenth review: one mailbox, written another way, was a second user.
        for bad in ["\"owner\"@b.test", "owner@[127.0.0.1]", "owner(x)@b.test", "a\\b@b.test", "a,b@b.test"] {
            let error = Email::parse(bad).expect_err(bad);
            assert!(error.0.contains("plain address"), "{bad:?}: {error}");
        }
        assert!(Email::parse("first.last+tag@sub.example.com").is_ok());
    }

    #[test]
    fn app_ids_are_trimmed_and_lower_cased() {
        assert_eq!(AppId::parse(" COM.Other.X ").map(|a| a.0), Ok("com.other.x".into()));
        assert_eq!(AppId::parse("com.other.x"), AppId::parse("COM.OTHER.X"));
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

        /// The OpenAPI document's patterns say exactly what the parsers
        /// accept, over strings built from the characters each rule is
        /// about (and any other).
        #[test]
        fn the_documented_patterns_accept_exactly_what_the_parsers_do(
            chars in prop::collection::vec(tricky_char(), 0..40),
            padding in 0usize..260,
        ) {
            let s: String = chars.into_iter().collect();
            let long = format!("{s}{}", "a".repeat(padding));
            for s in [&s, &long] {
                let agree = |pattern: &Regex, max: usize, parsed: bool, what: &str| {
                    let documented = pattern.is_match(s) && s.chars().count() <= max;
                    assert_eq!(documented, parsed, "{what}: {s:?}");
                };
                let p = documented_patterns();
                agree(&p.app_id, AppId::MAX_LEN, AppId::parse(s).is_ok(), "app_id");
                agree(&p.name, KeyName::MAX_CHARS, KeyName::parse(s).is_ok(), "key name");
                agree(&p.name, OrgName::MAX_CHARS, OrgName::parse(s).is_ok(), "organization name");
                agree(&p.email, Email::MAX_LEN, Email::parse(s).is_ok(), "email");
            }
        }
    }

    use regex::Regex;

    struct Documented {
        app_id: Regex,
        name: Regex,
        email: Regex,
    }

    /// The ECMA-262 patterns as the `regex` crate reads them (`\u00a0` is
    /// `\x{00a0}` there).
    fn documented_patterns() -> &'static Documented {
        static PATTERNS: std::sync::OnceLock<Documented> = std::sync::OnceLock::new();
        PATTERNS.get_or_init(|| {
            let compile = |ecma: String| {
                let escapes = Regex::new(r"\\u([0-9a-fA-F]{4})").expect("regex");
                Regex::new(&escapes.replace_all(&ecma, r"\x{$1}")).expect("a valid pattern")
            };
            Documented {
                app_id: compile(patterns::app_id()),
                name: compile(patterns::name()),
                email: compile(patterns::email()),
            }
        })
    }

    fn tricky_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => prop::sample::select(vec!['a', 'Z', '0', '9', '.', '-', '_', '@', ' ']),
            2 => prop::sample::select(vec![
                '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{0}', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}',
                '\u{a0}', '\u{1680}', '\u{2000}', '\u{200a}', '\u{2028}', '\u{3000}', '\u{200b}',
                '\u{200c}', '\u{200d}', '\u{200e}', '\u{202e}', '\u{2066}', '\u{feff}', '\u{61c}',
                '\u{180e}', '\u{2060}', '\u{115f}', '\u{2800}', '\u{3164}', '\u{ffa0}', 'é', 'İ', 'ß',
                '日', '😀',
            ]),
            1 => any::<char>(),
        ]
    }
}
