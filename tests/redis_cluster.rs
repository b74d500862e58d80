//! `RedisStore` on a real Redis Cluster (3 masters, 3 replicas): the store contract, the session races,
//! logout under a request flood, two layer stacks on two cluster clients, users in different slots,
//! a user with many sessions, a slot migrated while requests run (`MOVED`/`ASK`), a master killed
//! under load (failover), and a logout against a shard primary killed right after it, with and without
//! `wait_for_replicas` (durable revocations).
//!
//! Set `TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL` to the seed list (`scripts/redis-cluster.sh start` prints
//! it: `redis://127.0.0.1:7000,...,redis://127.0.0.1:7005`); without it every test prints `skipped:`
//! and passes. Tests on the shared cluster use their own key prefix and delete their keys. The
//! migration and failover tests start a **private** cluster of their own with the same script (on free
//! ports from 7100 and 7500 up; the durability test within 7460-7499), so killing a master or moving a slot never disturbs the shared one, and stop
//! it afterwards.

#![cfg(feature = "redis")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use http::StatusCode;
use tower_token_auth::refresh::{NewPair, RefreshTokens, TokenPair};
use tower_token_auth::session::SessionLimit;
use tower_token_auth::store::redis::RedisStore;
use tower_token_auth::testing::{
    bearer, fresh_user, race_exchange_and_logout, race_presentations, store_contract, works,
};
use tower_token_auth::{NewToken, TokenAuthLayer, TokenStore, TokenStoreExt, UserId};

use support::faults::serve_api;
use support::http::{client, send};
use support::load::{Load, Sample};
use support::redis::{connection, scan_prefix, unique_prefix, url_from_env};
use support::redis_cluster::{
    cluster_nodes, keyslot, master_of, migrate_slot, replica_of, try_master_of, PrivateCluster,
};

/// Prints the causes of 503s (the layer logs store errors as warnings).
fn log_store_errors() {
    let _ = tracing_subscriber::fmt().with_env_filter("tower_token_auth=warn").with_test_writer().try_init();
}

fn cluster_url() -> Option<String> {
    log_store_errors();
    url_from_env("TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL")
}

/// The hash slot of a user's keys (their bucket's tag).
async fn slot_of_user(seeds: &str, prefix: &str, user: &UserId) -> u16 {
    let store = RedisStore::connect_cluster(&seeds.split(',').collect::<Vec<_>>()).await.unwrap().key_prefix(prefix);
    let id = store.issue(NewToken::access(user.clone())).await.unwrap().record.id;
    store.revoke_all_for_user(user).await.unwrap();
    keyslot(seeds, &format!("{prefix}{{{}}}:s:1", id & 16_383)).await
}

/// Every key under `prefix`, on every master.
async fn keys_under(seeds: &str, prefix: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for (address, _, master, _) in cluster_nodes(seeds).await {
        if master {
            let keys = scan_prefix(&mut connection(&format!("redis://{address}")).await, prefix).await;
            all.extend(keys.into_iter().map(|k| (address.clone(), k)));
        }
    }
    all
}

async fn cleanup(seeds: &str, prefix: &str) {
    for (address, key) in keys_under(seeds, prefix).await {
        let mut conn = connection(&format!("redis://{address}")).await;
        let _: i64 = redis::cmd("DEL").arg(key).query_async(&mut conn).await.unwrap();
    }
}

async fn cluster_store(seeds: &str, prefix: &str) -> RedisStore {
    // Through `connect`, as the example server's `--store` does.
    let store = RedisStore::connect(seeds).await.unwrap().key_prefix(prefix);
    assert!(store.is_cluster());
    store
}

// ---------------------------------------------------------------------------------------------------
// The contract, the races, logout under a flood

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_store_meets_the_store_contract() {
    let Some(seeds) = cluster_url() else { return };
    let prefix = unique_prefix("contract");
    let store = cluster_store(&seeds, &prefix).await;
    store_contract(|| store.clone()).await;
    let left: Vec<_> = keys_under(&seeds, &prefix).await.into_iter().filter(|(_, k)| !k.ends_with("}:n")).collect();
    assert!(left.is_empty(), "keys left behind: {left:?}");
    cleanup(&seeds, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_presentations_on_the_cluster_have_one_winner_and_leak_nothing() {
    let Some(seeds) = cluster_url() else { return };
    let prefix = unique_prefix("race-presentations");
    let report = race_presentations(cluster_store(&seeds, &prefix).await, 300, 4).await;
    println!("RedisStore on the cluster, 4 simultaneous presentations: {report}");
    assert_eq!(report.leaks, 0, "{report}");
    assert_eq!(report.exchanges, 300, "{report}");
    cleanup(&seeds, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exchange_racing_a_logout_on_the_cluster_never_outlives_it() {
    let Some(seeds) = cluster_url() else { return };
    let prefix = unique_prefix("race-logout");
    let report = race_exchange_and_logout(cluster_store(&seeds, &prefix).await, 300).await;
    println!("RedisStore on the cluster, exchange racing logout: {report}");
    assert_eq!(report.leaks, 0, "{report}");
    cleanup(&seeds, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_during_a_request_flood_on_the_cluster_leaks_nothing() {
    let Some(seeds) = cluster_url() else { return };
    let prefix = unique_prefix("flood");
    let (a, b) = (cluster_store(&seeds, &prefix).await, cluster_store(&seeds, &prefix).await);
    let addrs = [serve_api(TokenAuthLayer::new(a.clone())).await, serve_api(TokenAuthLayer::new(b.clone())).await];
    let (user, bystander) = (fresh_user(), fresh_user());
    let tokens = RefreshTokens::new(a.clone());
    let mut bearers = Vec::new();
    for device in 0..20 {
        let pair = tokens.issue_pair(NewPair::new(user.clone()).name(format!("device {device}"))).await.unwrap();
        bearers.push(format!("Bearer {}", pair.access.plain_text.expose()));
    }
    let kept = tokens.issue_pair(NewPair::new(bystander.clone())).await.unwrap();
    bearers.push(format!("Bearer {}", kept.access.plain_text.expose()));
    let load = Load::start(&addrs, &bearers, 32);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let logout_sent = Instant::now();
    let reply = send(&client(), addrs[1], "POST", "/api/v1/auth/logout", Some(&bearers[3])).await;
    let logged_out = Instant::now();
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = load.stop().await;

    let user_token = |s: &Sample| s.token < 20;
    let after: Vec<&Sample> = samples.iter().filter(|s| user_token(s) && s.started > logged_out).collect();
    let leaks = after.iter().filter(|s| s.status == StatusCode::OK).count();
    let before = samples.iter().filter(|s| user_token(s) && s.ended < logout_sent).collect::<Vec<_>>();
    let bystander_statuses: Vec<StatusCode> = samples.iter().filter(|s| !user_token(s)).map(|s| s.status).collect();
    println!(
        "{} requests: {} of the user's before the logout, {} after it ({leaks} leaks), {} of a bystander",
        samples.len(),
        before.len(),
        after.len(),
        bystander_statuses.len()
    );
    let not_ok: Vec<StatusCode> = before.iter().map(|s| s.status).filter(|&s| s != StatusCode::OK).collect();
    assert!(!before.is_empty() && not_ok.is_empty(), "before the logout: {not_ok:?}");
    assert!(!after.is_empty(), "the load went on after the logout");
    assert_eq!(leaks, 0, "requests authenticated after the logout returned");
    assert!(after.iter().all(|s| s.status == StatusCode::UNAUTHORIZED), "only 401 after the logout");
    assert!(bystander_statuses.iter().all(|&s| s == StatusCode::OK), "the bystander was never refused");
    b.revoke_all_for_user(&bystander).await.unwrap();
    cleanup(&seeds, &prefix).await;
}

// ---------------------------------------------------------------------------------------------------
// Two cluster clients; users in different slots; a user with many sessions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_layer_stacks_on_two_cluster_clients_share_logins_and_logouts_at_once() {
    let Some(seeds) = cluster_url() else { return };
    let prefix = unique_prefix("two-clients");
    let nodes: Vec<&str> = seeds.split(',').collect();
    // Two clients seeded differently, as two instances of a service would be.
    let a = RedisStore::connect_cluster(&nodes[..3]).await.unwrap().key_prefix(&prefix);
    let b = RedisStore::connect_cluster(&nodes[3..]).await.unwrap().key_prefix(&prefix);
    let (api_a, api_b) =
        (serve_api(TokenAuthLayer::new(a.clone())).await, serve_api(TokenAuthLayer::new(b.clone())).await);
    let http = client();
    let user = fresh_user();

    let pair = RefreshTokens::new(a.clone()).issue_pair(NewPair::new(user.clone()).name("laptop")).await.unwrap();
    let token = format!("Bearer {}", pair.access.plain_text.expose());
    let reply = send(&http, api_b, "GET", "/", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.body.starts_with(&format!("user={user} ")), "{reply:?}");
    assert_eq!(send(&http, api_b, "POST", "/api/v1/auth/logout", Some(&token)).await.status, StatusCode::OK);
    assert_eq!(send(&http, api_a, "GET", "/", Some(&token)).await.status, StatusCode::UNAUTHORIZED);
    assert!(!works(&a, &pair.refresh).await);

    let phone = RefreshTokens::new(b.clone()).issue_pair(NewPair::new(user.clone()).name("phone")).await.unwrap();
    let tablet = RefreshTokens::new(b.clone()).issue_pair(NewPair::new(user.clone()).name("tablet")).await.unwrap();
    assert!(a.revoke_session(&user, phone.session_id()).await.unwrap());
    let phone_token = format!("Bearer {}", phone.access.plain_text.expose());
    assert_eq!(send(&http, api_b, "GET", "/", Some(&phone_token)).await.status, StatusCode::UNAUTHORIZED);
    let tablet_token = format!("Bearer {}", tablet.access.plain_text.expose());
    assert_eq!(send(&http, api_a, "GET", "/", Some(&tablet_token)).await.status, StatusCode::OK);
    assert_eq!(b.list_sessions(&user).await.unwrap().len(), 1);
    a.revoke_all_for_user(&user).await.unwrap();
    cleanup(&seeds, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_in_different_slots_log_out_independently() {
    let Some(seeds) = cluster_url() else { return };
    let prefix = unique_prefix("slots");
    let store = cluster_store(&seeds, &prefix).await;
    // Users until three of them live on three different masters.
    let mut by_master: BTreeMap<String, UserId> = BTreeMap::new();
    while by_master.len() < 3 {
        let user = fresh_user();
        let slot = slot_of_user(&seeds, &prefix, &user).await;
        by_master.entry(master_of(&seeds, slot).await).or_insert(user);
    }
    let users: Vec<UserId> = by_master.values().cloned().collect();
    let tokens = RefreshTokens::new(store.clone());
    let mut pairs: HashMap<UserId, Vec<TokenPair>> = HashMap::new();
    for user in &users {
        for _ in 0..3 {
            pairs.entry(user.clone()).or_default().push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
        }
    }
    for (i, user) in users.iter().enumerate() {
        assert_eq!(store.revoke_all_for_user(user).await.unwrap(), 6);
        for (j, other) in users.iter().enumerate() {
            for pair in &pairs[other] {
                let alive = works(&store, &pair.access).await && works(&store, &pair.refresh).await;
                assert_eq!(alive, j > i, "user {j} after the logout of user {i}");
            }
        }
    }
    println!("users on masters {:?} logged out independently", by_master.keys().collect::<Vec<_>>());
    cleanup(&seeds, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_with_many_sessions_logs_out_completely_while_they_refresh() {
    let Some(seeds) = cluster_url() else { return };
    let prefix = unique_prefix("many");
    let store = cluster_store(&seeds, &prefix).await;
    let user = fresh_user();
    const SESSIONS: usize = 2_000;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, user) = (store.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let tokens = RefreshTokens::new(store).session_limit(SessionLimit::unlimited());
            let mut pairs = Vec::new();
            for _ in 0..SESSIONS / 8 {
                pairs.push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
            }
            pairs
        }));
    }
    let mut pairs = Vec::new();
    for task in tasks {
        pairs.extend(task.await.unwrap());
    }
    // Refreshes of the newest 400 sessions (logged out last) race the logout, 8 at a time.
    let racing: Vec<_> = pairs[SESSIONS - 400..]
        .chunks(50)
        .map(|chunk| {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tokio::spawn(async move {
                let tokens = RefreshTokens::new(store);
                let mut minted = Vec::new();
                for pair in chunk {
                    if let Ok(next) = tokens.exchange(&bearer(&pair.refresh)).await {
                        minted.push(next);
                    }
                }
                minted
            })
        })
        .collect();
    let revoked = store.revoke_all_for_user(&user).await.unwrap();
    let mut minted = Vec::new();
    for task in racing {
        minted.extend(task.await.unwrap());
    }
    println!("{SESSIONS} sessions: {revoked} tokens revoked, {} refreshes raced the logout", minted.len());
    assert_eq!(revoked, 2 * SESSIONS as u64);
    for pair in pairs.iter().chain(&minted) {
        assert!(!works(&store, &pair.access).await && !works(&store, &pair.refresh).await, "a token survived");
    }
    assert!(store.list_sessions(&user).await.unwrap().is_empty());
    cleanup(&seeds, &prefix).await;
}

// ---------------------------------------------------------------------------------------------------
// A private cluster: slot migration and failover

/// Waits until the master of each of `users` has its replica in sync: a fresh cluster's replicas may
/// still be in their first sync, and a store waiting for replicas would answer "not acknowledged".
async fn replicas_in_sync(users: &[(UserId, u16, String)]) {
    for (_, _, master) in users {
        let mut conn = connection(&format!("redis://{master}")).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while redis::cmd("WAIT").arg(1).arg(200).query_async::<i64>(&mut conn).await.unwrap() < 1 {
            assert!(Instant::now() < deadline, "{master} has no replica in sync");
        }
    }
}

/// Users until one of them lives on each master: `(user, slot, master)`.
async fn one_user_per_master(seeds: &str, prefix: &str) -> Vec<(UserId, u16, String)> {
    let mut found: BTreeMap<String, (UserId, u16)> = BTreeMap::new();
    while found.len() < 3 {
        let user = fresh_user();
        let slot = slot_of_user(seeds, prefix, &user).await;
        found.entry(master_of(seeds, slot).await).or_insert((user, slot));
    }
    found.into_iter().map(|(master, (user, slot))| (user, slot, master)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migrated_under_load_is_followed_transparently() {
    if cluster_url().is_none() {
        return;
    }
    let Some(cluster) = PrivateCluster::start(7100) else { return };
    let seeds = cluster.seeds.clone();
    let prefix = "tta-migrate:";
    let store = cluster_store(&seeds, prefix).await;
    let users = one_user_per_master(&seeds, prefix).await;
    replicas_in_sync(&users).await;
    let (user, slot, source) = users[0].clone();
    let target = users[1].2.clone();
    let tokens = RefreshTokens::new(store.clone());
    let mut pairs = Vec::new();
    for _ in 0..50 {
        pairs.push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
    }
    let revoked = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    assert!(store.revoke_session(&user, revoked.session_id()).await.unwrap());
    let mut bearers: Vec<String> = pairs.iter().map(|p| format!("Bearer {}", p.access.plain_text.expose())).collect();
    bearers.push(format!("Bearer {}", revoked.access.plain_text.expose()));
    let api = serve_api(TokenAuthLayer::new(store.clone())).await;
    let load = Load::start(&[api], &bearers, 16);

    // Logins, refreshes, listings and logouts of the same user go on during the migration too.
    // Through a store that waits for a replica: the script and its `WAIT` follow `MOVED` and `ASK` together.
    let writes = {
        let (store, user) = (store.clone().wait_for_replicas(1, Duration::from_secs(1)), user.clone());
        tokio::spawn(async move {
            let tokens = RefreshTokens::new(store.clone());
            let (mut ok, mut failed) = (0, Vec::new());
            for _ in 0..60 {
                let result = async {
                    let pair = tokens.issue_pair(NewPair::new(user.clone()).name("churn")).await?;
                    let next = tokens.exchange(&bearer(&pair.refresh)).await.map_err(|e| format!("{e}"))?;
                    let listed = store.list_sessions(&user).await?;
                    if !listed.iter().any(|s| s.id == next.session_id()) {
                        return Err(format!("session {} not listed", next.session_id()).into());
                    }
                    store.revoke_session(&user, next.session_id()).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                }
                .await;
                match result {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };

    // Move the slot from its master to another one, key by key, as `redis-cli --cluster reshard` does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved = migrate_slot(&seeds, slot, &source, &target, Duration::from_millis(20)).await;
    let migrated_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = writes.await.unwrap();
    let samples = load.stop().await;

    let revoked_index = bearers.len() - 1;
    let wrong = samples.iter().filter(|s| s.token == revoked_index && s.status == StatusCode::OK).count();
    let valid: Vec<&Sample> = samples.iter().filter(|s| s.token != revoked_index).collect();
    let unavailable = valid.iter().filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE).count();
    let rejected = valid.iter().filter(|s| s.status == StatusCode::UNAUTHORIZED).count();
    let after = valid.iter().filter(|s| s.started > migrated_at).count();
    println!(
        "moved {moved} keys of slot {slot} from {source} to {target} under {} requests ({unavailable} 503, \
         {rejected} 401 for valid tokens, {wrong} 200 for a revoked one, {after} after the move); \
         {ok} login/refresh/logout rounds succeeded, {} failed: {failed:?}",
        samples.len(),
        failed.len()
    );
    assert_eq!(master_of(&seeds, slot).await, target, "the slot moved");
    assert!(moved >= 3, "the user's keys moved with the slot");
    assert_eq!(wrong, 0, "a revoked token authenticated");
    assert_eq!(rejected, 0, "a valid token was refused during the migration");
    assert_eq!(unavailable, 0, "MOVED/ASK are followed, not answered 503");
    assert!(after > 0, "requests ran after the move");
    assert!(failed.is_empty(), "writes during the migration: {failed:?}");
    for pair in &pairs {
        assert!(works(&store, &pair.access).await);
    }
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_load_is_503_until_its_replica_takes_over() {
    if cluster_url().is_none() {
        return;
    }
    let Some(cluster) = PrivateCluster::start(7500) else { return };
    let seeds = cluster.seeds.clone();
    let prefix = "tta-failover:";
    let store = cluster_store(&seeds, prefix).await.command_timeout(Duration::from_millis(500));
    let users = one_user_per_master(&seeds, prefix).await;
    let tokens = RefreshTokens::new(store.clone());
    // A valid and a revoked token of a user on each master; the first master is killed.
    let mut bearers = Vec::new();
    for (user, _, _) in &users {
        let valid = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let revoked = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        assert!(store.revoke_session(user, revoked.session_id()).await.unwrap());
        bearers.push(format!("Bearer {}", valid.access.plain_text.expose()));
        bearers.push(format!("Bearer {}", revoked.access.plain_text.expose()));
    }
    // Replicate every write before the kill: asynchronous replication loses what is not replicated yet.
    // A fresh cluster's replica may still be in its first sync on a loaded machine: up to 20 s.
    for (_, _, master) in &users {
        let mut conn = connection(&format!("redis://{master}")).await;
        let replicas: i64 = redis::cmd("WAIT").arg(1).arg(20_000).query_async(&mut conn).await.unwrap();
        assert_eq!(replicas, 1, "{master} has a replica in sync");
    }
    let api = serve_api(TokenAuthLayer::new(store.clone()).lookup_timeout(Some(Duration::from_secs(1)))).await;
    let load = Load::start(&[api], &bearers, 12);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expected = |s: &Sample| if s.token % 2 == 0 { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
    let healthy = load.samples();
    assert!(!healthy.is_empty() && healthy.iter().all(|s| s.status == expected(s)), "before the kill");

    let victim = users[0].2.clone();
    let pid = cluster.pid(&victim).await;
    let killed_at = Instant::now();
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());

    // Bounded wait: node timeout 2 s, then the election.
    let (user0_valid, deadline) = (&bearers[0], killed_at + Duration::from_secs(30));
    let recovered_at = loop {
        let status = send(&client(), api, "GET", "/", Some(user0_valid)).await.status;
        if status == StatusCode::OK && master_of(&seeds, users[0].1).await != victim {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "the replica never took over (last status {status})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let samples = load.stop().await;

    let wrong_ok = samples.iter().filter(|s| s.token % 2 == 1 && s.status == StatusCode::OK).count();
    let wrong_401 = samples.iter().filter(|s| s.token % 2 == 0 && s.status == StatusCode::UNAUTHORIZED).count();
    let down: Vec<&Sample> =
        samples.iter().filter(|s| s.token < 2 && s.started > killed_at && s.ended < recovered_at).collect();
    let down_503 = down.iter().filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE).count();
    let others_during: Vec<&Sample> =
        samples.iter().filter(|s| s.token >= 2 && s.started > killed_at && s.ended < recovered_at).collect();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.started > recovered_at).collect();
    println!(
        "failover of {victim} after {:?}: {} requests; for its tokens while down {} ({down_503} 503), other \
         masters meanwhile {} ({} ok as expected); after: {} ({} as expected); {wrong_ok} revoked tokens let \
         through, {wrong_401} valid ones refused",
        recovered_at - killed_at,
        samples.len(),
        down.len(),
        others_during.len(),
        others_during.iter().filter(|s| s.status == expected(s)).count(),
        after.len(),
        after.iter().filter(|s| s.status == expected(s)).count(),
    );
    assert_eq!(wrong_ok, 0, "a revoked token authenticated");
    assert_eq!(wrong_401, 0, "a valid token was refused: an outage must be 503, never 401");
    assert!(down_503 > 0, "requests for the dead master's slots were answered 503");
    assert!(
        down.iter().all(|s| s.status == StatusCode::SERVICE_UNAVAILABLE || s.status == expected(s)),
        "while down: 503 or the right answer"
    );
    assert!(!after.is_empty() && after.iter().all(|s| s.status == expected(s)), "after the failover");
    // The same store, no restart: logins and logouts on the promoted replica work.
    let (user, _, _) = &users[0];
    let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    assert!(works(&store, &pair.access).await);
    assert_eq!(store.revoke_all_for_user(user).await.unwrap(), 4);
}

// ---------------------------------------------------------------------------------------------------
// Durable revocations: a logout against a failover

fn signal(name: &str, pid: u32) {
    assert!(Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap().success());
}

/// Sends `method path` until the answer is not `503` (at most 60 s).
async fn until_available(api: SocketAddr, method: &str, path: &str, token: &str) -> StatusCode {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = send(&client(), api, method, path, Some(token)).await.status;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            return status;
        }
        assert!(Instant::now() < deadline, "{method} {path} still 503 after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A login on `master`, its replica frozen and cut off, a logout, `master` killed right after, the
/// replica resumed and promoted. Returns the logout's answer, the retry's (when the store waits for a
/// replica, with `spare` the replica to move under the new primary), and the token's answer after the
/// failover.
async fn logout_across_a_cluster_failover(
    cluster: &PrivateCluster,
    store: RedisStore,
    (user, slot, master): &(UserId, u16, String),
    spare: Option<&str>,
) -> (StatusCode, Option<StatusCode>, StatusCode) {
    let durable = spare.is_some();
    let seeds = &cluster.seeds;
    let api = serve_api(TokenAuthLayer::new(store.clone())).await;
    let pair = RefreshTokens::new(store.clone()).issue_pair(NewPair::new(user.clone())).await.unwrap();
    let mut conn = connection(&format!("redis://{master}")).await;
    let synced: i64 = redis::cmd("WAIT").arg(1).arg(5000).query_async(&mut conn).await.unwrap();
    assert_eq!(synced, 1, "the login is on the replica");
    let access = format!("Bearer {}", pair.access.plain_text.expose());
    assert_eq!(send(&client(), api, "GET", "/", Some(&access)).await.status, StatusCode::OK);

    let replica = replica_of(seeds, master).await;
    let (master_pid, replica_pid) = (cluster.pid(master).await, cluster.pid(&replica).await);
    signal("STOP", replica_pid);
    let _: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica").query_async(&mut conn).await.unwrap();
    let logout = send(&client(), api, "POST", "/api/v1/auth/logout", Some(&access)).await.status;
    signal("KILL", master_pid);
    signal("CONT", replica_pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_master_of(seeds, *slot).await.as_deref() != Some(replica.as_str()) {
        assert!(Instant::now() < deadline, "{replica} did not take over slot {slot}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The killed node stays down (restarted empty, it would claim its old slots until gossip tells it
    // otherwise); with the option a spare replica follows the new primary, so `WAIT 1` can be met.
    if let Some(spare) = spare {
        let new_id = cluster_nodes(seeds).await.into_iter().find(|(a, ..)| *a == replica).unwrap().1;
        let mut conn = connection(&format!("redis://{spare}")).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        // Refused until the spare has heard of the promotion.
        while let Err(e) = redis::cmd("CLUSTER").arg("REPLICATE").arg(&new_id).query_async::<()>(&mut conn).await {
            assert!(Instant::now() < deadline, "{spare} cannot follow {replica}: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Retried before the spare is in sync, a logout would be applied, not acknowledged (503), and
        // the next retry would find its token gone (401): wait, so that the retry shows the 200.
        let mut promoted = connection(&format!("redis://{replica}")).await;
        while redis::cmd("WAIT").arg(1).arg(200).query_async::<i64>(&mut promoted).await.unwrap() < 1 {
            assert!(Instant::now() < deadline + Duration::from_secs(10), "{spare} never synced with {replica}");
        }
    }
    let retry = if durable { Some(until_available(api, "POST", "/api/v1/auth/logout", &access).await) } else { None };
    let after = until_available(api, "GET", "/", &access).await;
    println!("cluster, durable={durable}: logout {logout}, retry {retry:?}, the token after the failover {after}");
    (logout, retry, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acknowledgement_no_acknowledged_logout_is_lost_when_a_shard_primary_dies() {
    if cluster_url().is_none() {
        return;
    }
    // Ports 7460-7499 (and their bus ports): the Sentinel tests use 7400-7459.
    let Some(cluster) = PrivateCluster::start_in(7460..7500) else { return };
    let prefix = "tta-durable:";
    let users = one_user_per_master(&cluster.seeds, prefix).await;
    replicas_in_sync(&users).await;
    let timeout = Duration::from_secs(2);

    let durable = cluster_store(&cluster.seeds, prefix).await.command_timeout(timeout);
    let durable = durable.wait_for_replicas(1, Duration::from_millis(500));
    let spare = replica_of(&cluster.seeds, &users[2].2).await;
    let (logout, retry, after) = logout_across_a_cluster_failover(&cluster, durable, &users[0], Some(&spare)).await;
    assert_eq!(logout, StatusCode::SERVICE_UNAVAILABLE, "no replica had it: not acknowledged, not 200");
    assert_eq!(retry, Some(StatusCode::OK), "the retry on the promoted replica logs out");
    assert_eq!(after, StatusCode::UNAUTHORIZED, "the token is rejected after the failover");

    // Without the option, on another shard: the acknowledged logout is lost with its primary.
    let plain = cluster_store(&cluster.seeds, prefix).await.command_timeout(timeout);
    let (logout, _, after) = logout_across_a_cluster_failover(&cluster, plain, &users[1], None).await;
    assert_eq!(logout, StatusCode::OK, "acknowledged by the primary alone");
    assert_eq!(after, StatusCode::OK, "the logged-out token works again after the failover");
}
