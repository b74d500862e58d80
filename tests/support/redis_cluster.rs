//! A private Redis Cluster for the tests that move slots or fail primaries over
//! (`tests/redis_cluster.rs`, `tests/cache_redis_cluster.rs`): six nodes started with
//! `scripts/redis-cluster.sh` on free ports, stopped when dropped; and what the tests read from
//! `CLUSTER NODES` or do to a cluster (move a slot, fail a primary over).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::redis::connection;

/// A cluster of six nodes (3 primaries, 3 replicas) started with `scripts/redis-cluster.sh` on free
/// ports, stopped when dropped.
pub struct PrivateCluster {
    base: u16,
    dir: String,
    pub seeds: String,
}

impl PrivateCluster {
    /// Starts on the first six free ports (and their cluster bus ports) from `from` up: tests that run
    /// at once start from different ports.
    pub fn start(from: u16) -> Option<Self> {
        Self::start_in(from..from + 400)
    }

    /// Like [`start`](Self::start), with every port (not counting bus ports) within `ports`.
    pub fn start_in(ports: std::ops::Range<u16>) -> Option<Self> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            println!("skipped: redis-server is not on PATH");
            return None;
        }
        let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        let base = (ports.start..ports.end.saturating_sub(5))
            .step_by(10)
            .find(|&base| (base..base + 6).all(|p| free(p) && free(p + 10_000)))
            .expect("six free ports for a private cluster");
        let dir = format!("{}/tta-private-cluster-{}-{base}", std::env::temp_dir().display(), std::process::id());
        let output = Command::new(script())
            .args(["start", &base.to_string()])
            .env("REDIS_CLUSTER_DIR", &dir)
            .output()
            .expect("scripts/redis-cluster.sh runs");
        let cluster = Self { base, dir, seeds: String::from_utf8(output.stdout).unwrap().trim().to_owned() };
        assert!(output.status.success(), "private cluster: {}", String::from_utf8_lossy(&output.stderr));
        Some(cluster)
    }

    /// The pid of the node at `address`, which this test started.
    pub async fn pid(&self, address: &str) -> u32 {
        super::redis::server_pid(address).await
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ =
            Command::new(script()).args(["stop", &self.base.to_string()]).env("REDIS_CLUSTER_DIR", &self.dir).output();
    }
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/redis-cluster.sh")
}

/// `(address, id, is master, slots)` of every node that is not failed, from `CLUSTER NODES`.
pub async fn cluster_nodes(seeds: &str) -> Vec<(String, String, bool, String)> {
    for seed in seeds.split(',') {
        let Ok(client) = redis::Client::open(seed) else { continue };
        let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection()).await
        else {
            continue;
        };
        let Ok(text) = redis::cmd("CLUSTER").arg("NODES").query_async::<String>(&mut conn).await else { continue };
        return text
            .lines()
            .filter(|l| !l.contains("fail") && !l.contains("noaddr"))
            .map(|line| {
                let parts: Vec<&str> = line.split(' ').collect();
                let address = parts[1].split('@').next().unwrap().to_owned();
                let slots = parts.get(8..).map(|s| s.join(" ")).unwrap_or_default();
                (address, parts[0].to_owned(), parts[2].contains("master"), slots)
            })
            .collect();
    }
    panic!("no node of {seeds} answers")
}

/// The address of the master serving `slot` (waiting out a topology change, at most 10 s).
pub async fn master_of(seeds: &str, slot: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(master) = try_master_of(seeds, slot).await {
            return master;
        }
        assert!(Instant::now() < deadline, "no master serves slot {slot}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn try_master_of(seeds: &str, slot: u16) -> Option<String> {
    for (address, _, master, slots) in cluster_nodes(seeds).await {
        if !master {
            continue;
        }
        for range in slots.split(' ').filter(|r| !r.starts_with('[')) {
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(from), Ok(to)) = (from.parse::<u16>(), to.parse::<u16>()) {
                if (from..=to).contains(&slot) {
                    return Some(address);
                }
            }
        }
    }
    None
}

pub async fn keyslot(seeds: &str, key: &str) -> u16 {
    let mut conn = connection(seeds.split(',').next().unwrap()).await;
    redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut conn).await.unwrap()
}

/// The address of the live replica of the master at `master`, from `CLUSTER NODES`.
pub async fn replica_of(seeds: &str, master: &str) -> String {
    let master_id = cluster_nodes(seeds).await.into_iter().find(|(a, ..)| a == master).unwrap().1;
    let mut conn = connection(&format!("redis://{master}")).await;
    let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn).await.unwrap();
    text.lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|parts| parts[2].contains("slave") && parts[3] == master_id && !parts[2].contains("fail"))
        .map(|parts| parts[1].split('@').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{master} has no replica"))
}

/// Moves `slot` from the master at `source` to the one at `target`, ten keys per `MIGRATE` with
/// `pause` between batches, as `redis-cli --cluster reshard` does (plus the pause, so requests meet a
/// slot whose keys are split between the two masters: `ASK`). Returns how many keys moved.
pub async fn migrate_slot(seeds: &str, slot: u16, source: &str, target: &str, pause: Duration) -> usize {
    let ids: std::collections::HashMap<String, String> =
        cluster_nodes(seeds).await.into_iter().map(|(address, id, _, _)| (address, id)).collect();
    let (mut from, mut to) =
        (connection(&format!("redis://{source}")).await, connection(&format!("redis://{target}")).await);
    let setslot = |state: &str, id: &str| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
        cmd
    };
    let _: () = setslot("IMPORTING", &ids[source]).query_async(&mut to).await.unwrap();
    let _: () = setslot("MIGRATING", &ids[target]).query_async(&mut from).await.unwrap();
    let (host, port) = target.split_once(':').unwrap();
    let mut moved = 0;
    loop {
        let keys: Vec<String> =
            redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(10).query_async(&mut from).await.unwrap();
        if keys.is_empty() {
            break;
        }
        let mut migrate = redis::cmd("MIGRATE");
        migrate.arg(host).arg(port).arg("").arg(0).arg(5000).arg("KEYS").arg(&keys);
        let _: redis::Value = migrate.query_async(&mut from).await.unwrap();
        moved += keys.len();
        tokio::time::sleep(pause).await;
    }
    // The new owner first, then the old one, then every other master (replicas refuse SETSLOT).
    let mut order = vec![target.to_owned(), source.to_owned()];
    order.extend(ids.keys().filter(|a| *a != target && *a != source).cloned());
    for address in order {
        let mut conn = connection(&format!("redis://{address}")).await;
        let _: redis::RedisResult<()> = setslot("NODE", &ids[target]).query_async(&mut conn).await;
    }
    moved
}
