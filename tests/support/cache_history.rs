//! The history checker for `CachedStore`: several instances (each its own store connections, bus and
//! cache) authenticate through the real auth layer from many tasks while a revoker revokes tokens at
//! random; every request's start, end and answer, and every revocation's start and end, are recorded
//! against one monotonic clock. The checker counts *stale accepts*: requests answered 200 that started
//! after a revocation of their token had returned. Faults are injected by [`FaultyBus`], which wraps
//! each instance's real bus.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{header::AUTHORIZATION, Request, Response};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_token_auth::cache::{BusFuture, CacheStats, CachedStore, Invalidation, InvalidationBus, InvalidationSink};
use tower_token_auth::session::SessionLimit;
use tower_token_auth::{NewToken, StoreError, TokenAuthLayer, TokenStore, TokenStoreExt, UserId};

/// Faults one instance's bus suffers, switchable during a run.
#[derive(Default)]
pub struct Faults {
    /// The instance's bus is stopped: invalidations are held (not applied) and fences do not
    /// complete, until resumed; then the held invalidations are applied in order.
    pub paused: AtomicBool,
    /// Every invalidation is applied this many milliseconds after it arrived, in order; a fence
    /// completes only once what arrived before it is applied (an honest slow channel).
    pub delay_ms: AtomicU64,
    /// Every fence first sleeps this many milliseconds.
    pub fence_delay_ms: AtomicU64,
    /// Invalidations are thrown away while fences go on succeeding (a broken channel: the checker
    /// must see it).
    pub drop_invalidations: AtomicBool,
    queue: Mutex<VecDeque<(Instant, Invalidation)>>,
    received: AtomicU64,
    applied: AtomicU64,
}

/// A bus that suffers [`Faults`].
pub struct FaultyBus<B> {
    pub inner: B,
    pub faults: Arc<Faults>,
}

struct FaultySink {
    inner: Arc<dyn InvalidationSink>,
    faults: Arc<Faults>,
}

impl InvalidationSink for FaultySink {
    fn invalidate(&self, what: Invalidation) {
        let f = &self.faults;
        if f.drop_invalidations.load(Ordering::SeqCst) {
            return;
        }
        let mut queue = f.queue.lock().unwrap();
        f.received.fetch_add(1, Ordering::SeqCst);
        let delay = f.delay_ms.load(Ordering::SeqCst);
        if queue.is_empty() && delay == 0 && !f.paused.load(Ordering::SeqCst) {
            self.inner.invalidate(what);
            f.applied.fetch_add(1, Ordering::SeqCst);
        } else {
            queue.push_back((Instant::now() + Duration::from_millis(delay), what));
        }
    }

    fn reset(&self) {
        self.inner.reset();
    }
}

/// Applies held invalidations when they are due and the bus is not paused.
async fn apply_held(sink: Arc<dyn InvalidationSink>, faults: Arc<Faults>) {
    loop {
        tokio::time::sleep(Duration::from_micros(500)).await;
        if faults.paused.load(Ordering::SeqCst) {
            continue;
        }
        let mut queue = faults.queue.lock().unwrap();
        while queue.front().is_some_and(|(due, _)| *due <= Instant::now()) {
            let (_, what) = queue.pop_front().unwrap();
            sink.invalidate(what);
            faults.applied.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl<B: InvalidationBus> InvalidationBus for FaultyBus<B> {
    fn run(&self, sink: Arc<dyn InvalidationSink>) -> BusFuture<()> {
        let faults = self.faults.clone();
        tokio::spawn(apply_held(sink.clone(), faults.clone()));
        self.inner.run(Arc::new(FaultySink { inner: sink, faults }))
    }

    fn fence(&self) -> BusFuture<Result<(), StoreError>> {
        let faults = self.faults.clone();
        let fence = self.inner.fence();
        Box::pin(async move {
            let delay = faults.fence_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            fence.await?;
            // What arrived before the reply must be applied before the fence completes.
            let arrived = faults.received.load(Ordering::SeqCst);
            while faults.applied.load(Ordering::SeqCst) < arrived
                || faults.paused.load(Ordering::SeqCst) && !faults.drop_invalidations.load(Ordering::SeqCst)
            {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            Ok(())
        })
    }
}

/// One instance: a cache over its own store connection, and the auth layer over it.
pub struct Instance<S> {
    pub cache: CachedStore<S>,
    pub faults: Arc<Faults>,
}

/// A fault schedule, run by a task alongside the history.
pub type FaultTask = Box<dyn FnOnce(Vec<Arc<Faults>>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

#[derive(Debug, Default)]
pub struct Report {
    pub requests: usize,
    pub accepted: usize,
    pub unavailable: usize,
    /// Requests that started after a revocation of their token had returned.
    pub after_revocation: usize,
    /// Of those, the ones answered 200: must be 0.
    pub stale_accepts: usize,
    /// Tokens whose revocation returned but which the store itself still holds after the run: a
    /// revocation the store lost (a failover), which no cache can hide. Their stale accepts are the
    /// store's, not the cache's.
    pub lost_revocations: usize,
    pub revocations: usize,
    /// Revocation attempts that failed (and were tried again).
    pub revocation_errors: usize,
    pub revocation_p50: Duration,
    pub revocation_p99: Duration,
    pub stats: Vec<CacheStats>,
}

impl Report {
    pub fn hits(&self) -> u64 {
        self.stats.iter().map(|s| s.hits).sum()
    }

    pub fn misses(&self) -> u64 {
        self.stats.iter().map(|s| s.misses).sum()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests ({} accepted, {} answered 503), {} after a revocation of their token, {} stale accepts; \
             {} revocations ({} failed attempts retried, {} lost by the store), wait p50 {:?} p99 {:?}; cache hits {} \
             misses {}; resets {:?}",
            self.requests,
            self.accepted,
            self.unavailable,
            self.after_revocation,
            self.stale_accepts,
            self.revocations,
            self.revocation_errors,
            self.lost_revocations,
            self.revocation_p50,
            self.revocation_p99,
            self.hits(),
            self.misses(),
            self.stats.iter().map(|s| s.resets).collect::<Vec<_>>(),
        )
    }
}

/// A token's plain text, and when its revocation returned.
type Token = (String, Option<Duration>);

struct Event {
    token: usize,
    start: Duration,
    status: u16,
}

/// Runs the history for `run_for` over `instances` and checks it.
pub async fn run_history<S: TokenStore + Clone>(
    instances: &[Instance<S>],
    run_for: Duration,
    workers_per_instance: usize,
    faults: Option<FaultTask>,
) -> Report {
    const LIVE: usize = 12;
    let clock = Instant::now();
    let user_base = tower_token_auth::testing::fresh_user().as_u64().unwrap() % 1_000_000_000_000 * 1_000_000;
    // Token i belongs to user `user_base + i`, alone; its plain text, and when its revocation returned.
    let tokens: Arc<Mutex<Vec<Token>>> = Arc::default();
    // A login that fails (a store answering 503 through a failover) is tried again.
    let issue = |store: &CachedStore<S>, i: usize| {
        let store = store.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let new = NewToken::access(user_base + i as u64).session_limit(SessionLimit::unlimited());
                match store.issue(new).await {
                    Ok(issued) => return issued.plain_text.expose().to_owned(),
                    Err(error) => assert!(Instant::now() < deadline, "logins fail for a minute: {error}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    for i in 0..LIVE {
        let plain = issue(&instances[i % instances.len()].cache, i).await;
        tokens.lock().unwrap().push((plain, None));
    }
    let live: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new((0..LIVE).collect()));
    let stop = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    for (n, instance) in instances.iter().enumerate() {
        for w in 0..workers_per_instance {
            let mut api = ServiceBuilder::new()
                .layer(TokenAuthLayer::new(instance.cache.clone()))
                .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
            let (tokens, live, stop) = (tokens.clone(), live.clone(), stop.clone());
            let mut seed = (n * 1000 + w) as u64 * 0x9E37_79B9 + 1;
            workers.push(tokio::spawn(async move {
                let mut events = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let r = (seed >> 33) as usize;
                    // Mostly live tokens; a fifth of the time one of the recently revoked ones.
                    let token = {
                        let live = live.lock().unwrap();
                        let newest = *live.iter().max().unwrap();
                        if r % 5 == 0 {
                            newest.saturating_sub(r / 5 % (2 * LIVE))
                        } else {
                            live[r / 5 % live.len()]
                        }
                    };
                    let plain = tokens.lock().unwrap()[token].0.clone();
                    let request = Request::get("/").header(AUTHORIZATION, format!("Bearer {plain}")).body(()).unwrap();
                    let start = clock.elapsed();
                    let status = api.ready().await.unwrap().call(request).await.unwrap().status().as_u16();
                    events.push(Event { token, start, status });
                    if events.len() % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                events
            }));
        }
    }

    let fault_task = faults.map(|f| tokio::spawn(f(instances.iter().map(|i| i.faults.clone()).collect())));

    // The revoker: a random live token, revoked through a random instance, replaced by a new one.
    let mut durations = Vec::new();
    let mut revocation_errors = 0;
    let mut seed = 7u64;
    let deadline = Instant::now() + run_for;
    while Instant::now() < deadline {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let r = (seed >> 33) as usize;
        tokio::time::sleep(Duration::from_millis(5 + (r % 20) as u64)).await;
        let slot = r % LIVE;
        let token = live.lock().unwrap()[slot];
        let instance = &instances[r / LIVE % instances.len()].cache;
        // A revocation that fails (503 through a failover) is tried again until one answers: only an
        // answered revocation counts. A retry may find nothing left if the failed call committed.
        let (mut failed, retry_until) = (0, Instant::now() + Duration::from_secs(60));
        let returned = loop {
            let start = Instant::now();
            match instance.revoke_all_for_user(&UserId::from(user_base + token as u64)).await {
                Ok(revoked) => {
                    // More than one: a login that failed after it committed (not acknowledged by
                    // replicas) and was tried again.
                    assert!(revoked >= 1 || failed > 0, "revoked {revoked} tokens");
                    durations.push(start.elapsed());
                    break clock.elapsed();
                }
                Err(error) => {
                    failed += 1;
                    revocation_errors += 1;
                    assert!(Instant::now() < retry_until, "revocations fail for a minute: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        tokens.lock().unwrap()[token].1 = Some(returned);
        // The replacement: a new user; one whose keys live on a primary that is down (a failover) is
        // skipped, so that revocations go on meanwhile.
        let next = loop {
            let next = tokens.lock().unwrap().len();
            let store = &instances[r % instances.len()].cache;
            let new = NewToken::access(user_base + next as u64).session_limit(SessionLimit::unlimited());
            let issued = store.issue(new).await;
            let mut tokens = tokens.lock().unwrap();
            match issued {
                Ok(issued) => {
                    tokens.push((issued.plain_text.expose().to_owned(), None));
                    break next;
                }
                Err(_) => tokens.push((format!("{next}|never-issued"), None)),
            }
        };
        live.lock().unwrap()[slot] = next;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(task) = fault_task {
        task.abort();
    }
    for instance in instances {
        let f = &instance.faults;
        f.paused.store(false, Ordering::SeqCst);
        f.fence_delay_ms.store(0, Ordering::SeqCst);
    }

    // The checker.
    let mut histories = Vec::new();
    for worker in workers {
        histories.push(worker.await.unwrap());
    }
    let tokens = tokens.lock().unwrap().clone();
    let mut report = Report { revocations: durations.len(), revocation_errors, ..Report::default() };
    for history in histories {
        for event in history {
            report.requests += 1;
            report.accepted += usize::from(event.status == 200);
            report.unavailable += usize::from(event.status == 503);
            if tokens[event.token].1.is_some_and(|revoked| event.start > revoked) {
                report.after_revocation += 1;
                report.stale_accepts += usize::from(event.status == 200);
            }
        }
    }
    for (plain, revoked) in tokens.iter() {
        let id = plain.split('|').next().and_then(|id| id.parse::<u64>().ok());
        if let (Some(_), Some(id)) = (revoked, id) {
            let mut found = None;
            for _ in 0..100 {
                match instances[0].cache.get_ref().find(id).await {
                    Ok(record) => {
                        found = Some(record.is_some());
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            report.lost_revocations += usize::from(found.unwrap_or(false));
        }
    }
    durations.sort();
    if !durations.is_empty() {
        report.revocation_p50 = durations[durations.len() / 2];
        report.revocation_p99 = durations[durations.len() * 99 / 100];
    }
    report.stats = instances.iter().map(|i| i.cache.stats()).collect();
    report
}

/// Pauses one instance's bus after another for `pause`, every `every`.
pub fn pause_each(pause: Duration, every: Duration) -> FaultTask {
    Box::new(move |faults| {
        Box::pin(async move {
            for n in 0.. {
                tokio::time::sleep(every).await;
                let f = &faults[n % faults.len()];
                f.paused.store(true, Ordering::SeqCst);
                tokio::time::sleep(pause).await;
                f.paused.store(false, Ordering::SeqCst);
            }
        })
    })
}

/// Delays every fence of one instance after another by `delay` for `during`, every `every`.
pub fn delay_fences(delay: Duration, during: Duration, every: Duration) -> FaultTask {
    Box::new(move |faults| {
        Box::pin(async move {
            for n in 0.. {
                tokio::time::sleep(every).await;
                let f = &faults[n % faults.len()];
                f.fence_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
                tokio::time::sleep(during).await;
                f.fence_delay_ms.store(0, Ordering::SeqCst);
            }
        })
    })
}
