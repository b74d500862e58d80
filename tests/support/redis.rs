//! Helpers shared by the Redis tests (`tests/redis_store.rs`, `tests/redis_cluster.rs`): the server's URL
//! from the environment, key prefixes no other test uses, and direct connections for inspecting keys.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use redis::aio::MultiplexedConnection;

/// The URL in the environment variable `var`, or `None` after printing the `skipped:` line.
pub fn url_from_env(var: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("skipped: {var} is not set");
    }
    url
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    format!("tta-test:{test}:{}-{nanos}-{}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A plain connection to one server (one cluster node), without a response timeout.
pub async fn connection(url: &str) -> MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url).unwrap().get_multiplexed_async_connection_with_config(&config).await.unwrap()
}

/// The pid of the `redis-server` at `address` (`host:port`), from `INFO server`.
pub async fn server_pid(address: &str) -> u32 {
    let mut conn = connection(&format!("redis://{address}")).await;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().parse().unwrap()
}

/// Kills the `redis-server` at `address` (`host:port`) with `SIGKILL`: a crash, no shutdown.
pub async fn kill_server(address: &str) {
    let pid = server_pid(address).await;
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(killed.success(), "kill -9 {pid} ({address})");
}

/// Every key of one server (one cluster node) under `prefix`, by `SCAN`.
pub async fn scan_prefix(conn: &mut MultiplexedConnection, prefix: &str) -> Vec<String> {
    let pattern = format!("{}*", glob_escape(prefix));
    let mut cursor = String::from("0");
    let mut all = Vec::new();
    loop {
        let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(&cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        all.extend(keys);
        if next == "0" {
            return all;
        }
        cursor = next;
    }
}

fn glob_escape(s: &str) -> String {
    s.chars().flat_map(|c| if "*?[]\\".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}
