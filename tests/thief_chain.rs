//! The thief-chain attack on every store, for real: a thief exchanges a copy of a device's refresh
//! token and then its own chain of 1, 8, 40 and 300 exchanges as fast as the store allows; the device
//! then presents the token it holds. Every round must be detected as reuse (0 evasions) and leave no
//! token of the thief's chain working. Before refresh tokens carried their session's family key, every
//! chain longer than the 8 remembered exchanges evaded detection on every store.
//!
//! Redis, Redis Cluster, PostgreSQL and MariaDB read their URLs from `TOWER_TOKEN_AUTH_REDIS_URL`,
//! `TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL`, `TOWER_TOKEN_AUTH_POSTGRES_URL` and `TOWER_TOKEN_AUTH_MYSQL_URL`
//! and print `skipped: ...` when one is unset. SQLite runs on a file of its own.

use std::time::Instant;

use std::time::SystemTime;

use tower_token_auth::session::{
    ExchangeOutcome, NewSession, RefreshExchange, SessionSummary, SessionTokens, Sessions,
};
use tower_token_auth::testing::{thief_chains, ThiefChainReport};
use tower_token_auth::{MemoryStore, StoreFuture, TokenId, TokenRecord, TokenStore, UserId};

/// Chains and rounds per chain: the long chains cost 300 exchanges a round (about 1 s on SQL).
const CHAINS: [(usize, usize); 4] = [(1, 100), (8, 100), (40, 25), (300, 5)];

async fn attack<St: TokenStore + Clone>(name: &str, store: St) -> Vec<ThiefChainReport> {
    let mut reports = Vec::new();
    for (chain, rounds) in CHAINS {
        let started = Instant::now();
        let report = thief_chains(store.clone(), chain, rounds).await;
        println!("{name}: {report} ({:.1?})", started.elapsed());
        assert_eq!(report.evasions, 0, "{name}: {report}");
        assert_eq!(report.survivors, 0, "{name}: {report}");
        reports.push(report);
    }
    reports
}

fn url_from_env(var: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("skipped: {var} is not set");
    }
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_catches_every_thief_chain() {
    let reports = attack("MemoryStore", MemoryStore::new()).await;
    assert_eq!(reports.len(), CHAINS.len());
}

/// A deliberately broken store: it drops the family digest of every session and every exchange, which
/// is what the crate did before family keys (and what a custom store that ignores the field would do).
#[derive(Clone)]
struct ForgetsFamilies(MemoryStore);

impl TokenStore for ForgetsFamilies {
    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
        self.0.find(id)
    }
    fn insert(&self, mut session: NewSession) -> StoreFuture<SessionTokens> {
        session.family = None;
        self.0.insert(session)
    }
    fn exchange_refresh(&self, mut exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
        exchange.family = None;
        self.0.exchange_refresh(exchange)
    }
    fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
        self.0.list_sessions(user_id)
    }
    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
        self.0.revoke_sessions(user_id, sessions)
    }
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        self.0.prune_expired(expired_before, created_before)
    }
}

/// The negative control: the same attack against a store without family keys must be caught evading,
/// or the check above proves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_catches_a_store_that_forgets_families() {
    for (chain, rounds) in CHAINS {
        let report = thief_chains(ForgetsFamilies(MemoryStore::new()), chain, rounds).await;
        println!("a store without family keys: {report}");
        assert_eq!(report.evasions, rounds, "every round evades on a store without family keys: {report}");
        assert_eq!(report.survivors, rounds, "and the thief's chain lives on: {report}");
    }
}

#[cfg(feature = "redis")]
mod redis_stores {
    use super::*;
    use tower_token_auth::RedisStore;

    fn prefix(test: &str) -> String {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
        format!("tta-test:{test}:{}-{nanos}:", std::process::id())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_store_catches_every_thief_chain() {
        let Some(url) = url_from_env("TOWER_TOKEN_AUTH_REDIS_URL") else { return };
        let store = RedisStore::connect(&url).await.unwrap().key_prefix(prefix("thief"));
        attack("RedisStore", store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_cluster_store_catches_every_thief_chain() {
        let Some(seeds) = url_from_env("TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL") else { return };
        let store = RedisStore::connect(&seeds).await.unwrap().key_prefix(prefix("thief"));
        assert!(store.is_cluster());
        attack("RedisStore on the cluster", store).await;
    }
}

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod sql_stores {
    use super::*;
    use tower_token_auth::SqlStore;

    fn table() -> String {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
        format!("pat_thief_{}_{}", std::process::id(), nanos % 1_000_000_000)
    }

    /// The attack on a table of its own, dropped afterwards (also when the attack fails).
    async fn on_table(name: &str, url: &str) {
        let table = table();
        let store = SqlStore::connect(url).await.unwrap().table(&table);
        assert!(store.create_table_if_missing().await.unwrap());
        let outcome = tokio::spawn({
            let (name, store) = (name.to_owned(), store.clone());
            async move { attack(&name, store).await }
        })
        .await;
        drop_table(url, &table).await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    async fn drop_table(url: &str, table: &str) {
        let sql = format!("DROP TABLE {table}");
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
            return;
        }
        #[cfg(feature = "mysql")]
        if url.starts_with("mysql") || url.starts_with("mariadb") {
            let pool = sqlx::MySqlPool::connect(url).await.unwrap();
            sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
            return;
        }
        // SQLite: the file is removed with its directory.
        let _ = (url, sql);
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_catches_every_thief_chain() {
        let Some(url) = url_from_env("TOWER_TOKEN_AUTH_POSTGRES_URL") else { return };
        on_table("PostgreSQL", &url).await;
    }

    #[cfg(feature = "mysql")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mariadb_catches_every_thief_chain() {
        let Some(url) = url_from_env("TOWER_TOKEN_AUTH_MYSQL_URL") else { return };
        on_table("MariaDB", &url).await;
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_catches_every_thief_chain() {
        let dir = std::env::temp_dir().join(format!("tta-thief-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("tokens.db").display());
        on_table("SQLite", &url).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
