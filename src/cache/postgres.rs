//! [`PgBus`]: invalidations from PostgreSQL, by a trigger on Sanctum's table and `LISTEN/NOTIFY`.
//!
//! [`PgBus::install`] creates (idempotently, `CREATE OR REPLACE`) a row trigger
//! `AFTER DELETE OR UPDATE OF token, abilities, expires_at, name, tokenable_id, tokenable_type` that
//! calls `pg_notify('tta_cache', '<table>:<id>')`, and a `TRUNCATE` trigger that notifies
//! `'<table>:*'`. It never fires on `last_used_at` (or `updated_at`) writes alone: `NOTIFY` takes a
//! global lock at commit, harmless for revocations, ruinous on every request's touch. Every writer is
//! covered, this crate or a Laravel application deleting rows.
//!
//! Each instance `LISTEN`s on its own connection. Its fence commits `pg_notify('tta_cache',
//! 'fence:<instance>:<n>')` from a second connection and waits for that notification on the listening
//! one: PostgreSQL delivers notifications of different transactions in commit order, so every
//! invalidation committed before the fence started has been received (and applied, by the same task)
//! first. When the listening connection drops, the cache is emptied and the bus reconnects every
//! 100 ms until it succeeds; [`PgBus::listener_pid`] names the backend (for `pg_terminate_backend`).
//!
//! Limits: only a primary (a fence through a replica proves nothing about the primary's commits);
//! a pooler in transaction mode (PgBouncer) cannot carry `LISTEN`: point the bus at the server.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::watch;

use super::bus::{BusFuture, Invalidation, InvalidationBus, InvalidationSink};
use crate::store::StoreError;

/// The notification channel.
pub const CHANNEL: &str = "tta_cache";

const RECONNECT_EVERY: Duration = Duration::from_millis(100);

/// The [`InvalidationBus`] of a [`SqlStore`](crate::SqlStore) on PostgreSQL. See the [module docs](self).
#[derive(Clone)]
pub struct PgBus {
    url: Arc<str>,
    table: Arc<str>,
    fences: PgPool,
    instance: u64,
    next_fence: Arc<AtomicU64>,
    seen: watch::Sender<u64>,
    pid: Arc<AtomicU32>,
}

impl std::fmt::Debug for PgBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBus").field("table", &self.table).finish_non_exhaustive()
    }
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::backend(e)
}

impl PgBus {
    /// A bus for Sanctum's table `table` (the [`SqlStore::table`](crate::SqlStore::table), by default
    /// `personal_access_tokens`) on the PostgreSQL server at `url`. Connects lazily.
    ///
    /// # Panics
    /// If `table` is not a plain identifier (ASCII letters, digits, `_`, at most 63).
    pub fn new(url: &str, table: &str) -> Result<Self, StoreError> {
        assert!(
            !table.is_empty()
                && table.len() <= 63
                && table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !table.as_bytes()[0].is_ascii_digit(),
            "PgBus: {table:?} is not a plain SQL identifier"
        );
        let fences = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(url)
            .map_err(backend)?;
        let mut instance = [0u8; 8];
        getrandom::fill(&mut instance).map_err(StoreError::random)?;
        Ok(Self {
            url: url.into(),
            table: table.into(),
            fences,
            instance: u64::from_le_bytes(instance),
            next_fence: Arc::default(),
            seen: watch::channel(0).0,
            pid: Arc::default(),
        })
    }

    /// Creates (or replaces) the trigger function and the triggers on the table. Idempotent; safe to
    /// run from every instance at start-up (they take an advisory lock in turn).
    pub async fn install(&self) -> Result<(), StoreError> {
        let t = &*self.table;
        let mut tx = self.fences.begin().await.map_err(backend)?;
        let statements = [
            "SELECT pg_advisory_xact_lock(hashtext('tta_cache_install'))".to_owned(),
            format!(
                "CREATE OR REPLACE FUNCTION tta_cache_invalidate() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN \
                   IF TG_OP = 'TRUNCATE' THEN \
                     PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME || ':*'); \
                   ELSE \
                     PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME || ':' || OLD.id); \
                   END IF; \
                   RETURN NULL; \
                 END $$"
            ),
            format!(
                "CREATE OR REPLACE TRIGGER tta_cache_invalidate_rows \
                 AFTER DELETE OR UPDATE OF token, abilities, expires_at, name, tokenable_id, tokenable_type \
                 ON \"{t}\" FOR EACH ROW EXECUTE FUNCTION tta_cache_invalidate()"
            ),
            format!(
                "CREATE OR REPLACE TRIGGER tta_cache_invalidate_truncate AFTER TRUNCATE ON \"{t}\" \
                 FOR EACH STATEMENT EXECUTE FUNCTION tta_cache_invalidate()"
            ),
        ];
        for statement in statements {
            sqlx::raw_sql(&statement).execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// The backend process id of the listening connection (0 while there is none).
    pub fn listener_pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    fn deliver(&self, sink: &dyn InvalidationSink, payload: &str) {
        if let Some(fence) = payload.strip_prefix("fence:") {
            let mine = format!("{}:", self.instance);
            if let Some(n) = fence.strip_prefix(&mine).and_then(|n| n.parse::<u64>().ok()) {
                self.seen.send_if_modified(|seen| {
                    let newer = n > *seen;
                    *seen = (*seen).max(n);
                    newer
                });
            }
            return;
        }
        let Some((table, id)) = payload.rsplit_once(':') else { return };
        if table != &*self.table {
            return;
        }
        match id.parse() {
            Ok(id) => sink.invalidate(Invalidation::Tokens(vec![id])),
            Err(_) => sink.invalidate(Invalidation::Everything),
        }
    }

    async fn listen(&self, sink: &Arc<dyn InvalidationSink>) -> Result<(), StoreError> {
        let mut listener = PgListener::connect(&self.url).await.map_err(backend)?;
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await.map_err(backend)?;
        let pid =
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&mut listener).await.map_err(backend)?;
        self.pid.store(pid as u32, Ordering::SeqCst);
        // Commits before this point may have been missed: a new epoch, then fences may succeed.
        sink.reset();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => self.deliver(&**sink, notification.payload()),
                Ok(None) => return Err(StoreError::backend("the listening connection was lost")),
                Err(e) => return Err(backend(e)),
            }
        }
    }
}

impl InvalidationBus for PgBus {
    fn run(&self, sink: Arc<dyn InvalidationSink>) -> BusFuture<()> {
        let bus = self.clone();
        Box::pin(async move {
            loop {
                let error = bus.listen(&sink).await.expect_err("listen returns only when the connection is lost");
                bus.pid.store(0, Ordering::SeqCst);
                sink.reset();
                tracing::warn!(target: "tower_token_auth::cache", %error, "the cache's PostgreSQL listener is down; reconnecting");
                tokio::time::sleep(RECONNECT_EVERY).await;
            }
        })
    }

    fn fence(&self) -> BusFuture<Result<(), StoreError>> {
        let bus = self.clone();
        Box::pin(async move {
            if bus.listener_pid() == 0 {
                return Err(StoreError::backend("no listening connection"));
            }
            let mut seen = bus.seen.subscribe();
            let n = bus.next_fence.fetch_add(1, Ordering::SeqCst) + 1;
            let payload = format!("fence:{}:{n}", bus.instance);
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&bus.fences)
                .await
                .map_err(backend)?;
            seen.wait_for(|&seen| seen >= n).await.map_err(|_| StoreError::backend("the bus stopped"))?;
            Ok(())
        })
    }
}
