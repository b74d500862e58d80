//! `RedisStore` on Redis Sentinel, with real failovers: a primary, two replicas and a Sentinel, started
//! by each test on private loopback ports (7400-7459) and stopped when it ends.
//!
//! * With [`RedisStore::wait_for_replicas`], a logout whose revocation no replica received does not
//!   answer `200`; after the failover a retry answers `200` and the token is rejected.
//! * Without it, the same sequence loses the acknowledged logout: the revoked token works again on the
//!   promoted replica. This is the gap the option closes, shown so the first test could fail.
//! * Under a request load with logouts, a failover answers `503` while it lasts, never `401` for a valid
//!   token nor `200` for a revoked one, and service comes back without a restart.
//! * A graceful `SENTINEL FAILOVER` (the old primary demoted, not killed) is followed too.
//! * The store contract, through Sentinel, with every write waiting for both replicas.
//! * The cost of the option per logout on a healthy primary and replica (printed, not asserted).
//!
//! Needs `redis-server` (Sentinel runs as `redis-server sentinel.conf --sentinel`) and, like the other
//! Redis tests, `TOWER_TOKEN_AUTH_REDIS_URL` set; otherwise each test prints `skipped:` and passes.

#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::sync::Mutex;
use tower_token_auth::refresh::{NewPair, RefreshTokens, TokenPair};
use tower_token_auth::store::redis::{RedisStore, DEFAULT_KEY_PREFIX as DEFAULT_PREFIX};
use tower_token_auth::store::StoreErrorKind;
use tower_token_auth::testing::{fresh_user, store_contract};
use tower_token_auth::{TokenAuthLayer, TokenStore, TokenStoreExt};

use support::faults::serve_api;
use support::http::{client, send};
use support::load::{Load, Sample};
use support::redis::url_from_env;
use support::redis_processes::{
    redis_server_available, sentinel_master, RedisProcess, SentinelDeployment as Deployment, SENTINEL_MASTER as MASTER,
};

const LOGOUT: &str = "/api/v1/auth/logout";

fn enabled() -> bool {
    let _ = tracing_subscriber::fmt().with_env_filter("tower_token_auth=warn").with_test_writer().try_init();
    url_from_env("TOWER_TOKEN_AUTH_REDIS_URL").is_some() && redis_server_available()
}

fn bearer(pair_token: &tower_token_auth::IssuedToken) -> String {
    format!("Bearer {}", pair_token.plain_text.expose())
}

/// Sends `method path` until the answer is not `503` (at most 30 s): the store asks Sentinel again
/// after each failure, so this is how long the switch takes as a client sees it.
async fn until_available(api: std::net::SocketAddr, method: &str, path: &str, token: &str) -> (StatusCode, u32) {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut unavailable = 0;
    loop {
        let status = send(&http, api, method, path, Some(token)).await.status;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            return (status, unavailable);
        }
        unavailable += 1;
        assert!(Instant::now() < deadline, "{method} {path} still 503 after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What happened to one logout across a failover.
#[derive(Debug)]
struct Outcome {
    /// The logout, sent while no replica could receive it.
    logout: StatusCode,
    /// A retry of the same logout after the failover (only with the option).
    retry: Option<StatusCode>,
    /// The logged-out access token, presented after the failover.
    token_after: StatusCode,
}

/// A login, retried while the replicas do not acknowledge it in time (a loaded machine can lag past the
/// deadline; the client saw a 503 and logs in again).
async fn login_acknowledged(tokens: &RefreshTokens<RedisStore>) -> TokenPair {
    for _ in 0..200 {
        match tokens.issue_pair(NewPair::new(fresh_user())).await {
            Ok(pair) => return pair,
            Err(e) if e.kind() == StoreErrorKind::NotAcknowledged => continue,
            Err(e) => panic!("login: {e}"),
        }
    }
    panic!("the replicas never acknowledged a login");
}

/// Log out everywhere, retried while the replicas do not acknowledge it in time; returns what the
/// acknowledged attempt revoked (fewer when an unacknowledged attempt had already deleted some).
async fn logout_acknowledged(store: &RedisStore, user: &tower_token_auth::UserId) -> u64 {
    for _ in 0..200 {
        match store.revoke_all_for_user(user).await {
            Ok(revoked) => return revoked,
            Err(e) if e.kind() == StoreErrorKind::NotAcknowledged => continue,
            Err(e) => panic!("logout: {e}"),
        }
    }
    panic!("the replicas never acknowledged a logout");
}

/// Login, replicas frozen and cut off, logout, primary killed, replicas resumed, Sentinel promotes one.
async fn logout_across_a_failover(durable: bool) -> Outcome {
    let mut deployment = Deployment::start().await;
    let mut store = RedisStore::connect(&deployment.url()).await.unwrap().command_timeout(Duration::from_secs(2));
    assert!(store.is_sentinel());
    if durable {
        store = store.wait_for_replicas(1, Duration::from_millis(500));
    }
    let api = serve_api(TokenAuthLayer::new(store.clone())).await;
    let pair = login_acknowledged(&RefreshTokens::new(store.clone())).await;
    deployment.primary.wait_for_replicas(2).await; // the login itself is on every replica
    let access = bearer(&pair.access);
    assert_eq!(send(&client(), api, "GET", "/", Some(&access)).await.status, StatusCode::OK);

    for replica in &deployment.replicas {
        replica.freeze();
    }
    deployment.primary.cut_replicas().await;
    let logout = send(&client(), api, "POST", LOGOUT, Some(&access)).await.status;

    let killed_at = deployment.fail_over().await;
    let failover = killed_at.elapsed();
    // Retried before the new primary has a replica again, a logout would be applied but not acknowledged
    // (503), and the next retry would find its token gone (401): wait, so that the retry shows the 200.
    deployment.promoted().await.wait_for_replicas(1).await;
    let retry = if durable { Some(until_available(api, "POST", LOGOUT, &access).await.0) } else { None };
    let (token_after, _) = until_available(api, "GET", "/", &access).await;
    let outcome = Outcome { logout, retry, token_after };
    println!("durable={durable}: {outcome:?}; Sentinel promoted a replica {failover:?} after the kill");
    if durable {
        assert!(store.find(pair.refresh.record.id).await.unwrap().is_none(), "the refresh token went too");
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acknowledgement_no_acknowledged_logout_is_lost_in_a_sentinel_failover() {
    if !enabled() {
        return;
    }
    let outcome = logout_across_a_failover(true).await;
    assert_eq!(outcome.logout, StatusCode::SERVICE_UNAVAILABLE, "no replica had it: not acknowledged, not 200");
    assert_eq!(outcome.retry, Some(StatusCode::OK), "the retry on the promoted replica logs out");
    assert_eq!(outcome.token_after, StatusCode::UNAUTHORIZED, "the token is rejected after the failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replica_acknowledgement_a_sentinel_failover_undoes_an_acknowledged_logout() {
    if !enabled() {
        return;
    }
    let outcome = logout_across_a_failover(false).await;
    assert_eq!(outcome.logout, StatusCode::OK, "acknowledged on the primary alone");
    // The loss the option prevents: the promoted replica never saw the revocation.
    assert_eq!(outcome.token_after, StatusCode::OK, "the logged-out token works again after the failover");
}

/// A logout tried again after an attempt that was applied but not acknowledged (its replica frozen)
/// finds nothing left to revoke; its answer must still wait for the replica to have the first attempt's
/// write. Before the fix, the retry's `WAIT` covered only its own connection's writes (none), counted
/// the frozen replica by its old offset, and answered `0 revoked` at once: a logout a failover could
/// still undo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_logout_is_acknowledged_only_once_the_first_attempt_is_replicated() {
    if !enabled() {
        return;
    }
    let primary = RedisProcess::primary();
    let replica = RedisProcess::replica_of(&primary);
    primary.wait_for_replicas(1).await;
    let durable = |store: RedisStore| store.wait_for_replicas(1, Duration::from_millis(300));
    let store = durable(RedisStore::connect(&primary.url()).await.unwrap());
    let pair = login_acknowledged(&RefreshTokens::new(store.clone())).await;
    let user = pair.access.record.user_id.clone();

    replica.freeze();
    // A revocation applied on the primary and on no replica: what an attempt that was not acknowledged
    // leaves (written here without waiting, so that it surely is applied).
    let first = RedisStore::connect(&primary.url()).await.unwrap().revoke_all_for_user(&user).await;
    assert_eq!(first.unwrap(), 2, "applied on the primary");
    // Another connection, as after a reconnect or on another instance.
    let other = durable(RedisStore::connect(&primary.url()).await.unwrap());
    let retry = other.revoke_all_for_user(&user).await;
    assert_eq!(
        retry.map_err(|e| e.kind()),
        Err(StoreErrorKind::NotAcknowledged),
        "the retry finds nothing to revoke, and must still wait for the first attempt's write"
    );
    replica.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    let revoked = loop {
        match other.revoke_all_for_user(&user).await {
            Ok(revoked) => break revoked,
            Err(e) => assert!(Instant::now() < deadline, "still not acknowledged after the replica resumed: {e}"),
        }
    };
    assert_eq!(revoked, 0, "the first attempt did the revocation");
    drop(store);
    // Read on the replica itself: what a failover right now would promote.
    let on_replica = RedisStore::connect(&replica.url()).await.unwrap();
    for token in [&pair.access, &pair.refresh] {
        assert!(
            on_replica.find(token.record.id).await.unwrap().is_none(),
            "the replica has the revocation once the retry is acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_under_load_answers_503_never_a_wrong_401_or_200() {
    if !enabled() {
        return;
    }
    let mut deployment = Deployment::start().await;
    let store = RedisStore::connect(&deployment.url())
        .await
        .unwrap()
        .command_timeout(Duration::from_secs(1))
        .wait_for_replicas(1, Duration::from_millis(300));
    let tokens = RefreshTokens::new(store.clone());
    // Tokens 0..6 stay valid, 6..12 are revoked before the load, 12..18 are logged out during it.
    // Setup writes wait for the replica too; on a loaded machine it can lag past the deadline, and an
    // unacknowledged write is retried (as a client would: it answered 503).
    let mut pairs: Vec<TokenPair> = Vec::new();
    for _ in 0..18 {
        pairs.push(login_acknowledged(&tokens).await);
    }
    for pair in &pairs[6..12] {
        let user = &pair.access.record.user_id;
        for attempt in 0.. {
            match store.revoke_all_for_user(user).await {
                Ok(_) => break,
                Err(e) if e.kind() == StoreErrorKind::NotAcknowledged && attempt < 50 => continue,
                Err(e) => panic!("logout before the failover: {e}"),
            }
        }
        assert!(store.find(pair.access.record.id).await.unwrap().is_none(), "revoked before the load");
    }
    let bearers: Vec<String> = pairs.iter().map(|p| bearer(&p.access)).collect();
    let api = serve_api(TokenAuthLayer::new(store.clone()).lookup_timeout(Some(Duration::from_secs(2)))).await;
    let load = Load::start(&[api], &bearers, 8);

    // Logouts during the load, one every 300 ms, each retried on 503 until it is answered.
    let logouts = std::sync::Arc::new(Mutex::new(Vec::<(usize, StatusCode, Instant, u32)>::new()));
    let logging_out = {
        let (bearers, logouts) = (bearers.clone(), std::sync::Arc::clone(&logouts));
        tokio::spawn(async move {
            for (token, bearer) in bearers.iter().enumerate().skip(12) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let (status, retries) = until_available(api, "POST", LOGOUT, bearer).await;
                logouts.lock().await.push((token, status, Instant::now(), retries));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed_at = deployment.fail_over().await;
    let (status, _) = until_available(api, "GET", "/", &bearers[0]).await;
    assert_eq!(status, StatusCode::OK);
    let recovered_at = Instant::now();
    logging_out.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = load.stop().await;
    let logouts = logouts.lock().await.clone();

    let valid = |s: &&Sample| s.token < 6;
    let wrong_401 = samples.iter().filter(valid).filter(|s| s.status == StatusCode::UNAUTHORIZED).count();
    let wrong_200 = samples.iter().filter(|s| (6..12).contains(&s.token) && s.status == StatusCode::OK).count();
    // After a logout answered 200, its token must never authenticate again, failover or not.
    let mut after_logout_200 = 0;
    for (token, status, answered_at, _) in &logouts {
        assert!(*status == StatusCode::OK || *status == StatusCode::UNAUTHORIZED, "logout of {token}: {status}");
        after_logout_200 += samples
            .iter()
            .filter(|s| s.token == *token && s.started > *answered_at && s.status == StatusCode::OK)
            .count();
    }
    let unavailable = samples.iter().filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE).count();
    // Tokens logged out during the load are checked above, against the time of their logout.
    let after: Vec<&Sample> = samples.iter().filter(|s| s.started > recovered_at && s.token < 12).collect();
    let expected = |s: &Sample| if s.token < 6 { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
    println!(
        "Sentinel failover under load: {} requests, {unavailable} answered 503; service back {:?} after the \
         kill (no restart); {wrong_401} valid tokens refused, {wrong_200} revoked tokens accepted, \
         {after_logout_200} requests accepted after their logout answered 200; logouts (token, status, \
         503s before it): {:?}",
        samples.len(),
        recovered_at - killed_at,
        logouts.iter().map(|(t, s, _, r)| (t, s.as_u16(), r)).collect::<Vec<_>>(),
    );
    assert_eq!(wrong_401, 0, "a valid token was refused: an outage must be 503, never 401");
    assert_eq!(wrong_200, 0, "a revoked token authenticated");
    assert_eq!(after_logout_200, 0, "a logged-out token authenticated after its logout answered 200");
    assert_eq!(logouts.len(), 6, "every logout was answered");
    assert!(unavailable > 0, "the failover was visible as 503s");
    assert!(!after.is_empty(), "requests ran after the failover");
    let wrong_after: Vec<_> = after.iter().filter(|s| s.status != expected(s)).collect();
    assert!(wrong_after.is_empty(), "after the failover every answer is right: {wrong_after:?}");
    // The same store, no restart: logins and logouts work on the promoted replica. Sentinel may still
    // be reconfiguring the other replica (a resync): a write not acknowledged meanwhile is retried.
    // On a loaded machine the resync can take well over ten seconds.
    let deadline = Instant::now() + Duration::from_secs(45);
    let pair = loop {
        match tokens.issue_pair(NewPair::new(fresh_user())).await {
            Ok(pair) => break pair,
            Err(e) if e.kind() == StoreErrorKind::NotAcknowledged && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("login after the failover: {e}"),
        }
    };
    let revoked = loop {
        match store.revoke_all_for_user(&pair.access.record.user_id).await {
            Ok(revoked) => break revoked,
            Err(e) if e.kind() == StoreErrorKind::NotAcknowledged && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("logout after the failover: {e}"),
        }
    };
    // A retried logout may find the tokens already gone: the first attempt was applied, only not
    // acknowledged in time.
    assert!(revoked <= 2 && store.find(pair.access.record.id).await.unwrap().is_none());
}

/// A graceful `SENTINEL FAILOVER`: the old primary stays up, demoted to a replica (Sentinel closes its
/// clients' connections as it does so). The store leaves it for the promoted replica: writes succeed
/// there (a write on the demoted one would be `READONLY`), with `503` at most while Sentinel switches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demoted_by_sentinel_is_left_for_the_promoted_replica() {
    if !enabled() {
        return;
    }
    let deployment = Deployment::start().await;
    // Every replica: a write is acknowledged only while both follow the primary that took it.
    let store = RedisStore::connect(&deployment.url()).await.unwrap().wait_for_replicas(2, Duration::from_secs(1));
    let tokens = RefreshTokens::new(store.clone());
    let before = login_acknowledged(&tokens).await;
    let old = format!("127.0.0.1:{}", deployment.primary.port);
    let mut sentinel = support::redis::connection(&deployment.sentinel.url()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // `NOGOODSLAVE` until Sentinel has heard from the replicas themselves.
    while let Err(e) = redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER).query_async::<()>(&mut sentinel).await {
        assert!(Instant::now() < deadline, "SENTINEL FAILOVER: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while sentinel_master(&deployment.sentinel, MASTER).await.is_none_or(|m| m == old) {
        assert!(Instant::now() < deadline, "Sentinel did not fail over: {}", deployment.sentinel.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sentinel names the new primary first, then demotes the old one (closing its clients' connections).
    loop {
        // A new connection each time: the demotion closes the old ones.
        let mut demoted = support::redis::connection(&deployment.primary.url()).await;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut demoted).await.unwrap();
        if role[0] == redis::Value::BulkString(b"slave".to_vec()) {
            break;
        }
        assert!(Instant::now() < deadline, "the old primary was never demoted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Logins on the new primary, once both replicas (the old primary resyncing, and the other) follow it.
    let mut unavailable = 0;
    let after = loop {
        match tokens.issue_pair(NewPair::new(fresh_user())).await {
            Ok(pair) => break pair,
            Err(e) => {
                assert!(Instant::now() < deadline, "no login after the failover: {e}");
                unavailable += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let new_primary = support::redis::connection(&format!(
        "redis://{}",
        sentinel_master(&deployment.sentinel, MASTER).await.unwrap()
    ))
    .await;
    let mut new_primary = new_primary;
    let keys = support::redis::scan_prefix(&mut new_primary, DEFAULT_PREFIX).await;
    assert!(
        keys.iter().any(|k| k.contains(&format!(":u:{}", after.access.record.user_id))),
        "the login is on the new primary"
    );
    println!("graceful failover: {unavailable} failed logins before the store found the new primary");
    for pair in [&before, &after] {
        assert!(logout_acknowledged(&store, &pair.access.record.user_id).await <= 2, "written on the primary");
        assert!(store.find(pair.access.record.id).await.unwrap().is_none());
    }
}

/// Every store operation through Sentinel, each write waiting for a replica (scripts load on first use:
/// the `NOSCRIPT` retry goes through the same wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_store_waiting_for_replicas_meets_the_store_contract() {
    if !enabled() {
        return;
    }
    let deployment = Deployment::start().await;
    let store = RedisStore::connect(&deployment.url()).await.unwrap().wait_for_replicas(2, Duration::from_secs(1));
    store_contract(|| store.clone()).await;
}

/// What the option costs per logout, on loopback: the same logouts with and without `WAIT 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_of_waiting_for_a_replica_per_logout_is_measured() {
    if !enabled() {
        return;
    }
    let primary = RedisProcess::primary();
    let _replica = RedisProcess::replica_of(&primary);
    primary.wait_for_replicas(1).await;
    let plain = RedisStore::connect(&primary.url()).await.unwrap();
    let durable = plain.clone().wait_for_replicas(1, Duration::from_secs(1));
    let rounds = 300;
    let mut report = Vec::new();
    for (name, store) in [("no wait", &plain), ("WAIT 1", &durable), ("no wait", &plain), ("WAIT 1", &durable)] {
        let tokens = RefreshTokens::new(store.clone());
        let mut users = Vec::new();
        for _ in 0..rounds {
            let pair = login_acknowledged(&tokens).await;
            users.push(pair.access.record.user_id.clone());
        }
        let mut took = Vec::with_capacity(rounds);
        for user in &users {
            let started = Instant::now();
            assert!(logout_acknowledged(store, user).await <= 2);
            took.push(started.elapsed());
        }
        took.sort();
        report.push(format!("{name}: median {:?}, p90 {:?}", took[rounds / 2], took[rounds * 9 / 10]));
    }
    println!("logout (revoke_all_for_user, one session) over {rounds} users each, loopback: {}", report.join("; "));
}

/// The example server with `--store redis-sentinel://... --redis-replicas 1`: a logout no replica can
/// acknowledge answers `503`; once the replicas are back, its retry finds the token already revoked on
/// the primary (`401`), and the token stays rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_server_waits_for_replicas_with_redis_replicas() {
    if !enabled() {
        return;
    }
    let deployment = Deployment::start().await;
    let url = deployment.url();
    let server = tokio::task::spawn_blocking(move || {
        support::example_server::ExampleServer::start(&["--store", &url, "--redis-replicas", "1"], "warn")
    })
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}/api/v1", server.addr);
    let login: serde_json::Value = http
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"email": "demo@example.com", "password": "demo-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = format!("Bearer {}", login["access_token"].as_str().expect("a login answer"));
    let get_user = || http.get(format!("{base}/user")).header("authorization", &access).send();
    let logout = || http.post(format!("{base}/auth/logout")).header("authorization", &access).send();
    assert_eq!(get_user().await.unwrap().status(), StatusCode::OK);

    for replica in &deployment.replicas {
        replica.freeze();
    }
    deployment.primary.cut_replicas().await;
    let refused = logout().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE, "not acknowledged: never 200");
    for replica in &deployment.replicas {
        replica.resume();
    }
    deployment.primary.wait_for_replicas(2).await;
    assert_eq!(logout().await.unwrap().status(), StatusCode::UNAUTHORIZED, "the revocation stood on the primary");
    assert_eq!(get_user().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let logs = server.logs();
    assert!(logs.contains("not acknowledged"), "the cause is logged:\n{logs}");
}
