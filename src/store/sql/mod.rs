//! [`SqlStore`]: tokens and sessions in Laravel Sanctum's own `personal_access_tokens` table, on
//! PostgreSQL, MySQL/MariaDB or SQLite (features `postgres`, `mysql`, `sqlite`; built on `sqlx` 0.8).
//!
//! The store reads and writes Sanctum's table as Laravel does, without changing its schema, so a Rust
//! service and a Laravel application can share one database: tokens issued by either are accepted by
//! both, and "log out everywhere" on either side logs out everywhere.
//!
//! ```
//! use std::time::Duration;
//! use http::{header::AUTHORIZATION, HeaderMap};
//! use tower_token_auth::refresh::{NewPair, RefreshTokens};
//! use tower_token_auth::store::sql::SqlStore;
//! use tower_token_auth::{NewToken, TokenStore, TokenStoreExt};
//!
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Or "postgres://app@localhost/app", "mysql://app@localhost/app", "sqlite://tokens.db".
//! let store = SqlStore::connect("sqlite::memory:")
//!     .await?
//!     .tokenable_type("App\\Models\\User"); // the default; a morph-map alias such as "user" also works
//!
//! // Only for a new database: Laravel's migration normally creates the table.
//! store.create_table_if_missing().await?;
//!
//! let issued = store.issue(NewToken::access(42u64).name("cli").expires_in(Duration::from_secs(3600))).await?;
//! assert!(issued.plain_text.expose().starts_with(&format!("{}|", issued.record.id)));
//!
//! // A login: an access and a refresh token, one session; two rows however often it refreshes.
//! let tokens = RefreshTokens::new(store.clone());
//! let pair = tokens.issue_pair(NewPair::new(42u64).name("phone")).await?;
//! let mut headers = HeaderMap::new();
//! headers.insert(AUTHORIZATION, format!("Bearer {}", pair.refresh.plain_text.expose()).parse()?);
//! let refreshed = tokens.exchange(&headers).await?;
//! assert_eq!(refreshed.session_id(), pair.session_id());
//! assert_eq!(store.list_sessions(&42u64.into()).await?.len(), 2); // "cli" and "phone"
//!
//! // Log out everywhere: Laravel's own DELETE of every row of user 42, in one transaction.
//! assert_eq!(store.revoke_all_for_user(&42u64.into()).await?, 3);
//! assert!(store.find(refreshed.access.record.id).await?.is_none());
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```
//!
//! # Connecting
//!
//! [`SqlStore::connect`] picks the backend from the URL scheme:
//!
//! | URL | database |
//! |---|---|
//! | `postgres://user:pass@host:5432/db`, `postgresql://…` | PostgreSQL |
//! | `mysql://user:pass@host:3306/db`, `mariadb://…` | MySQL or MariaDB |
//! | `sqlite://tokens.db`, `sqlite:tokens.db` | the file `tokens.db`, relative to the working directory, **created if missing** |
//! | `sqlite:///var/lib/app/tokens.db` | an absolute path, created if missing |
//! | `sqlite::memory:` | a private in-memory database (one connection; gone when the store is dropped) |
//! | `sqlite://tokens.db?mode=rw` / `?mode=rwc` / `?mode=ro` / `?mode=memory` | as SQLite's `mode`: existing file only / create / read-only / in memory |
//!
//! A SQLite URL without `mode=` creates its file, as the forms above read (the directory must exist).
//! To tune a pool (size, timeouts, TLS, MySQL session time zone, SQLite journal mode) build it yourself
//! and use `SqlStore::from_pg_pool`, `SqlStore::from_mysql_pool` or `SqlStore::from_sqlite_pool` (each
//! with its backend's feature). This crate enables no TLS backend of `sqlx`; add one of `sqlx`'s `tls-*`
//! features in your own `Cargo.toml` to connect with TLS.
//!
//! A pool that cannot hand out a connection in time is reported as
//! [`StoreErrorKind::Timeout`](crate::store::StoreErrorKind::Timeout), other database failures as
//! [`StoreErrorKind::Backend`](crate::store::StoreErrorKind::Backend), and rows this crate cannot read (a
//! `token` that is not 64 hex characters, `abilities` that are not a JSON array of strings, malformed
//! `tta:` entries) as [`StoreErrorKind::Corrupt`](crate::store::StoreErrorKind::Corrupt). The auth
//! layer answers all of them with `503`, never with `401`.
//!
//! # Sessions on Sanctum's table
//!
//! The table is never altered. A session is at most **two rows**: a refresh row and an access row. The
//! refresh row's id is the session id; a session of one token (issued on its own, or written by
//! Laravel) has that token's id. An exchange **updates both rows in place**, so a device holds two rows
//! however often it refreshes (10,000 refreshes: 2 rows). Everything else lives in the `abilities` JSON
//! array, in entries with the prefix `tta:` (which [`Abilities::reserved`](crate::Abilities::reserved)
//! refuses in abilities the crate issues):
//!
//! | row | `abilities` | example |
//! |---|---|---|
//! | access token, a session of its own (also **every row Laravel's `createToken` writes**, whatever its abilities) | the abilities, verbatim | `["posts:read"]`, `["issue-access-token","posts:read"]` |
//! | access token of a session with a refresh token | the abilities verbatim, then `"tta:session:<refresh row id>"` | `["posts:read","tta:session:41"]` |
//! | refresh token (the session's row) | `"issue-access-token"`; one `"tta:grant:<ability>"` per ability its exchanges grant (`"tta:grant:*"` for all; `"tta:grant-none"` for none); `"tta:family:<64 hex>"`, the digest of the session's family key; `"tta:since:<unix s>"`, the login; `"tta:access:<id>[:<unix ms>]"`, the session's access row and its expiry; then the refresh tokens it exchanged within the reuse interval, `"tta:rotated:<64 hex>:<unix ms>"`, oldest first, at most `keep_rotated` (capped at 128 here) | `["issue-access-token","tta:grant:posts:read","tta:family:9f…e1","tta:since:1767225600","tta:access:42:1767229200000"]` |
//! | exchanged refresh token written by version 0.1 of this crate | contains `"rotated-refresh-token"`: never authenticates, never exchanges; removed by logout and prune | `["rotated-refresh-token"]` |
//!
//! **A row's kind is never inferred from an ability a Laravel application can set.** A row is a refresh
//! row only with a `tta:family:` entry, and then it must be complete (grants, a well-formed family, no
//! unknown `tta:` entry); `"issue-access-token"` is a literal ability like any other. Every other row
//! is an access token with exactly its abilities (`["*"]` included). A row with `tta:` entries that form
//! neither (say `["tta:admin"]`, or a refresh row without grants) is **unreadable**: `find` reports it
//! [`Corrupt`](crate::store::StoreErrorKind::Corrupt) (`503`), an exchange of it is invalid, the listing
//! skips it, and revocation deletes it. The JSON is parsed, never string matched (PHP's `\/` and
//! `\uXXXX` escapes read as what they escape). Reserved abilities are refused when a token is issued,
//! and [`SqlStore`]'s `insert` refuses them again
//! ([`StoreErrorKind::InvalidInput`](crate::store::StoreErrorKind::InvalidInput)).
//!
//! **No exchange grants more than the presented row holds.** An exchange needs a refresh row this crate
//! wrote *and* a presented secret that carries a family key: the row's `token` is then SHA-256 of a
//! domain tag and that secret (see the `refresh` module), which no Laravel-generated token hashes to. A Laravel
//! application that forges a complete refresh row on one of its own tokens (it knows that token's
//! secret, not a preimage of the tagged digest) can at most get it revoked as reuse: it makes its own
//! token unusable, nothing more. The access token an exchange mints has exactly the refresh row's
//! `tta:grant` entries; a refresh row without them is unreadable, never "everything". Refresh rows
//! written before family keys (with `tta:grant` but no `tta:family`) are unreadable too: their users
//! sign in again.
//!
//! **What a Laravel application sees.** Sanctum's guard finds a row by id and compares
//! `hash('sha256', $secret)` with its `token`: it authenticates the access rows this crate writes (byte
//! compatible both ways) and **never a refresh row**, whose `token` is a digest Sanctum cannot reproduce.
//! `tokenCan($ability)` ("the list contains `*` or exactly `$ability`") on an access row answers exactly
//! as the session's abilities do (the `tta:session` link is one more string nobody checks).
//!
//! **What Laravel's own actions do**, replayed with Laravel's SQL in `tests/sql_store.rs`:
//!
//! - deleting a session's access row (`currentAccessToken()->delete()`, the usual "log out this device")
//!   **ends the session**: the next exchange finds the access row its refresh row names gone *before*
//!   that row's recorded expiry, deletes the refresh row and answers invalid. An access row missing
//!   *after* its expiry was pruned: the exchange inserts a new one and the session goes on;
//! - `tokens()->delete()` deletes every row of the user, as [`Sessions::All`] does;
//! - `sanctum:prune-expired` deletes expired access rows (the session lives on, see above) and sessions
//!   whose refresh token expired, whole. With `sanctum.expiration` it also deletes rows by `created_at`:
//!   both rows of a session carry the time of its last exchange there (the login is in `tta:since`), so
//!   an idle session goes whole and a live one stays;
//! - deleting only a session's refresh row leaves its access row authenticating until it expires (the
//!   layer does not look up a second row per request); delete both rows, or log out through this store;
//! - `createToken` rows are sessions of one token: listed, but **not counted** by the session limit and
//!   **never evicted** by a login (a Laravel app's API keys do not disappear because someone logged in on
//!   a phone). An access token this store issues on its own (`NewToken::access`) is the same kind of row
//!   and is treated the same; the limit counts the sessions that have a refresh token. [`Sessions::All`] and [`Sessions::AllExcept`] do delete them, like `tokens()->delete()`.
//!
//! # Atomicity and cost
//!
//! Every operation that reads and then writes runs as **one transaction**, and touches **only the rows
//! it is about**, by primary key where it can, so its cost does not grow with the rows a Laravel
//! application wrote for the user. Locks are taken in id order (a session's refresh row before its
//! access row, which is always newer), so two transactions never lock in opposite orders; a transaction
//! that waited on a lock reads what the one it waited for committed (`FOR UPDATE` under `READ COMMITTED`
//! returns the row's newest version, and a later statement takes a new snapshot).
//!
//! | operation | statements, in one transaction |
//! |---|---|
//! | [`find`](TokenStore::find) | `SELECT … WHERE id = ? AND tokenable_type = ?` (one statement, no transaction) |
//! | [`insert`](TokenStore::insert) | (PostgreSQL: `pg_advisory_xact_lock` on the user) · lock the user's refresh rows (`abilities LIKE '%"tta:family:%'`, on the `(tokenable_type, tokenable_id)` index, in id order) · `DELETE` by id the oldest sessions the [`SessionLimit`](crate::session::SessionLimit) evicts (at most 64 per login; refresh row and its access row) · `INSERT` the refresh row · `INSERT` the access row with its `tta:session` link · `UPDATE` the refresh row's `abilities` with its `tta:access` link |
//! | [`exchange_refresh`](TokenStore::exchange_refresh) | lock the presented row by id · [`decide`](crate::session::RefreshExchange::decide) · Rotate: lock the access row its `tta:access` names (by id), `UPDATE` it in place (`token`, `abilities`, `expires_at`, `created_at` = now, `last_used_at` = `NULL`), or `INSERT` one if it was pruned after expiring; `UPDATE` the refresh row (`token`, `expires_at`, `abilities`, `created_at` = `updated_at` = now) · Reuse: `DELETE` the session's two rows by id (or, with `RevokeAllSessions`, all the user's) · access row deleted before it expired: `DELETE` the refresh row · Invalid: nothing |
//! | [`revoke_sessions`](TokenStore::revoke_sessions) | [`Sessions::Only`]: lock the session's row and the access row it names, by id, and `DELETE` them. [`Sessions::All`]: lock all the user's rows (`SELECT id … ORDER BY id FOR UPDATE`), count the retired ones, then `DELETE … WHERE tokenable_type = ? AND tokenable_id = ?` (Laravel's `$user->tokens()->delete()`). [`Sessions::AllExcept`]: lock all the user's rows, read them again, `DELETE … WHERE id IN (…)` those of the other sessions |
//! | [`list_sessions`](TokenStore::list_sessions) | the user's newest 1,000 rows that begin a session (`abilities` not `LIKE '%"tta:session:%'`), then the access rows their refresh rows name, by id (no transaction) |
//! | [`prune_expired`](TokenStore::prune_expired) | `DELETE … WHERE tokenable_type = ? AND (expires_at < ? [OR created_at < ?])` (one statement, retried like the transactions) |
//! | [`touch_last_used`](TokenStore::touch_last_used) | `UPDATE … SET last_used_at = ?, updated_at = ? WHERE id = ? AND tokenable_type = ? AND (created_at IS NULL OR created_at <= ?)` |
//! | [`find_by_digest`](TokenStore::find_by_digest) | `SELECT … WHERE token = ? AND tokenable_type = ?`, only with [`SqlStore::legacy_tokens`] |
//!
//! So an exchange and a logout of the same session queue on the session's refresh row: if the exchange
//! goes first, the logout then reads the refresh row's new `tta:access` link and deletes the access row
//! the exchange wrote (even one it inserted); if the logout goes first, the exchange finds no row and is
//! `Invalid`. A logout everywhere locks every row of the user in id order, so it waits for the exchange
//! holding the refresh row, and its `DELETE`, a statement of its own, sees what that exchange inserted.
//! Two presentations of one refresh token queue on the refresh row: the first rotates, the second reads
//! the rotated digest under the lock and revokes the session as reuse.
//!
//! A login's cost: the refresh rows it locks and reads are bounded by the session limit, but finding them
//! is a scan of the user's index range with the `LIKE` filter evaluated by the database (about 40-250 ms
//! for 100,000 rows of one user; no row a Laravel app wrote is locked or sent). `list_sessions` returns
//! at most the 1,000 newest sessions (by row id, that is by login), and skips rows it cannot read,
//! logging each at `warn` with its id and counting it in `tower_token_auth_unreadable_rows_skipped_total`
//! (feature `metrics`). Figures for a user with 100,000 Laravel-written rows are in `BENCHMARKS.md`.
//!
//! - **PostgreSQL**: `BEGIN ISOLATION LEVEL READ COMMITTED`, whatever the server default. Logins of one
//!   user are serialized by a transaction-scoped advisory lock on (table, `tokenable_type`, user), so
//!   the session limit holds even for simultaneous first logins of a user who has no row to lock.
//! - **MySQL/MariaDB**: `SET TRANSACTION ISOLATION LEVEL READ COMMITTED` before `BEGIN` on the same
//!   connection (no gap locks, so logins do not deadlock on gaps). Logins of a user who already has a
//!   session of this crate queue on its refresh rows; simultaneous logins of a user with none are not
//!   serialized, so they can exceed the session limit by as many logins as raced, until the next login
//!   evicts.
//! - **SQLite**: `BEGIN IMMEDIATE`: writers take the database's write lock up front and queue (within
//!   the busy timeout, 5 s by default) instead of failing to upgrade. Everything is serialized.
//! - A transaction the database rolls back for a conflict (PostgreSQL `40P01`/`40001`, MySQL 1213/1205,
//!   SQLite `SQLITE_BUSY`/`SQLITE_LOCKED`) is run again from the start, up to 8 times in all, with a
//!   short jittered pause. Any other error is a [`StoreError`] and nothing is committed.
//!
//! **Laravel writing at the same time.** Laravel's own `DELETE … WHERE tokenable_id = ?` takes no lock
//! first. On PostgreSQL, if it runs while an exchange is inserting an access row (only when that row
//! had been pruned; normally the exchange updates rows in place, which Laravel's `DELETE` waits for and
//! then deletes), the inserted row survives it until it expires, and its session's next exchange then
//! finds no refresh row. Log out through this store where that matters.
//!
//! # Reading and writing columns
//!
//! **`tokenable_type`** must be the value Laravel writes for your user model: the class name
//! (`App\Models\User`, the default here) or, with `Relation::enforceMorphMap`, its alias. Rows of other
//! types are invisible to the store: `find` returns `None` for them, as Sanctum's guard rejects a token
//! of another provider, and `prune_expired` leaves them alone (Laravel's `sanctum:prune-expired` prunes
//! every type). Integer user ids are written to `tokenable_id` as numbers; string ids (Laravel's
//! `uuidMorphs`/`ulidMorphs`) work too.
//!
//! **Timestamps** are naive `Y-m-d H:i:s` values at second precision, in UTC unless
//! [`SqlStore::timezone_offset`] says otherwise; it must match Laravel's `app.timezone` (a fixed offset:
//! zones with daylight saving time cannot be matched, which is one more reason to keep Laravel's default
//! UTC). On MySQL, `sqlx` sets the session `time_zone` to `+00:00`; if Laravel's MySQL connection uses
//! another session time zone (its `timezone` option, or the server's default when unset), give `sqlx`
//! the same one through `MySqlConnectOptions::timezone` and `SqlStore::from_mysql_pool`. MySQL's
//! `TIMESTAMP` ends at 2038-01-19 03:14:07: later expiry times are stored as that instant, so such
//! tokens expire early rather than failing to insert. A `NULL` `created_at` reads as the Unix epoch (so a
//! maximum token age rejects the token). Values no timestamp type expects read safely, never as "no
//! expiry": PostgreSQL's `infinity` and years after 9999 as 9999-12-31 23:59:59, `-infinity` and years
//! before 1 as 0001-01-01; MySQL's zero date (`0000-00-00 00:00:00`) as 1970-01-01 00:00:01, long past,
//! as Laravel's Carbon reads it. A value that cannot be decoded at all (say, text in a SQLite datetime
//! column) makes the token [`Corrupt`](crate::store::StoreErrorKind::Corrupt) to read, while
//! revocation, which needs only the row's id and session link, still deletes it. A session's creation
//! time is its refresh row's `tta:since` (the login); both its rows' `created_at` is its last exchange
//! (or the login), so that pruning by age takes an idle session whole and leaves a live one alone.
//!
//! **`last_used_at`** is written by [`touch_last_used`](TokenStore::touch_last_used), which also sets
//! `updated_at`, as Sanctum does on every request. The auth layer calls it only when last-used tracking
//! is switched on, at most once per token per interval, and off the request path. A touch older than the
//! row's `created_at` is dropped: the access token it was for has since been replaced in place.
//!
//! **Pruning** follows `sanctum:prune-expired`: rows whose `expires_at` has passed, and with
//! `created_before` rows created before it. A session whose access row is pruned after expiring lives on
//! in its refresh row (the next exchange inserts a new access row); a session goes with its last row.
//! With `created_before` (Sanctum's global `expiration`), both rows of a session carry its last exchange
//! in `created_at`, so the global expiration bounds how long a session may stay **idle**, and a session
//! goes whole, never half.
//!
//! **Legacy tokens.** Sanctum before 2.3 issued tokens without the `{id}|` part, found by hashing the
//! whole token. [`SqlStore::legacy_tokens`]`(true)` enables [`find_by_digest`](TokenStore::find_by_digest)
//! for them (a lookup on the unique `token` index); it is off by default.
//!
//! # Migrations
//!
//! [`POSTGRES_MIGRATION`], [`MYSQL_MIGRATION`] and [`SQLITE_MIGRATION`] hold the `CREATE TABLE` statements
//! (also shipped as `migrations/{postgres,mysql,sqlite}/20191214000001_create_personal_access_tokens_table.sql`
//! for migration tools) matching Sanctum's migration. [`SqlStore::create_table_if_missing`] runs the one
//! for the backend, only when the table does not exist.

#![cfg_attr(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(unused, unreachable_code))]

mod conn;
mod ops;
mod queries;
mod rows;
mod time;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::NaiveDateTime;

/// The offset type of [`SqlStore::timezone_offset`], re-exported from `chrono` so that no direct
/// dependency on it is needed: `FixedOffset::east_opt(3600)` is UTC+1.
pub use chrono::FixedOffset;

use self::conn::{db_error, in_transaction, on_pool, Conn, Param, TxError};
use self::queries::Queries;
use self::time::TimeRange;
use super::{counted_revocation, StoreError, StoreFuture, TokenStore};
use crate::session::{ExchangeOutcome, NewSession, RefreshExchange, SessionSummary, SessionTokens, Sessions};
use crate::token::{TokenDigest, TokenId, TokenRecord, UserId};

/// Sanctum's table name, the default of [`SqlStore::table`].
pub const DEFAULT_TABLE: &str = "personal_access_tokens";

/// Laravel's default user model, the default of [`SqlStore::tokenable_type`].
pub const DEFAULT_TOKENABLE_TYPE: &str = "App\\Models\\User";

/// `CREATE TABLE` for PostgreSQL, as Sanctum's migration creates the table (`IF NOT EXISTS`).
pub const POSTGRES_MIGRATION: &str =
    include_str!("../../../migrations/postgres/20191214000001_create_personal_access_tokens_table.sql");

/// `CREATE TABLE` for MySQL and MariaDB, as Sanctum's migration creates the table (`IF NOT EXISTS`).
pub const MYSQL_MIGRATION: &str =
    include_str!("../../../migrations/mysql/20191214000001_create_personal_access_tokens_table.sql");

/// `CREATE TABLE` for SQLite, as Sanctum's migration creates the table (`IF NOT EXISTS`).
pub const SQLITE_MIGRATION: &str =
    include_str!("../../../migrations/sqlite/20191214000001_create_personal_access_tokens_table.sql");

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

impl Backend {
    /// The store's name in metrics and logs ([`TokenStore::backend_name`]).
    fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
            Backend::Sqlite => "sqlite",
        }
    }
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

impl Config {
    fn naive(&self, t: SystemTime) -> NaiveDateTime {
        time::to_naive(t, self.offset, self.range)
    }
}

/// A [`TokenStore`] on Laravel Sanctum's `personal_access_tokens` table, in PostgreSQL, MySQL/MariaDB
/// or SQLite. See the [module docs](self) for what it reads and writes, and how each operation is
/// atomic.
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
    /// `postgresql://`, `mysql://`, `mariadb://`, `sqlite://` or `sqlite:` (see the URL table in the
    /// [module docs](self#connecting)). A SQLite URL without a `mode=` parameter creates its file if it
    /// is missing; `sqlite::memory:` is a private in-memory database.
    ///
    /// One connection is opened at once, so a wrong URL or password fails here. A scheme whose backend
    /// feature is not enabled is an error. The error never repeats the URL (it may hold a password).
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
                let mut options = sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(db_error)?;
                let (in_memory, mode_given) = sqlite_url_mode(url);
                if !mode_given {
                    // `sqlite://tokens.db` reads as "the database in tokens.db": create it, as
                    // `?mode=rwc` would. An explicit `mode=` is SQLite's to interpret.
                    options = options.create_if_missing(true);
                }
                let mut pool = sqlx::sqlite::SqlitePoolOptions::new();
                if in_memory {
                    // An in-memory database lives as long as a connection to it: keep exactly one.
                    pool = pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
                }
                let pool = pool.connect_with(options).await.map_err(db_error)?;
                Ok(Self::from_sqlite_pool(pool))
            }
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
    /// `TIMESTAMP` columns to read the same on both sides. The store's transactions set their own
    /// isolation level (`READ COMMITTED`), for themselves only.
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    pub fn from_mysql_pool(pool: sqlx::MySqlPool) -> Self {
        Self::from_pool(Pool::MySql(pool))
    }

    /// A store on an existing SQLite pool. For a pool of several connections to one file, WAL mode
    /// (`SqliteConnectOptions::journal_mode`) lets lookups proceed while a transaction commits.
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
    /// morph-map alias. It is always a bound parameter, so any string is safe.
    pub fn tokenable_type(mut self, tokenable_type: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).tokenable_type = tokenable_type.into();
        self
    }

    /// The table name (default `personal_access_tokens`), e.g. with Laravel's table prefix.
    ///
    /// # Panics
    ///
    /// If `table` is not a plain identifier: 1 to 63 ASCII letters, digits and `_`, not starting with a
    /// digit. The name is the one piece of SQL text that cannot be a bound parameter, so anything else is
    /// refused rather than quoted. It is configuration written by the programmer, checked once at
    /// start-up, so a wrong one is a bug to fix, not an error to handle; hence a panic, not a `Result`.
    /// (On MySQL, names longer than 29 characters make Laravel's index names too long for
    /// [`create_table_if_missing`](Self::create_table_if_missing).)
    pub fn table(mut self, table: &str) -> Self {
        assert!(is_plain_identifier(table), "SqlStore::table: {table:?} is not a plain SQL identifier");
        let config = Arc::make_mut(&mut self.config);
        config.table = table.to_owned();
        config.sql = Queries::new(config.backend, table);
        self
    }

    /// The offset of the naive timestamps in the table from UTC: Laravel's `app.timezone`. Default UTC.
    ///
    /// ```no_run
    /// use tower_token_auth::store::sql::{FixedOffset, SqlStore};
    /// # async fn f() -> Result<(), tower_token_auth::StoreError> {
    /// let utc_plus_one = FixedOffset::east_opt(3600).expect("within a day");
    /// let store = SqlStore::connect("sqlite://tokens.db").await?.timezone_offset(utc_plus_one);
    /// # let _ = store; Ok(()) }
    /// ```
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

    fn parts(&self) -> (Pool, Arc<Config>) {
        (self.pool.clone(), Arc::clone(&self.config))
    }
}

/// Whether a SQLite URL names an in-memory database, and whether it has a `mode=` parameter.
#[cfg(any(feature = "sqlite", test))]
fn sqlite_url_mode(url: &str) -> (bool, bool) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mode = query.split('&').find_map(|pair| pair.strip_prefix("mode="));
    (path.ends_with(":memory:") || mode == Some("memory"), mode.is_some())
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

    fn param(&self) -> Param<'_> {
        match self {
            UserIdParam::Int(n) => Param::Int(*n),
            UserIdParam::Text(s) => Param::Text(s),
        }
    }
}

/// Refuses what must never reach the table, whoever built the session: no token at all, or a reserved
/// ability (one that would make an access row read back as a refresh token, or forge bookkeeping).
fn validate(session: &NewSession) -> Result<(), StoreError> {
    if session.access.is_none() && session.refresh.is_none() {
        return Err(StoreError::invalid_input("a session needs an access or a refresh token"));
    }
    if session.refresh.is_some() && session.family.is_none() {
        // The family entry is what marks a refresh row as this crate's: without it, the row would read
        // as an access token.
        return Err(StoreError::invalid_input("a refresh token needs its session's family digest"));
    }
    match session.abilities.reserved() {
        Some(reserved) => Err(crate::token::InvalidToken::ReservedAbility(reserved.to_owned()).into()),
        None => Ok(()),
    }
}

impl TokenStore for SqlStore {
    fn backend_name(&self) -> &'static str {
        self.config.backend.name()
    }

    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
        // Ids are BIGINT: anything larger cannot exist (and must not reach the database as a negative).
        let Ok(key) = i64::try_from(id) else { return StoreFuture::ready(Ok(None)) };
        let (pool, config) = self.parts();
        StoreFuture::new(
            async move { on_pool!(&pool, |conn| ops::find(conn, &config, &config.sql.find, Param::Int(key))) },
        )
    }

    /// One transaction; see the [module docs](self#atomicity). Reserved abilities are refused with
    /// [`StoreErrorKind::InvalidInput`](crate::store::StoreErrorKind::InvalidInput) before anything is
    /// sent, even in a session built by hand.
    fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
        if let Err(e) = validate(&session) {
            return StoreFuture::ready(Err(e));
        }
        let (pool, config) = self.parts();
        StoreFuture::new(
            async move { in_transaction!(&pool, config.backend, |conn| ops::insert(conn, &config, &session)) },
        )
    }

    /// One transaction; see the [module docs](self#atomicity).
    fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
        let (pool, config) = self.parts();
        StoreFuture::new(async move {
            in_transaction!(&pool, config.backend, |conn| ops::exchange(conn, &config, &exchange))
        })
    }

    fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
        let (pool, config) = self.parts();
        let user_id = user_id.clone();
        StoreFuture::new(async move { on_pool!(&pool, |conn| ops::list(conn, &config, &user_id)) })
    }

    /// One transaction; see the [module docs](self#atomicity).
    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
        let (pool, config) = self.parts();
        let user_id = user_id.clone();
        let revoke = StoreFuture::new(async move {
            in_transaction!(&pool, config.backend, |conn| ops::revoke(conn, &config, &user_id, sessions))
        });
        counted_revocation(self.backend_name(), sessions, revoke)
    }

    /// One `DELETE` (retried, like the transactions, if it deadlocks with one of them).
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        let (pool, config) = self.parts();
        let expired_before = config.naive(expired_before);
        let created_before = created_before.map(|t| config.naive(t));
        StoreFuture::new(async move {
            in_transaction!(&pool, config.backend, |conn| async {
                let ty = Param::Text(&config.tokenable_type);
                let expired = Param::Time(Some(expired_before));
                match created_before {
                    None => conn.execute(&config.sql.prune_expired, &[ty, expired]).await,
                    Some(created) => {
                        let params = [ty, expired, Param::Time(Some(created))];
                        conn.execute(&config.sql.prune_expired_or_created, &params).await
                    }
                }
            })
        })
    }

    /// Sets `last_used_at` and `updated_at` to `at`, unless the row was created after `at`. The auth
    /// layer throttles these calls and makes them off the request path; see the module docs.
    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        let Ok(key) = i64::try_from(id) else { return StoreFuture::ready(Ok(())) };
        let (pool, config) = self.parts();
        let at = Param::Time(Some(config.naive(at)));
        StoreFuture::new(async move {
            on_pool!(&pool, |conn| async {
                let params = [at, at, Param::Int(key), Param::Text(&config.tokenable_type), at];
                conn.execute(&config.sql.touch, &params).await.map(drop)
            })
        })
    }

    /// Finds a legacy (id-less) token by the unique `token` column. Finds nothing unless
    /// [`SqlStore::legacy_tokens`] is on.
    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<TokenRecord>> {
        if !self.config.legacy_tokens {
            return StoreFuture::ready(Ok(None));
        }
        let (pool, config) = self.parts();
        let hex = digest.to_hex();
        StoreFuture::new(async move {
            on_pool!(&pool, |conn| ops::find(conn, &config, &config.sql.find_by_digest, Param::Text(&hex)))
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
    fn sqlite_urls_without_a_mode_are_files_to_create() {
        assert_eq!(sqlite_url_mode("sqlite://tokens.db"), (false, false));
        assert_eq!(sqlite_url_mode("sqlite:///var/lib/tokens.db"), (false, false));
        assert_eq!(sqlite_url_mode("sqlite://tokens.db?mode=ro"), (false, true));
        assert_eq!(sqlite_url_mode("sqlite://tokens.db?cache=shared&mode=rw"), (false, true));
        assert_eq!(sqlite_url_mode("sqlite::memory:"), (true, false));
        assert_eq!(sqlite_url_mode("sqlite://?mode=memory"), (true, true));
    }

    #[test]
    fn reserved_abilities_and_empty_sessions_never_reach_the_table() {
        use crate::session::{NewSecret, SessionLimit};
        let secret = NewSecret { digest: TokenDigest::of(b"s"), expires_at: None };
        let session = |abilities: &[&str], access, refresh| NewSession {
            user_id: UserId::from(5u64),
            name: "x".into(),
            abilities: abilities.iter().copied().collect(),
            created_at: SystemTime::now(),
            access,
            refresh,
            family: None,
            limit: SessionLimit::default(),
        };
        for reserved in ["issue-access-token", "rotated-refresh-token", "tta:session:1", "tta:grant:*"] {
            let err = validate(&session(&[reserved], Some(secret), None)).unwrap_err();
            assert_eq!(err.kind(), crate::StoreErrorKind::InvalidInput, "{reserved}");
        }
        assert!(validate(&session(&["posts:read"], None, None)).is_err());
        assert!(
            validate(&session(&["posts:read"], Some(secret), Some(secret))).is_err(),
            "a refresh token needs a family"
        );
        let family = NewSession {
            family: Some(TokenDigest::of(b"family")),
            ..session(&["posts:read"], Some(secret), Some(secret))
        };
        assert!(validate(&family).is_ok());
        assert!(validate(&session(&["posts:read"], Some(secret), None)).is_ok());
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
