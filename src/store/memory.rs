//! [`MemoryStore`]: the embedded default store, built on `dashmap`.
//!
//! Lookups are one sharded hash-map read; the record is shared (`Arc`), so authenticating a request
//! copies nothing. A per-user index makes [`revoke_all_for_user`](crate::TokenStore::revoke_all_for_user)
//! cost O(that user's tokens), whatever the total. State lives in one process: for several instances
//! behind a load balancer use a shared store (Redis or SQL).
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
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use super::{StoreFuture, TokenStore};
use crate::clock::{Clock, SystemClock};
use crate::token::{NewTokenRecord, TokenDigest, TokenId, TokenKind, TokenRecord, UserId};

/// The in-memory token store. Cheap to clone: clones share the same tokens.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    tokens: DashMap<TokenId, Arc<TokenRecord>, RandomState>,
    // Lock order: an entry of `users` may be held while touching `tokens`, never the other way round.
    users: DashMap<UserId, Vec<TokenId>, RandomState>,
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
                next_id: AtomicU64::new(1),
            }),
        }
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

    /// Spawns a tokio task that prunes expired tokens every `interval` (keeping each for `grace` after it
    /// expires). The task stops when every other clone of the store has been dropped.
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
                let pruned = MemoryStore { shared }.prune(cutoff, None);
                if pruned > 0 {
                    tracing::debug!(pruned, "pruned expired tokens");
                }
            }
        })
    }

    fn insert_now(&self, token: NewTokenRecord) -> TokenId {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let record = Arc::new(token.with_id(id));
        // Holding the user's index entry while inserting makes insert and revoke_all_for_user atomic
        // with respect to each other: a token is never stored without being indexed.
        let mut ids = self.shared.users.entry(record.user_id.clone()).or_default();
        ids.push(id);
        self.shared.tokens.insert(id, record);
        drop(ids);
        id
    }

    fn revoke_now(&self, id: TokenId) -> bool {
        let Some(user_id) = self.shared.tokens.get(&id).map(|r| r.user_id.clone()) else {
            return false;
        };
        let Some(mut ids) = self.shared.users.get_mut(&user_id) else {
            return false;
        };
        let removed = self.shared.tokens.remove(&id).is_some();
        ids.retain(|&other| other != id);
        let now_empty = ids.is_empty();
        drop(ids);
        if now_empty {
            self.shared.users.remove_if(&user_id, |_, ids| ids.is_empty());
        }
        removed
    }

    fn revoke_all_now(&self, user_id: &UserId) -> u64 {
        let Some(mut ids) = self.shared.users.get_mut(user_id) else {
            return 0;
        };
        let mut removed = 0;
        for id in ids.drain(..) {
            removed += u64::from(self.shared.tokens.remove(&id).is_some());
        }
        drop(ids);
        self.shared.users.remove_if(user_id, |_, ids| ids.is_empty());
        removed
    }

    fn prune(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> u64 {
        let expired: Vec<TokenId> = self
            .shared
            .tokens
            .iter()
            .filter(|r| {
                r.expires_at.is_some_and(|at| at < expired_before)
                    || created_before.is_some_and(|limit| r.created_at < limit)
            })
            .map(|r| r.id)
            .collect();
        expired.into_iter().map(|id| u64::from(self.revoke_now(id))).sum()
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
    fn find(&self, id: TokenId) -> StoreFuture<Option<Arc<TokenRecord>>> {
        // Clone the Arc out and drop the shard guard at once; never hold it across an await.
        StoreFuture::ready(Ok(self.shared.tokens.get(&id).map(|r| Arc::clone(r.value()))))
    }

    fn insert(&self, token: NewTokenRecord) -> StoreFuture<TokenId> {
        StoreFuture::ready(Ok(self.insert_now(token)))
    }

    fn revoke(&self, id: TokenId) -> StoreFuture<bool> {
        StoreFuture::ready(Ok(self.revoke_now(id)))
    }

    fn revoke_all_for_user(&self, user_id: &UserId) -> StoreFuture<u64> {
        StoreFuture::ready(Ok(self.revoke_all_now(user_id)))
    }

    fn mark_refresh_rotated(&self, id: TokenId) -> StoreFuture<bool> {
        let changed = match self.shared.tokens.get_mut(&id) {
            Some(mut record) if record.kind == TokenKind::Refresh => {
                Arc::make_mut(&mut record).kind = TokenKind::RotatedRefresh;
                true
            }
            _ => false,
        };
        StoreFuture::ready(Ok(changed))
    }

    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        StoreFuture::ready(Ok(self.prune(expired_before, created_before)))
    }

    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        if let Some(mut record) = self.shared.tokens.get_mut(&id) {
            Arc::make_mut(&mut record).last_used_at = Some(at);
        }
        StoreFuture::ready(Ok(()))
    }

    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<Arc<TokenRecord>>> {
        // O(n): legacy id-less tokens are an opt-in compatibility path, not the hot path.
        let found = self.shared.tokens.iter().find(|r| r.digest.ct_eq(digest)).map(|r| Arc::clone(r.value()));
        StoreFuture::ready(Ok(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    async fn revoke_one_updates_the_user_index() {
        let store = MemoryStore::new();
        let a = store.issue(NewToken::access(1u64)).await.unwrap();
        assert!(store.revoke(a.record.id).await.unwrap());
        assert!(!store.revoke(a.record.id).await.unwrap());
        assert_eq!(store.user_count(), 0);
    }

    #[tokio::test]
    async fn only_one_caller_rotates_a_refresh_token() {
        let store = MemoryStore::new();
        let r = store.issue(NewToken::refresh(1u64)).await.unwrap();
        let a = store.issue(NewToken::access(1u64)).await.unwrap();
        assert!(store.mark_refresh_rotated(r.record.id).await.unwrap());
        assert!(!store.mark_refresh_rotated(r.record.id).await.unwrap());
        assert!(!store.mark_refresh_rotated(a.record.id).await.unwrap());
        assert_eq!(store.find(r.record.id).await.unwrap().unwrap().kind, TokenKind::RotatedRefresh);
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
        let pruned = store.prune_expired(t0, Some(t0 + Duration::from_secs(1))).await.unwrap();
        assert_eq!(pruned, 1);
        assert!(store.is_empty() && store.user_count() == 0);
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
