//! `CachedStore` over Redis Sentinel, with real failovers: the history checker (see
//! `support/cache_history.rs`) with three instances, each with its own Sentinel-resolved store
//! connection (waiting for every replica, so that no acknowledged revocation is lost in a failover), its
//! own `RedisBus` and its own cache, while Sentinel fails over gracefully (the old primary stays up
//! and is demoted seconds later: the bus's `ROLE` fence must notice) and then the new primary is
//! killed (`SIGKILL`) and Sentinel promotes a replica. Requests may be answered `503` meanwhile; a revoked token must
//! never be accepted, and every bus must follow the promoted replica.
//!
//! Needs `redis-server` and `TOWER_TOKEN_AUTH_REDIS_URL` set, like the other Sentinel tests (private
//! processes on ports 7400-7459); otherwise it prints `skipped:` and passes.

#![cfg(feature = "redis")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tower_token_auth::cache::redis::RedisBus;
use tower_token_auth::cache::{CacheConfig, CachedStore};
use tower_token_auth::store::redis::RedisStore;

use support::cache_history::{run_history, FaultTask, Faults, FaultyBus, Instance};
use support::redis::{connection, kill_server, url_from_env};
use support::redis_processes::{
    redis_server_available, sentinel_master, sentinel_master_at, RedisProcess, SentinelDeployment, SENTINEL_MASTER,
};

fn enabled() -> bool {
    let _ = tracing_subscriber::fmt().with_env_filter("tower_token_auth=error").with_test_writer().try_init();
    url_from_env("TOWER_TOKEN_AUTH_REDIS_URL").is_some() && redis_server_available()
}

/// When (since the run started) the failovers completed.
#[derive(Debug, Default)]
struct Done {
    demoted: Option<Duration>,
    killed: Option<Duration>,
    promoted_after_kill: Option<Duration>,
}

async fn wait_for_new_primary(sentinel: &str, old: &str, deadline: Instant) -> String {
    loop {
        if let Some(now) = sentinel_master_at(sentinel, SENTINEL_MASTER).await.filter(|now| now != old) {
            return now;
        }
        assert!(Instant::now() < deadline, "Sentinel did not promote a replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After 1.5 s a graceful `SENTINEL FAILOVER` (the old primary stays up and is demoted by Sentinel
/// seconds later); 1.5 s after Sentinel named the new primary, that one is killed, and once a
/// replica took over, a new replica of it is started (two replicas again).
///
/// The stores wait for **every** replica (`wait_for_replicas(2)`), so no acknowledged write is lost:
/// `SENTINEL FAILOVER` lets the old primary take writes after it promoted a replica, but the promoted
/// one no longer acknowledges them; and after a kill, whichever replica Sentinel promotes has every
/// acknowledged write (Sentinel picks by replication offsets it polled up to a second before, so
/// waiting for one replica of two could lose one).
fn fail_over_twice(sentinel: String, first: String, done: Arc<Mutex<Done>>) -> FaultTask {
    let clock = Instant::now();
    Box::new(move |_faults| {
        Box::pin(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut conn = connection(&sentinel).await;
            // `NOGOODSLAVE` until Sentinel has heard from the replicas themselves.
            while redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(SENTINEL_MASTER)
                .query_async::<()>(&mut conn)
                .await
                .is_err()
            {
                assert!(Instant::now() < deadline, "SENTINEL FAILOVER was refused for a minute");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let second = wait_for_new_primary(&sentinel, &first, deadline).await;
            done.lock().unwrap().demoted = Some(clock.elapsed());

            tokio::time::sleep(Duration::from_millis(1500)).await;
            kill_server(&second).await;
            done.lock().unwrap().killed = Some(clock.elapsed());
            let third = wait_for_new_primary(&sentinel, &second, deadline).await;
            done.lock().unwrap().promoted_after_kill = Some(clock.elapsed());
            let port = third.rsplit_once(':').unwrap().1.parse().unwrap();
            // Kept until the run ends (this task is then dropped, and the replica stopped), and kept
            // following the primary Sentinel names (Sentinel may not know it yet, to move it along).
            let replacement = RedisProcess::replica_of_port(port);
            let mut follower = connection(&replacement.url()).await;
            let mut following = third;
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(primary) = sentinel_master_at(&sentinel, SENTINEL_MASTER).await else { continue };
                if primary != following {
                    let (host, port) = primary.rsplit_once(':').unwrap();
                    let moved: redis::RedisResult<()> =
                        redis::cmd("REPLICAOF").arg(host).arg(port).query_async(&mut follower).await;
                    if moved.is_ok() {
                        following = primary;
                    }
                }
            }
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_through_a_graceful_and_a_forced_sentinel_failover() {
    if !enabled() {
        return;
    }
    let deployment = SentinelDeployment::start().await;
    let url = deployment.url();
    let name = format!("tta-test-cache-sentinel-{}", std::process::id());
    let mut all = Vec::new();
    for n in 0..3 {
        let store = RedisStore::connect(&url)
            .await
            .unwrap()
            .command_timeout(Duration::from_millis(500))
            .wait_for_replicas(2, Duration::from_millis(300));
        let bus = RedisBus::new(&url, &store).unwrap().client_name(&format!("{name}-{n}"));
        let faults = Arc::new(Faults::default());
        let cache = CachedStore::new(store, FaultyBus { inner: bus, faults: faults.clone() }, CacheConfig::default());
        all.push(Instance { cache, faults });
    }
    let leases = |all: &[Instance<RedisStore>]| all.iter().all(|i| i.cache.lease_is_fresh());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !leases(&all) {
        assert!(Instant::now() < deadline, "the caches never got a lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let first = sentinel_master(&deployment.sentinel, SENTINEL_MASTER).await.expect("a primary");
    let done = Arc::new(Mutex::new(Done::default()));
    let faults = fail_over_twice(deployment.sentinel.url(), first, done.clone());
    let report = run_history(&all, Duration::from_secs(24), 4, Some(faults)).await;
    let done = std::mem::take(&mut *done.lock().unwrap());
    println!("{name}: {report}; faults: {done:?}");
    assert_eq!(report.lost_revocations, 0, "the store lost acknowledged revocations: {report:?}");
    assert_eq!(report.stale_accepts, 0, "{report:?}");
    assert!(report.revocations > 20, "{report:?}");
    assert!(report.after_revocation > 100, "the history must test revoked tokens: {report:?}");
    assert!(report.hits() > report.requests as u64 / 10, "the history must test the cache: {report:?}");
    assert!(done.demoted.is_some() && done.promoted_after_kill.is_some(), "both failovers happened: {done:?}");
    assert!(report.stats.iter().all(|s| s.resets >= 2), "every bus subscribed again: {report:?}");
    // Every bus follows the promoted replica: hits resume everywhere.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leases(&all) {
        assert!(Instant::now() < deadline, "a cache has no lease 30 s after the failovers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
