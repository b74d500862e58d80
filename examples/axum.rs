//! An axum 0.8 API with public and protected routes, an ability-gated route and logout.
//!
//! Run it with:
//!
//! ```text
//! RUST_LOG=tower_token_auth=info cargo run --example axum --features axum
//! ```
//!
//! It seeds a demo token for user 1 and prints `curl` lines to try. `ADDR=127.0.0.1:8080` listens
//! elsewhere (port 0 picks a free one).

use axum::routing::{get, post, post_service};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_token_auth::ability::RequireAbilitiesLayer;
use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};

/// Public: greets whoever is behind the token on protected routes, a guest here.
async fn home(token: Option<AuthenticatedToken>) -> String {
    match token {
        Some(token) => format!("hello, user {}\n", token.user_id()),
        None => "hello, guest\n".to_owned(),
    }
}

/// Protected: the extractor gives the token the layer validated.
async fn me(token: AuthenticatedToken) -> Json<Value> {
    Json(json!({
        "user_id": token.user_id().to_string(),
        "token_id": token.token_id(),
        "name": token.name(),
        "abilities": token.abilities().iter().collect::<Vec<_>>(),
    }))
}

/// Protected and ability-gated: only tokens with `posts:write` get here.
async fn create_post(token: AuthenticatedToken) -> String {
    format!("post created by user {}\n", token.user_id())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt::init();

    let store = MemoryStore::new();
    let demo = store.issue(NewToken::access(1u64).name("demo").abilities(["posts:read"])).await?;
    let auth = TokenAuthLayer::new(store.clone());

    let app = Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/posts", post(create_post).route_layer(RequireAbilitiesLayer::all(["posts:write"])))
        .route("/api/v1/auth/logout", post_service(auth.logout_service()))
        // `route_layer`, not `layer`: only the routes above need a token, and unknown paths stay 404.
        .route_layer(auth.clone())
        // Guests and users alike: an optional layer lets requests without credentials through (a bad
        // token still gets 401), and the handler sees `Some(token)` or `None`.
        .route("/api/v1/greeting", get(home).route_layer(auth.optional()))
        .route("/", get(home));

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let token = demo.plain_text.expose();
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    println!("demo token (user 1, abilities [\"posts:read\"]): {token}");
    println!("  curl http://{addr}/api/v1/greeting                                   # guest");
    println!("  curl -H 'Authorization: Bearer {token}' http://{addr}/api/v1/greeting # user 1");
    println!("  curl -H 'Authorization: Bearer {token}' http://{addr}/api/v1/me");
    println!("  curl -X POST -H 'Authorization: Bearer {token}' http://{addr}/api/v1/posts   # 403");
    println!("  curl -X POST -H 'Authorization: Bearer {token}' http://{addr}/api/v1/auth/logout");

    axum::serve(listener, app).await?;
    Ok(())
}
