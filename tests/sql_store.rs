//! `SqlStore` against real databases: the store contract and the session race checks, the storage bound,
//! and Sanctum interop both ways (rows written the way Laravel writes them, and rows written by the store
//! read the way Laravel reads them).
//!
//! PostgreSQL and MySQL/MariaDB run when `TOWER_TOKEN_AUTH_POSTGRES_URL` / `TOWER_TOKEN_AUTH_MYSQL_URL`
//! are set (e.g. `postgres://postgres@127.0.0.1:5432/test`, `mysql://root@127.0.0.1:3306/test`) and
//! print `skipped: ...` otherwise; SQLite always runs, on temporary files and in memory. Every test uses
//! its own table and drops it at the end. `TOWER_TOKEN_AUTH_SQL_ROUNDS` sets the race rounds (default
//! 300), `TOWER_TOKEN_AUTH_SQL_REFRESHES` the refreshes of the storage-bound checks (default 10,000) and
//! `TOWER_TOKEN_AUTH_SQL_MANY_ROWS` the Laravel rows of the many-rows user (default 20,000).

#![cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
#![cfg_attr(not(all(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(dead_code, unused))]

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::DateTime;
use http::header::{HeaderValue, AUTHORIZATION};
use http::HeaderMap;
use tower_token_auth::clock::ManualClock;
use tower_token_auth::refresh::{NewPair, RefreshError, RefreshTokens};
use tower_token_auth::session::{NewSecret, NewSession, SessionId, SessionLimit, Sessions, WhenFull};
use tower_token_auth::store::sql::{FixedOffset, SqlStore};
use tower_token_auth::store::StoreErrorKind;
use tower_token_auth::testing::{
    bearer, fresh_user, now_secs, race_exchange_and_logout, race_presentations, rotated_tokens_are_bounded,
    store_contract, works,
};
use tower_token_auth::token::{parse_token, TokenDigest};
use tower_token_auth::{NewToken, TokenKind, TokenStore, TokenStoreExt, UserId};

const POSTGRES_URL: &str = "TOWER_TOKEN_AUTH_POSTGRES_URL";
const MYSQL_URL: &str = "TOWER_TOKEN_AUTH_MYSQL_URL";

/// Sanctum >= 3.3 secret: 40 random characters and their crc32b.
const CURRENT: (&str, &str) = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66",
    "bb745b5454a4550147866ee6829a7cb2ff4a982cf06993a5efa33dd57d030a5a",
);
/// Sanctum < 2.6: 80 random characters.
const LEGACY_80: (&str, &str) = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQR",
    "aa7154be03fab53e9d192b46e2a4d4769a6afc40f4c3045dee57e6b4bff53a74",
);
/// `token_prefix` = `myapp_`.
const PREFIXED: (&str, &str) = (
    "myapp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66",
    "2df4502c5a5bd12e368a01784913873f2ae1e751d831abe39729fc1ea2a22db0",
);
/// A checksum that does not verify (as with Sanctum 3.2.6's CRC32): still a valid token.
const BAD_CHECKSUM: (&str, &str) = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN00000000",
    "f1fa02514d0724e2530fb2308428cbb938e0e0ea55616d79451776a89a0dccf0",
);

/// `t` truncated to whole seconds, as SQL stores keep it.
fn secs(t: SystemTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs())
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rounds() -> usize {
    env_count("TOWER_TOKEN_AUTH_SQL_ROUNDS", 300)
}

fn refreshes() -> usize {
    env_count("TOWER_TOKEN_AUTH_SQL_REFRESHES", 10_000)
}

/// Sanctum's `PersonalAccessToken::can($ability)` on a raw `abilities` column, as PHP evaluates it:
/// `json_decode($abilities, true)`, then `in_array('*', ...) || array_key_exists($ability, array_flip(...))`.
fn laravel_can(abilities: &str, ability: &str) -> bool {
    let decoded: serde_json::Value = serde_json::from_str(abilities).expect("PHP's json_decode reads it");
    let list: Vec<&str> = decoded.as_array().expect("a JSON array").iter().filter_map(|v| v.as_str()).collect();
    list.contains(&"*") || list.contains(&ability)
}

/// The abilities a Laravel app sees on a row, as PHP decodes them.
fn laravel_abilities(abilities: &str) -> Vec<String> {
    serde_json::from_str(abilities).expect("a JSON array of strings")
}

// ---------------------------------------------------------------------------------------------------
// Raw access to the database, as Laravel (PDO, bound parameters) would do it.

#[derive(Clone)]
enum Db {
    #[cfg(feature = "postgres")]
    Pg(sqlx::PgPool, String),
    #[cfg(feature = "mysql")]
    My(sqlx::MySqlPool, String),
    #[cfg(feature = "sqlite")]
    Lite(sqlx::SqlitePool, PathBuf),
}

/// A row as Laravel's `createToken` (or a hand-written refresh flow) inserts it.
struct LaravelRow<'a> {
    tokenable_type: &'a str,
    tokenable_id: i64,
    name: &'a str,
    token: &'a str,
    abilities: Option<&'a str>,
    expires_at: Option<String>,
    created_at: String,
}

impl<'a> LaravelRow<'a> {
    fn new(token: &'a str, created_at: String) -> Self {
        Self {
            tokenable_type: "App\\Models\\User",
            tokenable_id: 42,
            name: "laptop",
            token,
            abilities: Some(r#"["*"]"#),
            expires_at: None,
            created_at,
        }
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{:x}{:x}{}", std::process::id(), nanos, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `Y-m-d H:i:s` in UTC, as Laravel writes timestamps.
fn laravel_time(t: SystemTime) -> String {
    DateTime::<chrono::Utc>::from(t).format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Db {
    #[cfg(feature = "postgres")]
    async fn postgres() -> Option<Db> {
        let Ok(url) = std::env::var(POSTGRES_URL) else {
            println!("skipped: {POSTGRES_URL} is not set");
            return None;
        };
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(3).connect(&url).await.unwrap();
        Some(Db::Pg(pool, url))
    }

    #[cfg(feature = "mysql")]
    async fn mysql() -> Option<Db> {
        let Ok(url) = std::env::var(MYSQL_URL) else {
            println!("skipped: {MYSQL_URL} is not set");
            return None;
        };
        let pool = sqlx::mysql::MySqlPoolOptions::new().max_connections(3).connect(&url).await.unwrap();
        Some(Db::My(pool, url))
    }

    #[cfg(feature = "sqlite")]
    async fn sqlite() -> Db {
        let path = std::env::temp_dir().join(format!("tower-token-auth-{}.sqlite", unique_suffix()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(3).connect(&url).await.unwrap();
        Db::Lite(pool, path)
    }

    /// Another pool on the same database (`with_table` closes the pool it is given).
    async fn reopen(&self) -> Db {
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(_, url) => Db::Pg(sqlx::PgPool::connect(url).await.unwrap(), url.clone()),
            #[cfg(feature = "mysql")]
            Db::My(_, url) => Db::My(sqlx::MySqlPool::connect(url).await.unwrap(), url.clone()),
            #[cfg(feature = "sqlite")]
            Db::Lite(..) => Db::sqlite().await,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(..) => "PostgreSQL",
            #[cfg(feature = "mysql")]
            Db::My(..) => "MariaDB",
            #[cfg(feature = "sqlite")]
            Db::Lite(..) => "SQLite",
        }
    }

    /// A store on this database's (small, shared) pool, using `table`.
    fn store(&self, table: &str) -> SqlStore {
        let store = match self {
            #[cfg(feature = "postgres")]
            Db::Pg(pool, _) => SqlStore::from_pg_pool(pool.clone()),
            #[cfg(feature = "mysql")]
            Db::My(pool, _) => SqlStore::from_mysql_pool(pool.clone()),
            #[cfg(feature = "sqlite")]
            Db::Lite(pool, _) => SqlStore::from_sqlite_pool(pool.clone()),
        };
        store.table(table)
    }

    /// A store with a pool of its own (`SqlStore::connect`), for the races.
    async fn connected_store(&self, table: &str) -> SqlStore {
        let url = match self {
            #[cfg(feature = "postgres")]
            Db::Pg(_, url) => url.clone(),
            #[cfg(feature = "mysql")]
            Db::My(_, url) => url.clone(),
            #[cfg(feature = "sqlite")]
            Db::Lite(_, path) => format!("sqlite://{}", path.display()),
        };
        SqlStore::connect(&url).await.unwrap().table(table)
    }

    fn quote(&self, name: &str) -> String {
        match self {
            #[cfg(feature = "mysql")]
            Db::My(..) => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    /// `value` as an SQL string literal (MySQL reads backslashes in literals as escapes).
    fn string_literal(&self, value: &str) -> String {
        match self {
            #[cfg(feature = "mysql")]
            Db::My(..) => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''")),
            _ => format!("'{}'", value.replace('\'', "''")),
        }
    }

    /// A column read as text, the way PHP sees it.
    fn as_text(&self, column: &str) -> String {
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(..) => format!("{column}::text"),
            #[cfg(feature = "mysql")]
            Db::My(..) => format!("CAST({column} AS CHAR)"),
            #[cfg(feature = "sqlite")]
            Db::Lite(..) => format!("CAST({column} AS TEXT)"),
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(pool, _) => drop(sqlx::raw_sql(sql).execute(pool).await.unwrap()),
            #[cfg(feature = "mysql")]
            Db::My(pool, _) => drop(sqlx::raw_sql(sql).execute(pool).await.unwrap()),
            #[cfg(feature = "sqlite")]
            Db::Lite(pool, _) => drop(sqlx::raw_sql(sql).execute(pool).await.unwrap()),
        }
    }

    /// Inserts `row` with bound parameters, timestamps bound as `Y-m-d H:i:s` strings. Returns the id.
    async fn insert_laravel(&self, table: &str, row: &LaravelRow<'_>) -> u64 {
        let t = self.quote(table);
        let columns = "tokenable_type, tokenable_id, name, token, abilities, expires_at, created_at, updated_at";
        macro_rules! bind_row {
            ($query:expr) => {
                $query
                    .bind(row.tokenable_type)
                    .bind(row.tokenable_id)
                    .bind(row.name)
                    .bind(row.token)
                    .bind(row.abilities)
                    .bind(row.expires_at.clone())
                    .bind(row.created_at.clone())
                    .bind(row.created_at.clone())
            };
        }
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(pool, _) => {
                // PDO sends untyped parameters; sqlx types them as text, so cast like PostgreSQL would.
                let sql = format!(
                    "INSERT INTO {t} ({columns}) VALUES ($1, $2, $3, $4, $5, $6::timestamp, $7::timestamp, $8::timestamp) RETURNING id"
                );
                let id: i64 = bind_row!(sqlx::query_scalar(&sql)).fetch_one(pool).await.unwrap();
                id as u64
            }
            #[cfg(feature = "mysql")]
            Db::My(pool, _) => {
                let sql = format!("INSERT INTO {t} ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
                bind_row!(sqlx::query(&sql)).execute(pool).await.unwrap().last_insert_id()
            }
            #[cfg(feature = "sqlite")]
            Db::Lite(pool, _) => {
                let sql = format!("INSERT INTO {t} ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
                bind_row!(sqlx::query(&sql)).execute(pool).await.unwrap().last_insert_rowid() as u64
            }
        }
    }

    /// `column` of row `id`, as text (`None` for NULL or a missing row).
    async fn text(&self, table: &str, id: u64, column: &str) -> Option<String> {
        let sql = format!("SELECT {} FROM {} WHERE id = {id}", self.as_text(column), self.quote(table));
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(pool, _) => sqlx::query_scalar(&sql).fetch_optional(pool).await.unwrap().flatten(),
            #[cfg(feature = "mysql")]
            Db::My(pool, _) => sqlx::query_scalar(&sql).fetch_optional(pool).await.unwrap().flatten(),
            #[cfg(feature = "sqlite")]
            Db::Lite(pool, _) => sqlx::query_scalar(&sql).fetch_optional(pool).await.unwrap().flatten(),
        }
    }

    /// Rows of the table, all or only those whose `tokenable_id` reads as `user` (as text).
    async fn count(&self, table: &str, user: Option<&UserId>) -> i64 {
        let filter = match user {
            Some(user) => format!(" WHERE {} = '{user}'", self.as_text("tokenable_id")),
            None => String::new(),
        };
        let sql = format!("SELECT COUNT(*) FROM {}{filter}", self.quote(table));
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(pool, _) => sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap(),
            #[cfg(feature = "mysql")]
            Db::My(pool, _) => sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap(),
            #[cfg(feature = "sqlite")]
            Db::Lite(pool, _) => sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// Runs `test` against a fresh table (created by the store), then drops the table (and deletes a
    /// SQLite file) whether the test passed or not.
    async fn with_table<F, Fut>(self, test: F)
    where
        F: FnOnce(Db, String) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let table = format!("tta_{}", unique_suffix());
        let store = self.store(&table);
        assert!(store.create_table_if_missing().await.unwrap(), "the table is created");
        assert!(!store.create_table_if_missing().await.unwrap(), "an existing table is left alone");
        let outcome = tokio::spawn(test(self.clone(), table.clone())).await;
        self.exec(&format!("DROP TABLE {}", self.quote(&table))).await;
        self.close().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    async fn close(&self) {
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(pool, _) => pool.close().await,
            #[cfg(feature = "mysql")]
            Db::My(pool, _) => pool.close().await,
            #[cfg(feature = "sqlite")]
            Db::Lite(pool, path) => {
                pool.close().await;
                remove_sqlite_files(path);
            }
        }
    }
}

fn remove_sqlite_files(path: &std::path::Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut file = path.to_path_buf().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

// ---------------------------------------------------------------------------------------------------
// The checks, shared by every backend.

/// The contract, on a store built by `SqlStore::connect(url)`.
async fn contract(db: Db) {
    db.with_table(|db, table| async move {
        let store = db.connected_store(&table).await;
        store_contract(|| store.clone()).await;
    })
    .await;
}

/// Simultaneous presentations of one refresh token, and an exchange racing a logout, for real.
async fn races(db: Db) {
    let name = db.name();
    let db_again = db.reopen().await;
    db.with_table(move |db, table| async move {
        let store = db.connected_store(&table).await;
        let rounds = rounds();
        let started = Instant::now();
        let report = race_presentations(store.clone(), rounds, 4).await;
        println!("{name}, 4 simultaneous presentations: {report} ({:.1?})", started.elapsed());
        assert_eq!(report.leaks, 0, "{report}");
        assert_eq!(report.exchanges, rounds, "exactly one winner per round: {report}");
        let started = Instant::now();
        let report = race_exchange_and_logout(store.clone(), rounds).await;
        println!("{name}, exchange racing logout: {report} ({:.1?})", started.elapsed());
        assert_eq!(report.leaks, 0, "{report}");
        assert_eq!(db.count(&table, None).await, 0, "every round logged its user out: no row is left");
    })
    .await;
    races_with_inserting_exchanges(db_again).await;
}

/// The races again, on sessions whose access row was pruned, so that the exchange INSERTs a row (the
/// case where a statement whose snapshot predates the insert would miss it): once a logout has returned,
/// or reuse has been detected, the user has no row left at all.
async fn races_with_inserting_exchanges(db: Db) {
    let name = db.name();
    db.with_table(move |db, table| async move {
        let store = db.connected_store(&table).await;
        let tokens = RefreshTokens::new(store.clone());
        let now = now_secs();
        let past = RefreshTokens::new(store.clone())
            .clock(ManualClock::new(now - Duration::from_secs(7200)))
            .access_ttl(Duration::from_secs(60));
        let (rounds, mut leaks, mut exchanges) = (rounds(), 0, 0);
        let started = Instant::now();
        for round in 0..rounds {
            let user = fresh_user();
            // Issued two hours ago with a one-minute access token, which pruning then removes.
            let pair = past.issue_pair(NewPair::new(user.clone())).await.unwrap();
            store.prune_expired(now, None).await.unwrap();
            assert!(store.find(pair.access.record.id).await.unwrap().is_none());
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(if round % 2 == 0 { 2 } else { 4 }));
            let mut tasks = Vec::new();
            if round % 2 == 0 {
                // An exchange racing a logout.
                let (tokens, headers, b) = (tokens.clone(), bearer(&pair.refresh), barrier.clone());
                tasks.push(tokio::spawn(async move {
                    b.wait().await;
                    tokens.exchange(&headers).await.is_ok()
                }));
                let (store, user, b) = (store.clone(), user.clone(), barrier.clone());
                tasks.push(tokio::spawn(async move {
                    b.wait().await;
                    store.revoke_all_for_user(&user).await.unwrap();
                    false
                }));
            } else {
                // Four presentations of one refresh token: one wins, a second is reuse.
                for _ in 0..4 {
                    let (tokens, headers, b) = (tokens.clone(), bearer(&pair.refresh), barrier.clone());
                    tasks.push(tokio::spawn(async move {
                        b.wait().await;
                        match tokens.exchange(&headers).await {
                            Ok(_) => true,
                            Err(RefreshError::Reused { .. } | RefreshError::Invalid) => false,
                            Err(e) => panic!("{e}"),
                        }
                    }));
                }
            }
            for task in tasks {
                exchanges += usize::from(task.await.unwrap());
            }
            leaks += usize::from(db.count(&table, Some(&user)).await > 0);
        }
        println!(
            "{name}, exchanges inserting their access row, racing logouts and reuse: {rounds} rounds, {leaks} leaks, \
             {exchanges} exchanges ({:.1?})",
            started.elapsed()
        );
        assert_eq!(leaks, 0);
    })
    .await;
}

/// `rotated_tokens_are_bounded` with many refreshes, then the rows one session holds after as many.
async fn storage_is_bounded(db: Db) {
    let name = db.name();
    db.with_table(move |db, table| async move {
        let store = db.connected_store(&table).await;
        let n = refreshes();
        let started = Instant::now();
        rotated_tokens_are_bounded(store.clone(), n).await;
        println!("{name}: rotated_tokens_are_bounded({n}) in {:.1?}", started.elapsed());

        let tokens = RefreshTokens::new(store.clone());
        let user = fresh_user();
        let first = tokens.issue_pair(NewPair::new(user.clone()).name("phone")).await.unwrap();
        let mut pair = first.clone();
        let started = Instant::now();
        // Laps show whether an exchange gets slower as the session's rows are rewritten (it should not).
        let (lap_size, mut lap) = ((n / 5).max(1), Instant::now());
        for i in 0..n {
            pair = tokens.exchange(&bearer(&pair.refresh)).await.unwrap();
            if (i + 1) % lap_size == 0 {
                let each = lap.elapsed() / lap_size as u32;
                println!("{name}: exchanges {}..{}: {each:.2?} each", i + 1 - lap_size, i + 1);
                lap = Instant::now();
            }
        }
        let per_exchange = started.elapsed() / n.max(1) as u32;
        let rows = db.count(&table, Some(&user)).await;
        println!("{name}: {rows} rows for one session after {n} refreshes ({per_exchange:.2?} per exchange)");
        assert_eq!(rows, 2, "one access and one refresh row, updated in place");
        assert_eq!(pair.refresh.record.id, first.refresh.record.id, "the refresh row keeps its id");
        assert_eq!(pair.access.record.id, first.access.record.id, "the access row is overwritten in place");
        assert!(works(&store, &pair.access).await && works(&store, &pair.refresh).await);
        assert!(!works(&store, &first.access).await, "the first access token died at the first exchange");
        let abilities = db.text(&table, pair.refresh.record.id, "abilities").await.unwrap();
        let rotated = laravel_abilities(&abilities).iter().filter(|a| a.starts_with("tta:rotated:")).count();
        assert_eq!(rotated, 0, "without a reuse interval no exchanged digest is kept: {abilities}");
        println!("{name}: the refresh row's abilities after {n} refreshes: {} bytes", abilities.len());
        assert!(abilities.len() < 200, "the refresh row's abilities stay small: {abilities}");
        let sessions = store.list_sessions(&user).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].created_at, secs(first.access.record.created_at), "the session began at the login");
        assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 2);
    })
    .await;
}

/// Rows written the way Laravel writes them are read correctly, and list as one-token sessions.
async fn reads_laravel_rows(db: Db) {
    db.with_table(|db, table| async move {
        let store = db.store(&table);
        let now = now_secs();
        let hour = Duration::from_secs(3600);

        let mut current = LaravelRow::new(CURRENT.1, laravel_time(now - hour));
        current.expires_at = Some(laravel_time(now + hour));
        let current_id = db.insert_laravel(&table, &current).await;
        let legacy_id = db.insert_laravel(&table, &LaravelRow::new(LEGACY_80.1, laravel_time(now))).await;
        let mut prefixed = LaravelRow::new(PREFIXED.1, laravel_time(now));
        prefixed.abilities = Some(r#"["posts:read","posts\/write","caf\u00e9"]"#);
        let prefixed_id = db.insert_laravel(&table, &prefixed).await;
        let bad_checksum_id = db.insert_laravel(&table, &LaravelRow::new(BAD_CHECKSUM.1, laravel_time(now))).await;

        for (id, (secret, hex)) in
            [(current_id, CURRENT), (legacy_id, LEGACY_80), (prefixed_id, PREFIXED), (bad_checksum_id, BAD_CHECKSUM)]
        {
            assert_eq!(TokenDigest::of(secret.as_bytes()).to_hex(), hex);
            let found = store.find(id).await.unwrap().unwrap_or_else(|| panic!("row {id} is found"));
            let plain = format!("{id}|{secret}");
            let parsed = parse_token(plain.as_bytes()).unwrap();
            assert!(found.digest.ct_eq(&TokenDigest::of(parsed.secret())), "{secret} is accepted");
            assert!(!found.digest.ct_eq(&TokenDigest::of(b"wrong")));
            assert_eq!(found.id, id);
            assert_eq!(found.session_id, SessionId::new(id), "a Laravel row is a session of its own");
            assert_eq!(found.user_id, UserId::from(42u64));
            assert_eq!(found.kind, TokenKind::Access);
            assert_eq!(found.name, "laptop");
        }

        let found = store.find(current_id).await.unwrap().unwrap();
        assert!(found.abilities.can("anything"), "[\"*\"] grants everything");
        assert_eq!(found.created_at, now - hour);
        assert_eq!(found.expires_at, Some(now + hour));
        assert_eq!(found.last_used_at, None);
        assert!(!found.is_expired(now, None));

        let found = store.find(prefixed_id).await.unwrap().unwrap();
        assert!(found.abilities.can("posts:read") && found.abilities.can("posts/write") && found.abilities.can("café"));
        assert!(!found.abilities.can("admin"));

        // Each Laravel row is one session, listed newest first.
        let sessions = store.list_sessions(&42u64.into()).await.unwrap();
        let ids: Vec<u64> = sessions.iter().map(|s| s.id.get()).collect();
        assert_eq!(ids, [bad_checksum_id, prefixed_id, legacy_id, current_id], "{sessions:?}");
        assert_eq!(sessions[3].created_at, now - hour);
        assert_eq!(sessions[3].expires_at, Some(now + hour));
        assert_eq!(sessions[0].expires_at, None, "a token that never expires");
        assert!(sessions[1].abilities.can("posts/write") && !sessions[1].abilities.can("admin"));

        // Expired: the store still returns it; rejecting it is the layer's job.
        let mut expired = LaravelRow::new(CURRENT.1, laravel_time(now - 48 * hour));
        expired.token = "0000000000000000000000000000000000000000000000000000000000000001";
        expired.expires_at = Some(laravel_time(now - 24 * hour));
        let expired_id = db.insert_laravel(&table, &expired).await;
        let found = store.find(expired_id).await.unwrap().expect("expired rows are returned");
        assert!(found.is_expired(now, None));

        // Another tokenable_type (another guard's provider) is invisible, and survives logout-everywhere.
        let mut admin =
            LaravelRow::new("0000000000000000000000000000000000000000000000000000000000000002", laravel_time(now));
        admin.tokenable_type = "App\\Models\\Admin";
        let admin_id = db.insert_laravel(&table, &admin).await;
        assert!(store.find(admin_id).await.unwrap().is_none());
        assert!(!store.revoke_session(&42u64.into(), SessionId::new(admin_id)).await.unwrap());
        let admin_store = db.store(&table).tokenable_type("App\\Models\\Admin");
        assert_eq!(admin_store.find(admin_id).await.unwrap().unwrap().user_id, UserId::from(42u64));
        assert!(admin_store.find(current_id).await.unwrap().is_none());

        // last_used_at and updated_at, as Sanctum's guard writes them.
        let used = now - Duration::from_secs(5);
        store.touch_last_used(current_id, used).await.unwrap();
        assert_eq!(db.text(&table, current_id, "last_used_at").await, Some(laravel_time(used)));
        assert_eq!(db.text(&table, current_id, "updated_at").await, Some(laravel_time(used)));
        assert_eq!(store.find(current_id).await.unwrap().unwrap().last_used_at, Some(used));
        // A touch dated before the row was created is for a token since replaced in place: dropped.
        store.touch_last_used(current_id, now - 2 * hour).await.unwrap();
        assert_eq!(store.find(current_id).await.unwrap().unwrap().last_used_at, Some(used));

        // A NULL abilities column grants nothing; unreadable columns are corrupt, not "not found".
        let mut no_abilities =
            LaravelRow::new("0000000000000000000000000000000000000000000000000000000000000004", laravel_time(now));
        no_abilities.abilities = None;
        let id = db.insert_laravel(&table, &no_abilities).await;
        assert!(!store.find(id).await.unwrap().unwrap().abilities.can("anything"));
        let bad_token_id = db.insert_laravel(&table, &LaravelRow::new("not-a-sha256", laravel_time(now))).await;
        assert_eq!(store.find(bad_token_id).await.unwrap_err().kind(), StoreErrorKind::Corrupt);
        let mut bad_json =
            LaravelRow::new("0000000000000000000000000000000000000000000000000000000000000005", laravel_time(now));
        bad_json.abilities = Some("{\"0\":\"posts:read\"}");
        let bad_json_id = db.insert_laravel(&table, &bad_json).await;
        assert_eq!(store.find(bad_json_id).await.unwrap_err().kind(), StoreErrorKind::Corrupt);
        // The listing skips the rows it cannot read (with a warning naming them), and lists the rest.
        let listed: Vec<u64> = store.list_sessions(&42u64.into()).await.unwrap().iter().map(|s| s.id.get()).collect();
        assert!(listed.contains(&current_id) && listed.contains(&id), "{listed:?}");
        assert!(!listed.contains(&bad_json_id) && !listed.contains(&bad_token_id), "{listed:?}");

        // A timezone offset shifts the naive timestamps.
        let berlin_winter = db.store(&table).timezone_offset(FixedOffset::east_opt(3600).unwrap());
        assert_eq!(berlin_winter.find(current_id).await.unwrap().unwrap().created_at, now - 2 * hour);

        // Ids beyond BIGINT are simply absent.
        assert!(store.find(u64::MAX).await.unwrap().is_none());
        assert!(store.find(i64::MAX as u64 + 1).await.unwrap().is_none());

        // Logging out one session by its id takes exactly that row, even a corrupt one.
        assert_eq!(
            store.revoke_sessions(&42u64.into(), Sessions::Only(SessionId::new(bad_token_id))).await.unwrap(),
            1
        );
        assert!(db.text(&table, bad_token_id, "token").await.is_none());

        // Logout everywhere for user 42 deletes every App\Models\User row, unreadable ones included.
        let total = db.count(&table, None).await;
        let removed = store.revoke_all_for_user(&42u64.into()).await.unwrap();
        assert_eq!(removed as i64, total - 1);
        assert_eq!(db.count(&table, None).await, 1);
        assert!(admin_store.find(admin_id).await.unwrap().is_some());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------
// Sharing the table with a live Laravel application (Sanctum 4), replayed with the SQL Laravel sends.

/// PHP's `json_encode($array)` with no flags, as Eloquent's `json` cast writes `abilities`: `/` as `\/`,
/// every non-ASCII character as `\uXXXX` (UTF-16), control characters escaped.
fn php_json_encode(list: &[&str]) -> String {
    let mut out = String::from("[");
    for (i, item) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' => out.push_str("\\/"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// Sanctum 4's `HasApiTokens::createToken($name, $abilities, $expiresAt)`: the plain text is
/// `Str::random(40)` followed by `hash('crc32b', $entropy)` (`generateTokenString`, no prefix), the row
/// holds `hash('sha256', $plain)`, the abilities as `json_encode` writes them, and `created_at` =
/// `updated_at` = now; the client gets `"{id}|{plain}"`. `abilities_json` is written verbatim, for rows
/// an application edited by hand (`None`: SQL `NULL`).
async fn sanctum_create_token_raw(
    db: &Db,
    table: &str,
    user: i64,
    name: &str,
    abilities_json: Option<&str>,
    expires_at: Option<SystemTime>,
) -> (u64, String) {
    // Str::random(40): 40 alphanumeric characters (here from a digest of a unique value).
    let entropy = TokenDigest::of(unique_suffix().as_bytes()).to_hex()[..40].to_owned();
    let plain = format!("{entropy}{}", tower_token_auth::token::crc32b_hex(entropy.as_bytes()));
    let digest = TokenDigest::of(plain.as_bytes()).to_hex();
    let row = LaravelRow {
        tokenable_type: "App\\Models\\User",
        tokenable_id: user,
        name,
        token: &digest,
        abilities: abilities_json,
        expires_at: expires_at.map(laravel_time),
        created_at: laravel_time(SystemTime::now()),
    };
    let id = db.insert_laravel(table, &row).await;
    (id, format!("{id}|{plain}"))
}

/// [`sanctum_create_token_raw`] with `json_encode($abilities)`.
async fn sanctum_create_token(db: &Db, table: &str, user: i64, name: &str, abilities: &[&str]) -> (u64, String) {
    sanctum_create_token_raw(db, table, user, name, Some(&php_json_encode(abilities)), None).await
}

fn parse_laravel_time(text: &str) -> SystemTime {
    let naive = chrono::NaiveDateTime::parse_from_str(&text[..19], "%Y-%m-%d %H:%M:%S").expect(text);
    SystemTime::from(naive.and_utc())
}

/// Sanctum 4's guard on `Authorization: Bearer {plain}`: `PersonalAccessToken::findToken` (split on the
/// first `|`, `find($id)`, `hash_equals($row->token, hash('sha256', $secret))`), then
/// `isValidAccessToken`: `expires_at` not past, and with `sanctum.expiration` (`expiration_minutes`)
/// `created_at` within it.
async fn sanctum_authenticates(db: &Db, table: &str, plain: &str, expiration_minutes: Option<u64>) -> bool {
    let (id, secret) = plain.split_once('|').expect("{id}|{secret}");
    let id: u64 = id.parse().unwrap();
    let Some(stored) = db.text(table, id, "token").await else { return false };
    if stored != TokenDigest::of(secret.as_bytes()).to_hex() {
        return false;
    }
    let now = SystemTime::now();
    if db.text(table, id, "expires_at").await.is_some_and(|t| parse_laravel_time(&t) < now) {
        return false;
    }
    if let Some(minutes) = expiration_minutes {
        let created = db.text(table, id, "created_at").await.map(|t| parse_laravel_time(&t));
        if created.is_none_or(|created| created + Duration::from_secs(minutes * 60) <= now) {
            return false;
        }
    }
    true
}

/// A refresh token this crate would accept the shape of: `{plain}.{43-character family key}`.
fn with_family_key(plain: &str, key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {plain}.{key}")).unwrap());
    headers
}

fn bearer_plain(plain: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {plain}")).unwrap());
    headers
}

/// Rows written as Sanctum 4's `createToken` writes them, whatever their abilities: access tokens with
/// exactly the abilities Laravel sees, never refresh tokens; no exchange ever mints anything from them;
/// rows with `tta:` entries that are not this crate's (or invalid JSON) are unusable, skipped by the
/// listing, and revocable.
async fn laravel_rows_never_escalate(db: Db) {
    db.with_table(|db, table| async move {
        let store = db.store(&table);
        let tokens = RefreshTokens::new(store.clone());
        let user = UserId::from(42u64);
        // A Laravel user who read this crate's docs and knows a family key's digest.
        let key = "Ab3".repeat(14) + "x";
        assert_eq!(key.len(), 43);
        let family = TokenDigest::of_parts(b"tower-token-auth/family\0", key.as_bytes()).to_hex();

        let readable: [&[&str]; 7] = [
            &["issue-access-token", "posts:read"],
            &["posts:read", "issue-access-token"],
            &["issue-access-token"],
            &["*"],
            &["posts/read", "café"],
            &[],
            &["issue-access-token", "*"],
        ];
        let mut listed = Vec::new();
        for abilities in readable {
            let (id, plain) = sanctum_create_token(&db, &table, 42, "api", abilities).await;
            let before = db.text(&table, id, "abilities").await;
            let found = store.find(id).await.unwrap().expect("found");
            assert_eq!(found.kind, TokenKind::Access, "{abilities:?} is an access token, as Laravel reads it");
            assert_eq!(found.session_id, SessionId::new(id));
            assert_eq!(found.abilities.iter().collect::<Vec<_>>(), abilities, "exactly its abilities");
            let json = before.clone().unwrap();
            for probe in ["posts:read", "posts/read", "café", "issue-access-token", "admin"] {
                assert_eq!(found.abilities.can(probe), laravel_can(&json, probe), "tokenCan({probe:?}) on {json}");
            }
            assert!(sanctum_authenticates(&db, &table, &plain, None).await);
            let secret = plain.split_once('|').unwrap().1;
            assert!(found.digest.ct_eq(&TokenDigest::of(secret.as_bytes())), "accepted as Laravel accepts it");
            // No exchange mints anything from it, with or without a family key appended.
            assert!(
                matches!(tokens.exchange(&bearer_plain(&plain)).await, Err(RefreshError::Invalid)),
                "{abilities:?}"
            );
            assert!(matches!(tokens.exchange(&with_family_key(&plain, &key)).await, Err(RefreshError::Invalid)));
            assert_eq!(db.text(&table, id, "abilities").await, before, "the row is untouched");
            listed.push(id);
        }

        let unreadable = [
            Some(r#"["tta:admin"]"#.to_owned()),
            Some(r#"["issue-access-token","tta:grant:*"]"#.to_owned()),
            Some(format!(r#"["issue-access-token","tta:family:{family}"]"#)),
            Some(r#"["posts:read""#.to_owned()),
            Some(r#"{"0":"*"}"#.to_owned()),
        ];
        let mut skipped = Vec::new();
        for json in &unreadable {
            let (id, plain) = sanctum_create_token_raw(&db, &table, 42, "api", json.as_deref(), None).await;
            assert_eq!(store.find(id).await.unwrap_err().kind(), StoreErrorKind::Corrupt, "{json:?}: unusable");
            for headers in [bearer_plain(&plain), with_family_key(&plain, &key)] {
                let outcome = tokens.exchange(&headers).await;
                assert!(matches!(outcome, Err(RefreshError::Invalid)), "{json:?}: nothing is minted: {outcome:?}");
            }
            skipped.push(id);
        }
        // A row that forges a complete refresh row of this crate, with a family whose key its writer
        // knows: its `token` is Sanctum's digest of a Laravel secret, which no refresh token hashes to, so
        // the best the writer can do is have it revoked as reuse: its own token, made unusable.
        let forged = format!(r#"["issue-access-token","tta:grant:*","tta:family:{family}"]"#);
        let (forged_id, forged_plain) = sanctum_create_token_raw(&db, &table, 42, "api", Some(&forged), None).await;
        assert_eq!(store.find(forged_id).await.unwrap().unwrap().kind, TokenKind::Refresh);
        assert!(matches!(tokens.exchange(&bearer_plain(&forged_plain)).await, Err(RefreshError::Invalid)));
        let outcome = tokens.exchange(&with_family_key(&forged_plain, &key)).await;
        assert!(matches!(outcome, Err(RefreshError::Reused { revoked: 1, .. })), "{outcome:?}");
        assert!(store.find(forged_id).await.unwrap().is_none());

        // Nothing was ever minted: every row of the user is one the test wrote.
        assert_eq!(db.count(&table, Some(&user)).await as usize, listed.len() + skipped.len());
        // The listing skips the unreadable rows and lists every other one.
        let sessions = store.list_sessions(&user).await.unwrap();
        let mut ids: Vec<u64> = sessions.iter().map(|s| s.id.get()).collect();
        ids.sort_unstable();
        assert_eq!(ids, listed, "{sessions:?}");
        // Unreadable rows stay revocable, one by one.
        for id in skipped {
            assert_eq!(store.revoke_sessions(&user, Sessions::Only(SessionId::new(id))).await.unwrap(), 1);
        }
        assert_eq!(db.count(&table, Some(&user)).await as usize, listed.len());
    })
    .await;
}

/// Sanctum's lookup, emulated, refuses every refresh token the crate issues (its row holds a digest
/// of the domain-tagged secret) and accepts its access tokens, before and after exchanges.
async fn sanctum_refuses_refresh_tokens(db: Db) {
    db.with_table(|db, table| async move {
        let store = db.store(&table);
        let tokens = RefreshTokens::new(store.clone());
        let user = fresh_user();
        let first = tokens.issue_pair(NewPair::new(user.clone()).abilities(["posts:read"])).await.unwrap();
        let second = tokens.exchange(&bearer(&first.refresh)).await.unwrap();
        let third = tokens.exchange(&bearer(&second.refresh)).await.unwrap();
        for (pair, live) in [(&first, false), (&second, false), (&third, true)] {
            let access = pair.access.plain_text.expose();
            assert_eq!(sanctum_authenticates(&db, &table, access, None).await, live, "{access}");
            assert!(!sanctum_authenticates(&db, &table, pair.refresh.plain_text.expose(), None).await);
        }
        let own = store.issue(NewToken::refresh(user.clone())).await.unwrap();
        assert!(!sanctum_authenticates(&db, &table, own.plain_text.expose(), None).await, "a refresh token alone");
        let access = store.issue(NewToken::access(user.clone())).await.unwrap();
        assert!(sanctum_authenticates(&db, &table, access.plain_text.expose(), None).await);
        // And the other way: a token Laravel issued works here.
        let (id, plain) = sanctum_create_token(&db, &table, 42, "cli", &["*"]).await;
        let found = store.find(id).await.unwrap().unwrap();
        assert!(found.digest.ct_eq(&TokenDigest::of(plain.split_once('|').unwrap().1.as_bytes())));
    })
    .await;
}

/// Each Laravel action of the README's table, replayed with the SQL Laravel sends, on the crate's
/// sessions.
async fn laravel_actions_on_sessions(db: Db) {
    db.with_table(|db, table| async move {
        let store = db.store(&table);
        let t = db.quote(&table);
        let now = now_secs();
        let (hour, day) = (Duration::from_secs(3600), Duration::from_secs(86_400));
        let at = |when: SystemTime| {
            RefreshTokens::new(store.clone()).clock(ManualClock::new(when)).access_ttl(hour).refresh_ttl(30 * day)
        };

        // `$request->user()->currentAccessToken()->delete()`: Eloquent deletes the row by its key. The
        // session is over: its refresh token no longer mints a pair, and the session is not listed.
        let user = fresh_user();
        let pair = at(now).issue_pair(NewPair::new(user.clone())).await.unwrap();
        db.exec(&format!("DELETE FROM {t} WHERE id = {}", pair.access.record.id)).await;
        assert!(matches!(at(now).exchange(&bearer(&pair.refresh)).await, Err(RefreshError::Invalid)));
        assert!(store.find(pair.refresh.record.id).await.unwrap().is_none(), "the refresh row went too");
        assert!(store.list_sessions(&user).await.unwrap().is_empty());

        // `$user->tokens()->delete()`: every row of the user, the crate's sessions and Laravel's keys.
        let user = UserId::from(4242u64);
        let pair = at(now).issue_pair(NewPair::new(user.clone())).await.unwrap();
        let (key_id, _) = sanctum_create_token(&db, &table, 4242, "deploy", &["deploy"]).await;
        let ty = db.string_literal("App\\Models\\User");
        db.exec(&format!(
            "DELETE FROM {t} WHERE tokenable_type = {ty} AND tokenable_id = 4242 AND tokenable_id IS NOT NULL"
        ))
        .await;
        assert!(
            store.find(key_id).await.unwrap().is_none() && store.find(pair.access.record.id).await.unwrap().is_none()
        );
        assert!(matches!(at(now).exchange(&bearer(&pair.refresh)).await, Err(RefreshError::Invalid)));

        // `sanctum:prune-expired` (24 hours), without `sanctum.expiration`: `expires_at < now - 24h`.
        // A session whose access token expired days ago lives on in its refresh row and mints a new pair
        // (the access token simply expired: that is not a logout); a session whose refresh token expired
        // goes whole.
        let (alive_user, dead_user) = (fresh_user(), fresh_user());
        let alive = at(now - 3 * day).issue_pair(NewPair::new(alive_user.clone())).await.unwrap();
        let dead = RefreshTokens::new(store.clone())
            .clock(ManualClock::new(now - 10 * day))
            .access_ttl(hour)
            .refresh_ttl(2 * day)
            .issue_pair(NewPair::new(dead_user.clone()))
            .await
            .unwrap();
        let prune_expired = format!("DELETE FROM {t} WHERE expires_at < '{}'", laravel_time(now - day));
        db.exec(&prune_expired).await;
        assert!(store.find(alive.access.record.id).await.unwrap().is_none());
        assert_eq!(db.count(&table, Some(&dead_user)).await, 0, "no half session");
        let next = at(now).exchange(&bearer(&alive.refresh)).await.unwrap();
        assert!(sanctum_authenticates(&db, &table, next.access.plain_text.expose(), None).await);
        assert!(!sanctum_authenticates(&db, &table, dead.access.plain_text.expose(), None).await);

        // `sanctum:prune-expired` with `sanctum.expiration` = 60 minutes: also `created_at < now - (60 +
        // 24 * 60) minutes`. A session refreshed since keeps both rows (the refresh row's `created_at` is
        // its last exchange; the login time lives in `tta:since`); an idle session goes whole.
        let (busy_user, idle_user) = (fresh_user(), fresh_user());
        let busy = at(now - 3 * day).issue_pair(NewPair::new(busy_user.clone())).await.unwrap();
        let busy = at(now - hour / 2).exchange(&bearer(&busy.refresh)).await.unwrap();
        let idle = at(now - 3 * day).issue_pair(NewPair::new(idle_user.clone())).await.unwrap();
        db.exec(&prune_expired).await;
        let by_age = format!("DELETE FROM {t} WHERE created_at < '{}'", laravel_time(now - hour - day));
        db.exec(&by_age).await;
        assert_eq!(db.count(&table, Some(&busy_user)).await, 2, "a live session is not pruned by its login time");
        assert!(sanctum_authenticates(&db, &table, busy.access.plain_text.expose(), Some(60)).await);
        let listed = store.list_sessions(&busy_user).await.unwrap();
        assert_eq!(listed[0].created_at, now - 3 * day, "the session began at the login");
        assert_eq!(db.count(&table, Some(&idle_user)).await, 0, "an idle session goes whole, never half");
        assert!(matches!(at(now).exchange(&bearer(&idle.refresh)).await, Err(RefreshError::Invalid)));
        assert!(at(now).exchange(&bearer(&busy.refresh)).await.is_ok());

        // Deleting only a session's refresh row (`PersonalAccessToken::find($id)->delete()`): the session
        // cannot refresh, and its access row authenticates until it expires (documented). The README's
        // Laravel-side line deletes both rows: `where('id', $id)->orWhere('abilities', 'like', ...)`.
        let user = fresh_user();
        let pair = at(now).issue_pair(NewPair::new(user.clone())).await.unwrap();
        let refresh_id = pair.refresh.record.id;
        db.exec(&format!("DELETE FROM {t} WHERE id = {refresh_id}")).await;
        assert!(matches!(at(now).exchange(&bearer(&pair.refresh)).await, Err(RefreshError::Invalid)));
        assert!(sanctum_authenticates(&db, &table, pair.access.plain_text.expose(), None).await);
        assert!(works(&store, &pair.access).await, "until it expires: the documented gap");
        let pair = at(now).issue_pair(NewPair::new(user.clone())).await.unwrap();
        let id = pair.refresh.record.id;
        db.exec(&format!("DELETE FROM {t} WHERE id = {id} OR abilities LIKE '%\"tta:session:{id}\"%'")).await;
        assert!(!works(&store, &pair.access).await && !works(&store, &pair.refresh).await, "the fix: both rows");

        // `$user->createToken('deploy', ['deploy'])` three times, then logins under a limit of 3: the
        // API keys neither count toward the limit nor are evicted; the oldest logins are.
        let user = UserId::from(4343u64);
        let mut keys = Vec::new();
        for _ in 0..3 {
            keys.push(sanctum_create_token(&db, &table, 4343, "deploy", &["deploy"]).await);
        }
        let limit = SessionLimit::new(3, WhenFull::RevokeOldest);
        let mut logins = Vec::new();
        for i in 0..5u64 {
            let tokens = at(now + Duration::from_secs(i)).session_limit(limit);
            logins.push(tokens.issue_pair(NewPair::new(user.clone()).name("phone")).await.unwrap());
        }
        for (_, plain) in &keys {
            assert!(sanctum_authenticates(&db, &table, plain, None).await, "a Laravel API key survives logins");
        }
        for (i, login) in logins.iter().enumerate() {
            assert_eq!(works(&store, &login.access).await, i >= 2, "login {i}");
        }
        assert_eq!(store.list_sessions(&user).await.unwrap().len(), 6, "3 keys and 3 logins");
        let refuse = RefreshTokens::new(store.clone()).session_limit(SessionLimit::new(3, WhenFull::Refuse));
        let err = refuse.issue_pair(NewPair::new(user.clone())).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::SessionLimit);
    })
    .await;
}

/// A user with many Laravel-written rows (`TOWER_TOKEN_AUTH_SQL_MANY_ROWS`, default 20,000; the timed
/// run with 100,000 is `examples/sql_many_rows.rs`): logins, an exchange, the listing and a logout work
/// and leave every Laravel row alone; the listing is bounded.
async fn many_laravel_rows(db: Db) {
    db.with_table(|db, table| async move {
        let rows = env_count("TOWER_TOKEN_AUTH_SQL_MANY_ROWS", 20_000);
        let store = db.store(&table);
        let t = db.quote(&table);
        let ty = db.string_literal("App\\Models\\User");
        let now = laravel_time(SystemTime::now());
        for start in (0..rows).step_by(500) {
            let values: Vec<String> = (start..rows.min(start + 500))
                .map(|i| {
                    let digest = TokenDigest::of(format!("many-{i}").as_bytes()).to_hex();
                    format!("({ty}, 77, 'ci', '{digest}', '[\"*\"]', '{now}', '{now}')")
                })
                .collect();
            db.exec(&format!(
                "INSERT INTO {t} (tokenable_type, tokenable_id, name, token, abilities, created_at, updated_at) VALUES {}",
                values.join(", ")
            ))
            .await;
        }
        let user = UserId::from(77u64);
        let tokens = RefreshTokens::new(store.clone()).session_limit(SessionLimit::new(2, WhenFull::RevokeOldest));
        let clock = |i: u64| ManualClock::new(now_secs() + Duration::from_secs(i));
        let first = tokens.clone().clock(clock(0)).issue_pair(NewPair::new(user.clone())).await.unwrap();
        let second = tokens.clone().clock(clock(1)).issue_pair(NewPair::new(user.clone())).await.unwrap();
        let second = tokens.exchange(&bearer(&second.refresh)).await.unwrap();
        let third = tokens.clone().clock(clock(2)).issue_pair(NewPair::new(user.clone())).await.unwrap();
        assert!(!works(&store, &first.access).await, "the oldest login was evicted");
        assert!(works(&store, &second.access).await && works(&store, &third.access).await);
        assert_eq!(db.count(&table, Some(&user)).await as usize, rows + 4, "every Laravel row is still there");
        let listed = store.list_sessions(&user).await.unwrap();
        assert_eq!(listed.len(), rows.min(1000), "the newest sessions, at most 1,000");
        assert_eq!(listed.iter().filter(|s| s.id == second.session_id() || s.id == third.session_id()).count(), 2, "{:?} {:?} {:?}", second.session_id(), third.session_id(), &listed[..3]);
        assert_eq!(store.revoke_sessions(&user, Sessions::Only(third.session_id())).await.unwrap(), 2);
        assert_eq!(db.count(&table, Some(&user)).await as usize, rows + 2);
        assert_eq!(store.revoke_all_for_user(&user).await.unwrap() as usize, rows + 2);
    })
    .await;
}

/// Tokens issued by the store are rows Laravel can read, and authenticate with, and ability-check.
async fn issued_tokens_are_laravel_rows(db: Db) {
    db.with_table(|db, table| async move {
        let now = now_secs();
        let store = db.store(&table);
        let user = fresh_user();
        let issued = store
            .issue(
                NewToken::access(user.clone())
                    .name("phone")
                    .prefix("myapp_")
                    .issued_at(now)
                    .expires_in(Duration::from_secs(60)),
            )
            .await
            .unwrap();
        let id = issued.record.id;
        let plain = issued.plain_text.expose();
        let secret = &plain[plain.find('|').unwrap() + 1..];
        assert_eq!(plain[..plain.find('|').unwrap()], id.to_string());
        assert!(secret.starts_with("myapp_") && secret.len() == 6 + 48);
        let text = |column: &'static str| {
            let (db, table) = (db.clone(), table.clone());
            async move { db.text(&table, id, column).await }
        };
        let token = text("token").await.unwrap();
        assert_eq!(token, TokenDigest::of(secret.as_bytes()).to_hex());
        assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(text("abilities").await.as_deref(), Some(r#"["*"]"#));
        assert_eq!(text("tokenable_type").await.as_deref(), Some("App\\Models\\User"));
        assert_eq!(text("tokenable_id").await, Some(user.to_string()));
        assert_eq!(text("name").await.as_deref(), Some("phone"));
        assert_eq!(text("created_at").await, Some(laravel_time(now)));
        assert_eq!(text("updated_at").await, Some(laravel_time(now)));
        assert_eq!(text("expires_at").await, Some(laravel_time(now + Duration::from_secs(60))));
        assert_eq!(text("last_used_at").await, None);

        // A refresh token on its own records what it grants, prefixed so Laravel never grants it.
        let refresh = store.issue(NewToken::refresh(user.clone()).abilities(["posts:read"])).await.unwrap();
        let row = db.text(&table, refresh.record.id, "abilities").await.unwrap();
        let listed = laravel_abilities(&row);
        assert_eq!(listed[..2], ["issue-access-token", "tta:grant:posts:read"]);
        assert!(listed.len() == 4 && listed[2].starts_with("tta:family:"), "{row}");
        assert_eq!(
            listed[3],
            format!(
                "tta:since:{}",
                secs(refresh.record.created_at).duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
            )
        );
        assert!(laravel_can(&row, "issue-access-token") && !laravel_can(&row, "posts:read"));

        // A login's pair, before and after an exchange, as Sanctum's guard and tokenCan see it.
        let tokens = RefreshTokens::new(store.clone());
        for abilities in [vec!["posts:read", "posts/write", "café"], vec!["*"], vec![]] {
            let login = NewPair::new(user.clone()).name("tablet").abilities(abilities.clone());
            let first = tokens.issue_pair(login).await.unwrap();
            let second = tokens.exchange(&bearer(&first.refresh)).await.unwrap();
            for pair in [&first, &second] {
                let access = db.text(&table, pair.access.record.id, "abilities").await.unwrap();
                let session = format!("tta:session:{}", pair.refresh.record.id);
                let expected: Vec<String> = abilities.iter().map(|a| a.to_string()).chain([session]).collect();
                assert_eq!(laravel_abilities(&access), expected, "verbatim, then the session link");
                for probe in ["posts:read", "posts/write", "café", "admin", "issue-access-token"] {
                    let ours = pair.access.record.abilities.can(probe);
                    assert_eq!(laravel_can(&access, probe), ours, "tokenCan({probe:?}) on {access}");
                }
                let refresh = db.text(&table, pair.refresh.record.id, "abilities").await.unwrap();
                assert!(laravel_can(&refresh, "issue-access-token"), "{refresh}");
                for probe in ["posts:read", "café", "admin"] {
                    assert!(!laravel_can(&refresh, probe), "a refresh row grants nothing to Laravel: {refresh}");
                }
            }
            // Sanctum's guard: find($id), then hash_equals($row->token, hash('sha256', $secret)). A refresh
            // token's row holds a digest Sanctum cannot reproduce, so it never works as a Laravel bearer token.
            for (issued, live) in [(&second.access, true), (&second.refresh, false), (&first.access, false)] {
                let plain = issued.plain_text.expose();
                let (id, secret) = plain.split_once('|').unwrap();
                let stored = db.text(&table, id.parse().unwrap(), "token").await;
                let matches = stored == Some(TokenDigest::of(secret.as_bytes()).to_hex());
                assert_eq!(matches, live, "token {id}");
            }
            let created = db.text(&table, second.access.record.id, "created_at").await;
            assert_eq!(created, Some(laravel_time(second.access.record.created_at)), "issued at the exchange");
        }

        // A morph-map alias is just another tokenable_type; the stores do not see each other's rows.
        let aliased = db.store(&table).tokenable_type("user");
        let other = aliased.issue(NewToken::access(user.clone())).await.unwrap();
        assert_eq!(db.text(&table, other.record.id, "tokenable_type").await.as_deref(), Some("user"));
        assert!(store.find(other.record.id).await.unwrap().is_none());
        assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 8);
        assert!(aliased.find(other.record.id).await.unwrap().is_some());

        // Far-future expiry: stored (clamped on MySQL's TIMESTAMP), never an insert failure.
        let far = store
            .issue(
                NewToken::access(user.clone()).expires_at(SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)),
            )
            .await
            .unwrap();
        let expires = store.find(far.record.id).await.unwrap().unwrap().expires_at.unwrap();
        assert!(expires > SystemTime::UNIX_EPOCH + Duration::from_secs(2_100_000_000));
    })
    .await;
}

/// Reserved abilities never reach the table, not even in a `NewSession` built by hand: the previous
/// version let `NewToken::access(5).abilities(["issue-access-token"])` read back as a refresh token
/// (on MariaDB among others), whose exchange minted a `["*"]` access token.
async fn reserved_abilities_are_refused(db: Db) {
    db.with_table(|db, table| async move {
        let store = db.store(&table);
        let err = store.issue(NewToken::access(5u64).abilities(["issue-access-token"])).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::InvalidInput, "{err}");
        let tokens = RefreshTokens::new(store.clone());
        let err = tokens.issue_pair(NewPair::new(5u64).abilities(["tta:grant:*"])).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::InvalidInput, "{err}");
        let secret = NewSecret { digest: TokenDigest::of(b"forged"), expires_at: None };
        for reserved in ["issue-access-token", "rotated-refresh-token", "tta:session:1", "tta:rotated:x:1"] {
            let forged = NewSession {
                user_id: 5u64.into(),
                name: "forged".into(),
                abilities: [reserved].into_iter().collect(),
                created_at: now_secs(),
                access: Some(secret),
                refresh: None,
                family: None,
                limit: SessionLimit::default(),
            };
            let err = store.insert(forged).await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::InvalidInput, "{reserved}: {err}");
        }
        assert_eq!(db.count(&table, None).await, 0, "nothing was stored");
        // So a plain access token can never be exchanged.
        let access = store.issue(NewToken::access(5u64).abilities(["posts:read"])).await.unwrap();
        assert_eq!(store.find(access.record.id).await.unwrap().unwrap().kind, TokenKind::Access);
        assert!(matches!(tokens.exchange(&bearer(&access)).await, Err(RefreshError::Invalid)));
        assert_eq!(db.count(&table, None).await, 1);
    })
    .await;
}

/// Timestamps no `SystemTime` decoder expects (PostgreSQL's `infinity`, `-infinity` and year 200000;
/// MySQL's zero date) read without a panic, and never as "no expiry" unless they mean it.
async fn extreme_timestamps_read_safely(db: Db) {
    db.with_table(|db, table| async move {
        let store = db.store(&table);
        let now = now_secs();
        let t = db.quote(&table);
        let (far_future, long_ago): (&[&str], &[&str]) = match &db {
            #[cfg(feature = "postgres")]
            Db::Pg(..) => (&["infinity", "200000-01-01 00:00:00"], &["-infinity", "4000-01-01 00:00:00 BC"]),
            #[cfg(feature = "mysql")]
            Db::My(..) => (&[], &["0000-00-00 00:00:00"]),
            #[cfg(feature = "sqlite")]
            Db::Lite(..) => (&["9999-12-31 23:59:59"], &["0001-01-01 00:00:00"]),
        };
        for (value, expired) in far_future.iter().map(|v| (v, false)).chain(long_ago.iter().map(|v| (v, true))) {
            let issued = store.issue(NewToken::access(7u64).issued_at(now)).await.unwrap();
            let id = issued.record.id;
            // Without NO_ZERO_DATE, as MySQL servers without Laravel's strict mode run.
            let mode = if matches!(value, &"0000-00-00 00:00:00") { "SET SESSION sql_mode = ''; " } else { "" };
            let sql = format!(
                "{mode}UPDATE {t} SET expires_at = '{value}', created_at = '{value}', last_used_at = '{value}' WHERE id = {id}"
            );
            db.exec(&sql).await;
            let found = store.find(id).await.unwrap().unwrap_or_else(|| panic!("{value}: found"));
            let expires = found.expires_at.expect("a timestamp, not \"never\"");
            assert_eq!(found.is_expired(now, None), expired, "{value} reads as {expires:?}");
            assert_eq!(store.list_sessions(&7u64.into()).await.unwrap().len(), 1, "{value}: listed");
            assert_eq!(store.revoke_all_for_user(&7u64.into()).await.unwrap(), 1);
        }
        // SQLite's datetime columns hold any text: an undecodable one is corrupt to read, and logging
        // out still removes the row (revocation needs only the id and the session link).
        #[cfg(feature = "sqlite")]
        if let Db::Lite(..) = &db {
            let tokens = RefreshTokens::new(store.clone());
            let pair = tokens.issue_pair(NewPair::new(7u64)).await.unwrap();
            let kept = store.issue(NewToken::access(7u64)).await.unwrap();
            db.exec(&format!("UPDATE {t} SET created_at = 'not a time' WHERE id = {}", pair.access.record.id)).await;
            assert_eq!(store.find(pair.access.record.id).await.unwrap_err().kind(), StoreErrorKind::Corrupt);
            let listed = store.list_sessions(&7u64.into()).await.unwrap();
            assert_eq!(listed.len(), 2, "the session is listed from its refresh row: {listed:?}");
            let revoked = store.revoke_sessions(&7u64.into(), Sessions::AllExcept(kept.record.session_id)).await;
            assert_eq!(revoked.unwrap(), 2, "both rows of the session, the unreadable one included");
            assert!(works(&store, &kept).await);
            assert_eq!(db.count(&table, None).await, 1);
        }
    })
    .await;
}

/// Id-less legacy tokens are found by digest only when enabled.
async fn finds_legacy_tokens_only_when_enabled(db: Db) {
    db.with_table(|db, table| async move {
        let now = now_secs();
        let id = db.insert_laravel(&table, &LaravelRow::new(LEGACY_80.1, laravel_time(now))).await;
        let mut admin = LaravelRow::new(CURRENT.1, laravel_time(now));
        admin.tokenable_type = "App\\Models\\Admin";
        db.insert_laravel(&table, &admin).await;

        let digest = TokenDigest::of(LEGACY_80.0.as_bytes());
        assert!(db.store(&table).find_by_digest(&digest).await.unwrap().is_none(), "off by default");
        assert!(db.store(&table).legacy_tokens(false).find_by_digest(&digest).await.unwrap().is_none());
        let store = db.store(&table).legacy_tokens(true);
        let found = store.find_by_digest(&digest).await.unwrap().expect("legacy token is found");
        assert_eq!(found.id, id);
        assert!(found.digest.ct_eq(&digest));
        assert_eq!(found.user_id, UserId::from(42u64));
        let other_type = TokenDigest::of(CURRENT.0.as_bytes());
        assert!(store.find_by_digest(&other_type).await.unwrap().is_none(), "other tokenable_type");
        assert!(store.find_by_digest(&TokenDigest::of(b"unknown")).await.unwrap().is_none());
    })
    .await;
}

/// Logins racing for the last session slot: the limit holds (PostgreSQL serializes a user's logins
/// with an advisory lock, SQLite all writers).
async fn the_session_limit_holds_under_concurrent_logins(db: Db) {
    db.with_table(|db, table| async move {
        let store = db.connected_store(&table).await;
        for when_full in [WhenFull::RevokeOldest, WhenFull::Refuse] {
            let user = fresh_user();
            let limit = SessionLimit::new(2, when_full);
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let tokens = RefreshTokens::new(store.clone()).session_limit(limit);
                    let user = user.clone();
                    tokio::spawn(async move { tokens.issue_pair(NewPair::new(user)).await })
                })
                .collect();
            let mut refused = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Ok(_) => {}
                    Err(e) if e.kind() == StoreErrorKind::SessionLimit => refused += 1,
                    Err(e) => panic!("{when_full:?}: {e}"),
                }
            }
            assert_eq!(store.list_sessions(&user).await.unwrap().len(), 2, "{when_full:?}");
            assert_eq!(db.count(&table, Some(&user)).await, 4, "{when_full:?}");
            if when_full == WhenFull::Refuse {
                assert_eq!(refused, 6);
            }
            store.revoke_all_for_user(&user).await.unwrap();
        }
    })
    .await;
}

/// String user ids (Laravel's `uuidMorphs`), on a table whose `tokenable_id` is a uuid/char column.
async fn string_user_ids(db: Db) {
    let table = format!("tta_{}", unique_suffix());
    let ddl = match &db {
        #[cfg(feature = "postgres")]
        Db::Pg(..) => {
            tower_token_auth::store::sql::POSTGRES_MIGRATION.replace("\"tokenable_id\" bigint", "\"tokenable_id\" uuid")
        }
        #[cfg(feature = "mysql")]
        Db::My(..) => tower_token_auth::store::sql::MYSQL_MIGRATION
            .replace("`tokenable_id` bigint unsigned", "`tokenable_id` char(36)"),
        #[cfg(feature = "sqlite")]
        Db::Lite(..) => tower_token_auth::store::sql::SQLITE_MIGRATION
            .replace("\"tokenable_id\" integer", "\"tokenable_id\" varchar"),
    };
    assert!(ddl.contains("uuid") || ddl.contains("char(36)") || ddl.contains("\"tokenable_id\" varchar"));
    db.exec(&ddl.replace("personal_access_tokens", &table)).await;
    let outcome = tokio::spawn({
        let (db, table) = (db.clone(), table.clone());
        async move {
            let store = db.store(&table);
            let user = UserId::from("9b2f6c1e-3f5a-4c6b-9d8e-7a1b2c3d4e5f");
            let other = UserId::from("0e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b");
            let a = store.issue(NewToken::access(user.clone())).await.unwrap();
            let b = store.issue(NewToken::refresh(user.clone())).await.unwrap();
            let c = store.issue(NewToken::access(other.clone())).await.unwrap();
            assert_eq!(store.find(a.record.id).await.unwrap().unwrap().user_id, user);
            // Sessions work on string ids: a pair, an exchange (which finds the owner from the row), reuse.
            let tokens = RefreshTokens::new(store.clone());
            let pair = tokens.issue_pair(NewPair::new(user.clone()).name("uuid")).await.unwrap();
            let next = tokens.exchange(&bearer(&pair.refresh)).await.unwrap();
            assert!(works(&store, &next.access).await);
            assert_eq!(store.list_sessions(&user).await.unwrap().len(), 3);
            assert!(matches!(
                tokens.exchange(&bearer(&pair.refresh)).await,
                Err(RefreshError::Reused { revoked: 2, .. })
            ));
            assert_eq!(store.revoke_sessions(&user, Sessions::AllExcept(a.record.session_id)).await.unwrap(), 1);
            assert!(store.find(b.record.id).await.unwrap().is_none());
            assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 1);
            assert_eq!(store.find(c.record.id).await.unwrap().unwrap().user_id, other);
            assert_eq!(store.revoke_all_for_user(&other).await.unwrap(), 1);
        }
    })
    .await;
    db.exec(&format!("DROP TABLE {}", db.quote(&table))).await;
    db.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_meets_the_store_contract() {
        if let Some(db) = Db::postgres().await {
            contract(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_races_leak_nothing() {
        if let Some(db) = Db::postgres().await {
            races(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_storage_is_bounded() {
        if let Some(db) = Db::postgres().await {
            storage_is_bounded(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_reads_laravel_rows() {
        if let Some(db) = Db::postgres().await {
            reads_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_laravel_rows_never_escalate() {
        if let Some(db) = Db::postgres().await {
            laravel_rows_never_escalate(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_sanctum_refuses_refresh_tokens() {
        if let Some(db) = Db::postgres().await {
            sanctum_refuses_refresh_tokens(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_laravel_actions_on_sessions() {
        if let Some(db) = Db::postgres().await {
            laravel_actions_on_sessions(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_many_laravel_rows() {
        if let Some(db) = Db::postgres().await {
            many_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_extreme_timestamps_read_safely() {
        if let Some(db) = Db::postgres().await {
            extreme_timestamps_read_safely(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_finds_legacy_tokens_only_when_enabled() {
        if let Some(db) = Db::postgres().await {
            finds_legacy_tokens_only_when_enabled(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_issued_tokens_are_laravel_rows() {
        if let Some(db) = Db::postgres().await {
            issued_tokens_are_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_refuses_reserved_abilities() {
        if let Some(db) = Db::postgres().await {
            reserved_abilities_are_refused(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_session_limit_holds_under_concurrent_logins() {
        if let Some(db) = Db::postgres().await {
            the_session_limit_holds_under_concurrent_logins(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_string_user_ids() {
        if let Some(db) = Db::postgres().await {
            string_user_ids(db).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// MySQL / MariaDB

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_meets_the_store_contract() {
        if let Some(db) = Db::mysql().await {
            contract(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_races_leak_nothing() {
        if let Some(db) = Db::mysql().await {
            races(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_storage_is_bounded() {
        if let Some(db) = Db::mysql().await {
            storage_is_bounded(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_reads_laravel_rows() {
        if let Some(db) = Db::mysql().await {
            reads_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_laravel_rows_never_escalate() {
        if let Some(db) = Db::mysql().await {
            laravel_rows_never_escalate(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_sanctum_refuses_refresh_tokens() {
        if let Some(db) = Db::mysql().await {
            sanctum_refuses_refresh_tokens(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_laravel_actions_on_sessions() {
        if let Some(db) = Db::mysql().await {
            laravel_actions_on_sessions(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_many_laravel_rows() {
        if let Some(db) = Db::mysql().await {
            many_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_extreme_timestamps_read_safely() {
        if let Some(db) = Db::mysql().await {
            extreme_timestamps_read_safely(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_finds_legacy_tokens_only_when_enabled() {
        if let Some(db) = Db::mysql().await {
            finds_legacy_tokens_only_when_enabled(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_issued_tokens_are_laravel_rows() {
        if let Some(db) = Db::mysql().await {
            issued_tokens_are_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb_refuses_reserved_abilities() {
        if let Some(db) = Db::mysql().await {
            reserved_abilities_are_refused(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_string_user_ids() {
        if let Some(db) = Db::mysql().await {
            string_user_ids(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb_scheme_connects() {
        if let Ok(url) = std::env::var(MYSQL_URL) {
            let url = url.replacen("mysql://", "mariadb://", 1);
            SqlStore::connect(&url).await.unwrap();
        } else {
            println!("skipped: {MYSQL_URL} is not set");
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// SQLite

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_meets_the_store_contract() {
        contract(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_in_memory_meets_the_store_contract() {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        assert!(store.create_table_if_missing().await.unwrap());
        store_contract(|| store.clone()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_races_leak_nothing() {
        races(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_in_memory_races_leak_nothing() {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        assert!(store.create_table_if_missing().await.unwrap());
        let report = race_presentations(store.clone(), rounds(), 4).await;
        println!("SQLite in memory, 4 simultaneous presentations: {report}");
        assert_eq!((report.leaks, report.exchanges), (0, rounds()), "{report}");
        let report = race_exchange_and_logout(store, rounds()).await;
        println!("SQLite in memory, exchange racing logout: {report}");
        assert_eq!(report.leaks, 0, "{report}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_storage_is_bounded() {
        storage_is_bounded(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_reads_laravel_rows() {
        reads_laravel_rows(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_laravel_rows_never_escalate() {
        laravel_rows_never_escalate(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_sanctum_refuses_refresh_tokens() {
        sanctum_refuses_refresh_tokens(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_laravel_actions_on_sessions() {
        laravel_actions_on_sessions(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_many_laravel_rows() {
        many_laravel_rows(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_extreme_timestamps_read_safely() {
        extreme_timestamps_read_safely(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_finds_legacy_tokens_only_when_enabled() {
        finds_legacy_tokens_only_when_enabled(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_issued_tokens_are_laravel_rows() {
        issued_tokens_are_laravel_rows(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_refuses_reserved_abilities() {
        reserved_abilities_are_refused(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_session_limit_holds_under_concurrent_logins() {
        the_session_limit_holds_under_concurrent_logins(Db::sqlite().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_string_user_ids() {
        string_user_ids(Db::sqlite().await).await;
    }

    /// A transaction that finds the database locked is run again: with no busy timeout at all, a login
    /// and an exchange still succeed once another connection's write lock is released.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_busy_transactions_are_retried() {
        use std::str::FromStr;
        let path = std::env::temp_dir().join(format!("tta-retry-{}.sqlite", unique_suffix()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url).unwrap().busy_timeout(Duration::ZERO);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let store = SqlStore::from_sqlite_pool(pool.clone());
        store.create_table_if_missing().await.unwrap();
        let tokens = RefreshTokens::new(store.clone());
        let pair = tokens.issue_pair(NewPair::new(1u64)).await.unwrap();
        for _ in 0..3 {
            let holder = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
            let login = tokio::spawn({
                let tokens = tokens.clone();
                async move { tokens.issue_pair(NewPair::new(2u64)).await }
            });
            tokio::time::sleep(Duration::from_millis(15)).await;
            holder.commit().await.unwrap();
            login.await.unwrap().expect("retried until the lock was free");
        }
        let holder = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let exchange = tokio::spawn({
            let (tokens, headers) = (tokens.clone(), bearer(&pair.refresh));
            async move { tokens.exchange(&headers).await }
        });
        tokio::time::sleep(Duration::from_millis(15)).await;
        holder.commit().await.unwrap();
        assert!(exchange.await.unwrap().is_ok());
        assert_eq!(store.list_sessions(&2u64.into()).await.unwrap().len(), 3);
        pool.close().await;
        remove_sqlite_files(&path);
    }

    /// `..` components from the working directory to the root, then `path` without its leading `/`: a
    /// relative path to an absolute one.
    fn relative_to_cwd(path: &std::path::Path) -> String {
        let cwd = std::env::current_dir().unwrap();
        let ups = cwd.components().count().saturating_sub(1);
        let rest = path.strip_prefix("/").unwrap();
        format!("{}{}", "../".repeat(ups), rest.display())
    }

    /// The documented URL forms work as written: a missing file is created unless `mode=` says
    /// otherwise.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_urls_create_missing_files_as_documented() {
        let dir = std::env::temp_dir();
        let file = |name: &str| dir.join(format!("tta-url-{name}-{}.sqlite", unique_suffix()));
        let absolute = file("absolute");
        let relative = file("relative");
        let bare = file("bare");
        let rwc = file("rwc");
        for (url, path) in [
            (format!("sqlite://{}", absolute.display()), &absolute), // sqlite:///tmp/...
            (format!("sqlite://{}", relative_to_cwd(&relative)), &relative),
            (format!("sqlite:{}", relative_to_cwd(&bare)), &bare),
            (format!("sqlite://{}?mode=rwc", rwc.display()), &rwc),
        ] {
            assert!(!path.exists());
            let store = SqlStore::connect(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(store.create_table_if_missing().await.unwrap());
            let issued = store.issue(NewToken::access(1u64)).await.unwrap();
            assert!(works(&store, &issued).await);
            assert!(path.exists(), "{url} created {}", path.display());
            drop(store);
            let again = SqlStore::connect(&url).await.unwrap();
            assert!(works(&again, &issued).await, "{url}: the same file is opened again");
            drop(again);
            remove_sqlite_files(path);
        }
        for mode in ["rw", "ro"] {
            let missing = file(mode);
            let url = format!("sqlite://{}?mode={mode}", missing.display());
            assert!(SqlStore::connect(&url).await.is_err(), "{url}: an explicit mode is respected");
            assert!(!missing.exists());
        }
        let memory = SqlStore::connect("sqlite::memory:").await.unwrap();
        assert!(memory.create_table_if_missing().await.unwrap(), "in memory: a new, empty database");
    }
}

#[tokio::test]
async fn unknown_url_schemes_are_refused_without_echoing_the_url() {
    let err = SqlStore::connect("oracle://scott:tiger@db/orcl").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Backend);
    assert!(!err.to_string().contains("tiger"));
}

#[cfg(feature = "sqlite")]
#[tokio::test]
#[should_panic(expected = "not a plain SQL identifier")]
async fn table_names_are_validated() {
    let store = SqlStore::connect("sqlite::memory:").await.unwrap();
    let _ = store.table("tokens; DROP TABLE users");
}
