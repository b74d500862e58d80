//! Drives the whole `TokenAuthLayer` over a `MemoryStore` with arbitrary `Authorization` headers.
//!
//! Input: the first byte holds flags (bit 0: send `content-type: application/grpc`; bit 1: send no
//! `Authorization` header at all), the rest is split on `\n` into one `Authorization` value per line.
//! In each value `$A`, `$R` and `$E` stand for the plain text of a valid access token, a refresh
//! token and an expired access token, and `$I` for the access token's id, so the fuzzer can reach the
//! store and build near misses it could never guess.
//!
//! Checked for every input: the handler is reached (and the answer is 200) exactly when there is one
//! `Authorization` value and it is `Bearer` (any case) + spaces + the access token (leading zeros on the
//! id allowed); every other request gets 401 with `WWW-Authenticate` (or a gRPC `grpc-status: 16`); no
//! answer is ever 5xx.
//!
//! Run with `scripts/fuzz.sh` or `cargo +nightly fuzz run layer`.

#![no_main]

use std::convert::Infallible;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::{service_fn, Layer, ServiceExt};
use tower_token_auth::token::MAX_TOKEN_LEN;
use tower_token_auth::{MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    layer: TokenAuthLayer<MemoryStore>,
    id: String,
    secret: String,
    access: String,
    refresh: String,
    expired: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = MemoryStore::new();
    let (access, refresh, expired) = runtime.block_on(async {
        let access = store.issue(NewToken::access(1u64)).await.unwrap();
        let refresh = store.issue(NewToken::refresh(1u64)).await.unwrap();
        let past = SystemTime::now() - Duration::from_secs(60);
        let expired = store.issue(NewToken::access(1u64).expires_at(past)).await.unwrap();
        (access, refresh, expired)
    });
    let plain = access.plain_text.expose().to_owned();
    let (id, secret) = plain.split_once('|').unwrap();
    Fixture {
        runtime,
        layer: TokenAuthLayer::new(store),
        id: id.to_owned(),
        secret: secret.to_owned(),
        access: plain.clone(),
        refresh: refresh.plain_text.expose().to_owned(),
        expired: expired.plain_text.expose().to_owned(),
    }
});

fn expand(fixture: &Fixture, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let replacement = match (line[i], line.get(i + 1)) {
            (b'$', Some(b'A')) => Some(&fixture.access),
            (b'$', Some(b'R')) => Some(&fixture.refresh),
            (b'$', Some(b'E')) => Some(&fixture.expired),
            (b'$', Some(b'I')) => Some(&fixture.id),
            _ => None,
        };
        match replacement {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                i += 2;
            }
            None => {
                out.push(line[i]);
                i += 1;
            }
        }
    }
    out
}

/// Whether `value` must authenticate: `Bearer` + one or more spaces + `0*{id}|{secret}`, trimmed of
/// spaces and tabs, at most `MAX_TOKEN_LEN` bytes of token.
fn must_authenticate(fixture: &Fixture, value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    let text = text.trim_matches([' ', '\t']);
    let Some(scheme) = text.get(..6) else { return false };
    let rest = &text[6..];
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with(' ') {
        return false;
    }
    let token = rest.trim_start_matches(' ');
    let Some((id, secret)) = token.split_once('|') else { return false };
    token.len() <= MAX_TOKEN_LEN && id.trim_start_matches('0') == fixture.id && secret == fixture.secret
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let fixture = &*FIXTURE;
    let grpc = flags & 1 != 0;
    let mut request = Request::get("/").body(()).unwrap();
    if grpc {
        request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    }
    let mut values = Vec::new();
    if flags & 2 == 0 {
        for line in rest.split(|&b| b == b'\n') {
            // Bytes hyper refuses (control characters) never reach the layer.
            let Ok(value) = HeaderValue::from_bytes(&expand(fixture, line)) else { return };
            values.push(value);
        }
    }
    for value in &values {
        request.headers_mut().append(AUTHORIZATION, value.clone());
    }
    let expected = values.len() == 1 && must_authenticate(fixture, values[0].as_bytes());

    let service = fixture.layer.layer(service_fn(|_: Request<()>| async {
        let mut response = Response::new("reached");
        response.headers_mut().insert("x-reached", HeaderValue::from_static("1"));
        Ok::<_, Infallible>(response)
    }));
    let response = fixture.runtime.block_on(service.oneshot(request)).unwrap();
    let reached = response.headers().contains_key("x-reached");
    let status = response.status();

    assert!(!status.is_server_error(), "{status} for {values:?}");
    assert_eq!(reached, expected, "handler reached: {reached}, expected: {expected}, status {status}");
    if reached {
        assert_eq!(status, StatusCode::OK);
    } else if grpc {
        assert_eq!(status, StatusCode::OK, "gRPC rejections are trailers-only");
        assert_eq!(response.headers().get("grpc-status").map(HeaderValue::as_bytes), Some(&b"16"[..]));
    } else {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let challenge = response.headers().get(WWW_AUTHENTICATE).map(HeaderValue::as_bytes);
        assert!(
            challenge == Some(b"Bearer") || challenge == Some(br#"Bearer error="invalid_token""#),
            "WWW-Authenticate {challenge:?}"
        );
    }
});
