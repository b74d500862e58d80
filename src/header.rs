//! Reading bearer credentials from the `Authorization` header.
//!
//! One strict parser, documented here because Sanctum's own is permissive (it finds `Bearer ` anywhere
//! in the value and keeps the last one): the value is trimmed of spaces and tabs; the scheme is
//! `Bearer` in any letter case; then one or more spaces; then the token, which must be visible ASCII
//! with no spaces (RFC 6749 `VSCHAR`s: Sanctum's `|` is outside RFC 6750's `b64token`, so the stricter
//! grammar would reject every Sanctum token).
//!
//! | header                                   | outcome                                   |
//! |------------------------------------------|-------------------------------------------|
//! | absent, empty, or another scheme (`Basic`) | no credentials: 401 `Bearer`              |
//! | `Bearer` with no token, a malformed token, non-UTF-8 or non-ASCII bytes, a token over 1 KiB, several `Authorization` headers | invalid: 401 `Bearer error="invalid_token"` |
//! | `Bearer {id}\|{secret}`                  | looked up in the store                    |
//!
//! ```
//! use http::HeaderValue;
//! use tower_token_auth::header::{bearer_token, BearerCredentials};
//!
//! let value = HeaderValue::from_static("bearer   7|secret");
//! match bearer_token(Some(&value)) {
//!     BearerCredentials::Token(token) => assert_eq!(token.id(), 7),
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert!(matches!(bearer_token(None), BearerCredentials::Missing));
//! ```

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};

use crate::token::{parse_token, ParsedToken, MAX_TOKEN_LEN};

/// What the `Authorization` header holds.
#[derive(Debug, Clone, Copy)]
pub enum BearerCredentials<'a> {
    /// No bearer credentials (no header, an empty one, or another scheme).
    Missing,
    /// Bearer credentials that cannot be a valid token.
    Malformed,
    /// A well-formed `{id}|{secret}` token.
    Token(ParsedToken<'a>),
    /// A well-formed token without `{id}|` (legacy Sanctum); only looked up when legacy tokens are enabled.
    Legacy(LegacySecret<'a>),
}

/// The secret of a legacy, id-less token. `Debug` never prints it.
#[derive(Clone, Copy)]
pub struct LegacySecret<'a>(pub(crate) &'a [u8]);

impl<'a> LegacySecret<'a> {
    /// The secret bytes.
    pub fn secret(&self) -> &'a [u8] {
        self.0
    }
}

impl std::fmt::Debug for LegacySecret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegacySecret([redacted])")
    }
}

/// Reads the credentials from a request's headers. Several `Authorization` headers are malformed.
#[inline]
pub fn credentials(headers: &HeaderMap) -> BearerCredentials<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let first = values.next();
    if first.is_some() && values.next().is_some() {
        return BearerCredentials::Malformed;
    }
    bearer_token(first)
}

/// Parses one `Authorization` header value. Never panics, whatever the bytes.
pub fn bearer_token(value: Option<&HeaderValue>) -> BearerCredentials<'_> {
    let Some(value) = value else { return BearerCredentials::Missing };
    let bytes = trim(value.as_bytes());
    if bytes.is_empty() {
        return BearerCredentials::Missing;
    }
    // The scheme is everything up to the first space or tab; `bearer` has neither, so it is the scheme
    // exactly when the first six bytes spell it and the seventh, if any, is a space or a tab.
    let (Some(scheme), rest) = (bytes.first_chunk::<6>(), bytes.get(6..).unwrap_or_default()) else {
        return BearerCredentials::Missing;
    };
    // `| 0x20` lowercases ASCII letters, and no other byte turns into one of these lowercase letters.
    if scheme.map(|b| b | 0x20) != *b"bearer" || !matches!(rest.first(), None | Some(b' ' | b'\t')) {
        return BearerCredentials::Missing;
    }
    let token_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    if token_start == 0 {
        // "Bearer" alone, or followed by a tab.
        return BearerCredentials::Malformed;
    }
    let token = &rest[token_start..];
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !is_visible_ascii(token) {
        return BearerCredentials::Malformed;
    }
    // parse_token stops at the first `|`, a few bytes in; only a token it rejects is searched whole.
    match parse_token(token) {
        Some(parsed) => BearerCredentials::Token(parsed),
        None if token.contains(&b'|') => BearerCredentials::Malformed,
        None => BearerCredentials::Legacy(LegacySecret(token)),
    }
}

/// Whether every byte is a visible ASCII character (`0x21..=0x7e`).
///
/// This runs over every token on every request, so it checks eight bytes at a time in a `u64`, with no
/// early exit; the last eight bytes are checked as one word too, overlapping the one before.
#[inline]
fn is_visible_ascii(token: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // With every byte below 0x80 no addition carries into the next byte: adding 0x5f sets a byte's high
    // bit exactly when it is at least 0x21, adding 1 exactly when it is at least 0x7f.
    let outside = |word: u64| (word | !word.wrapping_add(0x5f * ONES) | word.wrapping_add(ONES)) & HIGH;
    let Some(last) = token.last_chunk::<8>() else {
        return token.iter().all(|b| (0x21..=0x7e).contains(b));
    };
    let words = token.chunks_exact(8).filter_map(|word| word.first_chunk::<8>());
    words.fold(outside(u64::from_ne_bytes(*last)), |found, word| found | outside(u64::from_ne_bytes(*word))) == 0
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &[u8]) -> BearerCredentials<'static> {
        let value: &'static HeaderValue = Box::leak(Box::new(HeaderValue::from_bytes(value).unwrap()));
        bearer_token(Some(value))
    }

    #[test]
    fn scheme_is_case_insensitive_and_spaces_are_trimmed() {
        for v in [&b"Bearer 1|abc"[..], b"bearer 1|abc", b"BEARER 1|abc", b"  Bearer    1|abc  ", b"\tBearer 1|abc\t"] {
            assert!(matches!(parse(v), BearerCredentials::Token(t) if t.id() == 1 && t.secret() == b"abc"));
        }
    }

    #[test]
    fn other_schemes_and_empty_values_are_missing_credentials() {
        for v in [&b""[..], b"   ", b"Basic dXNlcjpwYXNz", b"Token 1|abc", b"Bearer1|abc"] {
            assert!(matches!(parse(v), BearerCredentials::Missing), "{v:?}");
        }
    }

    #[test]
    fn malformed_bearer_values_are_invalid() {
        let long = format!("Bearer 1|{}", "a".repeat(MAX_TOKEN_LEN));
        for v in [
            &b"Bearer"[..],
            b"Bearer\t1|abc",
            b"Bearer 1|abc def",
            b"Bearer |",
            b"Bearer 0x1|abc",
            b"Bearer -1|abc",
            b"Bearer 1|",
            b"Bearer 1|ab\xffcd",
            long.as_bytes(),
        ] {
            assert!(matches!(parse(v), BearerCredentials::Malformed), "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn id_less_tokens_are_legacy() {
        assert!(matches!(parse(b"Bearer abcdef"), BearerCredentials::Legacy(s) if s.secret() == b"abcdef"));
    }

    #[test]
    fn several_authorization_headers_are_malformed() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer 1|a"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer 2|b"));
        assert!(matches!(credentials(&headers), BearerCredentials::Malformed));
    }
}
