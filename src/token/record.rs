//! What a store holds of a token ([`TokenRecord`]), its [`TokenKind`], and why a token is refused before it is stored.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::{
    Abilities, PlainTextToken, SessionId, TokenDigest, TokenId, TokenName, UserId, REFRESH_ABILITY,
    RESERVED_ABILITY_PREFIX, ROTATED_REFRESH_ABILITY,
};

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Authenticates requests. The only kind [`TokenAuthLayer`](crate::TokenAuthLayer) accepts by default.
    Access,
    /// Only exchanges for a new access/refresh pair in the same session (see
    /// [`RefreshTokens::exchange`](crate::refresh::RefreshTokens::exchange)). Its abilities are the ones
    /// the access tokens it mints get.
    Refresh,
}

impl TokenKind {
    /// A stable lower-case name, used by stores that persist the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "access" => Some(TokenKind::Access),
            "refresh" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// Everything known about a stored token. Returned by [`TokenStore::find`](crate::TokenStore::find).
///
/// Cheap to clone (no allocation for integer user ids, names up to 23 bytes and `["*"]` abilities).
/// `Debug` prints only a prefix of the digest; the secret itself is never stored.
#[derive(Clone, Debug)]
pub struct TokenRecord {
    /// SHA-256 of the secret.
    pub digest: TokenDigest,
    /// The token id.
    pub id: TokenId,
    /// The session (device) the token belongs to.
    pub session_id: SessionId,
    /// Access or refresh.
    pub kind: TokenKind,
    /// When it stops being valid; `None` means never (unless the layer sets a maximum age).
    pub expires_at: Option<SystemTime>,
    /// The owner.
    pub user_id: UserId,
    /// When the token was issued.
    pub created_at: SystemTime,
    /// When it last authenticated a request, if the store tracks that.
    pub last_used_at: Option<SystemTime>,
    /// A label, e.g. the device name.
    pub name: TokenName,
    /// What the token may do. For a refresh token: what the access tokens it mints may do.
    pub abilities: Abilities,
}

impl TokenRecord {
    /// Whether the token is expired at `now`: its `expires_at` has passed, or, with `max_age`, it was
    /// created more than `max_age` ago (Sanctum's `expiration`). The sooner of the two wins.
    #[inline]
    pub fn is_expired(&self, now: SystemTime, max_age: Option<Duration>) -> bool {
        if matches!(self.expires_at, Some(at) if at <= now) {
            return true;
        }
        match max_age {
            Some(age) => self.created_at.checked_add(age).is_none_or(|limit| limit <= now),
            None => false,
        }
    }
}

/// Why a token or session was refused before it reached the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidToken {
    /// An ability is reserved (see [`Abilities::reserved`]).
    ReservedAbility(String),
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidToken::ReservedAbility(name) => write!(
                f,
                "the ability {name:?} is reserved (`{REFRESH_ABILITY}` and `{ROTATED_REFRESH_ABILITY}` mark refresh \
                 tokens, `{RESERVED_ABILITY_PREFIX}*` is this crate's bookkeeping): issue a refresh token with \
                 NewToken::refresh or RefreshTokens::issue_pair, or rename the ability"
            ),
        }
    }
}

impl std::error::Error for InvalidToken {}

/// A freshly issued token: its plain text (shown to the client once) and the stored record.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// `{id}|{secret}`. Hand it to the client; it cannot be recovered later.
    pub plain_text: PlainTextToken,
    /// What was stored.
    pub record: TokenRecord,
}
