//! [`PollBus`]: invalidations from MySQL/MariaDB or SQLite, which have no push channel, by polling a
//! revocation log that triggers on Sanctum's table write.
//!
//! [`PollBus::install`] creates (idempotently) `tta_cache_revocations (seq, tbl, token_id, at)`, a
//! one-row counter `tta_cache_counter`, and triggers on the table: after a `DELETE`, and after an
//! `UPDATE` that changes `token`, `abilities`, `expires_at`, `name`, `tokenable_id` or `tokenable_type`
//! (never a `last_used_at` write alone), the trigger increments the counter and logs the token id with
//! the new counter value, in the writer's transaction. The counter row's lock is held until commit, so
//! sequence numbers are gap-free and in commit order. Every writer is covered, a Laravel application
//! deleting rows included.
//!
//! The fence *is* the poll: one transaction reads the counter and every log row after the last one
//! seen. Its snapshot is taken after the fence started, so it holds every revocation committed before;
//! a gap between what it read and the counter (log rows cleaned up while this instance was away) empties
//! the cache. A fence costs one query per instance per `fence_every` (100 a second by default; raise
//! `fence_every` and the lease together to poll less).
//!
//! Costs and limits: revoking transactions of every user serialize on the counter row for the rest of
//! their transaction (revocations are rare next to requests); a prune deleting many users' rows can
//! deadlock with a logout on MySQL, which the store retries. Log rows older than an hour are deleted.
//! `TRUNCATE` fires no trigger: it is not seen. Only a primary (a replica's poll proves nothing about the
//! primary's commits). SQLite: every process on the host that opens the file shares the log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bus::{BusFuture, Invalidation, InvalidationBus, InvalidationSink};
use crate::store::StoreError;

const CLEAN_EVERY: Duration = Duration::from_secs(60);
const RETRY_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone)]
enum Pool {
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
}

/// The [`InvalidationBus`] of a [`SqlStore`](crate::SqlStore) on MySQL/MariaDB or SQLite. See the
/// [module docs](self).
#[derive(Clone)]
pub struct PollBus {
    pool: Pool,
    table: Arc<str>,
    /// The last sequence number applied; `None` until the bus has started.
    last: Arc<tokio::sync::Mutex<Option<i64>>>,
    sink: Arc<Mutex<Option<Arc<dyn InvalidationSink>>>>,
}

impl std::fmt::Debug for PollBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollBus").field("table", &self.table).finish_non_exhaustive()
    }
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::backend(e)
}

impl PollBus {
    /// A bus for Sanctum's table `table` (the [`SqlStore::table`](crate::SqlStore::table)) on MySQL or
    /// MariaDB, through its own small pool.
    ///
    /// # Panics
    /// If `table` is not a plain identifier of at most 50 characters.
    #[cfg(feature = "mysql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
    pub fn mysql(url: &str, table: &str) -> Result<Self, StoreError> {
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(url)
            .map_err(backend)?;
        Ok(Self::with(Pool::MySql(pool), table))
    }

    /// The same on SQLite (`sqlite://PATH`).
    ///
    /// # Panics
    /// As `PollBus::mysql` (feature `mysql`).
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(url: &str, table: &str) -> Result<Self, StoreError> {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(url)
            .map_err(backend)?;
        Ok(Self::with(Pool::Sqlite(pool), table))
    }

    fn with(pool: Pool, table: &str) -> Self {
        assert!(
            !table.is_empty()
                && table.len() <= 50
                && table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !table.as_bytes()[0].is_ascii_digit(),
            "PollBus: {table:?} is not a plain SQL identifier of at most 50 characters"
        );
        Self { pool, table: table.into(), last: Arc::default(), sink: Arc::default() }
    }

    /// Creates the log, the counter and the triggers if missing. Idempotent.
    pub async fn install(&self) -> Result<(), StoreError> {
        let t = &*self.table;
        let columns = ["token", "abilities", "expires_at", "name", "tokenable_id", "tokenable_type"];
        let log = |old: &str| {
            format!(
                "UPDATE tta_cache_counter SET seq = seq + 1 WHERE id = 1; \
                 INSERT INTO tta_cache_revocations (seq, tbl, token_id) \
                 SELECT seq, '{t}', {old}.id FROM tta_cache_counter WHERE id = 1;"
            )
        };
        match &self.pool {
            #[cfg(feature = "mysql")]
            Pool::MySql(pool) => {
                let changed = columns.map(|c| format!("NOT (OLD.`{c}` <=> NEW.`{c}`)")).join(" OR ");
                let statements = [
                    "CREATE TABLE IF NOT EXISTS tta_cache_counter (id INT PRIMARY KEY, seq BIGINT NOT NULL)".to_owned(),
                    "INSERT IGNORE INTO tta_cache_counter (id, seq) VALUES (1, 0)".to_owned(),
                    "CREATE TABLE IF NOT EXISTS tta_cache_revocations (seq BIGINT PRIMARY KEY, tbl VARCHAR(64) NOT NULL, \
                     token_id BIGINT NOT NULL, at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, KEY (at))"
                        .to_owned(),
                    format!(
                        "CREATE TRIGGER IF NOT EXISTS `tta_cache_d_{t}` AFTER DELETE ON `{t}` FOR EACH ROW BEGIN {} END",
                        log("OLD")
                    ),
                    format!(
                        "CREATE TRIGGER IF NOT EXISTS `tta_cache_u_{t}` AFTER UPDATE ON `{t}` FOR EACH ROW \
                         BEGIN IF {changed} THEN {} END IF; END",
                        log("OLD")
                    ),
                ];
                for statement in statements {
                    sqlx::raw_sql(&statement).execute(pool).await.map_err(backend)?;
                }
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                let statements = [
                    "CREATE TABLE IF NOT EXISTS tta_cache_counter (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL)"
                        .to_owned(),
                    "INSERT OR IGNORE INTO tta_cache_counter (id, seq) VALUES (1, 0)".to_owned(),
                    "CREATE TABLE IF NOT EXISTS tta_cache_revocations (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, \
                     token_id INTEGER NOT NULL, at INTEGER NOT NULL DEFAULT (CAST(strftime('%s','now') AS INTEGER)))"
                        .to_owned(),
                    format!(
                        "CREATE TRIGGER IF NOT EXISTS \"tta_cache_d_{t}\" AFTER DELETE ON \"{t}\" BEGIN {} END",
                        log("OLD")
                    ),
                    format!(
                        "CREATE TRIGGER IF NOT EXISTS \"tta_cache_u_{t}\" AFTER UPDATE OF {} ON \"{t}\" BEGIN {} END",
                        columns.join(", "),
                        log("OLD")
                    ),
                ];
                for statement in statements {
                    sqlx::raw_sql(&statement).execute(pool).await.map_err(backend)?;
                }
            }
        }
        Ok(())
    }

    /// The counter and the log rows (of every table) after `after`, in one snapshot.
    async fn read(&self, after: i64) -> Result<(i64, Vec<(i64, String, i64)>), StoreError> {
        let rows = "SELECT seq, tbl, token_id FROM tta_cache_revocations WHERE seq > ? AND seq <= ? ORDER BY seq";
        let counter = "SELECT seq FROM tta_cache_counter WHERE id = 1";
        macro_rules! read {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.map_err(backend)?;
                let top: i64 = sqlx::query_scalar(counter).fetch_one(&mut *tx).await.map_err(backend)?;
                let rows: Vec<(i64, String, i64)> =
                    sqlx::query_as(rows).bind(after).bind(top).fetch_all(&mut *tx).await.map_err(backend)?;
                tx.commit().await.map_err(backend)?;
                Ok((top, rows))
            }};
        }
        match &self.pool {
            #[cfg(feature = "mysql")]
            Pool::MySql(pool) => read!(pool),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => read!(pool),
        }
    }

    async fn clean(&self) -> Result<(), StoreError> {
        match &self.pool {
            #[cfg(feature = "mysql")]
            Pool::MySql(pool) => sqlx::query("DELETE FROM tta_cache_revocations WHERE at < NOW() - INTERVAL 1 HOUR")
                .execute(pool)
                .await
                .map(drop),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                sqlx::query("DELETE FROM tta_cache_revocations WHERE at < CAST(strftime('%s','now') AS INTEGER) - 3600")
                    .execute(pool)
                    .await
                    .map(drop)
            }
        }
        .map_err(backend)
    }

    fn current_sink(&self) -> Option<Arc<dyn InvalidationSink>> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl InvalidationBus for PollBus {
    fn run(&self, sink: Arc<dyn InvalidationSink>) -> BusFuture<()> {
        let bus = self.clone();
        Box::pin(async move {
            *bus.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink.clone());
            loop {
                {
                    let mut last = bus.last.lock().await;
                    if last.is_none() {
                        match bus.read(i64::MAX).await {
                            // From here on every revocation has a sequence number after `top`.
                            Ok((top, _)) => {
                                sink.reset();
                                *last = Some(top);
                            }
                            Err(error) => {
                                tracing::warn!(target: "tower_token_auth::cache", %error, "the cache cannot read the revocation log");
                            }
                        }
                    }
                }
                if bus.last.lock().await.is_some() {
                    if let Err(error) = bus.clean().await {
                        tracing::warn!(target: "tower_token_auth::cache", %error, "cleaning the revocation log failed");
                    }
                    tokio::time::sleep(CLEAN_EVERY).await;
                } else {
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        })
    }

    fn fence(&self) -> BusFuture<Result<(), StoreError>> {
        let bus = self.clone();
        Box::pin(async move {
            let Some(sink) = bus.current_sink() else { return Err(StoreError::backend("the bus has not started")) };
            let mut last = bus.last.lock().await;
            let Some(after) = *last else { return Err(StoreError::backend("the bus has not started")) };
            let (top, rows) = bus.read(after).await?;
            if rows.len() as i64 != top - after || rows.iter().zip(after + 1..).any(|((seq, _, _), want)| *seq != want)
            {
                // Log rows this instance never saw are gone: start over.
                sink.reset();
                *last = Some(top);
                return Err(StoreError::backend("the revocation log has a gap; the cache was emptied"));
            }
            let ids: Vec<u64> =
                rows.iter().filter(|(_, table, _)| **table == *bus.table).map(|&(_, _, id)| id as u64).collect();
            if !ids.is_empty() {
                sink.invalidate(Invalidation::Tokens(ids));
            }
            *last = Some(top);
            Ok(())
        })
    }
}
