//! [`SessionId`]: the id of a session, as low in the crate as token ids (every token record names its session).

use std::fmt;
use std::str::FromStr;

/// The id of a session: an integer, unique within a store, stable for the session's lifetime.
///
/// For a session of one token it is that token's id; for a login's pair it is chosen by the store (the
/// id of one of its tokens, or a number of its own). It is safe to show to the session's owner (the
/// device list), and useless to anyone else: every operation on a session also names the user.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// A session id from its integer.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }

    /// The integer.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for SessionId {
    fn from(id: u64) -> Self {
        Self(id)
    }
}

impl From<SessionId> for u64 {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

/// The error of parsing a [`SessionId`]: the text is not a decimal integer that fits in a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSessionId;

impl fmt::Display for InvalidSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a session id is a non-negative decimal integer below 2^64")
    }
}

impl std::error::Error for InvalidSessionId {}

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    /// Only ASCII digits (no sign, no spaces, no exponent), at most `u64::MAX`: a path segment such as
    /// `-1`, `1e3` or a 30-digit number is an error, never a panic.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidSessionId);
        }
        s.parse::<u64>().map(SessionId).map_err(|_| InvalidSessionId)
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u64::deserialize(deserializer).map(SessionId)
    }
}
