//! [`Abilities`]: what a token may do, and the abilities reserved for the crate's bookkeeping.

use std::fmt;
use std::sync::Arc;

/// The abilities (scopes) granted to a token. `"*"` grants every ability, as in Sanctum.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Abilities(AbilitiesRepr);

#[derive(Clone, PartialEq, Eq, Default)]
enum AbilitiesRepr {
    #[default]
    All,
    List(Arc<[Box<str>]>),
}

impl Abilities {
    /// `["*"]`: everything. This is the default, as in Sanctum.
    pub fn all() -> Self {
        Self(AbilitiesRepr::All)
    }

    /// No abilities at all (`[]`).
    pub fn none() -> Self {
        Self(AbilitiesRepr::List(Arc::from(Vec::new())))
    }

    /// Whether the token has `ability`, directly or through `"*"`.
    pub fn can(&self, ability: &str) -> bool {
        match &self.0 {
            AbilitiesRepr::All => true,
            AbilitiesRepr::List(list) => list.iter().any(|a| &**a == "*" || &**a == ability),
        }
    }

    /// Whether `ability` is listed literally (`"*"` does not count).
    pub fn contains_exactly(&self, ability: &str) -> bool {
        match &self.0 {
            AbilitiesRepr::All => ability == "*",
            AbilitiesRepr::List(list) => list.iter().any(|a| &**a == ability),
        }
    }

    /// The abilities as listed (`["*"]` for [`all`](Self::all)).
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let list: &[Box<str>] = match &self.0 {
            AbilitiesRepr::All => &[],
            AbilitiesRepr::List(list) => list,
        };
        let star = matches!(self.0, AbilitiesRepr::All).then_some("*");
        star.into_iter().chain(list.iter().map(|a| &**a))
    }

    /// The abilities as the JSON array Sanctum stores, e.g. `["*"]`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.iter().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Parses Sanctum's `abilities` column (a JSON array of strings; PHP escapes `/` as `\/`, which any
    /// JSON parser undoes). `None` for anything that is not an array of strings.
    pub fn from_json(json: &str) -> Option<Self> {
        let list: Vec<String> = serde_json::from_str(json).ok()?;
        Some(Self::from_iter(list))
    }

    /// The first ability that is reserved for this crate's own bookkeeping, if any: the refresh-token
    /// markers [`REFRESH_ABILITY`] and [`ROTATED_REFRESH_ABILITY`], and every name starting with
    /// [`RESERVED_ABILITY_PREFIX`]. Issuing a token with one is refused: on Sanctum's table, where the
    /// abilities column also records what kind of token a row is, such a token would read back as
    /// something it is not.
    pub fn reserved(&self) -> Option<&str> {
        self.iter().find(|a| is_reserved_ability(a))
    }
}

impl<S: Into<String>> FromIterator<S> for Abilities {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let list: Vec<Box<str>> = iter.into_iter().map(|s| s.into().into_boxed_str()).collect();
        if list.len() == 1 && &*list[0] == "*" {
            return Self::all();
        }
        Self(AbilitiesRepr::List(list.into()))
    }
}

impl fmt::Debug for Abilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Abilities {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// The ability Laravel applications conventionally give refresh tokens (`tokenCan('issue-access-token')`).
/// On Sanctum's table it marks a row as a refresh token, so access tokens may not carry it.
pub const REFRESH_ABILITY: &str = "issue-access-token";

/// Reserved as well: earlier versions of this crate marked exchanged refresh tokens with it.
pub const ROTATED_REFRESH_ABILITY: &str = "rotated-refresh-token";

/// Abilities starting with this prefix are reserved for the bookkeeping [`SqlStore`](crate::store) keeps
/// in Sanctum's `abilities` column (session links, the abilities a refresh token grants).
pub const RESERVED_ABILITY_PREFIX: &str = "tta:";

fn is_reserved_ability(ability: &str) -> bool {
    ability == REFRESH_ABILITY || ability == ROTATED_REFRESH_ABILITY || ability.starts_with(RESERVED_ABILITY_PREFIX)
}
