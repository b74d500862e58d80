//! `CachedStore` benchmarks: `cargo bench --features redis --bench cache`, with
//! `TOWER_TOKEN_AUTH_REDIS_URL` (e.g. `redis://127.0.0.1:6379/0`); skipped with a line when unset.
//!
//! - `cache/layer_memory`: one request through `TokenAuthLayer` over `MemoryStore`, one hot token.
//! - `cache/layer_cached_redis`: the same over `CachedStore<RedisStore>` with its `RedisBus` (hits).
//! - `cache/layer_redis`: the same over the uncached `RedisStore` (one `HMGET` per request).
//! - Then, outside criterion, **ratios within one run**: the three loops interleaved (`ROUNDS` rounds of
//!   `ROUND_MS` each, on a current-thread runtime), printed as requests per second and as ratios to the
//!   memory store; the store reads per request of the cached loop (its misses / lookups); and the
//!   revocation latency with three instances (each its own store, bus and cache), p50 and p99 of
//!   `revoke_all_for_user` on one instance while the token is hot in all three. Nothing here asserts a
//!   time.
//!
//! - With `TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL` (the seed list) also set, the interleaved loops include
//!   the cached and uncached store on Redis Cluster (the bus then fences every primary), and the
//!   revocation latency is measured there too.
//!
//! Keys live under a prefix of their own (`tta-bench-cache-{pid}:`) and are deleted afterwards.

use std::time::{Duration, Instant};

use criterion::Criterion;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_token_auth::cache::redis::RedisBus;
use tower_token_auth::cache::{CacheConfig, CachedStore};
use tower_token_auth::store::redis::RedisStore;
use tower_token_auth::{MemoryStore, NewToken, TokenAuthLayer, TokenStore, TokenStoreExt};

mod common;
use common::{empty_ok, RequestTemplate};

const ROUNDS: usize = 7;
const ROUND_MS: u64 = 700;

async fn issue(store: &impl TokenStore) -> RequestTemplate {
    let issued = store.issue(NewToken::access(7u64).expires_in(Duration::from_secs(86400))).await.expect("issue");
    RequestTemplate::bearer(issued.plain_text.expose())
}

async fn cached(url: &str, prefix: &str) -> CachedStore<RedisStore> {
    let store = RedisStore::connect(url).await.expect("connect").key_prefix(prefix);
    let bus = RedisBus::new(url, &store).expect("bus");
    let cache = CachedStore::new(store, bus, CacheConfig::default());
    while !cache.lease_is_fresh() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache
}

/// Requests per second of `store` behind the layer over one token, for `for_ms`.
async fn loop_for<St: TokenStore + Clone>(store: &St, template: &RequestTemplate, for_ms: u64) -> f64 {
    let mut service = TokenAuthLayer::new(store.clone()).layer(empty_ok());
    let started = Instant::now();
    let until = started + Duration::from_millis(for_ms);
    let mut n = 0u64;
    while Instant::now() < until {
        for _ in 0..64 {
            let response = service.ready().await.unwrap().call(template.request()).await.unwrap();
            debug_assert_eq!(response.status(), 200);
            std::hint::black_box(response);
        }
        n += 64;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let Ok(url) = std::env::var("TOWER_TOKEN_AUTH_REDIS_URL") else {
        println!("skipped: TOWER_TOKEN_AUTH_REDIS_URL is not set");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let prefix = format!("tta-bench-cache-{}:", std::process::id());
    let memory = MemoryStore::new();
    let (memory_token, cached_store, cached_token, plain, plain_token) = rt.block_on(async {
        let memory_token = issue(&memory).await;
        let cached_store = cached(&url, &prefix).await;
        let cached_token = issue(cached_store.get_ref()).await;
        let plain = RedisStore::connect(&url).await.unwrap().key_prefix(&prefix);
        let plain_token = issue(&plain).await;
        (memory_token, cached_store, cached_token, plain, plain_token)
    });

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("cache");
        let mut layer_memory = TokenAuthLayer::new(memory.clone()).layer(empty_ok());
        group.bench_function("layer_memory", |b| {
            b.to_async(&rt).iter(|| {
                let call = layer_memory.call(memory_token.request());
                async move { call.await.unwrap() }
            })
        });
        let mut layer_cached = TokenAuthLayer::new(cached_store.clone()).layer(empty_ok());
        group.bench_function("layer_cached_redis", |b| {
            b.to_async(&rt).iter(|| {
                let call = layer_cached.call(cached_token.request());
                async move { call.await.unwrap() }
            })
        });
        let mut layer_redis = TokenAuthLayer::new(plain.clone()).layer(empty_ok());
        group.bench_function("layer_redis", |b| {
            b.to_async(&rt).iter(|| {
                let call = layer_redis.call(plain_token.request());
                async move { call.await.unwrap() }
            })
        });
        group.finish();
    }
    c.final_summary();

    let cluster_url = std::env::var("TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL").ok().filter(|u| !u.is_empty());
    rt.block_on(async {
        let cluster = match &cluster_url {
            Some(seeds) => {
                let cached_cluster = cached(seeds, &prefix).await;
                let cached_cluster_token = issue(cached_cluster.get_ref()).await;
                let plain_cluster = RedisStore::connect(seeds).await.unwrap().key_prefix(&prefix);
                let plain_cluster_token = issue(&plain_cluster).await;
                Some((cached_cluster, cached_cluster_token, plain_cluster, plain_cluster_token))
            }
            None => None,
        };
        let (mut m, mut cr, mut r, mut cc, mut pc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let before = cached_store.stats();
        for _ in 0..ROUNDS {
            m.push(loop_for(&memory, &memory_token, ROUND_MS).await);
            cr.push(loop_for(&cached_store, &cached_token, ROUND_MS).await);
            r.push(loop_for(&plain, &plain_token, ROUND_MS).await);
            if let Some((cached_cluster, cached_cluster_token, plain_cluster, plain_cluster_token)) = &cluster {
                cc.push(loop_for(cached_cluster, cached_cluster_token, ROUND_MS).await);
                pc.push(loop_for(plain_cluster, plain_cluster_token, ROUND_MS).await);
            }
        }
        let after = cached_store.stats();
        let (m, cr, r) = (median(m), median(cr), median(r));
        println!(
            "ratios within one run ({ROUNDS} interleaved rounds of {ROUND_MS} ms, one token, one thread; medians):"
        );
        println!("  layer over MemoryStore:              {m:>10.0} req/s");
        println!("  layer over CachedStore<RedisStore>:  {cr:>10.0} req/s  = {:.3}x memory", cr / m);
        println!("  layer over RedisStore (uncached):    {r:>10.0} req/s  = {:.3}x memory", r / m);
        if cluster.is_some() {
            let (cc, pc) = (median(cc), median(pc));
            println!("  the same, cached, on Redis Cluster:  {cc:>10.0} req/s  = {:.3}x memory", cc / m);
            println!("  uncached on Redis Cluster:           {pc:>10.0} req/s  = {:.3}x memory", pc / m);
        }
        let lookups = (after.hits + after.misses) - (before.hits + before.misses);
        let reads = after.misses - before.misses;
        println!(
            "  store reads per request, cached loop: {reads} of {lookups} lookups = {:.5}%",
            reads as f64 * 100.0 / lookups as f64
        );

        revocation_latency("", &url, &prefix).await;
        if let Some(seeds) = &cluster_url {
            revocation_latency(" on Redis Cluster", seeds, &prefix).await;
        }

        let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
        for key in keys {
            let _: () = redis::cmd("DEL").arg(key).query_async(&mut conn).await.unwrap();
        }
        if let Some(seeds) = &cluster_url {
            // Every key this benchmark wrote on the cluster: the users' sessions were revoked; the
            // two hot tokens are revoked here (the store deletes what it revokes).
            let store = RedisStore::connect(seeds).await.unwrap().key_prefix(&prefix);
            store.revoke_all_for_user(&7u64.into()).await.unwrap();
        }
    });
}

/// Revocation latency with three instances, the token hot in all three.
async fn revocation_latency(label: &str, url: &str, prefix: &str) {
    {
        let instances = [cached(url, prefix).await, cached(url, prefix).await, cached(url, prefix).await];
        let mut waits = Vec::new();
        for i in 0..200u64 {
            let user = 1_000 + i;
            let issued = instances[0].get_ref().issue(NewToken::access(user)).await.unwrap();
            for instance in &instances {
                for _ in 0..2 {
                    instance.find(issued.record.id).await.unwrap().expect("issued");
                }
            }
            let started = Instant::now();
            instances[(i % 3) as usize].revoke_all_for_user(&user.into()).await.unwrap();
            waits.push(started.elapsed());
            for instance in &instances {
                assert!(instance.find(issued.record.id).await.unwrap().is_none());
            }
        }
        waits.sort();
        println!(
            "  revocation latency{label}, three instances (lease {:?}, wait {:?}): p50 {:?}, p99 {:?}, max {:?}",
            Duration::from_millis(50),
            instances[0].config().revocation_wait(),
            waits[waits.len() / 2],
            waits[waits.len() * 99 / 100],
            waits[waits.len() - 1],
        );
    }
}
