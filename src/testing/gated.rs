//! [`GatedStore`]: a store wrapper that holds a chosen operation at a gate, to force interleavings.

use super::*;

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

pub(super) struct Armed {
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
