//! Device management endpoints as tower services: list the caller's sessions, revoke one of them.
//!
//! A session is a device (see [`session`](crate::session)). Every app with refresh tokens ends up with
//! the same page of handlers; these are them, framework-neutral like [`LogoutService`](crate::LogoutService):
//!
//! | route (suggested) | service | answer |
//! |---|---|---|
//! | `GET /api/v1/auth/sessions` | [`SessionListService`] | `200` `{"data":[{..session.., "current":true}, ..]}`: the caller's live sessions, newest first |
//! | `DELETE /api/v1/auth/sessions/{id}` | [`RevokeSessionService`] | `200` `{"message":"Session revoked"}`; `404` `{"message":"Not found."}` for any id that is not one of the caller's live sessions (another user's, unknown, revoked, malformed) |
//! | `POST /api/v1/auth/logout?scope=others` | [`LogoutService`](crate::LogoutService) with [`LogoutScope::Others`](crate::LogoutScope::Others) | log out every other device |
//!
//! Each entry of the list is a [`SessionSummary`] in its serde shape (times in unix seconds) plus
//! `current`, true for the session of the token that made the request:
//! `{"id":3,"user_id":7,"name":"laptop","abilities":["*"],"created_at":1700000000,"last_used_at":null,"expires_at":1702592000,"current":true}`.
//!
//! [`RevokeSessionService`] takes the session id from the **last segment of the request path**, so it
//! works under any router: mount it on `/sessions/{id}` (axum), or anywhere whose path ends in the id.
//! The owner check and the revocation are one store operation
//! ([`TokenStore::revoke_sessions`]): a user can never revoke another
//! user's session, and cannot tell another user's session from a missing one.
//!
//! Like [`LogoutService`](crate::LogoutService), both use the request's [`AuthenticatedToken`] when mounted behind
//! [`TokenAuthLayer`](crate::TokenAuthLayer), and authenticate the request themselves otherwise; a
//! failing store is `503`, a wrong method `405` (with `Allow`).
//!
//! ```
//! use http::{header::AUTHORIZATION, Request, StatusCode};
//! use tower::ServiceExt;
//! use tower_token_auth::devices::{RevokeSessionService, SessionListService};
//! use tower_token_auth::refresh::{NewPair, RefreshTokens};
//! use tower_token_auth::{MemoryStore, TokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let tokens = RefreshTokens::new(store.clone());
//! let laptop = tokens.issue_pair(NewPair::new(7u64).name("laptop")).await?;
//! let phone = tokens.issue_pair(NewPair::new(7u64).name("phone")).await?;
//! let bearer = format!("Bearer {}", laptop.access.plain_text.expose());
//!
//! let list = SessionListService::new(store.clone());
//! let request = Request::get("/api/v1/auth/sessions").header(AUTHORIZATION, &bearer).body(())?;
//! let response = list.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // The laptop revokes the phone.
//! let revoke = RevokeSessionService::new(store.clone());
//! let uri = format!("/api/v1/auth/sessions/{}", phone.session_id());
//! let request = Request::delete(uri).header(AUTHORIZATION, &bearer).body(())?;
//! assert_eq!(revoke.clone().oneshot(request).await?.status(), StatusCode::OK);
//! assert!(store.find(phone.refresh.record.id).await?.is_none());
//!
//! // Gone now, and a malformed id is the same 404.
//! for id in [phone.session_id().to_string(), "-1".to_owned()] {
//!     let request = Request::delete(format!("/api/v1/auth/sessions/{id}")).header(AUTHORIZATION, &bearer).body(())?;
//!     assert_eq!(revoke.clone().oneshot(request).await?.status(), StatusCode::NOT_FOUND);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # An admin revoking another user's sessions
//!
//! An admin endpoint decides who may act on whom (that is the app's rule, not the crate's), then calls
//! the store directly; the revocation is atomic, and counted in the crate's
//! [metrics](crate::observability) like every revocation:
//!
//! ```
//! use tower_token_auth::session::{SessionId, Sessions};
//! use tower_token_auth::{MemoryStore, StoreError, TokenStore, TokenStoreExt, UserId};
//!
//! /// `DELETE /admin/users/{user}/sessions[/{session}]`, after the app checked the caller is an admin.
//! async fn admin_revoke(store: &impl TokenStore, user: UserId, session: Option<SessionId>) -> Result<u64, StoreError> {
//!     let which = session.map_or(Sessions::All, Sessions::Only);
//!     store.revoke_sessions(&user, which).await // tokens revoked; 0 if there was no such session
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! # let store = MemoryStore::new();
//! # store.issue(tower_token_auth::NewToken::access(9u64)).await?;
//! assert_eq!(admin_revoke(&store, 9u64.into(), None).await?, 1);
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tower_service::Service;

use crate::auth::verify::{authenticate, guarded, Config};
use crate::authenticated::AuthenticatedToken;
use crate::body::JsonBody;
use crate::response::{is_grpc, json, method_not_allowed, not_found, JsonFuture, Rejection};
use crate::session::{SessionId, SessionSummary};
use crate::store::{StoreError, TokenStore, TokenStoreExt};

/// `GET`: the caller's live sessions, newest first, the current one marked. See the
/// [module docs](crate::devices).
pub struct SessionListService<St> {
    config: Arc<Config<St>>,
}

/// `DELETE`: revokes the caller's session whose id ends the request path. See the
/// [module docs](crate::devices).
pub struct RevokeSessionService<St> {
    config: Arc<Config<St>>,
}

macro_rules! device_service_basics {
    ($name:ident) => {
        impl<St> $name<St> {
            /// The service on `store`, authenticating requests itself when no
            /// [`TokenAuthLayer`](crate::TokenAuthLayer) ran before it. To share a layer's settings, use
            /// the layer's method of the same purpose.
            pub fn new(store: St) -> Self {
                Self::from_config(Arc::new(Config::new(store)))
            }

            pub(crate) fn from_config(config: Arc<Config<St>>) -> Self {
                Self { config }
            }
        }

        impl<St> Clone for $name<St> {
            fn clone(&self) -> Self {
                Self { config: Arc::clone(&self.config) }
            }
        }

        impl<St: fmt::Debug> fmt::Debug for $name<St> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("config", &self.config).finish()
            }
        }
    };
}

device_service_basics!(SessionListService);
device_service_basics!(RevokeSessionService);

/// One entry of the list: the summary's serde shape plus `current`.
#[derive(Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    session: &'a SessionSummary,
    current: bool,
}

/// Runs `act` with the caller's token: the one in the extensions, or one authenticated here.
fn with_token<St, B, F, Fut>(config: &Arc<Config<St>>, request: &Request<B>, act: F) -> JsonFuture
where
    St: TokenStore,
    F: FnOnce(Arc<Config<St>>, AuthenticatedToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<JsonBody>> + Send + 'static,
{
    let grpc = is_grpc(request.headers());
    let known = request.extensions().get::<AuthenticatedToken>().cloned();
    let caller = authenticate(config, request.headers(), known);
    let config = Arc::clone(config);
    JsonFuture::boxed(async move {
        match caller.await {
            Ok(token) => act(config, token).await,
            Err(failure) => failure.rejection().to_response(grpc),
        }
    })
}

fn store_failed(error: StoreError) -> Response<JsonBody> {
    Rejection::from(error).to_response(false)
}

impl<St: TokenStore, B> Service<Request<B>> for SessionListService<St> {
    type Response = Response<JsonBody>;
    type Error = Infallible;
    type Future = JsonFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> JsonFuture {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return JsonFuture::ready(method_not_allowed("GET,HEAD"));
        }
        with_token(&self.config, &request, |config, token| async move {
            let store = config.store.backend_name();
            let listed =
                guarded("list_sessions", store, config.lookup_timeout, || config.store.list_sessions(token.user_id()));
            let sessions = match listed.await {
                Ok(sessions) => sessions,
                Err(error) => return store_failed(error),
            };
            let now = config.clock.now();
            let data: Vec<Entry<'_>> = sessions
                .iter()
                .filter(|session| !session.is_expired(now))
                .map(|session| Entry { session, current: session.id == token.session_id() })
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "data": data }))
        })
    }
}

impl<St: TokenStore, B> Service<Request<B>> for RevokeSessionService<St> {
    type Response = Response<JsonBody>;
    type Error = Infallible;
    type Future = JsonFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> JsonFuture {
        if request.method() != Method::DELETE {
            return JsonFuture::ready(method_not_allowed("DELETE"));
        }
        // Parsed before authentication, answered after it: an unauthenticated caller learns nothing.
        let id = session_id_in(request.uri().path());
        with_token(&self.config, &request, move |config, token| async move {
            let Some(id) = id else { return not_found() };
            let store = config.store.backend_name();
            let revoke = guarded("revoke_sessions", store, config.lookup_timeout, || {
                config.store.revoke_session(token.user_id(), id)
            });
            match revoke.await {
                Ok(true) => json(StatusCode::OK, &serde_json::json!({ "message": "Session revoked" })),
                Ok(false) => not_found(),
                Err(error) => store_failed(error),
            }
        })
    }
}

/// The session id ending `path` (`/api/v1/auth/sessions/42` → 42); `None` when the last segment is not
/// a plain decimal id below 2^64.
fn session_id_in(path: &str) -> Option<SessionId> {
    path.rsplit('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use http::header::AUTHORIZATION;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::refresh::{NewPair, RefreshTokens};
    use crate::{MemoryStore, TokenAuthLayer};

    #[tokio::test]
    async fn behind_the_layer_the_services_use_its_token_and_answer_json() {
        let store = MemoryStore::new();
        let tokens = RefreshTokens::new(store.clone());
        let laptop = tokens.issue_pair(NewPair::new(7u64).name("laptop")).await.unwrap();
        let other = tokens.issue_pair(NewPair::new(8u64)).await.unwrap();
        let auth = TokenAuthLayer::new(store.clone());
        let bearer = format!("Bearer {}", laptop.access.plain_text.expose());

        let list = ServiceBuilder::new().layer(auth.clone()).service(auth.session_list_service());
        let request = Request::get("/sessions").header(AUTHORIZATION, &bearer).body(()).unwrap();
        let response = list.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = list.oneshot(Request::get("/sessions").body(()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        let revoke = ServiceBuilder::new().layer(auth.clone()).service(auth.revoke_session_service());
        let path = format!("/sessions/{}", other.session_id());
        let request = Request::delete(path).header(AUTHORIZATION, &bearer).body(()).unwrap();
        let response = revoke.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "another user's session");
        assert!(store.find(other.access.record.id).await.unwrap().is_some());
        let request = Request::get("/sessions/1").header(AUTHORIZATION, &bearer).body(()).unwrap();
        let response = revoke.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[http::header::ALLOW], "DELETE");
    }

    #[test]
    fn the_id_is_the_last_path_segment() {
        assert_eq!(session_id_in("/api/v1/auth/sessions/42"), Some(SessionId::new(42)));
        assert_eq!(session_id_in("42"), Some(SessionId::new(42)));
        for bad in ["/sessions/", "/sessions/-1", "/sessions/1e3", "/sessions/%34%32", "/sessions/99999999999999999999"]
        {
            assert_eq!(session_id_in(bad), None, "{bad}");
        }
    }
}
