//! [`TokenName`]: a token's name, usually its device.

use std::fmt;

/// A token's name, usually the device it was issued to (Sanctum's `name` column).
///
/// Cheap to clone: names up to 23 bytes are stored inline, longer ones are shared. Reads as a `&str`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenName(smol_str::SmolStr);

impl TokenName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TokenName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TokenName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for TokenName {
    fn from(name: &str) -> Self {
        Self(smol_str::SmolStr::new(name))
    }
}

impl From<String> for TokenName {
    fn from(name: String) -> Self {
        Self(smol_str::SmolStr::from(name))
    }
}

impl From<&String> for TokenName {
    fn from(name: &String) -> Self {
        Self(smol_str::SmolStr::new(name))
    }
}

impl PartialEq<str> for TokenName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TokenName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<TokenName> for &str {
    fn eq(&self, other: &TokenName) -> bool {
        other.0 == *self
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl serde::Serialize for TokenName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}
