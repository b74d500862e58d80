//! The crate's benchmarks, in one criterion run: `cargo bench --all-features --bench auth`.
//!
//! What each figure means, the targets and the last measured table are in `BENCHMARKS.md`. Compare
//! figures only within one run: the ratios are the result, the absolute times depend on the machine.
//!
//! Every request benchmark builds its request from the same prebuilt parts (method, URI, header map)
//! inside the timed loop, calls `ServiceExt::oneshot` on a clone of a ready service, and polls the
//! future once: every service here answers without waiting, so a pending poll is a bug and panics.
//! `threads/*` run the valid-token loop on one and on two threads at once and report the time per
//! request per thread. PostgreSQL figures need `TOWER_TOKEN_AUTH_POSTGRES_URL` (feature `postgres`);
//! without it they are skipped with a printed line. SQLite (feature `sqlite`) runs on an in-memory
//! database. The Redis and Redis Cluster benchmarks are in `benches/redis.rs`.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion};
use dashmap::DashMap;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{service_fn, Service, ServiceExt};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_layer::Layer;
use tower_token_auth::session::SessionLimit;
use tower_token_auth::{AuthenticatedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStore, TokenStoreExt, UserId};

/// Tokens in the store behind the request benchmarks.
const REQUEST_STORE_TOKENS: u64 = 100_000;
/// Background populations for the logout benchmarks.
const LOGOUT_POPULATIONS: [u64; 2] = [10_000, 1_000_000];
/// Tokens per logged-out user.
const TOKENS_PER_USER: [u64; 3] = [1, 10, 100];
/// At most this many tokens are issued for users about to log out before they do: 1% of the smaller N.
const LOGOUT_BATCH_TOKENS: u64 = 100;
/// Distinct tokens the `_spread` benchmarks go round.
const SPREAD_TOKENS: usize = 4096;
/// Every benchmark token expires, so every path has to read the clock.
const TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

mod common;
use common::{empty_ok, Body, RequestTemplate};

/// Runs a future that must complete on its first poll (everything benchmarked against `MemoryStore`).
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("benchmarked future did not complete at once"),
    }
}

/// One timed iteration: rebuild the request, clone the ready service, run it to the end. Not inlined,
/// so that `valgrind --tool=callgrind --toggle-collect='*one_request*'` counts exactly this.
#[inline(never)]
fn one_request<S, B>(service: &S, template: &RequestTemplate) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    now(service.clone().oneshot(template.request())).expect("services here never fail")
}

/// One iteration on a service the thread owns: `ready().await`, then `call`, as a server connection
/// drives its own clone of the service. Not inlined, like `one_request`.
#[inline(never)]
fn call_ready<S, B>(service: &mut S, template: &RequestTemplate) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    now(service.call(template.request())).expect("services here never fail")
}

fn status_of<S, B>(service: &S, template: &RequestTemplate) -> StatusCode
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    one_request(service, template).status()
}

/// A `MemoryStore` with `count` access tokens, one per user (users `1..=count`), the plain text of the
/// token in the middle, and of `SPREAD_TOKENS` tokens spread over the store.
fn memory_store(count: u64) -> (MemoryStore, String, Vec<String>) {
    let (store, middle, spread, _) = memory_store_with_all(count, false);
    (store, middle, spread)
}

/// [`memory_store`], and every token's plain text when `keep_all`.
fn memory_store_with_all(count: u64, keep_all: bool) -> (MemoryStore, String, Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let store = MemoryStore::with_capacity(usize::try_from(count).expect("fits"));
    let mut middle = String::new();
    let mut spread = Vec::new();
    let step = (count / SPREAD_TOKENS as u64).max(1);
    for user in 1..=count {
        let issued = now(store.issue(NewToken::access(user).expires_in(TOKEN_LIFETIME))).expect("issue");
        if user == count / 2 {
            middle = issued.plain_text.expose().to_owned();
        }
        if user % step == 0 && spread.len() < SPREAD_TOKENS {
            spread.push(issued.plain_text.expose().to_owned());
        }
        if keep_all {
            all.push(issued.plain_text.expose().to_owned());
        }
    }
    (store, middle, spread, all)
}

/// A deterministic shuffle (xorshift), so every run visits the tokens in the same random order.
fn shuffle<T>(items: &mut [T]) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

// ---------------------------------------------------------------------------------------------------
// The ideal path: the irreducible work of bearer-token authentication, hand-written, as the floor.
// ---------------------------------------------------------------------------------------------------

mod ideal {
    use super::*;

    /// What a minimal store keeps per token, inline in the map.
    pub(super) struct Record {
        digest: [u8; 32],
        user_id: u64,
        expires_at: Option<SystemTime>,
    }

    /// What a minimal middleware hands to handlers.
    #[derive(Clone, Copy)]
    pub(super) struct Principal {
        pub(super) user_id: u64,
        pub(super) token_id: u64,
    }

    /// `Authorization: Bearer {id}|{secret}` -> map lookup -> SHA-256 -> constant-time compare ->
    /// expiry -> principal in the extensions. Nothing else.
    #[derive(Clone)]
    pub(super) struct IdealAuth<S> {
        inner: S,
        tokens: Arc<DashMap<u64, Record>>,
    }

    impl<S> IdealAuth<S> {
        /// Mirrors the records of `store` (ids `1..=count`) into a plain map.
        pub(super) fn new(inner: S, store: &MemoryStore, count: u64) -> Self {
            let tokens = DashMap::with_capacity(usize::try_from(count).expect("fits"));
            for id in 1..=count {
                let record = now(store.find(id)).expect("find").expect("issued");
                let user_id = record.user_id.as_u64().expect("integer user ids");
                let record = Record { digest: *record.digest.as_bytes(), user_id, expires_at: record.expires_at };
                tokens.insert(id, record);
            }
            Self { inner, tokens: Arc::new(tokens) }
        }

        #[inline]
        fn authenticate(&self, headers: &HeaderMap) -> Option<Principal> {
            let token = headers.get(AUTHORIZATION)?.as_bytes().strip_prefix(b"Bearer ")?;
            let bar = token.iter().position(|&b| b == b'|')?;
            let (id, secret) = (&token[..bar], &token[bar + 1..]);
            let mut token_id: u64 = 0;
            for &b in id {
                if !b.is_ascii_digit() {
                    return None;
                }
                token_id = token_id.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            }
            let digest: [u8; 32] = Sha256::digest(secret).into();
            let record = self.tokens.get(&token_id)?;
            if !bool::from(record.digest.ct_eq(&digest)) {
                return None;
            }
            if record.expires_at.is_some_and(|at| at <= SystemTime::now()) {
                return None;
            }
            Some(Principal { user_id: record.user_id, token_id })
        }
    }

    impl<S, B> Service<Request<B>> for IdealAuth<S>
    where
        S: Service<Request<B>, Response = Response<Body>>,
    {
        type Response = Response<Body>;
        type Error = S::Error;
        type Future = IdealFuture<S::Future>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut request: Request<B>) -> Self::Future {
            match self.authenticate(request.headers()) {
                Some(principal) => {
                    request.extensions_mut().insert(principal);
                    IdealFuture::Inner { future: self.inner.call(request) }
                }
                None => {
                    let mut response = Response::new(Body::new());
                    *response.status_mut() = StatusCode::UNAUTHORIZED;
                    IdealFuture::Rejected { response: Some(response) }
                }
            }
        }
    }

    pin_project_lite::pin_project! {
        #[project = IdealFutureProj]
        pub(super) enum IdealFuture<F> {
            Inner { #[pin] future: F },
            Rejected { response: Option<Response<Body>> },
        }
    }

    impl<F, E> Future for IdealFuture<F>
    where
        F: Future<Output = Result<Response<Body>, E>>,
    {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project() {
                IdealFutureProj::Inner { future } => future.poll(cx),
                IdealFutureProj::Rejected { response } => Poll::Ready(Ok(response.take().expect("polled once"))),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The JWT row: `jsonwebtoken` HS256 decode (signature, `exp`), a principal into the extensions.
// ---------------------------------------------------------------------------------------------------

mod jwt {
    use super::*;
    use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Claims {
        sub: u64,
        exp: u64,
    }

    #[derive(Clone, Copy)]
    pub(super) struct Principal {
        #[allow(dead_code)]
        pub(super) user_id: u64,
    }

    #[derive(Clone)]
    pub(super) struct JwtAuth<S> {
        inner: S,
        key: Arc<(EncodingKey, DecodingKey, Validation)>,
    }

    impl<S> JwtAuth<S> {
        pub(super) fn new(inner: S) -> Self {
            let secret = b"a 256-bit secret for the benchmark, not for production";
            let keys =
                (EncodingKey::from_secret(secret), DecodingKey::from_secret(secret), Validation::new(Algorithm::HS256));
            Self { inner, key: Arc::new(keys) }
        }

        pub(super) fn token_for(&self, user: u64) -> String {
            let exp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() + 3600;
            encode(&Header::new(Algorithm::HS256), &Claims { sub: user, exp }, &self.key.0).expect("encode")
        }
    }

    impl<S, B> Service<Request<B>> for JwtAuth<S>
    where
        S: Service<Request<B>, Response = Response<Body>>,
    {
        type Response = Response<Body>;
        type Error = S::Error;
        type Future = ideal::IdealFuture<S::Future>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut request: Request<B>) -> Self::Future {
            let token = request.headers().get(AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
            let claims = token
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| decode::<Claims>(t, &self.key.1, &self.key.2).ok());
            match claims {
                Some(data) => {
                    request.extensions_mut().insert(Principal { user_id: data.claims.sub });
                    ideal::IdealFuture::Inner { future: self.inner.call(request) }
                }
                None => {
                    let mut response = Response::new(Body::new());
                    *response.status_mut() = StatusCode::UNAUTHORIZED;
                    ideal::IdealFuture::Rejected { response: Some(response) }
                }
            }
        }
    }
}

/// The valid path with the `metrics` feature's recording: no recorder installed (the facade's no-op),
/// and a real Prometheus recorder.
#[cfg(feature = "metrics")]
fn metrics_benches(group: &mut BenchmarkGroup<'_, WallTime>, store: &MemoryStore, valid: &RequestTemplate) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    // A layer of its own: it looks its metric handles up on its first request, under this recorder.
    let measured = TokenAuthLayer::new(store.clone()).layer(empty_ok());
    metrics::with_local_recorder(&recorder, || assert_eq!(status_of(&measured, valid), StatusCode::OK));
    group.bench_function("token_auth_valid_prometheus", |b| {
        metrics::with_local_recorder(&recorder, || b.iter(|| one_request(&measured, valid)))
    });
    let rendered = recorder.handle().render();
    assert!(rendered.contains("tower_token_auth_authenticate_duration_seconds_count{result=\"success\"}"));
}

#[cfg(not(feature = "metrics"))]
fn metrics_benches(_: &mut BenchmarkGroup<'_, WallTime>, _: &MemoryStore, _: &RequestTemplate) {
    println!("skipping request/token_auth_valid_prometheus: built without feature `metrics`");
}

// ---------------------------------------------------------------------------------------------------
// request/*
// ---------------------------------------------------------------------------------------------------

fn request_benches(c: &mut Criterion) {
    let (store, token, spread, all) = memory_store_with_all(REQUEST_STORE_TOKENS, true);
    let cold: Vec<RequestTemplate> = spread.iter().map(|token| RequestTemplate::bearer(token)).collect();
    let mut every: Vec<RequestTemplate> = all.iter().map(|token| RequestTemplate::bearer(token)).collect();
    shuffle(&mut every);
    drop(all);
    let valid = RequestTemplate::bearer(&token);
    let id = token.split('|').next().expect("id");
    let wrong_secret = RequestTemplate::bearer(&format!("{id}|{}", "x".repeat(48)));
    let unknown_id = RequestTemplate::bearer(&format!("{}|{}", REQUEST_STORE_TOKENS * 10, &token[id.len() + 1..]));
    let missing = RequestTemplate::new(None);

    let bare = empty_ok();
    #[allow(deprecated)] // upstream deprecates the static-token validators; they are the baseline here
    let tower_http = ValidateRequestHeaderLayer::bearer(&token).layer(empty_ok());
    let ideal = ideal::IdealAuth::new(empty_ok(), &store, REQUEST_STORE_TOKENS);
    let token_auth = TokenAuthLayer::new(store.clone()).layer(empty_ok());

    // Check that every benchmark takes the path its name says.
    assert_eq!(status_of(&bare, &valid), StatusCode::OK);
    assert_eq!(status_of(&tower_http, &valid), StatusCode::OK);
    assert_eq!(status_of(&tower_http, &missing), StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&ideal, &valid), StatusCode::OK);
    assert_eq!(status_of(&ideal, &wrong_secret), StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&token_auth, &valid), StatusCode::OK);
    for rejected in [&wrong_secret, &missing, &unknown_id] {
        assert_eq!(status_of(&token_auth, rejected), StatusCode::UNAUTHORIZED);
    }
    for template in cold.iter().step_by(64) {
        assert_eq!(status_of(&ideal, template), StatusCode::OK);
        assert_eq!(status_of(&token_auth, template), StatusCode::OK);
    }
    let expected_user = UserId::from(REQUEST_STORE_TOKENS / 2);
    let sees_the_user = service_fn(move |request: Request<Body>| {
        let token = request.extensions().get::<AuthenticatedToken>().expect("set by the layer");
        let status = if *token.user_id() == expected_user { StatusCode::OK } else { StatusCode::CONFLICT };
        std::future::ready(Ok::<_, Infallible>(Response::builder().status(status).body(Body::new()).unwrap()))
    });
    assert_eq!(status_of(&TokenAuthLayer::new(store.clone()).layer(sees_the_user), &valid), StatusCode::OK);
    let token_id: u64 = id.parse().expect("numeric id");
    let sees_the_principal = service_fn(move |request: Request<Body>| {
        let principal = request.extensions().get::<ideal::Principal>().expect("set by the ideal path");
        let right = principal.user_id == REQUEST_STORE_TOKENS / 2 && principal.token_id == token_id;
        let status = if right { StatusCode::OK } else { StatusCode::CONFLICT };
        std::future::ready(Ok::<_, Infallible>(Response::builder().status(status).body(Body::new()).unwrap()))
    });
    let ideal_check = ideal::IdealAuth::new(sees_the_principal, &store, REQUEST_STORE_TOKENS);
    assert_eq!(status_of(&ideal_check, &valid), StatusCode::OK);

    let mut group = c.benchmark_group("request");
    group.bench_function("bare", |b| b.iter(|| one_request(&bare, &valid)));
    group.bench_function("tower_http_bearer", |b| b.iter(|| one_request(&tower_http, &valid)));
    group.bench_function("ideal_valid", |b| b.iter(|| one_request(&ideal, &valid)));
    group.bench_function("token_auth_valid", |b| b.iter(|| one_request(&token_auth, &valid)));
    group.bench_function("token_auth_invalid_secret", |b| b.iter(|| one_request(&token_auth, &wrong_secret)));
    group.bench_function("token_auth_missing_header", |b| b.iter(|| one_request(&token_auth, &missing)));
    group.bench_function("token_auth_unknown_id", |b| b.iter(|| one_request(&token_auth, &unknown_id)));
    // A different token on every request, going round SPREAD_TOKENS of them in turn...
    group.bench_function("ideal_valid_spread", |b| {
        let mut next = cold.iter().cycle();
        b.iter(|| one_request(&ideal, next.next().expect("endless")))
    });
    group.bench_function("token_auth_valid_spread", |b| {
        let mut next = cold.iter().cycle();
        b.iter(|| one_request(&token_auth, next.next().expect("endless")))
    });
    // ... and over all REQUEST_STORE_TOKENS in a random order: what a server with many users sees.
    group.bench_function("ideal_valid_spread_100k", |b| {
        let mut next = every.iter().cycle();
        b.iter(|| one_request(&ideal, next.next().expect("endless")))
    });
    group.bench_function("token_auth_valid_spread_100k", |b| {
        let mut next = every.iter().cycle();
        b.iter(|| one_request(&token_auth, next.next().expect("endless")))
    });
    // The row users compare against: a JWT (HS256) checked by signature and expiry alone. It cannot be
    // revoked before it expires.
    let jwt = jwt::JwtAuth::new(empty_ok());
    let jwt_valid = RequestTemplate::bearer(&jwt.token_for(REQUEST_STORE_TOKENS / 2));
    assert_eq!(status_of(&jwt, &jwt_valid), StatusCode::OK);
    assert_eq!(status_of(&jwt, &wrong_secret), StatusCode::UNAUTHORIZED);
    group.bench_function("jwt_hs256_valid", |b| b.iter(|| one_request(&jwt, &jwt_valid)));
    metrics_benches(&mut group, &store, &valid);
    group.finish();

    // The valid-token loop on 1 and 2 threads at once. `bare` and the ideal path show what the machine
    // and a plain DashMap allow.
    let mut group = c.benchmark_group("threads");
    for loop_kind in [ThreadLoop::OwnService, ThreadLoop::ClonePerRequest] {
        thread_benches(&mut group, "token_auth_valid", &token_auth, &valid, loop_kind);
        thread_benches(&mut group, "ideal_valid", &ideal, &valid, loop_kind);
        thread_benches(&mut group, "bare", &bare, &valid, loop_kind);
    }
    group.finish();
}

/// How each thread drives the service.
#[derive(Clone, Copy)]
enum ThreadLoop {
    /// The thread clones the service once and calls it after `poll_ready`, as a connection task does.
    OwnService,
    /// A clone per request, then `oneshot`, as `request/*` and hyper-util's `TowerToHyperService` do:
    /// every clone also bumps the reference count of whatever the middleware shares (its `Arc`ed
    /// configuration), from both threads.
    ClonePerRequest,
}

// ---------------------------------------------------------------------------------------------------
// threads/*: the token_auth_valid loop on 1 and 2 threads at once, nanoseconds per request per thread.
// ---------------------------------------------------------------------------------------------------

fn thread_benches<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    service: &S,
    template: &RequestTemplate,
    loop_kind: ThreadLoop,
) where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    for threads in [1, 2] {
        let suffix = match loop_kind {
            ThreadLoop::OwnService => "",
            ThreadLoop::ClonePerRequest => "_clone_per_request",
        };
        group.bench_function(format!("{name}{suffix}_{threads}t"), |b| {
            b.iter_custom(|iters| {
                let start = Arc::new(Barrier::new(threads));
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        let (mut service, template, start) =
                            (service.clone(), template.for_another_thread(), Arc::clone(&start));
                        std::thread::spawn(move || {
                            start.wait();
                            let began = Instant::now();
                            for _ in 0..iters {
                                match loop_kind {
                                    ThreadLoop::OwnService => black_box(call_ready(&mut service, &template)),
                                    ThreadLoop::ClonePerRequest => black_box(one_request(&service, &template)),
                                };
                            }
                            began.elapsed()
                        })
                    })
                    .collect();
                let total: Duration = workers.into_iter().map(|w| w.join().expect("worker")).sum();
                // Mean time per thread for `iters` requests each: per-request cost on one thread.
                total / u32::try_from(threads).expect("few threads")
            })
        });
    }
}

// ---------------------------------------------------------------------------------------------------
// store/*
// ---------------------------------------------------------------------------------------------------

fn store_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");

    // Stores are built on first use, so that a filtered run (`-- request/`) does not build them.
    let mut store = None;
    let issuer = UserId::from("bench-issuer");
    group.bench_function("issue", |b| {
        let (store, ..) = store.get_or_insert_with(|| memory_store(REQUEST_STORE_TOKENS));
        b.iter_custom(|iters| {
            let began = Instant::now();
            for _ in 0..iters {
                black_box(
                    now(store.issue(NewToken::access(issuer.clone()).expires_in(TOKEN_LIFETIME))).expect("issue"),
                );
            }
            let elapsed = began.elapsed();
            // Keep the population at REQUEST_STORE_TOKENS between samples (untimed).
            now(store.revoke_all_for_user(&issuer)).expect("revoke");
            elapsed
        })
    });
    drop(store);

    for population in LOGOUT_POPULATIONS {
        let mut store = None;
        let mut next_user = population;
        for k in TOKENS_PER_USER {
            let id = BenchmarkId::new("logout_user_with_k_tokens", format!("N={population}/k={k}"));
            group.bench_function(id, |b| {
                let (store, ..) = store.get_or_insert_with(|| memory_store(population));
                b.iter_batched(
                    || {
                        // A user not seen before, with k tokens among the N others.
                        next_user += 1;
                        let user = UserId::from(next_user);
                        for _ in 0..k {
                            now(store.issue(NewToken::access(user.clone()).expires_in(TOKEN_LIFETIME))).expect("issue");
                        }
                        user
                    },
                    |user| {
                        let revoked = now(store.revoke_all_for_user(&user)).expect("revoke");
                        debug_assert_eq!(revoked, k);
                        revoked
                    },
                    // Criterion's SmallInput would run up to iters/10 setups before the first logout:
                    // tens of thousands of extra users, so the "N = 10,000" store would really hold
                    // five times as many. Batches of LOGOUT_BATCH_TOKENS tokens keep N what it says, and
                    // still read the clock only once per 100 tokens revoked (or per 100-token logout).
                    BatchSize::NumIterations((LOGOUT_BATCH_TOKENS / k).max(1)),
                )
            });
        }
        if population == LOGOUT_POPULATIONS[0] {
            prune_bench(&mut group, &mut store, population);
        }
        if let Some((store, ..)) = &store {
            assert_eq!(store.len() as u64, population, "logout or prune left tokens behind");
        }
    }
    group.finish();
}

/// `prune_expired` over `population` live tokens of which 1% more have expired.
fn prune_bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    store: &mut Option<(MemoryStore, String, Vec<String>)>,
    population: u64,
) {
    let expired = population / 100;
    let t0 = SystemTime::now() - Duration::from_secs(3600);
    let id = BenchmarkId::new("prune_expired", format!("N={population}/expired={expired}"));
    group.bench_function(id, |b| {
        let (store, ..) = store.get_or_insert_with(|| memory_store(population));
        b.iter_batched(
            || {
                for user in 0..expired {
                    let token = NewToken::access(u64::MAX - user).issued_at(t0).expires_in(Duration::from_secs(60));
                    now(store.issue(token)).expect("issue");
                }
            },
            // One prune removes every expired token: one setup per iteration.
            |()| now(store.prune_expired(SystemTime::now(), None)).expect("prune"),
            BatchSize::PerIteration,
        )
    });
}

// ---------------------------------------------------------------------------------------------------
// store/*: what one user or one busy token costs everyone else (issue 14)
// ---------------------------------------------------------------------------------------------------

fn hardening_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");

    // Last-use tracking on the request path, once the layer has seen N distinct tokens: every request
    // here is due for a write (interval zero), the worst case. (No runtime, so no write is spawned: this
    // is the request path's share.)
    for population in [10_000u64, 1_000_000] {
        let (store, _, _, all) = memory_store_with_all(population, true);
        let layer = TokenAuthLayer::new(store.clone()).track_last_used(Duration::ZERO).layer(empty_ok());
        for token in &all {
            assert_eq!(status_of(&layer, &RequestTemplate::bearer(token)), StatusCode::OK);
        }
        let spread: Vec<RequestTemplate> =
            all.iter().step_by(all.len() / SPREAD_TOKENS).map(|token| RequestTemplate::bearer(token)).collect();
        drop(all);
        group.bench_function(BenchmarkId::new("track_last_used", format!("seen={population}")), |b| {
            let mut next = spread.iter().cycle();
            b.iter(|| one_request(&layer, next.next().expect("endless")))
        });
    }

    // Pruning one user's k expired tokens: linear in k (it was quadratic: 11 / 42 / 166 ms for 10k / 20k /
    // 40k).
    for k in [10_000u64, 20_000, 40_000] {
        let store = MemoryStore::new();
        let t0 = SystemTime::now() - Duration::from_secs(3600);
        group.bench_function(BenchmarkId::new("prune_one_user", format!("expired={k}")), |b| {
            b.iter_batched(
                || {
                    for _ in 0..k {
                        let token = NewToken::access(7u64)
                            .issued_at(t0)
                            .expires_in(Duration::from_secs(60))
                            .session_limit(SessionLimit::unlimited());
                        now(store.issue(token)).expect("issue");
                    }
                },
                |()| {
                    let pruned = now_blocking(store.prune_expired(SystemTime::now(), None));
                    assert_eq!(pruned, k);
                },
                BatchSize::PerIteration,
            )
        });
    }

    // Another user's login and logout, alone and while a second thread logs out users holding 20,000
    // tokens each, over and over: no store-wide lock, so the small user does not wait for the big ones.
    let store = MemoryStore::new();
    let small = |store: &MemoryStore| {
        now(store.issue(NewToken::access(1u64))).expect("issue");
        assert_eq!(now(store.revoke_all_for_user(&1u64.into())).expect("revoke"), 1);
    };
    group.bench_function("small_user_logout_alone", |b| b.iter(|| small(&store)));
    group.bench_function("small_user_logout_during_big_logouts", |b| {
        b.iter_custom(|iters| {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let big = {
                let (store, stop) = (store.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut user = 1_000_000u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        user += 1;
                        for _ in 0..20_000 {
                            let token = NewToken::access(user).session_limit(SessionLimit::unlimited());
                            now(store.issue(token)).expect("issue");
                        }
                        now(store.revoke_all_for_user(&user.into())).expect("revoke");
                    }
                })
            };
            let began = Instant::now();
            for _ in 0..iters {
                small(&store);
            }
            let elapsed = began.elapsed();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            big.join().expect("big logouts");
            elapsed
        })
    });
    group.finish();
}

/// Runs a store future that may go to tokio's blocking pool (`MemoryStore::prune_expired` does inside a
/// runtime; here there is none, so it runs inline).
fn now_blocking<T>(future: impl Future<Output = Result<T, tower_token_auth::StoreError>>) -> T {
    now(future).expect("store call")
}

/// `request/token_auth_valid_sqlite` (an in-memory database, always) and `_postgres` (when
/// `TOWER_TOKEN_AUTH_POSTGRES_URL` is set), on a table of their own that is dropped afterwards.
#[cfg(feature = "sql")]
fn sql_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("request");
    #[cfg(feature = "sqlite")]
    sql_bench(&mut group, &runtime, "sqlite", "sqlite::memory:");
    #[cfg(not(feature = "sqlite"))]
    println!("skipping request/token_auth_valid_sqlite: built without feature `sqlite`");
    #[cfg(feature = "postgres")]
    match std::env::var("TOWER_TOKEN_AUTH_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => sql_bench(&mut group, &runtime, "postgres", &url),
        _ => println!("skipping request/token_auth_valid_postgres: TOWER_TOKEN_AUTH_POSTGRES_URL is not set"),
    }
    #[cfg(not(feature = "postgres"))]
    println!("skipping request/token_auth_valid_postgres: built without feature `postgres`");
    group.finish();
}

#[cfg(feature = "sql")]
fn sql_bench(group: &mut BenchmarkGroup<'_, WallTime>, runtime: &tokio::runtime::Runtime, backend: &str, url: &str) {
    use tower_token_auth::store::sql::SqlStore;

    let table = format!("tta_bench_{}", std::process::id());
    let store = runtime.block_on(SqlStore::connect(url)).expect("connect to the database").table(&table);
    runtime.block_on(store.create_table_if_missing()).expect("create the table");
    let issued = runtime.block_on(store.issue(NewToken::access(1u64).expires_in(TOKEN_LIFETIME))).expect("issue");
    let valid = RequestTemplate::bearer(issued.plain_text.expose());
    let token_auth = TokenAuthLayer::new(store.clone()).layer(empty_ok());
    let response = runtime.block_on(token_auth.clone().oneshot(valid.request())).expect("request");
    assert_eq!(response.status(), StatusCode::OK);

    group.bench_function(format!("token_auth_valid_{backend}"), |b| {
        b.to_async(runtime).iter(|| token_auth.clone().oneshot(valid.request()))
    });

    #[cfg(feature = "postgres")]
    if backend == "postgres" {
        runtime.block_on(async {
            let pool = sqlx::PgPool::connect(url).await.expect("connect to PostgreSQL");
            sqlx::query(&format!("DROP TABLE {table}")).execute(&pool).await.expect("drop the table");
        });
    }
}

#[cfg(not(feature = "sql"))]
fn sql_benches(_: &mut Criterion) {
    println!("skipping request/token_auth_valid_postgres and _sqlite: built without feature `sql`");
}

fn config() -> Criterion {
    Criterion::default().sample_size(40).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = request_benches, store_benches, hardening_benches, sql_benches
}
criterion_main!(benches);
