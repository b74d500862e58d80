//! Test utilities (feature `test-util`): the contract every [`TokenStore`] must meet, a [`GatedStore`]
//! that holds store calls at a gate to force interleavings, and builders for handler tests.
//!
//! The crate's own stores (memory, Redis, PostgreSQL, MariaDB, SQLite) pass [`store_contract`] in its
//! CI. Run it against yours:
//!
//! ```
//! use tower_token_auth::testing::store_contract;
//! use tower_token_auth::MemoryStore;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_store_meets_the_contract() {
//!     store_contract(MemoryStore::new).await; // any `Fn() -> impl TokenStore + Clone`
//! }
//! # fn main() {}
//! ```
//!
//! Run it on a multi-thread runtime: the race checks need threads to race on. It uses random user ids,
//! so stores sharing one backend (one Redis, one table) can run it in parallel. It runs **every** case,
//! each in a task of its own, prints one line per case (`store contract: NAME ... ok` or
//! `... FAILED: message`; `cargo test -- --nocapture` shows them for a passing test too), then panics
//! listing every broken promise. [`check_store_contract`] returns the same [`ContractReport`] without
//! panicking, and [`contract_cases`] lists the cases.
//!
//! # The cases
//!
//! | case | the promise |
//! |---|---|
//! | `issued_tokens_are_found_with_their_fields` | an issued token is found by id with every field it was issued with |
//! | `only_the_digest_is_stored` | the record holds the digest, never the secret |
//! | `unknown_ids_are_absent` | unknown token and session ids are absent, not errors |
//! | `a_token_of_its_own_is_a_session` | a token issued on its own is a session of one token |
//! | `revoke_all_removes_every_token_of_that_user_only` | log out everywhere revokes every token of that user and of no other |
//! | `sessions_are_listed_once_each_newest_first` | `list_sessions` lists each session once, newest first, with its fields |
//! | `a_session_of_another_user_is_never_touched` | revoking a session id of another user revokes nothing |
//! | `others_keeps_exactly_the_presenting_session` | `Sessions::AllExcept` keeps exactly the presenting session |
//! | `an_exchange_replaces_the_pair_in_the_same_session` | an exchange replaces the pair in the same session |
//! | `reuse_revokes_the_session_and_spares_the_others` | reuse of a refresh token revokes its session and spares the others |
//! | `reuse_can_revoke_every_session` | `OnReuse::RevokeAllSessions` revokes every session of the user |
//! | `bad_presentations_revoke_nothing` | wrong secrets, access tokens and unknown ids presented for refresh revoke nothing |
//! | `the_reuse_interval_lets_a_retry_through` | within the reuse interval a retried refresh token is exchanged again |
//! | `rotated_tokens_are_bounded_after_50_refreshes` | 50 refreshes leave one session whose first refresh token is still detected as reuse |
//! | `thief_chains_of_1_8_40_and_300_exchanges_are_caught` | a thief's chain of 1, 8, 40 or 300 exchanges never outruns reuse detection |
//! | `forged_refresh_tokens_revoke_nothing` | forged refresh secrets for real ids (any shape, another session's key) revoke nothing |
//! | `the_session_limit_revokes_the_oldest_or_refuses` | the session limit revokes the oldest sessions, or refuses, atomically |
//! | `prune_removes_expired_tokens_only` | prune removes expired (and, if asked, old) tokens only |
//! | `concurrent_logins_and_logouts_leave_no_unindexed_token` | concurrent logins and logouts leave no token outside the user index |
//! | `works_as_a_trait_object_case` | the store works as an `Arc<dyn TokenStore>` |
//! | `forced_interleavings_case` | exchanges held before and after their store operation stay atomic against reuse and logout |
//! | `racing_presentations_leak_nothing` | of simultaneous presentations of one refresh token one wins, and nothing survives reuse |
//! | `an_exchange_racing_a_logout_leaks_nothing` | no token survives a logout racing an exchange |
//! | `inserting_exchanges_leak_nothing` | exchanges that must create their access token are as atomic as the others |
//!
//! A test of the table against [`contract_cases`] keeps the two in step.
//!
//! # Using it
//!
//! Add to your `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! tower-token-auth = { version = "0.1", features = ["test-util"] }
//! ```
//!
//! With the feature only in `dev-dependencies`, your crate's `cargo doc` does not document this module
//! (documentation is built without dev-dependencies' features). Read it on docs.rs, which builds every
//! feature, or in a checkout of this crate with `cargo doc --open --features test-util`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::header::{HeaderValue, AUTHORIZATION};
use http::HeaderMap;
use tokio::sync::{oneshot, Barrier};

use crate::refresh::{NewPair, RefreshError, RefreshTokens, TokenPair};
use crate::session::{
    ExchangeOutcome, NewSession, NewToken, OnReuse, RefreshExchange, SessionId, SessionLimit, SessionSummary,
    SessionTokens, Sessions, WhenFull,
};
use crate::store::{StoreErrorKind, StoreFuture, TokenStore, TokenStoreExt};
use crate::token::{
    parse_token, Abilities, IssuedToken, TokenDigest, TokenId, TokenKind, TokenName, TokenRecord, UserId,
};

mod builders;
mod cases;
mod contract;
mod gated;
mod races;
#[cfg(test)]
mod tests;

pub use builders::*;
pub use cases::*;
pub use contract::*;
pub use gated::*;
pub use races::*;

// ---------------------------------------------------------------------------------------------------
// Helpers

/// A user id no other test run uses (random high bits, a counter in the low ones).
pub fn fresh_user() -> UserId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the OS random number generator works");
    let high = u64::from_le_bytes(random) % 1_000_000_000;
    UserId::from(high * 1_000_000 + NEXT.fetch_add(1, Ordering::Relaxed) % 1_000_000)
}

/// Whole seconds since the epoch: SQL stores keep second precision, as Laravel does.
pub fn now_secs() -> SystemTime {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// `Authorization: Bearer {token}` for `issued`.
pub fn bearer(issued: &IssuedToken) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {}", issued.plain_text.expose());
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&value).expect("tokens are visible ASCII"));
    headers
}

/// Whether `issued` still works: stored under its id, with its digest, of its kind.
pub async fn works<St: TokenStore + ?Sized>(store: &St, issued: &IssuedToken) -> bool {
    let found = store.find(issued.record.id).await.expect("find must not fail on a healthy store");
    found.is_some_and(|r| r.digest.ct_eq(&issued.record.digest) && r.kind == issued.record.kind)
}

async fn pair_works<St: TokenStore + ?Sized>(store: &St, pair: &TokenPair) -> bool {
    works(store, &pair.access).await || works(store, &pair.refresh).await
}
