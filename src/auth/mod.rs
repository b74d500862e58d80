//! [`TokenAuthLayer`]: authenticate requests with bearer tokens from a [`TokenStore`](crate::TokenStore).
//!
//! The layer reads `Authorization: Bearer {id}|{secret}`, finds the token by id, compares SHA-256 of the
//! secret with the stored digest in constant time, checks kind and expiry, and passes the request on
//! with an [`AuthenticatedToken`](crate::AuthenticatedToken) in its extensions. Everything else is
//! answered without calling the inner service:
//!
//! | outcome | HTTP response | gRPC (`content-type: application/grpc*`) |
//! |---|---|---|
//! | no credentials | `401`, `WWW-Authenticate: Bearer`, `{"message":"Unauthenticated."}` | `grpc-status: 16` |
//! | bad, unknown, expired, revoked or refresh token | `401`, `WWW-Authenticate: Bearer error="invalid_token"`, same body | `grpc-status: 16` |
//! | store failed or timed out | `503`, `Retry-After: 1`, JSON message | `grpc-status: 14` |
//!
//! Malformed headers are rejected before the store is touched. The inner service's body type is kept;
//! responses carry a [`ResponseBody`](crate::body::ResponseBody) that is either that body or the
//! rejection.
//!
//! ```
//! use http::{header::AUTHORIZATION, Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt, Service};
//! use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let issued = store.issue(NewToken::access(42u64)).await?;
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(TokenAuthLayer::new(store))
//!     .service_fn(|request: Request<String>| async move {
//!         let token = request.extensions().get::<AuthenticatedToken>().expect("set by the layer");
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello, user {}", token.user_id())))
//!     });
//!
//! let request = Request::get("/").header(AUTHORIZATION, format!("Bearer {}", issued.plain_text.expose())).body(String::new())?;
//! let response = service.ready().await?.call(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let request = Request::get("/").header(AUTHORIZATION, "Bearer 1|wrong").body(String::new())?;
//! let response = service.ready().await?.call(request).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

//!
//! # Browsers and CORS
//!
//! A single-page app on another origin than its API sends a CORS preflight (`OPTIONS` with
//! `Access-Control-Request-Method`, and **no** `Authorization` header) before each authenticated call.
//! Put tower-http's `CorsLayer` **outside** (before) this layer, so it answers preflights itself, and
//! adds its headers to every response, the layer's `401`/`403`/`503` included, so that scripts can read
//! the `{"message": ...}` body. Expose `WWW-Authenticate` so they can read the challenge too.
//!
//! If a preflight does reach this layer (the order is the other way round), it is answered like any
//! request without credentials: `401`, never passed to the inner service unauthenticated. The browser
//! then blocks the real request; the first such preflight is logged as a warning naming `CorsLayer`.
//!
//! ```
//! use http::{header, HeaderValue, Method, Request, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_http::cors::CorsLayer;
//! use tower_token_auth::{MemoryStore, TokenAuthLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let cors = CorsLayer::new()
//!     .allow_origin(HeaderValue::from_static("https://app.example.com"))
//!     .allow_methods([Method::GET, Method::POST, Method::DELETE])
//!     .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
//!     .expose_headers([header::WWW_AUTHENTICATE]);
//! let api = ServiceBuilder::new()
//!     .layer(cors) // outside: answers preflights, decorates rejections
//!     .layer(TokenAuthLayer::new(MemoryStore::new()))
//!     .service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) });
//!
//! let preflight = Request::options("/api/v1/user")
//!     .header(header::ORIGIN, "https://app.example.com")
//!     .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
//!     .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
//!     .body(())?;
//! let response = api.clone().oneshot(preflight).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let unauthenticated = Request::get("/api/v1/user").header(header::ORIGIN, "https://app.example.com").body(())?;
//! let response = api.oneshot(unauthenticated).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
//! # Ok(())
//! # }
//! ```

pub mod future;
mod layer;
mod service;
pub(crate) mod verify;

pub use layer::TokenAuthLayer;
pub use service::TokenAuth;
