//! Ability (scope) checks: Sanctum's `CheckAbilities` and `CheckForAnyAbility` as tower layers.
//!
//! Place [`RequireAbilitiesLayer`] inside (after) [`TokenAuthLayer`](crate::TokenAuthLayer). A token
//! lacking the abilities gets `403` `{"message":"Invalid ability provided."}` with
//! `WWW-Authenticate: Bearer error="insufficient_scope"`; a request without an
//! [`AuthenticatedToken`] gets the `401` (as in Sanctum, where a missing token is an authentication
//! failure).
//!
//! ```
//! use http::{header::AUTHORIZATION, Request, Response, StatusCode};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_token_auth::{ability::RequireAbilitiesLayer, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let reader = store.issue(NewToken::access(1u64).abilities(["posts:read"])).await?;
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(TokenAuthLayer::new(store))
//!     .layer(RequireAbilitiesLayer::all(["posts:write"]))
//!     .service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) });
//!
//! let request = Request::post("/posts").header(AUTHORIZATION, format!("Bearer {}", reader.plain_text.expose())).body(())?;
//! let response = service.ready().await?.call(request).await?;
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticated::AuthenticatedToken;
use crate::body::{JsonBody, ResponseBody};
use crate::response::{is_grpc, Rejection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// Layer requiring the authenticated token to have abilities. See the [module docs](crate::ability).
#[derive(Clone)]
pub struct RequireAbilitiesLayer {
    abilities: Arc<[Box<str>]>,
    mode: Mode,
}

impl RequireAbilitiesLayer {
    /// Requires **every** listed ability (Sanctum's `abilities:` middleware).
    pub fn all<I, S>(abilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { abilities: collect(abilities), mode: Mode::All }
    }

    /// Requires **at least one** listed ability (Sanctum's `ability:` middleware).
    pub fn any<I, S>(abilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { abilities: collect(abilities), mode: Mode::Any }
    }

    fn allows(&self, token: &AuthenticatedToken) -> bool {
        match self.mode {
            Mode::All => self.abilities.iter().all(|a| token.can(a)),
            Mode::Any => self.abilities.iter().any(|a| token.can(a)),
        }
    }
}

fn collect<I: IntoIterator<Item = S>, S: Into<String>>(abilities: I) -> Arc<[Box<str>]> {
    abilities.into_iter().map(|a| a.into().into_boxed_str()).collect()
}

impl fmt::Debug for RequireAbilitiesLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireAbilitiesLayer").field("abilities", &self.abilities).field("mode", &self.mode).finish()
    }
}

impl<S> Layer<S> for RequireAbilitiesLayer {
    type Service = RequireAbilities<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAbilities { inner, layer: self.clone() }
    }
}

/// Middleware requiring abilities. See the [module docs](crate::ability).
#[derive(Clone)]
pub struct RequireAbilities<S> {
    inner: S,
    layer: RequireAbilitiesLayer,
}

#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl<S: tonic::server::NamedService> tonic::server::NamedService for RequireAbilities<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> RequireAbilities<S> {
    define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for RequireAbilities<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireAbilities").field("inner", &self.inner).field("layer", &self.layer).finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireAbilities<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let rejection = match request.extensions().get::<AuthenticatedToken>() {
            Some(token) if self.layer.allows(token) => None,
            Some(_) => {
                crate::observability::record::forbidden(1);
                Some(Rejection::InsufficientAbility)
            }
            None => Some(Rejection::MissingCredentials),
        };
        match rejection {
            None => ResponseFuture { kind: Kind::Inner { future: self.inner.call(request) } },
            Some(rejection) => ResponseFuture {
                kind: Kind::Rejected { response: Some(rejection.to_response(is_grpc(request.headers()))) },
            },
        }
    }
}

pin_project! {
    /// Response future of [`RequireAbilities`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<JsonBody>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => Poll::Ready(Ok(ready!(future.poll(cx))?.map(ResponseBody::inner))),
            KindProj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("future polled after completion").map(ResponseBody::rejection)))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}
