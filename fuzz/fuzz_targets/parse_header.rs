//! Fuzzes the `Authorization` header parser (`header::bearer_token`) and the token parser
//! (`token::parse_token`) with arbitrary bytes, checking each against an independent reading of the
//! documented grammar (see `src/header.rs`), and that neither ever panics.
//!
//! Run with `scripts/fuzz.sh` or `cargo +nightly fuzz run parse_header`.

#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_token_auth::header::{bearer_token, BearerCredentials};
use tower_token_auth::token::{parse_token, MAX_TOKEN_LEN};

/// What `parse_token` must return, written from its documentation: split on the first `|`, the id is
/// one or more ASCII digits fitting a `u64` (leading zeros allowed), the secret is non-empty and not
/// `"0"`, and the whole token is at most `MAX_TOKEN_LEN` bytes.
fn expected_token(token: &[u8]) -> Option<(u64, &[u8])> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.splitn(2, |&b| b == b'|');
    let id = parts.next()?;
    let secret = parts.next()?;
    if id.is_empty() || !id.iter().all(u8::is_ascii_digit) || secret.is_empty() || secret == b"0" {
        return None;
    }
    let digits = std::str::from_utf8(id).ok()?.trim_start_matches('0');
    if digits.len() > 20 {
        return None;
    }
    let value: u128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    Some((u64::try_from(value).ok()?, secret))
}

#[derive(Debug, PartialEq)]
enum Expected<'a> {
    Missing,
    Malformed,
    Token(u64, &'a [u8]),
    Legacy(&'a [u8]),
}

/// What `bearer_token` must return, from the module docs of `header`.
fn expected_credentials(value: &[u8]) -> Expected<'_> {
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_blank(b));
    let Some(start) = start else { return Expected::Missing };
    let end = value.iter().rposition(|b| !is_blank(b)).map_or(start, |i| i + 1);
    let value = &value[start..end];
    let (scheme, rest) = value.split_at(value.iter().position(is_blank).unwrap_or(value.len()));
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Expected::Missing;
    }
    // One or more spaces (not tabs) separate the scheme from the token.
    let token = match rest.first() {
        Some(b' ') => {
            let spaces = rest.iter().take_while(|&&b| b == b' ').count();
            &rest[spaces..]
        }
        _ => return Expected::Malformed,
    };
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || token.iter().any(|b| !b.is_ascii_graphic()) {
        return Expected::Malformed;
    }
    if !token.contains(&b'|') {
        return Expected::Legacy(token);
    }
    match expected_token(token) {
        Some((id, secret)) => Expected::Token(id, secret),
        None => Expected::Malformed,
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_token(data).map(|t| (t.id(), t.secret()));
    assert_eq!(parsed, expected_token(data), "parse_token disagrees with its documentation");

    // Bytes hyper would refuse never reach the layer; everything else must parse as documented.
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let got = match bearer_token(Some(&value)) {
        BearerCredentials::Missing => Expected::Missing,
        BearerCredentials::Malformed => Expected::Malformed,
        BearerCredentials::Token(token) => {
            // Debug must never print the secret.
            let debug = format!("{token:?}");
            assert!(!debug.contains("secret: [") && debug.contains("[redacted]"), "{debug}");
            Expected::Token(token.id(), token.secret())
        }
        BearerCredentials::Legacy(secret) => Expected::Legacy(secret.secret()),
    };
    assert_eq!(got, expected_credentials(value.as_bytes()), "bearer_token disagrees with its documentation");
});
