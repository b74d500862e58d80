//! [`StoreError`]: a failure of the store itself.

use std::error::Error as StdError;
use std::fmt;

use crate::token::InvalidToken;

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
    /// The request was refused before it reached the backend: a token with a reserved ability (see
    /// [`Abilities::reserved`](crate::Abilities::reserved)). A bug in the caller, not a store failure.
    InvalidInput,
    /// The user already holds the maximum number of sessions and the
    /// [`SessionLimit`](crate::session::SessionLimit) says to refuse new ones.
    SessionLimit,
    /// The write was applied on the primary, but fewer replicas than required acknowledged it within
    /// the deadline (see `RedisStore::wait_for_replicas`), so a failover could still undo it. The
    /// services answer `503`; retrying is safe (a retried logout revokes what is left, or finds the
    /// token already gone).
    NotAcknowledged,
}

impl StoreErrorKind {
    /// The `kind` label of the store error metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            StoreErrorKind::Backend => "backend",
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::Random => "random",
            StoreErrorKind::InvalidInput => "invalid_input",
            StoreErrorKind::SessionLimit => "session_limit",
            StoreErrorKind::NotAcknowledged => "not_acknowledged",
        }
    }
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

    /// A request refused before it reached the backend (see [`StoreErrorKind::InvalidInput`]).
    pub fn invalid_input(what: impl Into<BoxError>) -> Self {
        Self { kind: StoreErrorKind::InvalidInput, source: Some(what.into()) }
    }

    /// The user is at the session limit and new sessions are refused (see [`StoreErrorKind::SessionLimit`]).
    pub fn session_limit(max: usize) -> Self {
        let what = format!("the user already holds the maximum of {max} sessions; log out of one first");
        Self { kind: StoreErrorKind::SessionLimit, source: Some(what.into()) }
    }

    /// A write the primary applied but not enough replicas acknowledged in time (see
    /// [`StoreErrorKind::NotAcknowledged`]); `what` says how many did, and within what deadline.
    pub fn not_acknowledged(what: impl Into<BoxError>) -> Self {
        Self { kind: StoreErrorKind::NotAcknowledged, source: Some(what.into()) }
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
            StoreErrorKind::InvalidInput => "token refused",
            StoreErrorKind::SessionLimit => "session limit reached",
            StoreErrorKind::NotAcknowledged => "token store write not acknowledged by replicas",
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

impl From<InvalidToken> for StoreError {
    fn from(e: InvalidToken) -> Self {
        StoreError::invalid_input(e)
    }
}
