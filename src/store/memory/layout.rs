//! How a token is laid out in memory: the 88-byte slot read by the lookup that misses the cache, its shared
//! details, times as nanoseconds, and a user's token ids.

use super::*;

/// A stored token, laid out for the lookup that misses the cache: the check reads the digest, the
/// expiry, the session and kind, and the user (the first 64 bytes); the rest follows. 88 bytes, so an
/// entry of the map (with its key) is 96: about 290 bytes per token at a million tokens, index
/// included (`examples/memory_per_token.rs`).
#[repr(C)]
pub(super) struct Slot {
    pub(super) digest: TokenDigest,
    pub(super) expires: Nanos,
    /// The session id, with the kind in the top bit (set: refresh).
    pub(super) session_and_kind: u64,
    pub(super) user_id: UserId,
    pub(super) created: Nanos,
    pub(super) last_used: Nanos,
    /// The session's name and abilities, and the refresh tokens it exchanged: shared by the session's
    /// tokens, and absent for the common unnamed, `["*"]` token that never refreshed.
    pub(super) details: Option<Arc<Details>>,
}

const REFRESH_BIT: u64 = 1 << 63;

pub(super) struct Details {
    pub(super) name: TokenName,
    pub(super) abilities: Abilities,
    /// The digest of the session's refresh family key (sessions with a refresh token).
    pub(super) family: Option<TokenDigest>,
    /// Exchanged within the reuse interval: oldest first, at most `keep_rotated` (empty without one).
    pub(super) rotated: Vec<RotatedRefresh>,
}

/// A time as nanoseconds since the Unix epoch: exact for 1678 to 2262, saturating outside.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Nanos(pub(super) i64);

impl Nanos {
    pub(super) const NEVER: Nanos = Nanos(i64::MAX);
    pub(super) const NONE: Nanos = Nanos(i64::MIN);

    pub(super) fn of(time: SystemTime) -> Self {
        match time.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => Nanos(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX - 1)),
            Err(before) => Nanos(i64::try_from(before.duration().as_nanos()).map_or(i64::MIN + 1, |n| -n)),
        }
    }

    pub(super) fn of_option(time: Option<SystemTime>, absent: Nanos) -> Self {
        time.map_or(absent, Nanos::of)
    }

    pub(super) fn time(self) -> SystemTime {
        let magnitude = Duration::from_nanos(self.0.unsigned_abs());
        if self.0 >= 0 {
            SystemTime::UNIX_EPOCH + magnitude
        } else {
            SystemTime::UNIX_EPOCH - magnitude
        }
    }

    pub(super) fn option(self, absent: Nanos) -> Option<SystemTime> {
        (self != absent).then(|| self.time())
    }
}

impl Slot {
    pub(super) fn new(
        user_id: UserId,
        session: SessionId,
        kind: TokenKind,
        digest: TokenDigest,
        expires_at: Option<SystemTime>,
        created_at: SystemTime,
        details: Option<Arc<Details>>,
    ) -> Self {
        let kind_bit = if kind == TokenKind::Refresh { REFRESH_BIT } else { 0 };
        Self {
            digest,
            expires: Nanos::of_option(expires_at, Nanos::NEVER),
            session_and_kind: session.get() | kind_bit,
            user_id,
            created: Nanos::of(created_at),
            last_used: Nanos::NONE,
            details,
        }
    }

    #[inline]
    pub(super) fn session(&self) -> SessionId {
        SessionId::new(self.session_and_kind & !REFRESH_BIT)
    }

    #[inline]
    pub(super) fn kind(&self) -> TokenKind {
        if self.session_and_kind & REFRESH_BIT == 0 {
            TokenKind::Access
        } else {
            TokenKind::Refresh
        }
    }

    pub(super) fn expires_at(&self) -> Option<SystemTime> {
        self.expires.option(Nanos::NEVER)
    }

    pub(super) fn rotated(&self) -> &[RotatedRefresh] {
        self.details.as_ref().map_or(&[], |d| &d.rotated)
    }

    pub(super) fn family(&self) -> Option<TokenDigest> {
        self.details.as_ref().and_then(|d| d.family)
    }

    #[inline]
    pub(super) fn record(&self, id: TokenId) -> TokenRecord {
        let (name, abilities) = match &self.details {
            Some(details) => (details.name.clone(), details.abilities.clone()),
            None => (TokenName::default(), Abilities::all()),
        };
        TokenRecord {
            digest: self.digest,
            id,
            session_id: self.session(),
            kind: self.kind(),
            expires_at: self.expires_at(),
            user_id: self.user_id.clone(),
            created_at: self.created.time(),
            last_used_at: self.last_used.option(Nanos::NONE),
            name,
            abilities,
        }
    }
}

/// The details a session needs, or `None` when it is the common unnamed `["*"]` access token.
pub(super) fn details(
    name: &TokenName,
    abilities: &Abilities,
    family: Option<TokenDigest>,
    rotated: Vec<RotatedRefresh>,
) -> Option<Arc<Details>> {
    let plain = name.is_empty() && *abilities == Abilities::all() && family.is_none() && rotated.is_empty();
    (!plain).then(|| Arc::new(Details { name: name.clone(), abilities: abilities.clone(), family, rotated }))
}

/// The ids of one user's tokens. Most users hold one or two: those stay inline in the index, which
/// saves an allocation per user and, at logout, a cache miss on a store too big for the cache.
pub(super) enum UserTokens {
    /// Up to two ids; `0` marks a free place (ids start at 1).
    Inline([TokenId; 2]),
    /// Three or more.
    Heap(Vec<TokenId>),
}

impl Default for UserTokens {
    fn default() -> Self {
        UserTokens::Inline([0; 2])
    }
}

impl UserTokens {
    pub(super) fn push(&mut self, id: TokenId) {
        match self {
            UserTokens::Inline(ids) => match ids.iter_mut().find(|place| **place == 0) {
                Some(place) => *place = id,
                None => {
                    let mut heap = Vec::with_capacity(4);
                    heap.extend_from_slice(ids);
                    heap.push(id);
                    *self = UserTokens::Heap(heap);
                }
            },
            UserTokens::Heap(ids) => ids.push(id),
        }
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = TokenId> + '_ {
        let ids: &[TokenId] = match self {
            UserTokens::Inline(ids) => ids,
            UserTokens::Heap(ids) => ids,
        };
        ids.iter().copied().filter(|&id| id != 0)
    }

    pub(super) fn contains(&self, id: TokenId) -> bool {
        self.ids().any(|other| other == id)
    }

    /// Keeps the ids for which `keep` holds; returns the others.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(TokenId) -> bool) -> Vec<TokenId> {
        let mut removed = Vec::new();
        match self {
            UserTokens::Inline(ids) => {
                for place in ids.iter_mut().filter(|place| **place != 0) {
                    if !keep(*place) {
                        removed.push(std::mem::take(place));
                    }
                }
            }
            UserTokens::Heap(ids) => ids.retain(|&id| {
                keep(id) || {
                    removed.push(id);
                    false
                }
            }),
        }
        removed
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ids().next().is_none()
    }
}

/// One of a user's sessions, as seen from its tokens.
pub(super) struct SessionView {
    pub(super) id: SessionId,
    pub(super) created: Nanos,
    pub(super) tokens: Vec<TokenId>,
}
