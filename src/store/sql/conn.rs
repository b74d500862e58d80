//! One connection of any backend behind one small interface, and the transaction wrapper every
//! multi-statement operation runs in (isolation level, `BEGIN IMMEDIATE`, retries on deadlock).
//!
//! The operations themselves ([`super::ops`]) are written once against [`Conn`]; only the few lines
//! here that bind parameters and decode rows are compiled per backend.

use std::time::Duration;

use chrono::NaiveDateTime;

use super::rows::Row;
use super::Backend;
use crate::store::StoreError;

/// A bound parameter.
#[derive(Clone, Copy, Debug)]
pub(super) enum Param<'a> {
    Int(i64),
    Text(&'a str),
    Time(Option<NaiveDateTime>),
}

/// A connection (plain, or inside a transaction) of one of the backends.
pub(super) enum Conn<'c> {
    #[cfg(feature = "postgres")]
    Pg(&'c mut sqlx::PgConnection),
    #[cfg(feature = "mysql")]
    My(&'c mut sqlx::MySqlConnection),
    #[cfg(feature = "sqlite")]
    Lite(&'c mut sqlx::SqliteConnection),
    #[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
    #[allow(dead_code)]
    None(std::marker::PhantomData<&'c ()>, std::convert::Infallible),
}

/// `sqlx::query($sql)` with every parameter of `$params` bound in order.
macro_rules! bound {
    ($sql:expr, $params:expr) => {{
        let mut query = sqlx::query($sql);
        for param in $params {
            query = match *param {
                Param::Int(n) => query.bind(n),
                Param::Text(s) => query.bind(s),
                Param::Time(t) => query.bind(t),
            };
        }
        query
    }};
}

/// Runs `$body` with `$c` bound to the backend's connection.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            #[cfg(feature = "postgres")]
            Conn::Pg($c) => $body,
            #[cfg(feature = "mysql")]
            Conn::My($c) => $body,
            #[cfg(feature = "sqlite")]
            Conn::Lite($c) => $body,
            #[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
            Conn::None(_, never) => match *never {},
        }
    };
}

impl Conn<'_> {
    /// Runs a statement; returns the rows it affected (or returned, for a `SELECT`).
    pub(super) async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, TxError> {
        Ok(on_conn!(self, c => bound!(sql, params).execute(&mut **c).await?.rows_affected()))
    }

    /// Runs a statement that names a varying number of ids, without caching it as a prepared statement.
    pub(super) async fn execute_once(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, TxError> {
        Ok(on_conn!(self, c => bound!(sql, params).persistent(false).execute(&mut **c).await?.rows_affected()))
    }

    /// The rows of a query returning the columns of [`super::queries::col`].
    pub(super) async fn rows(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, TxError> {
        on_conn!(self, c => {
            let rows = bound!(sql, params).fetch_all(&mut **c).await?;
            rows.iter().map(|row| Row::read(row).map_err(TxError::Store)).collect()
        })
    }

    /// [`rows`](Self::rows) of a query that names a varying number of ids, without caching it as a
    /// prepared statement.
    pub(super) async fn rows_once(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, TxError> {
        on_conn!(self, c => {
            let rows = bound!(sql, params).persistent(false).fetch_all(&mut **c).await?;
            rows.iter().map(|row| Row::read(row).map_err(TxError::Store)).collect()
        })
    }

    /// The first column of the one row of a `SELECT COUNT(*)`.
    pub(super) async fn count(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, TxError> {
        use sqlx::Row as _;
        on_conn!(self, c => {
            let row = bound!(sql, params).fetch_one(&mut **c).await?;
            Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
        })
    }

    /// The one row of such a query, if any.
    pub(super) async fn row(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, TxError> {
        on_conn!(self, c => {
            let row = bound!(sql, params).fetch_optional(&mut **c).await?;
            row.map(|row| Row::read(&row).map_err(TxError::Store)).transpose()
        })
    }

    /// The first column, as text, of the first row of a query, if any.
    #[cfg(test)]
    pub(super) async fn text(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<String>, TxError> {
        use sqlx::Row as _;
        on_conn!(self, c => {
            let row = bound!(sql, params).fetch_optional(&mut **c).await?;
            Ok(row.map(|row| row.try_get::<Option<String>, _>(0)).transpose()?.flatten())
        })
    }

    /// Runs an `INSERT` and returns the id the database assigned.
    pub(super) async fn insert(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, TxError> {
        let id: i128 = match self {
            #[cfg(feature = "postgres")]
            Conn::Pg(c) => {
                use sqlx::Row as _;
                let row = bound!(sql, params).fetch_one(&mut **c).await?;
                row.try_get::<i64, _>(0)?.into()
            }
            #[cfg(feature = "mysql")]
            Conn::My(c) => bound!(sql, params).execute(&mut **c).await?.last_insert_id().into(),
            #[cfg(feature = "sqlite")]
            Conn::Lite(c) => bound!(sql, params).execute(&mut **c).await?.last_insert_rowid().into(),
            #[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
            Conn::None(_, never) => match *never {},
        };
        u64::try_from(id).map_err(|_| TxError::Store(StoreError::corrupt(format!("the database assigned the id {id}"))))
    }
}

/// An error inside a transaction: from the database (perhaps worth a retry), or decided by the
/// operation itself.
#[derive(Debug)]
pub(super) enum TxError {
    Db(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    pub(super) fn into_store(self) -> StoreError {
        match self {
            TxError::Db(e) => db_error(e),
            TxError::Store(e) => e,
        }
    }
}

/// Maps a `sqlx` error onto the store's error kinds.
pub(super) fn db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::timeout(),
        e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => StoreError::corrupt(e),
        e => StoreError::backend(e),
    }
}

/// How many times a transaction is tried in all.
pub(super) const ATTEMPTS: u32 = 8;

/// Whether `e` means "the transaction was rolled back for a conflict; the same transaction again may
/// succeed": a deadlock or serialization failure on PostgreSQL (`40P01`, `40001`), a deadlock or lock
/// wait timeout on MySQL/MariaDB (1213, 1205), `SQLITE_BUSY`/`SQLITE_LOCKED` on SQLite.
pub(super) fn is_retryable(backend: Backend, e: &TxError) -> bool {
    let TxError::Db(sqlx::Error::Database(db)) = e else { return false };
    match backend {
        Backend::Postgres => matches!(db.code().as_deref(), Some("40P01" | "40001")),
        Backend::MySql => {
            #[cfg(feature = "mysql")]
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return matches!(my.number(), 1213 | 1205);
            }
            matches!(db.code().as_deref(), Some("40001"))
        }
        Backend::Sqlite => {
            let primary = db.code().and_then(|code| code.parse::<i64>().ok()).map(|code| code & 0xff);
            matches!(primary, Some(5 | 6)) || db.message().contains("database is locked")
        }
    }
}

/// A short, growing, jittered pause before attempt `attempt + 1`, so that two transactions that
/// deadlocked do not collide again in lockstep.
pub(super) async fn back_off(attempt: u32) {
    let mut random = [0u8; 1];
    let jitter = getrandom::fill(&mut random).map_or(0, |()| u64::from(random[0] % 8));
    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 2 + jitter)).await;
}

/// Runs `$body` (an expression producing a `Future<Output = Result<T, TxError>>`, with `$conn: &mut
/// Conn` in scope) in one transaction on `$pool`, committing on `Ok` and rolling back on `Err`; the whole
/// transaction is tried again (up to [`ATTEMPTS`] times) when the database rolled it back for a conflict.
///
/// - PostgreSQL: `BEGIN ISOLATION LEVEL READ COMMITTED`, whatever the server's default, because the
///   operations rely on each statement seeing what committed before it (see the module docs).
/// - MySQL/MariaDB: `SET TRANSACTION ISOLATION LEVEL READ COMMITTED` (the next transaction only) on the
///   same connection, then `BEGIN`: no gap locks, so no gap-lock deadlocks between logins.
/// - SQLite: `BEGIN IMMEDIATE`: the write lock is taken at the start, so writers queue (busy timeout)
///   instead of failing to upgrade a read lock.
macro_rules! in_transaction {
    ($pool:expr, $backend:expr, |$conn:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = match *$pool {
                #[cfg(feature = "postgres")]
                Pool::Postgres(ref pool) => match pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await {
                    Ok(mut tx) => {
                        let result = {
                            let $conn = &mut Conn::Pg(&mut *tx);
                            $body.await
                        };
                        $crate::store::sql::conn::finish(tx, result).await
                    }
                    Err(e) => Err(TxError::Db(e)),
                },
                #[cfg(feature = "mysql")]
                Pool::MySql(ref pool) => match pool.acquire().await {
                    Ok(mut connection) => {
                        // Applies to the next transaction on this connection only. A string without
                        // parameters goes over the text protocol, as this statement must.
                        let set = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED";
                        match sqlx::Executor::execute(&mut *connection, set).await {
                            Ok(_) => match sqlx::Connection::begin(&mut *connection).await {
                                Ok(mut tx) => {
                                    let result = {
                                        let $conn = &mut Conn::My(&mut *tx);
                                        $body.await
                                    };
                                    $crate::store::sql::conn::finish(tx, result).await
                                }
                                Err(e) => Err(TxError::Db(e)),
                            },
                            Err(e) => Err(TxError::Db(e)),
                        }
                    }
                    Err(e) => Err(TxError::Db(e)),
                },
                #[cfg(feature = "sqlite")]
                Pool::Sqlite(ref pool) => match pool.begin_with("BEGIN IMMEDIATE").await {
                    Ok(mut tx) => {
                        let result = {
                            let $conn = &mut Conn::Lite(&mut *tx);
                            $body.await
                        };
                        $crate::store::sql::conn::finish(tx, result).await
                    }
                    Err(e) => Err(TxError::Db(e)),
                },
            };
            match outcome {
                Err(e)
                    if attempt < $crate::store::sql::conn::ATTEMPTS
                        && $crate::store::sql::conn::is_retryable($backend, &e) =>
                {
                    tracing::debug!(attempt, "token store transaction rolled back for a conflict; retrying");
                    $crate::store::sql::conn::back_off(attempt).await;
                }
                outcome => break outcome.map_err(TxError::into_store),
            }
        }
    }};
}

/// Runs `$body` with `$conn: &mut Conn` on a connection from `$pool`, outside any transaction (one
/// statement, atomic by itself).
macro_rules! on_pool {
    ($pool:expr, |$conn:ident| $body:expr) => {{
        let outcome: Result<_, TxError> = match *$pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(ref pool) => match pool.acquire().await {
                Ok(mut connection) => {
                    let $conn = &mut Conn::Pg(&mut *connection);
                    $body.await
                }
                Err(e) => Err(TxError::Db(e)),
            },
            #[cfg(feature = "mysql")]
            Pool::MySql(ref pool) => match pool.acquire().await {
                Ok(mut connection) => {
                    let $conn = &mut Conn::My(&mut *connection);
                    $body.await
                }
                Err(e) => Err(TxError::Db(e)),
            },
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(ref pool) => match pool.acquire().await {
                Ok(mut connection) => {
                    let $conn = &mut Conn::Lite(&mut *connection);
                    $body.await
                }
                Err(e) => Err(TxError::Db(e)),
            },
        };
        outcome.map_err(TxError::into_store)
    }};
}

pub(super) use {in_transaction, on_pool};

/// Commits on `Ok`, rolls back on `Err` (a failed rollback is left to `sqlx`, which rolls back or
/// closes the connection when the transaction is dropped).
pub(super) async fn finish<DB: sqlx::Database, T>(
    tx: sqlx::Transaction<'_, DB>,
    result: Result<T, TxError>,
) -> Result<T, TxError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::Pool;

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn postgres_transactions_run_read_committed_whatever_the_default() {
        let Ok(url) = std::env::var("TOWER_TOKEN_AUTH_POSTGRES_URL") else {
            return println!("skipped: TOWER_TOKEN_AUTH_POSTGRES_URL is not set");
        };
        use std::str::FromStr;
        let options = sqlx::postgres::PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("default_transaction_isolation", "serializable")]);
        let pool = Pool::Postgres(sqlx::PgPool::connect_with(options).await.unwrap());
        let outside = on_pool!(&pool, |conn| conn.text("SHOW transaction_isolation", &[])).unwrap();
        assert_eq!(outside.as_deref(), Some("serializable"), "the server default this test sets");
        let inside = in_transaction!(&pool, Backend::Postgres, |conn| conn.text("SHOW transaction_isolation", &[]));
        assert_eq!(inside.unwrap().as_deref(), Some("read committed"));
    }

    #[cfg(feature = "mysql")]
    #[tokio::test]
    async fn mysql_transactions_run_read_committed_and_the_next_one_does_not_inherit_it() {
        let Ok(url) = std::env::var("TOWER_TOKEN_AUTH_MYSQL_URL") else {
            return println!("skipped: TOWER_TOKEN_AUTH_MYSQL_URL is not set");
        };
        // One connection, so the application's transaction below runs on the one the store used.
        let pool = sqlx::mysql::MySqlPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        // INNODB_TRX lists a transaction once it touched an InnoDB table, from a cache refreshed every 0.1 s.
        let level = async |conn: &mut Conn<'_>| {
            conn.execute("SELECT COUNT(*) FROM mysql.innodb_table_stats", &[]).await?;
            conn.execute("DO SLEEP(0.3)", &[]).await?;
            let sql = "SELECT trx_isolation_level FROM information_schema.innodb_trx \
                       WHERE trx_mysql_thread_id = CONNECTION_ID()";
            conn.text(sql, &[]).await
        };
        let store_pool = Pool::MySql(pool.clone());
        let inside = in_transaction!(&store_pool, Backend::MySql, |conn| level(conn));
        assert_eq!(inside.unwrap().as_deref(), Some("READ COMMITTED"));
        // A transaction of the application's own on the same pool keeps the server's default.
        let mut tx = pool.begin().await.unwrap();
        let theirs = level(&mut Conn::My(&mut tx)).await.unwrap();
        tx.rollback().await.unwrap();
        let default: Option<String> =
            sqlx::query_scalar("SELECT REPLACE(@@tx_isolation, '-', ' ')").fetch_one(&pool).await.unwrap();
        assert_eq!(theirs, default);
    }

    /// Two transactions locking two rows in opposite orders: the database breaks the deadlock by failing
    /// one of them, with an error `is_retryable` must recognise; an ordinary error it must not.
    async fn a_deadlock_is_retryable<DB: sqlx::Database>(pool: sqlx::Pool<DB>, backend: Backend)
    where
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        use sqlx::Executor as _;
        let table = format!("tta_deadlock_{}", std::process::id());
        let lock = |id: u8| format!("SELECT id FROM {table} WHERE id = {id} FOR UPDATE");
        let mut setup = pool.acquire().await.unwrap();
        setup.execute(format!("CREATE TABLE {table} (id int primary key)").as_str()).await.unwrap();
        setup.execute(format!("INSERT INTO {table} VALUES (1), (2)").as_str()).await.unwrap();
        let (mut a, mut b) = (pool.begin().await.unwrap(), pool.begin().await.unwrap());
        a.execute(lock(1).as_str()).await.unwrap();
        b.execute(lock(2).as_str()).await.unwrap();
        let (second_a, second_b) = (lock(2), lock(1));
        let (ra, rb) = tokio::join!(a.execute(second_a.as_str()), b.execute(second_b.as_str()));
        drop((a, b));
        let other = setup.execute("SELECT * FROM no_such_table_tta").await.err().expect("no such table");
        setup.execute(format!("DROP TABLE {table}").as_str()).await.unwrap();
        let deadlock = match (ra, rb) {
            (Err(e), _) | (_, Err(e)) => e,
            _ => panic!("no deadlock"),
        };
        assert!(is_retryable(backend, &TxError::Db(deadlock)));
        assert!(!is_retryable(backend, &TxError::Db(other)));
    }

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn a_postgres_deadlock_is_retryable() {
        let Ok(url) = std::env::var("TOWER_TOKEN_AUTH_POSTGRES_URL") else {
            return println!("skipped: TOWER_TOKEN_AUTH_POSTGRES_URL is not set");
        };
        a_deadlock_is_retryable(sqlx::PgPool::connect(&url).await.unwrap(), Backend::Postgres).await;
    }

    #[cfg(feature = "mysql")]
    #[tokio::test]
    async fn a_mysql_deadlock_is_retryable() {
        let Ok(url) = std::env::var("TOWER_TOKEN_AUTH_MYSQL_URL") else {
            return println!("skipped: TOWER_TOKEN_AUTH_MYSQL_URL is not set");
        };
        a_deadlock_is_retryable(sqlx::MySqlPool::connect(&url).await.unwrap(), Backend::MySql).await;
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn sqlite_busy_is_retryable() {
        use std::str::FromStr;
        let path = std::env::temp_dir().join(format!("tta-busy-{}.sqlite", std::process::id()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url).unwrap().busy_timeout(Duration::ZERO);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let holder = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let e = pool.begin_with("BEGIN IMMEDIATE").await.unwrap_err();
        drop(holder);
        pool.close().await;
        let _ = std::fs::remove_file(&path);
        assert!(is_retryable(Backend::Sqlite, &TxError::Db(e)));
    }
}
