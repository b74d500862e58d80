//! Failing dependencies: the layer fails closed (`503`, never `200`, never `500`) when the token store
//! errors, hangs or panics, keeps serving, and recovers by itself when the store does.
//!
//! The in-process tests switch a [`FaultyStore`] between modes under a running hyper server. The Redis
//! test starts a private `redis-server` on a free port (never the shared one), kills and pauses it under
//! load, and restarts it; it needs `TOWER_TOKEN_AUTH_REDIS_URL` to be set (as a sign that Redis tests
//! are wanted) and `redis-server` on `PATH`, and prints `skipped: ...` otherwise.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use tower_token_auth::refresh::{NewPair, RefreshError, RefreshTokens};
use tower_token_auth::{testing, MemoryStore, NewToken, Rejection, TokenAuthLayer, TokenStore, TokenStoreExt};

use support::faults::{serve_api, Fault, FaultyStore};
use support::http::{client, send, Reply};

const UNAVAILABLE: &str = r#"{"message":"Authentication is temporarily unavailable. Please retry."}"#;
const UNAUTHENTICATED: &str = r#"{"message":"Unauthenticated."}"#;
const LOGGED_OUT: &str = r#"{"message":"Successfully logged out"}"#;

fn assert_unavailable(reply: &Reply, context: &str) {
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{context}");
    assert_eq!(reply.body, UNAVAILABLE, "{context}");
    assert_eq!(reply.header("retry-after"), Some("1"), "{context}");
    assert_eq!(reply.header("content-type"), Some("application/json"), "{context}");
    assert_eq!(reply.header("www-authenticate"), None, "a 503 must not make clients drop the token: {context}");
}

async fn issued(store: &impl TokenStore, user: u64) -> String {
    format!("Bearer {}", store.issue(NewToken::access(user)).await.unwrap().plain_text.expose())
}

#[tokio::test]
async fn hanging_lookups_are_cut_by_the_lookup_timeout_and_answered_503() {
    let store = FaultyStore::new(MemoryStore::new());
    let bearer = issued(&store, 1).await;
    let timeout = Duration::from_millis(200);
    let addr = serve_api(TokenAuthLayer::new(store.clone()).lookup_timeout(Some(timeout))).await;
    store.set(Fault::Hang);

    let started = Instant::now();
    let mut requests = Vec::new();
    for _ in 0..20 {
        let bearer = bearer.clone();
        requests.push(tokio::spawn(async move { send(&client(), addr, "GET", "/", Some(&bearer)).await }));
    }
    for request in requests {
        assert_unavailable(&request.await.unwrap(), "hanging store");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout, "answered before the timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "20 concurrent hanging lookups took {elapsed:?}");

    // Logout authenticates through the same store: it must not hang either.
    let reply = send(&client(), addr, "POST", "/api/v1/auth/logout", Some(&bearer)).await;
    assert_unavailable(&reply, "logout against a hanging store");
}

#[tokio::test]
async fn store_errors_are_answered_503_and_malformed_input_never_reaches_the_store() {
    let store = FaultyStore::new(MemoryStore::new());
    let bearer = issued(&store, 1).await;
    let addr = serve_api(TokenAuthLayer::new(store.clone())).await;
    store.set(Fault::Fail);
    let c = client();
    for _ in 0..5 {
        assert_unavailable(&send(&c, addr, "GET", "/", Some(&bearer)).await, "failing store");
    }
    assert_unavailable(&send(&c, addr, "GET", "/", Some("Bearer 999|unknown")).await, "unknown id, failing store");

    // Answers that need no store are unaffected, and do not call it.
    let calls = store.calls();
    for (value, challenge) in [
        (None, "Bearer"),
        (Some("Basic dXNlcjpwYXNz"), "Bearer"),
        (Some("Bearer 1|"), r#"Bearer error="invalid_token""#),
        (Some("Bearer x|secret"), r#"Bearer error="invalid_token""#),
    ] {
        let reply = send(&c, addr, "GET", "/", value).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{value:?}");
        assert_eq!(reply.body, UNAUTHENTICATED);
        assert_eq!(reply.header("www-authenticate"), Some(challenge), "{value:?}");
    }
    assert_eq!(store.calls(), calls, "malformed credentials reached the store");
}

#[tokio::test]
async fn a_panicking_store_does_not_take_the_server_down() {
    let store = FaultyStore::new(MemoryStore::new());
    let bearer = issued(&store, 1).await;
    let addr = serve_api(TokenAuthLayer::new(store.clone())).await;
    let c = client();
    for fault in [Fault::Panic, Fault::PanicWhilePolled] {
        store.set(fault);
        let mut requests = Vec::new();
        for _ in 0..10 {
            let bearer = bearer.clone();
            requests.push(tokio::spawn(async move { send(&client(), addr, "GET", "/", Some(&bearer)).await }));
        }
        for request in requests {
            assert_unavailable(&request.await.expect("the request task itself must not panic"), &format!("{fault:?}"));
        }
        let reply = send(&c, addr, "POST", "/api/v1/auth/logout", Some(&bearer)).await;
        assert_unavailable(&reply, &format!("logout, {fault:?}"));
        // Still accepting connections and answering what needs no store.
        assert_eq!(send(&client(), addr, "GET", "/", None).await.status, StatusCode::UNAUTHORIZED);
    }
    store.set(Fault::Healthy);
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn switching_the_store_back_to_healthy_recovers_without_a_restart() {
    let store = FaultyStore::new(MemoryStore::new());
    let bearer = issued(&store, 7).await;
    let other = issued(&store, 8).await;
    let addr = serve_api(TokenAuthLayer::new(store.clone()).lookup_timeout(Some(Duration::from_millis(100)))).await;
    let c = client();
    for fault in [Fault::Fail, Fault::Hang, Fault::Panic, Fault::PanicWhilePolled, Fault::Fail] {
        store.set(fault);
        assert_unavailable(&send(&c, addr, "GET", "/", Some(&bearer)).await, &format!("{fault:?}"));
        store.set(Fault::Healthy);
        let reply = send(&c, addr, "GET", "/", Some(&bearer)).await;
        assert_eq!(reply.status, StatusCode::OK, "after {fault:?}");
        assert!(reply.body.starts_with("user=7 "), "{}", reply.body);
    }

    // A logout that failed revoked nothing; the retry after recovery revokes everything.
    store.set(Fault::Fail);
    assert_unavailable(&send(&c, addr, "POST", "/api/v1/auth/logout", Some(&bearer)).await, "logout");
    store.set(Fault::Healthy);
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer)).await.status, StatusCode::OK);
    let reply = send(&c, addr, "POST", "/api/v1/auth/logout", Some(&bearer)).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, LOGGED_OUT));
    assert_eq!(send(&c, addr, "GET", "/", Some(&bearer)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&c, addr, "GET", "/", Some(&other)).await.status, StatusCode::OK);
}

/// Sends like `support::http::send`, but reports a dropped connection instead of panicking on it.
async fn try_send(addr: std::net::SocketAddr, method: &str, bearer: &str) -> Result<Reply, String> {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}/api/v1/auth/logout"))
        .header(http::header::AUTHORIZATION, bearer)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = client().request(request).await.map_err(|e| format!("no response: {e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body).await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Authentication succeeds, then the revocation fails: `503`, nothing revoked, and the token keeps
/// working so the client knows to retry.
#[tokio::test]
async fn logout_answers_503_when_the_revocation_fails_and_revokes_nothing() {
    let store = FaultyStore::new(MemoryStore::new());
    let bearer = issued(&store, 3).await;
    let addr = serve_api(TokenAuthLayer::new(store.clone())).await;
    store.set_writes(Fault::Fail);
    let reply = send(&client(), addr, "POST", "/api/v1/auth/logout", Some(&bearer)).await;
    assert_unavailable(&reply, "revocation failed");
    assert_eq!(store.inner().len(), 1, "a failed logout must not half-revoke");
    assert_eq!(send(&client(), addr, "GET", "/", Some(&bearer)).await.status, StatusCode::OK);
    store.set(Fault::Healthy);
    let reply = send(&client(), addr, "POST", "/api/v1/auth/logout", Some(&bearer)).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, LOGGED_OUT));
}

/// Like a panicking lookup, a panicking revocation must be answered `503`, not drop the connection.
#[tokio::test]
async fn logout_answers_503_when_the_revocation_panics() {
    for fault in [Fault::Panic, Fault::PanicWhilePolled] {
        let store = FaultyStore::new(MemoryStore::new());
        let bearer = issued(&store, 3).await;
        let addr = serve_api(TokenAuthLayer::new(store.clone())).await;
        store.set_writes(fault);
        match try_send(addr, "POST", &bearer).await {
            Ok(reply) => assert_unavailable(&reply, &format!("revocation {fault:?}")),
            Err(error) => panic!("logout with a revocation that panics ({fault:?}) dropped the connection: {error}"),
        }
        store.set(Fault::Healthy);
        assert_eq!(send(&client(), addr, "GET", "/", Some(&bearer)).await.status, StatusCode::OK);
    }
}

/// Like a hanging lookup, a hanging revocation must be cut by the lookup timeout and answered `503`.
#[tokio::test]
async fn logout_answers_503_when_the_revocation_hangs() {
    let store = FaultyStore::new(MemoryStore::new());
    let bearer = issued(&store, 3).await;
    let timeout = Duration::from_millis(200);
    let addr = serve_api(TokenAuthLayer::new(store.clone()).lookup_timeout(Some(timeout))).await;
    store.set_writes(Fault::Hang);
    let answered = tokio::time::timeout(Duration::from_secs(3), try_send(addr, "POST", &bearer)).await;
    let Ok(reply) = answered else {
        panic!("logout with a hanging revocation got no answer in 3 s (lookup timeout {timeout:?})")
    };
    assert_unavailable(&reply.unwrap(), "revocation hangs");
}

/// Every store call the crate makes is guarded: refresh-token issue and exchange answer a `StoreError`
/// (the refresh endpoint's `503`) for a store that fails, hangs (bounded by the timeout) or panics, and
/// never panic themselves.
#[tokio::test]
async fn refresh_tokens_fail_closed_whatever_the_store_does() {
    let store = FaultyStore::new(MemoryStore::new());
    let tokens = RefreshTokens::new(store.clone()).timeout(Some(Duration::from_millis(200)));
    let pair = tokens.issue_pair(NewPair::new(5u64)).await.unwrap();
    for fault in [Fault::Fail, Fault::Hang, Fault::Panic, Fault::PanicWhilePolled] {
        store.set(fault);
        let issued = tokio::time::timeout(Duration::from_secs(3), tokens.issue_pair(NewPair::new(5u64))).await;
        let err = issued.unwrap_or_else(|_| panic!("issue_pair against {fault:?} was not bounded")).unwrap_err();
        assert_eq!(Rejection::from(err), Rejection::StoreUnavailable, "{fault:?}");
        let exchanged =
            tokio::time::timeout(Duration::from_secs(3), tokens.exchange(&testing::bearer(&pair.refresh))).await;
        let err = exchanged.unwrap_or_else(|_| panic!("exchange against {fault:?} was not bounded")).unwrap_err();
        assert!(matches!(err, RefreshError::Store(_)), "{fault:?}: {err:?}");
        assert_eq!(err.rejection(), Rejection::StoreUnavailable);
    }
    store.set(Fault::Healthy);
    let rotated = tokens.exchange(&testing::bearer(&pair.refresh)).await.expect("a failed exchange changed nothing");
    assert_eq!(rotated.session_id(), pair.session_id());
}

/// Last-use writes run off the request path; a store whose writes fail, hang or panic must neither fail
/// the request nor take the server down.
#[tokio::test]
async fn a_broken_last_used_write_never_reaches_the_request() {
    for fault in [Fault::Fail, Fault::Hang, Fault::Panic, Fault::PanicWhilePolled] {
        let store = FaultyStore::new(MemoryStore::new());
        let bearer = issued(&store, 6).await;
        let layer = TokenAuthLayer::new(store.clone())
            .track_last_used(Duration::from_secs(60))
            .lookup_timeout(Some(Duration::from_millis(100)));
        let addr = serve_api(layer).await;
        store.set_writes(fault);
        let reply = send(&client(), addr, "GET", "/", Some(&bearer)).await;
        assert_eq!(reply.status, StatusCode::OK, "{fault:?}");
        assert_eq!(store.touches(), 1, "{fault:?}: the write was attempted");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(send(&client(), addr, "GET", "/", None).await.status, StatusCode::UNAUTHORIZED, "{fault:?}: alive");
    }
}

/// A gRPC caller of the logout service gets a trailers-only `grpc-status: 14` for a failing store, not
/// the JSON body.
#[tokio::test]
async fn logout_answers_grpc_callers_in_grpc_when_the_store_fails() {
    for fault in [Fault::Fail, Fault::Panic] {
        let store = FaultyStore::new(MemoryStore::new());
        let bearer = issued(&store, 3).await;
        let addr = serve_api(TokenAuthLayer::new(store.clone())).await;
        store.set_writes(fault);
        let request = http::Request::post(format!("http://{addr}/api/v1/auth/logout"))
            .header(http::header::AUTHORIZATION, &bearer)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{fault:?}: trailers-only");
        assert_eq!(response.headers()["grpc-status"], "14", "{fault:?}");
        assert_eq!(response.headers()["content-type"], "application/grpc", "{fault:?}");
    }
}

#[cfg(feature = "redis")]
mod redis_outage {
    //! A private Redis, killed and paused under load.

    use std::net::{SocketAddr, TcpListener};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use http::StatusCode;
    use tower_token_auth::store::RedisStore;
    use tower_token_auth::{NewToken, TokenAuthLayer, TokenStoreExt};

    use super::support::faults::serve_api;
    use super::support::http::{client, send};

    /// A `redis-server` child process on `port`, killed when dropped.
    struct PrivateRedis {
        child: Child,
        port: u16,
    }

    impl PrivateRedis {
        fn start(port: u16) -> Self {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let redis = Self { child, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "private redis-server did not start on port {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
            redis
        }

        fn signal(&self, signal: &str) {
            let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
            assert!(status.success(), "kill {signal} failed");
        }

        /// SIGKILL: the process and every token in it are gone.
        fn kill(mut self) -> u16 {
            self.child.kill().unwrap();
            self.child.wait().unwrap();
            self.port
        }
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            // Only a child that has not been reaped: its pid cannot belong to anyone else.
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn redis_server_available() -> bool {
        if std::env::var("TOWER_TOKEN_AUTH_REDIS_URL").ok().filter(|u| !u.is_empty()).is_none() {
            println!("skipped: TOWER_TOKEN_AUTH_REDIS_URL is not set");
            return false;
        }
        let found = Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_ok();
        if !found {
            println!("skipped: redis-server is not on PATH");
        }
        found
    }

    /// One request of the load: when it started and ended, and its status.
    struct Sample {
        started: Instant,
        ended: Instant,
        status: StatusCode,
    }

    /// Workers that hit the protected route with the given tokens until stopped.
    struct Load {
        stop: Arc<AtomicBool>,
        samples: Arc<Mutex<Vec<Sample>>>,
        workers: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Load {
        fn start(addr: SocketAddr, bearers: &[String], workers: usize) -> Self {
            let stop = Arc::new(AtomicBool::new(false));
            let samples = Arc::new(Mutex::new(Vec::new()));
            let workers = (0..workers)
                .map(|i| {
                    let bearer = bearers[i % bearers.len()].clone();
                    let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
                    tokio::spawn(async move {
                        let c = client();
                        while !stop.load(Ordering::SeqCst) {
                            let started = Instant::now();
                            let status = send(&c, addr, "GET", "/api/v1/user", Some(&bearer)).await.status;
                            let sample = Sample { started, ended: Instant::now(), status };
                            samples.lock().unwrap().push(sample);
                        }
                    })
                })
                .collect();
            Self { stop, samples, workers }
        }

        /// Statuses of the requests that started after `from` and ended before `to`.
        fn between(&self, from: Instant, to: Instant) -> Vec<StatusCode> {
            let samples = self.samples.lock().unwrap();
            samples.iter().filter(|s| s.started >= from && s.ended <= to).map(|s| s.status).collect()
        }

        /// Statuses of every request that started after `from`.
        fn started_after(&self, from: Instant) -> Vec<StatusCode> {
            self.samples.lock().unwrap().iter().filter(|s| s.started >= from).map(|s| s.status).collect()
        }

        async fn stop(self) -> usize {
            self.stop.store(true, Ordering::SeqCst);
            for worker in self.workers {
                worker.await.unwrap();
            }
            let total = self.samples.lock().unwrap().len();
            total
        }
    }

    fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
        statuses.iter().filter(|&&s| s == status).count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_outage_under_load_fails_closed_and_recovers_without_a_restart() {
        if !redis_server_available() {
            return;
        }
        let port = free_port();
        let redis = PrivateRedis::start(port);
        let url = format!("redis://127.0.0.1:{port}/0");
        let store = RedisStore::connect(&url).await.unwrap().command_timeout(Duration::from_millis(300));
        let mut bearers = Vec::new();
        for user in 1..=4u64 {
            let issued = store.issue(NewToken::access(user)).await.unwrap();
            bearers.push(format!("Bearer {}", issued.plain_text.expose()));
        }
        let layer = TokenAuthLayer::new(store.clone()).lookup_timeout(Some(Duration::from_secs(1)));
        let addr = serve_api(layer).await;
        let load = Load::start(addr, &bearers, 8);

        // Healthy: everything authenticates.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let healthy = load.started_after(Instant::now() - Duration::from_secs(60));
        assert!(!healthy.is_empty() && healthy.iter().all(|&s| s == StatusCode::OK), "healthy: {healthy:?}");

        // Paused (SIGSTOP): connections stay open but nothing answers; the command timeout cuts every
        // lookup. Nothing may be let through, nor rejected as 401.
        redis.signal("-STOP");
        let paused_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let resumed_at = Instant::now();
        redis.signal("-CONT");
        let paused = load.between(paused_at, resumed_at);
        assert!(count(&paused, StatusCode::SERVICE_UNAVAILABLE) > 0, "no 503 while Redis was paused");
        assert_eq!(count(&paused, StatusCode::SERVICE_UNAVAILABLE), paused.len(), "while paused: {paused:?}");

        // Resumed: the same tokens work again, on the same connection manager and server.
        let recovered = wait_for(|| async { send(&client(), addr, "GET", "/", Some(&bearers[0])).await.status }).await;
        assert_eq!(recovered, StatusCode::OK, "no recovery after SIGCONT");

        // Killed (SIGKILL): connection refused. Zero requests may authenticate from here on: the
        // restarted Redis is empty, so even after it is back the old tokens must get 401, not 200.
        let port = redis.kill();
        let down_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let up_at = Instant::now();
        let _redis = PrivateRedis::start(port);
        let down = load.between(down_at, up_at);
        assert!(count(&down, StatusCode::SERVICE_UNAVAILABLE) > 0, "no 503 while Redis was down");
        assert_eq!(count(&down, StatusCode::SERVICE_UNAVAILABLE), down.len(), "while down: {down:?}");

        // Back: the store reconnects by itself; a token issued now authenticates through the same
        // server, the old ones are unknown to the new Redis.
        let deadline = Instant::now() + Duration::from_secs(15);
        let fresh = loop {
            match store.issue(NewToken::access(9u64)).await {
                Ok(issued) => break format!("Bearer {}", issued.plain_text.expose()),
                Err(error) => assert!(Instant::now() < deadline, "the store never reconnected: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let reply = send(&client(), addr, "GET", "/", Some(&fresh)).await;
        assert_eq!((reply.status, reply.body.starts_with("user=9 ")), (StatusCode::OK, true), "{reply:?}");
        let old = wait_for(|| async { send(&client(), addr, "GET", "/", Some(&bearers[1])).await.status }).await;
        assert_eq!(old, StatusCode::UNAUTHORIZED, "a token lost with the old Redis must be invalid");
        tokio::time::sleep(Duration::from_millis(200)).await;

        let after_kill = load.started_after(down_at);
        let total = load.stop().await;
        assert_eq!(count(&after_kill, StatusCode::OK), 0, "requests authenticated after Redis died");
        assert!(
            after_kill.iter().all(|&s| s == StatusCode::SERVICE_UNAVAILABLE || s == StatusCode::UNAUTHORIZED),
            "unexpected statuses after the kill"
        );
        assert!(count(&after_kill, StatusCode::UNAUTHORIZED) > 0, "the load never saw Redis come back");
        println!("{total} requests under load; {} after the kill", after_kill.len());
    }

    /// Polls `probe` until it answers something other than 503 (at most 15 s), and returns that.
    async fn wait_for<F, Fut>(probe: F) -> StatusCode
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = StatusCode>,
    {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = probe().await;
            if status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
