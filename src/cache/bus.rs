//! The invalidation channel between the store and each instance's cache: [`InvalidationBus`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::store::StoreError;
use crate::token::{TokenId, UserId};

/// A boxed, `Send`, `'static` future, as the bus methods return.
pub type BusFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a store write changed, as the bus reports it to the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// These tokens changed or are gone.
    Tokens(Vec<TokenId>),
    /// Every token of this user may have changed.
    User(UserId),
    /// Anything may have changed (a `FLUSHALL`, a truncated table).
    Everything,
}

/// Where a bus delivers: the cache of one instance. Both methods apply their effect before they
/// return (they never block on I/O), which is what makes a [fence](InvalidationBus::fence) mean
/// something.
pub trait InvalidationSink: Send + Sync + 'static {
    /// Evicts what `what` names.
    fn invalidate(&self, what: Invalidation);

    /// The channel was lost or (re)established: invalidations may have been missed. Empties the cache,
    /// ends the lease and makes every fill in flight void; hits resume only after a fence that starts
    /// after this call completes.
    fn reset(&self);
}

/// The invalidation channel of one instance: it delivers every store write that can revoke a token
/// (from any writer, this process or another) to an [`InvalidationSink`], in the order the store
/// committed them, and answers [fences](Self::fence).
///
/// The cache's guarantee rests on one property of [`fence`](Self::fence): **when a fence completes,
/// every invalidation committed before the fence started has been delivered to the sink.** A bus
/// that cannot promise it for some fault must fail the fence (or call [`InvalidationSink::reset`]);
/// the cache then reads the store until a fence succeeds again.
pub trait InvalidationBus: Send + Sync + 'static {
    /// Connects, subscribes, and delivers to `sink` until the cache is dropped; reconnects by itself,
    /// calling [`InvalidationSink::reset`] when a subscription is lost and again once a new one is
    /// in place.
    fn run(&self, sink: Arc<dyn InvalidationSink>) -> BusFuture<()>;

    /// A round trip on the invalidation channel itself (see the trait docs for what it promises).
    fn fence(&self) -> BusFuture<Result<(), StoreError>>;
}

impl<B: InvalidationBus + ?Sized> InvalidationBus for Arc<B> {
    fn run(&self, sink: Arc<dyn InvalidationSink>) -> BusFuture<()> {
        (**self).run(sink)
    }

    fn fence(&self) -> BusFuture<Result<(), StoreError>> {
        (**self).fence()
    }
}

/// The bus of a store that only this process writes through this cache (a
/// [`MemoryStore`](crate::MemoryStore) shared in one process): the cache's own evictions are the
/// only invalidations there are, so every fence succeeds at once.
///
/// Never use it over a store that another instance or program writes: nothing would tell this cache
/// about their revocations.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalBus;

impl InvalidationBus for LocalBus {
    fn run(&self, _sink: Arc<dyn InvalidationSink>) -> BusFuture<()> {
        Box::pin(std::future::pending())
    }

    fn fence(&self) -> BusFuture<Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}
