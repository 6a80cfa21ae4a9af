//! How a forwarded target's path is judged: origin-form only, decoded
//! once segment by segment, and refused wherever an upstream could read it
//! otherwise (see [`super`]'s documentation).

use std::borrow::Cow;

use super::judged::BadForward;

/// The path and the query of an origin-form target.
pub(super) fn split_target(target: &str) -> Result<(&str, Option<&str>), BadForward> {
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
pub(super) fn path_segments(path: &str) -> Result<Vec<Cow<'_, str>>, BadForward> {
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
        if encodes_ascii_or_lower_hex(raw) {
            return Err(BadForward::ambiguous(
                "a percent-encoded ASCII character, or lower-case hex digits in an encoding, which an \
                 upstream that routes on the raw path reads otherwise",
            ));
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
pub(super) fn is_default_ignorable(c: char) -> bool {
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

/// Whether `raw` percent-encodes an ASCII character, or spells an
/// encoding with lower-case hex: one upstream decodes `%70ublic` to
/// `public` and `a%3Ab` to `a:b` (which a rule may name), another (a WHATWG
/// URL's pathname, a raw-path router) routes on them as they are, and
/// tells `%c3%a9` from `%C3%A9`. Only non-ASCII characters, in upper-case
/// hex, are decoded.
fn encodes_ascii_or_lower_hex(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && (w[1].is_ascii_lowercase()
                || w[2].is_ascii_lowercase()
                || std::str::from_utf8(&w[1..])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .is_some_and(|b| b.is_ascii()))
    })
}

/// One segment, percent-decoded once; a `%` not followed by two hex digits,
/// or bytes that are not UTF-8, are refused.
pub(super) fn decode(raw: &str) -> Result<Cow<'_, str>, BadForward> {
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

/// Whether a case-insensitive upstream could read `c` as something else
/// than keygate does: a letter outside ASCII whose lower or upper case is
/// not one letter of its own (`İ` lowers to `i̇`, an `i` to Java), is
/// ASCII (the Kelvin sign), or whose upper case lowers to another letter
/// (`ı`, `ſ`).
pub(super) fn folds_two_ways(c: char) -> bool {
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
