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

mod layout;
use layout::{details, Nanos, SessionView, Slot, UserTokens};

use super::{counted_revocation, StoreError, StoreFuture, TokenStore};
use crate::clock::{Clock, SystemClock};
use crate::session::{
    ExchangeDecision, ExchangeOutcome, ExchangedSession, NewSession, OnReuse, RefreshExchange, RotatedRefresh,
    SessionId, SessionSummary, SessionTokens, Sessions,
};
use crate::token::{Abilities, TokenDigest, TokenId, TokenKind, TokenName, TokenRecord, UserId};

/// The in-memory token store. Cheap to clone: clones share the same tokens.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    tokens: DashMap<TokenId, Slot, RandomState>,
    // Lock order: an entry of `users` may be held while touching `tokens` or `digests`, never the other
    // way round. Holding a user's entry is the critical section of every change to that user's tokens.
    users: DashMap<UserId, UserTokens, RandomState>,
    /// Digest -> id, kept only with [`MemoryStore::legacy_tokens`].
    digests: Option<DashMap<TokenDigest, TokenId, RandomState>>,
    next_id: AtomicU64,
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
        let Some(user) = self.shared.users.get(user_id) else { return 0 };
        user.ids()
            .map(|id| {
                self.shared
                    .tokens
                    .get(&id)
                    .map_or(0, |slot| 1 + if slot.kind() == TokenKind::Refresh { slot.rotated().len() } else { 0 })
            })
            .sum()
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

    fn put(&self, id: TokenId, slot: Slot) {
        if let Some(digests) = &self.shared.digests {
            digests.insert(slot.digest, id);
            if let Some(old) = self.shared.tokens.get(&id).map(|old| old.digest).filter(|old| *old != slot.digest) {
                digests.remove_if(&old, |_, indexed| *indexed == id);
            }
        }
        self.shared.tokens.insert(id, slot);
    }

    fn delete(&self, id: TokenId) -> bool {
        match self.shared.tokens.remove(&id) {
            Some((_, slot)) => {
                if let Some(digests) = &self.shared.digests {
                    digests.remove_if(&slot.digest, |_, indexed| *indexed == id);
                }
                true
            }
            None => false,
        }
    }

    fn delete_all(&self, ids: impl IntoIterator<Item = TokenId>) -> u64 {
        ids.into_iter().map(|id| u64::from(self.delete(id))).sum()
    }

    /// The user's sessions, oldest first. Reads every one of the user's tokens: call it holding the
    /// user's entry.
    fn sessions_of(&self, user: &UserTokens) -> Vec<SessionView> {
        let mut sessions: Vec<SessionView> = Vec::new();
        for id in user.ids() {
            let Some(slot) = self.shared.tokens.get(&id) else { continue };
            let (session, created, refresh) = (slot.session(), slot.created, slot.kind() == TokenKind::Refresh);
            drop(slot);
            match sessions.iter_mut().find(|s| s.id == session) {
                Some(view) => {
                    view.tokens.push(id);
                    // A session's creation is its refresh token's (kept through exchanges).
                    if refresh || created < view.created {
                        view.created = created;
                    }
                }
                None => sessions.push(SessionView { id: session, created, tokens: vec![id] }),
            }
        }
        sessions.sort_by_key(|s| (s.created, s.id));
        sessions
    }

    fn insert_now(&self, new: NewSession) -> Result<SessionTokens, StoreError> {
        if new.access.is_none() && new.refresh.is_none() {
            return Err(StoreError::invalid_input("a session needs an access or a refresh token"));
        }
        let mut user = self.shared.users.entry(new.user_id.clone()).or_default();
        let mut evicted = Vec::new();
        if new.limit.max().is_some() {
            let sessions = self.sessions_of(&user);
            let evictions = new
                .limit
                .evictions(sessions.len())
                .map_err(|()| StoreError::session_limit(new.limit.max().unwrap_or_default()))?;
            for oldest in sessions.into_iter().take(evictions) {
                user.retain(|id| !oldest.tokens.contains(&id));
                evicted.extend(oldest.tokens);
            }
        }
        let refresh_id = new.refresh.map(|_| self.allocate_id());
        let access_id = new.access.map(|_| self.allocate_id());
        let session_id = SessionId::new(refresh_id.or(access_id).expect("checked above"));
        let shared_details = details(&new.name, &new.abilities, new.family, Vec::new());
        for (id, kind, secret) in
            [(refresh_id, TokenKind::Refresh, new.refresh), (access_id, TokenKind::Access, new.access)]
        {
            let (Some(id), Some(secret)) = (id, secret) else { continue };
            let slot = Slot::new(
                new.user_id.clone(),
                session_id,
                kind,
                secret.digest,
                secret.expires_at,
                new.created_at,
                shared_details.clone(),
            );
            self.put(id, slot);
            user.push(id);
        }
        drop(user);
        self.delete_all(evicted);
        Ok(SessionTokens { session_id, access: access_id, refresh: refresh_id })
    }

    fn exchange_now(&self, exchange: &RefreshExchange) -> ExchangeOutcome {
        let Some(owner) = self.shared.tokens.get(&exchange.token_id).map(|slot| slot.user_id.clone()) else {
            return ExchangeOutcome::Invalid;
        };
        let Some(mut user) = self.shared.users.get_mut(&owner) else { return ExchangeOutcome::Invalid };
        // Under the user's lock: the token must still be indexed (a revocation takes tokens out of the
        // index before it deletes them), and is read again.
        if !user.contains(exchange.token_id) {
            return ExchangeOutcome::Invalid;
        }
        let Some(current) = self
            .shared
            .tokens
            .get(&exchange.token_id)
            .map(|slot| (slot.record(exchange.token_id), slot.family(), slot.rotated().to_vec()))
        else {
            return ExchangeOutcome::Invalid;
        };
        let (current, family, rotated) = current;
        let session = current.session_id;
        let of_session = |id: TokenId| self.shared.tokens.get(&id).is_some_and(|slot| slot.session() == session);
        match exchange.decide(Some(&current), family.as_ref(), &rotated) {
            ExchangeDecision::Invalid => ExchangeOutcome::Invalid,
            ExchangeDecision::Reuse => {
                let taken = match exchange.on_reuse {
                    OnReuse::RevokeSession => user.retain(|id| !of_session(id)),
                    OnReuse::RevokeAllSessions => user.retain(|_| false),
                };
                let now_empty = user.is_empty();
                drop(user);
                if now_empty {
                    self.shared.users.remove_if(&owner, |_, u| u.is_empty());
                }
                let revoked = self.delete_all(taken);
                ExchangeOutcome::Reused { user_id: owner, session_id: session, revoked }
            }
            ExchangeDecision::Rotate => {
                let old_access = user.retain(|id| {
                    id == exchange.token_id
                        || !self
                            .shared
                            .tokens
                            .get(&id)
                            .is_some_and(|s| s.session() == session && s.kind() == TokenKind::Access)
                });
                let access_id = old_access.first().copied().unwrap_or_else(|| self.allocate_id());
                let rotated = exchange.rotated_after(&rotated, current.digest);
                let new_details = details(&current.name, &current.abilities, Some(exchange.next_family), rotated);
                // The refresh token keeps its id and the session's creation time.
                let refresh = Slot::new(
                    owner.clone(),
                    session,
                    TokenKind::Refresh,
                    exchange.refresh.digest,
                    exchange.refresh.expires_at,
                    current.created_at,
                    new_details.clone(),
                );
                let access = Slot::new(
                    owner.clone(),
                    session,
                    TokenKind::Access,
                    exchange.access.digest,
                    exchange.access.expires_at,
                    exchange.now,
                    new_details,
                );
                for extra in old_access.iter().skip(1) {
                    self.delete(*extra);
                }
                self.put(exchange.token_id, refresh);
                self.put(access_id, access);
                user.push(access_id);
                drop(user);
                ExchangeOutcome::Exchanged(ExchangedSession {
                    session_id: session,
                    user_id: owner,
                    name: current.name,
                    abilities: current.abilities,
                    access: access_id,
                    refresh: exchange.token_id,
                })
            }
        }
    }

    fn list_now(&self, user_id: &UserId) -> Vec<SessionSummary> {
        let Some(user) = self.shared.users.get(user_id) else { return Vec::new() };
        let mut list: Vec<SessionSummary> = Vec::new();
        for session in self.sessions_of(&user) {
            let mut summary = SessionSummary {
                id: session.id,
                user_id: user_id.clone(),
                name: TokenName::default(),
                abilities: Abilities::all(),
                created_at: session.created.time(),
                last_used_at: None,
                expires_at: Some(SystemTime::UNIX_EPOCH),
            };
            for id in &session.tokens {
                let Some(slot) = self.shared.tokens.get(id) else { continue };
                if let Some(details) = &slot.details {
                    summary.name = details.name.clone();
                    summary.abilities = details.abilities.clone();
                }
                summary.last_used_at = summary.last_used_at.max(slot.last_used.option(Nanos::NONE));
                summary.expires_at = match (summary.expires_at, slot.expires_at()) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            list.push(summary);
        }
        drop(user);
        list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        list
    }

    fn revoke_now(&self, user_id: &UserId, which: Sessions) -> u64 {
        let taken: Vec<TokenId> = match which {
            Sessions::All => match self.shared.users.remove(user_id) {
                Some((_, user)) => user.ids().collect(),
                None => return 0,
            },
            Sessions::Only(_) | Sessions::AllExcept(_) => {
                let Some(mut user) = self.shared.users.get_mut(user_id) else { return 0 };
                let taken =
                    user.retain(|id| !self.shared.tokens.get(&id).is_some_and(|slot| which.includes(slot.session())));
                let now_empty = user.is_empty();
                drop(user);
                if now_empty {
                    self.shared.users.remove_if(user_id, |_, u| u.is_empty());
                }
                taken
            }
        };
        // Out of the index: nothing can exchange into them any more. The tokens are deleted outside the
        // user's lock, before this returns.
        self.delete_all(taken)
    }

    /// O(stored tokens) to find the expired ones, then one pass over each affected user's tokens.
    fn prune_now(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> u64 {
        let expired_before = Nanos::of(expired_before);
        let created_before = created_before.map(Nanos::of);
        let expired = |slot: &Slot| {
            (slot.expires != Nanos::NEVER && slot.expires < expired_before)
                || created_before.is_some_and(|limit| slot.created < limit)
        };
        let mut by_user: HashMap<UserId, HashSet<TokenId>> = HashMap::new();
        for entry in self.shared.tokens.iter() {
            if expired(entry.value()) {
                by_user.entry(entry.value().user_id.clone()).or_default().insert(*entry.key());
            }
        }
        let mut pruned = 0;
        for (user_id, candidates) in by_user {
            let Some(mut user) = self.shared.users.get_mut(&user_id) else { continue };
            // Checked again under the user's lock: an exchange may have replaced the token since.
            let gone = user.retain(|id| {
                !candidates.contains(&id) || !self.shared.tokens.get(&id).is_some_and(|slot| expired(&slot))
            });
            let now_empty = user.is_empty();
            drop(user);
            if now_empty {
                self.shared.users.remove_if(&user_id, |_, u| u.is_empty());
            }
            pruned += self.delete_all(gone);
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
        StoreFuture::ready(Ok(self.shared.tokens.get(&id).map(|slot| slot.record(id))))
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
        counted_revocation("memory", sessions, StoreFuture::ready(Ok(self.revoke_now(user_id, sessions))))
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
        if let Some(mut slot) = self.shared.tokens.get_mut(&id) {
            slot.last_used = Nanos::of(at);
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
        let found = id.and_then(|id| self.shared.tokens.get(&id).map(|slot| slot.record(id)));
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
