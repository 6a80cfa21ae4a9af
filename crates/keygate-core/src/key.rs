//! The API key format.
//!
//! A key is `ak_` + 32 bytes from the OS CSPRNG written as a big-endian base62
//! number left-padded to 43 characters + the CRC32 (IEEE) of those first 46
//! characters as base62 left-padded to 6: 52 characters of `0-9A-Za-z` after
//! the prefix. The checksum lets us refuse typos and look-alikes without any
//! I/O, and lets secret scanners recognise a real key offline.
//!
//! Only the SHA-256 [`KeyDigest`] of a key is ever stored. [`ApiKeySecret`]
//! wraps the plain text: its `Debug` prints nothing of it, it has no
//! `Display`, and its memory is zeroed on drop.

use std::fmt;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const PREFIX: &str = "ak_";
/// What every invitation code starts with (a code is not a key, but is
/// masked like one wherever a request is logged or echoed).
pub const INVITATION_CODE_PREFIX: &str = "kgi_";
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Length of a whole key, prefix included.
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
const RANDOM_BYTES: usize = 32;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a well-formed key. Never carries the string itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("an API key is {KEY_LEN} characters long")]
    WrongLength,
    #[error("an API key starts with `{PREFIX}`")]
    WrongPrefix,
    #[error("an API key holds only the characters 0-9, A-Z and a-z after its prefix")]
    BadCharacter,
    #[error("the API key's checksum does not match; it was mistyped or truncated")]
    BadChecksum,
}

/// The plain text of an API key. Shown once, at creation; never logged.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ApiKeySecret(String);

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

impl ApiKeySecret {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut random = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut random)?;
        let mut key = String::with_capacity(KEY_LEN);
        key.push_str(PREFIX);
        push_base62(&mut random, BODY_LEN, &mut key);
        random.zeroize();
        let mut checksum = crc32fast::hash(key.as_bytes()).to_be_bytes();
        push_base62(&mut checksum, CHECKSUM_LEN, &mut key);
        Ok(Self(key))
    }

    /// Checks length, prefix, alphabet and checksum. No I/O.
    pub fn parse(candidate: &str) -> Result<Self, KeyFormatError> {
        if candidate.len() != KEY_LEN {
            return Err(KeyFormatError::WrongLength);
        }
        let bytes = candidate.as_bytes();
        if !bytes.starts_with(PREFIX.as_bytes()) {
            return Err(KeyFormatError::WrongPrefix);
        }
        // All ASCII from here on, so the split below is on a char boundary.
        if !bytes[PREFIX.len()..].iter().all(u8::is_ascii_alphanumeric) {
            return Err(KeyFormatError::BadCharacter);
        }
        let (head, checksum) = candidate.split_at(KEY_LEN - CHECKSUM_LEN);
        let mut expected = String::with_capacity(CHECKSUM_LEN);
        push_base62(&mut crc32fast::hash(head.as_bytes()).to_be_bytes(), CHECKSUM_LEN, &mut expected);
        if expected.as_bytes().ct_eq(checksum.as_bytes()).into() {
            Ok(Self(candidate.to_owned()))
        } else {
            Err(KeyFormatError::BadChecksum)
        }
    }

    /// The plain text, for the one response that hands it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest(Sha256::digest(self.0.as_bytes()).into())
    }

    /// A masked form such as `ak_Ab3d…x9Zq`: recognisable, never usable.
    pub fn preview(&self) -> String {
        let s = &self.0;
        format!("{PREFIX}{}…{}", &s[PREFIX.len()..PREFIX.len() + 4], &s[KEY_LEN - 4..])
    }
}

/// `text` with anything that looks like a key masked: `ak_` in any case
/// followed by the letters and digits of a key body. The one function every
/// logged line and every echoed message passes through. Text with nothing
/// to mask (the common case) is returned as it is, without a copy.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    // Where a key starts: `ak_` in any case, then a letter or digit. Found
    // from the underscores (SIMD-fast), as every logged line is scanned.
    let mut starts = memchr::memchr_iter(b'_', bytes).filter_map(|underscore| {
        let start = underscore.checked_sub(2)?;
        let prefix_matches = bytes[start..underscore].eq_ignore_ascii_case(b"ak");
        let body_follows = bytes.get(underscore + 1).is_some_and(u8::is_ascii_alphanumeric);
        (prefix_matches && body_follows).then_some(start)
    });
    let Some(first) = starts.next() else {
        return std::borrow::Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for start in std::iter::once(first).chain(starts) {
        if start < copied {
            continue;
        }
        out.push_str(&text[copied..start]);
        out.push_str("ak_[redacted]");
        let body = start + PREFIX.len();
        copied =
            bytes[body..].iter().position(|b| !b.is_ascii_alphanumeric()).map_or(bytes.len(), |n| body + n);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// Writes `number` (big-endian, consumed) in base62, left-padded to `width`.
fn push_base62(number: &mut [u8], width: usize, out: &mut String) {
    let mut digits = [0u8; BODY_LEN];
    for slot in digits[..width].iter_mut().rev() {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        *slot = ALPHABET[remainder as usize];
    }
    debug_assert!(number.iter().all(|&b| b == 0), "width too small");
    out.extend(digits[..width].iter().map(|&d| char::from(d)));
    digits.zeroize();
}

/// SHA-256 of a whole key: what the database stores and indexes.
#[derive(Clone, Copy, Eq)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl PartialEq for KeyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for KeyDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use proptest::prelude::*;

    fn base62_oracle(bytes: &[u8], width: usize) -> String {
        let digits = BigUint::from_bytes_be(bytes).to_radix_be(62);
        let text: String = digits.iter().map(|&d| char::from(ALPHABET[d as usize])).collect();
        format!("{text:0>width$}")
    }

    #[test]
    fn generated_keys_have_the_contract_shape() {
        let key = ApiKeySecret::generate().expect("os rng");
        let s = key.expose();
        assert_eq!(s.len(), 52);
        assert!(s.starts_with("ak_"));
        assert!(s[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(ApiKeySecret::parse(s).map(|k| k.digest()), Ok(key.digest()));
    }

    #[test]
    fn generated_keys_differ() {
        let a = ApiKeySecret::generate().expect("os rng");
        let b = ApiKeySecret::generate().expect("os rng");
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn debug_prints_nothing_of_the_secret() {
        let key = ApiKeySecret::generate().expect("os rng");
        let shown = format!("{key:?} {:?}", key.digest());
        assert!(!shown.contains(&key.expose()[3..10]));
        assert_eq!(format!("{key:?}"), "ApiKeySecret(<redacted>)");
    }

    #[test]
    fn redact_masks_every_key_in_a_text() {
        let key = ApiKeySecret::generate().expect("os rng");
        let text = format!("invalid type: string \"{}\", and {}.", key.expose(), key.expose());
        let shown = redact(&text);
        assert!(!shown.contains(&key.expose()[3..]));
        assert_eq!(shown, "invalid type: string \"ak_[redacted]\", and ak_[redacted].");
        assert_eq!(redact("no key here"), "no key here");
        assert!(matches!(redact("no key here"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(redact("AK_abc9 and Ak_Z"), "ak_[redacted] and ak_[redacted]");
        // Already masked, or a bare prefix: nothing to hide, left as it is.
        assert_eq!(redact("path=/apikey/ak_[redacted] ak_ ak_"), "path=/apikey/ak_[redacted] ak_ ak_");
        assert_eq!(redact("é ak_x é"), "é ak_[redacted] é");
    }

    #[test]
    fn preview_masks_the_middle() {
        let key = ApiKeySecret::generate().expect("os rng");
        let preview = key.preview();
        let s = key.expose();
        assert_eq!(preview, format!("ak_{}…{}", &s[3..7], &s[48..]));
        assert!(ApiKeySecret::parse(&preview).is_err());
    }

    #[test]
    fn known_vector_matches_the_reference_encoding() {
        // All-zero and all-ones bodies, checked against an independent bignum.
        for bytes in [[0u8; 32], [0xff; 32]] {
            let mut body = String::from(PREFIX);
            push_base62(&mut bytes.clone(), BODY_LEN, &mut body);
            assert_eq!(&body[3..], base62_oracle(&bytes, BODY_LEN));
            let mut checksum = String::new();
            push_base62(&mut crc32fast::hash(body.as_bytes()).to_be_bytes(), 6, &mut checksum);
            assert!(ApiKeySecret::parse(&(body + &checksum)).is_ok());
        }
    }

    #[test]
    fn malformed_keys_are_refused_with_a_reason() {
        assert_eq!(ApiKeySecret::parse("ak_not-a-real-key").err(), Some(KeyFormatError::WrongLength));
        let good = ApiKeySecret::generate().expect("os rng");
        let s = good.expose();
        let wrong_prefix = format!("bk_{}", &s[3..]);
        assert_eq!(ApiKeySecret::parse(&wrong_prefix).err(), Some(KeyFormatError::WrongPrefix));
        let bad_char = format!("{}-{}", &s[..10], &s[11..]);
        assert_eq!(ApiKeySecret::parse(&bad_char).err(), Some(KeyFormatError::BadCharacter));
        let mut unicode = s.to_owned();
        unicode.replace_range(10..12, "é");
        assert_eq!(ApiKeySecret::parse(&unicode).err(), Some(KeyFormatError::BadCharacter));
    }

    proptest! {
        #[test]
        fn base62_matches_bignum(bytes in proptest::array::uniform32(any::<u8>())) {
            let mut out = String::new();
            push_base62(&mut bytes.clone(), BODY_LEN, &mut out);
            prop_assert_eq!(out, base62_oracle(&bytes, BODY_LEN));
        }

        #[test]
        fn any_single_character_change_is_caught(index in 3usize..52, replacement in 0usize..62) {
            let key = ApiKeySecret::generate().expect("os rng");
            let original = key.expose().as_bytes()[index];
            let new = ALPHABET[replacement];
            prop_assume!(new != original);
            let mut changed = key.expose().as_bytes().to_vec();
            changed[index] = new;
            let changed = String::from_utf8(changed).expect("ascii");
            prop_assert_eq!(ApiKeySecret::parse(&changed).err(), Some(KeyFormatError::BadChecksum));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = ApiKeySecret::parse(&s);
        }

        #[test]
        fn swapped_neighbours_are_caught(index in 3usize..51) {
            let key = ApiKeySecret::generate().expect("os rng");
            let mut bytes = key.expose().as_bytes().to_vec();
            prop_assume!(bytes[index] != bytes[index + 1]);
            bytes.swap(index, index + 1);
            let swapped = String::from_utf8(bytes).expect("ascii");
            prop_assert!(ApiKeySecret::parse(&swapped).is_err());
        }
    }
}
