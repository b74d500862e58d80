//! Laravel Sanctum-compatible personal access tokens for tower: bearer authentication and
//! "log out everywhere", for hyper, axum and tonic.
//!
//! - [`TokenAuthLayer`] validates `Authorization: Bearer {id}|{secret}` against a [`TokenStore`] and
//!   puts an [`AuthenticatedToken`] in the request extensions. Tokens are byte-compatible with Laravel
//!   Sanctum's personal access tokens: the store keeps only SHA-256 of the secret, compared in
//!   constant time.
//! - [`LogoutService`] implements `POST /api/v1/auth/logout`: every token of the user, access and
//!   refresh, is revoked before it answers `200 {"message":"Successfully logged out"}`.
//! - Stores: [`MemoryStore`] (built in), `RedisStore` (feature `redis`), `SqlStore` on Sanctum's own
//!   `personal_access_tokens` table (features `postgres`, `mysql`, `sqlite`).
//! - [`SessionListService`] and [`RevokeSessionService`] are the device list and "revoke that device"
//!   endpoints (see [`devices`]).
//! - [`refresh::RefreshTokens`] issues access/refresh pairs with rotation and reuse detection;
//!   [`ability::RequireAbilitiesLayer`] checks abilities (scopes).
//!
//! Failures are closed: a failing store answers `503`, never lets a request through; no input makes the
//! layer panic or answer `500`.
//!
//! # Quick start
//!
//! ```
//! use http::{header::AUTHORIZATION, Request, Response, StatusCode};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_token_auth::{AuthenticatedToken, LogoutService, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let issued = store.issue(NewToken::access(42u64).name("laptop")).await?;
//! let bearer = format!("Bearer {}", issued.plain_text.expose());
//!
//! let layer = TokenAuthLayer::new(store.clone());
//! let mut api = ServiceBuilder::new().layer(layer.clone()).service_fn(|req: Request<()>| async move {
//!     let token = req.extensions().get::<AuthenticatedToken>().unwrap();
//!     Ok::<_, std::convert::Infallible>(Response::new(format!("user {}", token.user_id())))
//! });
//! let response = api.ready().await?.call(Request::get("/").header(AUTHORIZATION, &bearer).body(())?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let logout = layer.logout_service();
//! let response = logout.oneshot(Request::post("/api/v1/auth/logout").header(AUTHORIZATION, &bearer).body(())?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = api.ready().await?.call(Request::get("/").header(AUTHORIZATION, &bearer).body(())?).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(unsafe_code)]

/// `get_ref`, `get_mut` and `into_inner` for a middleware whose wrapped service is its `inner: S` field.
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes the middleware, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub mod ability;
pub mod auth;
mod authenticated;
pub mod body;
pub mod cache;
pub mod clock;
pub mod devices;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod family;
pub mod header;
pub mod logout;
pub mod observability;
#[cfg(feature = "utoipa")]
#[cfg_attr(docsrs, doc(cfg(feature = "utoipa")))]
pub mod openapi;
pub mod refresh;
pub mod response;
pub mod session;
pub mod store;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
pub mod token;
pub mod user;

pub use auth::{TokenAuth, TokenAuthLayer};
pub use authenticated::AuthenticatedToken;
pub use devices::{RevokeSessionService, SessionListService};
pub use logout::{LogoutScope, LogoutService};
pub use refresh::{NewPair, RefreshError, RefreshTokens, TokenPair};
pub use response::Rejection;
pub use session::NewToken;
pub use session::{
    ExchangeOutcome, NewSecret, NewSession, RefreshExchange, SessionId, SessionLimit, SessionSummary, SessionTokens,
    Sessions,
};
#[cfg(feature = "redis")]
pub use store::RedisStore;
#[cfg(feature = "sql")]
pub use store::SqlStore;
pub use store::{MemoryStore, StoreError, StoreErrorKind, StoreFuture, TokenStore, TokenStoreExt};
pub use token::{Abilities, IssuedToken, TokenDigest, TokenId, TokenKind, TokenName, TokenRecord, UserId};

/// Every Rust block of the README, compiled (and run unless `no_run`) as a doctest, so the README cannot
/// rot. Only with every feature, as the README uses them all.
#[cfg(all(doctest, feature = "full", feature = "test-util"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
