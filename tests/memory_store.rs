//! The store contract and the session race checks, run against `MemoryStore`.

use tower_token_auth::testing::{
    race_exchange_and_logout, race_presentations, rotated_tokens_are_bounded, store_contract,
};
use tower_token_auth::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_meets_the_store_contract() {
    store_contract(MemoryStore::new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_presentations_of_one_refresh_token_have_one_winner_and_leak_nothing() {
    let report = race_presentations(MemoryStore::new(), 2_000, 4).await;
    println!("MemoryStore, 4 simultaneous presentations: {report}");
    assert_eq!(report.leaks, 0, "{report}");
    assert_eq!(report.exchanges, 2_000, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_racing_a_logout_never_outlives_it() {
    let report = race_exchange_and_logout(MemoryStore::new(), 2_000).await;
    println!("MemoryStore, exchange racing logout: {report}");
    assert_eq!(report.leaks, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_refreshes_keep_a_bounded_number_of_records() {
    let store = MemoryStore::new();
    rotated_tokens_are_bounded(store.clone(), 10_000).await;
    // The check revokes the session at the end; count what one session holds just before that.
    let tokens = tower_token_auth::RefreshTokens::new(store.clone());
    let user = tower_token_auth::testing::fresh_user();
    let mut pair = tokens.issue_pair(tower_token_auth::NewPair::new(user.clone())).await.unwrap();
    for _ in 0..10_000 {
        pair = tokens.exchange(&tower_token_auth::testing::bearer(&pair.refresh)).await.unwrap();
    }
    let records = store.records_of(&user);
    println!("MemoryStore: {records} records after 10,000 refreshes of one session");
    assert_eq!(records, 2, "an access and a refresh token; no exchanged token is kept (no reuse interval)");
    assert_eq!(store.len(), 2);
}
