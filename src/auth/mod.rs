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

pub mod future;
mod layer;
mod service;
pub(crate) mod verify;

pub use layer::TokenAuthLayer;
pub use service::TokenAuth;
