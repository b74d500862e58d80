//! `CachedStore` over a real Redis: the history checker (see `support/cache_history.rs`) with three
//! instances, each with its own store connection, its own tracking connection and its own cache,
//! under faults (tracking connections killed with `CLIENT KILL`, an instance's bus paused across
//! revocations, fences delayed past the lease, a slow channel), and the two negative controls that must
//! make the checker fail (no wait with a slow channel; invalidations dropped).
//!
//! "Paused" stops one instance's bus (no invalidation applied, no fence completes) while its request
//! tasks go on: stricter than `SIGSTOP`, which would stop its requests too.
//!
//! Set `TOWER_TOKEN_AUTH_REDIS_URL` (e.g. `redis://127.0.0.1:6379/0`) to run; without it every test
//! prints `skipped: ...` and passes. The tests run one at a time (they measure hits and timing).

#![cfg(feature = "redis")]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tower_token_auth::cache::redis::RedisBus;
use tower_token_auth::cache::{CacheConfig, CachedStore, Consistency};
use tower_token_auth::store::redis::RedisStore;

use support::cache_history::{delay_fences, pause_each, run_history, FaultTask, Faults, FaultyBus, Instance, Report};
use support::redis::{connection, scan_prefix, unique_prefix, url_from_env};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RUN_FOR: Duration = Duration::from_secs(3);

fn redis_url() -> Option<String> {
    url_from_env("TOWER_TOKEN_AUTH_REDIS_URL")
}

async fn instances(url: &str, prefix: &str, name: &str, config: CacheConfig) -> Vec<Instance<RedisStore>> {
    let mut all = Vec::new();
    for n in 0..3 {
        let store = RedisStore::connect(url).await.unwrap().key_prefix(prefix);
        let bus = RedisBus::new(url, &store).unwrap().client_name(&format!("{name}-{n}"));
        let faults = Arc::new(Faults::default());
        let cache = CachedStore::new(store, FaultyBus { inner: bus, faults: faults.clone() }, config.clone());
        all.push(Instance { cache, faults });
    }
    for _ in 0..200 {
        if all.iter().all(|i| i.cache.lease_is_fresh()) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the caches never got a lease");
}

async fn history(
    name: &str,
    config: CacheConfig,
    setup: impl Fn(&Faults),
    faults: Option<FaultTask>,
) -> Option<Report> {
    let url = redis_url()?;
    let _serial = SERIAL.lock().await;
    let prefix = unique_prefix(name);
    let name = format!("tta-test-{name}-{}", std::process::id());
    let all = instances(&url, &prefix, &name, config).await;
    for instance in &all {
        setup(&instance.faults);
    }
    let report = run_history(&all, RUN_FOR, 4, faults).await;
    println!("{name}: {report}");
    drop(all);
    let mut conn = connection(&url).await;
    for key in scan_prefix(&mut conn, &prefix).await {
        let _: () = redis::cmd("DEL").arg(key).query_async(&mut conn).await.unwrap();
    }
    assert!(report.revocations > 20, "{report:?}");
    assert!(report.after_revocation > 100, "the history must test revoked tokens: {report:?}");
    assert!(report.hits() > report.requests as u64 / 4, "the history must test the cache: {report:?}");
    Some(report)
}

fn assert_no_stale_accepts(report: Option<Report>) {
    if let Some(report) = report {
        assert_eq!(report.stale_accepts, 0, "{report:?}");
    }
}

fn cache_config() -> CacheConfig {
    CacheConfig::default()
}

/// Kills every bus connection of this test's instances (`CLIENT KILL ID`), every `every`.
fn kill_bus_connections(url: String, name: String, every: Duration) -> FaultTask {
    Box::new(move |_faults| {
        Box::pin(async move {
            let mut conn = connection(&url).await;
            loop {
                tokio::time::sleep(every).await;
                let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut conn).await.unwrap();
                for line in list.lines().filter(|l| l.contains(&format!(" name={name}-"))) {
                    let id = line.split(' ').find_map(|f| f.strip_prefix("id=")).unwrap();
                    let _: redis::RedisResult<()> =
                        redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut conn).await;
                }
            }
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_without_faults() {
    assert_no_stale_accepts(history("plain", cache_config(), |_| {}, None).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_when_tracking_connections_are_killed() {
    let Some(url) = redis_url() else { return };
    let name = format!("tta-test-killed-{}", std::process::id());
    let kill = kill_bus_connections(url, name, Duration::from_millis(300));
    let report = history("killed", cache_config(), |_| {}, Some(kill)).await.unwrap();
    assert!(report.stats.iter().all(|s| s.resets >= 4), "the kills happened: {report:?}");
    assert_eq!(report.stale_accepts, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_when_an_instance_is_paused_across_revocations() {
    let pause = pause_each(Duration::from_millis(150), Duration::from_millis(200));
    assert_no_stale_accepts(history("paused", cache_config(), |_| {}, Some(pause)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_when_fences_are_delayed_past_the_lease() {
    let delay = delay_fences(Duration::from_millis(80), Duration::from_millis(300), Duration::from_millis(200));
    assert_no_stale_accepts(history("fence-delayed", cache_config(), |_| {}, Some(delay)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_with_a_slow_channel() {
    let slow = |f: &Faults| f.delay_ms.store(30, Ordering::SeqCst);
    assert_no_stale_accepts(history("slow", cache_config(), slow, None).await);
}

/// Negative control: the same slow channel without the revocation wait. The checker must fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_without_the_wait_a_slow_channel_gives_stale_accepts() {
    let slow = |f: &Faults| f.delay_ms.store(30, Ordering::SeqCst);
    let config = cache_config().consistency(Consistency::BoundedStaleness);
    if let Some(report) = history("control-no-wait", config, slow, None).await {
        assert!(report.stale_accepts > 0, "the checker must see this: {report:?}");
    }
}

/// Negative control: invalidations dropped while fences succeed. The checker must fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_dropped_invalidations_give_stale_accepts() {
    let drop_them = |f: &Faults| f.drop_invalidations.store(true, Ordering::SeqCst);
    if let Some(report) = history("control-dropped", cache_config(), drop_them, None).await {
        assert!(report.stale_accepts > 0, "the checker must see this: {report:?}");
    }
}
