//! `SqlStore` against real databases: the store contract, and Sanctum interop vectors (rows written the
//! way Laravel writes them, and rows written by the store read the way Laravel reads them).
//!
//! PostgreSQL and MySQL/MariaDB run when `TOWER_TOKEN_AUTH_POSTGRES_URL` / `TOWER_TOKEN_AUTH_MYSQL_URL`
//! are set (e.g. `postgres://postgres@127.0.0.1:5432/test`, `mysql://root@127.0.0.1:3306/test`); SQLite
//! always runs, on a temporary file. Every test uses its own table and drops it at the end.

#![cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
#![cfg_attr(not(all(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(dead_code, unused))]

mod support;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, FixedOffset};
use support::contract::{fresh_user, now_secs, store_contract};
use tower_token_auth::store::sql::SqlStore;
use tower_token_auth::store::StoreErrorKind;
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

// ---------------------------------------------------------------------------------------------------
// Raw access to the database, as Laravel (PDO, bound parameters) would do it.

#[derive(Clone)]
enum Db {
    #[cfg(feature = "postgres")]
    Pg(sqlx::PgPool),
    #[cfg(feature = "mysql")]
    My(sqlx::MySqlPool),
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
    async fn postgres() -> Option<(Db, String)> {
        let Ok(url) = std::env::var(POSTGRES_URL) else {
            println!("skipped: {POSTGRES_URL} is not set");
            return None;
        };
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(3).connect(&url).await.unwrap();
        Some((Db::Pg(pool), url))
    }

    #[cfg(feature = "mysql")]
    async fn mysql() -> Option<(Db, String)> {
        let Ok(url) = std::env::var(MYSQL_URL) else {
            println!("skipped: {MYSQL_URL} is not set");
            return None;
        };
        let pool = sqlx::mysql::MySqlPoolOptions::new().max_connections(3).connect(&url).await.unwrap();
        Some((Db::My(pool), url))
    }

    #[cfg(feature = "sqlite")]
    async fn sqlite() -> (Db, String) {
        let path = std::env::temp_dir().join(format!("tower-token-auth-{}.sqlite", unique_suffix()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(3).connect(&url).await.unwrap();
        (Db::Lite(pool, path), url)
    }

    /// A store on this database's pool, using `table`.
    fn store(&self, table: &str) -> SqlStore {
        let store = match self {
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => SqlStore::from_pg_pool(pool.clone()),
            #[cfg(feature = "mysql")]
            Db::My(pool) => SqlStore::from_mysql_pool(pool.clone()),
            #[cfg(feature = "sqlite")]
            Db::Lite(pool, _) => SqlStore::from_sqlite_pool(pool.clone()),
        };
        store.table(table)
    }

    fn quote(&self, name: &str) -> String {
        match self {
            #[cfg(feature = "mysql")]
            Db::My(_) => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    /// A column read as text, the way PHP sees it.
    fn as_text(&self, column: &str) -> String {
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(_) => format!("{column}::text"),
            #[cfg(feature = "mysql")]
            Db::My(_) => format!("CAST({column} AS CHAR)"),
            #[cfg(feature = "sqlite")]
            Db::Lite(..) => format!("CAST({column} AS TEXT)"),
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => drop(sqlx::raw_sql(sql).execute(pool).await.unwrap()),
            #[cfg(feature = "mysql")]
            Db::My(pool) => drop(sqlx::raw_sql(sql).execute(pool).await.unwrap()),
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
            Db::Pg(pool) => {
                // PDO sends untyped parameters; sqlx types them as text, so cast like PostgreSQL would.
                let sql = format!(
                    "INSERT INTO {t} ({columns}) VALUES ($1, $2, $3, $4, $5, $6::timestamp, $7::timestamp, $8::timestamp) RETURNING id"
                );
                let id: i64 = bind_row!(sqlx::query_scalar(&sql)).fetch_one(pool).await.unwrap();
                id as u64
            }
            #[cfg(feature = "mysql")]
            Db::My(pool) => {
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
            Db::Pg(pool) => sqlx::query_scalar(&sql).fetch_optional(pool).await.unwrap().flatten(),
            #[cfg(feature = "mysql")]
            Db::My(pool) => sqlx::query_scalar(&sql).fetch_optional(pool).await.unwrap().flatten(),
            #[cfg(feature = "sqlite")]
            Db::Lite(pool, _) => sqlx::query_scalar(&sql).fetch_optional(pool).await.unwrap().flatten(),
        }
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {}", self.quote(table));
        match self {
            #[cfg(feature = "postgres")]
            Db::Pg(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap(),
            #[cfg(feature = "mysql")]
            Db::My(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap(),
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
            Db::Pg(pool) => pool.close().await,
            #[cfg(feature = "mysql")]
            Db::My(pool) => pool.close().await,
            #[cfg(feature = "sqlite")]
            Db::Lite(pool, path) => {
                pool.close().await;
                for suffix in ["", "-journal", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The checks, shared by every backend.

/// The contract, on a store built by `SqlStore::connect(url)`.
async fn contract(db: Db, url: String) {
    db.with_table(|_db, table| async move {
        let store = SqlStore::connect(&url).await.unwrap().table(&table);
        store_contract(store).await;
    })
    .await;
}

/// Rows written the way Laravel writes them are read correctly.
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
        assert!(!store.revoke(admin_id).await.unwrap());
        assert!(!store.mark_refresh_rotated(admin_id).await.unwrap());
        let admin_store = db.store(&table).tokenable_type("App\\Models\\Admin");
        assert_eq!(admin_store.find(admin_id).await.unwrap().unwrap().user_id, UserId::from(42u64));
        assert!(admin_store.find(current_id).await.unwrap().is_none());

        // A refresh token as Laravel apps write it, rotated once.
        let mut refresh =
            LaravelRow::new("0000000000000000000000000000000000000000000000000000000000000003", laravel_time(now));
        refresh.abilities = Some(r#"["issue-access-token"]"#);
        let refresh_id = db.insert_laravel(&table, &refresh).await;
        assert_eq!(store.find(refresh_id).await.unwrap().unwrap().kind, TokenKind::Refresh);
        assert!(store.mark_refresh_rotated(refresh_id).await.unwrap());
        assert!(!store.mark_refresh_rotated(refresh_id).await.unwrap());
        assert_eq!(store.find(refresh_id).await.unwrap().unwrap().kind, TokenKind::RotatedRefresh);
        assert_eq!(db.text(&table, refresh_id, "abilities").await.as_deref(), Some(r#"["rotated-refresh-token"]"#));
        assert!(!store.mark_refresh_rotated(current_id).await.unwrap(), "[\"*\"] is not a refresh token");

        // last_used_at and updated_at, as Sanctum's guard writes them.
        let used = now - Duration::from_secs(5);
        store.touch_last_used(current_id, used).await.unwrap();
        assert_eq!(db.text(&table, current_id, "last_used_at").await, Some(laravel_time(used)));
        assert_eq!(db.text(&table, current_id, "updated_at").await, Some(laravel_time(used)));
        assert_eq!(store.find(current_id).await.unwrap().unwrap().last_used_at, Some(used));

        // A NULL abilities column grants nothing; an unreadable token column is corrupt, not "not found".
        let mut no_abilities =
            LaravelRow::new("0000000000000000000000000000000000000000000000000000000000000004", laravel_time(now));
        no_abilities.abilities = None;
        let id = db.insert_laravel(&table, &no_abilities).await;
        assert!(!store.find(id).await.unwrap().unwrap().abilities.can("anything"));
        let id = db.insert_laravel(&table, &LaravelRow::new("not-a-sha256", laravel_time(now))).await;
        assert_eq!(store.find(id).await.unwrap_err().kind(), StoreErrorKind::Corrupt);

        // A timezone offset shifts the naive timestamps.
        let berlin_winter = db.store(&table).timezone_offset(FixedOffset::east_opt(3600).unwrap());
        assert_eq!(berlin_winter.find(current_id).await.unwrap().unwrap().created_at, now - 2 * hour);

        // Ids beyond BIGINT are simply absent.
        assert!(store.find(u64::MAX).await.unwrap().is_none());
        assert!(store.find(i64::MAX as u64 + 1).await.unwrap().is_none());

        // Logout everywhere for user 42 deletes every App\Models\User row, and only those.
        let total = db.count(&table).await;
        let removed = store.revoke_all_for_user(&42u64.into()).await.unwrap();
        assert_eq!(removed as i64, total - 1);
        assert!(admin_store.find(admin_id).await.unwrap().is_some());
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

/// Tokens issued by the store are rows Laravel can read.
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

        let refresh = store.issue(NewToken::refresh(user.clone()).abilities(["ignored"])).await.unwrap();
        assert_eq!(db.text(&table, refresh.record.id, "abilities").await.as_deref(), Some(r#"["issue-access-token"]"#));

        // A morph-map alias is just another tokenable_type; the stores do not see each other's rows.
        let aliased = db.store(&table).tokenable_type("user");
        let other = aliased.issue(NewToken::access(user.clone())).await.unwrap();
        assert_eq!(db.text(&table, other.record.id, "tokenable_type").await.as_deref(), Some("user"));
        assert!(store.find(other.record.id).await.unwrap().is_none());
        assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 2);
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

/// String user ids (Laravel's `uuidMorphs`), on a table whose `tokenable_id` is a uuid/char column.
async fn string_user_ids(db: Db) {
    let table = format!("tta_{}", unique_suffix());
    let ddl = match &db {
        #[cfg(feature = "postgres")]
        Db::Pg(_) => {
            tower_token_auth::store::sql::POSTGRES_MIGRATION.replace("\"tokenable_id\" bigint", "\"tokenable_id\" uuid")
        }
        #[cfg(feature = "mysql")]
        Db::My(_) => tower_token_auth::store::sql::MYSQL_MIGRATION
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
            assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 2);
            assert!(store.find(b.record.id).await.unwrap().is_none());
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
        if let Some((db, url)) = Db::postgres().await {
            contract(db, url).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_reads_laravel_rows() {
        if let Some((db, _)) = Db::postgres().await {
            reads_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_finds_legacy_tokens_only_when_enabled() {
        if let Some((db, _)) = Db::postgres().await {
            finds_legacy_tokens_only_when_enabled(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_issued_tokens_are_laravel_rows() {
        if let Some((db, _)) = Db::postgres().await {
            issued_tokens_are_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_string_user_ids() {
        if let Some((db, _)) = Db::postgres().await {
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
        if let Some((db, url)) = Db::mysql().await {
            contract(db, url).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_reads_laravel_rows() {
        if let Some((db, _)) = Db::mysql().await {
            reads_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_finds_legacy_tokens_only_when_enabled() {
        if let Some((db, _)) = Db::mysql().await {
            finds_legacy_tokens_only_when_enabled(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_issued_tokens_are_laravel_rows() {
        if let Some((db, _)) = Db::mysql().await {
            issued_tokens_are_laravel_rows(db).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_string_user_ids() {
        if let Some((db, _)) = Db::mysql().await {
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
        let (db, url) = Db::sqlite().await;
        contract(db, url).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_in_memory_meets_the_store_contract() {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        assert!(store.create_table_if_missing().await.unwrap());
        store_contract(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_reads_laravel_rows() {
        reads_laravel_rows(Db::sqlite().await.0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_finds_legacy_tokens_only_when_enabled() {
        finds_legacy_tokens_only_when_enabled(Db::sqlite().await.0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_issued_tokens_are_laravel_rows() {
        issued_tokens_are_laravel_rows(Db::sqlite().await.0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_string_user_ids() {
        string_user_ids(Db::sqlite().await.0).await;
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
