//! `CachedStore` over MySQL/MariaDB and SQLite (`SqlStore` on Sanctum's table, `PollBus`): the history
//! checker (see `support/cache_history.rs`) with three instances, each with its own pool, bus and cache,
//! under faults (an instance's bus paused across revocations, fences delayed past the lease) and the two
//! negative controls; and the triggers: last-use writes log nothing, a foreign `DELETE` (a Laravel app)
//! is logged.
//!
//! MariaDB runs when `TOWER_TOKEN_AUTH_MYSQL_URL` is set (e.g. `mysql://root@127.0.0.1:3306/test`;
//! otherwise `skipped: ...`); SQLite always, in a temporary file. Each test uses a table of its own and
//! drops it. The tests run one at a time.

#![cfg(all(feature = "mysql", feature = "sqlite"))]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tower_token_auth::cache::poll::PollBus;
use tower_token_auth::cache::{CacheConfig, CachedStore, Consistency};
use tower_token_auth::session::SessionLimit;
use tower_token_auth::{NewToken, SqlStore, TokenStore, TokenStoreExt};

use support::cache_history::{delay_fences, pause_each, run_history, FaultTask, Faults, FaultyBus, Instance, Report};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RUN_FOR: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Db {
    MariaDb,
    Sqlite,
}

/// The database URL and the table for `test`, or `None` (MariaDB without its variable).
fn database(db: Db, test: &str) -> Option<(String, String)> {
    let table = format!("tc_{test}_{}", std::process::id());
    match db {
        Db::MariaDb => {
            let url = std::env::var("TOWER_TOKEN_AUTH_MYSQL_URL").ok().filter(|u| !u.is_empty());
            if url.is_none() {
                println!("skipped: TOWER_TOKEN_AUTH_MYSQL_URL is not set");
            }
            Some((url?, table))
        }
        Db::Sqlite => {
            let path = std::env::temp_dir().join(format!("{table}.sqlite"));
            let _ = std::fs::remove_file(&path);
            Some((format!("sqlite://{}?mode=rwc", path.display()), table))
        }
    }
}

fn bus(db: Db, url: &str, table: &str) -> PollBus {
    match db {
        Db::MariaDb => PollBus::mysql(url, table).unwrap(),
        Db::Sqlite => PollBus::sqlite(url, table).unwrap(),
    }
}

async fn setup(db: Db, url: &str, table: &str) -> SqlStore {
    let store = SqlStore::connect(url).await.unwrap().table(table);
    store.create_table_if_missing().await.unwrap();
    bus(db, url, table).install().await.unwrap();
    store
}

async fn drop_table(db: Db, url: &str, table: &str) {
    match db {
        Db::MariaDb => {
            let pool = sqlx::MySqlPool::connect(url).await.unwrap();
            sqlx::raw_sql(&format!("DROP TABLE IF EXISTS `{table}`")).execute(&pool).await.unwrap();
        }
        Db::Sqlite => {
            let path = url.trim_start_matches("sqlite://").trim_end_matches("?mode=rwc");
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn history(
    db: Db,
    name: &str,
    config: CacheConfig,
    setup_faults: impl Fn(&Faults),
    faults: Option<FaultTask>,
) -> Option<Report> {
    let (url, table) = database(db, name)?;
    let _serial = SERIAL.lock().await;
    setup(db, &url, &table).await;
    let mut all = Vec::new();
    for _ in 0..3 {
        let store = SqlStore::connect(&url).await.unwrap().table(&table);
        let faults = Arc::new(Faults::default());
        let inner = bus(db, &url, &table);
        all.push(Instance {
            cache: CachedStore::new(store, FaultyBus { inner, faults: faults.clone() }, config.clone()),
            faults,
        });
    }
    for _ in 0..300 {
        if all.iter().all(|i| i.cache.lease_is_fresh()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(all.iter().all(|i| i.cache.lease_is_fresh()), "the caches never got a lease");
    for instance in &all {
        setup_faults(&instance.faults);
    }
    let report = run_history(&all, RUN_FOR, 4, faults).await;
    println!("{db:?} {name}: {report}");
    drop(all);
    drop_table(db, &url, &table).await;
    assert!(report.revocations > 5, "{report:?}");
    assert!(report.after_revocation > 50, "the history must test revoked tokens: {report:?}");
    assert!(report.hits() > report.requests as u64 / 4, "the history must test the cache: {report:?}");
    Some(report)
}

async fn no_stale_accepts(db: Db, name: &str, faults: fn() -> Option<FaultTask>) {
    if let Some(report) = history(db, name, CacheConfig::default(), |_| {}, faults()).await {
        assert_eq!(report.stale_accepts, 0, "{report:?}");
    }
}

fn paused() -> Option<FaultTask> {
    Some(pause_each(Duration::from_millis(150), Duration::from_millis(200)))
}

fn fences_delayed() -> Option<FaultTask> {
    Some(delay_fences(Duration::from_millis(80), Duration::from_millis(300), Duration::from_millis(200)))
}

async fn controls_fail(db: Db) {
    let slow = |f: &Faults| f.delay_ms.store(30, Ordering::SeqCst);
    let config = CacheConfig::default().consistency(Consistency::BoundedStaleness);
    if let Some(report) = history(db, "nowait", config, slow, None).await {
        assert!(report.stale_accepts > 0, "the checker must see this: {report:?}");
    }
    let drop_them = |f: &Faults| f.drop_invalidations.store(true, Ordering::SeqCst);
    if let Some(report) = history(db, "dropped", CacheConfig::default(), drop_them, None).await {
        assert!(report.stale_accepts > 0, "the checker must see this: {report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_no_stale_accepts_without_faults_paused_or_with_delayed_fences() {
    no_stale_accepts(Db::MariaDb, "plain", || None).await;
    no_stale_accepts(Db::MariaDb, "paused", paused).await;
    no_stale_accepts(Db::MariaDb, "fence_delayed", fences_delayed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_controls_make_the_checker_fail() {
    controls_fail(Db::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_no_stale_accepts_without_faults_paused_or_with_delayed_fences() {
    no_stale_accepts(Db::Sqlite, "plain", || None).await;
    no_stale_accepts(Db::Sqlite, "paused", paused).await;
    no_stale_accepts(Db::Sqlite, "fence_delayed", fences_delayed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_controls_make_the_checker_fail() {
    controls_fail(Db::Sqlite).await;
}

/// Last-use writes log nothing; revocations by another program (Laravel deleting rows) are logged.
#[tokio::test]
async fn touches_log_nothing_and_foreign_deletes_are_logged() {
    for db in [Db::MariaDb, Db::Sqlite] {
        let Some((url, table)) = database(db, "trigger") else { continue };
        let _serial = SERIAL.lock().await;
        let store = setup(db, &url, &table).await;
        let issued = store.issue(NewToken::access(7u64).session_limit(SessionLimit::unlimited())).await.unwrap();
        let count = "SELECT COUNT(*) FROM tta_cache_revocations WHERE tbl = ?";
        let touch =
            format!("UPDATE {table} SET last_used_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP WHERE id = ?");
        let delete = format!("DELETE FROM {table} WHERE tokenable_id = 7");
        let counts = match db {
            Db::MariaDb => {
                let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
                let before: i64 = sqlx::query_scalar(count).bind(&table).fetch_one(&pool).await.unwrap();
                store.touch_last_used(issued.record.id, std::time::SystemTime::now()).await.unwrap();
                sqlx::query(&touch).bind(issued.record.id as i64).execute(&pool).await.unwrap();
                let touched: i64 = sqlx::query_scalar(count).bind(&table).fetch_one(&pool).await.unwrap();
                sqlx::query(&delete).execute(&pool).await.unwrap();
                let deleted: i64 = sqlx::query_scalar(count).bind(&table).fetch_one(&pool).await.unwrap();
                (before, touched, deleted)
            }
            Db::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                let before: i64 = sqlx::query_scalar(count).bind(&table).fetch_one(&pool).await.unwrap();
                store.touch_last_used(issued.record.id, std::time::SystemTime::now()).await.unwrap();
                sqlx::query(&touch).bind(issued.record.id as i64).execute(&pool).await.unwrap();
                let touched: i64 = sqlx::query_scalar(count).bind(&table).fetch_one(&pool).await.unwrap();
                sqlx::query(&delete).execute(&pool).await.unwrap();
                let deleted: i64 = sqlx::query_scalar(count).bind(&table).fetch_one(&pool).await.unwrap();
                (before, touched, deleted)
            }
        };
        assert_eq!(counts, (0, 0, 1), "{db:?}");
        drop_table(db, &url, &table).await;
    }
}

/// Log rows this instance never read (cleaned up while it was away) are a gap: the cache is emptied and
/// serves nothing until a poll without a gap.
#[tokio::test]
async fn a_gap_in_the_revocation_log_empties_the_cache() {
    let (url, table) = database(Db::Sqlite, "gap").unwrap();
    let store = setup(Db::Sqlite, &url, &table).await;
    let cache = CachedStore::new(store.clone(), bus(Db::Sqlite, &url, &table), CacheConfig::default());
    while !cache.lease_is_fresh() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let id = store.issue(NewToken::access(7u64).session_limit(SessionLimit::unlimited())).await.unwrap().record.id;
    cache.find(id).await.unwrap().unwrap();
    cache.find(id).await.unwrap().unwrap();
    assert_eq!(cache.stats().hits, 1);
    let resets = cache.stats().resets;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE tta_cache_counter SET seq = seq + 3 WHERE id = 1").execute(&pool).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = cache.stats();
    assert_eq!((stats.resets, stats.entries), (resets + 1, 0), "{stats:?}");
    drop_table(Db::Sqlite, &url, &table).await;
}
