//! [`LogoutService`]: `POST /api/v1/auth/logout`, revoking every token of the user.
//!
//! Implements the logout contract exactly: on success `200` `{"message":"Successfully logged out"}`,
//! after which none of the user's tokens, access or refresh, authenticates again (revocation is done in
//! the store before the response is sent); without a valid token `401` `{"message":"Unauthenticated."}`
//! with `WWW-Authenticate`. Logging out twice with the same token gets the 401 the second time. A failing
//! store gets `503` and revokes nothing it could not reach; a method other than `POST` gets `405`.
//!
//! Mounted behind [`TokenAuthLayer`](crate::TokenAuthLayer) it uses the request's
//! [`AuthenticatedToken`]; mounted alone it authenticates the request itself. For Sanctum's
//! `currentAccessToken()->delete()` (log out this device only), use
//! [`current_token_only`](LogoutService::current_token_only).
//!
//! ```
//! use http::{header::AUTHORIZATION, Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_token_auth::{LogoutService, MemoryStore, NewToken, TokenStore, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let laptop = store.issue(NewToken::access(7u64)).await?;
//! let phone = store.issue(NewToken::refresh(7u64)).await?;
//!
//! let logout = LogoutService::new(store.clone());
//! let request = Request::post("/api/v1/auth/logout")
//!     .header(AUTHORIZATION, format!("Bearer {}", laptop.plain_text.expose()))
//!     .body(())?;
//! let response = logout.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert!(store.find(phone.record.id).await?.is_none()); // every device, refresh tokens too
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response};
use tower_service::Service;

use crate::auth::verify::{guard_panic, store_panicked, Config, Started};
use crate::authenticated::AuthenticatedToken;
use crate::body::JsonBody;
use crate::response::{is_grpc, logged_out, Rejection};
use crate::store::{StoreError, StoreFuture, TokenStore};

/// Which tokens a logout revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogoutScope {
    /// Every token of the user, access and refresh, on every device (the default).
    #[default]
    AllTokens,
    /// Only the token that authenticated the logout request.
    CurrentToken,
}

/// The logout endpoint as a tower [`Service`]. See the [module docs](crate::logout).
pub struct LogoutService<St> {
    config: Arc<Config<St>>,
    scope: LogoutScope,
}

impl<St> LogoutService<St> {
    /// Logs users out of every device, authenticating requests against `store` when no
    /// [`TokenAuthLayer`](crate::TokenAuthLayer) ran before it. To share a layer's settings (clock,
    /// maximum age, timeout), use [`TokenAuthLayer::logout_service`](crate::TokenAuthLayer::logout_service).
    pub fn new(store: St) -> Self {
        Self::from_config(Arc::new(Config::new(store)))
    }

    pub(crate) fn from_config(config: Arc<Config<St>>) -> Self {
        Self { config, scope: LogoutScope::AllTokens }
    }

    /// Revokes only the presented token (log out this device), like Sanctum's
    /// `currentAccessToken()->delete()`.
    pub fn current_token_only(mut self) -> Self {
        self.scope = LogoutScope::CurrentToken;
        self
    }

    /// Which tokens this service revokes.
    pub fn scope(&self) -> LogoutScope {
        self.scope
    }
}

impl<St> Clone for LogoutService<St> {
    fn clone(&self) -> Self {
        Self { config: Arc::clone(&self.config), scope: self.scope }
    }
}

impl<St: fmt::Debug> fmt::Debug for LogoutService<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutService").field("config", &self.config).field("scope", &self.scope).finish()
    }
}

impl<St: TokenStore, B> Service<Request<B>> for LogoutService<St> {
    type Response = Response<JsonBody>;
    type Error = Infallible;
    type Future = LogoutFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let grpc = is_grpc(request.headers());
        if request.method() != Method::POST {
            return LogoutFuture::ready(Rejection::MethodNotAllowed.into_response(grpc));
        }
        let token = match request.extensions().get::<AuthenticatedToken>() {
            Some(token) => Ok(token.clone()),
            None => match self.config.start(request.headers()) {
                Started::Done(result) => result,
                Started::Pending(mut lookup) => {
                    let config = Arc::clone(&self.config);
                    let scope = self.scope;
                    return LogoutFuture::boxed(async move {
                        let found = std::future::poll_fn(|cx| lookup.poll_lookup(cx)).await;
                        match config.finish(&lookup.digest, found) {
                            Ok(token) => {
                                let revocation = start_revoke(&config.store, scope, &token);
                                revoked(bounded(config.lookup_timeout, revocation).await, &token)
                            }
                            Err(rejection) => rejection.into_response(grpc),
                        }
                    });
                }
            },
        };
        match token {
            Ok(token) => {
                let revocation = start_revoke(&self.config.store, self.scope, &token);
                match revocation.try_take_ready() {
                    Ok(result) => LogoutFuture::ready(revoked(result, &token)),
                    Err(pending) => {
                        let timeout = self.config.lookup_timeout;
                        LogoutFuture::boxed(async move { revoked(bounded(timeout, pending).await, &token) })
                    }
                }
            }
            Err(rejection) => LogoutFuture::ready(rejection.into_response(grpc)),
        }
    }
}

fn start_revoke<St: TokenStore>(store: &St, scope: LogoutScope, token: &AuthenticatedToken) -> StoreFuture<u64> {
    match scope {
        LogoutScope::AllTokens => guard_panic(|| store.revoke_all_for_user(token.user_id())),
        LogoutScope::CurrentToken => {
            let revoke = guard_panic(|| store.revoke(token.token_id()));
            match revoke.try_take_ready() {
                Ok(result) => StoreFuture::ready(result.map(u64::from)),
                Err(pending) => StoreFuture::new(async move { pending.await.map(u64::from) }),
            }
        }
    }
}

/// Waits for a pending revocation, bounded by the lookup timeout, with a panic turned into a store error:
/// a broken store answers `503` rather than hanging or dropping the connection.
async fn bounded(timeout: Option<Duration>, mut revocation: StoreFuture<u64>) -> Result<u64, StoreError> {
    let guarded = std::future::poll_fn(move |cx| {
        catch_unwind(AssertUnwindSafe(|| Pin::new(&mut revocation).poll(cx)))
            .unwrap_or_else(|_| Poll::Ready(Err(store_panicked())))
    });
    match timeout {
        Some(limit) => tokio::time::timeout(limit, guarded).await.unwrap_or_else(|_| Err(StoreError::timeout())),
        None => guarded.await,
    }
}

fn revoked(result: Result<u64, StoreError>, token: &AuthenticatedToken) -> Response<JsonBody> {
    match result {
        Ok(count) => {
            tracing::info!(user_id = %token.user_id(), token_id = token.token_id(), revoked = count, "logged out");
            logged_out()
        }
        Err(error) => {
            tracing::warn!(%error, "token store failed during logout; answering 503");
            Rejection::StoreUnavailable.into_response(false)
        }
    }
}

/// Response future of [`LogoutService`].
pub struct LogoutFuture {
    state: LogoutState,
}

enum LogoutState {
    Ready(Option<Response<JsonBody>>),
    Pending(Pin<Box<dyn Future<Output = Response<JsonBody>> + Send>>),
}

impl LogoutFuture {
    fn ready(response: Response<JsonBody>) -> Self {
        Self { state: LogoutState::Ready(Some(response)) }
    }

    fn boxed(future: impl Future<Output = Response<JsonBody>> + Send + 'static) -> Self {
        Self { state: LogoutState::Pending(Box::pin(future)) }
    }
}

impl Future for LogoutFuture {
    type Output = Result<Response<JsonBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            LogoutState::Ready(response) => Poll::Ready(Ok(response.take().expect("future polled after completion"))),
            LogoutState::Pending(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl fmt::Debug for LogoutFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogoutFuture")
    }
}
