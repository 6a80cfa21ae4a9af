//! What of a request may be shown: a path for the access log, a parser's
//! message in an error answer, with every credential masked.
//!
//! Masking is by shape, not by prefix: a path segment that holds a key in
//! any spelling (`ak_`, `kgi_`, in any case, percent-encoded or not), or
//! that looks like any other long random token (16 characters or more of a
//! token's alphabet, mixing letters and digits, or as varied as random
//! text), is written `[redacted]`. UUIDs (organizations, users) and
//! dotted names (app ids, versions) are kept.

/// A path as it may be logged: every segment that looks like a credential
/// (see the module's documentation) is masked.
pub fn redact(path: &str) -> std::borrow::Cow<'_, str> {
    if path.split('/').all(|segment| mask(segment).is_none()) {
        return std::borrow::Cow::Borrowed(path);
    }
    let masked: Vec<&str> = path.split('/').map(|segment| mask(segment).unwrap_or(segment)).collect();
    std::borrow::Cow::Owned(masked.join("/"))
}

/// A parser's message with every quoted word (between backticks or double
/// quotes, as serde quotes what it did not expect) that looks like a
/// secret masked as [`redact`] masks a path segment: an error answer never
/// repeats a key or a code, even to whoever sent it.
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    let mut rest = message;
    while let Some(at) = rest.find(['`', '"']) {
        let (part, tail) = rest.split_at(at);
        out.push_str(if quoted { mask(part).unwrap_or(part) } else { part });
        out.push_str(&tail[..1]);
        rest = &tail[1..];
        quoted = !quoted;
    }
    out.push_str(if quoted { mask(rest).unwrap_or(rest) } else { rest });
    out
}

/// What a path segment that looks like a key, an invitation code or
/// another token is written as; `None` for any other segment.
fn mask(segment: &str) -> Option<&'static str> {
    const MIN_LEN: usize = 16;
    if segment.len() < 3 {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    let lower = decoded.to_ascii_lowercase();
    if lower.contains(keygate_core::key::PREFIX) {
        return Some("ak_[redacted]");
    }
    if lower.contains(keygate_core::key::INVITATION_CODE_PREFIX) {
        return Some("kgi_[redacted]");
    }
    let token = decoded.trim();
    let uuid = token.len() == 36 && uuid::Uuid::try_parse(token).is_ok();
    if token.len() < MIN_LEN || uuid || token.contains('.') {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_+/=~".contains(&b)) {
        return None;
    }
    let mixed = token.bytes().any(|b| b.is_ascii_digit()) && token.bytes().any(|b| b.is_ascii_alphabetic());
    (mixed || entropy_bits_per_char(token) >= 4.0).then_some("[redacted]")
}

/// Shannon entropy of `text`'s bytes, in bits per byte.
fn entropy_bits_per_char(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in text.bytes() {
        counts[usize::from(b)] += 1;
    }
    let len = text.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / len).map(|p| -p * p.log2()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_paths_are_masked_by_shape() {
        let key = "ak_2LqSfvbRuSJxWQtoIYjkl0G9V6c6DmVkMxiJ96KTvtDU4NAYoc";
        assert_eq!(redact(&format!("/apikey/{key}/")), "/apikey/ak_[redacted]/");
        assert_eq!(redact("/apikey/%61k_abc/rotate"), "/apikey/ak_[redacted]/rotate");
        assert_eq!(redact("/apikey/%20AK_abc"), "/apikey/ak_[redacted]");
        assert_eq!(redact("/invites/KGI_0123456789abcdef0123"), "/invites/kgi_[redacted]");
        assert_eq!(redact("/x/4f9c2a7be81d03c65ab7e90d12f4c8aa"), "/x/[redacted]", "hex");
        assert_eq!(redact("/x/s3cr3t-t0k3n-for-verify"), "/x/[redacted]", "a token, letters and digits");
        assert_eq!(redact("/x/QmFzZTY0VG9rZW5IZXJlSXM"), "/x/[redacted]", "base64 letters");
        for kept in [
            "/apikey/12",
            "/app/com.example_app",
            "/livez",
            "/organization/members",
            "/organization/0190b1e2-7c3a-7d4e-9f00-0123456789ab",
            "/bundle/com.example.app/1.0.0-beta.1",
            "/organization-members-list",
        ] {
            assert_eq!(redact(kept), kept);
        }
    }

    #[test]
    fn quoted_secrets_in_a_parsers_message_are_masked_and_the_rest_kept() {
        let code = format!("{}AbCdEf0123456789AbCdEf0123456789", keygate_core::key::INVITATION_CODE_PREFIX);
        let message = format!("unknown field `{code}`, expected one of `key`, `name` at line 1");
        let redacted = redact_quoted(&message);
        assert!(!redacted.contains(&code), "{redacted}");
        assert!(redacted.contains("`kgi_[redacted]`, expected one of `key`, `name` at line 1"), "{redacted}");
        assert_eq!(redact_quoted("invalid type: \"read\""), "invalid type: \"read\"");
    }
}
