//! Token stores: where token records live.
//!
//! [`TokenStore`] is the pluggable backend. It is object-safe (use it as `Arc<dyn TokenStore>`) and every
//! method returns a [`StoreFuture`]: `Send + 'static`, and free of allocation when the answer is already
//! known, as it is for the in-memory store. [`TokenStoreExt`] adds the operations built on top of the
//! trait, such as [`issue`](TokenStoreExt::issue), to every store.
//!
//! Stores shipped with the crate: [`MemoryStore`] (always), `RedisStore` (feature `redis`) and `SqlStore`
//! (features `postgres`, `mysql`, `sqlite`). To write your own, see [`TokenStore`]; the contract the
//! crate's stores pass is exported as `tower_token_auth::testing::store_contract` (feature `test-util`).
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
//! assert_eq!(store.list_sessions(&42u64.into()).await?.len(), 1); // a token of its own is a session
//!
//! // Log out everywhere: every token of user 42, access and refresh, in one call.
//! assert_eq!(store.revoke_all_for_user(&42u64.into()).await?, 1);
//! assert!(store.find(issued.record.id).await?.is_none());
//! # Ok(())
//! # }
//! ```

mod error;
mod future;
pub mod memory;
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))))]
pub mod sql;
#[cfg(feature = "sql")]
pub use sql::SqlStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use crate::session::NewToken;
use crate::session::{ExchangeOutcome, NewSession, RefreshExchange, SessionSummary, SessionTokens, Sessions};
use crate::token::{IssuedToken, PlainTextToken, TokenDigest, TokenId, TokenKind, TokenRecord, UserId};

pub use error::{StoreError, StoreErrorKind};
pub use future::StoreFuture;
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;

/// What every store of the crate returns from [`TokenStore::revoke_sessions`]: the revocation, counted
/// in the [metrics](crate::observability) where it happens, whoever asked for it.
pub(crate) fn counted_revocation(
    store: &'static str,
    sessions: Sessions,
    revoke: StoreFuture<u64>,
) -> StoreFuture<u64> {
    let label = match sessions {
        Sessions::All => "all",
        Sessions::Only(_) => "only",
        Sessions::AllExcept(_) => "all_except",
    };
    revoke.inspect_ok(move |tokens| crate::observability::record::revoked(store, label, *tokens))
}

/// A place to keep tokens and sessions: the pluggable backend of [`TokenAuthLayer`](crate::TokenAuthLayer),
/// [`LogoutService`](crate::LogoutService) and [`RefreshTokens`](crate::refresh::RefreshTokens).
///
/// Implementations store only digests, never secrets, and report their own failures as [`StoreError`]
/// (a missing token is `Ok(None)`, not an error). Checking a token (digest, expiry, kind) is done by the
/// caller, except inside [`exchange_refresh`](Self::exchange_refresh), which must decide and act in one
/// step and uses [`RefreshExchange::decide`] for the rules.
///
/// **Atomicity.** Each method is one atomic operation on the backend: whatever a method's docs say
/// happens together must not be observable half-done, nor interleave with another method's effects on
/// the same user (lock the user, or use a transaction or a script). The crate never builds a guarantee
/// out of two calls. The shared contract (`tower_token_auth::testing::store_contract`, feature
/// `test-util`) checks this, including forced interleavings of exchanges with logouts and reuse.
///
/// The trait is object-safe: `Arc<dyn TokenStore>` is itself a `TokenStore`.
///
/// # Implementing it
///
/// Every method returns a [`StoreFuture`], which must be `'static`: clone what the future needs (a pool,
/// a client, an `Arc` of your state) into it rather than borrowing `self` (a future borrowing `self`
/// fails with E0521). `async fn` cannot be used in the impl (E0053: the signature must match); write
/// `StoreFuture::new(async move { .. })`, or `StoreFuture::ready(..)` when the answer is known at once.
///
/// A complete, if naive, store (one mutex around everything, so each method is trivially atomic):
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use std::time::SystemTime;
/// use tower_token_auth::session::{
///     ExchangeDecision, ExchangeOutcome, ExchangedSession, NewSession, RefreshExchange, RotatedRefresh, SessionId,
///     SessionSummary, SessionTokens, Sessions,
/// };
/// use tower_token_auth::{StoreError, StoreFuture, TokenDigest, TokenId, TokenKind, TokenRecord, TokenStore, UserId};
///
/// #[derive(Clone, Default)]
/// struct MyStore(Arc<Mutex<State>>);
///
/// #[derive(Default)]
/// struct State {
///     next_id: TokenId,
///     tokens: HashMap<TokenId, TokenRecord>,
///     /// Per session with a refresh token: its family digest and retry list.
///     families: HashMap<SessionId, (Option<TokenDigest>, Vec<RotatedRefresh>)>,
/// }
///
/// impl State {
///     fn session_ids(&self, user: &UserId, which: Sessions) -> Vec<TokenId> {
///         let selected = |t: &&TokenRecord| t.user_id == *user && which.includes(t.session_id);
///         self.tokens.values().filter(selected).map(|t| t.id).collect()
///     }
///
///     fn revoke(&mut self, user: &UserId, which: Sessions) -> u64 {
///         let ids = self.session_ids(user, which);
///         for id in &ids {
///             if let Some(t) = self.tokens.remove(id) {
///                 self.families.remove(&t.session_id);
///             }
///         }
///         ids.len() as u64
///     }
/// }
///
/// impl TokenStore for MyStore {
///     fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
///         StoreFuture::ready(Ok(self.0.lock().unwrap().tokens.get(&id).cloned()))
///     }
///
///     fn insert(&self, new: NewSession) -> StoreFuture<SessionTokens> {
///         let mut state = self.0.lock().unwrap();
///         // A real store also applies `new.limit` here; see `SessionLimit::evictions`.
///         let session_id = SessionId::new(state.next_id + 1);
///         let mut ids = [None, None];
///         for (slot, (kind, secret)) in [(TokenKind::Access, new.access), (TokenKind::Refresh, new.refresh)].into_iter().enumerate() {
///             let Some(secret) = secret else { continue };
///             state.next_id += 1;
///             let id = state.next_id;
///             let record = TokenRecord {
///                 digest: secret.digest, id, session_id, kind, expires_at: secret.expires_at,
///                 user_id: new.user_id.clone(), created_at: new.created_at, last_used_at: None,
///                 name: new.name.clone(), abilities: new.abilities.clone(),
///             };
///             state.tokens.insert(id, record);
///             ids[slot] = Some(id);
///         }
///         if new.refresh.is_some() {
///             state.families.insert(session_id, (new.family, Vec::new()));
///         }
///         StoreFuture::ready(Ok(SessionTokens { session_id, access: ids[0], refresh: ids[1] }))
///     }
///
///     fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
///         let mut state = self.0.lock().unwrap();
///         let current = state.tokens.get(&exchange.token_id).cloned();
///         let (family, rotated) =
///             current.as_ref().and_then(|t| state.families.get(&t.session_id)).cloned().unwrap_or_default();
///         let outcome = match (exchange.decide(current.as_ref(), family.as_ref(), &rotated), current) {
///             (ExchangeDecision::Rotate, Some(refresh)) => {
///                 let session = refresh.session_id;
///                 let list = exchange.rotated_after(&rotated, refresh.digest);
///                 state.families.insert(session, (Some(exchange.next_family), list));
///                 // Replace the session's tokens: the refresh token keeps its id, the access token is new.
///                 state.tokens.retain(|_, t| t.session_id != session || t.kind == TokenKind::Refresh);
///                 let mut new_refresh = refresh.clone();
///                 new_refresh.digest = exchange.refresh.digest;
///                 new_refresh.expires_at = exchange.refresh.expires_at;
///                 state.next_id += 1;
///                 let access_id = state.next_id;
///                 let mut access = new_refresh.clone();
///                 access.id = access_id;
///                 access.kind = TokenKind::Access;
///                 access.digest = exchange.access.digest;
///                 access.expires_at = exchange.access.expires_at;
///                 access.created_at = exchange.now;
///                 state.tokens.insert(refresh.id, new_refresh);
///                 state.tokens.insert(access_id, access);
///                 ExchangeOutcome::Exchanged(ExchangedSession {
///                     session_id: session, user_id: refresh.user_id, name: refresh.name,
///                     abilities: refresh.abilities, access: access_id, refresh: refresh.id,
///                 })
///             }
///             (ExchangeDecision::Reuse, Some(refresh)) => {
///                 let which = match exchange.on_reuse {
///                     tower_token_auth::session::OnReuse::RevokeSession => Sessions::Only(refresh.session_id),
///                     _ => Sessions::All,
///                 };
///                 let revoked = state.revoke(&refresh.user_id, which);
///                 ExchangeOutcome::Reused { user_id: refresh.user_id, session_id: refresh.session_id, revoked }
///             }
///             _ => ExchangeOutcome::Invalid,
///         };
///         StoreFuture::ready(Ok(outcome))
///     }
///
///     fn list_sessions(&self, user: &UserId) -> StoreFuture<Vec<SessionSummary>> {
///         let state = self.0.lock().unwrap();
///         let mut sessions: HashMap<SessionId, SessionSummary> = HashMap::new();
///         for t in state.tokens.values().filter(|t| t.user_id == *user) {
///             let s = sessions.entry(t.session_id).or_insert_with(|| SessionSummary {
///                 id: t.session_id, user_id: t.user_id.clone(), name: t.name.clone(),
///                 abilities: t.abilities.clone(), created_at: t.created_at, last_used_at: None, expires_at: Some(SystemTime::UNIX_EPOCH),
///             });
///             s.created_at = s.created_at.min(t.created_at);
///             s.last_used_at = s.last_used_at.max(t.last_used_at);
///             s.expires_at = match (s.expires_at, t.expires_at) { (Some(a), Some(b)) => Some(a.max(b)), _ => None };
///         }
///         let mut list: Vec<SessionSummary> = sessions.into_values().collect();
///         list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
///         StoreFuture::ready(Ok(list))
///     }
///
///     fn revoke_sessions(&self, user: &UserId, which: Sessions) -> StoreFuture<u64> {
///         StoreFuture::ready(Ok(self.0.lock().unwrap().revoke(user, which)))
///     }
///
///     fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
///         let mut state = self.0.lock().unwrap();
///         let before = state.tokens.len();
///         state.tokens.retain(|_, t| {
///             !t.expires_at.is_some_and(|at| at < expired_before) && !created_before.is_some_and(|c| t.created_at < c)
///         });
///         StoreFuture::ready(Ok((before - state.tokens.len()) as u64))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), StoreError> {
/// use tower_token_auth::TokenStoreExt;
/// let store = MyStore::default();
/// let issued = store.issue(tower_token_auth::NewToken::access(1u64)).await?;
/// assert!(store.find(issued.record.id).await?.is_some());
/// # Ok(()) }
/// ```
pub trait TokenStore: Send + Sync + 'static {
    /// The token with this id, or `None`. This is the hot path: one lookup by primary key.
    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>>;

    /// Stores a new session and its tokens (one or two), all or nothing, and returns the ids assigned.
    /// Applies `session.limit` in the same step: when the user is at the limit, either the oldest
    /// sessions are revoked first, or nothing is stored and the error is [`StoreError::session_limit`].
    fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens>;

    /// Exchanges a refresh token for a new pair in its session, or detects its reuse, as one atomic
    /// operation: see [`RefreshExchange`] for what each decision changes. An exchange and a
    /// [`revoke_sessions`](Self::revoke_sessions) of the same user never interleave: the exchange is
    /// entirely before the revocation (and its new pair is revoked with the rest), or entirely after it
    /// (and finds nothing to exchange).
    fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome>;

    /// Every session of `user_id` with at least one stored token, newest first (by creation, then id).
    /// Sessions whose tokens have all expired may be listed until they are pruned; see
    /// [`SessionSummary::is_expired`].
    fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>>;

    /// Revokes the selected sessions of `user_id`, every token of each (access and refresh, and the
    /// refresh tokens they already exchanged), and returns how many live tokens were deleted. A session
    /// id of another user selects nothing. Once this returns, no token of a selected session works.
    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64>;

    /// Deletes tokens whose `expires_at` is before `expired_before`, and, when `created_before` is given,
    /// tokens created before it (Sanctum's `sanctum:prune-expired`). Returns how many. A session goes with
    /// its last token.
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64>;

    /// Records that token `id` authenticated a request at `at`. Called only when the layer's last-used
    /// tracking is switched on, throttled, and off the request path. The default does nothing.
    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        let _ = (id, at);
        StoreFuture::ready(Ok(()))
    }

    /// Finds a token by digest alone, for legacy Sanctum tokens sent without `{id}|`. Used only when the
    /// layer enables legacy tokens. The default finds nothing.
    fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<TokenRecord>> {
        let _ = digest;
        StoreFuture::ready(Ok(None))
    }

    /// A short, fixed name of the backend (`"memory"`, `"redis"`, `"postgres"`...), the `store` label of
    /// the crate's [metrics](crate::observability). The default is `"custom"`.
    fn backend_name(&self) -> &'static str {
        "custom"
    }
}

macro_rules! forward_token_store {
    ($($ty:ty),*) => {$(
        impl<T: TokenStore + ?Sized> TokenStore for $ty {
            #[inline]
            fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
                (**self).find(id)
            }
            fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
                (**self).insert(session)
            }
            fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
                (**self).exchange_refresh(exchange)
            }
            fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
                (**self).list_sessions(user_id)
            }
            fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
                (**self).revoke_sessions(user_id, sessions)
            }
            fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
                (**self).prune_expired(expired_before, created_before)
            }
            fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
                (**self).touch_last_used(id, at)
            }
            fn find_by_digest(&self, digest: &TokenDigest) -> StoreFuture<Option<TokenRecord>> {
                (**self).find_by_digest(digest)
            }
            fn backend_name(&self) -> &'static str {
                (**self).backend_name()
            }
        }
    )*};
}

forward_token_store!(Arc<T>, Box<T>);

/// Operations built on [`TokenStore`], available on every store.
pub trait TokenStoreExt: TokenStore {
    /// Issues a token as a session of its own: generates a Sanctum-format secret from the OS CSPRNG,
    /// stores its SHA-256 digest, and returns the plain text `{id}|{secret}`, which cannot be recovered
    /// afterwards. A reserved ability fails with [`StoreErrorKind::InvalidInput`] before anything is
    /// stored.
    fn issue(&self, token: NewToken) -> impl Future<Output = Result<IssuedToken, StoreError>> + Send + 'static {
        let prepared = prepare(token);
        let insert = prepared.as_ref().ok().map(|(_, session)| self.insert(session.clone()));
        async move {
            let (secret, session) = prepared?;
            let ids = insert.expect("insert is prepared whenever the secret is").await?;
            let (kind, id, secret_of) = match (ids.access, ids.refresh) {
                (Some(id), _) if session.access.is_some() => (TokenKind::Access, id, session.access),
                (_, Some(id)) => (TokenKind::Refresh, id, session.refresh),
                _ => return Err(StoreError::corrupt("the store assigned no id to the new token")),
            };
            let secret_of = secret_of.expect("the kind follows the secret");
            let record = TokenRecord {
                digest: secret_of.digest,
                id,
                session_id: ids.session_id,
                kind,
                expires_at: secret_of.expires_at,
                user_id: session.user_id,
                created_at: session.created_at,
                last_used_at: None,
                name: session.name,
                abilities: session.abilities,
            };
            Ok(IssuedToken { plain_text: PlainTextToken::new(id, &secret), record })
        }
    }

    /// Logs `user_id` out everywhere: revokes every session, every token access and refresh. Returns how
    /// many tokens were revoked. Shorthand for [`revoke_sessions`](TokenStore::revoke_sessions) with
    /// [`Sessions::All`].
    fn revoke_all_for_user(&self, user_id: &UserId) -> StoreFuture<u64> {
        self.revoke_sessions(user_id, Sessions::All)
    }

    /// Revokes one session of `user_id` (both its tokens). `Ok(false)` when the user has no such session,
    /// including when it is another user's.
    fn revoke_session(&self, user_id: &UserId, session_id: crate::session::SessionId) -> StoreFuture<bool> {
        let revoke = self.revoke_sessions(user_id, Sessions::Only(session_id));
        let user_id = user_id.clone();
        let done = move |result: Result<u64, StoreError>| {
            let revoked = result? > 0;
            if revoked {
                crate::observability::audit::session_revoked(&user_id, session_id);
                crate::observability::record::session_revocations(1);
            }
            Ok(revoked)
        };
        match revoke.try_take_ready() {
            Ok(result) => StoreFuture::ready(done(result)),
            Err(pending) => StoreFuture::new(async move { done(pending.await) }),
        }
    }
}

impl<T: TokenStore + ?Sized> TokenStoreExt for T {}

fn prepare(token: NewToken) -> Result<(zeroize::Zeroizing<String>, NewSession), StoreError> {
    if token.kind == TokenKind::Refresh {
        let key = crate::family::new_family_key().map_err(StoreError::random)?;
        let (secret, digest) = crate::family::new_refresh_secret(&token.prefix, &key).map_err(StoreError::random)?;
        let family = crate::family::family_digest(&key);
        return Ok((secret, token.into_session(digest, Some(family))?));
    }
    let secret = crate::token::generate_secret(&token.prefix).map_err(StoreError::random)?;
    let digest = TokenDigest::of(secret.as_bytes());
    Ok((secret, token.into_session(digest, None)?))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

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
