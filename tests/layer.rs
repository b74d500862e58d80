//! `TokenAuthLayer` and `LogoutService` end to end: a real hyper server on 127.0.0.1 driven by a real
//! hyper client, checking every status, body and `WWW-Authenticate` header of the contract.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_token_auth::clock::ManualClock;
use tower_token_auth::token::{NewTokenRecord, TokenDigest};
use tower_token_auth::{
    AuthenticatedToken, MemoryStore, NewToken, StoreError, StoreFuture, TokenAuthLayer, TokenId, TokenRecord,
    TokenStore, TokenStoreExt, UserId,
};

use support::http::{boxed, client, send, serve, Body};

const UNAUTHENTICATED: &str = r#"{"message":"Unauthenticated."}"#;
const LOGGED_OUT: &str = r#"{"message":"Successfully logged out"}"#;

/// `/api/v1/auth/logout` -> the crate's LogoutService, anything else -> a protected echo of the user.
async fn start<St: TokenStore + Clone>(layer: TokenAuthLayer<St>) -> SocketAddr {
    let logout = layer.logout_service();
    let protected = ServiceBuilder::new().layer(layer).service_fn(|req: Request<Incoming>| async move {
        let token = req.extensions().get::<AuthenticatedToken>().expect("the layer inserts the token");
        let body = format!("user={} token={} name={}", token.user_id(), token.token_id(), token.name());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    serve(service_fn(move |req: Request<Incoming>| {
        let logout = logout.clone();
        let protected = protected.clone();
        async move {
            if req.uri().path() == "/api/v1/auth/logout" {
                let response = logout.oneshot(req).await?;
                Ok::<Response<Body>, Infallible>(response.map(boxed))
            } else {
                Ok(protected.oneshot(req).await?.map(boxed))
            }
        }
    }))
    .await
}

fn bearer(token: &tower_token_auth::IssuedToken) -> String {
    format!("Bearer {}", token.plain_text.expose())
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_the_authenticated_token() {
    let store = MemoryStore::new();
    let issued = store.issue(NewToken::access(42u64).name("laptop")).await.unwrap();
    let addr = start(TokenAuthLayer::new(store)).await;
    let reply = send(&client(), addr, "GET", "/me", Some(&bearer(&issued))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, format!("user=42 token={} name=laptop", issued.record.id));
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_extra_spaces_are_accepted() {
    let store = MemoryStore::new();
    let issued = store.issue(NewToken::access(1u64)).await.unwrap();
    let addr = start(TokenAuthLayer::new(store)).await;
    let c = client();
    for scheme in ["bearer ", "BEARER ", "Bearer    "] {
        let value = format!("{scheme}{}", issued.plain_text.expose());
        assert_eq!(send(&c, addr, "GET", "/", Some(&value)).await.status, StatusCode::OK, "{scheme:?}");
    }
}

#[tokio::test]
async fn missing_credentials_get_401_without_an_error_code() {
    let addr = start(TokenAuthLayer::new(MemoryStore::new())).await;
    let c = client();
    for authorization in [None, Some("Basic dXNlcjpwYXNz"), Some("")] {
        let reply = send(&c, addr, "GET", "/", authorization).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(reply.body, UNAUTHENTICATED);
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn every_bad_token_gets_the_same_invalid_token_401() {
    let store = MemoryStore::new();
    let clock = ManualClock::default();
    let now = tower_token_auth::clock::Clock::now(&clock);
    let good = store.issue(NewToken::access(1u64).issued_at(now)).await.unwrap();
    let expired = store.issue(NewToken::access(1u64).issued_at(now).expires_at(now)).await.unwrap();
    let refresh = store.issue(NewToken::refresh(1u64).issued_at(now)).await.unwrap();
    let revoked = store.issue(NewToken::access(1u64).issued_at(now)).await.unwrap();
    store.revoke(revoked.record.id).await.unwrap();
    let addr = start(TokenAuthLayer::new(store).clock(clock)).await;
    let c = client();
    let id = good.record.id;
    let cases = [
        format!("Bearer {id}|wrong-secret"),
        "Bearer 999999|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66".to_owned(),
        "Bearer".to_owned(),
        "Bearer |".to_owned(),
        format!("Bearer {id}|"),
        format!("Bearer -{id}|secret"),
        format!("Bearer {}", "9".repeat(30) + "|secret"),
        bearer(&expired),
        bearer(&refresh),
        bearer(&revoked),
    ];
    for value in &cases {
        let reply = send(&c, addr, "GET", "/", Some(value)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(reply.body, UNAUTHENTICATED, "{value}");
        assert_eq!(reply.header("www-authenticate"), Some(r#"Bearer error="invalid_token""#), "{value}");
    }
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&good))).await.status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_expire_by_their_own_expiry_and_by_max_age() {
    let store = MemoryStore::new();
    let clock = ManualClock::default();
    let now = tower_token_auth::clock::Clock::now(&clock);
    let short = store.issue(NewToken::access(1u64).issued_at(now).expires_in(Duration::from_secs(60))).await.unwrap();
    let forever = store.issue(NewToken::access(1u64).issued_at(now)).await.unwrap();
    let layer = TokenAuthLayer::new(store).clock(clock.clone()).max_age(Duration::from_secs(3600));
    let addr = start(layer).await;
    let c = client();
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&short))).await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(60));
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&short))).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&forever))).await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(3540));
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&forever))).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_revokes_every_token_of_the_user_including_refresh_tokens() {
    let store = MemoryStore::new();
    let laptop = store.issue(NewToken::access(7u64).name("laptop")).await.unwrap();
    let phone = store.issue(NewToken::access(7u64).name("phone")).await.unwrap();
    let refresh = store.issue(NewToken::refresh(7u64)).await.unwrap();
    let other = store.issue(NewToken::access(8u64)).await.unwrap();
    let addr = start(TokenAuthLayer::new(store.clone())).await;
    let c = client();

    let reply = send(&c, addr, "POST", "/api/v1/auth/logout", Some(&bearer(&laptop))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, LOGGED_OUT);
    assert_eq!(reply.header("content-type"), Some("application/json"));

    for token in [&laptop, &phone] {
        assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(token))).await.status, StatusCode::UNAUTHORIZED);
    }
    assert!(store.find(refresh.record.id).await.unwrap().is_none(), "refresh token survived logout");
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&other))).await.status, StatusCode::OK);

    let again = send(&c, addr, "POST", "/api/v1/auth/logout", Some(&bearer(&laptop))).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "logout is idempotent: the dead token gets 401");
    assert_eq!(again.body, UNAUTHENTICATED);
    assert_eq!(again.header("www-authenticate"), Some(r#"Bearer error="invalid_token""#));
}

#[tokio::test]
async fn logout_without_a_token_is_the_spec_401() {
    let addr = start(TokenAuthLayer::new(MemoryStore::new())).await;
    let reply = send(&client(), addr, "POST", "/api/v1/auth/logout", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, UNAUTHENTICATED);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    let reply = send(&client(), addr, "POST", "/api/v1/auth/logout", Some("Bearer 1|nope")).await;
    assert_eq!(reply.header("www-authenticate"), Some(r#"Bearer error="invalid_token""#));
}

#[tokio::test]
async fn logout_rejects_other_methods() {
    let store = MemoryStore::new();
    let token = store.issue(NewToken::access(1u64)).await.unwrap();
    let addr = start(TokenAuthLayer::new(store.clone())).await;
    let reply = send(&client(), addr, "GET", "/api/v1/auth/logout", Some(&bearer(&token))).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("POST"));
    assert!(store.find(token.record.id).await.unwrap().is_some(), "a GET must not log out");
}

#[tokio::test]
async fn current_token_logout_keeps_the_other_devices() {
    let store = MemoryStore::new();
    let laptop = store.issue(NewToken::access(7u64)).await.unwrap();
    let phone = store.issue(NewToken::access(7u64)).await.unwrap();
    let logout = tower_token_auth::LogoutService::new(store.clone()).current_token_only();
    let request = Request::post("/api/v1/auth/logout")
        .header(http::header::AUTHORIZATION, bearer(&laptop))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = logout.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(store.find(laptop.record.id).await.unwrap().is_none());
    assert!(store.find(phone.record.id).await.unwrap().is_some());
}

#[tokio::test]
async fn grpc_requests_get_a_trailers_only_unauthenticated() {
    let addr = start(TokenAuthLayer::new(MemoryStore::new())).await;
    let request = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("authorization", "Bearer 1|nope")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "16");
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-message"], "Unauthenticated.");
}

/// A store that is down, hangs, or counts calls.
#[derive(Clone)]
struct FaultyStore {
    mode: Fault,
    inner: MemoryStore,
    touches: Arc<AtomicUsize>,
}

#[derive(Clone, Copy)]
enum Fault {
    Down,
    Hangs,
    Slow,
}

impl TokenStore for FaultyStore {
    fn find(&self, id: TokenId) -> StoreFuture<Option<Arc<TokenRecord>>> {
        match self.mode {
            Fault::Down => StoreFuture::ready(Err(StoreError::backend("connection refused"))),
            Fault::Hangs => StoreFuture::new(std::future::pending()),
            Fault::Slow => {
                let found = self.inner.find(id);
                StoreFuture::new(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    found.await
                })
            }
        }
    }
    fn insert(&self, token: NewTokenRecord) -> StoreFuture<TokenId> {
        self.inner.insert(token)
    }
    fn revoke(&self, id: TokenId) -> StoreFuture<bool> {
        self.inner.revoke(id)
    }
    fn revoke_all_for_user(&self, user_id: &UserId) -> StoreFuture<u64> {
        match self.mode {
            Fault::Down => StoreFuture::ready(Err(StoreError::backend("connection refused"))),
            _ => self.inner.revoke_all_for_user(user_id),
        }
    }
    fn mark_refresh_rotated(&self, id: TokenId) -> StoreFuture<bool> {
        self.inner.mark_refresh_rotated(id)
    }
    fn prune_expired(&self, a: SystemTime, b: Option<SystemTime>) -> StoreFuture<u64> {
        self.inner.prune_expired(a, b)
    }
    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.inner.touch_last_used(id, at)
    }
    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<Arc<TokenRecord>>> {
        self.inner.find_by_digest(digest)
    }
}

fn faulty(mode: Fault) -> FaultyStore {
    FaultyStore { mode, inner: MemoryStore::new(), touches: Arc::default() }
}

#[tokio::test]
async fn a_failing_store_fails_closed_with_503() {
    let store = faulty(Fault::Down);
    let addr = start(TokenAuthLayer::new(store)).await;
    let c = client();
    let reply = send(&c, addr, "GET", "/", Some("Bearer 1|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.body.starts_with(r#"{"message":"#), "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("1"));
    // Malformed input is rejected without asking the (broken) store.
    assert_eq!(send(&c, addr, "GET", "/", Some("Bearer nope|x")).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_hanging_store_is_answered_503_after_the_lookup_timeout() {
    let layer = TokenAuthLayer::new(faulty(Fault::Hangs)).lookup_timeout(Some(Duration::from_millis(100)));
    let addr = start(layer).await;
    let started = std::time::Instant::now();
    let reply = send(&client(), addr, "GET", "/", Some("Bearer 1|secret")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn logout_fails_closed_when_the_store_cannot_revoke() {
    let store = faulty(Fault::Down);
    let logout = tower_token_auth::LogoutService::new(store);
    let request = Request::post("/api/v1/auth/logout")
        .header(http::header::AUTHORIZATION, "Bearer 1|secret")
        .body(Full::<Bytes>::default())
        .unwrap();
    assert_eq!(logout.oneshot(request).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn slow_stores_authenticate_through_the_pending_path() {
    let store = faulty(Fault::Slow);
    let issued = store.issue(NewToken::access(5u64)).await.unwrap();
    let addr = start(TokenAuthLayer::new(store.clone())).await;
    let c = client();
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&issued))).await.status, StatusCode::OK);
    let reply = send(&c, addr, "POST", "/api/v1/auth/logout", Some(&bearer(&issued))).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, LOGGED_OUT));
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&issued))).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn last_used_is_off_by_default_and_throttled_when_on() {
    let store = faulty(Fault::Slow);
    let issued = store.issue(NewToken::access(5u64)).await.unwrap();
    let addr = start(TokenAuthLayer::new(store.clone())).await;
    let c = client();
    for _ in 0..3 {
        send(&c, addr, "GET", "/", Some(&bearer(&issued))).await;
    }
    assert_eq!(store.touches.load(Ordering::SeqCst), 0, "no write per request by default");

    let addr = start(TokenAuthLayer::new(store.clone()).track_last_used(Duration::from_secs(300))).await;
    for _ in 0..20 {
        assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&issued))).await.status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.touches.load(Ordering::SeqCst), 1, "one write per token per interval");
    let recorded = store.find(issued.record.id).await.unwrap().unwrap().last_used_at;
    assert!(recorded.is_some());
}

#[tokio::test]
async fn legacy_id_less_tokens_only_when_enabled() {
    let store = MemoryStore::new();
    let issued = store.issue(NewToken::access(3u64)).await.unwrap();
    let secret = issued.plain_text.expose().split_once('|').unwrap().1.to_owned();
    let c = client();
    let off = start(TokenAuthLayer::new(store.clone())).await;
    assert_eq!(send(&c, off, "GET", "/", Some(&format!("Bearer {secret}"))).await.status, StatusCode::UNAUTHORIZED);
    let on = start(TokenAuthLayer::new(store).legacy_tokens(true)).await;
    assert_eq!(send(&c, on, "GET", "/", Some(&format!("Bearer {secret}"))).await.status, StatusCode::OK);
}

#[tokio::test]
async fn dyn_stores_work_behind_the_layer() {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let issued = store.issue(NewToken::access(11u64)).await.unwrap();
    let addr = start(TokenAuthLayer::new(store)).await;
    assert_eq!(send(&client(), addr, "GET", "/", Some(&bearer(&issued))).await.status, StatusCode::OK);
}

/// Revocation is immediate: once logout returned 200, no request that starts afterwards is let in,
/// while many requests with the user's tokens are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_started_after_logout_is_authenticated() {
    for store_is_slow in [false, true] {
        let memory = MemoryStore::new();
        let slow = FaultyStore { mode: Fault::Slow, inner: memory.clone(), touches: Arc::default() };
        let mut tokens = Vec::new();
        for device in 0..4 {
            tokens.push(memory.issue(NewToken::access(77u64).name(format!("device {device}"))).await.unwrap());
        }
        let addr = if store_is_slow {
            start(TokenAuthLayer::new(slow)).await
        } else {
            start(TokenAuthLayer::new(memory.clone())).await
        };
        let logged_out_at = Arc::new(tokio::sync::OnceCell::<std::time::Instant>::new());
        let mut tasks = Vec::new();
        for worker in 0..16 {
            let value = bearer(&tokens[worker % tokens.len()]);
            let logged_out_at = Arc::clone(&logged_out_at);
            tasks.push(tokio::spawn(async move {
                let c = client();
                let mut leaks = 0;
                for _ in 0..150 {
                    let started = std::time::Instant::now();
                    let status = send(&c, addr, "GET", "/", Some(&value)).await.status;
                    if status == StatusCode::OK && logged_out_at.get().is_some_and(|at| started > *at) {
                        leaks += 1;
                    }
                }
                leaks
            }));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let reply = send(&client(), addr, "POST", "/api/v1/auth/logout", Some(&bearer(&tokens[0]))).await;
        assert_eq!(reply.status, StatusCode::OK);
        logged_out_at.set(std::time::Instant::now()).unwrap();
        let mut leaks = 0;
        for t in tasks {
            leaks += t.await.unwrap();
        }
        assert_eq!(leaks, 0, "requests authenticated after logout returned (slow store: {store_is_slow})");
        assert!(memory.is_empty());
    }
}

/// A store that panics, synchronously or while polled.
#[derive(Clone)]
struct PanickingStore {
    while_polled: bool,
}

impl TokenStore for PanickingStore {
    fn find(&self, _: TokenId) -> StoreFuture<Option<Arc<TokenRecord>>> {
        if self.while_polled {
            StoreFuture::new(async { panic!("store bug while polled") })
        } else {
            panic!("store bug in find")
        }
    }
    fn insert(&self, _: NewTokenRecord) -> StoreFuture<TokenId> {
        unimplemented!()
    }
    fn revoke(&self, _: TokenId) -> StoreFuture<bool> {
        unimplemented!()
    }
    fn revoke_all_for_user(&self, _: &UserId) -> StoreFuture<u64> {
        unimplemented!()
    }
    fn mark_refresh_rotated(&self, _: TokenId) -> StoreFuture<bool> {
        unimplemented!()
    }
    fn prune_expired(&self, _: SystemTime, _: Option<SystemTime>) -> StoreFuture<u64> {
        unimplemented!()
    }
}

#[tokio::test]
async fn a_panicking_store_is_answered_503_and_the_server_keeps_serving() {
    for while_polled in [false, true] {
        let addr = start(TokenAuthLayer::new(PanickingStore { while_polled })).await;
        let c = client();
        for _ in 0..3 {
            let reply = send(&c, addr, "GET", "/", Some("Bearer 1|secret")).await;
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "while polled: {while_polled}");
        }
        assert_eq!(send(&c, addr, "GET", "/", None).await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn optional_auth_lets_guests_through_but_still_rejects_bad_tokens() {
    let store = MemoryStore::new();
    let issued = store.issue(NewToken::access(5u64)).await.unwrap();
    let service = ServiceBuilder::new().layer(TokenAuthLayer::new(store).optional()).service_fn(
        |req: Request<Incoming>| async move {
            let who = match req.extensions().get::<AuthenticatedToken>() {
                Some(token) => format!("user {}", token.user_id()),
                None => "guest".to_owned(),
            };
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who))))
        },
    );
    let addr = serve(service_fn(move |req| {
        let service = service.clone();
        async move { Ok::<_, Infallible>(service.oneshot(req).await?.map(boxed)) }
    }))
    .await;
    let c = client();
    let guest = send(&c, addr, "GET", "/", None).await;
    assert_eq!((guest.status, guest.body.as_str()), (StatusCode::OK, "guest"));
    let user = send(&c, addr, "GET", "/", Some(&bearer(&issued))).await;
    assert_eq!((user.status, user.body.as_str()), (StatusCode::OK, "user 5"));
    let bad = send(&c, addr, "GET", "/", Some("Bearer 1|forged")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.header("www-authenticate"), Some(r#"Bearer error="invalid_token""#));
}
