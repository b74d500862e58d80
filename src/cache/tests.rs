//! Deterministic tests of the cache protocol: tokio's paused clock and an in-process bus whose
//! fences and deliveries the test controls.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;
use crate::store::TokenStoreExt;
use crate::{MemoryStore, NewToken};

/// A bus the test drives: it hands the sink out, and fences succeed unless `failing`.
#[derive(Clone, Default)]
struct TestBus {
    sink: Arc<Mutex<Option<Arc<dyn InvalidationSink>>>>,
    failing: Arc<AtomicBool>,
    fences: Arc<AtomicUsize>,
}

impl TestBus {
    fn sink(&self) -> Arc<dyn InvalidationSink> {
        self.sink.lock().unwrap().clone().expect("the cache started the bus")
    }
}

impl InvalidationBus for TestBus {
    fn run(&self, sink: Arc<dyn InvalidationSink>) -> BusFuture<()> {
        *self.sink.lock().unwrap() = Some(sink);
        Box::pin(std::future::pending())
    }

    fn fence(&self) -> BusFuture<Result<(), StoreError>> {
        self.fences.fetch_add(1, Ordering::SeqCst);
        let failing = self.failing.load(Ordering::SeqCst);
        Box::pin(async move {
            if failing {
                Err(StoreError::timeout())
            } else {
                Ok(())
            }
        })
    }
}

/// A store that counts `find`s and, when gated, holds each one until the gate opens.
#[derive(Clone, Default)]
struct Watched {
    inner: MemoryStore,
    finds: Arc<AtomicUsize>,
    gated: Arc<AtomicBool>,
    gate: Arc<Notify>,
}

impl TokenStore for Watched {
    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        let read = self.inner.find(id);
        if !self.gated.load(Ordering::SeqCst) {
            return read;
        }
        let gate = self.gate.clone();
        // The read happened (the value is the store's state now); its answer is held back.
        StoreFuture::new(async move {
            gate.notified().await;
            read.await
        })
    }
    fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
        self.inner.insert(session)
    }
    fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
        self.inner.exchange_refresh(exchange)
    }
    fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
        self.inner.list_sessions(user_id)
    }
    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
        self.inner.revoke_sessions(user_id, sessions)
    }
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        self.inner.prune_expired(expired_before, created_before)
    }
}

fn config() -> CacheConfig {
    CacheConfig::default().lease(Duration::from_millis(50)).fence_every(Duration::from_millis(10))
}

async fn cached(config: CacheConfig) -> (CachedStore<Watched>, Watched, TestBus) {
    let store = Watched::default();
    let bus = TestBus::default();
    let cache = CachedStore::new(store.clone(), bus.clone(), config);
    tokio::time::sleep(Duration::from_millis(15)).await; // the first fence
    (cache, store, bus)
}

fn finds(store: &Watched) -> usize {
    store.finds.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn a_hot_token_is_read_from_the_store_once() {
    let (cache, store, _bus) = cached(config()).await;
    let token = store.issue(NewToken::access(1u64)).await.unwrap();
    for _ in 0..100 {
        assert!(cache.find(token.record.id).await.unwrap().is_some());
    }
    assert_eq!(finds(&store), 1);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (99, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn not_found_is_never_cached() {
    let (cache, store, _bus) = cached(config()).await;
    assert!(cache.find(12345).await.unwrap().is_none());
    assert!(cache.find(12345).await.unwrap().is_none());
    assert_eq!(finds(&store), 2);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_served_before_the_first_fence() {
    let store = Watched::default();
    let cache = CachedStore::new(store.clone(), TestBus::default(), config());
    let token = store.issue(NewToken::access(1u64)).await.unwrap();
    cache.find(token.record.id).await.unwrap();
    cache.find(token.record.id).await.unwrap();
    assert_eq!(finds(&store), 2, "no fence has completed yet");
}

#[tokio::test(start_paused = true)]
async fn a_fill_racing_an_invalidation_is_dropped() {
    let (cache, store, bus) = cached(config()).await;
    let token = store.issue(NewToken::access(1u64)).await.unwrap();
    let id = token.record.id;
    store.gated.store(true, Ordering::SeqCst);
    let fill = tokio::spawn({
        let cache = cache.clone();
        async move { cache.find(id).await }
    });
    tokio::task::yield_now().await; // the read is in flight, its answer held
                                    // Another writer revokes it and the bus delivers, all while the old answer is in flight.
    store.inner.revoke_all_for_user(&1u64.into()).await.unwrap();
    bus.sink().invalidate(Invalidation::Tokens(vec![id]));
    store.gate.notify_one();
    assert!(fill.await.unwrap().unwrap().is_some(), "the read itself happened before the revocation");
    store.gated.store(false, Ordering::SeqCst);
    assert!(cache.find(id).await.unwrap().is_none(), "the stale answer was not cached");
    assert_eq!(cache.stats().fills_dropped, 1);
}

#[tokio::test(start_paused = true)]
async fn an_invalidation_evicts_only_what_it_names() {
    let (cache, store, bus) = cached(config()).await;
    let a = store.issue(NewToken::access(1u64)).await.unwrap().record.id;
    let b = store.issue(NewToken::access(2u64)).await.unwrap().record.id;
    cache.find(a).await.unwrap();
    cache.find(b).await.unwrap();
    bus.sink().invalidate(Invalidation::Tokens(vec![a]));
    cache.find(a).await.unwrap();
    cache.find(b).await.unwrap();
    assert_eq!(finds(&store), 3, "a read again, b still cached");
    bus.sink().invalidate(Invalidation::User(2u64.into()));
    cache.find(b).await.unwrap();
    assert_eq!(finds(&store), 4);
    bus.sink().invalidate(Invalidation::Everything);
    cache.find(a).await.unwrap();
    cache.find(b).await.unwrap();
    assert_eq!(finds(&store), 6);
}

#[tokio::test(start_paused = true)]
async fn when_fences_fail_the_lease_lapses_and_lookups_go_to_the_store() {
    let (cache, store, bus) = cached(config()).await;
    let id = store.issue(NewToken::access(1u64)).await.unwrap().record.id;
    cache.find(id).await.unwrap();
    bus.failing.store(true, Ordering::SeqCst);
    let failed_at = Instant::now();
    // Hits go on while the last good fence's lease lasts, and stop before it ends.
    while cache.lease_is_fresh() {
        cache.find(id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(failed_at.elapsed() <= Duration::from_millis(50), "{:?}", failed_at.elapsed());
    let before = finds(&store);
    cache.find(id).await.unwrap();
    cache.find(id).await.unwrap();
    assert_eq!(finds(&store), before + 2, "no hits without a lease");
    bus.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(15)).await;
    cache.find(id).await.unwrap();
    assert_eq!(finds(&store), before + 2, "hits again after a good fence");
    assert!(cache.stats().fence_failures > 0);
}

#[tokio::test(start_paused = true)]
async fn a_reset_empties_the_cache_and_waits_for_a_new_fence() {
    let (cache, store, bus) = cached(config()).await;
    let id = store.issue(NewToken::access(1u64)).await.unwrap().record.id;
    cache.find(id).await.unwrap();
    bus.sink().reset();
    cache.find(id).await.unwrap();
    cache.find(id).await.unwrap();
    assert_eq!(finds(&store), 3, "nothing is served until a fence after the reset");
    tokio::time::sleep(Duration::from_millis(15)).await;
    cache.find(id).await.unwrap();
    cache.find(id).await.unwrap();
    assert_eq!(finds(&store), 3, "the fill after the reset is served once a fence renewed the lease");
}

#[tokio::test(start_paused = true)]
async fn a_fill_that_spans_a_reset_is_dropped() {
    let (cache, store, bus) = cached(config()).await;
    let id = store.issue(NewToken::access(1u64)).await.unwrap().record.id;
    store.gated.store(true, Ordering::SeqCst);
    let fill = tokio::spawn({
        let cache = cache.clone();
        async move { cache.find(id).await }
    });
    tokio::task::yield_now().await;
    bus.sink().reset();
    store.gate.notify_one();
    fill.await.unwrap().unwrap();
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn a_fence_that_started_before_a_reset_does_not_renew() {
    let (cache, _store, bus) = cached(config()).await;
    let state = &cache.shared.state;
    let (epoch, started) = (state.epoch(), state.now());
    bus.sink().reset();
    state.renew(started, epoch, Duration::from_secs(1));
    assert!(!cache.lease_is_fresh());
}

#[tokio::test(start_paused = true)]
async fn a_revocation_waits_for_every_lease_to_lapse() {
    let (cache, store, _bus) = cached(config()).await;
    let id = store.issue(NewToken::access(1u64)).await.unwrap().record.id;
    cache.find(id).await.unwrap();
    let started = Instant::now();
    assert_eq!(cache.revoke_all_for_user(&1u64.into()).await.unwrap(), 1);
    let waited = started.elapsed();
    // 50 ms × 1.001/0.999 + 2 ms, and the timer's millisecond rounding.
    assert!(cache.config().revocation_wait() > Duration::from_micros(52_100));
    assert!(waited >= cache.config().revocation_wait() && waited <= Duration::from_millis(53), "{waited:?}");
    assert!(cache.find(id).await.unwrap().is_none());
    assert_eq!(cache.stats().revocation_waits, 1);
}

#[tokio::test(start_paused = true)]
async fn a_logout_that_finds_nothing_left_still_waits() {
    // A retry after a failed call that committed anyway (a timeout) finds nothing; its success must
    // still mean that no instance accepts the tokens.
    let (cache, store, _bus) = cached(config()).await;
    store.issue(NewToken::access(1u64)).await.unwrap();
    assert_eq!(store.revoke_all_for_user(&1u64.into()).await.unwrap(), 1);
    let started = Instant::now();
    assert_eq!(cache.revoke_all_for_user(&1u64.into()).await.unwrap(), 0);
    assert!(started.elapsed() >= cache.config().revocation_wait());
    assert_eq!(cache.stats().revocation_waits, 1);
}

#[tokio::test(start_paused = true)]
async fn bounded_staleness_answers_at_once() {
    let (cache, store, _bus) = cached(config().consistency(Consistency::BoundedStaleness)).await;
    let id = store.issue(NewToken::access(1u64)).await.unwrap().record.id;
    let started = Instant::now();
    assert_eq!(cache.revoke_all_for_user(&1u64.into()).await.unwrap(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(cache.find(id).await.unwrap().is_none(), "this instance evicted at once");
}

#[tokio::test(start_paused = true)]
async fn logins_under_a_session_limit_wait_and_others_do_not() {
    let (cache, _store, _bus) = cached(config()).await;
    use crate::session::SessionLimit;
    let started = Instant::now();
    cache.issue(NewToken::access(1u64).session_limit(SessionLimit::unlimited())).await.unwrap();
    cache.issue(NewToken::access(1u64).session_limit(SessionLimit::new(1, WhenFull::Refuse))).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    cache.issue(NewToken::access(1u64).session_limit(SessionLimit::new(1, WhenFull::RevokeOldest))).await.unwrap();
    assert!(started.elapsed() >= cache.config().revocation_wait());
}

#[tokio::test(start_paused = true)]
async fn the_cache_holds_at_most_its_capacity() {
    let (cache, store, _bus) = cached(config().capacity(64)).await;
    for user in 0..1000u64 {
        let id = store.issue(NewToken::access(user)).await.unwrap().record.id;
        cache.find(id).await.unwrap();
    }
    let stats = cache.stats();
    assert!(stats.entries <= 64, "{stats:?}");
    assert!(stats.evictions >= 1000 - 64, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn entries_older_than_the_maximum_age_are_read_again() {
    let (cache, store, _bus) = cached(config().max_entry_age(Duration::from_millis(100))).await;
    let id = store.issue(NewToken::access(1u64)).await.unwrap().record.id;
    cache.find(id).await.unwrap();
    cache.find(id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(101)).await;
    cache.find(id).await.unwrap();
    assert_eq!(finds(&store), 2);
}

/// Records the values given to span fields named `cache`.
#[derive(Clone, Default)]
struct CacheField(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CacheField {
    fn on_record(
        &self,
        _span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Visit<'a>(&'a Mutex<Vec<String>>);
        impl tracing::field::Visit for Visit<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "cache" {
                    self.0.lock().unwrap().push(format!("{value:?}"));
                }
            }
        }
        values.record(&mut Visit(&self.0));
    }
}

#[tokio::test(start_paused = true)]
async fn the_authenticate_span_says_when_a_request_was_served_from_memory() {
    use tower::{Service, ServiceBuilder, ServiceExt};
    use tracing_subscriber::layer::SubscriberExt;

    let field = CacheField::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(field.clone()));
    let (cache, _store, _bus) = cached(config()).await;
    let token = cache.get_ref().issue(NewToken::access(1u64)).await.unwrap();
    let mut api = ServiceBuilder::new()
        .layer(crate::TokenAuthLayer::new(cache.clone()))
        .service_fn(|_req: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(())) });
    for _ in 0..2 {
        let request = http::Request::get("/")
            .header(http::header::AUTHORIZATION, format!("Bearer {}", token.plain_text.expose()))
            .body(())
            .unwrap();
        assert_eq!(api.ready().await.unwrap().call(request).await.unwrap().status(), 200);
    }
    assert_eq!(*field.0.lock().unwrap(), ["\"hit\""], "the first request read the store, the second memory");
}
