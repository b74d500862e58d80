//! [`NewToken`]: a token to issue as a session of its own.

use std::time::{Duration, SystemTime};

use super::{NewSecret, NewSession, SessionLimit};
use crate::token::{Abilities, InvalidToken, TokenDigest, TokenKind, TokenName, UserId};

/// What to issue: a builder passed to [`TokenStoreExt::issue`](crate::TokenStoreExt::issue). The token
/// becomes a session of its own.
///
/// ```
/// use std::time::Duration;
/// use tower_token_auth::NewToken;
///
/// let token = NewToken::access(42u64)
///     .name("laptop")
///     .abilities(["posts:read", "posts:write"])
///     .expires_in(Duration::from_secs(3600));
/// ```
#[derive(Clone, Debug)]
pub struct NewToken {
    pub(crate) user_id: UserId,
    pub(crate) kind: TokenKind,
    pub(crate) name: TokenName,
    pub(crate) abilities: Abilities,
    pub(crate) expires: Expiry,
    pub(crate) issued_at: Option<SystemTime>,
    pub(crate) prefix: String,
    pub(crate) limit: SessionLimit,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Expiry {
    Never,
    At(SystemTime),
    In(Duration),
}

impl Expiry {
    pub(crate) fn resolve(self, created_at: SystemTime) -> Option<SystemTime> {
        match self {
            Expiry::Never => None,
            Expiry::At(at) => Some(at),
            Expiry::In(ttl) => created_at.checked_add(ttl),
        }
    }
}

impl NewToken {
    /// An access token for `user_id`, with every ability (`["*"]`), no expiry and no name.
    pub fn access(user_id: impl Into<UserId>) -> Self {
        Self::of_kind(user_id.into(), TokenKind::Access)
    }

    /// A refresh token for `user_id`. It is rejected by [`TokenAuthLayer`](crate::TokenAuthLayer) and only
    /// exchanged for a new pair by [`RefreshTokens::exchange`](crate::refresh::RefreshTokens::exchange); its
    /// abilities are those of the access tokens it mints. Logins usually want a pair instead:
    /// [`RefreshTokens::issue_pair`](crate::refresh::RefreshTokens::issue_pair).
    pub fn refresh(user_id: impl Into<UserId>) -> Self {
        Self::of_kind(user_id.into(), TokenKind::Refresh)
    }

    fn of_kind(user_id: UserId, kind: TokenKind) -> Self {
        Self {
            user_id,
            kind,
            name: TokenName::default(),
            abilities: Abilities::all(),
            expires: Expiry::Never,
            issued_at: None,
            prefix: String::new(),
            limit: SessionLimit::default(),
        }
    }

    /// Sets the token's name (Sanctum's `name`, often the device).
    pub fn name(mut self, name: impl Into<TokenName>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the abilities (default `["*"]`). Reserved names (see [`Abilities::reserved`]) make
    /// [`issue`](crate::TokenStoreExt::issue) fail with [`StoreErrorKind::InvalidInput`](crate::store::StoreErrorKind::InvalidInput).
    pub fn abilities<I, S>(mut self, abilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.abilities = abilities.into_iter().collect();
        self
    }

    /// Expires the token at a fixed time.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires = Expiry::At(at);
        self
    }

    /// Expires the token `ttl` after it is issued.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expires = Expiry::In(ttl);
        self
    }

    /// Uses `now` as the issue time instead of the system clock (for tests with a [`ManualClock`](crate::clock::ManualClock)).
    pub fn issued_at(mut self, now: SystemTime) -> Self {
        self.issued_at = Some(now);
        self
    }

    /// Prepends `prefix` to the secret (Sanctum's `token_prefix`, for secret scanning), e.g. `"myapp_"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many sessions the user may hold, counting this one (default [`SessionLimit::default`]: 100,
    /// the oldest revoked when full).
    pub fn session_limit(mut self, limit: SessionLimit) -> Self {
        self.limit = limit;
        self
    }

    /// The session this token is stored as, its secret's digest given.
    pub(crate) fn into_session(
        self,
        digest: TokenDigest,
        family: Option<TokenDigest>,
    ) -> Result<NewSession, InvalidToken> {
        if let Some(reserved) = self.abilities.reserved() {
            return Err(InvalidToken::ReservedAbility(reserved.to_owned()));
        }
        let created_at = self.issued_at.unwrap_or_else(SystemTime::now);
        let secret = NewSecret { digest, expires_at: self.expires.resolve(created_at) };
        let (access, refresh) = match self.kind {
            TokenKind::Access => (Some(secret), None),
            TokenKind::Refresh => (None, Some(secret)),
        };
        Ok(NewSession {
            user_id: self.user_id,
            name: self.name,
            abilities: self.abilities,
            created_at,
            access,
            refresh,
            family,
            limit: self.limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenRecord;

    #[test]
    fn expiry_uses_the_sooner_of_expires_at_and_max_age() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let session = NewToken::access(1u64).issued_at(t0).expires_in(Duration::from_secs(100));
        let session = session.into_session(TokenDigest::of(b"x"), None).unwrap();
        let record = TokenRecord {
            digest: TokenDigest::of(b"x"),
            id: 1,
            session_id: crate::SessionId::new(1),
            kind: TokenKind::Access,
            expires_at: session.access.unwrap().expires_at,
            user_id: session.user_id,
            created_at: session.created_at,
            last_used_at: None,
            name: session.name,
            abilities: session.abilities,
        };
        assert!(!record.is_expired(t0 + Duration::from_secs(99), None));
        assert!(record.is_expired(t0 + Duration::from_secs(100), None));
        assert!(record.is_expired(t0 + Duration::from_secs(50), Some(Duration::from_secs(50))));
        assert!(!record.is_expired(t0 + Duration::from_secs(49), Some(Duration::from_secs(50))));
    }
}
