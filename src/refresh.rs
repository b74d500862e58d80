//! Refresh tokens: issuing access/refresh pairs and exchanging a refresh token for a new pair, with
//! rotation and reuse detection. Sanctum has no refresh tokens; this fills that gap on every store.
//!
//! - **Rotation**: each refresh token works once. Exchanging it marks it
//!   [`RotatedRefresh`](crate::TokenKind::RotatedRefresh) (atomically, so two concurrent exchanges
//!   cannot both succeed) and issues a new pair.
//! - **Reuse detection**: presenting an already rotated refresh token (with the right secret) means it
//!   was copied. Every token of that user is revoked, and the caller gets [`RefreshError::Reused`].
//! - Access tokens are not refresh tokens, and refresh tokens are not accepted as access tokens by
//!   [`TokenAuthLayer`](crate::TokenAuthLayer). Logging out revokes both kinds.
//!
//! ```
//! use std::time::Duration;
//! use http::{header::AUTHORIZATION, HeaderMap, HeaderValue};
//! use tower_token_auth::refresh::{RefreshError, RefreshTokens};
//! use tower_token_auth::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let tokens = RefreshTokens::new(MemoryStore::new())
//!     .access_ttl(Duration::from_secs(3600))
//!     .refresh_ttl(Duration::from_secs(30 * 86400));
//! let pair = tokens.issue_pair(7u64, "laptop").await?;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", pair.refresh.plain_text.expose()))?);
//! let rotated = tokens.exchange(&headers).await?;          // a new pair
//! assert!(matches!(tokens.exchange(&headers).await, Err(RefreshError::Reused { .. }))); // stolen copy
//! # let _ = rotated;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::clock::{Clock, SystemClock};
use crate::header::{credentials, BearerCredentials};
use crate::response::Rejection;
use crate::store::{StoreError, TokenStore, TokenStoreExt};
use crate::token::{Abilities, IssuedToken, NewToken, TokenDigest, TokenId, TokenKind, UserId};

/// The ability Laravel apps conventionally give refresh tokens; SQL stores use it to mark them.
pub const REFRESH_ABILITY: &str = "issue-access-token";

/// A new access token and the refresh token that can replace it.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// The access token.
    pub access: IssuedToken,
    /// The refresh token.
    pub refresh: IssuedToken,
}

/// Why a refresh token was not exchanged.
#[derive(Debug)]
#[non_exhaustive]
pub enum RefreshError {
    /// No bearer credentials at all (no `Authorization` header, an empty one, or another scheme).
    Missing,
    /// A refresh token that is malformed, unknown, wrong, expired, or not a refresh token.
    Invalid,
    /// An already rotated refresh token was presented: every token of the user has been revoked.
    Reused {
        /// The user whose tokens were revoked.
        user_id: UserId,
        /// How many tokens were revoked.
        revoked: u64,
    },
    /// The store failed.
    Store(StoreError),
}

impl RefreshError {
    /// The response class: `401` (with `WWW-Authenticate: Bearer` when nothing was sent, `Bearer
    /// error="invalid_token"` otherwise) for missing, invalid and reused tokens, `503` for store failures
    /// and timeouts.
    pub fn rejection(&self) -> Rejection {
        match self {
            RefreshError::Missing => Rejection::MissingCredentials,
            RefreshError::Invalid | RefreshError::Reused { .. } => Rejection::InvalidToken,
            RefreshError::Store(_) => Rejection::StoreUnavailable,
        }
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::Missing => f.write_str("no refresh token was sent"),
            RefreshError::Invalid => f.write_str("invalid refresh token"),
            RefreshError::Reused { .. } => f.write_str("refresh token reused; all of the user's tokens were revoked"),
            RefreshError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RefreshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RefreshError::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for RefreshError {
    fn from(e: StoreError) -> Self {
        RefreshError::Store(e)
    }
}

/// Issues and exchanges access/refresh token pairs. See the [module docs](crate::refresh).
pub struct RefreshTokens<St> {
    store: St,
    access_ttl: Option<Duration>,
    refresh_ttl: Option<Duration>,
    access_abilities: Abilities,
    prefix: String,
    clock: Arc<dyn Clock>,
    timeout: Option<Duration>,
}

impl<St: TokenStore> RefreshTokens<St> {
    /// Pairs stored in `store`: access tokens valid for 1 hour, refresh tokens for 30 days.
    pub fn new(store: St) -> Self {
        Self {
            store,
            access_ttl: Some(Duration::from_secs(3600)),
            refresh_ttl: Some(Duration::from_secs(30 * 24 * 3600)),
            access_abilities: Abilities::all(),
            prefix: String::new(),
            clock: Arc::new(SystemClock),
            timeout: Some(crate::auth::verify::DEFAULT_LOOKUP_TIMEOUT),
        }
    }

    /// Bounds each [`issue_pair`](Self::issue_pair) and [`exchange`](Self::exchange) (default 5 s, like
    /// the layer's lookup timeout; `None` waits forever). A store that takes longer is reported as
    /// [`StoreError::timeout`], so a hung store answers `503` instead of hanging login and refresh.
    /// Needs tokio's time driver.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    async fn bounded<T, E: From<StoreError>>(
        &self,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match self.timeout {
            Some(limit) => {
                tokio::time::timeout(limit, work).await.unwrap_or_else(|_| Err(StoreError::timeout().into()))
            }
            None => work.await,
        }
    }

    /// Access token lifetime (`None`: never expires).
    pub fn access_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.access_ttl = ttl.into();
        self
    }

    /// Refresh token lifetime (`None`: never expires).
    pub fn refresh_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.refresh_ttl = ttl.into();
        self
    }

    /// Abilities of the access tokens issued (default `["*"]`).
    pub fn access_abilities(mut self, abilities: Abilities) -> Self {
        self.access_abilities = abilities;
        self
    }

    /// Secret prefix for issued tokens (Sanctum's `token_prefix`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Time source for issue and expiry.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// The access token lifetime.
    pub fn access_token_ttl(&self) -> Option<Duration> {
        self.access_ttl
    }

    /// Issues a new pair for `user_id`, both named `name` (e.g. the device).
    pub async fn issue_pair(&self, user_id: impl Into<UserId>, name: &str) -> Result<TokenPair, StoreError> {
        self.bounded(self.issue_pair_unbounded(user_id.into(), name)).await
    }

    async fn issue_pair_unbounded(&self, user_id: UserId, name: &str) -> Result<TokenPair, StoreError> {
        let now = self.clock.now();
        let with_ttl = |token: NewToken, ttl: Option<Duration>| match ttl {
            Some(ttl) => token.expires_in(ttl),
            None => token,
        };
        let access = NewToken::access(user_id.clone())
            .name(name)
            .abilities(self.access_abilities.iter())
            .issued_at(now)
            .prefix(self.prefix.clone());
        let refresh = NewToken::refresh(user_id)
            .name(name)
            .abilities([REFRESH_ABILITY])
            .issued_at(now)
            .prefix(self.prefix.clone());
        let refresh = self.store.issue(with_ttl(refresh, self.refresh_ttl)).await?;
        let access = self.store.issue(with_ttl(access, self.access_ttl)).await?;
        Ok(TokenPair { access, refresh })
    }

    /// Exchanges the refresh token in `headers` (`Authorization: Bearer {id}|{secret}`) for a new pair.
    pub async fn exchange(&self, headers: &HeaderMap) -> Result<TokenPair, RefreshError> {
        let (id, digest) = match credentials(headers) {
            BearerCredentials::Token(token) => (token.id(), TokenDigest::of(token.secret())),
            BearerCredentials::Missing => return Err(RefreshError::Missing),
            BearerCredentials::Malformed | BearerCredentials::Legacy(_) => return Err(RefreshError::Invalid),
        };
        self.bounded(self.exchange_parsed(id, digest)).await
    }

    async fn exchange_parsed(&self, id: TokenId, digest: TokenDigest) -> Result<TokenPair, RefreshError> {
        let record = self.store.find(id).await?.ok_or(RefreshError::Invalid)?;
        if !record.digest.ct_eq(&digest) || record.is_expired(self.clock.now(), None) {
            return Err(RefreshError::Invalid);
        }
        let rotated = match record.kind {
            TokenKind::Access => return Err(RefreshError::Invalid),
            TokenKind::Refresh => self.store.mark_refresh_rotated(id).await?,
            TokenKind::RotatedRefresh => false,
        };
        if !rotated {
            let revoked = self.store.revoke_all_for_user(&record.user_id).await?;
            tracing::warn!(user_id = %record.user_id, token_id = id, revoked, "refresh token reused; revoked every token of the user");
            return Err(RefreshError::Reused { user_id: record.user_id.clone(), revoked });
        }
        Ok(self.issue_pair_unbounded(record.user_id.clone(), &record.name).await?)
    }
}

impl<St: Clone> Clone for RefreshTokens<St> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            access_ttl: self.access_ttl,
            refresh_ttl: self.refresh_ttl,
            access_abilities: self.access_abilities.clone(),
            prefix: self.prefix.clone(),
            clock: Arc::clone(&self.clock),
            timeout: self.timeout,
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for RefreshTokens<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("store", &self.store)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use http::header::{HeaderValue, AUTHORIZATION};

    fn bearer(token: &IssuedToken) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", token.plain_text.expose())).unwrap());
        h
    }

    #[tokio::test]
    async fn reused_refresh_token_revokes_everything() {
        let store = MemoryStore::new();
        let tokens = RefreshTokens::new(store.clone());
        let first = tokens.issue_pair(1u64, "phone").await.unwrap();
        let second = tokens.exchange(&bearer(&first.refresh)).await.unwrap();
        assert_eq!(second.access.record.name, "phone");
        let err = tokens.exchange(&bearer(&first.refresh)).await.unwrap_err();
        assert!(matches!(err, RefreshError::Reused { revoked: 4, .. }), "{err:?}");
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn no_credentials_is_missing_not_invalid() {
        let tokens = RefreshTokens::new(MemoryStore::new());
        let err = tokens.exchange(&HeaderMap::new()).await.unwrap_err();
        assert!(matches!(err, RefreshError::Missing));
        assert_eq!(err.rejection(), Rejection::MissingCredentials);
    }

    #[tokio::test]
    async fn a_hanging_store_times_out() {
        #[derive(Clone)]
        struct Hanging;
        impl TokenStore for Hanging {
            fn find(&self, _: TokenId) -> crate::StoreFuture<Option<Arc<crate::TokenRecord>>> {
                crate::StoreFuture::new(std::future::pending())
            }
            fn insert(&self, _: crate::token::NewTokenRecord) -> crate::StoreFuture<TokenId> {
                crate::StoreFuture::new(std::future::pending())
            }
            fn revoke(&self, _: TokenId) -> crate::StoreFuture<bool> {
                crate::StoreFuture::new(std::future::pending())
            }
            fn revoke_all_for_user(&self, _: &UserId) -> crate::StoreFuture<u64> {
                crate::StoreFuture::new(std::future::pending())
            }
            fn mark_refresh_rotated(&self, _: TokenId) -> crate::StoreFuture<bool> {
                crate::StoreFuture::new(std::future::pending())
            }
            fn prune_expired(
                &self,
                _: std::time::SystemTime,
                _: Option<std::time::SystemTime>,
            ) -> crate::StoreFuture<u64> {
                crate::StoreFuture::new(std::future::pending())
            }
        }
        let tokens = RefreshTokens::new(Hanging).timeout(Some(Duration::from_millis(20)));
        let err = tokens.issue_pair(1u64, "").await.unwrap_err();
        assert_eq!(err.kind(), crate::store::StoreErrorKind::Timeout);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer 1|secret"));
        let err = tokens.exchange(&headers).await.unwrap_err();
        assert_eq!(err.rejection(), Rejection::StoreUnavailable);
    }

    #[tokio::test]
    async fn access_tokens_and_wrong_secrets_do_not_refresh() {
        let store = MemoryStore::new();
        let tokens = RefreshTokens::new(store.clone());
        let pair = tokens.issue_pair(1u64, "").await.unwrap();
        assert!(matches!(tokens.exchange(&bearer(&pair.access)).await, Err(RefreshError::Invalid)));
        let mut forged = HeaderMap::new();
        let forged_value = format!("Bearer {}|wrong", pair.refresh.record.id);
        forged.insert(AUTHORIZATION, HeaderValue::from_str(&forged_value).unwrap());
        assert!(matches!(tokens.exchange(&forged).await, Err(RefreshError::Invalid)));
        assert_eq!(store.len(), 2, "a wrong secret must not revoke anything");
    }
}
