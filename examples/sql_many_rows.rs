//! A user with 100,000 tokens a Laravel application wrote (long-lived API keys, CI tokens: Sanctum's
//! `createToken` has no cap), and what login, exchange, listing and logout cost that user through
//! `SqlStore`, on PostgreSQL, MySQL/MariaDB and SQLite. The figures are in `BENCHMARKS.md`.
//!
//! Run it with:
//!
//! ```text
//! TOWER_TOKEN_AUTH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//! TOWER_TOKEN_AUTH_MYSQL_URL=mysql://root@127.0.0.1:3306/test \
//! cargo run --release --features postgres,mysql,sqlite --example sql_many_rows
//! ```
//!
//! SQLite always runs (on a temporary file); a database whose URL is not set is skipped.
//! `TOWER_TOKEN_AUTH_MANY_ROWS` changes the number of rows (default 100,000). Each database gets a
//! table of its own, dropped at the end. The rows are inserted as Laravel inserts them (`["*"]`,
//! SHA-256 digests, `Y-m-d H:i:s` timestamps), in multi-row `INSERT`s; then each operation runs
//! `ROUNDS` times for that user and the median and the slowest are printed. The table is analyzed after
//! the insert, as autovacuum would. The store's default
//! timeout, which a slower operation would hit and answer `503`, is 5 s.

use std::time::{Duration, Instant, SystemTime};

use http::header::AUTHORIZATION;
use http::HeaderMap;
use tower_token_auth::refresh::{NewPair, RefreshTokens, TokenPair};
use tower_token_auth::session::Sessions;
use tower_token_auth::store::sql::SqlStore;
use tower_token_auth::token::TokenDigest;
use tower_token_auth::{TokenStore, TokenStoreExt, UserId};

const ROUNDS: usize = 20;
const USER: u64 = 7;
const BATCH: usize = 500;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let rows: usize = std::env::var("TOWER_TOKEN_AUTH_MANY_ROWS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let sqlite = std::env::temp_dir().join(format!("tta-many-rows-{}.sqlite", std::process::id()));
    let mut databases = Vec::new();
    for (name, var) in [("PostgreSQL", "TOWER_TOKEN_AUTH_POSTGRES_URL"), ("MariaDB", "TOWER_TOKEN_AUTH_MYSQL_URL")] {
        match std::env::var(var) {
            Ok(url) => databases.push((name, url)),
            Err(_) => println!("{name}: skipped ({var} is not set)"),
        }
    }
    databases.push(("SQLite", format!("sqlite://{}", sqlite.display())));
    println!("{rows} Laravel-written rows for user {USER}; {ROUNDS} rounds of each operation\n");
    println!(
        "| database | insert rows | login | exchange | list sessions | log out (one session) | log out everywhere |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, url) in databases {
        let result = measure(name, &url, rows).await;
        if name == "SQLite" {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", sqlite.display()));
            }
        }
        result?;
    }
    Ok(())
}

/// Median and slowest of `times`.
fn summary(times: &mut [Duration]) -> String {
    times.sort_unstable();
    format!("{:.1?} (max {:.1?})", times[times.len() / 2], times[times.len() - 1])
}

fn bearer(pair: &TokenPair) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {}", pair.refresh.plain_text.expose());
    headers.insert(AUTHORIZATION, value.parse().expect("a valid header"));
    headers
}

async fn measure(name: &str, url: &str, rows: usize) -> Result<(), Error> {
    let table = format!("tta_many_rows_{}", std::process::id());
    let store = SqlStore::connect(url).await?.table(&table);
    store.create_table_if_missing().await?;
    let outcome = run(&store, url, &table, rows).await;
    drop_table(url, &table).await?;
    let line = outcome?;
    println!("| {name} | {line} |");
    Ok(())
}

async fn run(store: &SqlStore, url: &str, table: &str, rows: usize) -> Result<String, Error> {
    let started = Instant::now();
    insert_laravel_rows(url, table, rows).await?;
    let inserted = started.elapsed();
    let user = UserId::from(USER);
    let tokens = RefreshTokens::new(store.clone());

    let (mut logins, mut exchanges, mut lists, mut logouts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut pairs = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let pair = tokens.issue_pair(NewPair::new(user.clone()).name("phone")).await?;
        logins.push(started.elapsed());
        pairs.push(pair);
    }
    for pair in &mut pairs {
        let started = Instant::now();
        *pair = tokens.exchange(&bearer(pair)).await?;
        exchanges.push(started.elapsed());
    }
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let listed = store.list_sessions(&user).await?;
        lists.push(started.elapsed());
        assert!(listed.len() >= ROUNDS, "the logins are listed");
    }
    for pair in &pairs {
        let started = Instant::now();
        let revoked = store.revoke_sessions(&user, Sessions::Only(pair.session_id())).await?;
        logouts.push(started.elapsed());
        assert_eq!(revoked, 2, "both rows of the session");
    }
    let started = Instant::now();
    let everything = store.revoke_all_for_user(&user).await?;
    let everywhere = started.elapsed();
    assert_eq!(everything as usize, rows, "the Laravel rows are all still there, and now gone");
    Ok(format!(
        "{inserted:.1?} | {} | {} | {} | {} | {everywhere:.1?}",
        summary(&mut logins),
        summary(&mut exchanges),
        summary(&mut lists),
        summary(&mut logouts)
    ))
}

/// Multi-row `INSERT`s of rows as Sanctum's `createToken` writes them, in one transaction.
async fn insert_laravel_rows(url: &str, table: &str, rows: usize) -> Result<(), Error> {
    let now = chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).format("%Y-%m-%d %H:%M:%S").to_string();
    let (quote, ty) =
        if url.starts_with("mysql") { ('`', "'App\\\\Models\\\\User'") } else { ('"', "'App\\Models\\User'") };
    let mut statements = Vec::new();
    for start in (0..rows).step_by(BATCH) {
        let values: Vec<String> = (start..rows.min(start + BATCH))
            .map(|i| {
                let digest = TokenDigest::of(format!("laravel-token-{i}").as_bytes()).to_hex();
                format!("({ty}, {USER}, 'ci-{i}', '{digest}', '[\"*\"]', '{now}', '{now}')")
            })
            .collect();
        statements.push(format!(
            "INSERT INTO {quote}{table}{quote} (tokenable_type, tokenable_id, name, token, abilities, created_at, updated_at) VALUES {}",
            values.join(", ")
        ));
    }
    with_pool(url, statements).await?;
    // Fresh statistics, as autovacuum (PostgreSQL) and InnoDB's automatic statistics gather after a bulk
    // insert; without them PostgreSQL's first plans may scan the user's rows instead of one primary key.
    let analyze = if url.starts_with("mysql") {
        format!("ANALYZE TABLE {quote}{table}{quote}")
    } else {
        format!("ANALYZE {quote}{table}{quote}")
    };
    with_pool(url, vec![analyze]).await
}

async fn drop_table(url: &str, table: &str) -> Result<(), Error> {
    let quote = if url.starts_with("mysql") { '`' } else { '"' };
    with_pool(url, vec![format!("DROP TABLE {quote}{table}{quote}")]).await
}

/// Runs `statements` in one transaction on a pool of the URL's backend.
async fn with_pool(url: &str, statements: Vec<String>) -> Result<(), Error> {
    macro_rules! run_all {
        ($pool:expr) => {{
            let pool = $pool;
            let mut tx = pool.begin().await?;
            for sql in &statements {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            pool.close().await;
        }};
    }
    if url.starts_with("postgres") {
        run_all!(sqlx::PgPool::connect(url).await?);
    } else if url.starts_with("mysql") {
        run_all!(sqlx::MySqlPool::connect(url).await?);
    } else {
        run_all!(sqlx::SqlitePool::connect(url).await?);
    }
    Ok(())
}
