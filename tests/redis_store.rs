//! The store contract and Redis-specific behaviour, run against a real Redis server.
//!
//! Set `TOWER_TOKEN_AUTH_REDIS_URL` (e.g. `redis://127.0.0.1:6379/0`) to run; without it every test
//! prints a notice and passes. Each test uses its own key prefix and deletes its keys afterwards.

#![cfg(feature = "redis")]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tower_token_auth::store::redis::RedisStore;
use tower_token_auth::store::StoreErrorKind;
use tower_token_auth::{NewToken, TokenStore, TokenStoreExt};

use support::contract::fresh_user;

fn redis_url() -> Option<String> {
    let url = std::env::var("TOWER_TOKEN_AUTH_REDIS_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("skipped: TOWER_TOKEN_AUTH_REDIS_URL is not set");
    }
    url
}

/// A key prefix no other test (or test run) uses.
fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    format!("tta-test:{test}:{}-{nanos}-{}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Deletes every key under `prefix`.
async fn cleanup(url: &str, prefix: &str) {
    let mut conn = raw_connection(url).await;
    let mut cursor = String::from("0");
    loop {
        let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(&cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
}

async fn count_keys(url: &str, prefix: &str) -> usize {
    let mut conn = raw_connection(url).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
    keys.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_meets_the_store_contract() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("contract");
    let store = RedisStore::connect(&url).await.unwrap().key_prefix(&prefix);
    support::contract::store_contract(store).await;
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_connections_see_each_others_logout_at_once() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("two-instances");
    let a = RedisStore::connect(&url).await.unwrap().key_prefix(&prefix);
    let b = RedisStore::connect(&url).await.unwrap().key_prefix(&prefix);
    let user = fresh_user();

    let t1 = a.issue(NewToken::access(user.clone())).await.unwrap().record.id;
    let t2 = b.issue(NewToken::refresh(user.clone())).await.unwrap().record.id;
    assert_ne!(t1, t2, "both instances draw ids from one counter");
    assert!(b.find(t1).await.unwrap().is_some(), "b sees a's token");
    assert!(a.find(t2).await.unwrap().is_some(), "a sees b's token");

    assert_eq!(b.revoke_all_for_user(&user).await.unwrap(), 2);
    assert!(a.find(t1).await.unwrap().is_none(), "a sees b's logout at once");
    assert!(a.find(t2).await.unwrap().is_none());

    let t3 = a.issue(NewToken::access(user.clone())).await.unwrap().record.id;
    assert!(b.revoke(t3).await.unwrap());
    assert!(a.find(t3).await.unwrap().is_none(), "a sees b's single revoke at once");

    cleanup(&url, &prefix).await;
    assert_eq!(count_keys(&url, &prefix).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_an_error_never_a_missing_token() {
    let Some(_url) = redis_url() else { return };
    let timeout = Duration::from_millis(500);
    let store = RedisStore::connect_lazy("redis://127.0.0.1:1/").unwrap().command_timeout(timeout);

    let started = Instant::now();
    let result = store.find(1).await;
    assert!(result.is_err(), "find against a closed port must fail, got {result:?}");
    assert!(started.elapsed() < timeout + Duration::from_millis(500), "took {:?}", started.elapsed());
    let e = result.unwrap_err();
    assert!(matches!(e.kind(), StoreErrorKind::Backend | StoreErrorKind::Timeout), "{e:?}");

    assert!(store.issue(NewToken::access(1u64)).await.is_err());
    assert!(store.revoke_all_for_user(&1u64.into()).await.is_err());
    assert!(store.mark_refresh_rotated(1).await.is_err());
    assert!(store.prune_expired(SystemTime::now(), None).await.is_err());

    let started = Instant::now();
    assert!(RedisStore::connect("redis://127.0.0.1:1/").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5), "connect took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_tokens_get_a_redis_ttl() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("ttl");
    let raw = raw_connection(&url).await;
    let pttl = |key: String| {
        let mut raw = raw.clone();
        async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut raw).await.unwrap() }
    };
    let hour = 3_600_000;

    // Exact expiry (no grace): the key and the user set expire with the token.
    let store = RedisStore::connect(&url).await.unwrap().key_prefix(&prefix).expiry_grace(Duration::ZERO);
    let user = fresh_user();
    let id = store.issue(NewToken::access(user.clone()).expires_in(Duration::from_secs(3600))).await.unwrap().record.id;
    let ttl = pttl(format!("{prefix}token:{id}")).await;
    assert!(hour - 60_000 < ttl && ttl <= hour, "token PTTL {ttl}");
    let set_ttl = pttl(format!("{prefix}user:{user}")).await;
    assert!(set_ttl >= ttl - 1000, "user set PTTL {set_ttl} < token PTTL {ttl}");

    // A longer-lived token extends the user set; a token without expiry makes the set permanent.
    let long =
        store.issue(NewToken::access(user.clone()).expires_in(Duration::from_secs(7200))).await.unwrap().record.id;
    let long_ttl = pttl(format!("{prefix}token:{long}")).await;
    assert!(pttl(format!("{prefix}user:{user}")).await >= long_ttl - 1000);
    let forever = store.issue(NewToken::access(user.clone())).await.unwrap().record.id;
    assert_eq!(pttl(format!("{prefix}token:{forever}")).await, -1, "a token without expiry has no TTL");
    assert_eq!(pttl(format!("{prefix}user:{user}")).await, -1, "the user set outlives every token");
    // A shorter-lived token does not shorten a permanent set.
    store.issue(NewToken::access(user.clone()).expires_in(Duration::from_secs(60))).await.unwrap();
    assert_eq!(pttl(format!("{prefix}user:{user}")).await, -1);

    // Redis deletes an expired token by itself.
    let short = store.issue(NewToken::access(user.clone()).expires_in(Duration::from_millis(200))).await.unwrap();
    assert!(store.find(short.record.id).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.find(short.record.id).await.unwrap().is_none(), "Redis expired the key");
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 4, "the stale set member is skipped");

    // With a grace, the key outlives expires_at by that much.
    let graced = RedisStore::connect(&url).await.unwrap().key_prefix(&prefix).expiry_grace(Duration::from_secs(86400));
    let id =
        graced.issue(NewToken::access(user.clone()).expires_in(Duration::from_secs(3600))).await.unwrap().record.id;
    let ttl = pttl(format!("{prefix}token:{id}")).await;
    assert!(25 * hour - 60_000 < ttl && ttl <= 25 * hour, "token PTTL with grace {ttl}");

    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_last_used_updates_existing_tokens_only() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("touch");
    let store = RedisStore::connect(&url).await.unwrap().key_prefix(&prefix);
    let user = fresh_user();
    let id = store.issue(NewToken::access(user.clone())).await.unwrap().record.id;
    assert!(store.find(id).await.unwrap().unwrap().last_used_at.is_none());
    let at = support::contract::now_secs();
    store.touch_last_used(id, at).await.unwrap();
    assert_eq!(store.find(id).await.unwrap().unwrap().last_used_at, Some(at));

    store.revoke(id).await.unwrap();
    store.touch_last_used(id, at).await.unwrap();
    assert!(store.find(id).await.unwrap().is_none(), "touch does not resurrect a revoked token");
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_records_are_corrupt_errors() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("corrupt");
    let store = RedisStore::connect(&url).await.unwrap().key_prefix(&prefix);
    let mut raw = raw_connection(&url).await;

    let _: i64 = redis::cmd("HSET")
        .arg(format!("{prefix}token:1"))
        .arg(&["user", "1", "kind", "bogus", "name", "", "abilities", "[]", "digest", "00", "created_at", "0"][..])
        .query_async(&mut raw)
        .await
        .unwrap();
    let e = store.find(1).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");

    let _: i64 =
        redis::cmd("HSET").arg(format!("{prefix}token:2")).arg("name").arg("x").query_async(&mut raw).await.unwrap();
    assert_eq!(store.find(2).await.unwrap_err().kind(), StoreErrorKind::Corrupt, "missing fields");

    let _: () = redis::cmd("SET").arg(format!("{prefix}token:3")).arg("x").query_async(&mut raw).await.unwrap();
    assert!(store.find(3).await.is_err(), "a key of the wrong type is an error, not a missing token");
    // prune skips keys it cannot read instead of failing.
    store.prune_expired(SystemTime::now(), None).await.unwrap();

    cleanup(&url, &prefix).await;
}
