//! Bare hyper 1, no framework: the auth layer in front of a `service_fn`, served with hyper-util.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example hyper
//! ```
//!
//! It seeds a demo token for user 1 and prints `curl` lines to try.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_token_auth::{AuthenticatedToken, LogoutService, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};

type Body = BoxBody<Bytes, Infallible>;

/// Runs behind the layer: every request that gets here carries a valid token.
async fn route(request: Request<Incoming>, logout: LogoutService<MemoryStore>) -> Result<Response<Body>, Infallible> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/api/v1/me") => {
            let token = request.extensions().get::<AuthenticatedToken>().expect("set by TokenAuthLayer");
            Ok(text(StatusCode::OK, format!("hello, user {} ({})\n", token.user_id(), token.name())))
        }
        // The logout service uses the request's `AuthenticatedToken`, then revokes every token of the user.
        (_, "/api/v1/auth/logout") => Ok(logout.oneshot(request).await?.map(BodyExt::boxed)),
        _ => Ok(text(StatusCode::NOT_FOUND, "not found\n".to_owned())),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = MemoryStore::new();
    let demo = store.issue(NewToken::access(1u64).name("demo")).await?;

    let auth = TokenAuthLayer::new(store);
    let logout = auth.logout_service();
    let app = ServiceBuilder::new().layer(auth).service(service_fn(move |request| route(request, logout.clone())));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let token = demo.plain_text.expose();
    println!("listening on http://{}", listener.local_addr()?);
    println!("demo token (user 1): {token}");
    println!("  curl -i -H 'Authorization: Bearer {token}' http://127.0.0.1:3000/api/v1/me");
    println!("  curl -i -X POST -H 'Authorization: Bearer {token}' http://127.0.0.1:3000/api/v1/auth/logout");

    loop {
        let (stream, _) = listener.accept().await?;
        // hyper-util clones the whole stack per request: the layer shares its store through an `Arc`.
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            if let Err(error) = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await
            {
                eprintln!("connection error: {error}");
            }
        });
    }
}
