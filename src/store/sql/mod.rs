//! [`SqlStore`]: tokens in Laravel Sanctum's own `personal_access_tokens` table, on PostgreSQL,
//! MySQL/MariaDB or SQLite (features `postgres`, `mysql`, `sqlite`; built on `sqlx` 0.8).
//!
//! The store reads and writes Sanctum's table exactly as Laravel does, so a Rust service and a Laravel
//! application can share one database: tokens issued by either are accepted by both, and "log out
//! everywhere" on either side logs out everywhere.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_token_auth::store::sql::SqlStore;
//! use tower_token_auth::{NewToken, TokenStore, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_token_auth::StoreError> {
//! let store = SqlStore::connect("postgres://app@localhost/app")
//!     .await?
//!     .tokenable_type("App\\Models\\User"); // the default; a morph-map alias such as "user" also works
//!
//! // Only for a new database: Laravel's migration normally creates the table.
//! store.create_table_if_missing().await?;
//!
//! let issued = store.issue(NewToken::access(42u64).name("cli").expires_in(Duration::from_secs(3600))).await?;
//! println!("token for the client: {}", issued.plain_text.expose());
//!
//! // Log out everywhere: one DELETE of every token of user 42.
//! store.revoke_all_for_user(&42u64.into()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Connecting
//!
//! [`SqlStore::connect`] picks the backend from the URL scheme: `postgres://` or `postgresql://`,
//! `mysql://` or `mariadb://`, and `sqlite://path/to/database.sqlite` or `sqlite::memory:` (add
//! `?mode=rwc` to create a missing SQLite file). To tune the pool (size, timeouts, TLS, MySQL session
//! time zone) build it yourself and use [`SqlStore::from_pg_pool`], [`SqlStore::from_mysql_pool`] or
//! [`SqlStore::from_sqlite_pool`]. This crate enables no TLS backend of `sqlx`; add one of `sqlx`'s `tls-*`
//! features in your own `Cargo.toml` to connect with TLS.
//!
//! A pool that cannot hand out a connection in time is reported as [`StoreErrorKind::Timeout`](crate::store::StoreErrorKind::Timeout), other
//! database failures as [`StoreErrorKind::Backend`](crate::store::StoreErrorKind::Backend), and rows this crate cannot read (a `token` that is not
//! 64 hex characters, `abilities` that are not a JSON array of strings) as [`StoreErrorKind::Corrupt`](crate::store::StoreErrorKind::Corrupt).
//! The auth layer answers all of them with `503`, never with `401`.
//!
//! # Sharing the database with a Laravel application
//!
//! **What is read and written.** Only Sanctum's table (default `personal_access_tokens`, see
//! [`SqlStore::table`]) and only rows whose `tokenable_type` is the configured one. Every statement is a
//! single, atomic SQL statement:
//!
//! | operation | SQL |
//! |---|---|
//! | [`find`](TokenStore::find) | `SELECT … WHERE id = ? AND tokenable_type = ?` |
//! | [`insert`](TokenStore::insert) | `INSERT` of `tokenable_type`, `tokenable_id`, `name`, `token`, `abilities`, `expires_at`, `created_at` = `updated_at` |
//! | [`revoke`](TokenStore::revoke) | `DELETE … WHERE id = ? AND tokenable_type = ?` |
//! | [`revoke_all_for_user`](TokenStore::revoke_all_for_user) | `DELETE … WHERE tokenable_type = ? AND tokenable_id = ?` (Laravel's `$user->tokens()->delete()`) |
//! | [`mark_refresh_rotated`](TokenStore::mark_refresh_rotated) | `UPDATE … SET abilities = '["rotated-refresh-token"]', updated_at = ? WHERE id = ? AND tokenable_type = ? AND abilities = '["issue-access-token"]'` |
//! | [`prune_expired`](TokenStore::prune_expired) | `DELETE … WHERE tokenable_type = ? AND (expires_at < ? OR created_at < ?)` |
//! | [`touch_last_used`](TokenStore::touch_last_used) | `UPDATE … SET last_used_at = ?, updated_at = ? WHERE id = ? AND tokenable_type = ?` |
//! | [`find_by_digest`](TokenStore::find_by_digest) | `SELECT … WHERE token = ? AND tokenable_type = ?`, only with [`SqlStore::legacy_tokens`] |
//!
//! The table is never altered. [`SqlStore::create_table_if_missing`] creates it, with Laravel's columns and
//! indexes, only when it does not exist.
//!
//! **`tokenable_type`** must be the value Laravel writes for your user model: the class name
//! (`App\Models\User`, the default here) or, with `Relation::enforceMorphMap`, its alias. Rows of other
//! types are invisible to the store: `find` returns `None` for them, as Sanctum's guard rejects a token
//! of another provider, and `prune_expired` leaves them alone (Laravel's `sanctum:prune-expired` prunes
//! every type). Integer user ids are written to `tokenable_id` as numbers; string ids (Laravel's
//! `uuidMorphs`/`ulidMorphs`) work too.
//!
//! **Refresh tokens** live in the same table, told apart by their abilities, as Laravel applications
//! that add refresh tokens to Sanctum do: a row whose abilities list contains exactly
//! `"issue-access-token"` ([`REFRESH_ABILITY`]) is a [`TokenKind::Refresh`], one that contains
//! `"rotated-refresh-token"` ([`ROTATED_REFRESH_ABILITY`]) is a [`TokenKind::RotatedRefresh`], every other
//! row is an access token. `["*"]` is an access token: the check is [`Abilities::contains_exactly`], not
//! [`Abilities::can`]. Inserting a refresh token writes `["issue-access-token"]`, whatever abilities the
//! record carries, and rotation rewrites exactly that value (a refresh row written with other abilities
//! besides it cannot be rotated, so its exchange fails). Refresh tokens are rejected by the auth layer,
//! and a Laravel application should likewise not accept them outside its refresh endpoint (Sanctum's
//! `tokenCan('issue-access-token')` is the usual check).
//!
//! **Abilities** are the JSON array in the `abilities` column (`["*"]` by default), parsed as JSON, so
//! PHP's `\/` and `\uXXXX` escapes are understood. A `NULL` column means no abilities.
//!
//! **Timestamps** are naive `Y-m-d H:i:s` values at second precision, in UTC unless
//! [`SqlStore::timezone_offset`] says otherwise; it must match Laravel's `app.timezone` (a fixed offset:
//! zones with daylight saving time cannot be matched, which is one more reason to keep Laravel's default
//! UTC). On MySQL, `sqlx` sets the session `time_zone` to `+00:00`; if Laravel's MySQL connection uses
//! another session time zone (its `timezone` option, or the server's default when unset), give `sqlx`
//! the same one through `MySqlConnectOptions::timezone` and [`SqlStore::from_mysql_pool`]. MySQL's
//! `TIMESTAMP` ends at 2038-01-19 03:14:07: later expiry times are stored as that instant, so such
//! tokens expire early rather than failing to insert. A `NULL` `created_at` reads as the Unix epoch (so a
//! maximum token age rejects the token).
//!
//! **`last_used_at`** is written by [`touch_last_used`](TokenStore::touch_last_used), which also sets
//! `updated_at`, as Sanctum does on every request. The auth layer calls it only when last-used tracking
//! is switched on, at most once per token per interval, and off the request path, so that a busy token
//! does not become one `UPDATE` per request; Sanctum itself writes on every request.
//!
//! **Legacy tokens.** Sanctum before 2.3 issued tokens without the `{id}|` part, found by hashing the
//! whole token. [`SqlStore::legacy_tokens`]`(true)` enables [`find_by_digest`](TokenStore::find_by_digest)
//! for them (a lookup on the unique `token` index); it is off by default.
//!
//! # Migrations
//!
//! [`POSTGRES_MIGRATION`], [`MYSQL_MIGRATION`] and [`SQLITE_MIGRATION`] hold the `CREATE TABLE` statements
//! (also shipped as `migrations/{postgres,mysql,sqlite}/20191214000001_create_personal_access_tokens_table.sql`
//! for migration tools) matching Sanctum's migration.

#![cfg_attr(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(unused, unreachable_code))]

mod queries;
mod time;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{FixedOffset, NaiveDateTime};

use self::queries::{col, Queries};
use self::time::TimeRange;
use super::{StoreError, StoreFuture, TokenStore};
use crate::token::{Abilities, NewTokenRecord, TokenDigest, TokenId, TokenKind, TokenRecord, UserId};

/// Sanctum's table name, the default of [`SqlStore::table`].
pub const DEFAULT_TABLE: &str = "personal_access_tokens";

/// Laravel's default user model, the default of [`SqlStore::tokenable_type`].
pub const DEFAULT_TOKENABLE_TYPE: &str = "App\\Models\\User";

/// The ability that marks a row as a refresh token (`["issue-access-token"]`).
pub const REFRESH_ABILITY: &str = "issue-access-token";

/// The ability that marks a row as an already exchanged refresh token (`["rotated-refresh-token"]`).
pub const ROTATED_REFRESH_ABILITY: &str = "rotated-refresh-token";

/// `CREATE TABLE` for PostgreSQL, as Sanctum's migration creates the table (`IF NOT EXISTS`).
pub const POSTGRES_MIGRATION: &str =
    include_str!("../../../migrations/postgres/20191214000001_create_personal_access_tokens_table.sql");

/// `CREATE TABLE` for MySQL and MariaDB, as Sanctum's migration creates the table (`IF NOT EXISTS`).
pub const MYSQL_MIGRATION: &str =
    include_str!("../../../migrations/mysql/20191214000001_create_personal_access_tokens_table.sql");

/// `CREATE TABLE` for SQLite, as Sanctum's migration creates the table (`IF NOT EXISTS`).
pub const SQLITE_MIGRATION: &str =
    include_str!("../../../migrations/sqlite/20191214000001_create_personal_access_tokens_table.sql");

const REFRESH_ABILITIES_JSON: &str = "[\"issue-access-token\"]";
const ROTATED_REFRESH_ABILITIES_JSON: &str = "[\"rotated-refresh-token\"]";

/// Which database a store talks to. (The SQL is written for all three, whatever features are on.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(all(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(dead_code))]
enum Backend {
    Postgres,
    MySql,
    Sqlite,
}

#[derive(Clone)]
enum Pool {
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
}

/// Runs `$body` with `$p` bound to the backend's pool. The body is compiled once per backend.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match *$pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(ref $p) => $body,
            #[cfg(feature = "mysql")]
            Pool::MySql(ref $p) => $body,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(ref $p) => $body,
        }
    };
}

impl Pool {
    fn backend(&self) -> Backend {
        match *self {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "mysql")]
            Pool::MySql(_) => Backend::MySql,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }
}

#[derive(Clone)]
struct Config {
    backend: Backend,
    table: String,
    tokenable_type: String,
    offset: FixedOffset,
    legacy_tokens: bool,
    range: TimeRange,
    sql: Queries,
}

/// A [`TokenStore`] on Laravel Sanctum's `personal_access_tokens` table, in PostgreSQL, MySQL/MariaDB
/// or SQLite. See the [module docs](self) for what it reads and writes.
///
/// Cheap to clone: clones share the connection pool. Configure it right after construction, with
/// [`tokenable_type`](Self::tokenable_type), [`table`](Self::table),
/// [`timezone_offset`](Self::timezone_offset) and [`legacy_tokens`](Self::legacy_tokens).
#[derive(Clone)]
pub struct SqlStore {
    pool: Pool,
    config: Arc<Config>,
}

impl SqlStore {
    /// Connects to the database at `url`, choosing the backend from its scheme: `postgres://`,
    /// `postgresql://`, `mysql://`, `mariadb://`, `sqlite://` or `sqlite:` (e.g. `sqlite::memory:`).
    ///
    /// One connection is opened at once, so a wrong URL or password fails here. A scheme whose backend
    /// feature is not enabled is an error.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme.to_ascii_lowercase()).unwrap_or_default();
        match scheme.as_str() {
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => {
                let pool = sqlx::PgPool::connect(url).await.map_err(db_error)?;
                Ok(Self::from_pg_pool(pool))
            }
            #[cfg(feature = "mysql")]
            "mysql" | "mariadb" => {
                let pool = sqlx::MySqlPool::connect(url).await.map_err(db_error)?;
                Ok(Self::from_mysql_pool(pool))
            }
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                use std::str::FromStr;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(db_error)?;
                let mut pool = sqlx::sqlite::SqlitePoolOptions::new();
                if url.contains(":memory:") || url.contains("mode=memory") {
                    // An in-memory database lives as long as a connection to it: keep exactly one.
                    pool = pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
                }
                let pool = pool.connect_with(options).await.map_err(db_error)?;
                Ok(Self::from_sqlite_pool(pool))
            }
            // Never echo the URL: it may hold a password.
            other => Err(StoreError::backend(format!(
                "unsupported database URL scheme `{other}:` (enabled backends: {})",
                enabled_backends()
            ))),
        }
    }

    /// A store on an existing PostgreSQL pool.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn from_pg_pool(pool: sqlx::PgPool) -> Self {
        Self::from_pool(Pool::Postgres(pool))
    }

    /// A store on an existing MySQL or MariaDB pool.
    ///
    /// `sqlx` sets the session `time_zone` to `+00:00` unless told otherwise
    /// (`MySqlConnectOptions::timezone`); it must match the session time zone of Laravel's connection for
    /// `TIMESTAMP` columns to read the same on both sides.
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    pub fn from_mysql_pool(pool: sqlx::MySqlPool) -> Self {
        Self::from_pool(Pool::MySql(pool))
    }

    /// A store on an existing SQLite pool.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn from_sqlite_pool(pool: sqlx::SqlitePool) -> Self {
        Self::from_pool(Pool::Sqlite(pool))
    }

    fn from_pool(pool: Pool) -> Self {
        let backend = pool.backend();
        let range = match backend {
            Backend::MySql => TimeRange::mysql_timestamp(),
            Backend::Postgres | Backend::Sqlite => TimeRange::wide(),
        };
        let config = Config {
            backend,
            table: DEFAULT_TABLE.to_owned(),
            tokenable_type: DEFAULT_TOKENABLE_TYPE.to_owned(),
            offset: utc(),
            legacy_tokens: false,
            range,
            sql: Queries::new(backend, DEFAULT_TABLE),
        };
        Self { pool, config: Arc::new(config) }
    }

    /// The `tokenable_type` of the tokens this store reads and writes: the user model's class name as
    /// Laravel writes it (default `App\Models\User`, written `"App\\Models\\User"` in Rust) or its
    /// morph-map alias.
    pub fn tokenable_type(mut self, tokenable_type: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).tokenable_type = tokenable_type.into();
        self
    }

    /// The table name (default `personal_access_tokens`), e.g. with Laravel's table prefix.
    ///
    /// # Panics
    ///
    /// If `table` is not a plain identifier: 1 to 63 ASCII letters, digits and `_`, not starting with a
    /// digit. (On MySQL, names longer than 29 characters make Laravel's index names too long for
    /// [`create_table_if_missing`](Self::create_table_if_missing).)
    pub fn table(mut self, table: &str) -> Self {
        assert!(is_plain_identifier(table), "SqlStore::table: {table:?} is not a plain SQL identifier");
        let config = Arc::make_mut(&mut self.config);
        config.table = table.to_owned();
        config.sql = Queries::new(config.backend, table);
        self
    }

    /// The offset of the naive timestamps in the table from UTC: Laravel's `app.timezone`. Default UTC.
    pub fn timezone_offset(mut self, offset: FixedOffset) -> Self {
        Arc::make_mut(&mut self.config).offset = offset;
        self
    }

    /// Enables [`find_by_digest`](TokenStore::find_by_digest), for Sanctum tokens issued without the
    /// `{id}|` part (before Sanctum 2.3). Off by default.
    pub fn legacy_tokens(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).legacy_tokens = enabled;
        self
    }

    /// Creates the table, with Sanctum's columns and indexes, if it does not exist yet; an existing table
    /// is left exactly as it is. Returns whether the table was missing.
    ///
    /// Laravel applications create the table with their own migrations; this is for services that start
    /// without one. The statements are [`POSTGRES_MIGRATION`], [`MYSQL_MIGRATION`] and [`SQLITE_MIGRATION`]
    /// with the configured table name.
    pub async fn create_table_if_missing(&self) -> Result<bool, StoreError> {
        let config = &*self.config;
        let name = match config.backend {
            // `to_regclass` resolves the name as an unqualified query would: through the search path.
            Backend::Postgres => queries::quote(Backend::Postgres, &config.table),
            Backend::MySql | Backend::Sqlite => config.table.clone(),
        };
        with_pool!(&self.pool, p => {
            let exists = sqlx::query(&config.sql.table_exists).bind(&name).fetch_optional(p).await.map_err(db_error)?;
            if exists.is_some() {
                return Ok(false);
            }
            // PostgreSQL and SQLite run DDL in transactions: the table appears with its indexes or not at
            // all. MySQL's single CREATE TABLE statement carries its indexes.
            let mut tx = p.begin().await.map_err(db_error)?;
            sqlx::raw_sql(&config.sql.create_table).execute(&mut *tx).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            Ok(true)
        })
    }

    fn naive(&self, t: SystemTime) -> NaiveDateTime {
        time::to_naive(t, self.config.offset, self.config.range)
    }
}

/// The backends compiled in, for error messages.
fn enabled_backends() -> String {
    let enabled = [
        (cfg!(feature = "postgres"), "postgres"),
        (cfg!(feature = "mysql"), "mysql"),
        (cfg!(feature = "sqlite"), "sqlite"),
    ];
    let names: Vec<&str> = enabled.iter().filter(|(on, _)| *on).map(|(_, name)| *name).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).expect("zero offset is valid")
}

fn is_plain_identifier(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && !bytes[0].is_ascii_digit()
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.config.backend)
            .field("table", &self.config.table)
            .field("tokenable_type", &self.config.tokenable_type)
            .field("timezone_offset", &self.config.offset)
            .field("legacy_tokens", &self.config.legacy_tokens)
            .finish()
    }
}

/// Maps a `sqlx` error onto the store's error kinds.
fn db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::timeout(),
        e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => StoreError::corrupt(e),
        e => StoreError::backend(e),
    }
}

/// A `tokenable_id` parameter: integers as integers, other ids as text. PostgreSQL always gets text (the
/// statement converts it to the column's type).
enum UserIdParam {
    Int(i64),
    Text(String),
}

impl UserIdParam {
    fn new(user_id: &UserId, backend: Backend) -> Self {
        match user_id.as_u64().and_then(|n| i64::try_from(n).ok()) {
            Some(n) if backend != Backend::Postgres => UserIdParam::Int(n),
            _ => UserIdParam::Text(user_id.to_text().into_owned()),
        }
    }
}

/// Binds a [`UserIdParam`] to a query of any backend.
macro_rules! bind_user_id {
    ($query:expr, $param:expr) => {
        match $param {
            UserIdParam::Int(n) => $query.bind(n),
            UserIdParam::Text(s) => $query.bind(s),
        }
    };
}

/// A row as read, before interpretation.
struct RawRow {
    tokenable_id: Option<String>,
    name: Option<String>,
    token: Option<String>,
    abilities: Option<String>,
    last_used_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
    created_at: Option<NaiveDateTime>,
    /// The id as text; only read by `find_by_digest`.
    id: Option<String>,
}

impl RawRow {
    fn read<R>(row: &R, with_id: bool) -> Result<Self, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<NaiveDateTime>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(Self {
            tokenable_id: row.try_get(col::TOKENABLE_ID)?,
            name: row.try_get(col::NAME)?,
            token: row.try_get(col::TOKEN)?,
            abilities: row.try_get(col::ABILITIES)?,
            last_used_at: row.try_get(col::LAST_USED_AT)?,
            expires_at: row.try_get(col::EXPIRES_AT)?,
            created_at: row.try_get(col::CREATED_AT)?,
            id: if with_id { row.try_get(col::ID)? } else { None },
        })
    }

    fn into_record(self, id: TokenId, config: &Config) -> Result<TokenRecord, StoreError> {
        let user_id =
            self.tokenable_id.ok_or_else(|| StoreError::corrupt(format!("token {id}: tokenable_id is NULL")))?;
        let digest = self
            .token
            .as_deref()
            .and_then(TokenDigest::from_hex)
            .ok_or_else(|| StoreError::corrupt(format!("token {id}: the token column is not 64 hex characters")))?;
        let abilities = match self.abilities.as_deref() {
            None => Abilities::none(),
            Some(json) => Abilities::from_json(json).ok_or_else(|| {
                StoreError::corrupt(format!("token {id}: the abilities column is not a JSON array of strings"))
            })?,
        };
        let kind = kind_of(&abilities);
        let time = |naive: NaiveDateTime| time::from_naive(naive, config.offset);
        Ok(TokenRecord {
            id,
            user_id: UserId::from(user_id),
            kind,
            name: self.name.unwrap_or_default(),
            abilities,
            digest,
            created_at: self.created_at.map_or(SystemTime::UNIX_EPOCH, time),
            expires_at: self.expires_at.map(time),
            last_used_at: self.last_used_at.map(time),
        })
    }
}

/// The kind a row's abilities denote (see the module docs).
fn kind_of(abilities: &Abilities) -> TokenKind {
    if abilities.contains_exactly(ROTATED_REFRESH_ABILITY) {
        TokenKind::RotatedRefresh
    } else if abilities.contains_exactly(REFRESH_ABILITY) {
        TokenKind::Refresh
    } else {
        TokenKind::Access
    }
}

/// The `abilities` column written for a new record of `kind`.
fn abilities_json(kind: TokenKind, abilities: &Abilities) -> String {
    match kind {
        TokenKind::Access => abilities.to_json(),
        TokenKind::Refresh => REFRESH_ABILITIES_JSON.to_owned(),
        TokenKind::RotatedRefresh => ROTATED_REFRESH_ABILITIES_JSON.to_owned(),
    }
}

impl TokenStore for SqlStore {
    fn find(&self, id: TokenId) -> StoreFuture<Option<Arc<TokenRecord>>> {
        // Ids are BIGINT: anything larger cannot exist (and must not reach the database as a negative).
        let Ok(key) = i64::try_from(id) else { return StoreFuture::ready(Ok(None)) };
        let (pool, config) = (self.pool.clone(), Arc::clone(&self.config));
        StoreFuture::new(async move {
            let raw: Option<RawRow> = with_pool!(&pool, p => {
                let row = sqlx::query(&config.sql.find)
                    .bind(key)
                    .bind(config.tokenable_type.as_str())
                    .fetch_optional(p)
                    .await
                    .map_err(db_error)?;
                row.map(|row| RawRow::read(&row, false)).transpose().map_err(db_error)?
            });
            raw.map(|raw| raw.into_record(id, &config).map(Arc::new)).transpose()
        })
    }

    fn insert(&self, token: NewTokenRecord) -> StoreFuture<TokenId> {
        let (pool, config) = (self.pool.clone(), Arc::clone(&self.config));
        let user_id = UserIdParam::new(&token.user_id, config.backend);
        let created_at = self.naive(token.created_at);
        let expires_at = token.expires_at.map(|t| self.naive(t));
        let abilities = abilities_json(token.kind, &token.abilities);
        let digest = token.digest.to_hex();
        StoreFuture::new(async move {
            macro_rules! insert_query {
                () => {{
                    let query = sqlx::query(&config.sql.insert).bind(config.tokenable_type.as_str());
                    bind_user_id!(query, user_id)
                        .bind(token.name)
                        .bind(digest)
                        .bind(abilities)
                        .bind(expires_at)
                        .bind(created_at)
                        .bind(created_at)
                }};
            }
            let id: i128 = match pool {
                #[cfg(feature = "postgres")]
                Pool::Postgres(ref p) => {
                    use sqlx::Row;
                    let row = insert_query!().fetch_one(p).await.map_err(db_error)?;
                    row.try_get::<i64, _>(0).map_err(db_error)?.into()
                }
                #[cfg(feature = "mysql")]
                Pool::MySql(ref p) => insert_query!().execute(p).await.map_err(db_error)?.last_insert_id().into(),
                #[cfg(feature = "sqlite")]
                Pool::Sqlite(ref p) => insert_query!().execute(p).await.map_err(db_error)?.last_insert_rowid().into(),
            };
            TokenId::try_from(id).map_err(|_| StoreError::corrupt(format!("the database assigned the id {id}")))
        })
    }

    fn revoke(&self, id: TokenId) -> StoreFuture<bool> {
        let Ok(key) = i64::try_from(id) else { return StoreFuture::ready(Ok(false)) };
        let (pool, config) = (self.pool.clone(), Arc::clone(&self.config));
        StoreFuture::new(async move {
            let rows: u64 = with_pool!(&pool, p => sqlx::query(&config.sql.revoke)
                .bind(key)
                .bind(config.tokenable_type.as_str())
                .execute(p)
                .await
                .map_err(db_error)?
                .rows_affected());
            Ok(rows > 0)
        })
    }

    fn revoke_all_for_user(&self, user_id: &UserId) -> StoreFuture<u64> {
        let (pool, config) = (self.pool.clone(), Arc::clone(&self.config));
        let user_id = UserIdParam::new(user_id, config.backend);
        StoreFuture::new(async move {
            let rows: u64 = with_pool!(&pool, p => {
                let query = sqlx::query(&config.sql.revoke_all).bind(config.tokenable_type.as_str());
                bind_user_id!(query, user_id).execute(p).await.map_err(db_error)?.rows_affected()
            });
            Ok(rows)
        })
    }

    fn mark_refresh_rotated(&self, id: TokenId) -> StoreFuture<bool> {
        let Ok(key) = i64::try_from(id) else { return StoreFuture::ready(Ok(false)) };
        let (pool, config) = (self.pool.clone(), Arc::clone(&self.config));
        let now = self.naive(SystemTime::now());
        StoreFuture::new(async move {
            let rows: u64 = with_pool!(&pool, p => sqlx::query(&config.sql.mark_rotated)
                .bind(now)
                .bind(key)
                .bind(config.tokenable_type.as_str())
                .execute(p)
                .await
                .map_err(db_error)?
                .rows_affected());
            Ok(rows == 1)
        })
    }

    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        let (pool, config) = (self.pool.clone(), Arc::clone(&self.config));
        let expired_before = self.naive(expired_before);
        let created_before = created_before.map(|t| self.naive(t));
        StoreFuture::new(async move {
            let rows: u64 = with_pool!(&pool, p => {
                let query = match created_before {
                    None => sqlx::query(&config.sql.prune_expired)
                        .bind(config.tokenable_type.as_str())
                        .bind(expired_before),
                    Some(created_before) => sqlx::query(&config.sql.prune_expired_or_created)
                        .bind(config.tokenable_type.as_str())
                        .bind(expired_before)
                        .bind(created_before),
                };
                query.execute(p).await.map_err(db_error)?.rows_affected()
            });
            Ok(rows)
        })
    }

    /// Sets `last_used_at` and `updated_at` to `at`. The auth layer throttles these calls and makes them
    /// off the request path; see the module docs.
    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        let Ok(key) = i64::try_from(id) else { return StoreFuture::ready(Ok(())) };
        let (pool, config) = (self.pool.clone(), Arc::clone(&self.config));
        let at = self.naive(at);
        StoreFuture::new(async move {
            let _rows: u64 = with_pool!(&pool, p => sqlx::query(&config.sql.touch)
                .bind(at)
                .bind(at)
                .bind(key)
                .bind(config.tokenable_type.as_str())
                .execute(p)
                .await
                .map_err(db_error)?
                .rows_affected());
            Ok(())
        })
    }

    /// Finds a legacy (id-less) token by the unique `token` column. Finds nothing unless
    /// [`SqlStore::legacy_tokens`] is on.
    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<Arc<TokenRecord>>> {
        if !self.config.legacy_tokens {
            return StoreFuture::ready(Ok(None));
        }
        let (pool, config) = (self.pool.clone(), Arc::clone(&self.config));
        let hex = digest.to_hex();
        StoreFuture::new(async move {
            let raw: Option<RawRow> = with_pool!(&pool, p => {
                let row = sqlx::query(&config.sql.find_by_digest)
                    .bind(hex)
                    .bind(config.tokenable_type.as_str())
                    .fetch_optional(p)
                    .await
                    .map_err(db_error)?;
                row.map(|row| RawRow::read(&row, true)).transpose().map_err(db_error)?
            });
            let Some(mut raw) = raw else { return Ok(None) };
            let id = raw
                .id
                .take()
                .and_then(|id| id.parse::<TokenId>().ok())
                .ok_or_else(|| StoreError::corrupt("a legacy token row has no integer id"))?;
            raw.into_record(id, &config).map(|record| Some(Arc::new(record)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_must_be_plain_identifiers() {
        for ok in ["personal_access_tokens", "app_tokens", "_t", "T1"] {
            assert!(is_plain_identifier(ok), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["", "1tokens", "tokens;drop", "a.b", "a b", "\"t\"", "`t`", "tökens", long.as_str()] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn kinds_follow_the_abilities() {
        let kind = |json: &str| kind_of(&Abilities::from_json(json).unwrap());
        assert_eq!(kind(r#"["*"]"#), TokenKind::Access);
        assert_eq!(kind(r#"["issue-access-token"]"#), TokenKind::Refresh);
        assert_eq!(kind(r#"["rotated-refresh-token"]"#), TokenKind::RotatedRefresh);
        assert_eq!(kind(r#"["issue-access-token","rotated-refresh-token"]"#), TokenKind::RotatedRefresh);
        assert_eq!(kind(r#"["posts:read"]"#), TokenKind::Access);
        assert_eq!(abilities_json(TokenKind::Refresh, &Abilities::all()), REFRESH_ABILITIES_JSON);
        assert_eq!(abilities_json(TokenKind::Access, &Abilities::all()), r#"["*"]"#);
    }

    #[test]
    fn migrations_match_sanctum_columns() {
        for ddl in [POSTGRES_MIGRATION, MYSQL_MIGRATION, SQLITE_MIGRATION] {
            for column in [
                "id",
                "tokenable_type",
                "tokenable_id",
                "name",
                "token",
                "abilities",
                "last_used_at",
                "expires_at",
                "created_at",
                "updated_at",
            ] {
                assert!(ddl.contains(&format!("\"{column}\"")) || ddl.contains(&format!("`{column}`")), "{column}");
            }
            assert!(ddl.contains("IF NOT EXISTS"));
            assert!(ddl.contains("personal_access_tokens_token_unique"));
            assert!(ddl.contains("personal_access_tokens_tokenable_type_tokenable_id_index"));
        }
    }
}
