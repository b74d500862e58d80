//! [`UserId`]: who a token belongs to (Sanctum's `tokenable_id`).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Who a token belongs to: Sanctum's `tokenable_id`.
///
/// Integer ids (the Laravel default) and string ids (UUID/ULID keys) are both supported. A string
/// holding a canonical decimal number is the same user as that number: `UserId::from("42") ==
/// UserId::from(42)`. It converts from the integer types database drivers hand out (`u64`, `u32`, `i64`,
/// `i32`; a negative number becomes its decimal text), from strings, and from `&UserId`, and compares
/// with integers and strings directly:
///
/// ```
/// use tower_token_auth::UserId;
///
/// let row_id: i64 = 42; // what sqlx returns for a BIGINT
/// let user = UserId::from(row_id);
/// assert_eq!(user, 42u64);
/// assert_eq!(user, "42");
/// assert_eq!(user.to_string(), "42");
/// assert_eq!(serde_json::to_string(&user).unwrap(), "42");
/// assert_eq!(serde_json::from_str::<UserId>("\"01HXYZ\"").unwrap(), "01HXYZ");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(UserIdRepr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum UserIdRepr {
    Int(u64),
    Text(Arc<str>),
}

impl UserId {
    /// The id as an integer, when it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.0 {
            UserIdRepr::Int(n) => Some(*n),
            UserIdRepr::Text(_) => None,
        }
    }

    /// The id as text (decimal for integer ids).
    pub fn to_text(&self) -> Cow<'_, str> {
        match &self.0 {
            UserIdRepr::Int(n) => Cow::Owned(n.to_string()),
            UserIdRepr::Text(s) => Cow::Borrowed(s),
        }
    }
}

impl From<u64> for UserId {
    fn from(id: u64) -> Self {
        Self(UserIdRepr::Int(id))
    }
}

impl From<u32> for UserId {
    fn from(id: u32) -> Self {
        Self(UserIdRepr::Int(id.into()))
    }
}

impl From<i64> for UserId {
    /// Non-negative ids are integers; a negative one (never a Laravel id) is kept as its decimal text.
    fn from(id: i64) -> Self {
        match u64::try_from(id) {
            Ok(n) => Self(UserIdRepr::Int(n)),
            Err(_) => Self(UserIdRepr::Text(Arc::from(id.to_string()))),
        }
    }
}

impl From<i32> for UserId {
    fn from(id: i32) -> Self {
        Self::from(i64::from(id))
    }
}

impl From<&UserId> for UserId {
    fn from(id: &UserId) -> Self {
        id.clone()
    }
}

impl From<&str> for UserId {
    fn from(id: &str) -> Self {
        let canonical = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && (id == "0" || !id.starts_with('0'));
        match id.parse::<u64>() {
            Ok(n) if canonical => Self(UserIdRepr::Int(n)),
            _ => Self(UserIdRepr::Text(Arc::from(id))),
        }
    }
}

impl From<String> for UserId {
    fn from(id: String) -> Self {
        Self::from(id.as_str())
    }
}

impl From<&String> for UserId {
    fn from(id: &String) -> Self {
        Self::from(id.as_str())
    }
}

#[cfg(feature = "uuid")]
#[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
impl From<uuid::Uuid> for UserId {
    /// The hyphenated lower-case form, as Laravel's `uuidMorphs` columns hold it.
    fn from(id: uuid::Uuid) -> Self {
        Self(UserIdRepr::Text(Arc::from(id.hyphenated().to_string())))
    }
}

macro_rules! user_id_eq_int {
    ($($int:ty),*) => {$(
        impl PartialEq<$int> for UserId {
            fn eq(&self, other: &$int) -> bool {
                match (&self.0, u64::try_from(*other)) {
                    (UserIdRepr::Int(n), Ok(other)) => *n == other,
                    _ => false,
                }
            }
        }

        impl PartialEq<UserId> for $int {
            fn eq(&self, other: &UserId) -> bool {
                other == self
            }
        }
    )*};
}

user_id_eq_int!(u64, u32, i64, i32);

impl UserId {
    /// Whether `self` is the id `UserId::from(text)` would be, without building it.
    fn eq_text(&self, text: &str) -> bool {
        let canonical =
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
        match (&self.0, canonical.then(|| text.parse::<u64>().ok()).flatten()) {
            (UserIdRepr::Int(n), Some(parsed)) => *n == parsed,
            (UserIdRepr::Text(s), None) => &**s == text,
            _ => false,
        }
    }
}

impl PartialEq<str> for UserId {
    fn eq(&self, other: &str) -> bool {
        self.eq_text(other)
    }
}

impl PartialEq<&str> for UserId {
    fn eq(&self, other: &&str) -> bool {
        self.eq_text(other)
    }
}

impl PartialEq<String> for UserId {
    fn eq(&self, other: &String) -> bool {
        self.eq_text(other)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            UserIdRepr::Int(n) => fmt::Display::fmt(n, f),
            UserIdRepr::Text(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            UserIdRepr::Int(n) => write!(f, "UserId({n})"),
            UserIdRepr::Text(s) => write!(f, "UserId({s:?})"),
        }
    }
}

impl serde::Serialize for UserId {
    /// Integer ids as JSON numbers, string ids as strings.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            UserIdRepr::Int(n) => serializer.serialize_u64(*n),
            UserIdRepr::Text(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> serde::Deserialize<'de> for UserId {
    /// From a non-negative integer or a string (normalised as [`From<&str>`](UserId#impl-From%3C%26str%3E-for-UserId)).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = UserId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user id: a non-negative integer or a string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<UserId, E> {
                Ok(UserId::from(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<UserId, E> {
                u64::try_from(v).map(UserId::from).map_err(|_| E::custom("a user id cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<UserId, E> {
                Ok(UserId::from(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
