//! axum extractors (feature `axum`): take [`AuthenticatedToken`] as a handler argument.
//!
//! Behind [`TokenAuthLayer`](crate::TokenAuthLayer), a handler takes `token: AuthenticatedToken`. The
//! layer has already answered every unauthenticated request, so the extractor only reads the request
//! extensions. If it runs where no layer did, that is a bug in the router, not a client error: it answers
//! [`MissingAuthLayer`], a `500` naming the layer, and logs it.
//!
//! `Option<AuthenticatedToken>` never rejects: `Some` behind the layer, `None` elsewhere, for handlers
//! shared by public and protected routes. Behind an [optional](crate::TokenAuthLayer::optional) layer, a
//! guest reaching a handler that takes a plain `AuthenticatedToken` gets the layer's usual `401`
//! ([`TokenRejection::Guest`]), not the `500`.
//!
//! Add the layer with [`route_layer`](https://docs.rs/axum/0.8/axum/struct.Router.html#method.route_layer)
//! rather than `layer`, so unknown paths stay `404` instead of becoming `401`.
//!
//! ```
//! use axum::{routing::get, Router};
//! use http::{header::AUTHORIZATION, Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};
//!
//! async fn me(token: AuthenticatedToken) -> String {
//!     format!("user {}", token.user_id())
//! }
//!
//! async fn hello(token: Option<AuthenticatedToken>) -> String {
//!     match token {
//!         Some(token) => format!("hello, user {}", token.user_id()),
//!         None => "hello, guest".to_owned(),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let issued = store.issue(NewToken::access(42u64)).await?;
//!
//! let app = Router::new()
//!     .route("/me", get(me))
//!     .route_layer(TokenAuthLayer::new(store))
//!     .route("/hello", get(hello));
//!
//! let request = Request::get("/me")
//!     .header(AUTHORIZATION, format!("Bearer {}", issued.plain_text.expose()))
//!     .body(axum::body::Body::empty())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = app.clone().oneshot(Request::get("/me").body(axum::body::Body::empty())?).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//!
//! let response = app.clone().oneshot(Request::get("/hello").body(axum::body::Body::empty())?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = app.oneshot(Request::get("/nowhere").body(axum::body::Body::empty())?).await?;
//! assert_eq!(response.status(), StatusCode::NOT_FOUND);
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::authenticated::{is_guest, AuthenticatedToken};
use crate::refresh::RefreshError;
use crate::response::Rejection;
use crate::store::StoreError;

impl<S: Send + Sync> FromRequestParts<S> for AuthenticatedToken {
    type Rejection = TokenRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<AuthenticatedToken>() {
            Some(token) => Ok(token.clone()),
            None if is_guest(&parts.extensions) => Err(TokenRejection::Guest),
            None => {
                tracing::error!(path = %parts.uri.path(), "{MissingAuthLayer}");
                Err(TokenRejection::MissingAuthLayer(MissingAuthLayer))
            }
        }
    }
}

/// Rejection of the [`AuthenticatedToken`] extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRejection {
    /// No [`TokenAuthLayer`](crate::TokenAuthLayer) ran for this route: a routing bug, `500`
    /// ([`MissingAuthLayer`]).
    MissingAuthLayer(MissingAuthLayer),
    /// An [optional](crate::TokenAuthLayer::optional) layer let the request through without credentials,
    /// and this handler needs a token: the layer's own `401`, `WWW-Authenticate: Bearer`,
    /// `{"message":"Unauthenticated."}`. (Take `Option<AuthenticatedToken>` to serve guests.)
    Guest,
}

impl fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRejection::MissingAuthLayer(missing) => fmt::Display::fmt(missing, f),
            TokenRejection::Guest => f.write_str("the request has no credentials and this route needs a token"),
        }
    }
}

impl std::error::Error for TokenRejection {}

impl IntoResponse for TokenRejection {
    fn into_response(self) -> Response {
        match self {
            TokenRejection::MissingAuthLayer(missing) => missing.into_response(),
            TokenRejection::Guest => Rejection::MissingCredentials.into_response(),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthenticatedToken {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<AuthenticatedToken>().cloned())
    }
}

/// Rejection of the [`AuthenticatedToken`] extractor on a route that
/// [`TokenAuthLayer`](crate::TokenAuthLayer) does not cover: `500 Internal Server Error`, plain text.
///
/// Not "unauthenticated": the layer answers those with `401` before any handler runs. Reaching this means
/// the router is missing the layer (or the handler sits outside its `route_layer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingAuthLayer;

impl MissingAuthLayer {
    /// The response body.
    pub const MESSAGE: &'static str = "Missing request extension: `AuthenticatedToken` was not found. \
        Is `tower_token_auth::TokenAuthLayer` applied to this route (e.g. with `Router::route_layer`)?";
}

impl fmt::Display for MissingAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for MissingAuthLayer {}

impl IntoResponse for MissingAuthLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, Self::MESSAGE).into_response()
    }
}

/// A [`Rejection`] is a response in handlers too: `return Err(Rejection::InvalidToken)` answers exactly
/// what the layer would (HTTP form; gRPC callers are served by the layer itself).
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.to_response(false).map(axum_core::body::Body::new)
    }
}

/// A store error as a handler's answer: the [`Rejection`] it converts into (`503` for a failing store,
/// `403` for a refused login at the session limit, `500` for a bug in the caller).
impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        Rejection::from(self).into_response()
    }
}

/// A failed exchange as a handler's answer: `401` for a missing, invalid or reused refresh token (with the
/// right `WWW-Authenticate`), `503` for a failing store.
impl IntoResponse for RefreshError {
    fn into_response(self) -> Response {
        Rejection::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_axum_responses() {
        let response = IntoResponse::into_response(Rejection::InvalidToken);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
    }

    #[test]
    fn missing_layer_is_a_500_naming_the_layer() {
        let response = MissingAuthLayer.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(MissingAuthLayer::MESSAGE.contains("TokenAuthLayer"));
        assert_eq!(MissingAuthLayer.to_string(), MissingAuthLayer::MESSAGE);
    }
}
