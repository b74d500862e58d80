//! A token cache in each instance, in front of any [`TokenStore`], that keeps logout immediate:
//! [`CachedStore`].
//!
//! A hot token is authenticated from memory, with no network round trip, while every instance still
//! obeys a revocation the moment it has answered:
//!
//! > **Guarantee** ([`Consistency::Immediate`], the default). Once a revoking call on a
//! > `CachedStore` has returned (a logout in any scope, revoking a session, an exchange that retires
//! > the old pair, reuse detection, a login that evicts sessions over the limit, a prune), no
//! > instance accepts a revoked token in a request that starts afterwards. A token issued on one
//! > instance works on every instance at once: "not found" is never cached.
//!
//! # How
//!
//! Each instance listens on an [`InvalidationBus`]: the store's own writes produce the invalidations
//! (Redis: `CLIENT TRACKING ... BCAST` on the key prefix, on one server, Sentinel's primary or every
//! primary of a cluster, `redis::RedisBus`; PostgreSQL: a trigger and `LISTEN/NOTIFY`,
//! `postgres::PgBus`; MySQL/MariaDB and SQLite: a trigger-fed revocation log, polled,
//! `poll::PollBus`), so a write by any instance, or by another program, reaches every cache. A bus
//! can lag or drop its connection, or its server can stop being the primary, so the cache serves
//! hits only under a **lease**: every `fence_every` it makes a round trip on the bus connection
//! itself (a `PING`; on Redis Cluster a `CLUSTER NODES` to every primary, which also checks that no
//! primary is missing), and when that fence, started at `t0`, comes
//! back, every invalidation committed before `t0` has been applied (they travel on the same ordered
//! connection and are applied before the reply is handed over). Hits are then served until
//! `t0 + lease`. A revoking call writes to the store, evicts locally, then waits
//! `lease × (1 + ρ)/(1 − ρ) + margin` before it returns: by then every other instance has either
//! applied the invalidation, or its lease has run out and it reads the store.
//!
//! Every fault becomes "read the store" (and `503` when the store is down), never a stale accept: a
//! lost or lagging bus connection, a stalled fence, a paused process (its lease runs out while it
//! sleeps; when it wakes, the next fence first drains what it missed), a fill racing an
//! invalidation (a fill inserts only if its shard's *generation*, read before the store read, is
//! unchanged), a reconnect (the cache is emptied, the epoch moves, and hits resume only after a
//! fence on the new connection).
//!
//! # Assumptions
//!
//! * Each instance's monotonic clock runs at real rate within `ρ` ([`CacheConfig::clock_drift_ppm`],
//!   1000 ppm by default, far above real hardware). No clock synchronisation between machines.
//! * The store does not lose an acknowledged revocation (a Redis failover can: see the Redis store's
//!   notes on replication; no cache can be stronger than its store), and a revocation is written to
//!   the server that serves reads afterwards (a Redis primary cut off from the others but still
//!   reachable answers as a primary until it learns of the failover: see `redis::RedisBus`).
//! * The bus delivers in commit order on one connection (TCP), and the store sends an invalidation
//!   for a write before it acknowledges the write (Redis does: the push is queued on every tracking
//!   connection before the writer's reply leaves).
//!
//! Not assumed: delivery times, pauses, partitions, any instance being alive. Those only cost hits.
//!
//! # Modes and their costs
//!
//! * [`Consistency::Immediate`] (default): revocations wait about the lease (50 ms by default, plus
//!   0.1% and 2 ms). Requests never wait.
//! * [`Consistency::BoundedStaleness`]: revocations return at once; another instance may accept a
//!   revoked token until `lease × (1 + ρ)` plus one fence round trip after the revocation committed.
//!   The same bound holds in both modes for **revocations written by another program** (a Laravel
//!   app deleting rows, a `redis-cli DEL`): they do not wait for anyone.
//! * Last-use tracking ([`TokenAuthLayer::track_last_used`](crate::TokenAuthLayer::track_last_used)):
//!   a Redis touch rewrites the session hash, which invalidates that session on every instance, so
//!   each touch costs every instance one store read of that token: once per token per tracking
//!   interval, not per request.
//! * Logins: the [session limit](crate::session::SessionLimit) (on by default) revokes a user's oldest
//!   sessions when a login goes over it, in the same store step, and the store does not say whether
//!   it did; so a login with `WhenFull::RevokeOldest` waits like a revocation (about as long as
//!   hashing a password). Use `WhenFull::Refuse` or `SessionLimit::unlimited()` for logins that never
//!   wait.
//! * Observability: [`CachedStore::stats`] (hits, misses, invalidations, resets, lease lapses,
//!   revocation waits); with feature `metrics`, `tower_token_auth_cache_*` counters and a histogram of
//!   revocation waits (see [`CacheStats`]); the auth layer's `authenticate` span gets `cache = "hit"`
//!   when a request was served from memory.
//! * Memory: at most [`CacheConfig::capacity`] records (the oldest fill goes first), each at most
//!   [`CacheConfig::max_entry_age`] old.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{header::AUTHORIZATION, Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_token_auth::cache::{CacheConfig, CachedStore, LocalBus};
//! use tower_token_auth::{MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Over Redis: `CachedStore::new(store.clone(), RedisBus::new(url, &store)?, CacheConfig::default())`.
//! let store = CachedStore::new(MemoryStore::new(), LocalBus, CacheConfig::default());
//! let issued = store.issue(NewToken::access(42u64)).await?;
//! let bearer = format!("Bearer {}", issued.plain_text.expose());
//!
//! let mut api = ServiceBuilder::new()
//!     .layer(TokenAuthLayer::new(store.clone()))
//!     .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
//! let request = Request::get("/").header(AUTHORIZATION, &bearer).body(())?;
//! assert_eq!(api.ready().await?.call(request).await?.status(), StatusCode::OK);
//!
//! store.revoke_all_for_user(&42u64.into()).await?; // returns once no instance can accept it
//! let request = Request::get("/").header(AUTHORIZATION, &bearer).body(())?;
//! assert_eq!(api.ready().await?.call(request).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```

mod bus;
#[cfg(any(feature = "mysql", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "mysql", feature = "sqlite"))))]
pub mod poll;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod state;
mod stats;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

pub use self::bus::{BusFuture, Invalidation, InvalidationBus, InvalidationSink, LocalBus};
use self::state::State;
pub use self::stats::CacheStats;
use crate::session::{ExchangeOutcome, NewSession, RefreshExchange, SessionSummary, SessionTokens, Sessions, WhenFull};
use crate::store::{StoreError, StoreErrorKind, StoreFuture, TokenStore};
use crate::token::{TokenDigest, TokenId, TokenRecord, UserId};

/// What a revoking call waits for. See the [module documentation](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consistency {
    /// A revoking call returns once no instance can accept what it revoked (it waits about the lease).
    #[default]
    Immediate,
    /// A revoking call returns at once; other instances may accept a revoked token for up to
    /// `lease × (1 + ρ)` plus one fence round trip afterwards.
    BoundedStaleness,
}

/// Settings of a [`CachedStore`].
#[derive(Clone, Debug)]
pub struct CacheConfig {
    lease: Duration,
    fence_every: Duration,
    drift_ppm: u32,
    margin: Duration,
    capacity: usize,
    max_entry_age: Duration,
    consistency: Consistency,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_millis(50),
            fence_every: Duration::from_millis(10),
            drift_ppm: 1000,
            margin: Duration::from_millis(2),
            capacity: 100_000,
            max_entry_age: Duration::from_secs(300),
            consistency: Consistency::Immediate,
        }
    }
}

impl CacheConfig {
    /// How long a completed fence lets hits be served, counted from when the fence started (default
    /// 50 ms). A revocation waits about this long; a longer lease survives longer bus hiccups.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often to fence (default 10 ms; must be well under the lease). One round trip per instance
    /// per period, whatever the request rate.
    pub fn fence_every(mut self, every: Duration) -> Self {
        self.fence_every = every;
        self
    }

    /// The largest rate error of the monotonic clock, in parts per million (default 1000).
    pub fn clock_drift_ppm(mut self, ppm: u32) -> Self {
        self.drift_ppm = ppm.min(500_000);
        self
    }

    /// Added to a revocation's wait (default 2 ms): scheduling slack.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The most token records kept (default 100 000).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The longest a record stays cached, whatever the bus says (default 5 minutes): a backstop.
    pub fn max_entry_age(mut self, age: Duration) -> Self {
        self.max_entry_age = age;
        self
    }

    /// What revoking calls wait for (default [`Consistency::Immediate`]).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// How long a revoking call waits in [`Consistency::Immediate`]: `lease × (1 + ρ)/(1 − ρ) + margin`.
    pub fn revocation_wait(&self) -> Duration {
        let rho = f64::from(self.drift_ppm) / 1e6;
        self.lease.mul_f64((1.0 + rho) / (1.0 - rho)) + self.margin
    }
}

/// A [`TokenStore`] that answers [`find`](TokenStore::find) from memory while its lease is fresh, and
/// passes everything else to the store it wraps. See the [module documentation](self) for the
/// guarantee and how it is kept.
///
/// Cheap to clone: clones share the cache. Its background tasks (the bus and the fence) stop when the
/// last clone is dropped.
pub struct CachedStore<S> {
    inner: S,
    shared: Arc<Shared>,
}

struct Shared {
    state: Arc<State>,
    config: CacheConfig,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl<S: Clone> Clone for CachedStore<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: self.shared.clone() }
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore").field("inner", &self.inner).field("config", &self.shared.config).finish()
    }
}

impl<S: TokenStore> CachedStore<S> {
    /// Caches `inner`, learning of writes through `bus`. Starts the bus and fence tasks: must be
    /// called within a Tokio runtime. Hits begin after the first fence (a few milliseconds).
    pub fn new(inner: S, bus: impl InvalidationBus, config: CacheConfig) -> Self {
        let state = Arc::new(State::new(config.capacity, config.max_entry_age));
        let bus = Arc::new(bus);
        let sink: Arc<dyn InvalidationSink> = state.clone();
        let run = tokio::spawn(bus.run(sink));
        let fence = tokio::spawn(fence_loop(state.clone(), bus, config.clone()));
        Self { inner, shared: Arc::new(Shared { state, config, tasks: [run, fence] }) }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.shared.config
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let state = &self.shared.state;
        let s = &state.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let (hits, misses) = state.hits_and_misses();
        CacheStats {
            hits,
            misses,
            fills_dropped: load(&s.fills_dropped),
            evictions: load(&s.evictions),
            invalidations: load(&s.invalidations),
            resets: load(&s.resets),
            lease_lapses: load(&s.lease_lapses),
            fence_failures: load(&s.fence_failures),
            revocation_waits: load(&s.revocation_waits),
            revocation_wait: Duration::from_nanos(load(&s.revocation_wait_nanos)),
            entries: state.len() as u64,
        }
    }

    /// Whether hits are being served now (the last fence is recent enough).
    pub fn lease_is_fresh(&self) -> bool {
        self.shared.state.lease_is_fresh()
    }

    /// Runs a revoking store call: evicts `evict` locally once it returned, then waits for the other
    /// instances when it revoked something (`revoked(&result)`) and the mode says so.
    fn revoking<T: Send + 'static>(
        &self,
        call: StoreFuture<T>,
        evict: impl FnOnce(&State, &T) + Send + 'static,
        revoked: impl FnOnce(&T) -> bool + Send + 'static,
    ) -> StoreFuture<T> {
        let shared = self.shared.clone();
        StoreFuture::new(async move {
            let result = call.await;
            // Even a failed call may have committed (a timeout after the write): evict and wait anyway.
            let wait = match &result {
                Ok(value) => {
                    evict(&shared.state, value);
                    revoked(value)
                }
                // Refused before anything was written: nothing to wait for.
                Err(e) if matches!(e.kind(), StoreErrorKind::InvalidInput | StoreErrorKind::SessionLimit) => false,
                Err(_) => {
                    shared.state.evict_all();
                    true
                }
            };
            if wait && shared.config.consistency == Consistency::Immediate {
                let wait = shared.config.revocation_wait();
                tokio::time::sleep(wait).await;
                shared.state.stats.waited(wait);
            }
            result
        })
    }
}

async fn fence_loop(state: Arc<State>, bus: Arc<impl InvalidationBus>, config: CacheConfig) {
    let mut tick = tokio::time::interval(config.fence_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let epoch = state.epoch();
        let started = state.now();
        match tokio::time::timeout(config.lease, bus.fence()).await {
            Ok(Ok(())) => state.renew(started, epoch, config.lease),
            _ => state.stats.fence_failed(),
        }
    }
}

impl<S: TokenStore> TokenStore for CachedStore<S> {
    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
        let state = &self.shared.state;
        if let Some(record) = state.hit(id) {
            stats::hit(true);
            // The auth layer's `authenticate` span declares this field; elsewhere it records nothing.
            tracing::Span::current().record("cache", "hit");
            return StoreFuture::ready(Ok(Some(record)));
        }
        stats::hit(false);
        let ticket = state.ticket(id);
        let fill = move |state: &State, result: &Result<Option<TokenRecord>, StoreError>| {
            if let Ok(Some(record)) = result {
                state.fill(ticket, record.clone());
            }
        };
        match self.inner.find(id).try_take_ready() {
            Ok(result) => {
                fill(state, &result);
                StoreFuture::ready(result)
            }
            Err(pending) => {
                let state = state.clone();
                StoreFuture::new(async move {
                    let result = pending.await;
                    fill(&state, &result);
                    result
                })
            }
        }
    }

    fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
        // A login over the session limit may revoke the user's oldest sessions in the same step; the
        // store does not say whether it did, so such a login waits like any revocation.
        let may_revoke = session.limit.max().is_some() && session.limit.when_full() == WhenFull::RevokeOldest;
        let user = session.user_id.clone();
        self.revoking(self.inner.insert(session), move |state, _| state.evict_user(&user), move |_| may_revoke)
    }

    fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
        let evict = |state: &State, outcome: &ExchangeOutcome| match outcome {
            ExchangeOutcome::Exchanged(session) => state.evict_user(&session.user_id),
            ExchangeOutcome::Reused { user_id, .. } => state.evict_user(user_id),
            _ => {}
        };
        let revoked = |outcome: &ExchangeOutcome| !matches!(outcome, ExchangeOutcome::Invalid);
        self.revoking(self.inner.exchange_refresh(exchange), evict, revoked)
    }

    fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
        self.inner.list_sessions(user_id)
    }

    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
        let user = user_id.clone();
        let call = self.inner.revoke_sessions(user_id, sessions);
        // Waits even when it found nothing to revoke: an earlier call that failed (a timeout) may have
        // committed the revocation, and this one's success must still mean "no instance accepts it".
        self.revoking(call, move |state, _| state.evict_user(&user), |_| true)
    }

    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        let call = self.inner.prune_expired(expired_before, created_before);
        self.revoking(
            call,
            |state, &count| {
                if count > 0 {
                    state.evict_all()
                }
            },
            |&count| count > 0,
        )
    }

    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        self.inner.touch_last_used(id, at)
    }

    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<TokenRecord>> {
        self.inner.find_by_digest(digest)
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}

#[cfg(test)]
mod tests;
