//! The scripted flow of the observability tests (`tests/observability.rs`, `tests/audit.rs`).

#![allow(dead_code)]

use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use tower::{service_fn, Service, ServiceExt};
use tower_layer::Layer;
use tower_token_auth::clock::{Clock, ManualClock};
use tower_token_auth::observability::password_changed;
use tower_token_auth::refresh::{NewPair, RefreshError, RefreshTokens};
use tower_token_auth::testing::bearer;
use tower_token_auth::{
    AuthenticatedToken, IssuedToken, LogoutScope, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt,
};

/// The flow the observability tests drive: 2 successes through the layer, 1 request without credentials, 1 expired token, 1 wrong
/// secret, 1 refresh reuse, and a logout of 3 tokens (a
/// third success: the logout service authenticates on its own). Returns every plain-text token it saw.
pub async fn scripted_flow() -> Vec<String> {
    let clock = ManualClock::new(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let store = MemoryStore::new();
    let tokens = RefreshTokens::new(store.clone()).clock(clock.clone());
    let layer = TokenAuthLayer::new(store.clone()).clock(clock.clone());
    let mut api = layer.layer(service_fn(|request: Request<()>| async move {
        let token = request.extensions().get::<AuthenticatedToken>().expect("authenticated");
        tracing::info!(user = %token.user_id(), "handler ran");
        Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    }));
    let mut call = |value: Option<String>| {
        let mut request = Request::get("/");
        if let Some(value) = value {
            request = request.header(AUTHORIZATION, value);
        }
        let request = request.body(()).unwrap();
        let future = api.call(request);
        async move { future.await.unwrap().status() }
    };
    let header = |issued: &IssuedToken| Some(format!("Bearer {}", issued.plain_text.expose()));

    let laptop = tokens.issue_pair(NewPair::new(7u64).name("laptop")).await.unwrap();
    let phone = tokens.issue_pair(NewPair::new(7u64).name("phone")).await.unwrap();
    let expiring = store.issue(NewToken::access(7u64).issued_at(clock.now()).expires_in(Duration::from_secs(1))).await;
    let expiring = expiring.unwrap();
    assert_eq!(call(header(&laptop.access)).await, StatusCode::OK);
    assert_eq!(call(header(&phone.access)).await, StatusCode::OK);
    assert_eq!(call(None).await, StatusCode::UNAUTHORIZED);
    clock.advance(Duration::from_secs(2));
    assert_eq!(call(header(&expiring)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(call(Some(format!("Bearer {}|wrong", laptop.access.record.id))).await, StatusCode::UNAUTHORIZED);

    // The phone's refresh token is exchanged, then presented again: reuse, the phone's session goes.
    let rotated = tokens.exchange(&bearer(&phone.refresh)).await.unwrap();
    assert!(matches!(tokens.exchange(&bearer(&phone.refresh)).await, Err(RefreshError::Reused { revoked: 2, .. })));

    // Logout everywhere from the laptop: its 2 tokens and the expired one.
    let logout = layer.logout_service().scope(LogoutScope::Global);
    let request = Request::post("/api/v1/auth/logout").header(AUTHORIZATION, header(&laptop.access).unwrap()).body(());
    assert_eq!(logout.oneshot(request.unwrap()).await.unwrap().status(), StatusCode::OK);
    password_changed(&7u64.into(), 0);

    [&laptop.access, &laptop.refresh, &phone.access, &phone.refresh, &rotated.access, &rotated.refresh, &expiring]
        .into_iter()
        .map(|issued| issued.plain_text.expose().to_owned())
        .collect()
}
