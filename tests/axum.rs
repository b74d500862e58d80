//! axum 0.8 integration: a real `axum::serve` on loopback, driven by a real HTTP client (reqwest).
#![cfg(feature = "axum")]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::{get, post, post_service, Route};
use axum::Router;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::StatusCode;
use tokio::net::TcpListener;
use tower::{Layer, Service};
use tower_token_auth::ability::RequireAbilitiesLayer;
use tower_token_auth::extract::MissingAuthLayer;
use tower_token_auth::{
    AuthenticatedToken, LogoutService, MemoryStore, NewToken, TokenAuth, TokenAuthLayer, TokenStore, TokenStoreExt,
};

const UNAUTHENTICATED: &str = r#"{"message":"Unauthenticated."}"#;

// What `Router::layer` and `Router::route_layer` require of a layer in axum 0.8 (note `Sync`).
fn assert_router_layer<L>()
where
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service: Service<Request> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Response: IntoResponse + 'static,
    <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
}

// What `Router::route_service` and `post_service` require of a service.
fn assert_route_service<T>()
where
    T: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    T::Response: IntoResponse + 'static,
    T::Future: Send + 'static,
{
}

const _: fn() = || {
    assert_router_layer::<TokenAuthLayer<MemoryStore>>();
    assert_router_layer::<TokenAuthLayer<Arc<dyn TokenStore>>>();
    assert_router_layer::<RequireAbilitiesLayer>();
    assert_route_service::<LogoutService<MemoryStore>>();
    assert_route_service::<LogoutService<Arc<dyn TokenStore>>>();
    // The middleware itself, around axum's `Route`, is a valid route service too.
    assert_route_service::<TokenAuth<Route, MemoryStore>>();
    assert_route_service::<TokenAuth<Route, Arc<dyn TokenStore>>>();
};

async fn me(token: AuthenticatedToken) -> String {
    format!("user {} ({})", token.user_id(), token.name())
}

async fn hello(token: Option<AuthenticatedToken>) -> String {
    match token {
        Some(token) => format!("hello, user {}", token.user_id()),
        None => "hello, guest".to_owned(),
    }
}

async fn create_post(token: AuthenticatedToken) -> (StatusCode, String) {
    (StatusCode::CREATED, format!("post by user {}", token.user_id()))
}

fn app<St: TokenStore + Clone>(store: St) -> Router {
    let auth = TokenAuthLayer::new(store);
    Router::new()
        .route("/me", get(me))
        .route("/member/hello", get(hello))
        .route("/posts", post(create_post).route_layer(RequireAbilitiesLayer::all(["posts:write"])))
        .route("/api/v1/auth/logout", post_service(auth.logout_service()))
        .route_layer(auth)
        // Public routes: added after `route_layer`, so the layer does not cover them.
        .route("/hello", get(hello))
        .route("/forgot-the-layer", get(me))
}

async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn bearer(store: &impl TokenStore, token: NewToken) -> String {
    let issued = store.issue(token).await.unwrap();
    format!("Bearer {}", issued.plain_text.expose())
}

#[tokio::test]
async fn extractor_sees_the_token_behind_the_layer() {
    let store = MemoryStore::new();
    let laptop = bearer(&store, NewToken::access(42u64).name("laptop")).await;
    let base = serve(app(store)).await;
    let client = reqwest::Client::new();

    let response = client.get(format!("{base}/me")).header(AUTHORIZATION, &laptop).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "user 42 (laptop)");

    let response = client.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(response.text().await.unwrap(), UNAUTHENTICATED);

    let response = client.get(format!("{base}/me")).header(AUTHORIZATION, "Bearer 1|wrong").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
}

#[tokio::test]
async fn optional_extractor_is_none_on_a_public_route_and_some_behind_the_layer() {
    let store = MemoryStore::new();
    let token = bearer(&store, NewToken::access(7u64)).await;
    let base = serve(app(store)).await;
    let client = reqwest::Client::new();

    let response = client.get(format!("{base}/hello")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "hello, guest");

    // The public route does not run the layer, so even a valid token is not looked at there.
    let response = client.get(format!("{base}/hello")).header(AUTHORIZATION, &token).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "hello, guest");

    let response = client.get(format!("{base}/member/hello")).header(AUTHORIZATION, &token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "hello, user 7");
}

#[tokio::test]
async fn extractor_without_the_layer_answers_500_naming_the_layer() {
    let store = MemoryStore::new();
    let token = bearer(&store, NewToken::access(1u64)).await;
    let base = serve(app(store)).await;

    let response = reqwest::Client::new()
        .get(format!("{base}/forgot-the-layer"))
        .header(AUTHORIZATION, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.text().await.unwrap();
    assert_eq!(body, MissingAuthLayer::MESSAGE);
    assert!(body.contains("TokenAuthLayer"), "{body}");
}

#[tokio::test]
async fn route_layer_keeps_unknown_paths_404() {
    let store = MemoryStore::new();
    let base = serve(app(store.clone())).await;
    let client = reqwest::Client::new();

    let response = client.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // For contrast: `Router::layer` also wraps the fallback, so an unknown path becomes 401.
    let layered = Router::new().route("/me", get(me)).layer(TokenAuthLayer::new(store));
    let base = serve(layered).await;
    let response = client.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ability_route_answers_403_without_the_ability() {
    let store = MemoryStore::new();
    let reader = bearer(&store, NewToken::access(3u64).abilities(["posts:read"])).await;
    let writer = bearer(&store, NewToken::access(3u64).abilities(["posts:read", "posts:write"])).await;
    let base = serve(app(store)).await;
    let client = reqwest::Client::new();

    let response = client.post(format!("{base}/posts")).header(AUTHORIZATION, &reader).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()[WWW_AUTHENTICATE], r#"Bearer error="insufficient_scope""#);
    assert_eq!(response.text().await.unwrap(), r#"{"message":"Invalid ability provided."}"#);

    let response = client.post(format!("{base}/posts")).header(AUTHORIZATION, &writer).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.text().await.unwrap(), "post by user 3");

    // The auth layer runs first: no token is a 401, not a 403.
    let response = client.post(format!("{base}/posts")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_revokes_every_token_of_the_user() {
    let store = MemoryStore::new();
    let laptop = bearer(&store, NewToken::access(9u64)).await;
    let phone = bearer(&store, NewToken::access(9u64)).await;
    let other_user = bearer(&store, NewToken::access(10u64)).await;
    let base = serve(app(store)).await;
    let client = reqwest::Client::new();

    let response =
        client.post(format!("{base}/api/v1/auth/logout")).header(AUTHORIZATION, &laptop).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), r#"{"message":"Successfully logged out"}"#);

    for token in [&laptop, &phone] {
        let response = client.get(format!("{base}/me")).header(AUTHORIZATION, token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
        assert_eq!(response.text().await.unwrap(), UNAUTHENTICATED);
    }
    let response =
        client.post(format!("{base}/api/v1/auth/logout")).header(AUTHORIZATION, &laptop).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = client.get(format!("{base}/me")).header(AUTHORIZATION, &other_user).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn dyn_store_serves_like_a_concrete_one() {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let token = bearer(&store, NewToken::access(5u64).name("cli")).await;
    let base = serve(app(store)).await;

    let response = reqwest::Client::new().get(format!("{base}/me")).header(AUTHORIZATION, &token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "user 5 (cli)");
}

/// `examples/axum.rs`, run for real: its greeting route serves guests and users alike (it used to sit
/// under the mandatory layer, so guests got 401), and a bad token there is still a 401.
#[tokio::test]
async fn the_axum_example_serves_guests_on_its_optional_route() {
    use support::example_server;
    let binary = example_server::example_binary("axum");
    let server = example_server::ExampleServer::start_binary(&binary, None, &[], &[("ADDR", "127.0.0.1:0")]);
    let token = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let printed = server.printed();
            if let Some(token) = printed.iter().find_map(|line| line.split("): ").nth(1)) {
                break token.to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "no demo token printed: {printed:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let guest = client.get(format!("{base}/api/v1/greeting")).send().await.unwrap();
    assert_eq!(guest.status(), StatusCode::OK);
    assert_eq!(guest.text().await.unwrap(), "hello, guest\n");
    let user = client.get(format!("{base}/api/v1/greeting")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(user.text().await.unwrap(), "hello, user 1\n");
    let bad = client.get(format!("{base}/api/v1/greeting")).bearer_auth("1|wrong").send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let me = client.get(format!("{base}/api/v1/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED, "the other routes still need a token");
}
