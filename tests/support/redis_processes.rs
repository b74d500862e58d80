//! Private `redis-server` processes for the high-availability tests (`tests/redis_sentinel.rs`, the
//! durability test of `tests/redis_cluster.rs`): a primary, its replicas and a Sentinel on loopback
//! ports 7400-7459, each in a temporary directory, stopped by pid when dropped. Freezing (`SIGSTOP`)
//! and killing (`SIGKILL`) a node are what the tests do to it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::redis::connection;

/// Whether `redis-server` can run here; prints the `skipped:` line when it cannot.
pub fn redis_server_available() -> bool {
    let ok = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipped: redis-server is not on PATH");
    }
    ok
}

/// A free loopback port in 7400-7459, never the same twice in one test process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    for _ in 0..60 {
        let port = 7400 + NEXT.fetch_add(1, Ordering::Relaxed) % 60;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:7400-7459")
}

/// One `redis-server` process (a primary, a replica or a Sentinel).
pub struct RedisProcess {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    role: &'static str,
}

impl RedisProcess {
    /// A primary on a free port.
    pub fn primary() -> Self {
        Self::start("primary", &[])
    }

    /// A replica of `primary`.
    pub fn replica_of(primary: &RedisProcess) -> Self {
        Self::replica_of_port(primary.port)
    }

    /// A replica of the server on 127.0.0.1:`port` (a replica promoted by Sentinel, say).
    pub fn replica_of_port(port: u16) -> Self {
        Self::start("replica", &["--replicaof", "127.0.0.1", &port.to_string()])
    }

    /// A Sentinel watching `primary` as `master`, alone in its quorum, with the shortest practical
    /// timings: down after 1 s, so a failover completes in a few seconds.
    pub fn sentinel(master: &str, primary: &RedisProcess) -> Self {
        let port = free_port();
        let dir = temp_dir("sentinel", port);
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {master} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {master} 1000\n\
                 sentinel failover-timeout {master} 5000\n\
                 sentinel parallel-syncs {master} 2\n",
                dir.display(),
                primary.port
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::from(std::fs::File::create(dir.join("log")).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel starts");
        let process = Self { port, child: Some(child), dir, role: "sentinel" };
        process.wait_up();
        process
    }

    fn start(role: &'static str, extra: &[&str]) -> Self {
        let port = free_port();
        let dir = temp_dir(role, port);
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            // Replicas always accept a full resync quickly (no disk).
            .args(["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
            .args(extra)
            .stdout(Stdio::from(std::fs::File::create(dir.join("log")).unwrap()))
            .stderr(Stdio::null());
        let child = command.spawn().expect("redis-server starts");
        let process = Self { port, child: Some(child), dir, role };
        process.wait_up();
        process
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "{} on port {} did not start: {}", self.role, self.port, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Freezes the process (`SIGSTOP`): it keeps its sockets but answers nothing.
    pub fn freeze(&self) {
        signal("STOP", self.pid());
    }

    /// Resumes a frozen process (`SIGCONT`).
    pub fn resume(&self) {
        signal("CONT", self.pid());
    }

    /// Kills the process at once (`SIGKILL`): nothing it holds is saved or sent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's log (to explain a failure).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Cuts every replication link of this primary (`CLIENT KILL TYPE replica`): a frozen replica still
    /// receives the stream into its socket buffer, so freezing alone would lose nothing.
    pub async fn cut_replicas(&self) {
        let mut conn = connection(&self.url()).await;
        let _: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica").query_async(&mut conn).await.unwrap();
    }

    /// Waits (at most 10 s) until `replicas` replicas are connected and in sync with this primary.
    pub async fn wait_for_replicas(&self, replicas: usize) {
        let mut conn = connection(&self.url()).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let acked: i64 = redis::cmd("WAIT").arg(replicas).arg(200).query_async(&mut conn).await.unwrap();
            if acked >= replicas as i64 {
                return;
            }
            assert!(Instant::now() < deadline, "only {acked} of {replicas} replicas in sync with port {}", self.port);
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen process must be resumed to die cleanly (SIGKILL works anyway; this keeps its
            // sockets from lingering).
            signal("CONT", child.id());
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(name: &str, pid: u32) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

fn temp_dir(role: &str, port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tta-{role}-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The address Sentinel `sentinel` names for `master`, as `host:port`.
pub async fn sentinel_master(sentinel: &RedisProcess, master: &str) -> Option<String> {
    sentinel_master_at(&sentinel.url(), master).await
}

/// The address (`host:port`) of the primary the Sentinel at `url` names for `master`.
pub async fn sentinel_master_at(url: &str, master: &str) -> Option<String> {
    let mut conn = connection(url).await;
    let addr: Option<(String, String)> =
        redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(master).query_async(&mut conn).await.ok()?;
    addr.map(|(host, port)| format!("{host}:{port}"))
}

/// The master name the Sentinel of a [`SentinelDeployment`] watches.
pub const SENTINEL_MASTER: &str = "tta-primary";

/// A primary, two replicas in sync, and a Sentinel that knows all three.
pub struct SentinelDeployment {
    pub primary: RedisProcess,
    pub replicas: [RedisProcess; 2],
    pub sentinel: RedisProcess,
}

impl SentinelDeployment {
    pub async fn start() -> Self {
        let primary = RedisProcess::primary();
        let replicas = [RedisProcess::replica_of(&primary), RedisProcess::replica_of(&primary)];
        primary.wait_for_replicas(2).await;
        // Started after the replicas are attached, so its first `INFO` of the primary finds them.
        let sentinel = RedisProcess::sentinel(SENTINEL_MASTER, &primary);
        let deployment = Self { primary, replicas, sentinel };
        deployment.wait_until_sentinel_knows_the_replicas().await;
        deployment
    }

    pub fn url(&self) -> String {
        format!("redis-sentinel://127.0.0.1:{}/{SENTINEL_MASTER}/0", self.sentinel.port)
    }

    pub async fn wait_until_sentinel_knows_the_replicas(&self) {
        let mut conn = super::redis::connection(&self.sentinel.url()).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let replicas: Vec<redis::Value> =
                redis::cmd("SENTINEL").arg("REPLICAS").arg(SENTINEL_MASTER).query_async(&mut conn).await.unwrap();
            if replicas.len() == 2 {
                return;
            }
            assert!(Instant::now() < deadline, "Sentinel did not discover the replicas");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The replica Sentinel promoted.
    pub async fn promoted(&self) -> &RedisProcess {
        let master = sentinel_master(&self.sentinel, SENTINEL_MASTER).await.expect("a primary");
        self.replicas.iter().find(|r| master.ends_with(&format!(":{}", r.port))).expect("a promoted replica")
    }

    /// Kills the primary and waits until Sentinel names another one (at most 30 s). Returns when.
    pub async fn fail_over(&mut self) -> Instant {
        let old = format!("127.0.0.1:{}", self.primary.port);
        self.primary.kill();
        let killed_at = Instant::now();
        for replica in &self.replicas {
            replica.resume(); // no-op unless frozen
        }
        let deadline = killed_at + Duration::from_secs(30);
        loop {
            if sentinel_master(&self.sentinel, SENTINEL_MASTER).await.is_some_and(|m| m != old) {
                return killed_at;
            }
            assert!(Instant::now() < deadline, "Sentinel did not promote a replica: {}", self.sentinel.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
