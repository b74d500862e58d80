//! `RedisStore` on a single Redis primary: the store contract, the session races, the storage bound,
//! two instances sharing one Redis through the auth layer over HTTP, the data layout (expiry, dead
//! index members, ids past 2^53), chunked logout, and failures (closed port, unreadable data).
//!
//! Set `TOWER_TOKEN_AUTH_REDIS_URL` (e.g. `redis://127.0.0.1:6379/0`) to run; without it every test
//! prints `skipped: ...` and passes. Each test uses its own key prefix and deletes its keys afterwards.
//! The chunked-logout test starts a private `redis-server` on a free port (it changes the slow log
//! settings, which the shared server must not see).

#![cfg(feature = "redis")]

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use tower_token_auth::refresh::{NewPair, RefreshError, RefreshTokens};
use tower_token_auth::session::{SessionLimit, Sessions};
use tower_token_auth::store::redis::RedisStore;
use tower_token_auth::store::StoreErrorKind;
use tower_token_auth::testing::{
    bearer, fresh_user, now_secs, race_exchange_and_logout, race_presentations, rotated_tokens_are_bounded,
    store_contract, works,
};
use tower_token_auth::{NewToken, TokenAuthLayer, TokenStore, TokenStoreExt, UserId};

use support::faults::serve_api;
use support::http::{client, send};
use support::redis::{connection, scan_prefix, unique_prefix, url_from_env};

fn redis_url() -> Option<String> {
    url_from_env("TOWER_TOKEN_AUTH_REDIS_URL")
}

/// Every key under `prefix`.
async fn keys_under(url: &str, prefix: &str) -> Vec<String> {
    scan_prefix(&mut connection(url).await, prefix).await
}

/// Deletes every key under `prefix`.
async fn cleanup(url: &str, prefix: &str) {
    let keys = keys_under(url, prefix).await;
    let mut conn = connection(url).await;
    for chunk in keys.chunks(500) {
        let _: i64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await.unwrap();
    }
}

async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect(url).await.unwrap().key_prefix(prefix)
}

/// The keys of `user` under `prefix`, given one of their token ids (the bucket is its low 14 bits).
fn user_keys(prefix: &str, bucket: u64, user: &UserId) -> (String, String, String) {
    (
        format!("{prefix}{{{bucket}}}:u:{user}"),
        format!("{prefix}{{{bucket}}}:x:{user}"),
        format!("{prefix}{{{bucket}}}:n"),
    )
}

fn session_key(prefix: &str, id: u64) -> String {
    format!("{prefix}{{{}}}:s:{}", id & 16_383, id >> 15)
}

// ---------------------------------------------------------------------------------------------------
// The contract and the races

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_meets_the_store_contract() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("contract");
    let store = store(&url, &prefix).await;
    store_contract(|| store.clone()).await;
    // Everything the contract issued it also revoked: only the bucket counters remain.
    let left: Vec<String> = keys_under(&url, &prefix).await.into_iter().filter(|k| !k.ends_with("}:n")).collect();
    assert!(left.is_empty(), "keys left behind: {left:?}");
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_presentations_of_one_refresh_token_have_one_winner_and_leak_nothing() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("race-presentations");
    let report = race_presentations(store(&url, &prefix).await, 300, 4).await;
    println!("RedisStore, 4 simultaneous presentations: {report}");
    assert_eq!(report.leaks, 0, "{report}");
    assert_eq!(report.exchanges, 300, "{report}");
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exchange_racing_a_logout_never_outlives_it() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("race-logout");
    let report = race_exchange_and_logout(store(&url, &prefix).await, 300).await;
    println!("RedisStore, exchange racing logout: {report}");
    assert_eq!(report.leaks, 0, "{report}");
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_refreshes_keep_three_keys_and_a_bounded_hash() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("bounded");
    let store = store(&url, &prefix).await;
    let started = Instant::now();
    rotated_tokens_are_bounded(store.clone(), 10_000).await;
    println!("rotated_tokens_are_bounded(10,000) took {:?}", started.elapsed());

    // Count what one session holds after 10,000 refreshes (the check above revokes at its end).
    let tokens = RefreshTokens::new(store.clone());
    let user = fresh_user();
    let mut pair = tokens.issue_pair(NewPair::new(user.clone()).name("phone")).await.unwrap();
    let first = pair.clone();
    for _ in 0..10_000 {
        pair = tokens.exchange(&bearer(&pair.refresh)).await.unwrap();
    }
    assert_eq!(pair.session_id(), first.session_id());
    let keys = keys_under(&url, &prefix).await;
    let mine: Vec<&String> = keys.iter().filter(|k| !k.ends_with("}:n")).collect();
    let mut conn = connection(&url).await;
    let session = session_key(&prefix, pair.refresh.record.id);
    let fields: i64 = redis::cmd("HLEN").arg(&session).query_async(&mut conn).await.unwrap();
    let rotated: Option<String> = redis::cmd("HGET").arg(&session).arg("rot").query_async(&mut conn).await.unwrap();
    let bytes: i64 = redis::cmd("MEMORY").arg("USAGE").arg(&session).query_async(&mut conn).await.unwrap();
    println!("after 10,000 refreshes: {} keys ({mine:?}), {fields} fields, {bytes} bytes", mine.len());
    assert_eq!(mine.len(), 3, "one session hash and the two index sets: {mine:?}");
    assert!(mine.contains(&&session));
    assert_eq!(rotated, None, "without a reuse interval no exchanged digest is kept");
    assert!(fields <= 14, "the session hash has {fields} fields");
    let (by_creation, by_deadline, _) = user_keys(&prefix, pair.refresh.record.id & 16_383, &user);
    for index in [by_creation, by_deadline] {
        let members: i64 = redis::cmd("ZCARD").arg(&index).query_async(&mut conn).await.unwrap();
        assert_eq!(members, 1, "{index}");
    }
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 2);
    cleanup(&url, &prefix).await;
}

// ---------------------------------------------------------------------------------------------------
// Two instances, through the auth layer over real HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_logins_and_logouts_at_once() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("two-instances");
    let (a, b) = (store(&url, &prefix).await, store(&url, &prefix).await);
    let (api_a, api_b) =
        (serve_api(TokenAuthLayer::new(a.clone())).await, serve_api(TokenAuthLayer::new(b.clone())).await);
    let http = client();
    let user = fresh_user();

    // Log in through A, use through B, log out through B: A rejects at once.
    let pair = RefreshTokens::new(a.clone()).issue_pair(NewPair::new(user.clone()).name("laptop")).await.unwrap();
    let token = format!("Bearer {}", pair.access.plain_text.expose());
    let reply = send(&http, api_b, "GET", "/api/v1/me", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.body.contains(&format!("user={user} ")) && reply.body.ends_with("name=laptop"), "{reply:?}");
    assert_eq!(send(&http, api_a, "GET", "/api/v1/me", Some(&token)).await.status, StatusCode::OK);
    assert_eq!(send(&http, api_b, "POST", "/api/v1/auth/logout", Some(&token)).await.status, StatusCode::OK);
    assert_eq!(send(&http, api_a, "GET", "/api/v1/me", Some(&token)).await.status, StatusCode::UNAUTHORIZED);
    assert!(!works(&a, &pair.refresh).await, "the logout revoked the refresh token too");

    // A session revoked through one instance is dead on the other at once; the others live on.
    let phone = RefreshTokens::new(b.clone()).issue_pair(NewPair::new(user.clone()).name("phone")).await.unwrap();
    let tablet = RefreshTokens::new(a.clone()).issue_pair(NewPair::new(user.clone()).name("tablet")).await.unwrap();
    assert!(a.revoke_session(&user, phone.session_id()).await.unwrap());
    let phone_token = format!("Bearer {}", phone.access.plain_text.expose());
    assert_eq!(send(&http, api_b, "GET", "/", Some(&phone_token)).await.status, StatusCode::UNAUTHORIZED);
    let tablet_token = format!("Bearer {}", tablet.access.plain_text.expose());
    assert_eq!(send(&http, api_b, "GET", "/", Some(&tablet_token)).await.status, StatusCode::OK);
    assert!(matches!(
        RefreshTokens::new(b.clone()).exchange(&bearer(&phone.refresh)).await,
        Err(RefreshError::Invalid)
    ));

    // A refresh through B replaces the pair for A as well.
    let refreshed = RefreshTokens::new(b.clone()).exchange(&bearer(&tablet.refresh)).await.unwrap();
    assert_eq!(send(&http, api_a, "GET", "/", Some(&tablet_token)).await.status, StatusCode::UNAUTHORIZED);
    let refreshed_token = format!("Bearer {}", refreshed.access.plain_text.expose());
    assert_eq!(send(&http, api_a, "GET", "/", Some(&refreshed_token)).await.status, StatusCode::OK);

    assert_eq!(a.revoke_all_for_user(&user).await.unwrap(), 2);
    cleanup(&url, &prefix).await;
}

// ---------------------------------------------------------------------------------------------------
// The data layout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_past_ten_to_the_fourteen_and_two_to_the_fifty_three_work() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("big-ids");
    let store = store(&url, &prefix).await;
    let mut conn = connection(&url).await;
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let first = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let bucket = first.access.record.id & 16_383;
    let (_, _, counter) = user_keys(&prefix, bucket, &user);

    // 2^40 sessions into the bucket: ids near 2^55; then the last sessions a bucket can allocate.
    for seq in [100_000_000_000_000u64 >> 15, 1 << 40, (1 << 49) - 3] {
        let _: () = redis::cmd("SET").arg(&counter).arg(seq).query_async(&mut conn).await.unwrap();
        let pair = tokens.issue_pair(NewPair::new(user.clone()).name("big")).await.unwrap();
        let (access, refresh) = (pair.access.record.id, pair.refresh.record.id);
        assert!(access > 100_000_000_000_000, "{access}");
        assert_eq!(access >> 15, seq + 1, "the id carries the session number");
        assert!(works(&store, &pair.access).await && works(&store, &pair.refresh).await, "ids {access}, {refresh}");
        let listed = store.list_sessions(&user).await.unwrap();
        assert!(listed.iter().any(|s| s.id == pair.session_id()), "{listed:?}");
        let next = tokens.exchange(&bearer(&pair.refresh)).await.unwrap();
        assert_eq!(next.refresh.record.id, refresh);
        assert!(works(&store, &next.access).await && !works(&store, &pair.access).await);
        assert!(store.revoke_session(&user, pair.session_id()).await.unwrap());
        assert!(!works(&store, &next.access).await && !works(&store, &next.refresh).await);
    }
    // The largest id there is: the parser accepts it, the store finds nothing and does not fail.
    assert!(store.find(u64::MAX).await.unwrap().is_none());
    // A bucket whose counter is past the last session number refuses new sessions.
    let _: () = redis::cmd("SET").arg(&counter).arg(1u64 << 49).query_async(&mut conn).await.unwrap();
    let err = store.issue(NewToken::access(user.clone())).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Backend, "an exhausted bucket is an error, not a wrapped id: {err}");
    assert!(works(&store, &first.access).await, "sessions before the jump still work");
    store.revoke_all_for_user(&user).await.unwrap();
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_by_themselves_and_leave_no_dead_index_members() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("expiry");
    let store = store(&url, &prefix).await;
    let mut conn = connection(&url).await;
    let user = fresh_user();
    let unlimited = SessionLimit::unlimited();
    let forever = store.issue(NewToken::access(user.clone()).session_limit(unlimited)).await.unwrap();
    let bucket = forever.record.id & 16_383;
    let (by_creation, by_deadline, _) = user_keys(&prefix, bucket, &user);
    let ttl_conn = conn.clone();
    let pttl = |key: String| {
        let mut conn = ttl_conn.clone();
        async move { redis::cmd("PTTL").arg(key).query_async::<i64>(&mut conn).await.unwrap() }
    };
    assert_eq!(pttl(session_key(&prefix, forever.record.id)).await, -1, "a session that never expires has no TTL");
    assert_eq!(pttl(by_creation.clone()).await, -1, "nor do its indexes");

    // 1,000 sessions expiring at once next to the one that never expires (issue 14 item 4).
    let expiry = SystemTime::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (store, user) = (store.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let mut issued = Vec::new();
            for _ in 0..100 {
                let token = NewToken::access(user.clone()).expires_at(expiry).session_limit(unlimited);
                issued.push(store.issue(token).await.unwrap());
            }
            issued
        }));
    }
    let mut short = Vec::new();
    for task in tasks {
        short.extend(task.await.unwrap());
    }
    let ttl = pttl(session_key(&prefix, short[999].record.id)).await;
    assert!(0 < ttl && ttl <= 3_000, "session PTTL {ttl}");
    let members: i64 = redis::cmd("ZCARD").arg(&by_creation).query_async(&mut conn).await.unwrap();
    assert_eq!(members, 1_001);
    tokio::time::sleep(expiry.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(100)).await;
    assert!(store.find(short[0].record.id).await.unwrap().is_none(), "Redis expired the session by itself");

    // The next write path that touches the index drops the dead members.
    let hour = store.issue(NewToken::access(user.clone()).expires_in(Duration::from_secs(3600))).await.unwrap();
    let members: i64 = redis::cmd("ZCARD").arg(&by_creation).query_async(&mut conn).await.unwrap();
    let deadlines: i64 = redis::cmd("ZCARD").arg(&by_deadline).query_async(&mut conn).await.unwrap();
    assert_eq!((members, deadlines), (2, 2), "1 live + 1 new, the 1,000 dead ones dropped");
    let ttl = pttl(session_key(&prefix, hour.record.id)).await;
    assert!(3_590_000 < ttl && ttl <= 3_600_000, "an hour-long session gets an hour's TTL: {ttl}");
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 2);

    // Prune drops them too, without another login.
    for _ in 0..100 {
        let token = NewToken::access(user.clone()).expires_in(Duration::from_millis(100)).session_limit(unlimited);
        store.issue(token).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.prune_expired(SystemTime::now(), None).await.unwrap();
    let members: i64 = redis::cmd("ZCARD").arg(&by_creation).query_async(&mut conn).await.unwrap();
    assert_eq!(members, 2, "prune dropped the dead members");

    // With only expiring sessions, the index expires with the longest-lived one.
    assert!(store.revoke_session(&user, forever.record.session_id).await.unwrap());
    let index_ttl = pttl(by_creation.clone()).await;
    assert!(3_590_000 < index_ttl && index_ttl <= 3_600_000, "index PTTL {index_ttl}");
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 1);
    assert_eq!(
        redis::cmd("EXISTS").arg(&by_creation).arg(&by_deadline).query_async::<i64>(&mut conn).await.unwrap(),
        0
    );

    // A grace keeps expired sessions readable (and reported expired) for that long.
    let graced = RedisStore::connect(&url).await.unwrap().key_prefix(&prefix).expiry_grace(Duration::from_secs(86_400));
    let id =
        graced.issue(NewToken::access(user.clone()).expires_in(Duration::from_secs(3600))).await.unwrap().record.id;
    let ttl = pttl(session_key(&prefix, id)).await;
    assert!(25 * 3_600_000 - 60_000 < ttl && ttl <= 25 * 3_600_000, "session PTTL with grace {ttl}");
    graced.revoke_all_for_user(&user).await.unwrap();
    cleanup(&url, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_last_used_updates_stored_tokens_only() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("touch");
    let store = store(&url, &prefix).await;
    let user = fresh_user();
    let pair = RefreshTokens::new(store.clone()).issue_pair(NewPair::new(user.clone())).await.unwrap();
    let id = pair.access.record.id;
    assert!(store.find(id).await.unwrap().unwrap().last_used_at.is_none());
    let at = now_secs();
    store.touch_last_used(id, at).await.unwrap();
    assert_eq!(store.find(id).await.unwrap().unwrap().last_used_at, Some(at));
    assert_eq!(store.list_sessions(&user).await.unwrap()[0].last_used_at, Some(at));
    assert!(store.find(pair.refresh.record.id).await.unwrap().unwrap().last_used_at.is_none(), "per token");

    store.revoke_all_for_user(&user).await.unwrap();
    store.touch_last_used(id, at).await.unwrap();
    assert!(store.find(id).await.unwrap().is_none(), "touch does not resurrect a revoked token");
    assert!(keys_under(&url, &prefix).await.iter().all(|k| k.ends_with("}:n")), "nor leave a key behind");
    cleanup(&url, &prefix).await;
}

// ---------------------------------------------------------------------------------------------------
// Failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_an_error_naming_the_cause_never_a_missing_token() {
    if redis_url().is_none() {
        return;
    }
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // freed at once
    let url = format!("redis://127.0.0.1:{closed}/");
    let started = Instant::now();
    let err = RedisStore::connect(&url).await.unwrap_err();
    println!("connect to a closed port: {err} (after {:?})", started.elapsed());
    assert_eq!(err.kind(), StoreErrorKind::Backend, "refused, not timed out: {err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "the cause is kept: {err}");

    let store = RedisStore::connect_lazy(&url).unwrap().command_timeout(Duration::from_millis(500));
    let err = store.find(1 << 20).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Backend, "{err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    let user = UserId::from(1u64);
    assert!(store.issue(NewToken::access(1u64)).await.is_err());
    assert!(store.revoke_all_for_user(&user).await.is_err());
    assert!(store.list_sessions(&user).await.is_err());
    assert!(store.prune_expired(SystemTime::now(), None).await.is_err());
    assert!(store.touch_last_used(1 << 20, SystemTime::now()).await.is_err());
    let mut headers = http::HeaderMap::new();
    let refresh = format!("Bearer {}|secret", (1u64 << 20) | (1 << 14));
    headers.insert(http::header::AUTHORIZATION, refresh.parse().unwrap());
    let exchange = RefreshTokens::new(store.clone()).exchange(&headers).await;
    assert!(matches!(exchange, Err(RefreshError::Store(_))), "{exchange:?}");

    // Through the layer: 503, never 401 or 200.
    let api = serve_api(TokenAuthLayer::new(store)).await;
    let reply = send(&client(), api, "GET", "/", Some("Bearer 1048576|secret")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_sessions_are_corrupt_errors() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("corrupt");
    let store = store(&url, &prefix).await;
    let mut conn = connection(&url).await;
    let user = fresh_user();
    let pair = RefreshTokens::new(store.clone()).issue_pair(NewPair::new(user.clone())).await.unwrap();
    let key = session_key(&prefix, pair.access.record.id);
    for (field, value) in [("ad", "zz"), ("ae", "soon"), ("ab", "{"), ("sid", "-1"), ("u", "\u{0}\u{ff}")] {
        let original: Option<Vec<u8>> = redis::cmd("HGET").arg(&key).arg(field).query_async(&mut conn).await.unwrap();
        let _: i64 = redis::cmd("HSET").arg(&key).arg(field).arg(value).query_async(&mut conn).await.unwrap();
        match store.find(pair.access.record.id).await {
            // The error names the session (without the prefix) and the field.
            Err(e) if e.kind() == StoreErrorKind::Corrupt => {
                assert!(e.to_string().contains(&key[prefix.len()..]) && e.to_string().contains(field), "{e}")
            }
            Ok(found) if field == "u" => assert_eq!(found.unwrap().user_id, "\u{0}\u{ff}"),
            other => panic!("field {field} = {value:?}: {other:?}"),
        }
        let restore = original.unwrap_or_default();
        let _: i64 = redis::cmd("HSET").arg(&key).arg(field).arg(restore).query_async(&mut conn).await.unwrap();
    }
    let _: i64 = redis::cmd("HSET").arg(&key).arg("rot").arg("garbage").query_async(&mut conn).await.unwrap();
    let exchange = RefreshTokens::new(store.clone()).exchange(&bearer(&pair.refresh)).await;
    assert!(matches!(&exchange, Err(RefreshError::Store(e)) if e.kind() == StoreErrorKind::Corrupt), "{exchange:?}");
    assert!(works(&store, &pair.refresh).await, "a failed exchange changed nothing");

    // A key of the wrong type is an error, not a missing token.
    let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("SET").arg(&key).arg("x").query_async(&mut conn).await.unwrap();
    let err = store.find(pair.access.record.id).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Backend, "{err}");
    cleanup(&url, &prefix).await;
}

// ---------------------------------------------------------------------------------------------------
// Logout of a user with many sessions, on a private server

/// A `redis-server` child process on a free port, killed when dropped.
struct PrivateRedis {
    child: Child,
    url: String,
}

impl PrivateRedis {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            println!("skipped: redis-server is not on PATH");
            return None;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "private redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, url: format!("redis://127.0.0.1:{port}/0") })
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_with_twenty_thousand_sessions_logs_out_in_short_scripts_and_completely() {
    if redis_url().is_none() {
        return;
    }
    let Some(redis) = PrivateRedis::start() else { return };
    let store = RedisStore::connect(&redis.url).await.unwrap();
    let mut conn = connection(&redis.url).await;
    let user = fresh_user();
    let other = fresh_user();
    const SESSIONS: usize = 20_000;
    let mut pairs = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, user) = (store.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let tokens = RefreshTokens::new(store).session_limit(SessionLimit::unlimited());
            let mut pairs = Vec::new();
            for _ in 0..SESSIONS / 16 {
                pairs.push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
            }
            pairs
        }));
    }
    for task in tasks {
        pairs.extend(task.await.unwrap());
    }
    let bystander = store.issue(NewToken::access(other.clone())).await.unwrap();

    // Record every command from here on.
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(0).query_async(&mut conn).await.unwrap();
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg(100_000).query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(&mut conn).await.unwrap();

    // A bystander pings throughout; a refresh of the newest sessions races the logout.
    let stop = Arc::new(AtomicBool::new(false));
    let pinger = {
        let (stop, mut conn) = (Arc::clone(&stop), conn.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
                worst = worst.max(started.elapsed());
            }
            worst
        })
    };
    let racing = {
        let (store, racing) = (store.clone(), pairs[pairs.len() - 50..].to_vec());
        tokio::spawn(async move {
            let tokens = RefreshTokens::new(store);
            let mut minted = Vec::new();
            for pair in racing {
                if let Ok(next) = tokens.exchange(&bearer(&pair.refresh)).await {
                    minted.push(next);
                }
            }
            minted
        })
    };
    let started = Instant::now();
    let revoked = store.revoke_all_for_user(&user).await.unwrap();
    let took = started.elapsed();
    let minted = racing.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    let worst_ping = pinger.await.unwrap();
    println!(
        "logout of {SESSIONS} sessions: {revoked} tokens revoked in {took:?}; the slowest PING meanwhile took \
         {worst_ping:?}; {} exchanges raced it",
        minted.len()
    );
    assert_eq!(revoked, 2 * SESSIONS as u64);

    // Count the work of each script: no call touched more than one page of sessions.
    let log: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query_async(&mut conn).await.unwrap();
    let mut scripts = 0;
    let mut longest = 0;
    let mut page_micros = Vec::new();
    for entry in &log {
        let redis::Value::Array(parts) = entry else { continue };
        let Some(redis::Value::Int(micros)) = parts.get(2) else { continue };
        let Some(redis::Value::Array(args)) = parts.get(3) else { continue };
        let arg = |i: usize| match args.get(i) {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        if arg(0).eq_ignore_ascii_case("evalsha") {
            scripts += 1;
            // Slow log entries keep 32 arguments; the key count is the third.
            let keys: usize = arg(2).parse().unwrap();
            longest = longest.max(keys);
            if keys > 50 {
                page_micros.push(*micros);
            }
        }
    }
    page_micros.sort_unstable();
    let percentile = |p: usize| page_micros.get(page_micros.len() * p / 100).copied().unwrap_or_default();
    println!(
        "{scripts} script calls, at most {longest} keys each; a page of sessions ran {} µs (median), {} µs \
         (90th percentile), {} µs (slowest: the machine is shared, so this includes preemption)",
        percentile(50),
        percentile(90),
        page_micros.last().copied().unwrap_or_default()
    );
    assert!(scripts >= SESSIONS / 100, "the logout ran in pages: {scripts} scripts");
    assert!(longest <= 2 + 100, "a script touched {longest} keys");

    // Complete: nothing of the user works, not even what the racing exchanges minted.
    for pair in pairs.iter().step_by(97).chain(&minted) {
        assert!(!works(&store, &pair.access).await && !works(&store, &pair.refresh).await);
    }
    assert!(store.list_sessions(&user).await.unwrap().is_empty());
    let sessions: Vec<String> = redis::cmd("KEYS").arg("tta:*:s:*").query_async(&mut conn).await.unwrap();
    assert_eq!(sessions.len(), 1, "only the bystander's session is left: {}", sessions.len());
    assert!(works(&store, &bystander).await);
    assert_eq!(store.revoke_sessions(&other, Sessions::AllExcept(bystander.record.session_id)).await.unwrap(), 0);
}
