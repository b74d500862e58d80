//! [`MemoryStore`]: the embedded default store, built on `dashmap`.
//!
//! Lookups are one sharded hash-map read that copies the record out (no allocation, no shared write for
//! integer user ids, short names and `["*"]` abilities). Every change to a user's tokens (a login, an
//! exchange, a logout, a prune) happens while holding that user's entry in a second map, the per-user
//! session index: that is the critical section that makes each [`TokenStore`] operation atomic, and it
//! locks one user, never the whole store. State lives in one process: for several instances behind a
//! load balancer use a shared store (Redis or SQL).
//!
//! Expired tokens are removed by [`prune_expired`](crate::TokenStore::prune_expired); call it on a timer,
//! or let [`MemoryStore::spawn_pruner`] do it.
//!
//! ```
//! use std::time::Duration;
//! use tower_token_auth::{MemoryStore, NewToken, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_token_auth::StoreError> {
//! let store = MemoryStore::new();
//! let issued = store.issue(NewToken::access(1u64).expires_in(Duration::from_secs(60))).await?;
//! assert_eq!(store.len(), 1);
//! let clone = store.clone(); // shares the same tokens
//! assert_eq!(clone.len(), 1);
//! # let _ = issued;
//! # Ok(())
//! # }
//! ```

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use super::{StoreError, StoreFuture, TokenStore};
use crate::clock::{Clock, SystemClock};
use crate::session::{
    ExchangeDecision, ExchangeOutcome, ExchangedSession, NewSecret, NewSession, OnReuse, RefreshExchange,
    RotatedRefresh, SessionId, SessionSummary, SessionTokens, Sessions,
};
use crate::token::{Abilities, TokenDigest, TokenId, TokenKind, TokenName, TokenRecord, UserId};

/// The in-memory token store. Cheap to clone: clones share the same tokens.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    tokens: DashMap<TokenId, TokenRecord, RandomState>,
    // Lock order: an entry of `users` may be held while touching `tokens` or `digests`, never the other
    // way round.
    users: DashMap<UserId, UserSessions, RandomState>,
    /// Digest -> id, kept only with [`MemoryStore::legacy_tokens`].
    digests: Option<DashMap<TokenDigest, TokenId, RandomState>>,
    next_id: AtomicU64,
}

/// One user's sessions, in the order they were created.
#[derive(Default)]
struct UserSessions {
    sessions: Vec<Session>,
}

struct Session {
    id: SessionId,
    name: TokenName,
    abilities: Abilities,
    created_at: SystemTime,
    access: Option<TokenId>,
    refresh: Option<TokenId>,
    /// The refresh tokens this session already exchanged, oldest first.
    rotated: Vec<RotatedRefresh>,
}

impl Session {
    fn token_ids(&self) -> impl Iterator<Item = TokenId> {
        self.access.into_iter().chain(self.refresh)
    }
}

impl MemoryStore {
    /// An empty store. Ids start at 1.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty store with room for `capacity` tokens.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                tokens: DashMap::with_capacity_and_hasher(capacity, RandomState::new()),
                users: DashMap::with_hasher(RandomState::new()),
                digests: None,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Keeps an index from digest to token, so that legacy Sanctum tokens sent without `{id}|` are found
    /// (with [`TokenAuthLayer::legacy_tokens`](crate::TokenAuthLayer::legacy_tokens)) in one lookup.
    /// Off by default, and then [`find_by_digest`](TokenStore::find_by_digest) finds nothing: the index
    /// costs about 50 bytes per token. Call it on a new, empty store.
    pub fn legacy_tokens(self, enabled: bool) -> Self {
        let shared = Shared {
            tokens: DashMap::with_hasher(RandomState::new()),
            users: DashMap::with_hasher(RandomState::new()),
            digests: enabled.then(|| DashMap::with_hasher(RandomState::new())),
            next_id: AtomicU64::new(self.shared.next_id.load(Ordering::Relaxed)),
        };
        debug_assert!(self.is_empty(), "MemoryStore::legacy_tokens is for a new store");
        Self { shared: Arc::new(shared) }
    }

    /// Number of stored tokens (expired ones included until pruned).
    pub fn len(&self) -> usize {
        self.shared.tokens.len()
    }

    /// Whether the store holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.shared.tokens.is_empty()
    }

    /// Number of users who hold at least one token.
    pub fn user_count(&self) -> usize {
        self.shared.users.len()
    }

    /// Number of records kept for `user_id`: live tokens plus the exchanged refresh tokens remembered
    /// for reuse detection. Bounded by the session limit times (2 + `keep_rotated`).
    pub fn records_of(&self, user_id: &UserId) -> usize {
        self.shared
            .users
            .get(user_id)
            .map_or(0, |user| user.sessions.iter().map(|s| s.token_ids().count() + s.rotated.len()).sum())
    }

    /// Spawns a tokio task that prunes expired tokens every `interval` (keeping each for `grace` after it
    /// expires). The task stops when every other clone of the store has been dropped. Each prune runs on
    /// tokio's blocking pool, so a large store never stalls a runtime worker.
    pub fn spawn_pruner(&self, interval: Duration, grace: Duration) -> tokio::task::JoinHandle<()> {
        self.spawn_pruner_with_clock(interval, grace, SystemClock)
    }

    /// Like [`spawn_pruner`](Self::spawn_pruner), reading the time from `clock`.
    pub fn spawn_pruner_with_clock(
        &self,
        interval: Duration,
        grace: Duration,
        clock: impl Clock,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let cutoff = clock.now().checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
                match (MemoryStore { shared }).prune_expired(cutoff, None).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::debug!(pruned, "pruned expired tokens"),
                    Err(error) => tracing::warn!(%error, "pruning expired tokens failed"),
                }
            }
        })
    }

    fn allocate_id(&self) -> TokenId {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn put(&self, record: TokenRecord) {
        if let Some(digests) = &self.shared.digests {
            digests.insert(record.digest, record.id);
        }
        self.shared.tokens.insert(record.id, record);
    }

    fn delete(&self, id: TokenId) -> bool {
        match self.shared.tokens.remove(&id) {
            Some((_, record)) => {
                if let Some(digests) = &self.shared.digests {
                    digests.remove_if(&record.digest, |_, indexed| *indexed == id);
                }
                true
            }
            None => false,
        }
    }

    /// Deletes the tokens of `sessions` (already taken out of the user's index). Returns how many.
    fn delete_sessions(&self, sessions: impl IntoIterator<Item = Session>) -> u64 {
        sessions.into_iter().flat_map(|s| s.token_ids().collect::<Vec<_>>()).map(|id| u64::from(self.delete(id))).sum()
    }

    fn insert_now(&self, new: NewSession) -> Result<SessionTokens, StoreError> {
        let mut user = self.shared.users.entry(new.user_id.clone()).or_default();
        let evictions = new
            .limit
            .evictions(user.sessions.len())
            .map_err(|()| StoreError::session_limit(new.limit.max().unwrap_or_default()))?;
        let mut evicted = Vec::new();
        for _ in 0..evictions {
            let oldest = user.sessions.iter().enumerate().min_by_key(|(_, s)| (s.created_at, s.id)).map(|(i, _)| i);
            if let Some(index) = oldest {
                evicted.push(user.sessions.remove(index));
            }
        }
        let record = |id: TokenId, session_id: SessionId, kind: TokenKind, secret: NewSecret| TokenRecord {
            digest: secret.digest,
            id,
            session_id,
            kind,
            expires_at: secret.expires_at,
            user_id: new.user_id.clone(),
            created_at: new.created_at,
            last_used_at: None,
            name: new.name.clone(),
            abilities: new.abilities.clone(),
        };
        let refresh_id = new.refresh.map(|_| self.allocate_id());
        let access_id = new.access.map(|_| self.allocate_id());
        let Some(session_id) = refresh_id.or(access_id).map(SessionId::new) else {
            return Err(StoreError::invalid_input("a session needs an access or a refresh token"));
        };
        if let (Some(id), Some(secret)) = (refresh_id, new.refresh) {
            self.put(record(id, session_id, TokenKind::Refresh, secret));
        }
        if let (Some(id), Some(secret)) = (access_id, new.access) {
            self.put(record(id, session_id, TokenKind::Access, secret));
        }
        user.sessions.push(Session {
            id: session_id,
            name: new.name.clone(),
            abilities: new.abilities.clone(),
            created_at: new.created_at,
            access: access_id,
            refresh: refresh_id,
            rotated: Vec::new(),
        });
        drop(user);
        self.delete_sessions(evicted);
        Ok(SessionTokens { session_id, access: access_id, refresh: refresh_id })
    }

    fn exchange_now(&self, exchange: &RefreshExchange) -> ExchangeOutcome {
        let Some(owner) = self.shared.tokens.get(&exchange.token_id).map(|r| r.user_id.clone()) else {
            return ExchangeOutcome::Invalid;
        };
        let Some(mut user) = self.shared.users.get_mut(&owner) else { return ExchangeOutcome::Invalid };
        // Under the user's lock: the session must still hold this token as its refresh token (a
        // revocation takes sessions out of the index before it deletes their tokens).
        let Some(index) = user.sessions.iter().position(|s| s.refresh == Some(exchange.token_id)) else {
            return ExchangeOutcome::Invalid;
        };
        let current = self.shared.tokens.get(&exchange.token_id).map(|r| r.clone());
        let session = &mut user.sessions[index];
        match exchange.decide(current.as_ref(), &session.rotated) {
            ExchangeDecision::Invalid => ExchangeOutcome::Invalid,
            ExchangeDecision::Reuse => {
                let session_id = session.id;
                let taken = match exchange.on_reuse {
                    OnReuse::RevokeSession => vec![user.sessions.remove(index)],
                    OnReuse::RevokeAllSessions => std::mem::take(&mut user.sessions),
                };
                let now_empty = user.sessions.is_empty();
                drop(user);
                if now_empty {
                    self.shared.users.remove_if(&owner, |_, u| u.sessions.is_empty());
                }
                let revoked = self.delete_sessions(taken);
                ExchangeOutcome::Reused { user_id: owner, session_id, revoked }
            }
            ExchangeDecision::Rotate => {
                let current = current.expect("decide rotates only a stored token");
                session.rotated = exchange.rotated_after(&session.rotated, current.digest);
                let refresh = TokenRecord {
                    digest: exchange.refresh.digest,
                    expires_at: exchange.refresh.expires_at,
                    created_at: exchange.now,
                    last_used_at: None,
                    ..current.clone()
                };
                let access_id = match session.access {
                    Some(id) => id,
                    None => self.allocate_id(),
                };
                let access = TokenRecord {
                    digest: exchange.access.digest,
                    id: access_id,
                    kind: TokenKind::Access,
                    expires_at: exchange.access.expires_at,
                    created_at: exchange.now,
                    last_used_at: None,
                    name: session.name.clone(),
                    abilities: session.abilities.clone(),
                    ..current
                };
                session.access = Some(access_id);
                let outcome = ExchangedSession {
                    session_id: session.id,
                    user_id: owner,
                    name: session.name.clone(),
                    abilities: session.abilities.clone(),
                    access: access_id,
                    refresh: exchange.token_id,
                };
                // Replacing the records drops the old digests from the legacy index too.
                for old in [refresh.id, access.id] {
                    if let (Some(digests), Some(record)) = (&self.shared.digests, self.shared.tokens.get(&old)) {
                        let digest = record.digest;
                        drop(record);
                        digests.remove_if(&digest, |_, indexed| *indexed == old);
                    }
                }
                self.put(refresh);
                self.put(access);
                drop(user);
                ExchangeOutcome::Exchanged(outcome)
            }
        }
    }

    fn list_now(&self, user_id: &UserId) -> Vec<SessionSummary> {
        let Some(user) = self.shared.users.get(user_id) else { return Vec::new() };
        let mut list: Vec<SessionSummary> = user
            .sessions
            .iter()
            .filter_map(|session| {
                let mut summary = SessionSummary {
                    id: session.id,
                    user_id: user_id.clone(),
                    name: session.name.clone(),
                    abilities: session.abilities.clone(),
                    created_at: session.created_at,
                    last_used_at: None,
                    expires_at: Some(SystemTime::UNIX_EPOCH),
                };
                let mut any = false;
                for id in session.token_ids() {
                    let Some(token) = self.shared.tokens.get(&id) else { continue };
                    any = true;
                    summary.last_used_at = summary.last_used_at.max(token.last_used_at);
                    summary.expires_at = match (summary.expires_at, token.expires_at) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
                any.then_some(summary)
            })
            .collect();
        drop(user);
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        list
    }

    fn revoke_now(&self, user_id: &UserId, which: Sessions) -> u64 {
        let taken = match which {
            Sessions::All => match self.shared.users.remove(user_id) {
                Some((_, user)) => user.sessions,
                None => return 0,
            },
            Sessions::Only(_) | Sessions::AllExcept(_) => {
                let Some(mut user) = self.shared.users.get_mut(user_id) else { return 0 };
                let (taken, kept) = std::mem::take(&mut user.sessions).into_iter().partition(|s| which.includes(s.id));
                user.sessions = kept;
                let now_empty = user.sessions.is_empty();
                drop(user);
                if now_empty {
                    self.shared.users.remove_if(user_id, |_, u| u.sessions.is_empty());
                }
                taken
            }
        };
        // The sessions are out of the index: nothing can exchange into them any more. Their tokens are
        // deleted outside the user's lock, before this returns.
        self.delete_sessions(taken)
    }

    /// O(stored tokens) to find the expired ones, then O(that user's sessions) per user that has any.
    fn prune_now(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> u64 {
        let expired = |r: &TokenRecord| {
            r.expires_at.is_some_and(|at| at < expired_before)
                || created_before.is_some_and(|limit| r.created_at < limit)
        };
        let mut by_user: HashMap<UserId, Vec<TokenId>> = HashMap::new();
        for record in self.shared.tokens.iter() {
            if expired(&record) {
                by_user.entry(record.user_id.clone()).or_default().push(record.id);
            }
        }
        let mut pruned = 0;
        for (user_id, candidates) in by_user {
            let Some(mut user) = self.shared.users.get_mut(&user_id) else { continue };
            let mut deleted = HashSet::new();
            for id in candidates {
                // Checked again under the user's lock: an exchange may have replaced the token since.
                let still_expired = self.shared.tokens.get(&id).is_some_and(|r| expired(&r));
                if still_expired && self.delete(id) {
                    deleted.insert(id);
                }
            }
            pruned += deleted.len() as u64;
            for session in &mut user.sessions {
                session.access = session.access.filter(|id| !deleted.contains(id));
                session.refresh = session.refresh.filter(|id| !deleted.contains(id));
            }
            user.sessions.retain(|s| s.access.is_some() || s.refresh.is_some());
            let now_empty = user.sessions.is_empty();
            drop(user);
            if now_empty {
                self.shared.users.remove_if(&user_id, |_, u| u.sessions.is_empty());
            }
        }
        pruned
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").field("tokens", &self.len()).field("users", &self.user_count()).finish()
    }
}

impl TokenStore for MemoryStore {
    #[inline]
    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
        // Copy the record out and drop the shard guard at once; never hold it across an await.
        StoreFuture::ready(Ok(self.shared.tokens.get(&id).map(|r| r.clone())))
    }

    fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
        StoreFuture::ready(self.insert_now(session))
    }

    fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
        StoreFuture::ready(Ok(self.exchange_now(&exchange)))
    }

    fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
        StoreFuture::ready(Ok(self.list_now(user_id)))
    }

    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
        StoreFuture::ready(Ok(self.revoke_now(user_id, sessions)))
    }

    /// Runs on tokio's blocking pool when called inside a runtime (it scans every token), inline
    /// otherwise.
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        let store = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn_blocking(move || store.prune_now(expired_before, created_before));
                StoreFuture::new(async move { task.await.map_err(StoreError::backend) })
            }
            Err(_) => StoreFuture::ready(Ok(store.prune_now(expired_before, created_before))),
        }
    }

    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        if let Some(mut record) = self.shared.tokens.get_mut(&id) {
            record.last_used_at = Some(at);
        }
        StoreFuture::ready(Ok(()))
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }

    /// One lookup in the digest index kept with [`MemoryStore::legacy_tokens`]; finds nothing without it.
    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<TokenRecord>> {
        let Some(digests) = &self.shared.digests else { return StoreFuture::ready(Ok(None)) };
        let id = digests.get(digest).map(|id| *id);
        let found = id.and_then(|id| self.shared.tokens.get(&id).map(|r| r.clone()));
        StoreFuture::ready(Ok(found.filter(|record| record.digest.ct_eq(digest))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionLimit, WhenFull};
    use crate::{NewToken, TokenStoreExt};

    #[tokio::test]
    async fn revoke_all_for_user_leaves_other_users_alone() {
        let store = MemoryStore::new();
        let a1 = store.issue(NewToken::access(1u64)).await.unwrap();
        let a2 = store.issue(NewToken::refresh(1u64)).await.unwrap();
        let b = store.issue(NewToken::access(2u64)).await.unwrap();
        assert_eq!(store.revoke_all_for_user(&1u64.into()).await.unwrap(), 2);
        assert!(store.find(a1.record.id).await.unwrap().is_none());
        assert!(store.find(a2.record.id).await.unwrap().is_none());
        assert!(store.find(b.record.id).await.unwrap().is_some());
        assert_eq!(store.user_count(), 1);
        assert_eq!(store.revoke_all_for_user(&1u64.into()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn revoking_the_last_session_empties_the_user_index() {
        let store = MemoryStore::new();
        let a = store.issue(NewToken::access(1u64)).await.unwrap();
        assert!(store.revoke_session(&1u64.into(), a.record.session_id).await.unwrap());
        assert!(!store.revoke_session(&1u64.into(), a.record.session_id).await.unwrap());
        assert_eq!(store.user_count(), 0);
    }

    #[tokio::test]
    async fn prune_removes_only_expired_tokens() {
        let store = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let old = NewToken::access(1u64).issued_at(t0).expires_in(Duration::from_secs(10));
        let old = store.issue(old).await.unwrap();
        let keep = store.issue(NewToken::access(1u64).issued_at(t0)).await.unwrap();
        let pruned = store.prune_expired(t0 + Duration::from_secs(11), None).await.unwrap();
        assert_eq!(pruned, 1);
        assert!(store.find(old.record.id).await.unwrap().is_none());
        assert!(store.find(keep.record.id).await.unwrap().is_some());
        assert_eq!(store.list_sessions(&1u64.into()).await.unwrap().len(), 1, "the pruned session is gone");
        let pruned = store.prune_expired(t0, Some(t0 + Duration::from_secs(1))).await.unwrap();
        assert_eq!(pruned, 1);
        assert!(store.is_empty() && store.user_count() == 0);
    }

    #[test]
    fn prune_works_outside_a_runtime() {
        let store = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        now(store.issue(NewToken::access(1u64).issued_at(t0).expires_in(Duration::from_secs(1))));
        assert_eq!(now(store.prune_expired(t0 + Duration::from_secs(2), None)), 1);
    }

    #[tokio::test]
    async fn pruning_a_user_with_many_expired_tokens_is_linear() {
        // 20,000 expired sessions of one user and 1 live one: one pass per user, not one per token.
        let store = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let unlimited = SessionLimit::unlimited();
        for _ in 0..20_000 {
            let token =
                NewToken::access(1u64).issued_at(t0).expires_in(Duration::from_secs(1)).session_limit(unlimited);
            store.issue(token).await.unwrap();
        }
        store.issue(NewToken::access(1u64).issued_at(t0).session_limit(unlimited)).await.unwrap();
        assert_eq!(store.prune_expired(t0 + Duration::from_secs(2), None).await.unwrap(), 20_000);
        assert_eq!(store.len(), 1);
        assert_eq!(store.records_of(&1u64.into()), 1);
    }

    #[tokio::test]
    async fn the_oldest_session_makes_room_at_the_limit() {
        let store = MemoryStore::new();
        let limit = SessionLimit::new(2, WhenFull::RevokeOldest);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut ids = Vec::new();
        for i in 0..3 {
            let token = NewToken::access(1u64).issued_at(t0 + Duration::from_secs(i)).session_limit(limit);
            ids.push(store.issue(token).await.unwrap().record.id);
        }
        assert!(store.find(ids[0]).await.unwrap().is_none(), "the oldest went");
        assert!(store.find(ids[1]).await.unwrap().is_some() && store.find(ids[2]).await.unwrap().is_some());
        let refuse = NewToken::access(1u64).session_limit(SessionLimit::new(2, WhenFull::Refuse));
        let err = store.issue(refuse).await.unwrap_err();
        assert_eq!(err.kind(), crate::store::StoreErrorKind::SessionLimit);
        assert_eq!(store.len(), 2, "a refused session stores nothing");
    }

    #[tokio::test]
    async fn legacy_lookups_use_the_digest_index_only_when_enabled() {
        let plain = MemoryStore::new();
        let issued = plain.issue(NewToken::access(1u64)).await.unwrap();
        assert!(plain.find_by_digest(&issued.record.digest).await.unwrap().is_none());

        let store = MemoryStore::new().legacy_tokens(true);
        let issued = store.issue(NewToken::access(1u64)).await.unwrap();
        assert_eq!(store.find_by_digest(&issued.record.digest).await.unwrap().unwrap().id, issued.record.id);
        assert!(store.find_by_digest(&TokenDigest::of(b"other")).await.unwrap().is_none());
        store.revoke_all_for_user(&1u64.into()).await.unwrap();
        assert!(store.find_by_digest(&issued.record.digest).await.unwrap().is_none());
    }

    /// Resolves a future that is ready at once.
    fn now<T>(future: impl std::future::Future<Output = Result<T, crate::StoreError>>) -> T {
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(result) => result.unwrap(),
            std::task::Poll::Pending => panic!("MemoryStore futures are ready at once"),
        }
    }

    #[tokio::test]
    async fn concurrent_issue_and_logout_never_leave_an_unindexed_token() {
        let store = MemoryStore::new();
        let user = UserId::from(9u64);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            let user = user.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..200 {
                    if i % 2 == 0 {
                        store.issue(NewToken::access(user.clone())).await.unwrap();
                    } else {
                        store.revoke_all_for_user(&user).await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        store.revoke_all_for_user(&user).await.unwrap();
        assert!(store.is_empty(), "a token survived logout without being indexed");
    }
}
