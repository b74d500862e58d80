//! Refresh tokens: issuing a login's access/refresh pair (a [session](crate::session)) and exchanging
//! the refresh token for a new pair in the same session, with rotation and reuse detection. Sanctum has
//! no refresh tokens; this fills that gap on every store.
//!
//! - **Rotation**: each refresh token works once. An exchange replaces the session's access **and**
//!   refresh token with a new pair; the previous access token stops working at once, so a device holds
//!   one working access token at a time.
//! - **Reuse detection**: presenting an already exchanged refresh token (with its right secret) means a
//!   copy of it exists. By default **that session** is revoked, every token of it including the pair
//!   the first exchange minted (RFC 9700's refresh-token family); the user's other devices keep working.
//!   [`on_reuse`](RefreshTokens::on_reuse) can revoke every session of the user instead. The caller gets
//!   [`RefreshError::Reused`].
//! - **Atomicity**: the check, the rotation and the new pair are one store operation
//!   ([`TokenStore::exchange_refresh`]), so two presentations of one token have exactly one winner, and
//!   an exchange racing a logout either happens entirely before it (its pair is revoked) or fails.
//! - Refresh tokens are not accepted by [`TokenAuthLayer`](crate::TokenAuthLayer), and access tokens do
//!   not refresh. Logging out revokes both kinds.
//!
//! # Reuse detection and its threat model
//!
//! A refresh token is `{id}|{secret}.{family key}`: a fresh Sanctum-style secret for every token, then a
//! 43-character **family key** (about 256 bits from the OS CSPRNG) drawn once per login and carried by
//! every refresh token the session issues. The store keeps SHA-256 of the secret under a domain tag
//! (`tower-token-auth/refresh`), so the digest never matches Sanctum's `hash('sha256', $secret)` and a
//! refresh token never authenticates as a bearer token anywhere, and SHA-256 of the family key. Nothing
//! is stored per exchange.
//!
//! Presenting a secret that carries the session's family key but is not its current secret proves that
//! the presenter holds one of the session's refresh tokens that has since been exchanged: that is reuse,
//! however long ago and however many exchanges since. So a thief who exchanges a stolen token and then
//! their own successors as fast as they can is still caught when the device presents the token it holds
//! (the attack against the earlier design, which remembered the last 8 exchanged tokens, evaded it in
//! every round). Presenting anything else, such as a made-up secret for a real (sequential) id or
//! another session's key, is an ordinary invalid token and revokes nothing.
//!
//! - **A stolen refresh token** lets the thief exchange it once if it is still current; the device's
//!   next refresh then revokes the whole session, the thief's pairs included. It also lets them get the
//!   session revoked, which holding the token allows in any design.
//! - **A read copy of the store** (a database dump, a Redis snapshot) gives digests of secrets and of
//!   family keys. Neither is invertible: the reader can neither authenticate, nor exchange, nor forge a
//!   presentation that counts as reuse.
//! - **There is no server key**: nothing to configure, to share between instances, to rotate or to leak;
//!   restarts and new instances need nothing.
//! - **A reuse interval** ([`RefreshTokens::reuse_interval`]) keeps the digests of the tokens exchanged
//!   within it so that a client that lost a response can retry; within that window a thief's copy is
//!   exchanged without an alarm, which is its documented price.
//!
//! ```
//! use std::time::Duration;
//! use http::{header::AUTHORIZATION, HeaderMap, HeaderValue};
//! use tower_token_auth::refresh::{NewPair, RefreshError, RefreshTokens};
//! use tower_token_auth::{MemoryStore, TokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let tokens = RefreshTokens::new(store.clone())
//!     .access_ttl(Duration::from_secs(3600))
//!     .refresh_ttl(Duration::from_secs(30 * 86400));
//! let pair = tokens.issue_pair(NewPair::new(7u64).name("laptop").abilities(["posts:read"])).await?;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", pair.refresh.plain_text.expose()))?);
//! let rotated = tokens.exchange(&headers).await?; // a new pair, same session, same abilities
//! assert_eq!(rotated.session_id(), pair.session_id());
//! assert!(rotated.access.record.abilities.can("posts:read"));
//!
//! // The old refresh token again: a copy is in use, so the session is revoked, new pair included.
//! assert!(matches!(tokens.exchange(&headers).await, Err(RefreshError::Reused { .. })));
//! assert!(store.find(rotated.access.record.id).await?.is_none());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::auth::verify::guarded;
use crate::clock::{Clock, SystemClock};
use crate::family;
use crate::header::{credentials, BearerCredentials};
use crate::observability::record;
use crate::response::Rejection;
use crate::session::{
    ExchangeOutcome, NewSecret, NewSession, OnReuse, RefreshExchange, SessionId, SessionLimit, DEFAULT_KEEP_ROTATED,
};
use crate::store::{StoreError, TokenStore};
use crate::token::{
    generate_secret, Abilities, InvalidToken, IssuedToken, PlainTextToken, TokenDigest, TokenId, TokenKind, TokenName,
    TokenRecord, UserId,
};

pub use crate::token::REFRESH_ABILITY;

/// A new access token and the refresh token that can replace it: one session.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// The access token.
    pub access: IssuedToken,
    /// The refresh token.
    pub refresh: IssuedToken,
}

impl TokenPair {
    /// The session both tokens belong to.
    pub fn session_id(&self) -> SessionId {
        self.access.record.session_id
    }
}

/// The login answer of OAuth 2 (RFC 6749 §5.1), **with both secrets in clear**: serialize it only
/// into the response that hands the pair to its client (send it with `Cache-Control: no-store`).
/// `{"access_token":"1|…","refresh_token":"2|…","token_type":"Bearer","expires_in":3600,"session_id":1}`;
/// `expires_in` is the access token's lifetime in seconds, `null` if it never expires.
impl serde::Serialize for TokenPair {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let access = &self.access.record;
        let expires_in =
            access.expires_at.map(|at| at.duration_since(access.created_at).map_or(0, |ttl| ttl.as_secs()));
        let mut s = serializer.serialize_struct("TokenPair", 5)?;
        s.serialize_field("access_token", self.access.plain_text.expose())?;
        s.serialize_field("refresh_token", self.refresh.plain_text.expose())?;
        s.serialize_field("token_type", "Bearer")?;
        s.serialize_field("expires_in", &expires_in)?;
        s.serialize_field("session_id", &self.session_id())?;
        s.end()
    }
}

/// A login to issue a pair for: the per-login settings of [`RefreshTokens::issue_pair`].
///
/// Unset values fall back to the [`RefreshTokens`] defaults.
///
/// ```
/// use std::time::Duration;
/// use tower_token_auth::refresh::NewPair;
///
/// let login = NewPair::new(42u64)
///     .name("Firefox on Linux")
///     .abilities(["posts:read"])
///     .access_ttl(Duration::from_secs(900));
/// ```
#[derive(Clone, Debug)]
pub struct NewPair {
    user_id: UserId,
    name: TokenName,
    abilities: Option<Abilities>,
    access_ttl: Option<Option<Duration>>,
    refresh_ttl: Option<Option<Duration>>,
}

impl NewPair {
    /// A pair for `user_id`, unnamed, with the defaults of the [`RefreshTokens`] that issues it.
    pub fn new(user_id: impl Into<UserId>) -> Self {
        Self {
            user_id: user_id.into(),
            name: TokenName::default(),
            abilities: None,
            access_ttl: None,
            refresh_ttl: None,
        }
    }

    /// The device name (Sanctum's `name`), shown in the session list.
    pub fn name(mut self, name: impl Into<TokenName>) -> Self {
        self.name = name.into();
        self
    }

    /// The abilities of the access token, and of every access token the session's refresh token mints.
    pub fn abilities<I, S>(mut self, abilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.abilities = Some(abilities.into_iter().collect());
        self
    }

    /// The access token's lifetime (`None`: never expires).
    pub fn access_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.access_ttl = Some(ttl.into());
        self
    }

    /// The refresh token's lifetime (`None`: never expires).
    pub fn refresh_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.refresh_ttl = Some(ttl.into());
        self
    }
}

/// Why a refresh token was not exchanged.
#[derive(Debug)]
#[non_exhaustive]
pub enum RefreshError {
    /// No bearer credentials at all (no `Authorization` header, an empty one, or another scheme).
    Missing,
    /// A refresh token that is malformed, unknown, wrong, expired, or not a refresh token.
    Invalid,
    /// An already exchanged refresh token was presented: its session (or, with
    /// [`OnReuse::RevokeAllSessions`], every session of the user) has been revoked.
    Reused {
        /// The user whose tokens were revoked.
        user_id: UserId,
        /// The session the reused token belonged to.
        session_id: SessionId,
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
            RefreshError::Reused { session_id, revoked, .. } => {
                write!(f, "refresh token reused; session {session_id} revoked ({revoked} tokens)")
            }
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

impl From<RefreshError> for Rejection {
    fn from(e: RefreshError) -> Self {
        e.rejection()
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
    reuse_interval: Duration,
    keep_rotated: usize,
    on_reuse: OnReuse,
    session_limit: SessionLimit,
}

impl<St: TokenStore> RefreshTokens<St> {
    /// Pairs stored in `store`: access tokens valid for 1 hour, refresh tokens for 30 days (counted from
    /// each exchange), strict reuse detection revoking the reused session, at most 100 sessions per user.
    pub fn new(store: St) -> Self {
        Self {
            store,
            access_ttl: Some(Duration::from_secs(3600)),
            refresh_ttl: Some(Duration::from_secs(30 * 24 * 3600)),
            access_abilities: Abilities::all(),
            prefix: String::new(),
            clock: Arc::new(SystemClock),
            timeout: Some(crate::auth::verify::DEFAULT_LOOKUP_TIMEOUT),
            reuse_interval: Duration::ZERO,
            keep_rotated: DEFAULT_KEEP_ROTATED,
            on_reuse: OnReuse::RevokeSession,
            session_limit: SessionLimit::default(),
        }
    }

    /// Bounds each [`issue_pair`](Self::issue_pair) and [`exchange`](Self::exchange) (default 5 s, like
    /// the layer's lookup timeout; `None` waits forever). A store that takes longer, fails or panics is
    /// reported as a [`StoreError`], so a broken store answers `503` instead of hanging login and refresh.
    /// Needs tokio's time driver.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Default access token lifetime (`None`: never expires).
    pub fn access_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.access_ttl = ttl.into();
        self
    }

    /// Default refresh token lifetime, counted from issue and from every exchange (`None`: never expires).
    pub fn refresh_ttl(mut self, ttl: impl Into<Option<Duration>>) -> Self {
        self.refresh_ttl = ttl.into();
        self
    }

    /// Default abilities of the access tokens of a pair (default `["*"]`); [`NewPair::abilities`] sets them
    /// per login. A session keeps its abilities through every exchange.
    pub fn access_abilities(mut self, abilities: Abilities) -> Self {
        self.access_abilities = abilities;
        self
    }

    /// Secret prefix for issued tokens (Sanctum's `token_prefix`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Time source for issue, expiry and the reuse interval.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Lets a client that lost an exchange's response retry with the refresh token it just exchanged:
    /// for `interval` after an exchange, presenting the previous refresh token again mints another pair
    /// in the same session (replacing the first one) instead of raising reuse (Auth0's reuse interval,
    /// Supabase's `REFRESH_TOKEN_REUSE_INTERVAL`, 10 s there). Default zero: strict.
    ///
    /// The trade-off: within the interval, a thief holding a copy of the token gets a working pair too,
    /// with no alarm, and the device loses the pair it was given. Keep it to seconds, and zero unless
    /// clients on flaky networks need it.
    pub fn reuse_interval(mut self, interval: Duration) -> Self {
        self.reuse_interval = interval;
        self
    }

    /// With a [reuse interval](Self::reuse_interval): how many refresh tokens exchanged within it each
    /// session remembers so that a retry may exchange them again (default 8; at most
    /// [`MAX_KEEP_ROTATED`](crate::session::MAX_KEEP_ROTATED), 128). Reuse detection does not depend on
    /// it: every exchanged refresh token of a session is recognised as reuse whatever this is (see the
    /// [module docs](crate::refresh)). Without a reuse interval nothing is remembered.
    pub fn keep_rotated(mut self, count: usize) -> Self {
        self.keep_rotated = count.min(crate::session::MAX_KEEP_ROTATED);
        self
    }

    /// What reuse of a refresh token revokes (default [`OnReuse::RevokeSession`]).
    pub fn on_reuse(mut self, on_reuse: OnReuse) -> Self {
        self.on_reuse = on_reuse;
        self
    }

    /// The cap on sessions per user applied at each login (default [`SessionLimit::default`]: 100, the
    /// oldest session revoked to make room).
    pub fn session_limit(mut self, limit: SessionLimit) -> Self {
        self.session_limit = limit;
        self
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// The default access token lifetime.
    pub fn access_token_ttl(&self) -> Option<Duration> {
        self.access_ttl
    }

    /// Issues a login's pair: a new session with an access and a refresh token, both named after the
    /// device. Fails with [`StoreErrorKind::InvalidInput`](crate::store::StoreErrorKind::InvalidInput) for
    /// reserved abilities and [`StoreErrorKind::SessionLimit`](crate::store::StoreErrorKind::SessionLimit)
    /// when the user is full and the limit refuses.
    pub async fn issue_pair(&self, pair: NewPair) -> Result<TokenPair, StoreError> {
        let abilities = pair.abilities.unwrap_or_else(|| self.access_abilities.clone());
        if let Some(reserved) = abilities.reserved() {
            return Err(InvalidToken::ReservedAbility(reserved.to_owned()).into());
        }
        let now = self.clock.now();
        let access_ttl = pair.access_ttl.unwrap_or(self.access_ttl);
        let refresh_ttl = pair.refresh_ttl.unwrap_or(self.refresh_ttl);
        let (access_secret, access) = self.secret(now, access_ttl)?;
        let family_key = family::new_family_key().map_err(StoreError::random)?;
        let (refresh_secret, refresh) = self.refresh_secret(now, refresh_ttl, &family_key)?;
        let session = NewSession {
            user_id: pair.user_id,
            name: pair.name,
            abilities,
            created_at: now,
            access: Some(access),
            refresh: Some(refresh),
            family: Some(family::family_digest(&family_key)),
            limit: self.session_limit,
        };
        let store = self.store.backend_name();
        let ids = guarded("insert", store, self.timeout, || self.store.insert(session.clone())).await?;
        let (Some(access_id), Some(refresh_id)) = (ids.access, ids.refresh) else {
            return Err(StoreError::corrupt("the store did not assign ids to both tokens of a pair"));
        };
        crate::observability::audit::sign_in(&session.user_id, ids.session_id, &session.name);
        record::sign_ins(1);
        let minted = Minted { session_id: ids.session_id, user_id: &session.user_id, name: &session.name, now };
        Ok(minted.pair(
            &session.abilities,
            (access_id, access_secret.as_str(), access),
            (refresh_id, refresh_secret.as_str(), refresh),
        ))
    }

    fn secret(
        &self,
        now: SystemTime,
        ttl: Option<Duration>,
    ) -> Result<(zeroize::Zeroizing<String>, NewSecret), StoreError> {
        let secret = generate_secret(&self.prefix).map_err(StoreError::random)?;
        let digest = TokenDigest::of(secret.as_bytes());
        Ok((secret, NewSecret { digest, expires_at: ttl.and_then(|ttl| now.checked_add(ttl)) }))
    }

    /// A refresh secret of the family `key`, and what the store keeps of it.
    fn refresh_secret(
        &self,
        now: SystemTime,
        ttl: Option<Duration>,
        key: &str,
    ) -> Result<(zeroize::Zeroizing<String>, NewSecret), StoreError> {
        let (secret, digest) = family::new_refresh_secret(&self.prefix, key).map_err(StoreError::random)?;
        Ok((secret, NewSecret { digest, expires_at: ttl.and_then(|ttl| now.checked_add(ttl)) }))
    }

    /// Exchanges the refresh token in `headers` (`Authorization: Bearer {id}|{secret}`) for a new pair in
    /// its session. One store operation; see the [module docs](crate::refresh).
    pub async fn exchange(&self, headers: &HeaderMap) -> Result<TokenPair, RefreshError> {
        let (token_id, secret) = match credentials(headers) {
            BearerCredentials::Token(token) => (token.id(), token.secret()),
            BearerCredentials::Missing => return Err(RefreshError::Missing),
            BearerCredentials::Malformed | BearerCredentials::Legacy(_) => return Err(RefreshError::Invalid),
        };
        let presented = family::presented(secret);
        // The new refresh token carries the session's family key; a token from before family keys gets a
        // new one (the session takes its digest if the exchange rotates).
        let key = match family::family_key(secret) {
            Some(key) => zeroize::Zeroizing::new(key.to_owned()),
            None => family::new_family_key().map_err(StoreError::random)?,
        };
        let now = self.clock.now();
        let (access_secret, access) = self.secret(now, self.access_ttl)?;
        let (refresh_secret, refresh) = self.refresh_secret(now, self.refresh_ttl, &key)?;
        let exchange = RefreshExchange {
            token_id,
            digest: presented.digest,
            family: presented.family,
            next_family: family::family_digest(&key),
            now,
            access,
            refresh,
            reuse_interval: self.reuse_interval,
            keep_rotated: self.keep_rotated,
            on_reuse: self.on_reuse,
        };
        let store = self.store.backend_name();
        let outcome = guarded("exchange_refresh", store, self.timeout, || self.store.exchange_refresh(exchange)).await;
        let outcome = outcome.inspect_err(|_| record::refresh_exchanges("error", 1))?;
        match outcome {
            ExchangeOutcome::Exchanged(session) => {
                record::refresh_exchanges("exchanged", 1);
                let minted =
                    Minted { session_id: session.session_id, user_id: &session.user_id, name: &session.name, now };
                let access = (session.access, access_secret.as_str(), access);
                Ok(minted.pair(&session.abilities, access, (session.refresh, refresh_secret.as_str(), refresh)))
            }
            ExchangeOutcome::Invalid => {
                record::refresh_exchanges("invalid", 1);
                Err(RefreshError::Invalid)
            }
            ExchangeOutcome::Reused { user_id, session_id, revoked } => {
                record::refresh_exchanges("reused", 1);
                record::refresh_reuse_detected(1);
                record::revoked(store, "reuse", revoked);
                crate::observability::audit::refresh_reuse(&user_id, session_id, token_id, revoked);
                Err(RefreshError::Reused { user_id, session_id, revoked })
            }
        }
    }
}

/// A pair just stored in a session: what the caller hands back.
struct Minted<'a> {
    session_id: SessionId,
    user_id: &'a UserId,
    name: &'a TokenName,
    now: SystemTime,
}

impl Minted<'_> {
    fn pair(
        &self,
        abilities: &Abilities,
        (access_id, access_secret, access): (TokenId, &str, NewSecret),
        (refresh_id, refresh_secret, refresh): (TokenId, &str, NewSecret),
    ) -> TokenPair {
        let record = |id, kind, secret: NewSecret| TokenRecord {
            digest: secret.digest,
            id,
            session_id: self.session_id,
            kind,
            expires_at: secret.expires_at,
            user_id: self.user_id.clone(),
            created_at: self.now,
            last_used_at: None,
            name: self.name.clone(),
            abilities: abilities.clone(),
        };
        TokenPair {
            access: IssuedToken {
                plain_text: PlainTextToken::new(access_id, access_secret),
                record: record(access_id, TokenKind::Access, access),
            },
            refresh: IssuedToken {
                plain_text: PlainTextToken::new(refresh_id, refresh_secret),
                record: record(refresh_id, TokenKind::Refresh, refresh),
            },
        }
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
            reuse_interval: self.reuse_interval,
            keep_rotated: self.keep_rotated,
            on_reuse: self.on_reuse,
            session_limit: self.session_limit,
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for RefreshTokens<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("store", &self.store)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("reuse_interval", &self.reuse_interval)
            .field("keep_rotated", &self.keep_rotated)
            .field("on_reuse", &self.on_reuse)
            .field("session_limit", &self.session_limit)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::{MemoryStore, TokenStoreExt};
    use http::header::{HeaderValue, AUTHORIZATION};

    fn bearer(token: &IssuedToken) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", token.plain_text.expose())).unwrap());
        h
    }

    #[tokio::test]
    async fn reuse_revokes_the_session_and_spares_other_devices() {
        let store = MemoryStore::new();
        let tokens = RefreshTokens::new(store.clone());
        let phone = tokens.issue_pair(NewPair::new(1u64).name("phone")).await.unwrap();
        let laptop = tokens.issue_pair(NewPair::new(1u64).name("laptop")).await.unwrap();
        let second = tokens.exchange(&bearer(&phone.refresh)).await.unwrap();
        assert_eq!(second.access.record.name, "phone");
        assert_eq!(second.session_id(), phone.session_id());
        assert!(store
            .find(phone.access.record.id)
            .await
            .unwrap()
            .is_none_or(|r| r.digest != phone.access.record.digest));
        let err = tokens.exchange(&bearer(&phone.refresh)).await.unwrap_err();
        assert!(matches!(err, RefreshError::Reused { revoked: 2, .. }), "{err:?}");
        assert!(store.find(second.access.record.id).await.unwrap().is_none());
        assert!(store.find(laptop.access.record.id).await.unwrap().is_some(), "the other device survives");
    }

    #[tokio::test]
    async fn reuse_can_revoke_every_session() {
        let store = MemoryStore::new();
        let tokens = RefreshTokens::new(store.clone()).on_reuse(OnReuse::RevokeAllSessions);
        let phone = tokens.issue_pair(NewPair::new(1u64)).await.unwrap();
        tokens.issue_pair(NewPair::new(1u64)).await.unwrap();
        tokens.exchange(&bearer(&phone.refresh)).await.unwrap();
        let err = tokens.exchange(&bearer(&phone.refresh)).await.unwrap_err();
        assert!(matches!(err, RefreshError::Reused { revoked: 4, .. }), "{err:?}");
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn the_reuse_interval_lets_a_retry_through_and_then_closes() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let store = MemoryStore::new();
        let tokens = RefreshTokens::new(store.clone()).clock(clock.clone()).reuse_interval(Duration::from_secs(10));
        let first = tokens.issue_pair(NewPair::new(1u64)).await.unwrap();
        let lost = tokens.exchange(&bearer(&first.refresh)).await.unwrap();
        clock.advance(Duration::from_secs(5));
        let retried = tokens.exchange(&bearer(&first.refresh)).await.unwrap();
        assert_eq!(retried.session_id(), first.session_id());
        assert!(
            tokens.exchange(&bearer(&lost.refresh)).await.is_ok(),
            "the lost pair was rotated within the interval too"
        );
        clock.advance(Duration::from_secs(20));
        assert!(matches!(tokens.exchange(&bearer(&first.refresh)).await, Err(RefreshError::Reused { .. })));
    }

    #[tokio::test]
    async fn a_session_keeps_its_abilities_and_name_through_exchanges() {
        let store = MemoryStore::new();
        let tokens = RefreshTokens::new(store.clone());
        let mut pair = tokens.issue_pair(NewPair::new(1u64).name("cli").abilities(["posts:read"])).await.unwrap();
        for _ in 0..3 {
            pair = tokens.exchange(&bearer(&pair.refresh)).await.unwrap();
        }
        let found = store.find(pair.access.record.id).await.unwrap().unwrap();
        assert!(found.abilities.can("posts:read") && !found.abilities.can("posts:write"));
        assert_eq!(found.name, "cli");
        assert_eq!(store.list_sessions(&1u64.into()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn reserved_abilities_are_refused_at_issue() {
        let tokens = RefreshTokens::new(MemoryStore::new());
        let err = tokens.issue_pair(NewPair::new(1u64).abilities([REFRESH_ABILITY])).await.unwrap_err();
        assert_eq!(err.kind(), crate::store::StoreErrorKind::InvalidInput);
        assert!(err.to_string().contains("issue-access-token"), "{err}");
        let err = tokens.store().issue(crate::NewToken::access(1u64).abilities(["tta:session:1"])).await.unwrap_err();
        assert_eq!(err.kind(), crate::store::StoreErrorKind::InvalidInput);
        assert!(tokens.store().is_empty());
    }

    #[tokio::test]
    async fn no_credentials_is_missing_not_invalid() {
        let tokens = RefreshTokens::new(MemoryStore::new());
        let err = tokens.exchange(&HeaderMap::new()).await.unwrap_err();
        assert!(matches!(err, RefreshError::Missing));
        assert_eq!(err.rejection(), Rejection::MissingCredentials);
    }

    #[tokio::test]
    async fn access_tokens_and_wrong_secrets_do_not_refresh() {
        let store = MemoryStore::new();
        let tokens = RefreshTokens::new(store.clone());
        let pair = tokens.issue_pair(NewPair::new(1u64)).await.unwrap();
        assert!(matches!(tokens.exchange(&bearer(&pair.access)).await, Err(RefreshError::Invalid)));
        let mut forged = HeaderMap::new();
        let forged_value = format!("Bearer {}|wrong", pair.refresh.record.id);
        forged.insert(AUTHORIZATION, HeaderValue::from_str(&forged_value).unwrap());
        assert!(matches!(tokens.exchange(&forged).await, Err(RefreshError::Invalid)));
        assert_eq!(store.len(), 2, "a wrong secret must not revoke anything");
    }

    #[tokio::test]
    async fn ten_thousand_refreshes_keep_a_bounded_number_of_records() {
        let store = MemoryStore::new();
        let tokens = RefreshTokens::new(store.clone());
        let first = tokens.issue_pair(NewPair::new(1u64)).await.unwrap();
        let mut pair = first.clone();
        for _ in 0..10_000 {
            pair = tokens.exchange(&bearer(&pair.refresh)).await.unwrap();
        }
        assert_eq!(store.len(), 2, "one access and one refresh token");
        assert_eq!(store.records_of(&1u64.into()), 2, "nothing per exchange is remembered");
        let err = tokens.exchange(&bearer(&first.refresh)).await.unwrap_err();
        assert!(matches!(err, RefreshError::Reused { revoked: 2, .. }), "10,000 exchanges later: {err:?}");
    }
}
