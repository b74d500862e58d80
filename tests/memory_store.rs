//! The store contract, run against `MemoryStore`.

mod support;

use tower_token_auth::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_meets_the_store_contract() {
    support::contract::store_contract(MemoryStore::new()).await;
}
