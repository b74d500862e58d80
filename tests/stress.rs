//! Concurrency and churn: logging a user out while thousands of requests with that user's tokens are
//! in flight leaks nothing, and a `MemoryStore` with its pruner does not grow under token churn.
//!
//! The Redis variant needs `TOWER_TOKEN_AUTH_REDIS_URL` (e.g. `redis://127.0.0.1:6379/0`) and prints
//! `skipped: ...` without it; it uses its own key prefix and deletes its tokens afterwards.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::StatusCode;
use tower_token_auth::{MemoryStore, NewToken, TokenAuthLayer, TokenStore, TokenStoreExt, UserId};

use support::faults::serve_api;
use support::http::{client, send};

const WORKERS: usize = 64;
const DEVICES: usize = 16;
/// Requests the load sends before the logout, and at least as many after it.
const REQUESTS_EACH_SIDE: usize = 5_000;
const BOUND: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Outcome {
    before_logout: usize,
    in_flight_at_logout: usize,
    after_logout: usize,
    leaks: usize,
    wrong_rejections: Vec<String>,
    control_failures: usize,
}

/// Logs `user` out through the HTTP endpoint while `WORKERS` tasks hammer the protected route with
/// the user's `DEVICES` tokens (and one task with another user's token), then checks every request
/// that started after the logout response arrived got the invalid-token 401.
async fn logout_under_load<St: TokenStore + Clone>(store: St, user: UserId, control_user: UserId) -> Outcome {
    let mut bearers = Vec::new();
    for device in 0..DEVICES {
        let issued = store.issue(NewToken::access(user.clone()).name(format!("device {device}"))).await.unwrap();
        bearers.push(format!("Bearer {}", issued.plain_text.expose()));
        store.issue(NewToken::refresh(user.clone())).await.unwrap();
    }
    let control = store.issue(NewToken::access(control_user.clone())).await.unwrap();
    let control = format!("Bearer {}", control.plain_text.expose());
    let addr = serve_api(TokenAuthLayer::new(store.clone())).await;

    let sent = Arc::new(AtomicUsize::new(0));
    let logout_sent_at = Arc::new(OnceLock::<Instant>::new());
    let logged_out_at = Arc::new(OnceLock::<Instant>::new());
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let bearer = if worker == 0 { control.clone() } else { bearers[worker % DEVICES].clone() };
        let (sent, logout_sent_at, logged_out_at, done) =
            (Arc::clone(&sent), Arc::clone(&logout_sent_at), Arc::clone(&logged_out_at), Arc::clone(&done));
        workers.push(tokio::spawn(async move {
            let c = client();
            let mut outcome = Outcome::default();
            // Stops once enough requests were sent after the logout returned.
            while done.load(Ordering::SeqCst) < REQUESTS_EACH_SIDE {
                let started = Instant::now();
                sent.fetch_add(1, Ordering::SeqCst);
                let reply = send(&c, addr, "GET", "/", Some(&bearer)).await;
                let after = logged_out_at.get().is_some_and(|at| started > *at);
                let before = logout_sent_at.get().is_none_or(|at| Instant::now() < *at);
                if worker == 0 {
                    outcome.control_failures += usize::from(reply.status != StatusCode::OK);
                    continue;
                }
                if after {
                    done.fetch_add(1, Ordering::SeqCst);
                    outcome.after_logout += 1;
                    outcome.leaks += usize::from(reply.status == StatusCode::OK);
                    let challenge = reply.header("www-authenticate");
                    if reply.status != StatusCode::OK
                        && (reply.status != StatusCode::UNAUTHORIZED
                            || challenge != Some(r#"Bearer error="invalid_token""#))
                    {
                        outcome.wrong_rejections.push(format!("{} {challenge:?}", reply.status));
                    }
                } else if before {
                    // Answered before the logout was even sent: must have been let through.
                    outcome.before_logout += 1;
                    if reply.status != StatusCode::OK {
                        outcome.wrong_rejections.push(format!("{} before logout", reply.status));
                    }
                } else {
                    outcome.in_flight_at_logout += 1;
                }
            }
            outcome
        }));
    }

    while sent.load(Ordering::SeqCst) < REQUESTS_EACH_SIDE {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    logout_sent_at.set(Instant::now()).unwrap();
    let reply = send(&client(), addr, "POST", "/api/v1/auth/logout", Some(&bearers[0])).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, r#"{"message":"Successfully logged out"}"#));
    logged_out_at.set(Instant::now()).unwrap();

    let mut total = Outcome::default();
    for worker in workers {
        let outcome = worker.await.unwrap();
        total.before_logout += outcome.before_logout;
        total.in_flight_at_logout += outcome.in_flight_at_logout;
        total.after_logout += outcome.after_logout;
        total.leaks += outcome.leaks;
        total.wrong_rejections.extend(outcome.wrong_rejections);
        total.control_failures += outcome.control_failures;
    }
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 0, "a token of the user survived logout");
    store.revoke_all_for_user(&control_user).await.unwrap();
    total
}

fn check(outcome: &Outcome, store: &str) {
    println!(
        "{store}: {} requests before logout, {} in flight during it, {} after; {} leaks",
        outcome.before_logout, outcome.in_flight_at_logout, outcome.after_logout, outcome.leaks
    );
    assert_eq!(outcome.leaks, 0, "{store}: requests authenticated after logout returned");
    assert!(outcome.wrong_rejections.is_empty(), "{store}: unexpected answers: {:?}", outcome.wrong_rejections);
    assert_eq!(outcome.control_failures, 0, "{store}: another user's token stopped working");
    assert!(outcome.before_logout >= REQUESTS_EACH_SIDE / 2, "{store}: the load had barely started");
    assert!(outcome.after_logout >= REQUESTS_EACH_SIDE, "{store}: too few requests after logout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_during_thousands_of_in_flight_requests_leaks_nothing_with_the_memory_store() {
    let outcome = tokio::time::timeout(BOUND, logout_under_load(MemoryStore::new(), 7u64.into(), 8u64.into()))
        .await
        .expect("bounded in time");
    check(&outcome, "MemoryStore");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_during_thousands_of_in_flight_requests_leaks_nothing_with_the_redis_store() {
    let Some(url) = std::env::var("TOWER_TOKEN_AUTH_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        println!("skipped: TOWER_TOKEN_AUTH_REDIS_URL is not set");
        return;
    };
    let prefix = format!("tta-test:stress:{}-{}:", std::process::id(), tower_token_auth::testing::fresh_user());
    let store = tower_token_auth::store::RedisStore::connect(&url).await.unwrap().key_prefix(&prefix);
    let outcome = tokio::time::timeout(
        BOUND,
        logout_under_load(store, tower_token_auth::testing::fresh_user(), tower_token_auth::testing::fresh_user()),
    )
    .await
    .expect("bounded in time");
    // Every token is revoked by now; only id counters and the control user are left in the shared Redis.
    let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
    }
    check(&outcome, "RedisStore");
}

/// Expired tokens do not pile up: under steady churn of short-lived tokens (some never logged out),
/// `spawn_pruner` keeps the store near the number of live tokens, and empties it once issuing stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruner_keeps_the_memory_store_bounded_under_churn_of_expiring_tokens() {
    const TTL: Duration = Duration::from_millis(50);
    const ROUNDS: u64 = 100;
    const PER_ROUND: u64 = 100;
    let store = MemoryStore::new();
    let pruner = store.spawn_pruner(Duration::from_millis(20), Duration::ZERO);
    let forever = store.issue(NewToken::access(1u64)).await.unwrap();

    let mut largest = 0;
    for round in 0..ROUNDS {
        for i in 0..PER_ROUND {
            let user = 1_000 + round * PER_ROUND + i;
            store.issue(NewToken::access(user).expires_in(TTL)).await.unwrap();
            store.issue(NewToken::refresh(user).expires_in(TTL)).await.unwrap();
            // Every other user logs out; the rest abandon their tokens to expiry.
            if i % 2 == 0 {
                store.revoke_all_for_user(&user.into()).await.unwrap();
            }
        }
        largest = largest.max(store.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let issued = ROUNDS * PER_ROUND * 2;
    println!("issued {issued} expiring tokens; the store peaked at {largest}");
    // Steady state is ~ (TTL + interval) / round time * PER_ROUND = ~700; a store without pruning
    // would end at 10,001. The bound leaves room for a loaded machine delaying the pruner.
    assert!(largest < 5_000, "the store grew to {largest} of {issued} issued tokens");

    let deadline = Instant::now() + Duration::from_secs(5);
    while store.len() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.len(), 1, "expired tokens were left behind");
    assert_eq!(store.user_count(), 1, "the user index kept users whose tokens were all pruned");
    assert!(store.find(forever.record.id).await.unwrap().is_some(), "the pruner removed a live token");
    pruner.abort();
}
