//! [`MemoryStore`]: the embedded default store, built on `dashmap`.
//!
//! Lookups are one sharded hash-map read; the record is shared (`Arc`), so authenticating a request
//! copies nothing. A token a thread looks up again and again (a service account, a busy client) is
//! served from that thread's own copy, so that many cores authenticating the same token do not contend
//! on one lock and one reference count; any change to a stored token (revocation, rotation, last use)
//! invalidates every copy at once. A per-user index makes [`revoke_all_for_user`](crate::TokenStore::revoke_all_for_user)
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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
    users: DashMap<UserId, UserTokens, RandomState>,
    next_id: AtomicU64,
    changes: Changes,
}

/// Counts the changes to stored tokens, so that per-thread copies of hot tokens ([`hot`]) know when
/// they are out of date. Inserting a token is not a change: no copy of an id that did not exist can
/// be out of date.
///
/// A seqlock: `version` is odd while a change is being made and goes up by two per change; changes
/// are made one at a time. Every lookup reads `version` and nothing else here, so it sits on a cache
/// line of its own, away from `next_id`, which every insert writes.
#[repr(align(128))]
struct Changes {
    /// Names this store in the per-thread caches.
    store: u64,
    version: AtomicU64,
    writer: Mutex<()>,
}

impl Changes {
    fn new() -> Self {
        static NEXT_STORE: AtomicU64 = AtomicU64::new(1);
        Self { store: NEXT_STORE.fetch_add(1, Ordering::Relaxed), version: AtomicU64::new(0), writer: Mutex::new(()) }
    }

    /// The version of the stored tokens now; odd while a change is being made.
    #[inline]
    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Marks the start of a change; the change ends when the guard is dropped (even by a panic).
    fn begin(&self) -> Change<'_> {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.version.fetch_add(1, Ordering::SeqCst);
        Change { changes: self, _writer: writer }
    }
}

struct Change<'a> {
    changes: &'a Changes,
    _writer: MutexGuard<'a, ()>,
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.changes.version.fetch_add(1, Ordering::SeqCst);
    }
}

/// The ids of one user's tokens. Most users hold one or two: those stay inline in the index, which
/// saves an allocation per user and, at logout, a cache miss on a store too big for the cache.
enum UserTokens {
    /// Up to two ids; `0` marks a free place (ids start at 1).
    Inline([TokenId; 2]),
    /// Three or more.
    Heap(Vec<TokenId>),
}

impl Default for UserTokens {
    fn default() -> Self {
        UserTokens::Inline([0; 2])
    }
}

impl UserTokens {
    fn push(&mut self, id: TokenId) {
        match self {
            UserTokens::Inline(ids) => match ids.iter_mut().find(|place| **place == 0) {
                Some(place) => *place = id,
                None => {
                    let mut heap = Vec::with_capacity(4);
                    heap.extend_from_slice(ids);
                    heap.push(id);
                    *self = UserTokens::Heap(heap);
                }
            },
            UserTokens::Heap(ids) => ids.push(id),
        }
    }

    fn remove(&mut self, id: TokenId) {
        match self {
            UserTokens::Inline(ids) => ids.iter_mut().filter(|place| **place == id).for_each(|place| *place = 0),
            UserTokens::Heap(ids) => ids.retain(|&other| other != id),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            UserTokens::Inline(ids) => ids == &[0; 2],
            UserTokens::Heap(ids) => ids.is_empty(),
        }
    }

    /// Empties the list, returning the ids it held.
    fn take(&mut self) -> impl Iterator<Item = TokenId> {
        let ids = match std::mem::take(self) {
            UserTokens::Inline(ids) => TakenIds::Inline(ids.into_iter()),
            UserTokens::Heap(ids) => TakenIds::Heap(ids.into_iter()),
        };
        ids.filter(|&id| id != 0)
    }
}

enum TakenIds {
    Inline(std::array::IntoIter<TokenId, 2>),
    Heap(std::vec::IntoIter<TokenId>),
}

impl Iterator for TakenIds {
    type Item = TokenId;

    fn next(&mut self) -> Option<TokenId> {
        match self {
            TakenIds::Inline(ids) => ids.next(),
            TakenIds::Heap(ids) => ids.next(),
        }
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
                next_id: AtomicU64::new(1),
                changes: Changes::new(),
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

    #[inline]
    fn find_now(&self, id: TokenId) -> Option<Arc<TokenRecord>> {
        let changes = &self.shared.changes;
        let version = changes.version();
        if let Some(copy) = hot::get(changes.store, id, version) {
            return Some(copy);
        }
        // Clone the Arc out and drop the shard guard at once; never hold it across an await.
        let found = self.shared.tokens.get(&id).map(|r| Arc::clone(r.value()));
        if let Some(record) = &found {
            // Only if no change started or ended around the lookup: then `record` is the token as of
            // `version`.
            if version % 2 == 0 && changes.version() == version {
                hot::offer(changes.store, id, version, record);
            }
        }
        found
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
        let _change = self.shared.changes.begin();
        let Some(user_id) = self.shared.tokens.get(&id).map(|r| r.user_id.clone()) else {
            return false;
        };
        let Some(mut ids) = self.shared.users.get_mut(&user_id) else {
            return false;
        };
        let removed = self.shared.tokens.remove(&id).is_some();
        ids.remove(id);
        let now_empty = ids.is_empty();
        drop(ids);
        if now_empty {
            self.shared.users.remove_if(&user_id, |_, ids| ids.is_empty());
        }
        removed
    }

    fn revoke_all_now(&self, user_id: &UserId) -> u64 {
        let _change = self.shared.changes.begin();
        let Some(mut ids) = self.shared.users.get_mut(user_id) else {
            return 0;
        };
        let mut removed = 0;
        for id in ids.take() {
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

/// Per-thread copies of the tokens a thread authenticates again and again.
///
/// One token used by many cores at once (a service account, a load test) would otherwise have them all
/// write the same two cache lines on every request: the map shard's lock and the record's reference
/// count. A thread serves such a token from its own copy instead, and writes only its own memory. A
/// copy is made on a token's second lookup in a row by the same thread, so tokens seen once cost no
/// copy; it is used only while [`Changes`] says no stored token has changed since it was made.
mod hot {
    use std::cell::RefCell;
    use std::sync::Arc;

    use crate::token::{TokenId, TokenRecord};

    /// Copies per thread: direct-mapped, a new token evicts the one in its place.
    const PLACES: usize = 64;

    struct Place {
        /// The store (0: none) and token this place holds, and the version its copy is valid for.
        store: u64,
        id: TokenId,
        version: u64,
        copy: Option<Arc<TokenRecord>>,
        /// The stored record the copy was made from: while the map still holds this very `Arc`, the
        /// token did not change (changes replace the `Arc`, as this one is never unique), and a new
        /// version only needs the copy to be revalidated.
        source: Option<Arc<TokenRecord>>,
        /// The last token looked up through this place: a copy is made when it comes again.
        last: (u64, TokenId),
    }

    impl Place {
        const EMPTY: Place = Place { store: 0, id: 0, version: 0, copy: None, source: None, last: (0, 0) };
    }

    thread_local! {
        static PLACES_OF_THIS_THREAD: RefCell<[Place; PLACES]> =
            const { RefCell::new([const { Place::EMPTY }; PLACES]) };
    }

    fn place(store: u64, id: TokenId) -> usize {
        // Ids are consecutive: the low bits spread them; the store is mixed in so stores do not collide.
        (id ^ store.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as usize % PLACES
    }

    /// This thread's copy of token `id` of `store`, if it is valid at `version`.
    #[inline]
    pub(super) fn get(store: u64, id: TokenId, version: u64) -> Option<Arc<TokenRecord>> {
        // `try_`: the thread may be shutting down, or (never in practice) already inside this cache.
        PLACES_OF_THIS_THREAD
            .try_with(|places| {
                let places = places.try_borrow().ok()?;
                let place = &places[place(store, id)];
                if place.store == store && place.id == id && place.version == version {
                    place.copy.clone()
                } else {
                    None
                }
            })
            .ok()
            .flatten()
    }

    /// Tells the cache that `record` is token `id` of `store` at `version`.
    pub(super) fn offer(store: u64, id: TokenId, version: u64, record: &Arc<TokenRecord>) {
        let _ = PLACES_OF_THIS_THREAD.try_with(|places| {
            let Ok(mut places) = places.try_borrow_mut() else { return };
            let place = &mut places[place(store, id)];
            let held = place.store == store && place.id == id;
            if held && place.source.as_ref().is_some_and(|source| Arc::ptr_eq(source, record)) {
                place.version = version;
            } else if held || place.last == (store, id) {
                *place = Place {
                    store,
                    id,
                    version,
                    copy: Some(Arc::new(TokenRecord::clone(record))),
                    source: Some(Arc::clone(record)),
                    last: (store, id),
                };
            } else {
                place.last = (store, id);
            }
        });
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
        StoreFuture::ready(Ok(self.find_now(id)))
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
        let _change = self.shared.changes.begin();
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
        let _change = self.shared.changes.begin();
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
    async fn a_hot_token_is_not_found_once_revoked() {
        let store = MemoryStore::new();
        let a = store.issue(NewToken::access(1u64)).await.unwrap();
        let b = store.issue(NewToken::access(1u64)).await.unwrap();
        for _ in 0..3 {
            assert!(store.find(a.record.id).await.unwrap().is_some());
        }
        assert!(store.revoke(a.record.id).await.unwrap());
        assert!(store.find(a.record.id).await.unwrap().is_none());
        for _ in 0..3 {
            assert!(store.find(b.record.id).await.unwrap().is_some());
        }
        assert_eq!(store.revoke_all_for_user(&1u64.into()).await.unwrap(), 1);
        assert!(store.find(b.record.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_hot_token_shows_every_change() {
        let store = MemoryStore::new();
        let r = store.issue(NewToken::refresh(1u64)).await.unwrap();
        for _ in 0..3 {
            assert_eq!(store.find(r.record.id).await.unwrap().unwrap().kind, TokenKind::Refresh);
        }
        assert!(store.mark_refresh_rotated(r.record.id).await.unwrap());
        assert_eq!(store.find(r.record.id).await.unwrap().unwrap().kind, TokenKind::RotatedRefresh);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        store.touch_last_used(r.record.id, at).await.unwrap();
        for _ in 0..3 {
            assert_eq!(store.find(r.record.id).await.unwrap().unwrap().last_used_at, Some(at));
        }
        assert_eq!(
            store.prune_expired(SystemTime::now(), Some(SystemTime::now() + Duration::from_secs(1))).await.unwrap(),
            1
        );
        assert!(store.find(r.record.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn hot_tokens_of_two_stores_do_not_mix() {
        let (one, two) = (MemoryStore::new(), MemoryStore::new());
        let a = one.issue(NewToken::access(1u64)).await.unwrap();
        let b = two.issue(NewToken::access(2u64)).await.unwrap();
        assert_eq!(a.record.id, b.record.id);
        for _ in 0..3 {
            assert_eq!(one.find(a.record.id).await.unwrap().unwrap().user_id, UserId::from(1u64));
            assert_eq!(two.find(b.record.id).await.unwrap().unwrap().user_id, UserId::from(2u64));
        }
    }

    #[test]
    fn a_token_revoked_on_one_thread_is_gone_on_every_other() {
        let store = MemoryStore::new();
        let mut ids = Vec::new();
        for user in 0..8u64 {
            let issued = store.issue(NewToken::access(user));
            ids.push(futures_now(issued).record.id);
        }
        let barrier = std::sync::Barrier::new(5);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    // Make every token hot on this thread, wait for the logout, then look again.
                    for _ in 0..3 {
                        for &id in &ids {
                            assert!(futures_now(store.find(id)).is_some());
                        }
                    }
                    barrier.wait();
                    barrier.wait();
                    for (user, &id) in ids.iter().enumerate() {
                        assert_eq!(futures_now(store.find(id)).is_some(), user % 2 == 1, "token of user {user}");
                    }
                });
            }
            barrier.wait();
            for user in (0..8u64).step_by(2) {
                assert_eq!(futures_now(store.revoke_all_for_user(&user.into())), 1);
            }
            barrier.wait();
        });
    }

    /// Resolves a `MemoryStore` future, which is always ready.
    fn futures_now<T>(future: impl std::future::Future<Output = Result<T, crate::StoreError>>) -> T {
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
