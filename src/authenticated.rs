//! [`AuthenticatedToken`]: what the auth layer hands to handlers.

use std::fmt;
use std::time::SystemTime;

use crate::session::SessionId;
use crate::token::{Abilities, TokenId, TokenKind, TokenName, TokenRecord, UserId};

/// The token that authenticated a request, inserted into the request extensions by
/// [`TokenAuth`](crate::TokenAuth).
///
/// Only the layer creates it, so a handler that finds one knows the layer validated the token (tests of
/// handlers can build one with `AuthenticatedToken::for_testing`, feature `test-util`). It is cheap to
/// clone. `Debug` shows neither the secret (never known after issue) nor the digest.
///
/// ```
/// # use http::Request;
/// use tower_token_auth::AuthenticatedToken;
///
/// fn handler(request: &Request<()>) -> String {
///     match request.extensions().get::<AuthenticatedToken>() {
///         Some(token) if token.can("posts:write") => format!("hello, user {}", token.user_id()),
///         Some(_) => "read-only token".to_owned(),
///         None => unreachable!("behind TokenAuthLayer"),
///     }
/// }
/// ```
#[derive(Clone)]
pub struct AuthenticatedToken {
    record: TokenRecord,
}

impl AuthenticatedToken {
    #[inline]
    pub(crate) fn new(record: TokenRecord) -> Self {
        Self { record }
    }

    /// A token for unit tests of handlers, built from any record, **without any check**: it proves
    /// nothing about a request. Behind the `test-util` feature so that production code cannot forge one
    /// by accident.
    ///
    /// ```
    /// use tower_token_auth::testing::record;
    /// use tower_token_auth::AuthenticatedToken;
    ///
    /// let token = AuthenticatedToken::for_testing(record(42u64).name("laptop"));
    /// assert_eq!(token.user_id(), &42u64);
    /// ```
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn for_testing(record: impl Into<TokenRecord>) -> Self {
        Self { record: record.into() }
    }

    /// The session (device) of the token: what [`LogoutService`](crate::LogoutService) scopes a "log out
    /// this device" to, and what a device list marks as current.
    pub fn session_id(&self) -> SessionId {
        self.record.session_id
    }

    /// The whole stored record.
    pub fn record(&self) -> &TokenRecord {
        &self.record
    }

    /// The owner of the token.
    pub fn user_id(&self) -> &UserId {
        &self.record.user_id
    }

    /// The token id.
    pub fn token_id(&self) -> TokenId {
        self.record.id
    }

    /// The token's name (e.g. the device).
    pub fn name(&self) -> &TokenName {
        &self.record.name
    }

    /// The token's abilities.
    pub fn abilities(&self) -> &Abilities {
        &self.record.abilities
    }

    /// Whether the token has `ability` (directly or through `"*"`).
    pub fn can(&self, ability: &str) -> bool {
        self.record.abilities.can(ability)
    }

    /// Access or refresh.
    pub fn kind(&self) -> TokenKind {
        self.record.kind
    }

    /// When the token was issued.
    pub fn created_at(&self) -> SystemTime {
        self.record.created_at
    }

    /// When the token expires, if it does.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.record.expires_at
    }

    /// When the token was last used, as the store last recorded it.
    pub fn last_used_at(&self) -> Option<SystemTime> {
        self.record.last_used_at
    }
}

impl fmt::Debug for AuthenticatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatedToken")
            .field("token_id", &self.record.id)
            .field("session_id", &self.record.session_id)
            .field("user_id", &self.record.user_id)
            .field("kind", &self.record.kind)
            .field("name", &self.record.name)
            .field("abilities", &self.record.abilities)
            .field("expires_at", &self.record.expires_at)
            .finish()
    }
}

/// The token as a handler shows it (serde): `{"id","session_id","user_id","kind","name","abilities",
/// "created_at","expires_at","last_used_at"}`, times in unix seconds
/// ([`unix_seconds`](crate::clock::unix_seconds)), `kind` `"access"` or `"refresh"`. Never the digest.
impl serde::Serialize for AuthenticatedToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use crate::clock::unix_seconds;
        use serde::ser::SerializeStruct;
        let record = &self.record;
        let mut s = serializer.serialize_struct("AuthenticatedToken", 9)?;
        s.serialize_field("id", &record.id)?;
        s.serialize_field("session_id", &record.session_id)?;
        s.serialize_field("user_id", &record.user_id)?;
        s.serialize_field("kind", if record.kind == TokenKind::Refresh { "refresh" } else { "access" })?;
        s.serialize_field("name", &record.name)?;
        s.serialize_field("abilities", &record.abilities)?;
        s.serialize_field("created_at", &unix_seconds(record.created_at))?;
        s.serialize_field("expires_at", &record.expires_at.map(unix_seconds))?;
        s.serialize_field("last_used_at", &record.last_used_at.map(unix_seconds))?;
        s.end()
    }
}

/// Put in the extensions of a request that an [optional](crate::TokenAuthLayer::optional) layer let
/// through without credentials.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guest;

/// Whether an [optional](crate::TokenAuthLayer::optional) layer let this request through as a guest.
#[cfg(feature = "axum")]
pub(crate) fn is_guest(extensions: &http::Extensions) -> bool {
    extensions.get::<Guest>().is_some()
}
