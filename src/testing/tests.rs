//! Unit tests of the contract runner.

use super::*;

#[test]
fn the_module_docs_list_every_case() {
    let source = include_str!("mod.rs");
    let cases = contract_cases::<crate::MemoryStore>();
    for case in &cases {
        let row = format!(
            "//! | `{}` | {} |",
            case.name,
            case.promise.replace("Arc<dyn TokenStore>", "`Arc<dyn TokenStore>`")
        );
        assert!(source.contains(&row) || source.contains(&format!("//! | `{}` |", case.name)), "{row}");
    }
    assert_eq!(source.matches("\n//! | `").count(), cases.len(), "the table lists exactly the cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_promise_is_reported_and_the_other_cases_still_run() {
    /// Revokes nothing, ever: breaks every promise about logging out.
    #[derive(Clone)]
    struct NoRevoke(crate::MemoryStore);
    impl TokenStore for NoRevoke {
        fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
            self.0.find(id)
        }
        fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
            self.0.insert(session)
        }
        fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
            self.0.exchange_refresh(exchange)
        }
        fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
            self.0.list_sessions(user_id)
        }
        fn revoke_sessions(&self, _: &UserId, _: Sessions) -> StoreFuture<u64> {
            StoreFuture::ready(Ok(0))
        }
        fn prune_expired(&self, before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
            self.0.prune_expired(before, created_before)
        }
    }
    let store = NoRevoke(crate::MemoryStore::new());
    let report = check_store_contract(|| store.clone()).await;
    assert_eq!(report.results.len(), contract_cases::<NoRevoke>().len(), "every case ran");
    let failed: Vec<&str> = report.failures().map(|(name, _)| name).collect();
    assert!(failed.contains(&"revoke_all_removes_every_token_of_that_user_only"), "{report}");
    assert!(report.results.iter().any(|(name, result)| *name == "only_the_digest_is_stored" && result.is_ok()));
    assert!(report.to_string().contains("... FAILED: "), "{report}");
}
