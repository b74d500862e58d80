//! Builders for unit tests of handlers: records and authenticated tokens without a store.

use super::*;

// ---------------------------------------------------------------------------------------------------
// Builders for handler tests

/// A [`TokenRecord`] for `user_id` to build test values from (id 1, session 1, an access token with
/// `["*"]`, issued now, never expiring). Turn it into a record with `.into()`.
pub fn record(user_id: impl Into<UserId>) -> TestRecord {
    TestRecord(TokenRecord {
        digest: TokenDigest::of(b"test"),
        id: 1,
        session_id: SessionId::new(1),
        kind: TokenKind::Access,
        expires_at: None,
        user_id: user_id.into(),
        created_at: SystemTime::now(),
        last_used_at: None,
        name: TokenName::default(),
        abilities: Abilities::all(),
    })
}

/// A [`TokenRecord`] under construction; see [`record`].
#[derive(Clone, Debug)]
pub struct TestRecord(TokenRecord);

impl TestRecord {
    /// The token id.
    pub fn id(mut self, id: TokenId) -> Self {
        self.0.id = id;
        self
    }

    /// The session id.
    pub fn session(mut self, id: u64) -> Self {
        self.0.session_id = SessionId::new(id);
        self
    }

    /// The name.
    pub fn name(mut self, name: impl Into<TokenName>) -> Self {
        self.0.name = name.into();
        self
    }

    /// The abilities.
    pub fn abilities<I: IntoIterator<Item = S>, S: Into<String>>(mut self, abilities: I) -> Self {
        self.0.abilities = abilities.into_iter().collect();
        self
    }

    /// The kind.
    pub fn kind(mut self, kind: TokenKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// The expiry.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.0.expires_at = Some(at);
        self
    }
}

impl From<TestRecord> for TokenRecord {
    fn from(record: TestRecord) -> Self {
        record.0
    }
}
