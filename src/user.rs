//! Loading the app's user once per request, after authentication (optional).
//!
//! The token knows only the user's id ([`AuthenticatedToken::user_id`]). Apps that want their own user
//! type in handlers implement [`LoadUser`] and put a [`CurrentUserLayer`] inside (after) the
//! [`TokenAuthLayer`](crate::TokenAuthLayer): each authenticated request loads the user once, and
//! handlers read a [`CurrentUser`] from the request extensions (or, with the `axum` feature, take it as an
//! extractor). The shape follows axum-login's backend.
//!
//! | the loader returns | answer |
//! |---|---|
//! | `Ok(Some(user))` | the request goes on with `CurrentUser(user)` |
//! | `Ok(None)` (the user was deleted) | `401` `invalid_token`, as Sanctum treats a token whose owner is gone |
//! | `Err(_)`, or it panics | `503`, like a failing token store (logged, never sent) |
//!
//! Requests without a token (behind an [optional](crate::TokenAuthLayer::optional) layer) pass through
//! without a `CurrentUser`.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use http::{header::AUTHORIZATION, Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_token_auth::user::{CurrentUser, CurrentUserLayer, LoadUser};
//! use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};
//!
//! #[derive(Clone, Debug)]
//! struct User {
//!     name: String,
//! }
//!
//! struct Users(HashMap<u64, User>);
//!
//! impl LoadUser for Users {
//!     type User = User;
//!     type Error = std::convert::Infallible;
//!
//!     async fn load_user(&self, token: &AuthenticatedToken) -> Result<Option<User>, Self::Error> {
//!         Ok(token.user_id().as_u64().and_then(|id| self.0.get(&id)).cloned())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let alice = store.issue(NewToken::access(1u64)).await?;
//! let ghost = store.issue(NewToken::access(2u64)).await?; // no such user any more
//! let users = Users(HashMap::from([(1, User { name: "alice".into() })]));
//!
//! let mut app = ServiceBuilder::new()
//!     .layer(TokenAuthLayer::new(store))
//!     .layer(CurrentUserLayer::new(users))
//!     .service_fn(|request: Request<()>| async move {
//!         let CurrentUser(user) = request.extensions().get::<CurrentUser<User>>().cloned().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello, {}", user.name)))
//!     });
//!
//! let request = Request::get("/").header(AUTHORIZATION, format!("Bearer {}", alice.plain_text.expose())).body(())?;
//! assert_eq!(app.ready().await?.call(request).await?.status(), StatusCode::OK);
//! let request = Request::get("/").header(AUTHORIZATION, format!("Bearer {}", ghost.plain_text.expose())).body(())?;
//! assert_eq!(app.ready().await?.call(request).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticated::AuthenticatedToken;
use crate::body::ResponseBody;
use crate::response::{is_grpc, Rejection};

/// Loads the app's user for an authenticated token. Implement it for your user repository.
///
/// `async fn` works in the impl (the returned future must be `Send`, which it is unless it holds
/// something like an `Rc` across an `.await`).
pub trait LoadUser: Send + Sync + 'static {
    /// The app's user type, handed to handlers as [`CurrentUser<User>`].
    type User: Clone + Send + Sync + 'static;
    /// The loader's error (a database error, say). Logged with `Display`; the client gets `503`.
    type Error: fmt::Display + Send + 'static;

    /// The user `token` belongs to, or `None` when there is none any more.
    fn load_user(
        &self,
        token: &AuthenticatedToken,
    ) -> impl Future<Output = Result<Option<Self::User>, Self::Error>> + Send;
}

/// The app's user, loaded by [`CurrentUserLayer`], in the request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentUser<U>(pub U);

/// Layer that loads the user of each authenticated request with a [`LoadUser`]. Place it inside the
/// [`TokenAuthLayer`](crate::TokenAuthLayer). See the [module docs](self).
pub struct CurrentUserLayer<L> {
    loader: Arc<L>,
}

impl<L: LoadUser> CurrentUserLayer<L> {
    /// Loads users with `loader`.
    pub fn new(loader: L) -> Self {
        Self { loader: Arc::new(loader) }
    }
}

impl<L> Clone for CurrentUserLayer<L> {
    fn clone(&self) -> Self {
        Self { loader: Arc::clone(&self.loader) }
    }
}

impl<L> fmt::Debug for CurrentUserLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentUserLayer").finish_non_exhaustive()
    }
}

impl<S, L> Layer<S> for CurrentUserLayer<L> {
    type Service = CurrentUserService<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        CurrentUserService { inner, loader: Arc::clone(&self.loader) }
    }
}

/// Middleware built by [`CurrentUserLayer`].
pub struct CurrentUserService<S, L> {
    inner: S,
    loader: Arc<L>,
}

impl<S, L> CurrentUserService<S, L> {
    define_inner_service_accessors!();
}

impl<S: Clone, L> Clone for CurrentUserService<S, L> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), loader: Arc::clone(&self.loader) }
    }
}

impl<S: fmt::Debug, L> fmt::Debug for CurrentUserService<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentUserService").field("inner", &self.inner).finish_non_exhaustive()
    }
}

#[cfg(feature = "tonic")]
impl<S: tonic::server::NamedService, L> tonic::server::NamedService for CurrentUserService<S, L> {
    const NAME: &'static str = S::NAME;
}

type Loading<U> = Pin<Box<dyn Future<Output = Result<Option<U>, String>> + Send>>;

impl<S, L, ReqBody, ResBody> Service<Request<ReqBody>> for CurrentUserService<S, L>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    L: LoadUser,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = CurrentUserFuture<S, ReqBody, L::User>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some(token) = request.extensions().get::<AuthenticatedToken>().cloned() else {
            return CurrentUserFuture { state: UserState::Inner { future: self.inner.call(request) } };
        };
        let loader = Arc::clone(&self.loader);
        let loading: Loading<L::User> =
            Box::pin(async move { loader.load_user(&token).await.map_err(|error| error.to_string()) });
        // The service made ready goes into the future; a clone stays behind (see `TokenAuth::call`).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        CurrentUserFuture { state: UserState::Loading { loading, pending: Some((request, inner)) } }
    }
}

pin_project! {
    /// Response future of [`CurrentUserService`].
    pub struct CurrentUserFuture<S, ReqBody, U>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: UserState<S, ReqBody, U>,
    }
}

pin_project! {
    #[project = UserStateProj]
    enum UserState<S, ReqBody, U>
    where
        S: Service<Request<ReqBody>>,
    {
        Loading { loading: Loading<U>, pending: Option<(Request<ReqBody>, S)> },
        Inner { #[pin] future: S::Future },
        Rejected { rejection: Option<(Rejection, bool)> },
    }
}

impl<S, ReqBody, ResBody, U> Future for CurrentUserFuture<S, ReqBody, U>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    U: Clone + Send + Sync + 'static,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                UserStateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                UserStateProj::Rejected { rejection } => {
                    let (rejection, grpc) = rejection.take().expect("future polled after completion");
                    return Poll::Ready(Ok(rejection.into_response_with(grpc, ResponseBody::rejection)));
                }
                UserStateProj::Loading { loading, pending } => {
                    let polled = catch_unwind(AssertUnwindSafe(|| loading.as_mut().poll(cx)));
                    let loaded = match polled {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(loaded)) => loaded,
                        Err(_) => Err("the user loader panicked".to_owned()),
                    };
                    let (mut request, mut inner) = pending.take().expect("future polled after completion");
                    let grpc = is_grpc(request.headers());
                    let next = match loaded {
                        Ok(Some(user)) => {
                            request.extensions_mut().insert(CurrentUser(user));
                            UserState::Inner { future: inner.call(request) }
                        }
                        Ok(None) => UserState::Rejected { rejection: Some((Rejection::InvalidToken, grpc)) },
                        Err(error) => {
                            tracing::warn!(%error, "loading the current user failed; answering 503");
                            UserState::Rejected { rejection: Some((Rejection::StoreUnavailable, grpc)) }
                        }
                    };
                    this.state.set(next);
                }
            }
        }
    }
}

impl<S, ReqBody, U> fmt::Debug for CurrentUserFuture<S, ReqBody, U>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentUserFuture").finish_non_exhaustive()
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;
    use http::StatusCode;

    use super::CurrentUser;
    use crate::authenticated::{is_guest, AuthenticatedToken};
    use crate::response::Rejection;

    const MISSING: &str = "Missing request extension: `CurrentUser` was not found. Is \
        `tower_token_auth::user::CurrentUserLayer` applied inside `TokenAuthLayer` on this route?";

    /// Rejection of the [`CurrentUser`] extractor: the usual `401` for a guest of an optional layer, or
    /// a `500` naming the missing layer (a routing bug).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum CurrentUserRejection {
        /// No credentials, behind an optional layer.
        Guest,
        /// `CurrentUserLayer` (or `TokenAuthLayer`) does not cover this route.
        MissingLayer,
    }

    impl IntoResponse for CurrentUserRejection {
        fn into_response(self) -> Response {
            match self {
                CurrentUserRejection::Guest => Rejection::MissingCredentials.into_response(),
                CurrentUserRejection::MissingLayer => (StatusCode::INTERNAL_SERVER_ERROR, MISSING).into_response(),
            }
        }
    }

    impl<S: Send + Sync, U: Clone + Send + Sync + 'static> FromRequestParts<S> for CurrentUser<U> {
        type Rejection = CurrentUserRejection;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
            if let Some(user) = parts.extensions.get::<CurrentUser<U>>() {
                return Ok(user.clone());
            }
            if is_guest(&parts.extensions) && parts.extensions.get::<AuthenticatedToken>().is_none() {
                return Err(CurrentUserRejection::Guest);
            }
            tracing::error!(path = %parts.uri.path(), "{MISSING}");
            Err(CurrentUserRejection::MissingLayer)
        }
    }

    impl<S: Send + Sync, U: Clone + Send + Sync + 'static> OptionalFromRequestParts<S> for CurrentUser<U> {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<CurrentUser<U>>().cloned())
        }
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::CurrentUserRejection;
