//! [`StoreFuture`]: what every store method returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::StoreError;

/// The future every [`TokenStore`](super::TokenStore) method returns: `Send + 'static`, resolving to `Result<T, StoreError>`.
///
/// Build it with [`StoreFuture::ready`] when the answer is known at once (no allocation, and the auth
/// layer then never yields to the executor), or [`StoreFuture::new`] around any `async` block. Because it
/// must be `'static`, clone what the future needs (a pool, a connection manager) into it instead of
/// borrowing `self`.
#[must_use = "futures do nothing unless polled"]
pub struct StoreFuture<T> {
    state: StoreFutureState<T>,
}

enum StoreFutureState<T> {
    Ready(Option<Result<T, StoreError>>),
    Pending(Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>),
}

impl<T> StoreFuture<T> {
    /// A future that is already complete.
    #[inline]
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self { state: StoreFutureState::Ready(Some(result)) }
    }

    /// Wraps (and boxes) any `Send + 'static` future.
    pub fn new<F>(future: F) -> Self
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        Self { state: StoreFutureState::Pending(Box::pin(future)) }
    }

    /// The result, if it is already known, without polling; otherwise the future back.
    #[inline]
    pub fn try_take_ready(self) -> Result<Result<T, StoreError>, Self> {
        match self.state {
            StoreFutureState::Ready(Some(result)) => Ok(result),
            state => Err(Self { state }),
        }
    }
}

// The ready value is never pinned in place, and the pending future is boxed.
impl<T> Unpin for StoreFuture<T> {}

impl<T: Send + 'static> StoreFuture<T> {
    /// Runs `f` on the success value once it is known, keeping a ready future ready.
    pub(crate) fn inspect_ok(self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        match self.try_take_ready() {
            Ok(result) => StoreFuture::ready(result.inspect(f)),
            Err(pending) => StoreFuture::new(async move { pending.await.inspect(f) }),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            StoreFutureState::Ready(_) => "ready",
            StoreFutureState::Pending(_) => "pending",
        };
        f.debug_tuple("StoreFuture").field(&state).finish()
    }
}

impl<T> Future for StoreFuture<T> {
    type Output = Result<T, StoreError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            StoreFutureState::Ready(result) => Poll::Ready(result.take().expect("StoreFuture polled after completion")),
            StoreFutureState::Pending(future) => future.as_mut().poll(cx),
        }
    }
}
