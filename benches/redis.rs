//! `RedisStore` benchmarks, single primary and Redis Cluster:
//! `cargo bench --features redis --bench redis`, with `TOWER_TOKEN_AUTH_REDIS_URL` (e.g.
//! `redis://127.0.0.1:6379/0`) and/or `TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL` (the seed list
//! `scripts/redis-cluster.sh start` prints). A target whose variable is unset is skipped with a line.
//!
//! - `store/redis_find`, `store/redis_cluster_find`: one `RedisStore::find`, next to `.._raw`, the
//!   same `HMGET` (same key, same fields) through redis-rs alone, decoded to a `redis::Value`: the
//!   limit.
//! - `request/token_auth_valid_redis`, `.._redis_cluster`: one request through `TokenAuthLayer`
//!   over the store (the `RequestTemplate` pattern of `benches/auth.rs`), next to `request/ideal_..`:
//!   the hand-written floor (raw `HMGET`, SHA-256, constant-time compare, expiry, principal).
//! - `throughput_redis/*/c{1,16,64}`, `throughput_redis_cluster/*/c..`: `c` concurrent request loops
//!   on a two-worker runtime, through the layer (`layer`), `find` alone (`find`), the ideal path
//!   (`ideal`) and the raw `HMGET` (`raw`); criterion reports the time per request.
//! - Then, outside criterion, **ratios within one run**: the same loops interleaved (raw, layer,
//!   find, ideal, repeated `ROUNDS` times, `TOWER_TOKEN_AUTH_BENCH_ROUND_MS` ms each, default 1000),
//!   printed as requests per second and crate/raw. Interleaving keeps a noisy machine from favouring
//!   one side. Nothing here asserts a time.
//!
//! Keys live under a prefix of their own (`tta-bench-redis-{pid}:`) and are deleted afterwards.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput};
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_token_auth::store::redis::RedisStore;
use tower_token_auth::{NewToken, TokenAuthLayer, TokenDigest, TokenStore, TokenStoreExt, UserId};

mod common;
use common::{empty_ok, Body, RequestTemplate};

/// Counts allocations while `COUNTING` is set (the diagnostics' allocations per request).
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Distinct tokens (one user each) the loops go round.
const TOKENS: usize = 64;
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// Interleaved rounds per concurrency in the ratio report (`TOWER_TOKEN_AUTH_BENCH_ROUNDS`).
const ROUNDS: usize = 7;
/// What `find` reads for an access token (the store's documented field names), for the raw path.
const FIND_FIELDS: [&str; 8] = ["u", "n", "ab", "sid", "ad", "ae", "ac", "al"];

/// A raw redis-rs connection of either kind.
#[derive(Clone)]
enum Raw {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Raw {
    async fn query(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Raw::Single(c) => c.req_packed_command(cmd).await,
            Raw::Cluster(c) => c.req_packed_command(cmd).await,
        }
    }
}

/// One issued token: its id, plain text, session key and digest.
struct Token {
    id: u64,
    template: RequestTemplate,
    key: String,
    secret: String,
}

/// Everything one target (single primary or cluster) needs.
struct Target {
    name: &'static str,
    store: RedisStore,
    raw: Raw,
    manager: Option<redis::aio::ConnectionManager>,
    tokens: Arc<Vec<Token>>,
}

impl Target {
    fn raw_cmd(&self, i: usize) -> Cmd {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&self.tokens[i].key).arg(&FIND_FIELDS[..]);
        cmd
    }
}

/// What the ideal path hands to the inner service.
#[derive(Clone, Copy)]
struct Principal {
    user_id: u64,
    token_id: u64,
}

/// The hand-written floor of authenticating one request against Redis, as a minimal middleware
/// would: `Authorization: Bearer {id}|{secret}` -> the session key -> `HMGET` -> SHA-256 ->
/// constant-time compare -> expiry -> principal in the extensions -> the inner service's response.
async fn ideal(raw: &mut Raw, prefix: &str, mut request: Request<Body>) -> Response<Body> {
    let unauthorized = || {
        let mut response = Response::new(Body::new());
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
    };
    let Some(token) = request.headers().get(AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")) else {
        return unauthorized();
    };
    let Some(bar) = token.iter().position(|&b| b == b'|') else { return unauthorized() };
    let Some(id) = std::str::from_utf8(&token[..bar]).ok().and_then(|id| id.parse::<u64>().ok()) else {
        return unauthorized();
    };
    let presented: [u8; 32] = Sha256::digest(&token[bar + 1..]).into();
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(format!("{prefix}{{{}}}:s:{}", id & 16_383, id >> 15)).arg(&FIND_FIELDS[..]);
    let Ok(Value::Array(fields)) = raw.query(&cmd).await else { return unauthorized() };
    let text = |i: usize| match fields.get(i) {
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
        _ => None,
    };
    let Some(digest) = text(4).and_then(TokenDigest::from_hex) else { return unauthorized() };
    let expires = text(5).and_then(|ms| ms.parse::<u64>().ok());
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_millis() as u64;
    if !bool::from(digest.as_bytes().ct_eq(&presented)) || expires.is_some_and(|at| at <= now) {
        return unauthorized();
    }
    let user_id = text(0).and_then(|u| u.parse().ok()).unwrap_or_default();
    request.extensions_mut().insert(Principal { user_id, token_id: id });
    // The inner service: an empty 200 that hands the principal back, so the check below can see it.
    let mut response = Response::new(Body::new());
    response.extensions_mut().insert(*request.extensions().get::<Principal>().expect("just inserted"));
    response
}

async fn connect(name: &'static str, url: &str, prefix: &str) -> Target {
    let store = RedisStore::connect(url).await.expect("connect").key_prefix(prefix);
    let manager = if store.is_cluster() {
        None
    } else {
        Some(redis::Client::open(url).expect("url").get_connection_manager().await.expect("manager"))
    };
    let raw = if store.is_cluster() {
        let nodes: Vec<&str> = url.split(',').collect();
        Raw::Cluster(
            redis::cluster::ClusterClient::new(nodes).expect("seeds").get_async_connection().await.expect("raw"),
        )
    } else {
        Raw::Single(redis::Client::open(url).expect("url").get_multiplexed_async_connection().await.expect("raw"))
    };
    let mut tokens = Vec::new();
    for user in 1..=TOKENS as u64 {
        let issued = store
            .issue(NewToken::access(user).name("bench").expires_in(Duration::from_secs(365 * 86400)))
            .await
            .expect("issue");
        let plain = issued.plain_text.expose();
        let id = issued.record.id;
        tokens.push(Token {
            id,
            template: RequestTemplate::bearer(plain),
            key: format!("{prefix}{{{}}}:s:{}", id & 16_383, id >> 15),
            secret: plain[plain.find('|').expect("bar") + 1..].to_owned(),
        });
    }
    Target { name, store, raw, manager, tokens: Arc::new(tokens) }
}

/// What one loop iteration does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Raw,
    Find,
    Layer,
    Ideal,
    /// Diagnostics (`TOWER_TOKEN_AUTH_BENCH_DIAGNOSE=1`): the raw `HMGET` on a connection cloned per
    /// request, through a `ConnectionManager` cloned per request, and that plus a `tokio` timeout.
    RawClone,
    RawManager,
    RawManagerTimeout,
    /// The layer with `lookup_timeout(None)`: the store's command timeout is then the only timer.
    LayerOneTimer,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Raw => "raw",
            Path::Find => "find",
            Path::Layer => "layer",
            Path::Ideal => "ideal",
            Path::RawClone => "raw_clone",
            Path::RawManager => "raw_manager",
            Path::RawManagerTimeout => "raw_manager_timeout",
            Path::LayerOneTimer => "layer_one_timer",
        }
    }
}

/// Runs `concurrency` loops of `path` until `requests` are done (`Some`) or `stop` is set, and returns
/// how many were done and how long it took.
async fn drive(
    target: &Target,
    path: Path,
    concurrency: usize,
    requests: Option<u64>,
    stop: Arc<AtomicBool>,
) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (tokens, store, mut raw) = (Arc::clone(&target.tokens), target.store.clone(), target.raw.clone());
            let layer = TokenAuthLayer::new(store.clone());
            let layer = if path == Path::LayerOneTimer { layer.lookup_timeout(None) } else { layer };
            let mut layer = layer.layer(empty_ok());
            let manager = target.manager.clone();
            let prefix = target.store.prefix().to_owned();
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut i = worker;
                loop {
                    let n = done.fetch_add(1, Ordering::Relaxed);
                    if requests.is_some_and(|limit| n >= limit) || stop.load(Ordering::Relaxed) {
                        done.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                    let token = &tokens[i % TOKENS];
                    // As a hand-written store would: the command is built per request.
                    let hmget = || {
                        let mut cmd = redis::cmd("HMGET");
                        cmd.arg(&token.key).arg(&FIND_FIELDS[..]);
                        cmd
                    };
                    match path {
                        Path::Raw => {
                            black_box(raw.query(&hmget()).await.expect("HMGET"));
                        }
                        Path::RawClone => {
                            black_box(raw.clone().query(&hmget()).await.expect("HMGET"));
                        }
                        Path::RawManager => {
                            let mut manager = manager.clone().expect("single primary");
                            black_box(manager.req_packed_command(&hmget()).await.expect("HMGET"));
                        }
                        Path::RawManagerTimeout => {
                            let mut manager = manager.clone().expect("single primary");
                            let cmd = hmget();
                            let query = manager.req_packed_command(&cmd);
                            black_box(
                                tokio::time::timeout(Duration::from_secs(3), query)
                                    .await
                                    .expect("in time")
                                    .expect("HMGET"),
                            );
                        }
                        Path::Find => {
                            black_box(store.find(token.id).await.expect("find").expect("stored"));
                        }
                        Path::Layer | Path::LayerOneTimer => {
                            let response = layer.ready().await.expect("ready").call(token.template.request()).await;
                            debug_assert_eq!(response.as_ref().map(|r| r.status()).ok(), Some(StatusCode::OK));
                            black_box(response.expect("infallible"));
                        }
                        Path::Ideal => {
                            black_box(ideal(&mut raw, &prefix, token.template.request()).await);
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a request loop panicked");
    }
    (done.load(Ordering::Relaxed), started.elapsed())
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("runtime")
}

fn benches(c: &mut Criterion, target: &Target, single: &tokio::runtime::Runtime, multi: &tokio::runtime::Runtime) {
    let name = target.name;
    let token = &target.tokens[0];
    // Every path answers what its name says.
    let mut layer = TokenAuthLayer::new(target.store.clone()).layer(empty_ok());
    let status =
        single.block_on(async { layer.ready().await.unwrap().call(token.template.request()).await.unwrap().status() });
    assert_eq!(status, StatusCode::OK);
    let mut raw = target.raw.clone();
    let prefix = target.store.prefix();
    let response = single.block_on(ideal(&mut raw, prefix, token.template.request()));
    let principal = response.extensions().get::<Principal>().expect("authenticated");
    assert_eq!((response.status(), principal.token_id, principal.user_id), (StatusCode::OK, token.id, 1));
    let forged = RequestTemplate::bearer(&format!("{}|not-the-secret", token.id));
    assert_eq!(single.block_on(ideal(&mut raw, prefix, forged.request())).status(), StatusCode::UNAUTHORIZED);
    let found = single.block_on(target.store.find(token.id)).expect("find").expect("stored");
    assert!(found.digest.ct_eq(&TokenDigest::of(token.secret.as_bytes())));

    let mut group = c.benchmark_group("store");
    group.bench_function(format!("{name}_find"), |b| {
        b.to_async(single).iter(|| async { target.store.find(token.id).await.expect("find").expect("stored") })
    });
    let cmd = target.raw_cmd(0);
    group.bench_function(format!("{name}_find_raw"), |b| {
        b.to_async(single).iter(|| {
            let (mut raw, cmd) = (target.raw.clone(), &cmd);
            async move { raw.query(cmd).await.expect("HMGET") }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("request");
    group.bench_function(format!("token_auth_valid_{name}"), |b| {
        b.to_async(single).iter(|| layer.clone().oneshot(token.template.request()))
    });
    group.bench_function(format!("ideal_valid_{name}"), |b| {
        b.to_async(single).iter(|| {
            let mut raw = target.raw.clone();
            async move { ideal(&mut raw, prefix, token.template.request()).await }
        })
    });
    group.finish();

    let mut group = c.benchmark_group(format!("throughput_{name}"));
    group.throughput(Throughput::Elements(1));
    for concurrency in CONCURRENCY {
        for path in [Path::Raw, Path::Layer, Path::Find, Path::Ideal] {
            group.bench_with_input(BenchmarkId::new(path.name(), format!("c{concurrency}")), &concurrency, |b, &c| {
                b.iter_custom(|iters| {
                    let (done, took) = multi.block_on(drive(target, path, c, Some(iters), Arc::default()));
                    took.mul_f64(iters as f64 / done.max(1) as f64)
                })
            });
        }
    }
    group.finish();
}

/// Nanoseconds the threads of process `pid` (`self` for this one) have run on a CPU, from
/// `/proc/{pid}/task/*/schedstat` (Linux; `None` elsewhere). Less noisy than wall time on a shared
/// machine: other processes' load changes how long a round takes, not how much CPU a request costs.
fn cpu_ns(pid: &str) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Requests per second of each path, interleaved, and the ratios to raw.
fn ratio_report(target: &Target, multi: &tokio::runtime::Runtime) {
    let diagnose = std::env::var("TOWER_TOKEN_AUTH_BENCH_DIAGNOSE").is_ok_and(|v| v == "1") && target.manager.is_some();
    let rounds = std::env::var("TOWER_TOKEN_AUTH_BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(ROUNDS);
    let round = Duration::from_millis(
        std::env::var("TOWER_TOKEN_AUTH_BENCH_ROUND_MS").ok().and_then(|ms| ms.parse().ok()).unwrap_or(1000),
    );
    let server_pid = multi.block_on(async {
        let mut raw = target.raw.clone();
        let info = raw.query(redis::cmd("INFO").arg("server")).await.ok()?;
        let info = match info {
            Value::BulkString(b) => String::from_utf8(b).ok()?,
            Value::VerbatimString { text, .. } => text,
            _ => return None,
        };
        let pid = info.lines().find_map(|l| l.strip_prefix("process_id:"))?.trim().to_owned();
        Some(pid)
    });
    // A cluster's nodes are separate processes: only the first node's CPU would be counted.
    let server_pid = server_pid.filter(|_| !target.store.is_cluster());
    println!(
        "\n{}: {rounds} interleaved rounds of {round:?} per path; medians of requests per second, and of CPU \
         microseconds per request (this process / the Redis server)",
        target.name
    );
    if diagnose {
        // Allocations per request, one loop, sequentially (the runtime's own tasks allocate too).
        println!("\n{}: allocations per request (sequential, 2,000 requests each)", target.name);
        for path in [
            Path::Raw,
            Path::RawClone,
            Path::RawManager,
            Path::RawManagerTimeout,
            Path::Find,
            Path::Ideal,
            Path::Layer,
            Path::LayerOneTimer,
        ] {
            multi.block_on(drive(target, path, 1, Some(200), Arc::default()));
            ALLOCATIONS.store(0, Ordering::SeqCst);
            COUNTING.store(true, Ordering::SeqCst);
            let (done, _) = multi.block_on(drive(target, path, 1, Some(2_000), Arc::default()));
            COUNTING.store(false, Ordering::SeqCst);
            println!("| {} | {:.1} |", path.name(), ALLOCATIONS.load(Ordering::SeqCst) as f64 / done as f64);
        }
    }
    println!("| concurrency | path | req/s | of raw | client CPU µs/req | of raw | server CPU µs/req |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for concurrency in CONCURRENCY {
        let mut paths = vec![Path::Raw, Path::Layer, Path::Find, Path::Ideal];
        if diagnose {
            paths.extend([Path::RawClone, Path::RawManager, Path::RawManagerTimeout, Path::LayerOneTimer]);
        }
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        let mut client_cpu: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        let mut server_cpu: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
        for _ in 0..rounds {
            for (i, &path) in paths.iter().enumerate() {
                let cpu_before = (cpu_ns("self"), server_pid.as_deref().and_then(cpu_ns));
                let stop = Arc::new(AtomicBool::new(false));
                let timer = {
                    let stop = Arc::clone(&stop);
                    std::thread::spawn(move || {
                        std::thread::sleep(round);
                        stop.store(true, Ordering::Relaxed);
                    })
                };
                let (done, took) = multi.block_on(drive(target, path, concurrency, None, stop));
                let cpu_after = (cpu_ns("self"), server_pid.as_deref().and_then(cpu_ns));
                timer.join().expect("timer");
                rates[i].push(done as f64 / took.as_secs_f64());
                let per_request = |before: Option<u64>, after: Option<u64>| {
                    Some((after? - before?) as f64 / 1000.0 / done.max(1) as f64)
                };
                client_cpu[i].extend(per_request(cpu_before.0, cpu_after.0));
                server_cpu[i].extend(per_request(cpu_before.1, cpu_after.1));
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let rates: Vec<f64> = rates.iter_mut().map(median).collect();
        let client: Vec<f64> = client_cpu.iter_mut().map(median).collect();
        let server: Vec<f64> = server_cpu.iter_mut().map(median).collect();
        for (i, path) in paths.iter().enumerate() {
            println!(
                "| {concurrency} | {} | {:.0} | {:.3} | {:.2} | {:.3} | {:.2} |",
                path.name(),
                rates[i],
                rates[i] / rates[0],
                client[i],
                client[i] / client[0],
                server[i]
            );
        }
    }
}

/// `TOWER_TOKEN_AUTH_BENCH_PROFILE=path:concurrency:requests` runs only that loop (after 200 requests
/// of warm-up), for `valgrind --tool=callgrind`: the difference between two request counts, divided,
/// is the instructions one request costs, whatever else the machine runs.
fn profile_path(target: &Target, multi: &tokio::runtime::Runtime, spec: &str) {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default();
    let path = [
        Path::Raw,
        Path::Find,
        Path::Layer,
        Path::Ideal,
        Path::RawClone,
        Path::RawManager,
        Path::RawManagerTimeout,
        Path::LayerOneTimer,
    ]
    .into_iter()
    .find(|p| p.name() == name)
    .expect("a path name");
    let concurrency = parts.next().and_then(|c| c.parse().ok()).unwrap_or(16);
    let requests = parts.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    multi.block_on(drive(target, path, concurrency, Some(200), Arc::default()));
    let (done, took) = multi.block_on(drive(target, path, concurrency, Some(requests), Arc::default()));
    println!("profile {}: {done} requests at concurrency {concurrency} in {took:?}", path.name());
}

fn cleanup(target: &Target, rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        for user in 1..=TOKENS as u64 {
            target.store.revoke_all_for_user(&UserId::from(user)).await.expect("clean up");
        }
        // Only the bucket counters are left.
        let mut raw = target.raw.clone();
        for token in target.tokens.iter() {
            let mut del = redis::cmd("DEL");
            del.arg(format!("{}{{{}}}:n", target.store.prefix(), token.id & 16_383));
            raw.query(&del).await.expect("clean up");
        }
    });
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    // `cargo bench` passes --bench; `cargo test --benches` does not, and then each benchmark runs once.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let (single, multi) =
        (tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"), runtime(2));
    let prefix = format!("tta-bench-redis-{}:", std::process::id());
    for (name, var) in
        [("redis", "TOWER_TOKEN_AUTH_REDIS_URL"), ("redis_cluster", "TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL")]
    {
        let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) else {
            println!("skipping the {name} benchmarks: {var} is not set");
            continue;
        };
        let target = multi.block_on(connect(name, &url, &prefix));
        if let Ok(profile) = std::env::var("TOWER_TOKEN_AUTH_BENCH_PROFILE") {
            profile_path(&target, &multi, &profile);
            cleanup(&target, &multi);
            continue;
        }
        benches(&mut criterion, &target, &single, &multi);
        if benchmarking {
            ratio_report(&target, &multi);
        }
        cleanup(&target, &multi);
    }
    criterion.final_summary();
}
