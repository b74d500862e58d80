//! Bare hyper 1: a real hyper-util server on loopback, driven by hyper-util's client.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_token_auth::{AuthenticatedToken, LogoutService, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};

type Body = BoxBody<Bytes, Infallible>;

const UNAUTHENTICATED: &str = r#"{"message":"Unauthenticated."}"#;

async fn route(request: Request<Incoming>, logout: LogoutService<MemoryStore>) -> Result<Response<Body>, Infallible> {
    if request.uri().path() == "/api/v1/auth/logout" {
        return Ok(logout.oneshot(request).await?.map(BodyExt::boxed));
    }
    let token = request.extensions().get::<AuthenticatedToken>().expect("set by TokenAuthLayer");
    let body = format!("hello, user {} ({})", token.user_id(), token.name());
    Ok(Response::new(Full::new(Bytes::from(body)).boxed()))
}

/// Serves the layer in front of `route` on loopback; returns the base URL.
async fn serve(store: MemoryStore) -> String {
    let auth = TokenAuthLayer::new(store);
    let logout = auth.logout_service();
    let app = ServiceBuilder::new().layer(auth).service(service_fn(move |request| route(request, logout.clone())));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await.unwrap();
            });
        }
    });
    format!("http://{addr}")
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(uri: String, method: Method, authorization: Option<&str>) -> (http::response::Parts, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    let response = client().request(request.body(Empty::new()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn valid_token_reaches_the_handler() {
    let store = MemoryStore::new();
    let issued = store.issue(NewToken::access(42u64).name("laptop")).await.unwrap();
    let base = serve(store).await;

    let bearer = format!("Bearer {}", issued.plain_text.expose());
    let (response, body) = send(format!("{base}/api/v1/me"), Method::GET, Some(&bearer)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(body, "hello, user 42 (laptop)");
}

#[tokio::test]
async fn missing_token_is_401_with_a_bare_bearer_challenge() {
    let base = serve(MemoryStore::new()).await;

    let (response, body) = send(format!("{base}/api/v1/me"), Method::GET, None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(response.headers[CONTENT_TYPE], "application/json");
    assert_eq!(body, UNAUTHENTICATED);
}

#[tokio::test]
async fn invalid_token_is_401_with_invalid_token() {
    let store = MemoryStore::new();
    let issued = store.issue(NewToken::access(1u64)).await.unwrap();
    let base = serve(store).await;

    let wrong_secret = format!("Bearer {}|not-the-secret", issued.record.id);
    for authorization in ["Bearer 999|unknown", wrong_secret.as_str(), "Bearer |", "Bearer not-a-sanctum-token"] {
        let (response, body) = send(format!("{base}/api/v1/me"), Method::GET, Some(authorization)).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{authorization}");
        assert_eq!(response.headers[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#, "{authorization}");
        assert_eq!(body, UNAUTHENTICATED);
    }
}

#[tokio::test]
async fn logout_then_every_token_of_the_user_is_401() {
    let store = MemoryStore::new();
    let laptop = store.issue(NewToken::access(7u64)).await.unwrap();
    let phone = store.issue(NewToken::refresh(7u64)).await.unwrap();
    let tablet = store.issue(NewToken::access(7u64)).await.unwrap();
    let base = serve(store.clone()).await;
    let laptop = format!("Bearer {}", laptop.plain_text.expose());
    let tablet = format!("Bearer {}", tablet.plain_text.expose());

    let (response, body) = send(format!("{base}/api/v1/auth/logout"), Method::POST, Some(&laptop)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(body, r#"{"message":"Successfully logged out"}"#);
    assert!(store.is_empty(), "refresh token {} survived", phone.record.id);

    for bearer in [&laptop, &tablet] {
        let (response, body) = send(format!("{base}/api/v1/me"), Method::GET, Some(bearer)).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers[WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
        assert_eq!(body, UNAUTHENTICATED);
    }
    let (response, _) = send(format!("{base}/api/v1/auth/logout"), Method::POST, Some(&laptop)).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}
