//! `CachedStore` over a real Redis Cluster: the history checker (see `support/cache_history.rs`) with
//! three instances, each with its own cluster client, its own `RedisBus` (one tracking connection per
//! primary) and its own cache:
//!
//! * on the shared cluster without faults;
//! * on a private cluster while slots move between primaries (`MIGRATE`, `ASK`), one primary is
//!   failed over by hand (`CLUSTER FAILOVER`: it stays up, demoted) and another is killed (`SIGKILL`:
//!   its replica takes over after the node timeout). Requests may be answered `503` meanwhile; a
//!   revoked token must never be accepted;
//! * and the negative control that must make the checker fail: a bus that tracks one node of the
//!   cluster only (the single-server bus pointed at a cluster node), which misses what the other
//!   primaries execute.
//!
//! Set `TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL` (the seed list `scripts/redis-cluster.sh start` prints) to
//! run; without it every test prints `skipped: ...` and passes. The private cluster uses free ports
//! from 7600 up. The tests run one at a time (they measure hits and timing).

#![cfg(feature = "redis")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tower_token_auth::cache::redis::RedisBus;
use tower_token_auth::cache::{CacheConfig, CachedStore};
use tower_token_auth::store::redis::RedisStore;

use support::cache_history::{run_history, FaultTask, Faults, FaultyBus, Instance, Report};
use support::redis::{connection, kill_server, scan_prefix, unique_prefix, url_from_env};
use support::redis_cluster::{cluster_nodes, keyslot, migrate_slot, replica_of, try_master_of, PrivateCluster};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster_url() -> Option<String> {
    let _ = tracing_subscriber::fmt().with_env_filter("tower_token_auth=warn").with_test_writer().try_init();
    url_from_env("TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL")
}

/// Which bus each instance gets.
#[derive(Clone, Copy)]
enum Bus {
    /// `RedisBus::new(seeds, &store)`: every primary.
    Cluster,
    /// The negative control: the single-server bus on the first seed only.
    FirstNodeOnly,
}

async fn instances(seeds: &str, prefix: &str, name: &str, bus: Bus) -> Vec<Instance<RedisStore>> {
    let mut all = Vec::new();
    for n in 0..3 {
        let store =
            RedisStore::connect(seeds).await.unwrap().key_prefix(prefix).command_timeout(Duration::from_millis(500));
        assert!(store.is_cluster());
        let name = format!("{name}-{n}");
        let bus = match bus {
            Bus::Cluster => RedisBus::new(seeds, &store).unwrap().client_name(&name),
            Bus::FirstNodeOnly => {
                let node = seeds.split(',').next().unwrap();
                let one_node = RedisStore::connect(node).await.unwrap().key_prefix(prefix);
                RedisBus::new(node, &one_node).unwrap().client_name(&name)
            }
        };
        let faults = Arc::new(Faults::default());
        let cache = CachedStore::new(store, FaultyBus { inner: bus, faults: faults.clone() }, CacheConfig::default());
        all.push(Instance { cache, faults });
    }
    wait_for_leases(&all, Duration::from_secs(10)).await;
    all
}

async fn wait_for_leases(all: &[Instance<RedisStore>], within: Duration) {
    let deadline = Instant::now() + within;
    while !all.iter().all(|i| i.cache.lease_is_fresh()) {
        assert!(Instant::now() < deadline, "the caches have no lease after {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn cleanup(seeds: &str, prefix: &str) {
    for (address, _, master, _) in cluster_nodes(seeds).await {
        if master {
            let mut conn = connection(&format!("redis://{address}")).await;
            for key in scan_prefix(&mut conn, prefix).await {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
            }
        }
    }
}

async fn history(seeds: &str, name: &str, bus: Bus, run_for: Duration, faults: Option<FaultTask>) -> Report {
    let prefix = unique_prefix(name);
    let name = format!("tta-test-{name}-{}", std::process::id());
    let all = instances(seeds, &prefix, &name, bus).await;
    let report = run_history(&all, run_for, 4, faults).await;
    println!("{name}: {report}");
    drop(all);
    cleanup(seeds, &prefix).await;
    assert!(report.revocations > 20, "{report:?}");
    assert!(report.after_revocation > 100, "the history must test revoked tokens: {report:?}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_on_a_cluster_without_faults() {
    let Some(seeds) = cluster_url() else { return };
    let _serial = SERIAL.lock().await;
    let report = history(&seeds, "cluster-plain", Bus::Cluster, Duration::from_secs(3), None).await;
    assert_eq!(report.stale_accepts, 0, "{report:?}");
    assert!(report.hits() > report.requests as u64 / 4, "the history must test the cache: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_a_bus_that_tracks_one_node_of_the_cluster() {
    let Some(seeds) = cluster_url() else { return };
    let _serial = SERIAL.lock().await;
    let report = history(&seeds, "cluster-one-node", Bus::FirstNodeOnly, Duration::from_secs(3), None).await;
    assert!(report.stale_accepts > 0, "the checker must see the missed invalidations: {report:?}");
}

/// What the fault schedule did, and when (since the run started).
#[derive(Debug, Default)]
struct Done {
    migrated: Vec<(u16, usize)>,
    handed_over: Option<Duration>,
    killed: Option<Duration>,
    taken_over: Option<Duration>,
}

/// The masters of the cluster, by address, with their slots as `CLUSTER NODES` prints them.
async fn masters(seeds: &str) -> Vec<(String, String)> {
    let mut masters: Vec<(String, String)> = cluster_nodes(seeds)
        .await
        .into_iter()
        .filter(|(_, _, master, slots)| *master && !slots.is_empty())
        .map(|(address, _, _, slots)| (address, slots))
        .collect();
    masters.sort();
    masters
}

/// The first slot of a `CLUSTER NODES` slot list.
fn first_slot(slots: &str) -> u16 {
    slots.split([' ', '-']).next().unwrap().parse().unwrap()
}

/// After 1 s: the slots holding this run's keys on one primary move to another. Then a manual
/// failover of a third primary (it stays up as a replica), then the primary that received the slots
/// is killed and its replica takes over.
fn migrate_then_fail_over(cluster: &PrivateCluster, prefix: String, done: Arc<Mutex<Done>>) -> FaultTask {
    let seeds = cluster.seeds.clone();
    let clock = Instant::now();
    Box::new(move |_faults| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let primaries = masters(&seeds).await;
            let (source, target, handed) = (&primaries[0].0, &primaries[1].0, &primaries[2].0);
            let mut conn = connection(&format!("redis://{source}")).await;
            let mut slots = Vec::new();
            for key in scan_prefix(&mut conn, &prefix).await {
                let slot = keyslot(&format!("redis://{source}"), &key).await;
                if !slots.contains(&slot) {
                    slots.push(slot);
                }
            }
            for slot in slots.into_iter().take(6) {
                let moved = migrate_slot(&seeds, slot, source, target, Duration::from_millis(20)).await;
                done.lock().unwrap().migrated.push((slot, moved));
            }

            tokio::time::sleep(Duration::from_millis(700)).await;
            let replica = replica_of(&seeds, handed).await;
            let mut to_promote = connection(&format!("redis://{replica}")).await;
            let _: () = redis::cmd("CLUSTER").arg("FAILOVER").query_async(&mut to_promote).await.unwrap();
            let handed_slot = first_slot(&primaries[2].1);
            while try_master_of(&seeds, handed_slot).await.as_deref() != Some(replica.as_str()) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            done.lock().unwrap().handed_over = Some(clock.elapsed());

            tokio::time::sleep(Duration::from_millis(700)).await;
            let victim_slot = first_slot(&primaries[1].1);
            kill_server(target).await;
            done.lock().unwrap().killed = Some(clock.elapsed());
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if try_master_of(&seeds, victim_slot).await.is_some_and(|m| m != *target) {
                    break;
                }
            }
            done.lock().unwrap().taken_over = Some(clock.elapsed());
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_through_a_slot_migration_and_two_failovers() {
    if cluster_url().is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let Some(cluster) = PrivateCluster::start(7600) else { return };
    let seeds = cluster.seeds.clone();
    let prefix = unique_prefix("cluster-failover");
    let name = format!("tta-test-cluster-failover-{}", std::process::id());
    let all = instances(&seeds, &prefix, &name, Bus::Cluster).await;
    let done = Arc::new(Mutex::new(Done::default()));
    let faults = migrate_then_fail_over(&cluster, prefix.clone(), done.clone());
    let report = run_history(&all, Duration::from_secs(14), 4, Some(faults)).await;
    let done = std::mem::take(&mut *done.lock().unwrap());
    println!("{name}: {report}; faults: {done:?}");
    assert_eq!(report.stale_accepts, 0, "{report:?}");
    assert!(report.revocations > 20, "{report:?}");
    assert!(report.after_revocation > 100, "the history must test revoked tokens: {report:?}");
    assert!(report.hits() > report.requests as u64 / 10, "the history must test the cache: {report:?}");
    assert!(done.migrated.iter().map(|(_, moved)| moved).sum::<usize>() > 0, "keys moved: {done:?}");
    assert!(done.handed_over.is_some() && done.taken_over.is_some(), "both failovers happened in the run: {done:?}");
    assert!(report.stats.iter().all(|s| s.resets >= 2), "every bus subscribed again: {report:?}");
    // Each bus follows the new topology: hits resume on every instance.
    wait_for_leases(&all, Duration::from_secs(20)).await;
}
