//! Token stores: where token records live.
//!
//! [`TokenStore`] is the pluggable backend. It is object-safe (use it as `Arc<dyn TokenStore>`) and every
//! method returns a [`StoreFuture`]: `Send + 'static`, and free of allocation when the answer is already
//! known, as it is for the in-memory store. [`TokenStoreExt`] adds the operations built on top of the
//! trait, such as [`issue`](TokenStoreExt::issue), to every store.
//!
//! Stores shipped with the crate: [`MemoryStore`] (always), `RedisStore` (feature `redis`) and `SqlStore`
//! (features `postgres`, `mysql`, `sqlite`).
//!
//! ```
//! use tower_token_auth::{MemoryStore, NewToken, TokenStore, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_token_auth::StoreError> {
//! let store = MemoryStore::new();
//! let issued = store.issue(NewToken::access(42u64).name("laptop")).await?;
//! let found = store.find(issued.record.id).await?.expect("just issued");
//! assert_eq!(found.name, "laptop");
//!
//! // Log out everywhere: every token of user 42, access and refresh, in one call.
//! assert_eq!(store.revoke_all_for_user(&42u64.into()).await?, 1);
//! assert!(store.find(issued.record.id).await?.is_none());
//! # Ok(())
//! # }
//! ```

pub mod memory;
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))))]
pub mod sql;
#[cfg(feature = "sql")]
pub use sql::SqlStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use crate::token::{IssuedToken, NewToken, NewTokenRecord, PlainTextToken, TokenDigest, TokenId, TokenRecord, UserId};

pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;

type BoxError = Box<dyn StdError + Send + Sync>;

/// A failure of the store itself (unreachable, timed out, corrupt data). Never "token not found".
///
/// The auth layer answers a store error with `503 Service Unavailable`: it fails closed and does not
/// pretend the token is invalid (which would make clients throw valid tokens away).
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<BoxError>,
}

/// What kind of [`StoreError`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend could not be reached or answered with an error.
    Backend,
    /// The operation did not finish in time.
    Timeout,
    /// The backend held data this crate cannot read.
    Corrupt,
    /// The operating system's random number generator failed while issuing a token.
    Random,
}

impl StoreError {
    /// A backend error wrapping `source`.
    pub fn backend(source: impl Into<BoxError>) -> Self {
        Self { kind: StoreErrorKind::Backend, source: Some(source.into()) }
    }

    /// A timeout.
    pub fn timeout() -> Self {
        Self { kind: StoreErrorKind::Timeout, source: None }
    }

    /// Unreadable data; `what` says what was wrong (never include secrets).
    pub fn corrupt(what: impl Into<BoxError>) -> Self {
        Self { kind: StoreErrorKind::Corrupt, source: Some(what.into()) }
    }

    pub(crate) fn random(source: getrandom::Error) -> Self {
        Self { kind: StoreErrorKind::Random, source: Some(Box::new(source)) }
    }

    /// The kind of error.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError").field("kind", &self.kind).field("source", &self.source).finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Backend => "token store backend error",
            StoreErrorKind::Timeout => "token store timed out",
            StoreErrorKind::Corrupt => "token store returned unreadable data",
            StoreErrorKind::Random => "the system random number generator failed",
        };
        match &self.source {
            Some(source) => write!(f, "{what}: {source}"),
            None => f.write_str(what),
        }
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// The future every [`TokenStore`] method returns: `Send + 'static`, resolving to `Result<T, StoreError>`.
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

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            StoreFutureState::Ready(_) => "ready",
            StoreFutureState::Pending(_) => "pending",
        };
        f.debug_tuple("StoreFuture").field(&state).finish()
    }
}

/// A place to keep token records: the pluggable backend of [`TokenAuthLayer`](crate::TokenAuthLayer) and
/// [`LogoutService`](crate::LogoutService).
///
/// Implementations store only digests, never secrets, and report their own failures as [`StoreError`]
/// (a missing token is `Ok(None)`, not an error). Validation (digest comparison, expiry, token kind) is
/// done by the caller, so a store only has to persist and fetch faithfully.
///
/// The trait is object-safe: `Arc<dyn TokenStore>` is itself a `TokenStore`.
pub trait TokenStore: Send + Sync + 'static {
    /// The record with this id, or `None`. This is the hot path: one lookup by primary key.
    fn find(&self, id: TokenId) -> StoreFuture<Option<Arc<TokenRecord>>>;

    /// Stores a new token and returns the id the store assigned to it.
    fn insert(&self, token: NewTokenRecord) -> StoreFuture<TokenId>;

    /// Deletes one token. Returns whether it existed.
    fn revoke(&self, id: TokenId) -> StoreFuture<bool>;

    /// Deletes every token of `user_id`, access and refresh, in one atomic operation. Returns how many.
    fn revoke_all_for_user(&self, user_id: &UserId) -> StoreFuture<u64>;

    /// Atomically turns the refresh token `id` into [`TokenKind::RotatedRefresh`](crate::token::TokenKind).
    /// Returns `true` only for the caller that changed it from `Refresh`; every other caller (a concurrent
    /// exchange, an already rotated token, a missing token) gets `false`.
    fn mark_refresh_rotated(&self, id: TokenId) -> StoreFuture<bool>;

    /// Deletes tokens whose `expires_at` is before `expired_before`, and, when `created_before` is given,
    /// tokens created before it (Sanctum's `sanctum:prune-expired`). Returns how many.
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64>;

    /// Records that token `id` authenticated a request at `at`. Called only when the layer's last-used
    /// tracking is switched on, throttled, and off the request path. The default does nothing.
    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        let _ = (id, at);
        StoreFuture::ready(Ok(()))
    }

    /// Finds a token by digest alone, for legacy Sanctum tokens sent without `{id}|`. Used only when the
    /// layer enables legacy tokens. The default finds nothing.
    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<Arc<TokenRecord>>> {
        let _ = digest;
        StoreFuture::ready(Ok(None))
    }
}

macro_rules! forward_token_store {
    ($($ty:ty),*) => {$(
        impl<T: TokenStore + ?Sized> TokenStore for $ty {
            #[inline]
            fn find(&self, id: TokenId) -> StoreFuture<Option<Arc<TokenRecord>>> {
                (**self).find(id)
            }
            fn insert(&self, token: NewTokenRecord) -> StoreFuture<TokenId> {
                (**self).insert(token)
            }
            fn revoke(&self, id: TokenId) -> StoreFuture<bool> {
                (**self).revoke(id)
            }
            fn revoke_all_for_user(&self, user_id: &UserId) -> StoreFuture<u64> {
                (**self).revoke_all_for_user(user_id)
            }
            fn mark_refresh_rotated(&self, id: TokenId) -> StoreFuture<bool> {
                (**self).mark_refresh_rotated(id)
            }
            fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
                (**self).prune_expired(expired_before, created_before)
            }
            fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
                (**self).touch_last_used(id, at)
            }
            fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<Arc<TokenRecord>>> {
                (**self).find_by_digest(digest)
            }
        }
    )*};
}

forward_token_store!(Arc<T>, Box<T>);

/// Operations built on [`TokenStore`], available on every store.
pub trait TokenStoreExt: TokenStore {
    /// Issues a token: generates a Sanctum-format secret from the OS CSPRNG, stores its SHA-256 digest,
    /// and returns the plain text `{id}|{secret}`, which cannot be recovered afterwards.
    fn issue(&self, token: NewToken) -> impl Future<Output = Result<IssuedToken, StoreError>> + Send + 'static {
        let prepared = generate_secret_and_record(token);
        let insert = prepared.as_ref().ok().map(|(_, record)| self.insert(record.clone()));
        async move {
            let (secret, record) = prepared?;
            let id = insert.expect("insert is prepared whenever the secret is").await?;
            Ok(IssuedToken { plain_text: PlainTextToken::new(id, &secret), record: record.with_id(id) })
        }
    }
}

impl<T: TokenStore + ?Sized> TokenStoreExt for T {}

fn generate_secret_and_record(token: NewToken) -> Result<(zeroize::Zeroizing<String>, NewTokenRecord), StoreError> {
    let secret = crate::token::generate_secret(&token.prefix).map_err(StoreError::random)?;
    let digest = TokenDigest::of(secret.as_bytes());
    Ok((secret, token.into_record(digest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_error_display_names_the_kind_and_source() {
        let e = StoreError::backend("connection refused");
        assert_eq!(e.to_string(), "token store backend error: connection refused");
        assert_eq!(StoreError::timeout().kind(), StoreErrorKind::Timeout);
        assert!(e.source().is_some());
    }

    #[tokio::test]
    async fn ready_store_future_resolves_without_polling() {
        let f = StoreFuture::ready(Ok(5));
        assert_eq!(f.try_take_ready().unwrap().unwrap(), 5);
        let f = StoreFuture::new(async { Ok(6) });
        let f = f.try_take_ready().unwrap_err();
        assert_eq!(f.await.unwrap(), 6);
    }
}
