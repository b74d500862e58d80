//! What a new user writes first: each case here did not compile, or did the wrong thing, before. The
//! type-level ones are checked by compiling this file; the behaviour through a real axum server and a
//! real HTTP client.
#![cfg(feature = "axum")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::WWW_AUTHENTICATE;
use http::StatusCode;
use tokio::net::TcpListener;
// Everything a store implementer needs is at the root.
use tower_token_auth::session::{SessionLimit, WhenFull};
use tower_token_auth::user::{CurrentUser, CurrentUserLayer, LoadUser};
use tower_token_auth::{
    AuthenticatedToken, ExchangeOutcome, MemoryStore, NewPair, NewSecret, NewSession, NewToken, RefreshError,
    RefreshExchange, RefreshTokens, Rejection, SessionId, SessionSummary, SessionTokens, Sessions, StoreError,
    StoreErrorKind, StoreFuture, TokenAuthLayer, TokenDigest, TokenId, TokenKind, TokenRecord, TokenStore,
    TokenStoreExt, UserId,
};

async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[test]
fn the_obvious_into_response_call_works() {
    use axum::response::IntoResponse;
    // `Rejection` used to have an inherent `into_response(self, grpc)` that shadowed axum's (E0061).
    let response = Rejection::StoreUnavailable.into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(Rejection::InvalidToken.to_response(true).headers()["grpc-status"], "16");
}

#[test]
fn user_ids_convert_and_compare_the_way_sqlx_and_handlers_need() {
    let token = AuthenticatedToken::for_testing(tower_token_auth::testing::record(42u64));
    let _ = NewToken::access(token.user_id()); // `&UserId: Into<UserId>`
    let row_id: i64 = 42; // what sqlx hands out for a BIGINT
    assert_eq!(UserId::from(row_id), *token.user_id());
    assert!(*token.user_id() == 42);
    assert!(*token.user_id() == 42u64 && *token.user_id() == 42i32 && *token.user_id() == "42");
    assert!(token.user_id() == &42u64);
    assert_eq!(UserId::from(-1i64).to_string(), "-1");
    assert_eq!(format!("user {}", token.user_id()), "user 42");
    let json = serde_json::to_string(&UserId::from("01HXYZ")).unwrap();
    assert_eq!(json, "\"01HXYZ\"");
    assert_eq!(serde_json::from_str::<UserId>("7").unwrap(), 7u64);
    assert!(serde_json::from_str::<UserId>("-7").is_err());
}

#[cfg(feature = "uuid")]
#[test]
fn uuid_user_ids_convert() {
    let id = uuid::Uuid::from_u128(0x9b2f6c1e_3f5a_4c6b_9d8e_7a1b2c3d4e5f);
    assert_eq!(UserId::from(id), "9b2f6c1e-3f5a-4c6b-9d8e-7a1b2c3d4e5f");
}

/// A store without `Clone`, written against the root re-exports only. Before, the layer's builder
/// methods needed `St: Clone` and this failed with "trait bounds not satisfied".
struct NotClone(Mutex<HashMap<TokenId, TokenRecord>>, AtomicU64);

impl TokenStore for NotClone {
    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
        StoreFuture::ready(Ok(self.0.lock().unwrap().get(&id).cloned()))
    }
    fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
        let id = self.1.fetch_add(1, Ordering::Relaxed) + 1;
        let NewSecret { digest, expires_at } = session.access.expect("access tokens only in this test");
        let record = TokenRecord {
            digest,
            id,
            session_id: SessionId::new(id),
            kind: TokenKind::Access,
            expires_at,
            user_id: session.user_id,
            created_at: session.created_at,
            last_used_at: None,
            name: session.name,
            abilities: session.abilities,
        };
        self.0.lock().unwrap().insert(id, record);
        StoreFuture::ready(Ok(SessionTokens { session_id: SessionId::new(id), access: Some(id), refresh: None }))
    }
    fn exchange_refresh(&self, _: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
        StoreFuture::ready(Ok(ExchangeOutcome::Invalid))
    }
    fn list_sessions(&self, _: &UserId) -> StoreFuture<Vec<SessionSummary>> {
        StoreFuture::ready(Ok(Vec::new()))
    }
    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
        let mut tokens = self.0.lock().unwrap();
        let before = tokens.len();
        tokens.retain(|_, t| t.user_id != *user_id || !sessions.includes(t.session_id));
        StoreFuture::ready(Ok((before - tokens.len()) as u64))
    }
    fn prune_expired(&self, _: SystemTime, _: Option<SystemTime>) -> StoreFuture<u64> {
        StoreFuture::ready(Ok(0))
    }
    fn find_by_digest(&self, _: &TokenDigest) -> StoreFuture<Option<TokenRecord>> {
        StoreFuture::ready(Ok(None))
    }
}

#[tokio::test]
async fn a_store_without_clone_takes_every_builder_method() {
    let store = NotClone(Mutex::default(), AtomicU64::new(0));
    let issued = store.issue(NewToken::access(1u64)).await.unwrap();
    let layer = TokenAuthLayer::new(store)
        .max_age(Duration::from_secs(3600))
        .lookup_timeout(Some(Duration::from_secs(1)))
        .track_last_used(Duration::from_secs(60))
        .optional();
    let base = serve(
        Router::new().route("/", get(|t: AuthenticatedToken| async move { t.user_id().to_string() })).layer(layer),
    )
    .await;
    let body = reqwest::Client::new()
        .get(&base)
        .bearer_auth(issued.plain_text.expose())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "1");
}

/// `?` on the crate's errors in a handler returning `Result<_, Rejection>` (E0277 before).
async fn login(
    axum::extract::State(tokens): axum::extract::State<RefreshTokens<MemoryStore>>,
) -> Result<String, Rejection> {
    let pair = tokens.issue_pair(NewPair::new(1u64)).await?;
    Ok(pair.access.plain_text.expose().to_owned())
}

async fn refresh(
    axum::extract::State(tokens): axum::extract::State<RefreshTokens<MemoryStore>>,
    headers: http::HeaderMap,
) -> Result<String, RefreshError> {
    Ok(tokens.exchange(&headers).await?.refresh.plain_text.expose().to_owned())
}

async fn refresh_as_rejection(
    axum::extract::State(tokens): axum::extract::State<RefreshTokens<MemoryStore>>,
    headers: http::HeaderMap,
) -> Result<String, Rejection> {
    Ok(tokens.exchange(&headers).await?.refresh.plain_text.expose().to_owned())
}

async fn store_error(kind: axum::extract::Path<String>) -> Result<(), StoreError> {
    Err(match kind.as_str() {
        "timeout" => StoreError::timeout(),
        "limit" => StoreError::session_limit(3),
        _ => StoreError::invalid_input("a reserved ability"),
    })
}

#[tokio::test]
async fn store_and_refresh_errors_are_responses_with_the_right_status() {
    let tokens = RefreshTokens::new(MemoryStore::new()).session_limit(SessionLimit::new(1, WhenFull::Refuse));
    let base = serve(
        Router::new()
            .route("/login", post(login))
            .route("/refresh", post(refresh))
            .route("/refresh-as-rejection", post(refresh_as_rejection))
            .route("/store-error/{kind}", get(store_error))
            .with_state(tokens),
    )
    .await;
    let client = reqwest::Client::new();
    assert_eq!(client.post(format!("{base}/login")).send().await.unwrap().status(), StatusCode::OK);
    let refused = client.post(format!("{base}/login")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "the session limit refuses, it is not an outage");

    for path in ["/refresh", "/refresh-as-rejection"] {
        let missing = client.post(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(missing.headers()[WWW_AUTHENTICATE], "Bearer");
        let invalid = client.post(format!("{base}{path}")).bearer_auth("1|nope").send().await.unwrap();
        assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(invalid.headers()[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
        assert_eq!(invalid.text().await.unwrap(), r#"{"message":"Unauthenticated."}"#);
    }
    for (kind, status) in [
        ("timeout", StatusCode::SERVICE_UNAVAILABLE),
        ("limit", StatusCode::FORBIDDEN),
        ("invalid", StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let response = client.get(format!("{base}/store-error/{kind}")).send().await.unwrap();
        assert_eq!(response.status(), status, "{kind}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["message"].is_string(), "{kind}: {body}");
        assert!(!body.to_string().contains("reserved"), "causes are logged, not sent");
    }
}

async fn needs_a_token(token: AuthenticatedToken) -> String {
    format!("user {}", token.user_id())
}

#[tokio::test]
async fn a_guest_of_an_optional_layer_gets_401_and_a_missing_layer_500() {
    let store = MemoryStore::new();
    let issued = store.issue(NewToken::access(9u64)).await.unwrap();
    let base = serve(
        Router::new()
            .route("/optional", get(needs_a_token).route_layer(TokenAuthLayer::new(store).optional()))
            .route("/no-layer", get(needs_a_token)),
    )
    .await;
    let client = reqwest::Client::new();
    let guest = client.get(format!("{base}/optional")).send().await.unwrap();
    assert_eq!(guest.status(), StatusCode::UNAUTHORIZED, "a guest, not a missing layer");
    assert_eq!(guest.headers()[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(guest.text().await.unwrap(), r#"{"message":"Unauthenticated."}"#);
    let user = client.get(format!("{base}/optional")).bearer_auth(issued.plain_text.expose()).send().await.unwrap();
    assert_eq!(user.text().await.unwrap(), "user 9");
    let bug = client.get(format!("{base}/no-layer")).send().await.unwrap();
    assert_eq!(bug.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(bug.text().await.unwrap().contains("TokenAuthLayer"));
}

#[derive(Clone, Debug, serde::Serialize)]
struct User {
    id: u64,
    email: String,
}

struct Users;

impl LoadUser for Users {
    type User = User;
    type Error = String;

    async fn load_user(&self, token: &AuthenticatedToken) -> Result<Option<User>, String> {
        match token.user_id().as_u64() {
            Some(13) => Err("the user database is down".to_owned()),
            Some(id) if id < 10 => Ok(Some(User { id, email: format!("user{id}@example.com") })),
            _ => Ok(None),
        }
    }
}

async fn me(CurrentUser(user): CurrentUser<User>) -> Json<User> {
    Json(user)
}

async fn maybe_me(user: Option<CurrentUser<User>>) -> String {
    user.map_or_else(|| "guest".to_owned(), |CurrentUser(user)| user.email)
}

#[tokio::test]
async fn the_current_user_is_loaded_once_per_request_after_authentication() {
    let store = MemoryStore::new();
    let known = store.issue(NewToken::access(3u64)).await.unwrap();
    let deleted = store.issue(NewToken::access(11u64)).await.unwrap();
    let broken = store.issue(NewToken::access(13u64)).await.unwrap();
    let auth = TokenAuthLayer::new(store.clone());
    let base = serve(
        Router::new()
            .route("/me", get(me))
            .route_layer(tower::ServiceBuilder::new().layer(auth.clone()).layer(CurrentUserLayer::new(Users)))
            .route(
                "/maybe",
                get(maybe_me).route_layer(
                    tower::ServiceBuilder::new().layer(auth.optional()).layer(CurrentUserLayer::new(Users)),
                ),
            )
            .route("/forgot-the-layer", get(me)),
    )
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&tower_token_auth::IssuedToken>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token.plain_text.expose());
        }
        request.send()
    };
    let me: serde_json::Value = get("/me", Some(&known)).await.unwrap().json().await.unwrap();
    assert_eq!(me, serde_json::json!({"id": 3, "email": "user3@example.com"}));
    let gone = get("/me", Some(&deleted)).await.unwrap();
    assert_eq!(gone.status(), StatusCode::UNAUTHORIZED, "a token whose user is gone");
    assert_eq!(gone.headers()[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
    assert_eq!(get("/me", Some(&broken)).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get("/me", None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get("/maybe", None).await.unwrap().text().await.unwrap(), "guest");
    assert_eq!(get("/maybe", Some(&known)).await.unwrap().text().await.unwrap(), "user3@example.com");
    let bug = get("/forgot-the-layer", Some(&known)).await.unwrap();
    assert_eq!(bug.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(bug.text().await.unwrap().contains("CurrentUserLayer"));
}

#[tokio::test]
async fn handlers_can_be_unit_tested_without_a_layer_or_a_store() {
    let token =
        AuthenticatedToken::for_testing(tower_token_auth::testing::record(5u64).name("laptop").abilities(["a"]));
    assert_eq!(needs_a_token(token.clone()).await, "user 5");
    assert!(token.can("a") && !token.can("b"));
    assert_eq!(token.name(), "laptop");
    let err = StoreError::invalid_input("x");
    assert_eq!(err.kind(), StoreErrorKind::InvalidInput);
}
