//! `CachedStore` over a real PostgreSQL (`SqlStore` on Sanctum's table, `PgBus`): the history checker
//! (see `support/cache_history.rs`) with three instances, each with its own pool, listening connection
//! and cache, under faults (listening connections killed with `pg_terminate_backend`, an instance's
//! bus paused across revocations, fences delayed past the lease) and the two negative controls; and
//! the trigger: last-use writes notify nobody, a foreign `DELETE` (a Laravel app) does.
//!
//! Set `TOWER_TOKEN_AUTH_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`) to run;
//! without it every test prints `skipped: ...` and passes. Each test uses a table of its own and drops
//! it. The tests run one at a time.

#![cfg(feature = "postgres")]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tower_token_auth::cache::postgres::{PgBus, CHANNEL};
use tower_token_auth::cache::{CacheConfig, CachedStore, Consistency};
use tower_token_auth::session::SessionLimit;
use tower_token_auth::{NewToken, SqlStore, TokenStore, TokenStoreExt};

use support::cache_history::{delay_fences, pause_each, run_history, FaultTask, Faults, FaultyBus, Instance, Report};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RUN_FOR: Duration = Duration::from_secs(3);

fn postgres_url() -> Option<String> {
    let url = std::env::var("TOWER_TOKEN_AUTH_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("skipped: TOWER_TOKEN_AUTH_POSTGRES_URL is not set");
    }
    url
}

fn table_name(test: &str) -> String {
    format!("tta_cache_{}_{}", test.replace('-', "_"), std::process::id())
}

async fn setup(url: &str, table: &str) -> SqlStore {
    let store = SqlStore::connect(url).await.unwrap().table(table);
    store.create_table_if_missing().await.unwrap();
    PgBus::new(url, table).unwrap().install().await.unwrap();
    store
}

async fn drop_table(url: &str, table: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS \"{table}\"")).execute(&pool).await.unwrap();
}

async fn instances(url: &str, table: &str, config: CacheConfig) -> (Vec<Instance<SqlStore>>, Vec<PgBus>) {
    let (mut all, mut buses) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let store = SqlStore::connect(url).await.unwrap().table(table);
        let bus = PgBus::new(url, table).unwrap();
        let faults = Arc::new(Faults::default());
        let cache = CachedStore::new(store, FaultyBus { inner: bus.clone(), faults: faults.clone() }, config.clone());
        all.push(Instance { cache, faults });
        buses.push(bus);
    }
    for _ in 0..300 {
        if all.iter().all(|i| i.cache.lease_is_fresh()) {
            return (all, buses);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the caches never got a lease");
}

async fn history(
    name: &str,
    config: CacheConfig,
    setup_faults: impl Fn(&Faults),
    faults: impl FnOnce(String, Vec<PgBus>) -> Option<FaultTask>,
) -> Option<Report> {
    let url = postgres_url()?;
    let _serial = SERIAL.lock().await;
    let table = table_name(name);
    setup(&url, &table).await;
    let (all, buses) = instances(&url, &table, config).await;
    for instance in &all {
        setup_faults(&instance.faults);
    }
    let report = run_history(&all, RUN_FOR, 4, faults(url.clone(), buses)).await;
    println!("postgres {name}: {report}");
    drop(all);
    drop_table(&url, &table).await;
    assert!(report.revocations > 5, "{report:?}");
    assert!(report.after_revocation > 100, "the history must test revoked tokens: {report:?}");
    assert!(report.hits() > report.requests as u64 / 4, "the history must test the cache: {report:?}");
    Some(report)
}

fn no_faults(_: String, _: Vec<PgBus>) -> Option<FaultTask> {
    None
}

fn assert_no_stale_accepts(report: Option<Report>) {
    if let Some(report) = report {
        assert_eq!(report.stale_accepts, 0, "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_without_faults() {
    assert_no_stale_accepts(history("plain", CacheConfig::default(), |_| {}, no_faults).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_when_listening_connections_are_terminated() {
    let kill = |url: String, buses: Vec<PgBus>| -> Option<FaultTask> {
        Some(Box::new(move |_faults| {
            Box::pin(async move {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                loop {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    for bus in &buses {
                        let pid = bus.listener_pid() as i32;
                        if pid != 0 {
                            sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&pool).await.unwrap();
                        }
                    }
                }
            })
        }))
    };
    let report = history("killed", CacheConfig::default(), |_| {}, kill).await;
    if let Some(report) = report {
        assert!(report.stats.iter().all(|s| s.resets >= 4), "the kills happened: {report:?}");
        assert_eq!(report.stale_accepts, 0, "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_when_an_instance_is_paused_across_revocations() {
    let pause = |_: String, _: Vec<PgBus>| Some(pause_each(Duration::from_millis(150), Duration::from_millis(200)));
    assert_no_stale_accepts(history("paused", CacheConfig::default(), |_| {}, pause).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_accepts_when_fences_are_delayed_past_the_lease() {
    let delay = |_: String, _: Vec<PgBus>| {
        Some(delay_fences(Duration::from_millis(80), Duration::from_millis(300), Duration::from_millis(200)))
    };
    assert_no_stale_accepts(history("fence_delayed", CacheConfig::default(), |_| {}, delay).await);
}

/// Negative control: no revocation wait, and a channel 30 ms slow. The checker must fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_without_the_wait_a_slow_channel_gives_stale_accepts() {
    let slow = |f: &Faults| f.delay_ms.store(30, Ordering::SeqCst);
    let config = CacheConfig::default().consistency(Consistency::BoundedStaleness);
    if let Some(report) = history("control_no_wait", config, slow, no_faults).await {
        assert!(report.stale_accepts > 0, "the checker must see this: {report:?}");
    }
}

/// Negative control: invalidations dropped while fences succeed. The checker must fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_dropped_invalidations_give_stale_accepts() {
    let drop_them = |f: &Faults| f.drop_invalidations.store(true, Ordering::SeqCst);
    if let Some(report) = history("control_dropped", CacheConfig::default(), drop_them, no_faults).await {
        assert!(report.stale_accepts > 0, "the checker must see this: {report:?}");
    }
}

/// Last-use writes never notify (they would take PostgreSQL's global notify lock on every touch);
/// revocations by another program (a Laravel app deleting rows) do.
#[tokio::test]
async fn touches_notify_nobody_and_foreign_deletes_notify_everyone() {
    let Some(url) = postgres_url() else { return };
    let _serial = SERIAL.lock().await;
    let table = table_name("trigger");
    let store = setup(&url, &table).await;
    let issued = store.issue(NewToken::access(7u64).session_limit(SessionLimit::unlimited())).await.unwrap();
    let id = issued.record.id;
    let mut listener = PgListener::connect(&url).await.unwrap();
    listener.listen(CHANNEL).await.unwrap();

    store.touch_last_used(id, std::time::SystemTime::now()).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // What Laravel's `$token->forceFill(['last_used_at' => now()])->save()` runs.
    let laravel_touch = format!("UPDATE \"{table}\" SET last_used_at = now(), updated_at = now() WHERE id = $1");
    sqlx::query(&laravel_touch).bind(id as i64).execute(&pool).await.unwrap();
    // What Laravel's `$user->tokens()->delete()` runs.
    let laravel_logout = format!("DELETE FROM \"{table}\" WHERE tokenable_id = 7");
    sqlx::query(&laravel_logout).execute(&pool).await.unwrap();

    let first = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.unwrap().unwrap();
    assert_eq!(first.payload(), format!("{table}:{id}"), "the first notification is the delete's");
    assert!(tokio::time::timeout(Duration::from_millis(200), listener.recv()).await.is_err(), "and the only one");
    drop_table(&url, &table).await;
}
