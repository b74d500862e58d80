//! [`LogoutService`]: `POST /api/v1/auth/logout`, revoking every token of the user.
//!
//! Implements the logout contract exactly: on success `200` `{"message":"Successfully logged out"}`,
//! after which none of the user's tokens, access or refresh, authenticates again (revocation is done in
//! the store before the response is sent); without a valid token `401` `{"message":"Unauthenticated."}`
//! with `WWW-Authenticate`. Logging out twice with the same token gets the 401 the second time. A failing
//! store gets `503` (`grpc-status: 14` for gRPC callers) and revokes nothing it could not reach; a method
//! other than `POST` gets `405`.
//!
//! Mounted behind [`TokenAuthLayer`](crate::TokenAuthLayer) it uses the request's
//! [`AuthenticatedToken`]; mounted alone it authenticates the request itself.
//!
//! # Scopes
//!
//! What is revoked is a [`LogoutScope`], the three of Supabase's `signOut`:
//!
//! | scope | revokes |
//! |---|---|
//! | [`Global`](LogoutScope::Global) (default, the contract) | every session of the user, on every device |
//! | [`Local`](LogoutScope::Local) | the presenting session: this device's access **and** refresh token |
//! | [`Others`](LogoutScope::Others) | every other session, keeping this one (OWASP ASVS V3.3.3) |
//!
//! Set one with [`scope`](LogoutService::scope), or let clients choose per request with
//! [`scope_from_query`](LogoutService::scope_from_query) (`?scope=global|local|others`; anything else is
//! a Laravel-style `422` and revokes nothing).
//!
//! ```
//! use http::{header::AUTHORIZATION, Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_token_auth::refresh::{NewPair, RefreshTokens};
//! use tower_token_auth::{LogoutService, MemoryStore, TokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let tokens = RefreshTokens::new(store.clone());
//! let laptop = tokens.issue_pair(NewPair::new(7u64).name("laptop")).await?;
//! let phone = tokens.issue_pair(NewPair::new(7u64).name("phone")).await?;
//!
//! let logout = LogoutService::new(store.clone()).scope_from_query();
//! let request = Request::post("/api/v1/auth/logout?scope=local")
//!     .header(AUTHORIZATION, format!("Bearer {}", laptop.access.plain_text.expose()))
//!     .body(())?;
//! let response = logout.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert!(store.find(laptop.refresh.record.id).await?.is_none()); // this device, refresh token too
//! assert!(store.find(phone.access.record.id).await?.is_some()); // the phone is still logged in
//!
//! // No scope: the contract's log out everywhere.
//! let request = Request::post("/api/v1/auth/logout")
//!     .header(AUTHORIZATION, format!("Bearer {}", phone.access.plain_text.expose()))
//!     .body(())?;
//! assert_eq!(logout.oneshot(request).await?.status(), StatusCode::OK);
//! assert!(store.find(phone.refresh.record.id).await?.is_none());
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use tower_service::Service;

use crate::auth::verify::{guarded, Config, Started};
use crate::authenticated::AuthenticatedToken;
use crate::body::JsonBody;
use crate::observability::record;
use crate::response::{is_grpc, logged_out, JsonFuture, Rejection};
use crate::session::Sessions;
use crate::store::{StoreError, StoreFuture, TokenStore};

/// Which sessions a logout revokes. See the [module docs](crate::logout#scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogoutScope {
    /// Every session of the user, access and refresh tokens, on every device. The default, and the
    /// logout contract.
    #[default]
    Global,
    /// Only the session of the token that authenticated the logout: this device, its refresh token
    /// included, so it cannot mint a new pair afterwards.
    Local,
    /// Every session of the user except the presenting one ("log out other devices").
    Others,
}

impl LogoutScope {
    /// The name used in `?scope=`: `global`, `local` or `others`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogoutScope::Global => "global",
            LogoutScope::Local => "local",
            LogoutScope::Others => "others",
        }
    }

    /// The sessions this scope selects, for a logout authenticated by a token of `current`.
    pub fn sessions(self, current: crate::session::SessionId) -> Sessions {
        match self {
            LogoutScope::Global => Sessions::All,
            LogoutScope::Local => Sessions::Only(current),
            LogoutScope::Others => Sessions::AllExcept(current),
        }
    }
}

impl fmt::Display for LogoutScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`LogoutScope`]: not `global`, `local` or `others`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidScope;

impl fmt::Display for InvalidScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a logout scope is one of `global`, `local` or `others`")
    }
}

impl std::error::Error for InvalidScope {}

impl FromStr for LogoutScope {
    type Err = InvalidScope;

    /// Exactly `global`, `local` or `others` (lower case, as Supabase spells them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "global" => Ok(LogoutScope::Global),
            "local" => Ok(LogoutScope::Local),
            "others" => Ok(LogoutScope::Others),
            _ => Err(InvalidScope),
        }
    }
}

/// The `422` body for a bad `?scope=`, in Laravel's validation shape.
const INVALID_SCOPE: &[u8] =
    br#"{"message":"The selected scope is invalid.","errors":{"scope":["The selected scope is invalid."]}}"#;

/// The logout endpoint as a tower [`Service`]. See the [module docs](crate::logout).
pub struct LogoutService<St> {
    config: Arc<Config<St>>,
    scope: LogoutScope,
    scope_from_query: bool,
}

impl<St> LogoutService<St> {
    /// Logs users out of every device, authenticating requests against `store` when no
    /// [`TokenAuthLayer`](crate::TokenAuthLayer) ran before it. To share a layer's settings (clock,
    /// maximum age, timeout), use [`TokenAuthLayer::logout_service`](crate::TokenAuthLayer::logout_service).
    pub fn new(store: St) -> Self {
        Self::from_config(Arc::new(Config::new(store)))
    }

    pub(crate) fn from_config(config: Arc<Config<St>>) -> Self {
        Self { config, scope: LogoutScope::Global, scope_from_query: false }
    }

    /// Revokes `scope` instead of every session (the default, [`LogoutScope::Global`]).
    pub fn scope(mut self, scope: LogoutScope) -> Self {
        self.scope = scope;
        self
    }

    /// Lets each request choose the scope with a `scope` query parameter: `?scope=global`, `local` or
    /// `others`. Without the parameter the configured [`scope`](Self::scope) applies. Any other value
    /// (or the parameter twice) is answered `422`
    /// `{"message":"The selected scope is invalid.","errors":{"scope":["The selected scope is invalid."]}}`
    /// after authentication, and nothing is revoked.
    pub fn scope_from_query(mut self) -> Self {
        self.scope_from_query = true;
        self
    }

    /// Revokes only the presenting device.
    #[deprecated(
        since = "0.1.0",
        note = "use `.scope(LogoutScope::Local)`: it logs the device out, its refresh token included; this method now does the same"
    )]
    pub fn current_token_only(self) -> Self {
        self.scope(LogoutScope::Local)
    }

    /// The scope revoked when the request does not choose one.
    pub fn default_scope(&self) -> LogoutScope {
        self.scope
    }

    /// The scope for `request`: the configured one, or the query's when allowed. `Err` for a bad query.
    fn scope_of<B>(&self, request: &Request<B>) -> Result<LogoutScope, InvalidScope> {
        if !self.scope_from_query {
            return Ok(self.scope);
        }
        let mut chosen = None;
        for pair in request.uri().query().unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == "scope" {
                if chosen.is_some() {
                    return Err(InvalidScope);
                }
                chosen = Some(value.parse()?);
            }
        }
        Ok(chosen.unwrap_or(self.scope))
    }
}

impl<St> Clone for LogoutService<St> {
    fn clone(&self) -> Self {
        Self { config: Arc::clone(&self.config), scope: self.scope, scope_from_query: self.scope_from_query }
    }
}

impl<St: fmt::Debug> fmt::Debug for LogoutService<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutService")
            .field("config", &self.config)
            .field("scope", &self.scope)
            .field("scope_from_query", &self.scope_from_query)
            .finish()
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
            return LogoutFuture::ready(Rejection::MethodNotAllowed.to_response(grpc));
        }
        let scope = self.scope_of(&request);
        let token = match request.extensions().get::<AuthenticatedToken>() {
            Some(token) => Ok(token.clone()),
            // Not behind a layer: it authenticates the request itself, and counts it in the same metrics.
            None => {
                let started = record::Started::now();
                match self.config.start_at(request.headers(), started) {
                    Started::Done(result) => {
                        self.config.observe(&tracing::Span::none(), started, &result);
                        result
                    }
                    Started::Pending(mut lookup) => {
                        let config = Arc::clone(&self.config);
                        return LogoutFuture::boxed(async move {
                            let found = std::future::poll_fn(|cx| lookup.poll_lookup(cx)).await;
                            let result = config.finish(&lookup.digest, found);
                            config.observe(&tracing::Span::none(), lookup.started, &result);
                            match result {
                                Ok(token) => match start_revoke(&config, scope, &token) {
                                    Ok(revocation) => revoked(revocation.await, &token, scope, grpc),
                                    Err(InvalidScope) => invalid_scope(),
                                },
                                Err(failure) => failure.rejection().to_response(grpc),
                            }
                        });
                    }
                }
            }
        };
        let token = match token {
            Ok(token) => token,
            Err(failure) => return LogoutFuture::ready(failure.rejection().to_response(grpc)),
        };
        let revocation = match start_revoke(&self.config, scope, &token) {
            Ok(revocation) => revocation,
            Err(InvalidScope) => return LogoutFuture::ready(invalid_scope()),
        };
        match revocation.try_take_ready() {
            Ok(result) => LogoutFuture::ready(revoked(result, &token, scope, grpc)),
            Err(pending) => LogoutFuture::boxed(async move { revoked(pending.await, &token, scope, grpc) }),
        }
    }
}

/// Starts the revocation of `scope` for `token`'s user; a bad scope is answered `422` by the caller.
fn start_revoke<St: TokenStore>(
    config: &Config<St>,
    scope: Result<LogoutScope, InvalidScope>,
    token: &AuthenticatedToken,
) -> Result<StoreFuture<u64>, InvalidScope> {
    let scope = scope?;
    let sessions = scope.sessions(token.session_id());
    let store = config.store.backend_name();
    Ok(guarded("revoke_sessions", store, config.lookup_timeout, || {
        config.store.revoke_sessions(token.user_id(), sessions)
    }))
}

fn revoked(
    result: Result<u64, StoreError>,
    token: &AuthenticatedToken,
    scope: Result<LogoutScope, InvalidScope>,
    grpc: bool,
) -> Response<JsonBody> {
    let scope = scope.unwrap_or_default();
    match result {
        Ok(count) => {
            crate::observability::audit::logout(token.user_id(), token.session_id(), scope.as_str(), count);
            crate::observability::record::logouts(scope.as_str(), 1);
            crate::observability::record::logout_revoked_tokens(scope.as_str(), count);
            logged_out()
        }
        Err(error) => {
            tracing::warn!(%error, "token store failed during logout; answering 503");
            Rejection::StoreUnavailable.to_response(grpc)
        }
    }
}

fn invalid_scope() -> Response<JsonBody> {
    let mut response = Response::new(JsonBody::from_static(&INVALID_SCOPE));
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Response future of [`LogoutService`].
pub type LogoutFuture = JsonFuture;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_only_their_three_names() {
        for scope in [LogoutScope::Global, LogoutScope::Local, LogoutScope::Others] {
            assert_eq!(scope.as_str().parse::<LogoutScope>(), Ok(scope));
        }
        for bad in ["", "GLOBAL", "all", "local ", "l%6fcal"] {
            assert_eq!(bad.parse::<LogoutScope>(), Err(InvalidScope), "{bad:?}");
        }
    }

    #[test]
    fn the_query_chooses_the_scope_only_when_allowed() {
        let service = LogoutService::new(crate::MemoryStore::new());
        let request = |uri: &str| Request::post(uri).body(()).unwrap();
        assert_eq!(service.scope_of(&request("/?scope=local")), Ok(LogoutScope::Global), "ignored by default");
        let service = service.scope_from_query();
        assert_eq!(service.scope_of(&request("/")), Ok(LogoutScope::Global));
        assert_eq!(service.scope_of(&request("/?a=1&scope=others")), Ok(LogoutScope::Others));
        assert_eq!(service.scope_of(&request("/?scope=local&scope=global")), Err(InvalidScope));
        assert_eq!(service.scope_of(&request("/?scope=everything")), Err(InvalidScope));
        assert_eq!(service.scope_of(&request("/?scope")), Err(InvalidScope));
    }
}
