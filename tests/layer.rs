//! `TokenAuthLayer` and `LogoutService` end to end: a real hyper server on 127.0.0.1 driven by a real
//! hyper client, checking every status, body and `WWW-Authenticate` header of the contract.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_token_auth::clock::ManualClock;
use tower_token_auth::refresh::{NewPair, RefreshError, RefreshTokens};
use tower_token_auth::{testing, IssuedToken, LogoutScope, LogoutService};
use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStore, TokenStoreExt};

use support::faults::{serve_api, Fault, FaultyStore};
use support::http::{boxed, client, send, serve};

const UNAUTHENTICATED: &str = r#"{"message":"Unauthenticated."}"#;
const LOGGED_OUT: &str = r#"{"message":"Successfully logged out"}"#;

fn bearer(token: &tower_token_auth::IssuedToken) -> String {
    format!("Bearer {}", token.plain_text.expose())
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_the_authenticated_token() {
    let store = MemoryStore::new();
    let issued = store.issue(NewToken::access(42u64).name("laptop")).await.unwrap();
    let addr = serve_api(TokenAuthLayer::new(store)).await;
    let reply = send(&client(), addr, "GET", "/me", Some(&bearer(&issued))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, format!("user=42 token={} name=laptop", issued.record.id));
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_extra_spaces_are_accepted() {
    let store = MemoryStore::new();
    let issued = store.issue(NewToken::access(1u64)).await.unwrap();
    let addr = serve_api(TokenAuthLayer::new(store)).await;
    let c = client();
    for scheme in ["bearer ", "BEARER ", "Bearer    "] {
        let value = format!("{scheme}{}", issued.plain_text.expose());
        assert_eq!(send(&c, addr, "GET", "/", Some(&value)).await.status, StatusCode::OK, "{scheme:?}");
    }
}

#[tokio::test]
async fn missing_credentials_get_401_without_an_error_code() {
    let addr = serve_api(TokenAuthLayer::new(MemoryStore::new())).await;
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
    assert!(store.revoke_session(&1u64.into(), revoked.record.session_id).await.unwrap());
    let addr = serve_api(TokenAuthLayer::new(store).clock(clock)).await;
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
    let addr = serve_api(layer).await;
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
    let addr = serve_api(TokenAuthLayer::new(store.clone())).await;
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
    let addr = serve_api(TokenAuthLayer::new(MemoryStore::new())).await;
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
    let addr = serve_api(TokenAuthLayer::new(store.clone())).await;
    let reply = send(&client(), addr, "GET", "/api/v1/auth/logout", Some(&bearer(&token))).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("POST"));
    assert!(store.find(token.record.id).await.unwrap().is_some(), "a GET must not log out");
}

/// Sends `POST {path}` with `token` to a `LogoutService` and returns the status and body.
async fn logout_with(logout: &LogoutService<MemoryStore>, path: &str, token: &IssuedToken) -> (StatusCode, String) {
    let request =
        Request::post(path).header(http::header::AUTHORIZATION, bearer(token)).body(Full::<Bytes>::default()).unwrap();
    let response = logout.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn local_logout_logs_the_device_out_refresh_token_included() {
    let store = MemoryStore::new();
    let tokens = RefreshTokens::new(store.clone());
    let laptop = tokens.issue_pair(NewPair::new(7u64).name("laptop")).await.unwrap();
    let phone = tokens.issue_pair(NewPair::new(7u64).name("phone")).await.unwrap();
    let logout = LogoutService::new(store.clone()).scope(LogoutScope::Local);
    assert_eq!(logout_with(&logout, "/api/v1/auth/logout", &laptop.access).await, (StatusCode::OK, LOGGED_OUT.into()));
    assert!(store.find(laptop.access.record.id).await.unwrap().is_none());
    // The old `current_token_only()` left this refresh token alive, and it minted a new pair.
    assert!(matches!(tokens.exchange(&testing::bearer(&laptop.refresh)).await, Err(RefreshError::Invalid)));
    assert!(testing::works(&store, &phone.access).await && testing::works(&store, &phone.refresh).await);
}

#[tokio::test]
#[allow(deprecated)]
async fn the_deprecated_current_token_only_is_the_local_scope() {
    let store = MemoryStore::new();
    let tokens = RefreshTokens::new(store.clone());
    let laptop = tokens.issue_pair(NewPair::new(7u64)).await.unwrap();
    let logout = LogoutService::new(store.clone()).current_token_only();
    assert_eq!(logout.default_scope(), LogoutScope::Local);
    assert_eq!(logout_with(&logout, "/", &laptop.access).await.0, StatusCode::OK);
    assert!(!testing::works(&store, &laptop.refresh).await, "the device's refresh token is revoked too");
}

#[tokio::test]
async fn the_query_picks_global_local_or_others_and_anything_else_is_422() {
    let store = MemoryStore::new();
    let tokens = RefreshTokens::new(store.clone());
    let issue = || tokens.issue_pair(NewPair::new(7u64));
    let (a, b, c) = (issue().await.unwrap(), issue().await.unwrap(), issue().await.unwrap());
    let logout = LogoutService::new(store.clone()).scope_from_query();

    for bad in ["/x?scope=all", "/x?scope=", "/x?scope=local&scope=others", "/x?scope=LOCAL"] {
        let (status, body) = logout_with(&logout, bad, &a.access).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["errors"]["scope"][0], "The selected scope is invalid.", "{bad}");
        assert!(body["message"].is_string());
    }
    assert_eq!(store.list_sessions(&7u64.into()).await.unwrap().len(), 3, "a bad scope revokes nothing");

    assert_eq!(logout_with(&logout, "/x?scope=others", &a.access).await, (StatusCode::OK, LOGGED_OUT.into()));
    assert!(testing::works(&store, &a.access).await && testing::works(&store, &a.refresh).await);
    for gone in [&b, &c] {
        assert!(!testing::works(&store, &gone.access).await && !testing::works(&store, &gone.refresh).await);
    }
    let d = issue().await.unwrap();
    assert_eq!(logout_with(&logout, "/x?scope=local", &d.access).await.0, StatusCode::OK);
    assert!(testing::works(&store, &a.access).await, "local keeps the other sessions");
    assert!(!testing::works(&store, &d.refresh).await);
    let e = issue().await.unwrap();
    assert_eq!(logout_with(&logout, "/x?scope=global", &a.access).await.0, StatusCode::OK);
    assert!(store.list_sessions(&7u64.into()).await.unwrap().is_empty());
    assert!(!testing::works(&store, &e.access).await);
    // A bad scope with a dead token: authentication comes first, as in Laravel.
    assert_eq!(logout_with(&logout, "/x?scope=all", &a.access).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn grpc_requests_get_a_trailers_only_unauthenticated() {
    let addr = serve_api(TokenAuthLayer::new(MemoryStore::new())).await;
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

fn yielding() -> FaultyStore<MemoryStore> {
    let store = FaultyStore::new(MemoryStore::new());
    store.set(Fault::Yield);
    store
}

#[tokio::test]
async fn store_failure_is_the_documented_503() {
    let store = FaultyStore::new(MemoryStore::new());
    store.set(Fault::Fail);
    let addr = serve_api(TokenAuthLayer::new(store)).await;
    let reply =
        send(&client(), addr, "GET", "/", Some("Bearer 1|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, r#"{"message":"Authentication is temporarily unavailable. Please retry."}"#);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.header("www-authenticate"), None, "not an authentication failure");
}

#[tokio::test]
async fn slow_stores_authenticate_through_the_pending_path() {
    let store = yielding();
    let issued = store.issue(NewToken::access(5u64)).await.unwrap();
    let addr = serve_api(TokenAuthLayer::new(store.clone())).await;
    let c = client();
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&issued))).await.status, StatusCode::OK);
    let reply = send(&c, addr, "POST", "/api/v1/auth/logout", Some(&bearer(&issued))).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, LOGGED_OUT));
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&issued))).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn last_used_is_off_by_default_and_throttled_when_on() {
    let store = yielding();
    let issued = store.issue(NewToken::access(5u64)).await.unwrap();
    let addr = serve_api(TokenAuthLayer::new(store.clone())).await;
    let c = client();
    for _ in 0..3 {
        send(&c, addr, "GET", "/", Some(&bearer(&issued))).await;
    }
    assert_eq!(store.touches(), 0, "no write per request by default");

    let addr = serve_api(TokenAuthLayer::new(store.clone()).track_last_used(Duration::from_secs(300))).await;
    for _ in 0..20 {
        assert_eq!(send(&c, addr, "GET", "/", Some(&bearer(&issued))).await.status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.touches(), 1, "one write per token per interval");
    let recorded = store.find(issued.record.id).await.unwrap().unwrap().last_used_at;
    assert!(recorded.is_some());
}

#[tokio::test]
async fn legacy_id_less_tokens_only_when_enabled() {
    // Both sides opt in: the store keeps a digest index, the layer looks tokens up by digest.
    let store = MemoryStore::new().legacy_tokens(true);
    let issued = store.issue(NewToken::access(3u64)).await.unwrap();
    let secret = issued.plain_text.expose().split_once('|').unwrap().1.to_owned();
    let c = client();
    let off = serve_api(TokenAuthLayer::new(store.clone())).await;
    assert_eq!(send(&c, off, "GET", "/", Some(&format!("Bearer {secret}"))).await.status, StatusCode::UNAUTHORIZED);
    let on = serve_api(TokenAuthLayer::new(store).legacy_tokens(true)).await;
    assert_eq!(send(&c, on, "GET", "/", Some(&format!("Bearer {secret}"))).await.status, StatusCode::OK);
    assert_eq!(send(&c, on, "GET", "/", Some("Bearer not-a-known-secret")).await.status, StatusCode::UNAUTHORIZED);
    let plain = serve_api(TokenAuthLayer::new(MemoryStore::new()).legacy_tokens(true)).await;
    assert_eq!(send(&c, plain, "GET", "/", Some(&format!("Bearer {secret}"))).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn dyn_stores_work_behind_the_layer() {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let issued = store.issue(NewToken::access(11u64)).await.unwrap();
    let addr = serve_api(TokenAuthLayer::new(store)).await;
    assert_eq!(send(&client(), addr, "GET", "/", Some(&bearer(&issued))).await.status, StatusCode::OK);
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
