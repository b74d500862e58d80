//! Sessions: a login (a device) is a session, made of its access and refresh tokens and every pair its
//! refresh token later mints.
//!
//! A token issued on its own ([`TokenStoreExt::issue`](crate::TokenStoreExt::issue), or a row a Laravel
//! app wrote into Sanctum's table) is a session of one token. A login through
//! [`RefreshTokens::issue_pair`](crate::refresh::RefreshTokens::issue_pair) is a session of two; each
//! exchange of its refresh token replaces both tokens **in the same session**, so a device stays one
//! session however often it refreshes.
//!
//! The store operations on sessions are each **one atomic store operation** (one critical section in
//! memory, one Lua script on Redis, one SQL transaction):
//!
//! | operation | what is atomic |
//! |---|---|
//! | [`insert`](crate::TokenStore::insert) | the session's tokens are stored together, and the per-user [`SessionLimit`] applied |
//! | [`exchange_refresh`](crate::TokenStore::exchange_refresh) | check the refresh token, then either replace the session's tokens with the new pair or, for a reused token, revoke the session |
//! | [`revoke_sessions`](crate::TokenStore::revoke_sessions) | owner check and revocation: a session of another user is never touched |
//!
//! So an exchange racing a logout is either entirely before it (and its pair is revoked with the rest)
//! or entirely after it (and fails); and a refresh token presented twice at once has exactly one
//! winner, whose pair the second presentation then revokes as reuse.
//!
//! ```
//! use tower_token_auth::session::Sessions;
//! use tower_token_auth::refresh::{NewPair, RefreshTokens};
//! use tower_token_auth::{MemoryStore, TokenStore, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_token_auth::StoreError> {
//! let store = MemoryStore::new();
//! let tokens = RefreshTokens::new(store.clone());
//! let laptop = tokens.issue_pair(NewPair::new(7u64).name("laptop")).await?;
//! let phone = tokens.issue_pair(NewPair::new(7u64).name("phone")).await?;
//!
//! let sessions = store.list_sessions(&7u64.into()).await?;
//! assert_eq!(sessions.len(), 2);
//! assert_eq!(sessions[0].name, "phone"); // newest first
//!
//! // Log out every other device, keeping the laptop.
//! let revoked = store.revoke_sessions(&7u64.into(), Sessions::AllExcept(laptop.session_id())).await?;
//! assert_eq!(revoked, 2); // the phone's access and refresh token
//! assert!(store.find(phone.access.record.id).await?.is_none());
//! assert!(store.find(laptop.access.record.id).await?.is_some());
//! # Ok(())
//! # }
//! ```

use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime};

use crate::token::{Abilities, TokenDigest, TokenId, TokenKind, TokenName, TokenRecord, UserId};
pub use crate::token::{InvalidSessionId, SessionId};

mod new_token;
pub use new_token::NewToken;

/// One session, as [`TokenStore::list_sessions`](crate::TokenStore::list_sessions) lists it.
///
/// Serializes (serde) as a JSON object with times in unix seconds ([`unix_seconds`](crate::clock::unix_seconds)),
/// the shape of [`SessionListService`](crate::devices::SessionListService)'s entries without `current`:
/// `{"id":3,"user_id":7,"name":"laptop","abilities":["*"],"created_at":1700000000,"last_used_at":null,"expires_at":1702592000}`.
#[derive(Clone, Debug)]
pub struct SessionSummary {
    /// The session id.
    pub id: SessionId,
    /// The owner.
    pub user_id: UserId,
    /// The device name given at login.
    pub name: TokenName,
    /// The abilities of the session's access tokens.
    pub abilities: Abilities,
    /// When the session began (the login).
    pub created_at: SystemTime,
    /// When one of its tokens last authenticated a request, if the store tracks that.
    pub last_used_at: Option<SystemTime>,
    /// When the last of its tokens expires (`None`: one of them never does). After that the session is
    /// over, even if not yet pruned.
    pub expires_at: Option<SystemTime>,
}

impl serde::Serialize for SessionSummary {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use crate::clock::unix_seconds;
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("SessionSummary", 7)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("user_id", &self.user_id)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("abilities", &self.abilities)?;
        s.serialize_field("created_at", &unix_seconds(self.created_at))?;
        s.serialize_field("last_used_at", &self.last_used_at.map(unix_seconds))?;
        s.serialize_field("expires_at", &self.expires_at.map(unix_seconds))?;
        s.end()
    }
}

impl SessionSummary {
    /// Whether every token of the session has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A session to store: what [`TokenStore::insert`](crate::TokenStore::insert) receives.
///
/// Built by [`TokenStoreExt::issue`](crate::TokenStoreExt::issue) and
/// [`RefreshTokens::issue_pair`](crate::refresh::RefreshTokens::issue_pair), which generate the secrets.
/// At least one of `access` and `refresh` is set.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// The owner.
    pub user_id: UserId,
    /// The device name, given to each of the session's tokens.
    pub name: TokenName,
    /// The abilities of the access token, and those the refresh token grants the access tokens it mints.
    pub abilities: Abilities,
    /// Issue time of the tokens, and the session's start.
    pub created_at: SystemTime,
    /// The access token, if the session has one.
    pub access: Option<NewSecret>,
    /// The refresh token, if the session has one.
    pub refresh: Option<NewSecret>,
    /// The digest of the session's refresh family key, which every refresh token of the session carries
    /// (see [`RefreshExchange::decide`]). Set whenever `refresh` is; a store keeps it with the session
    /// for as long as the session lives.
    pub family: Option<TokenDigest>,
    /// How many sessions the user may hold, counting this one.
    pub limit: SessionLimit,
}

/// One token to store: the digest of its secret and its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewSecret {
    /// SHA-256 of the secret.
    pub digest: TokenDigest,
    /// When it stops being valid, if ever.
    pub expires_at: Option<SystemTime>,
}

/// The ids a store assigned to a new session and its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTokens {
    /// The session.
    pub session_id: SessionId,
    /// The access token's id, if the session has one.
    pub access: Option<TokenId>,
    /// The refresh token's id, if the session has one.
    pub refresh: Option<TokenId>,
}

/// The cap on live sessions per user, applied atomically when a session is stored.
///
/// Without a cap one user (or a script logging in in a loop) can pile up tokens without bound, and
/// every logout, listing and prune of that user pays for all of them. The default allows 100 sessions
/// and, when a login would make it 101, **revokes the user's oldest session** (by creation time), so a
/// login always succeeds and nobody can be locked out by their own forgotten devices.
/// [`WhenFull::Refuse`] fails the new login instead (Knox's `TOKEN_LIMIT_PER_USER`), with
/// [`StoreErrorKind::SessionLimit`](crate::store::StoreErrorKind::SessionLimit).
///
/// ```
/// use tower_token_auth::session::{SessionLimit, WhenFull};
///
/// let strict = SessionLimit::new(10, WhenFull::Refuse);
/// assert_eq!(strict.max(), Some(10));
/// assert_eq!(SessionLimit::default().max(), Some(100));
/// assert_eq!(SessionLimit::unlimited().max(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimit {
    max: Option<NonZeroUsize>,
    when_full: WhenFull,
}

/// What [`SessionLimit`] does when a user already holds the maximum number of sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Revoke the user's oldest sessions (by creation time) to make room. The default.
    #[default]
    RevokeOldest,
    /// Refuse the new session.
    Refuse,
}

/// The default maximum of [`SessionLimit`].
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 100;

impl SessionLimit {
    /// At most `max` sessions per user (a `max` of 0 is taken as 1).
    pub fn new(max: usize, when_full: WhenFull) -> Self {
        Self { max: Some(NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN)), when_full }
    }

    /// No cap. Only for users whose token count you bound yourself: without a cap, the cost of a logout
    /// grows with the user's tokens.
    pub fn unlimited() -> Self {
        Self { max: None, when_full: WhenFull::RevokeOldest }
    }

    /// The maximum, if any.
    pub fn max(&self) -> Option<usize> {
        self.max.map(NonZeroUsize::get)
    }

    /// What happens when the user is at the maximum.
    pub fn when_full(&self) -> WhenFull {
        self.when_full
    }

    /// Given the user's existing sessions (`existing` of them), how many of the oldest to revoke before
    /// storing one more: `Ok(0)` when there is room, `Err(())` when the new session must be refused.
    #[allow(clippy::result_unit_err)] // the caller turns it into its own error; there is nothing to say
    pub fn evictions(&self, existing: usize) -> Result<usize, ()> {
        let Some(max) = self.max() else { return Ok(0) };
        let excess = (existing + 1).saturating_sub(max);
        match (excess, self.when_full) {
            (0, _) => Ok(0),
            (n, WhenFull::RevokeOldest) => Ok(n),
            (_, WhenFull::Refuse) => Err(()),
        }
    }
}

impl Default for SessionLimit {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SESSIONS_PER_USER, WhenFull::RevokeOldest)
    }
}

/// Which sessions of a user [`TokenStore::revoke_sessions`](crate::TokenStore::revoke_sessions) revokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sessions {
    /// Every session: log out everywhere (the logout endpoint's contract).
    All,
    /// One session (log out this device, or revoke a device from the device list). A session of another
    /// user, or one that does not exist, is not touched and counts 0.
    Only(SessionId),
    /// Every session but this one (log out other devices, OWASP ASVS V3.3.3).
    AllExcept(SessionId),
}

impl Sessions {
    /// Whether the session `id` is selected.
    pub fn includes(&self, id: SessionId) -> bool {
        match *self {
            Sessions::All => true,
            Sessions::Only(only) => id == only,
            Sessions::AllExcept(kept) => id != kept,
        }
    }
}

/// What presenting an already exchanged refresh token does (a copy of it was used: theft, or a client
/// bug). See [`RefreshTokens::on_reuse`](crate::refresh::RefreshTokens::on_reuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnReuse {
    /// Revoke that session: every token of the device, successors included (the refresh-token family of
    /// RFC 9700 §4.14). The user's other devices keep working. The default.
    #[default]
    RevokeSession,
    /// Revoke every session of the user.
    RevokeAllSessions,
}

/// A refresh token a session exchanged less than the [reuse
/// interval](crate::refresh::RefreshTokens::reuse_interval) ago, kept so that a client retrying after a
/// lost response may exchange it again. Only needed with a non-zero reuse interval: reuse detection
/// itself needs no list (see [`RefreshExchange::decide`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotatedRefresh {
    /// The digest of its secret.
    pub digest: TokenDigest,
    /// When it was exchanged.
    pub rotated_at: SystemTime,
}

/// The default of [`RefreshExchange::keep_rotated`]: how many refresh tokens exchanged within the reuse
/// interval a session remembers for retries.
pub const DEFAULT_KEEP_ROTATED: usize = 8;

/// The most exchanged refresh tokens a session remembers for retries within the reuse interval, whatever
/// [`RefreshTokens::keep_rotated`](crate::refresh::RefreshTokens::keep_rotated) asks (each is about 95
/// bytes of the refresh row's `abilities` column on SQL, which MySQL's `TEXT` caps at 64 KiB).
pub const MAX_KEEP_ROTATED: usize = 128;

/// An exchange of a refresh token for a new pair: what
/// [`TokenStore::exchange_refresh`](crate::TokenStore::exchange_refresh) receives.
///
/// The store decides with [`decide`](Self::decide) (which holds the rules, so every store applies the
/// same ones) and applies the outcome atomically:
///
/// - [`ExchangeDecision::Rotate`]: the session's refresh token now has `refresh`'s digest and expiry
///   (and keeps its `created_at`, the session's start) and the session's family digest is
///   [`next_family`](Self::next_family); its access token has `access`'s, issued at `now` (replaced in
///   place, or created if it was pruned); the session's retry list becomes
///   [`rotated_after`](Self::rotated_after) (empty unless there is a reuse interval); any other access
///   token of the session is revoked. The session keeps its id, name, abilities and creation time.
/// - [`ExchangeDecision::Reuse`]: the session is revoked (or, with [`OnReuse::RevokeAllSessions`],
///   every session of its user).
/// - [`ExchangeDecision::Invalid`]: nothing changes.
#[derive(Clone, Debug)]
pub struct RefreshExchange {
    /// The id of the presented refresh token.
    pub token_id: TokenId,
    /// The digest of the presented secret, as a store keeps it for the current refresh token.
    pub digest: TokenDigest,
    /// The digest of the family key the presented secret carries (`None`: a refresh token issued before
    /// family keys, or garbage).
    pub family: Option<TokenDigest>,
    /// The family digest the session has after a [`Rotate`](ExchangeDecision::Rotate): the presented
    /// one, or a new one when a refresh token from before family keys is exchanged.
    pub next_family: TokenDigest,
    /// The time of the exchange.
    pub now: SystemTime,
    /// The new access token.
    pub access: NewSecret,
    /// The new refresh token.
    pub refresh: NewSecret,
    /// How long after its exchange a refresh token may still be exchanged (default zero: never).
    pub reuse_interval: Duration,
    /// How many refresh tokens exchanged within the reuse interval a session remembers for retries.
    pub keep_rotated: usize,
    /// What reuse revokes.
    pub on_reuse: OnReuse,
}

/// What a store does with a [`RefreshExchange`]; see [`RefreshExchange::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeDecision {
    /// Exchange: mint the new pair in the session.
    Rotate,
    /// A rotated refresh token was presented again: revoke.
    Reuse,
    /// Unknown, wrong secret, expired, or not a refresh token: change nothing.
    Invalid,
}

impl RefreshExchange {
    /// The rules, given the stored record of the presented token id (`None` if there is none), the
    /// session's family digest (`family`, `None` for a session from before family keys) and the refresh
    /// tokens it exchanged within the reuse interval (`rotated`, any order):
    ///
    /// - not a refresh token, or unknown: [`Invalid`](ExchangeDecision::Invalid);
    /// - the presented secret is the current one: [`Rotate`](ExchangeDecision::Rotate), unless the token
    ///   has expired ([`Invalid`](ExchangeDecision::Invalid));
    /// - it is one of `rotated`, exchanged less than [`reuse_interval`](Self::reuse_interval) ago, and
    ///   the session's refresh token has not expired: [`Rotate`](ExchangeDecision::Rotate) (a client
    ///   retrying after a lost response);
    /// - it carries the session's family key: [`Reuse`](ExchangeDecision::Reuse). Only a holder of one of
    ///   the session's refresh tokens knows that key, and every such token but the current one has been
    ///   exchanged, however long ago and however many exchanges since;
    /// - anything else (a wrong secret, another session's key): [`Invalid`](ExchangeDecision::Invalid),
    ///   so guessing or forging revokes nothing.
    ///
    /// Digests are compared in constant time, all of them, whichever matches.
    pub fn decide(
        &self,
        current: Option<&TokenRecord>,
        family: Option<&TokenDigest>,
        rotated: &[RotatedRefresh],
    ) -> ExchangeDecision {
        let Some(current) = current.filter(|record| record.kind == TokenKind::Refresh) else {
            return ExchangeDecision::Invalid;
        };
        let expired = current.is_expired(self.now, None);
        let is_current = current.digest.ct_eq(&self.digest);
        let same_family = match (family, self.family.as_ref()) {
            (Some(stored), Some(presented)) => stored.ct_eq(presented),
            _ => false,
        };
        let mut matched: Option<&RotatedRefresh> = None;
        for tripwire in rotated {
            if tripwire.digest.ct_eq(&self.digest) && matched.is_none() {
                matched = Some(tripwire);
            }
        }
        if is_current {
            return if expired { ExchangeDecision::Invalid } else { ExchangeDecision::Rotate };
        }
        match matched {
            Some(tripwire) if !expired && self.within_reuse_interval(tripwire.rotated_at) => ExchangeDecision::Rotate,
            Some(_) => ExchangeDecision::Reuse,
            None if same_family => ExchangeDecision::Reuse,
            None => ExchangeDecision::Invalid,
        }
    }

    fn within_reuse_interval(&self, rotated_at: SystemTime) -> bool {
        !self.reuse_interval.is_zero()
            && rotated_at.checked_add(self.reuse_interval).is_some_and(|until| self.now < until)
    }

    /// The session's retry list after a [`Rotate`](ExchangeDecision::Rotate) that replaced the refresh
    /// token whose digest is `replaced`: `rotated` plus that one, exchanged at [`now`](Self::now), keeping
    /// only those exchanged less than the reuse interval ago, at most [`keep_rotated`](Self::keep_rotated)
    /// (the newest), oldest first. Empty without a reuse interval, so by default a session stores no
    /// exchanged token at all.
    pub fn rotated_after(&self, rotated: &[RotatedRefresh], replaced: TokenDigest) -> Vec<RotatedRefresh> {
        let mut list: Vec<RotatedRefresh> = rotated.to_vec();
        list.push(RotatedRefresh { digest: replaced, rotated_at: self.now });
        list.retain(|tripwire| self.within_reuse_interval(tripwire.rotated_at));
        list.sort_by_key(|tripwire| tripwire.rotated_at);
        let excess = list.len().saturating_sub(self.keep_rotated);
        list.drain(..excess);
        list
    }
}

/// What [`TokenStore::exchange_refresh`](crate::TokenStore::exchange_refresh) did.
#[derive(Clone, Debug)]
pub enum ExchangeOutcome {
    /// The new pair was stored in the session.
    Exchanged(ExchangedSession),
    /// Nothing was changed: unknown, wrong secret, expired, or not a refresh token.
    Invalid,
    /// Reuse was detected and the session (or every session of the user) revoked.
    Reused {
        /// The owner.
        user_id: UserId,
        /// The session of the reused token.
        session_id: SessionId,
        /// How many tokens were revoked.
        revoked: u64,
    },
}

/// The session a refresh token was exchanged in, and the ids of its new tokens.
#[derive(Clone, Debug)]
pub struct ExchangedSession {
    /// The session.
    pub session_id: SessionId,
    /// The owner.
    pub user_id: UserId,
    /// The device name.
    pub name: TokenName,
    /// The abilities of the new access token.
    pub abilities: Abilities,
    /// The id of the new access token.
    pub access: TokenId,
    /// The id of the new refresh token.
    pub refresh: TokenId,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn refresh_record(digest: &[u8], expires_at: Option<SystemTime>) -> TokenRecord {
        TokenRecord {
            digest: TokenDigest::of(digest),
            id: 1,
            session_id: SessionId::new(1),
            kind: TokenKind::Refresh,
            expires_at,
            user_id: UserId::from(1u64),
            created_at: at(0),
            last_used_at: None,
            name: TokenName::default(),
            abilities: Abilities::all(),
        }
    }

    fn exchange(presented: &[u8], now: SystemTime, reuse_interval: Duration) -> RefreshExchange {
        let secret = NewSecret { digest: TokenDigest::of(b"new"), expires_at: None };
        RefreshExchange {
            token_id: 1,
            digest: TokenDigest::of(presented),
            family: None,
            next_family: TokenDigest::of(b"family"),
            now,
            access: secret,
            refresh: secret,
            reuse_interval,
            keep_rotated: 2,
            on_reuse: OnReuse::RevokeSession,
        }
    }

    #[test]
    fn the_current_secret_rotates_unless_expired() {
        let current = refresh_record(b"current", Some(at(100)));
        assert_eq!(
            exchange(b"current", at(10), Duration::ZERO).decide(Some(&current), None, &[]),
            ExchangeDecision::Rotate
        );
        assert_eq!(
            exchange(b"current", at(100), Duration::ZERO).decide(Some(&current), None, &[]),
            ExchangeDecision::Invalid
        );
        assert_eq!(
            exchange(b"wrong", at(10), Duration::ZERO).decide(Some(&current), None, &[]),
            ExchangeDecision::Invalid
        );
        assert_eq!(exchange(b"current", at(10), Duration::ZERO).decide(None, None, &[]), ExchangeDecision::Invalid);
        let mut access = current.clone();
        access.kind = TokenKind::Access;
        assert_eq!(
            exchange(b"current", at(10), Duration::ZERO).decide(Some(&access), None, &[]),
            ExchangeDecision::Invalid
        );
    }

    #[test]
    fn a_rotated_secret_is_reuse_unless_within_the_reuse_interval() {
        let current = refresh_record(b"current", None);
        let rotated = [RotatedRefresh { digest: TokenDigest::of(b"old"), rotated_at: at(10) }];
        assert_eq!(
            exchange(b"old", at(11), Duration::ZERO).decide(Some(&current), None, &rotated),
            ExchangeDecision::Reuse,
            "strict by default"
        );
        let interval = Duration::from_secs(5);
        assert_eq!(exchange(b"old", at(14), interval).decide(Some(&current), None, &rotated), ExchangeDecision::Rotate);
        assert_eq!(exchange(b"old", at(15), interval).decide(Some(&current), None, &rotated), ExchangeDecision::Reuse);
    }

    #[test]
    fn any_exchanged_token_of_the_family_is_reuse_and_other_families_revoke_nothing() {
        let current = refresh_record(b"current", None);
        let family = TokenDigest::of(b"family");
        let mut thief = exchange(b"exchanged long ago", at(10), Duration::ZERO);
        thief.family = Some(family);
        assert_eq!(thief.decide(Some(&current), Some(&family), &[]), ExchangeDecision::Reuse);
        thief.family = Some(TokenDigest::of(b"another family"));
        assert_eq!(thief.decide(Some(&current), Some(&family), &[]), ExchangeDecision::Invalid, "a forgery");
        thief.family = None;
        assert_eq!(thief.decide(Some(&current), Some(&family), &[]), ExchangeDecision::Invalid, "no key");
        thief.family = Some(family);
        assert_eq!(thief.decide(Some(&current), None, &[]), ExchangeDecision::Invalid, "a session without a family");
        let mut access = current.clone();
        access.kind = TokenKind::Access;
        assert_eq!(thief.decide(Some(&access), Some(&family), &[]), ExchangeDecision::Invalid);
    }

    #[test]
    fn without_a_reuse_interval_nothing_is_remembered() {
        let e = exchange(b"x", at(30), Duration::ZERO);
        assert!(e.rotated_after(&[], TokenDigest::of(b"c")).is_empty());
    }

    #[test]
    fn only_the_newest_rotated_tokens_within_the_interval_are_kept() {
        let e = exchange(b"x", at(30), Duration::from_secs(15));
        let list = [
            RotatedRefresh { digest: TokenDigest::of(b"b"), rotated_at: at(20) },
            RotatedRefresh { digest: TokenDigest::of(b"a"), rotated_at: at(17) },
            RotatedRefresh { digest: TokenDigest::of(b"expired"), rotated_at: at(10) },
        ];
        let after = e.rotated_after(&list, TokenDigest::of(b"c"));
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].digest, TokenDigest::of(b"b"));
        assert_eq!(after[1], RotatedRefresh { digest: TokenDigest::of(b"c"), rotated_at: at(30) });
    }

    #[test]
    fn session_ids_parse_only_plain_decimal() {
        assert_eq!("42".parse::<SessionId>(), Ok(SessionId::new(42)));
        assert_eq!("18446744073709551615".parse::<SessionId>(), Ok(SessionId::new(u64::MAX)));
        for bad in ["", "abc", "-1", "+1", "1e3", " 1", "1.0", "123456789012345678901234567890", "18446744073709551616"]
        {
            assert_eq!(bad.parse::<SessionId>(), Err(InvalidSessionId), "{bad:?}");
        }
    }

    #[test]
    fn the_session_limit_counts_the_new_session() {
        let limit = SessionLimit::new(3, WhenFull::RevokeOldest);
        assert_eq!(limit.evictions(2), Ok(0));
        assert_eq!(limit.evictions(3), Ok(1));
        assert_eq!(limit.evictions(7), Ok(5));
        assert_eq!(SessionLimit::new(3, WhenFull::Refuse).evictions(3), Err(()));
        assert_eq!(SessionLimit::unlimited().evictions(1_000_000), Ok(0));
    }
}
