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
    ExchangeOutcome, NewSession, OnReuse, RefreshExchange, SessionId, SessionLimit, SessionSummary, SessionTokens,
    Sessions, WhenFull,
};
use crate::store::{StoreErrorKind, StoreFuture, TokenStore, TokenStoreExt};
use crate::token::{
    parse_token, Abilities, IssuedToken, NewToken, TokenDigest, TokenId, TokenKind, TokenName, TokenRecord, UserId,
};

// ---------------------------------------------------------------------------------------------------
// Builders for handler tests

/// A [`TokenRecord`] for `user_id` to build test values from (id 1, session 1, an access token with
/// `["*"]`, issued now, never expiring). Turn it into a record with `.into()`.
pub fn record(user_id: impl Into<UserId>) -> TestRecord {
    TestRecord(TokenRecord {
        digest: TokenDigest::of(b"test"),
        id: 1,
        session_id: SessionId::new(1),
        kind: TokenKind::Access,
        expires_at: None,
        user_id: user_id.into(),
        created_at: SystemTime::now(),
        last_used_at: None,
        name: TokenName::default(),
        abilities: Abilities::all(),
    })
}

/// A [`TokenRecord`] under construction; see [`record`].
#[derive(Clone, Debug)]
pub struct TestRecord(TokenRecord);

impl TestRecord {
    /// The token id.
    pub fn id(mut self, id: TokenId) -> Self {
        self.0.id = id;
        self
    }

    /// The session id.
    pub fn session(mut self, id: u64) -> Self {
        self.0.session_id = SessionId::new(id);
        self
    }

    /// The name.
    pub fn name(mut self, name: impl Into<TokenName>) -> Self {
        self.0.name = name.into();
        self
    }

    /// The abilities.
    pub fn abilities<I: IntoIterator<Item = S>, S: Into<String>>(mut self, abilities: I) -> Self {
        self.0.abilities = abilities.into_iter().collect();
        self
    }

    /// The kind.
    pub fn kind(mut self, kind: TokenKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// The expiry.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.0.expires_at = Some(at);
        self
    }
}

impl From<TestRecord> for TokenRecord {
    fn from(record: TestRecord) -> Self {
        record.0
    }
}

// ---------------------------------------------------------------------------------------------------
// A gated store

/// A store operation, for [`GatedStore::gate_next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`TokenStore::find`].
    Find,
    /// [`TokenStore::insert`].
    Insert,
    /// [`TokenStore::exchange_refresh`].
    Exchange,
    /// [`TokenStore::list_sessions`].
    List,
    /// [`TokenStore::revoke_sessions`].
    Revoke,
    /// [`TokenStore::prune_expired`].
    Prune,
}

/// Where a gated call waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Before the call reaches the wrapped store.
    Before,
    /// After the wrapped store finished, before the caller gets the result.
    After,
}

/// Wraps a store and holds chosen calls at a gate, so a test can make other calls while one is held
/// and so force an interleaving (say, a logout between an exchange's store work and its answer).
///
/// Clones share the gates.
#[derive(Clone)]
pub struct GatedStore<St> {
    inner: St,
    armed: Arc<Mutex<VecDeque<Armed>>>,
}

struct Armed {
    op: Op,
    when: When,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// A gate armed by [`GatedStore::gate_next`]: wait until a call reaches it, then open it.
#[derive(Debug)]
pub struct Gate {
    reached: Option<oneshot::Receiver<()>>,
    release: Option<oneshot::Sender<()>>,
}

impl Gate {
    /// Waits until the gated call is held at the gate.
    pub async fn reached(&mut self) {
        if let Some(reached) = self.reached.take() {
            let _ = reached.await;
        }
    }

    /// Lets the held call go on.
    pub fn open(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

impl<St: TokenStore + Clone> GatedStore<St> {
    /// Wraps `inner`, with no gate armed.
    pub fn new(inner: St) -> Self {
        Self { inner, armed: Arc::default() }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &St {
        &self.inner
    }

    /// The next call of `op` (through any clone) waits at `when` until the returned gate is opened.
    pub fn gate_next(&self, op: Op, when: When) -> Gate {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.armed.lock().unwrap_or_else(|e| e.into_inner()).push_back(Armed {
            op,
            when,
            reached: reached_tx,
            release: release_rx,
        });
        Gate { reached: Some(reached_rx), release: Some(release_tx) }
    }

    fn take(&self, op: Op) -> Option<Armed> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let index = armed.iter().position(|a| a.op == op)?;
        armed.remove(index)
    }

    fn call<T: Send + 'static>(
        &self,
        op: Op,
        call: impl FnOnce(&St) -> StoreFuture<T> + Send + 'static,
    ) -> StoreFuture<T> {
        let Some(armed) = self.take(op) else { return call(&self.inner) };
        let inner = self.inner.clone();
        StoreFuture::new(async move {
            if armed.when == When::Before {
                let _ = armed.reached.send(());
                let _ = armed.release.await;
                return call(&inner).await;
            }
            let result = call(&inner).await;
            let _ = armed.reached.send(());
            let _ = armed.release.await;
            result
        })
    }
}

impl<St: TokenStore + Clone> TokenStore for GatedStore<St> {
    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
        self.call(Op::Find, move |s| s.find(id))
    }
    fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
        self.call(Op::Insert, move |s| s.insert(session))
    }
    fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
        self.call(Op::Exchange, move |s| s.exchange_refresh(exchange))
    }
    fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
        let user_id = user_id.clone();
        self.call(Op::List, move |s| s.list_sessions(&user_id))
    }
    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
        let user_id = user_id.clone();
        self.call(Op::Revoke, move |s| s.revoke_sessions(&user_id, sessions))
    }
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        self.call(Op::Prune, move |s| s.prune_expired(expired_before, created_before))
    }
    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        self.inner.touch_last_used(id, at)
    }
    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<TokenRecord>> {
        self.inner.find_by_digest(digest)
    }
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}

impl<St: fmt::Debug> fmt::Debug for GatedStore<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatedStore").field("inner", &self.inner).finish_non_exhaustive()
    }
}

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

// ---------------------------------------------------------------------------------------------------
// The contract

/// One promise of the store contract: its name, what it checks, and the check, which panics when the
/// promise is broken. See [`contract_cases`].
pub struct ContractCase<St> {
    /// The case's name (its function's), as the report prints it.
    pub name: &'static str,
    /// The promise it checks, in a sentence.
    pub promise: &'static str,
    run: fn(St) -> CaseFuture,
}

type CaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl<St> fmt::Debug for ContractCase<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContractCase").field("name", &self.name).field("promise", &self.promise).finish()
    }
}

/// Registers an `async fn(St)` as a case: `case!(function, "the promise")`.
macro_rules! case {
    ($check:ident, $promise:literal) => {
        ContractCase { name: stringify!($check), promise: $promise, run: |store| Box::pin($check(store)) }
    };
}

/// Every case of [`store_contract`], in the order it runs them. Adding a case is one line here.
pub fn contract_cases<St: TokenStore + Clone>() -> Vec<ContractCase<St>> {
    vec![
        case!(
            issued_tokens_are_found_with_their_fields,
            "an issued token is found by id with every field it was issued with"
        ),
        case!(only_the_digest_is_stored, "the record holds the digest, never the secret"),
        case!(unknown_ids_are_absent, "unknown token and session ids are absent, not errors"),
        case!(a_token_of_its_own_is_a_session, "a token issued on its own is a session of one token"),
        case!(
            revoke_all_removes_every_token_of_that_user_only,
            "log out everywhere revokes every token of that user and of no other"
        ),
        case!(
            sessions_are_listed_once_each_newest_first,
            "list_sessions lists each session once, newest first, with its fields"
        ),
        case!(a_session_of_another_user_is_never_touched, "revoking a session id of another user revokes nothing"),
        case!(others_keeps_exactly_the_presenting_session, "Sessions::AllExcept keeps exactly the presenting session"),
        case!(an_exchange_replaces_the_pair_in_the_same_session, "an exchange replaces the pair in the same session"),
        case!(
            reuse_revokes_the_session_and_spares_the_others,
            "reuse of a refresh token revokes its session and spares the others"
        ),
        case!(reuse_can_revoke_every_session, "OnReuse::RevokeAllSessions revokes every session of the user"),
        case!(
            bad_presentations_revoke_nothing,
            "wrong secrets, access tokens and unknown ids presented for refresh revoke nothing"
        ),
        case!(
            the_reuse_interval_lets_a_retry_through,
            "within the reuse interval a retried refresh token is exchanged again"
        ),
        case!(
            rotated_tokens_are_bounded_after_50_refreshes,
            "50 refreshes leave one session whose first refresh token is still detected as reuse"
        ),
        case!(
            thief_chains_of_1_8_40_and_300_exchanges_are_caught,
            "a thief's chain of 1, 8, 40 or 300 exchanges never outruns reuse detection"
        ),
        case!(
            forged_refresh_tokens_revoke_nothing,
            "forged refresh secrets for real ids (any shape, another session's key) revoke nothing"
        ),
        case!(
            the_session_limit_revokes_the_oldest_or_refuses,
            "the session limit revokes the oldest sessions, or refuses, atomically"
        ),
        case!(prune_removes_expired_tokens_only, "prune removes expired (and, if asked, old) tokens only"),
        case!(
            concurrent_logins_and_logouts_leave_no_unindexed_token,
            "concurrent logins and logouts leave no token outside the user index"
        ),
        case!(works_as_a_trait_object_case, "the store works as an Arc<dyn TokenStore>"),
        case!(
            forced_interleavings_case,
            "exchanges held before and after their store operation stay atomic against reuse and logout"
        ),
        case!(
            racing_presentations_leak_nothing,
            "of simultaneous presentations of one refresh token one wins, and nothing survives reuse"
        ),
        case!(an_exchange_racing_a_logout_leaks_nothing, "no token survives a logout racing an exchange"),
        case!(
            inserting_exchanges_leak_nothing,
            "exchanges that must create their access token are as atomic as the others"
        ),
    ]
}

/// What [`check_store_contract`] found: each case's name and, for a broken promise, the failure.
#[derive(Debug, Default)]
pub struct ContractReport {
    /// `(case, Ok(()) | Err(failure message))`, in the order the cases ran.
    pub results: Vec<(&'static str, Result<(), String>)>,
}

impl ContractReport {
    /// The cases that failed, with their messages.
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.results.iter().filter_map(|(name, result)| result.as_ref().err().map(|error| (*name, error.as_str())))
    }

    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }
}

impl fmt::Display for ContractReport {
    /// One line per case, `ok` or `FAILED: message`, then a count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, result) in &self.results {
            match result {
                Ok(()) => writeln!(f, "store contract: {name} ... ok")?,
                Err(error) => writeln!(f, "store contract: {name} ... FAILED: {error}")?,
            }
        }
        let failed = self.failures().count();
        write!(f, "store contract: {} passed, {failed} failed", self.results.len() - failed)
    }
}

/// Runs every case of [`contract_cases`], each on a store from `make` and in a task of its own, and
/// reports each: a broken promise does not stop the others.
pub async fn check_store_contract<St, F>(make: F) -> ContractReport
where
    St: TokenStore + Clone,
    F: Fn() -> St,
{
    let mut report = ContractReport::default();
    for case in contract_cases::<St>() {
        let outcome = tokio::spawn((case.run)(make())).await;
        let result = outcome.map_err(|error| match error.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".to_owned()),
            Err(error) => error.to_string(),
        });
        report.results.push((case.name, result));
    }
    report
}

/// Runs every case of the contract (see the [module docs](self) for the list) on stores from `make`
/// (which may return clones of one store), prints a line per case, and panics at the end listing the
/// broken promises, if any.
pub async fn store_contract<St, F>(make: F)
where
    St: TokenStore + Clone,
    F: Fn() -> St,
{
    let report = check_store_contract(make).await;
    println!("{report}");
    if !report.passed() {
        let broken: Vec<String> = report.failures().map(|(name, error)| format!("  {name}: {error}")).collect();
        panic!("the store broke {} promise(s) of the contract:\n{}", broken.len(), broken.join("\n"));
    }
}

async fn rotated_tokens_are_bounded_after_50_refreshes<St: TokenStore + Clone>(store: St) {
    rotated_tokens_are_bounded(store, 50).await;
}

async fn thief_chains_of_1_8_40_and_300_exchanges_are_caught<St: TokenStore + Clone>(store: St) {
    for chain in [1, 8, 40, 300] {
        a_thief_chain_cannot_outrun_reuse_detection(store.clone(), chain).await;
    }
}

async fn works_as_a_trait_object_case<St: TokenStore + Clone>(store: St) {
    works_as_a_trait_object(Arc::new(store) as Arc<dyn TokenStore>).await;
}

async fn forced_interleavings_case<St: TokenStore + Clone>(store: St) {
    forced_interleavings_keep_exchanges_atomic(move || store.clone()).await;
}

async fn racing_presentations_leak_nothing<St: TokenStore + Clone>(store: St) {
    let report = race_presentations(store, 20, 4).await;
    assert_eq!(report.leaks, 0, "{report}");
}

async fn an_exchange_racing_a_logout_leaks_nothing<St: TokenStore + Clone>(store: St) {
    let report = race_exchange_and_logout(store, 20).await;
    assert_eq!(report.leaks, 0, "{report}");
}

async fn inserting_exchanges_leak_nothing<St: TokenStore + Clone>(store: St) {
    let report = race_inserting_exchanges(store, 20).await;
    assert_eq!(report.leaks, 0, "{report}");
}

async fn issued_tokens_are_found_with_their_fields<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let now = now_secs();
    let token = NewToken::access(user.clone())
        .name("laptop")
        .abilities(["posts:read", "posts/write"])
        .issued_at(now)
        .expires_in(Duration::from_secs(3600));
    let issued = store.issue(token).await.unwrap();
    let parsed = parse_token(issued.plain_text.expose().as_bytes()).unwrap();
    assert_eq!(parsed.id(), issued.record.id);
    let found = store.find(issued.record.id).await.unwrap().expect("an issued token is found");
    assert_eq!(found.id, issued.record.id);
    assert_eq!(found.session_id, issued.record.session_id, "find reports the session insert assigned");
    assert_eq!(found.user_id, user);
    assert_eq!(found.kind, TokenKind::Access);
    assert_eq!(found.name, "laptop");
    assert!(found.abilities.can("posts:read") && found.abilities.can("posts/write"));
    assert!(!found.abilities.can("admin"));
    assert!(found.digest.ct_eq(&TokenDigest::of(parsed.secret())));
    assert_eq!(found.created_at, now);
    assert_eq!(found.expires_at, Some(now + Duration::from_secs(3600)));
    assert_eq!(found.last_used_at, None);
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn only_the_digest_is_stored<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let issued = store.issue(NewToken::access(user.clone())).await.unwrap();
    let found = store.find(issued.record.id).await.unwrap().unwrap();
    let plain = issued.plain_text.expose();
    let secret = &plain[plain.find('|').unwrap() + 1..];
    assert!(!format!("{found:?}").contains(secret), "the secret leaked into the record");
    assert!(!found.digest.ct_eq(&TokenDigest::of(b"wrong secret")));
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn unknown_ids_are_absent<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    assert!(store.find(u64::MAX - 7).await.unwrap().is_none());
    assert!(store.find(0).await.unwrap().is_none());
    assert!(!store.revoke_session(&user, SessionId::new(u64::MAX - 7)).await.unwrap());
    assert!(store.list_sessions(&user).await.unwrap().is_empty());
    let tokens = RefreshTokens::new(store.clone());
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer 18446744073709551608|secret"));
    assert!(matches!(tokens.exchange(&headers).await, Err(RefreshError::Invalid)));
}

async fn a_token_of_its_own_is_a_session<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let a = store.issue(NewToken::access(user.clone()).name("ci")).await.unwrap();
    let b = store.issue(NewToken::access(user.clone()).name("cron")).await.unwrap();
    assert_ne!(a.record.session_id, b.record.session_id, "each issued token is its own session");
    let sessions = store.list_sessions(&user).await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(store.revoke_session(&user, a.record.session_id).await.unwrap());
    assert!(!store.revoke_session(&user, a.record.session_id).await.unwrap(), "revoking is idempotent");
    assert!(store.find(a.record.id).await.unwrap().is_none());
    assert!(works(&store, &b).await);
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 1, "the index no longer lists the revoked one");
}

async fn revoke_all_removes_every_token_of_that_user_only<St: TokenStore + Clone>(store: St) {
    let (user, other) = (fresh_user(), fresh_user());
    let tokens = RefreshTokens::new(store.clone());
    let mut issued = Vec::new();
    for device in ["a", "b", "c"] {
        let pair = tokens.issue_pair(NewPair::new(user.clone()).name(device)).await.unwrap();
        issued.push(pair.access);
        issued.push(pair.refresh);
    }
    issued.push(store.issue(NewToken::refresh(user.clone())).await.unwrap());
    let kept = store.issue(NewToken::access(other.clone())).await.unwrap();
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 7);
    for token in &issued {
        assert!(store.find(token.record.id).await.unwrap().is_none(), "token {} survived logout", token.record.id);
    }
    assert!(works(&store, &kept).await, "another user's token was revoked");
    assert!(store.list_sessions(&user).await.unwrap().is_empty());
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 0, "logout is idempotent");
    store.revoke_all_for_user(&other).await.unwrap();
}

async fn sessions_are_listed_once_each_newest_first<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let now = now_secs();
    let tokens = RefreshTokens::new(store.clone());
    let mut pairs = Vec::new();
    for (i, device) in ["laptop", "phone", "tablet"].into_iter().enumerate() {
        let clock = crate::clock::ManualClock::new(now + Duration::from_secs(i as u64));
        let at = RefreshTokens::new(store.clone()).clock(clock);
        pairs.push(at.issue_pair(NewPair::new(user.clone()).name(device).abilities(["posts:read"])).await.unwrap());
    }
    // Refreshing the laptop twice keeps it one session.
    let mut laptop = pairs[0].clone();
    for _ in 0..2 {
        laptop = tokens.exchange(&bearer(&laptop.refresh)).await.unwrap();
    }
    let sessions = store.list_sessions(&user).await.unwrap();
    let names: Vec<&str> = sessions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["tablet", "phone", "laptop"], "one entry per session, newest first");
    let listed = &sessions[2];
    assert_eq!(listed.id, pairs[0].session_id());
    assert_eq!(listed.id, laptop.session_id(), "exchanges stay in their session");
    assert_eq!(listed.user_id, user);
    assert_eq!(listed.created_at, now, "a session's creation is its login, not its last exchange");
    assert!(listed.abilities.can("posts:read") && !listed.abilities.can("posts:write"));
    assert!(listed.expires_at.is_some_and(|at| at > now + Duration::from_secs(86400)), "the refresh token's expiry");
    assert!(!listed.is_expired(now));
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn a_session_of_another_user_is_never_touched<St: TokenStore + Clone>(store: St) {
    let (alice, bob) = (fresh_user(), fresh_user());
    let tokens = RefreshTokens::new(store.clone());
    let pair = tokens.issue_pair(NewPair::new(alice.clone())).await.unwrap();
    let bobs = tokens.issue_pair(NewPair::new(bob.clone())).await.unwrap();
    assert!(!store.revoke_session(&bob, pair.session_id()).await.unwrap(), "bob cannot revoke alice's session");
    assert_eq!(store.revoke_sessions(&bob, Sessions::Only(pair.session_id())).await.unwrap(), 0);
    assert!(works(&store, &pair.access).await && works(&store, &pair.refresh).await);
    assert!(works(&store, &bobs.access).await, "and his own sessions are not touched either");
    assert!(store.revoke_session(&alice, pair.session_id()).await.unwrap());
    assert!(!works(&store, &pair.access).await && !works(&store, &pair.refresh).await, "both tokens of the session");
    store.revoke_all_for_user(&bob).await.unwrap();
}

async fn others_keeps_exactly_the_presenting_session<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let mut pairs = Vec::new();
    for _ in 0..3 {
        pairs.push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
    }
    let single = store.issue(NewToken::access(user.clone())).await.unwrap();
    let kept = pairs[1].session_id();
    assert_eq!(store.revoke_sessions(&user, Sessions::AllExcept(kept)).await.unwrap(), 5);
    assert!(works(&store, &pairs[1].access).await && works(&store, &pairs[1].refresh).await);
    for pair in [&pairs[0], &pairs[2]] {
        assert!(!pair_works(&store, pair).await, "another session survived \"others\"");
    }
    assert!(!works(&store, &single).await);
    let sessions = store.list_sessions(&user).await.unwrap();
    assert_eq!(sessions.iter().map(|s| s.id).collect::<Vec<_>>(), [kept]);
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn an_exchange_replaces_the_pair_in_the_same_session<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let first = tokens.issue_pair(NewPair::new(user.clone()).name("phone").abilities(["posts:read"])).await.unwrap();
    let second = tokens.exchange(&bearer(&first.refresh)).await.unwrap();
    assert_eq!(second.session_id(), first.session_id());
    assert!(works(&store, &second.access).await && works(&store, &second.refresh).await, "the new pair works");
    assert!(!works(&store, &first.access).await, "the session's previous access token stops working");
    assert!(!works(&store, &first.refresh).await, "the exchanged refresh token stops working");
    let found = store.find(second.access.record.id).await.unwrap().unwrap();
    assert_eq!(found.session_id, first.session_id());
    assert_eq!(found.kind, TokenKind::Access);
    assert_eq!(found.name, "phone");
    assert!(found.abilities.can("posts:read") && !found.abilities.can("admin"), "the session keeps its abilities");
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 1);
    // A refresh token issued on its own exchanges too, into a session of two.
    let lone = store.issue(NewToken::refresh(user.clone()).abilities(["a"])).await.unwrap();
    let minted = tokens.exchange(&bearer(&lone)).await.unwrap();
    assert_eq!(minted.session_id(), lone.record.session_id);
    assert!(works(&store, &minted.access).await);
    assert_eq!(store.find(minted.access.record.id).await.unwrap().unwrap().abilities, ["a"].into_iter().collect());
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn reuse_revokes_the_session_and_spares_the_others<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let stolen = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let other = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let thief = tokens.exchange(&bearer(&stolen.refresh)).await.unwrap();
    match tokens.exchange(&bearer(&stolen.refresh)).await {
        Err(RefreshError::Reused { user_id, session_id, revoked }) => {
            assert_eq!(user_id, user);
            assert_eq!(session_id, stolen.session_id());
            assert_eq!(revoked, 2, "the session's live access and refresh token");
        }
        other => panic!("presenting an exchanged refresh token must be reuse, got {other:?}"),
    }
    assert!(!pair_works(&store, &thief).await, "the pair minted from the stolen token survived reuse detection");
    assert!(works(&store, &other.access).await && works(&store, &other.refresh).await, "other devices survive");
    assert!(matches!(tokens.exchange(&bearer(&thief.refresh)).await, Err(RefreshError::Invalid)));
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn reuse_can_revoke_every_session<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone()).on_reuse(OnReuse::RevokeAllSessions);
    let stolen = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let other = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    tokens.exchange(&bearer(&stolen.refresh)).await.unwrap();
    let err = tokens.exchange(&bearer(&stolen.refresh)).await.unwrap_err();
    assert!(matches!(err, RefreshError::Reused { revoked: 4, .. }), "{err:?}");
    assert!(!pair_works(&store, &other).await);
    assert!(store.list_sessions(&user).await.unwrap().is_empty());
}

async fn bad_presentations_revoke_nothing<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    assert!(matches!(tokens.exchange(&bearer(&pair.access)).await, Err(RefreshError::Invalid)), "access tokens");
    let mut forged = HeaderMap::new();
    let value = format!("Bearer {}|wrong-secret", pair.refresh.record.id);
    forged.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
    assert!(matches!(tokens.exchange(&forged).await, Err(RefreshError::Invalid)), "a wrong secret");
    assert!(works(&store, &pair.access).await && works(&store, &pair.refresh).await, "nothing was revoked");
    let expired = store
        .issue(
            NewToken::refresh(user.clone())
                .issued_at(now_secs() - Duration::from_secs(20))
                .expires_in(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert!(matches!(tokens.exchange(&bearer(&expired)).await, Err(RefreshError::Invalid)), "an expired refresh token");
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn the_reuse_interval_lets_a_retry_through<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone()).reuse_interval(Duration::from_secs(60));
    let first = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let lost = tokens.exchange(&bearer(&first.refresh)).await.unwrap();
    let retried = tokens.exchange(&bearer(&first.refresh)).await.expect("a retry within the interval is no reuse");
    assert_eq!(retried.session_id(), first.session_id());
    assert!(works(&store, &retried.access).await && works(&store, &retried.refresh).await);
    assert!(!works(&store, &lost.access).await, "the retry's pair replaced the lost one");
    let strict = RefreshTokens::new(store.clone());
    assert!(matches!(strict.exchange(&bearer(&first.refresh)).await, Err(RefreshError::Reused { .. })));
}

/// `refreshes` exchanges of one session leave one session, and every refresh token it ever exchanged,
/// the first included, is still recognised as reuse: nothing is forgotten, however many exchanges.
pub async fn rotated_tokens_are_bounded<St: TokenStore + Clone>(store: St, refreshes: usize) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone()).keep_rotated(3);
    let first = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    let mut last = first.clone();
    for _ in 0..refreshes {
        last = tokens.exchange(&bearer(&last.refresh)).await.unwrap();
    }
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 1, "{refreshes} refreshes are still one session");
    assert!(
        matches!(tokens.exchange(&bearer(&first.refresh)).await, Err(RefreshError::Reused { .. })),
        "the first refresh token of a session is reuse after {refreshes} exchanges"
    );
    assert!(!pair_works(&store, &last).await && store.list_sessions(&user).await.unwrap().is_empty());
}

/// The thief-chain attack: a thief holding a copy of a device's refresh token exchanges it, then its
/// own tokens `chain - 1` more times at once; the device then presents the token it holds. That must
/// be detected as reuse (whatever `chain` is), revoke the session, and leave no token of the thief's
/// chain working, while the user's other device keeps working.
pub async fn a_thief_chain_cannot_outrun_reuse_detection<St: TokenStore + Clone>(store: St, chain: usize) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let victim = tokens.issue_pair(NewPair::new(user.clone()).name("victim")).await.unwrap();
    let other = tokens.issue_pair(NewPair::new(user.clone()).name("other device")).await.unwrap();
    let mut stolen = vec![tokens.exchange(&bearer(&victim.refresh)).await.unwrap()];
    for _ in 1..chain {
        let next = tokens.exchange(&bearer(&stolen.last().unwrap().refresh)).await.unwrap();
        stolen.push(next);
    }
    let outcome = tokens.exchange(&bearer(&victim.refresh)).await;
    assert!(
        matches!(outcome, Err(RefreshError::Reused { .. })),
        "after a thief chain of {chain} exchanges the victim's token must be reuse, got {outcome:?}"
    );
    for pair in &stolen {
        assert!(!pair_works(&store, pair).await, "a token of the thief's chain of {chain} still works");
    }
    let thief = tokens.exchange(&bearer(&stolen.last().unwrap().refresh)).await;
    assert!(thief.is_err(), "the thief's newest refresh token still exchanges after a chain of {chain}");
    assert!(works(&store, &other.access).await && works(&store, &other.refresh).await, "the other device");
    store.revoke_all_for_user(&user).await.unwrap();
}

/// Forged secrets for real ids revoke nothing and answer invalid: a random secret of the refresh
/// token's own shape (a family key nobody issued), a bare secret, another session's family key (a
/// user presenting their own phone's key with the laptop's id), and forged or real secrets sent with an
/// access token's id.
pub async fn forged_refresh_tokens_revoke_nothing<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let tokens = RefreshTokens::new(store.clone());
    let laptop = tokens.issue_pair(NewPair::new(user.clone()).name("laptop")).await.unwrap();
    let phone = tokens.issue_pair(NewPair::new(user.clone()).name("phone")).await.unwrap();
    // Exchanged once, so a token of its family that is not the current one would be reuse.
    let laptop = tokens.exchange(&bearer(&laptop.refresh)).await.unwrap();
    let header = |id: TokenId, secret: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {id}|{secret}")).unwrap());
        headers
    };
    let shaped = |key: &str| format!("{}.{key}", crate::token::generate_secret("").unwrap().as_str());
    let random_key = crate::family::new_family_key().unwrap();
    let phone_secret = phone.refresh.plain_text.expose().split_once('|').unwrap().1.to_owned();
    let phone_key = crate::family::family_key(phone_secret.as_bytes()).expect("issued refresh tokens carry a key");
    let refresh_id = laptop.refresh.record.id;
    let access_id = laptop.access.record.id;
    let forgeries = [
        ("a random key in the refresh token's shape", header(refresh_id, &shaped(&random_key))),
        ("a bare secret", header(refresh_id, crate::token::generate_secret("").unwrap().as_str())),
        ("another session's family key", header(refresh_id, &shaped(phone_key))),
        ("another session's whole secret", header(refresh_id, &phone_secret)),
        ("an access id with a shaped secret", header(access_id, &shaped(&random_key))),
        ("an access id with another session's key", header(access_id, &shaped(phone_key))),
        ("an access token presented as a refresh token", bearer(&laptop.access)),
    ];
    for (what, forged) in &forgeries {
        let outcome = tokens.exchange(forged).await;
        assert!(matches!(outcome, Err(RefreshError::Invalid)), "{what}: must be invalid, got {outcome:?}");
        for pair in [&laptop, &phone] {
            assert!(works(&store, &pair.access).await && works(&store, &pair.refresh).await, "{what} revoked a token");
        }
    }
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 2, "forgeries revoke no session");
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn the_session_limit_revokes_the_oldest_or_refuses<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let now = now_secs();
    let limit = SessionLimit::new(3, WhenFull::RevokeOldest);
    let mut issued = Vec::new();
    for i in 0..5u64 {
        let clock = crate::clock::ManualClock::new(now + Duration::from_secs(i));
        let tokens = RefreshTokens::new(store.clone()).clock(clock).session_limit(limit);
        issued.push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
    }
    assert!(!pair_works(&store, &issued[0]).await && !pair_works(&store, &issued[1]).await, "the oldest went");
    for pair in &issued[2..] {
        assert!(works(&store, &pair.access).await);
    }
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 3);
    let refuse = NewToken::access(user.clone()).session_limit(SessionLimit::new(3, WhenFull::Refuse));
    let err = store.issue(refuse).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::SessionLimit, "{err}");
    assert_eq!(store.list_sessions(&user).await.unwrap().len(), 3, "a refused session stores nothing");
    store.revoke_all_for_user(&user).await.unwrap();
}

async fn prune_removes_expired_tokens_only<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let now = now_secs();
    let hour = Duration::from_secs(3600);
    let expired = store.issue(NewToken::access(user.clone()).issued_at(now - 2 * hour).expires_at(now - hour)).await;
    let expired = expired.unwrap();
    let live = store.issue(NewToken::access(user.clone()).issued_at(now).expires_at(now + hour)).await.unwrap();
    // A session whose access token expired but whose refresh token lives on.
    let clock = crate::clock::ManualClock::new(now - 2 * hour);
    let tokens = RefreshTokens::new(store.clone()).clock(clock).access_ttl(hour);
    let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
    // Stores with native expiry (Redis) may have dropped expired tokens already: only absence is checked.
    store.prune_expired(now, None).await.unwrap();
    assert!(store.find(expired.record.id).await.unwrap().is_none());
    assert!(!works(&store, &pair.access).await);
    assert!(works(&store, &live).await);
    assert!(works(&store, &pair.refresh).await, "the refresh token outlives its expired access token");
    let refreshed = RefreshTokens::new(store.clone()).exchange(&bearer(&pair.refresh)).await.unwrap();
    assert!(works(&store, &refreshed.access).await, "and still mints a pair");
    let sessions = store.list_sessions(&user).await.unwrap();
    assert_eq!(sessions.len(), 2, "the fully expired session is gone: {sessions:?}");
    let pruned = store.prune_expired(now - Duration::from_secs(86400), Some(now + hour)).await.unwrap();
    assert!(pruned >= 2, "created_before prunes by age");
    assert!(!works(&store, &live).await);
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 0, "pruned tokens left the user index");
}

async fn concurrent_logins_and_logouts_leave_no_unindexed_token<St: TokenStore + Clone>(store: St) {
    let user = fresh_user();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            let tokens = RefreshTokens::new(store.clone());
            let mut issued = Vec::new();
            for _ in 0..20 {
                if i % 2 == 0 {
                    issued.push(tokens.issue_pair(NewPair::new(user.clone())).await.unwrap());
                } else {
                    store.revoke_all_for_user(&user).await.unwrap();
                }
            }
            issued
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    store.revoke_all_for_user(&user).await.unwrap();
    for pair in &all {
        assert!(!pair_works(&store, pair).await, "a token of session {} escaped the user index", pair.session_id());
    }
}

async fn works_as_a_trait_object(store: Arc<dyn TokenStore>) {
    let user = fresh_user();
    let issued = store.issue(NewToken::access(user.clone())).await.unwrap();
    assert!(works(&store, &issued).await);
    assert_eq!(store.revoke_all_for_user(&user).await.unwrap(), 1);
}

/// The interleavings that broke the two-step exchange, forced with a [`GatedStore`]: a second
/// presentation, or a logout, runs while an exchange is held before its store operation and after it.
/// In every order: at most one presentation wins, and once reuse is detected or the logout has
/// returned, no token of the session works.
pub async fn forced_interleavings_keep_exchanges_atomic<St, F>(make: F)
where
    St: TokenStore + Clone,
    F: Fn() -> St,
{
    for when in [When::Before, When::After] {
        // (a) reuse detected while an exchange of the same token is in flight.
        let store = GatedStore::new(make());
        let user = fresh_user();
        let tokens = RefreshTokens::new(store.clone());
        let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let mut gate = store.gate_next(Op::Exchange, when);
        let held = {
            let (tokens, headers) = (tokens.clone(), bearer(&pair.refresh));
            tokio::spawn(async move { tokens.exchange(&headers).await })
        };
        gate.reached().await;
        let second = tokens.exchange(&bearer(&pair.refresh)).await;
        gate.open();
        let first = held.await.expect("the held exchange does not panic");
        let results = [&first, &second];
        let winners: Vec<&TokenPair> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        let reused = results.iter().filter(|r| matches!(r, Err(RefreshError::Reused { .. }))).count();
        assert_eq!(winners.len(), 1, "{when:?}: exactly one presentation wins: {first:?} / {second:?}");
        assert_eq!(reused, 1, "{when:?}: the other one is reuse: {first:?} / {second:?}");
        for pair in winners {
            assert!(!pair_works(&store, pair).await, "{when:?}: a pair survived reuse detection");
        }
        assert!(!pair_works(&store, &pair).await);
        assert!(store.list_sessions(&user).await.unwrap().is_empty(), "{when:?}: the session is revoked");

        // (b) an exchange racing log out everywhere.
        let user = fresh_user();
        let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let mut gate = store.gate_next(Op::Exchange, when);
        let held = {
            let (tokens, headers) = (tokens.clone(), bearer(&pair.refresh));
            tokio::spawn(async move { tokens.exchange(&headers).await })
        };
        gate.reached().await;
        store.revoke_all_for_user(&user).await.unwrap();
        gate.open();
        match held.await.expect("the held exchange does not panic") {
            Ok(minted) => assert!(!pair_works(&store, &minted).await, "{when:?}: a pair outlived the logout"),
            Err(RefreshError::Invalid) => {}
            Err(other) => panic!("{when:?}: an exchange after a logout is invalid, got {other:?}"),
        }
        assert!(!pair_works(&store, &pair).await);
        assert!(store.list_sessions(&user).await.unwrap().is_empty(), "{when:?}: nothing of the user is left");
    }
}

/// Figures from a randomized race check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaceReport {
    /// Rounds run.
    pub rounds: usize,
    /// Rounds in which a token that must be dead still worked afterwards (must be 0).
    pub leaks: usize,
    /// Exchanges that succeeded.
    pub exchanges: usize,
    /// Presentations answered as reuse.
    pub reuses: usize,
}

impl fmt::Display for RaceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rounds, {} leaks, {} exchanges, {} reuses detected",
            self.rounds, self.leaks, self.exchanges, self.reuses
        )
    }
}

/// `presentations` exchanges of `pair`'s refresh token started at once: the pairs they minted and how
/// many were answered as reuse. Panics on any answer but a pair, reuse or invalid.
async fn present_at_once<St: TokenStore + Clone>(
    tokens: &RefreshTokens<St>,
    pair: &TokenPair,
    presentations: usize,
) -> (Vec<TokenPair>, usize) {
    let barrier = Arc::new(Barrier::new(presentations));
    let tasks: Vec<_> = (0..presentations)
        .map(|_| {
            let (tokens, headers, barrier) = (tokens.clone(), bearer(&pair.refresh), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                tokens.exchange(&headers).await
            })
        })
        .collect();
    let (mut winners, mut reused) = (Vec::new(), 0);
    for task in tasks {
        match task.await.expect("an exchange task does not panic") {
            Ok(minted) => winners.push(minted),
            Err(RefreshError::Reused { .. }) => reused += 1,
            Err(RefreshError::Invalid) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    (winners, reused)
}

/// An exchange of `pair`'s refresh token and a logout everywhere of `user`, started at once; returns
/// the pair the exchange minted, if it did, once both are done.
async fn exchange_against_logout<St: TokenStore + Clone>(
    store: &St,
    tokens: &RefreshTokens<St>,
    pair: &TokenPair,
    user: &UserId,
) -> Option<TokenPair> {
    let barrier = Arc::new(Barrier::new(2));
    let exchange = {
        let (tokens, headers, barrier) = (tokens.clone(), bearer(&pair.refresh), Arc::clone(&barrier));
        tokio::spawn(async move {
            barrier.wait().await;
            tokens.exchange(&headers).await
        })
    };
    let logout = {
        let (store, user, barrier) = (store.clone(), user.clone(), Arc::clone(&barrier));
        tokio::spawn(async move {
            barrier.wait().await;
            store.revoke_all_for_user(&user).await
        })
    };
    logout.await.expect("the logout task does not panic").expect("logout succeeds");
    exchange.await.expect("the exchange task does not panic").ok()
}

/// `presentations` simultaneous exchanges of one refresh token, `rounds` times: each round exactly one
/// wins, and since the others are reuse, no pair of the round works afterwards. Panics on a second
/// winner; counts leaks.
pub async fn race_presentations<St: TokenStore + Clone>(store: St, rounds: usize, presentations: usize) -> RaceReport {
    let tokens = RefreshTokens::new(store.clone());
    let mut report = RaceReport { rounds, ..RaceReport::default() };
    for round in 0..rounds {
        let user = fresh_user();
        let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let (winners, reused) = present_at_once(&tokens, &pair, presentations).await;
        assert!(winners.len() <= 1, "round {round}: {} presentations of one refresh token won", winners.len());
        report.exchanges += winners.len();
        report.reuses += reused;
        if presentations > 1 {
            assert_eq!(winners.len(), 1, "round {round}: the first presentation must win");
            assert!(reused >= 1, "round {round}: a second presentation must be reuse");
            let mut leaked = pair_works(&store, &pair).await;
            for minted in &winners {
                leaked |= pair_works(&store, minted).await;
            }
            report.leaks += usize::from(leaked);
        }
        store.revoke_all_for_user(&user).await.unwrap();
    }
    report
}

/// An exchange and a logout everywhere of the same user at once, `rounds` times: once the logout has
/// returned, no token of the user works, whatever the exchange answered. Counts leaks.
pub async fn race_exchange_and_logout<St: TokenStore + Clone>(store: St, rounds: usize) -> RaceReport {
    let tokens = RefreshTokens::new(store.clone());
    let mut report = RaceReport { rounds, ..RaceReport::default() };
    for _ in 0..rounds {
        let user = fresh_user();
        let pair = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let minted = exchange_against_logout(&store, &tokens, &pair, &user).await;
        let mut leaked = pair_works(&store, &pair).await;
        if let Some(minted) = &minted {
            report.exchanges += 1;
            leaked |= pair_works(&store, minted).await;
        }
        report.leaks += usize::from(leaked);
        store.revoke_all_for_user(&user).await.unwrap();
    }
    report
}

/// Like [`race_exchange_and_logout`] and [`race_presentations`], on sessions whose access token was
/// pruned, so that the exchange has to **create** one rather than replace it in place: on PostgreSQL a
/// logout whose snapshot predates a concurrent insert cannot see the inserted row, which the other races
/// never exercise. Each round races one exchange against a logout, then two presentations against each
/// other; counts leaks. It prunes: run it on a store (table, key prefix) of its own.
pub async fn race_inserting_exchanges<St: TokenStore + Clone>(store: St, rounds: usize) -> RaceReport {
    let mut report = RaceReport { rounds, ..RaceReport::default() };
    let now = now_secs();
    let hour = Duration::from_secs(3600);
    let past = RefreshTokens::new(store.clone())
        .clock(crate::clock::ManualClock::new(now - 2 * hour))
        .access_ttl(Duration::from_secs(60));
    let tokens = RefreshTokens::new(store.clone());
    for round in 0..rounds {
        // An exchange that inserts, racing log out everywhere.
        let user = fresh_user();
        let pair = past.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let other = past.issue_pair(NewPair::new(user.clone())).await.unwrap();
        store.prune_expired(now, None).await.unwrap();
        assert!(!works(&store, &pair.access).await, "round {round}: the access token was pruned");
        assert!(works(&store, &pair.refresh).await, "round {round}: the refresh token lives on");
        let minted = exchange_against_logout(&store, &tokens, &pair, &user).await;
        let mut leaked = pair_works(&store, &pair).await || pair_works(&store, &other).await;
        if let Some(minted) = &minted {
            report.exchanges += 1;
            leaked |= pair_works(&store, minted).await;
        }

        // Two inserting presentations of one token: one wins, the other is reuse, nothing survives.
        let user = fresh_user();
        let pair = past.issue_pair(NewPair::new(user.clone())).await.unwrap();
        store.prune_expired(now, None).await.unwrap();
        let (winners, reused) = present_at_once(&tokens, &pair, 2).await;
        assert_eq!(winners.len(), 1, "round {round}: one of two inserting presentations wins");
        for minted in &winners {
            leaked |= pair_works(&store, minted).await;
        }
        report.exchanges += winners.len();
        report.reuses += reused;
        report.leaks += usize::from(leaked);
        store.revoke_all_for_user(&user).await.unwrap();
    }
    report
}

/// What [`thief_chains`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThiefChainReport {
    /// Rounds run.
    pub rounds: usize,
    /// Exchanges in each thief chain.
    pub chain: usize,
    /// Rounds in which the victim's presentation was not detected as reuse (must be 0).
    pub evasions: usize,
    /// Rounds in which a token of the thief's chain still worked afterwards (must be 0).
    pub survivors: usize,
}

impl fmt::Display for ThiefChainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rounds of a {}-exchange thief chain: {} evasions, {} rounds with a surviving thief token",
            self.rounds, self.chain, self.evasions, self.survivors
        )
    }
}

/// The thief-chain attack, `rounds` times: a thief exchanges a copy of a device's refresh token, then
/// its own chain until it has made `chain` exchanges, as fast as the store allows; then the device
/// presents the token it holds. Counts the rounds where that was not answered as reuse, and those where
/// any token the thief obtained still works afterwards. Both must be 0 on every store.
pub async fn thief_chains<St: TokenStore + Clone>(store: St, chain: usize, rounds: usize) -> ThiefChainReport {
    let tokens = RefreshTokens::new(store.clone());
    let mut report = ThiefChainReport { rounds, chain, ..ThiefChainReport::default() };
    for _ in 0..rounds {
        let user = fresh_user();
        let victim = tokens.issue_pair(NewPair::new(user.clone())).await.unwrap();
        let mut stolen: Vec<TokenPair> = Vec::with_capacity(chain);
        let mut holding = victim.refresh.clone();
        for _ in 0..chain {
            let next = tokens.exchange(&bearer(&holding)).await.expect("the thief's exchanges succeed");
            holding = next.refresh.clone();
            stolen.push(next);
        }
        let caught = matches!(tokens.exchange(&bearer(&victim.refresh)).await, Err(RefreshError::Reused { .. }));
        report.evasions += usize::from(!caught);
        let mut survived = false;
        for pair in &stolen {
            survived |= pair_works(&store, pair).await;
        }
        survived |= tokens.exchange(&bearer(&holding)).await.is_ok();
        report.survivors += usize::from(survived);
        store.revoke_all_for_user(&user).await.unwrap();
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_docs_list_every_case() {
        let source = include_str!("testing.rs");
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
}
