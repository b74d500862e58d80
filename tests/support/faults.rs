//! Fault injection: a [`FaultyStore`] wraps any `TokenStore` and can be switched, while a server is
//! running, to fail, hang or panic on every call (or only on writes), and back to healthy.
//!
//! ```ignore
//! let store = FaultyStore::new(MemoryStore::new());
//! store.set(Fault::Hang); // every store call now never completes
//! store.set(Fault::Healthy); // and now it forwards again, to the same tokens
//! store.set_writes(Fault::Fail); // lookups work, revocations (logout) fail
//! ```

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_token_auth::session::{
    ExchangeOutcome, NewSession, RefreshExchange, SessionSummary, SessionTokens, Sessions,
};
use tower_token_auth::{
    AuthenticatedToken, StoreError, StoreFuture, TokenAuthLayer, TokenDigest, TokenId, TokenRecord, TokenStore, UserId,
};

use super::http::{boxed, serve, Body};

/// What a [`FaultyStore`] does when called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forwards to the wrapped store.
    Healthy = 0,
    /// Answers every call with a backend `StoreError`.
    Fail = 1,
    /// Returns a future that never completes.
    Hang = 2,
    /// Panics in the call itself, before returning a future.
    Panic = 3,
    /// Returns a future that panics when polled.
    PanicWhilePolled = 4,
    /// Forwards to the wrapped store after yielding once, so callers take their pending (async) path.
    Yield = 5,
}

impl Fault {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Fault::Fail,
            2 => Fault::Hang,
            3 => Fault::Panic,
            4 => Fault::PanicWhilePolled,
            5 => Fault::Yield,
            _ => Fault::Healthy,
        }
    }
}

/// A `TokenStore` wrapper whose behaviour is switched at runtime with [`set`](Self::set). Clones share
/// the modes, the counter and the wrapped store.
#[derive(Clone)]
pub struct FaultyStore<St> {
    inner: St,
    /// Applies to `find` and `find_by_digest`.
    lookups: Arc<AtomicU8>,
    /// Applies to every other method.
    writes: Arc<AtomicU8>,
    calls: Arc<AtomicU64>,
    touches: Arc<AtomicU64>,
}

impl<St: TokenStore> FaultyStore<St> {
    /// Wraps `inner`, healthy.
    pub fn new(inner: St) -> Self {
        let healthy = || Arc::new(AtomicU8::new(Fault::Healthy as u8));
        Self { inner, lookups: healthy(), writes: healthy(), calls: Arc::default(), touches: Arc::default() }
    }

    /// Switches every method of every clone to `fault`, effective from the next call.
    pub fn set(&self, fault: Fault) {
        self.lookups.store(fault as u8, Ordering::SeqCst);
        self.writes.store(fault as u8, Ordering::SeqCst);
    }

    /// Switches only the writes (insert, exchange, revoke, list, prune, last-used) to `fault`.
    pub fn set_writes(&self, fault: Fault) {
        self.writes.store(fault as u8, Ordering::SeqCst);
    }

    /// How many store calls were made, whatever the mode.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many `touch_last_used` calls were made.
    pub fn touches(&self) -> u64 {
        self.touches.load(Ordering::SeqCst)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &St {
        &self.inner
    }

    /// Applies the fault in `mode`, or forwards to `healthy`.
    fn call<T: Send + 'static>(&self, mode: &AtomicU8, healthy: impl FnOnce(&St) -> StoreFuture<T>) -> StoreFuture<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match Fault::from_u8(mode.load(Ordering::SeqCst)) {
            Fault::Healthy => healthy(&self.inner),
            Fault::Fail => StoreFuture::ready(Err(StoreError::backend("injected failure"))),
            Fault::Hang => StoreFuture::new(std::future::pending()),
            Fault::Panic => panic!("injected panic in the store call"),
            Fault::PanicWhilePolled => StoreFuture::new(async { panic!("injected panic while polled") }),
            Fault::Yield => {
                let forwarded = healthy(&self.inner);
                StoreFuture::new(async move {
                    tokio::task::yield_now().await;
                    forwarded.await
                })
            }
        }
    }
}

impl<St: TokenStore> TokenStore for FaultyStore<St> {
    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
        self.call(&self.lookups, |s| s.find(id))
    }
    fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
        self.call(&self.writes, |s| s.insert(session))
    }
    fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
        self.call(&self.writes, |s| s.exchange_refresh(exchange))
    }
    fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
        self.call(&self.writes, |s| s.list_sessions(user_id))
    }
    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
        self.call(&self.writes, |s| s.revoke_sessions(user_id, sessions))
    }
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        self.call(&self.writes, |s| s.prune_expired(expired_before, created_before))
    }
    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.call(&self.writes, |s| s.touch_last_used(id, at))
    }
    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<TokenRecord>> {
        self.call(&self.lookups, |s| s.find_by_digest(digest))
    }
}

/// The API the fault, stress and load tests drive, on a fresh loopback port: `POST /api/v1/auth/logout`
/// is the layer's `LogoutService`; every other path is protected by `layer` and answers
/// `user={user_id} token={token_id} name={token_name}`.
pub async fn serve_api<St: TokenStore + Clone>(layer: TokenAuthLayer<St>) -> SocketAddr {
    let logout = layer.logout_service();
    let protected = ServiceBuilder::new().layer(layer).service_fn(|req: Request<Incoming>| async move {
        let token = req.extensions().get::<AuthenticatedToken>().expect("the layer inserts the token");
        let body = format!("user={} token={} name={}", token.user_id(), token.token_id(), token.name());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    serve(service_fn(move |req: Request<Incoming>| {
        let logout = logout.clone();
        let protected = protected.clone();
        async move {
            if req.uri().path() == "/api/v1/auth/logout" {
                Ok::<Response<Body>, Infallible>(logout.oneshot(req).await?.map(boxed))
            } else {
                Ok(protected.oneshot(req).await?.map(boxed))
            }
        }
    }))
    .await
}
