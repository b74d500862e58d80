//! The token format: byte-compatible with Laravel Sanctum (>= 3.3) personal access tokens.
//!
//! A token travels as `{id}|{secret}`. `id` is the decimal row id, a public selector used to find the
//! record; `secret` is everything after the **first** `|`. The store keeps only the SHA-256 of the
//! secret ([`TokenDigest`]). An issued secret is an optional prefix, 40 characters of `[A-Za-z0-9]` from
//! the operating system's CSPRNG (about 238 bits) and 8 lowercase hex characters of CRC-32 over those 40
//! characters, exactly as Sanctum's `createToken` builds it. The checksum exists for secret scanners;
//! validation never requires it, and accepts any non-empty secret, because older Sanctum versions issued
//! 80-character secrets and 3.2.6 used another checksum.
//!
//! ```
//! use tower_token_auth::token::{parse_token, TokenDigest};
//!
//! let parsed = parse_token(b"7|abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66").unwrap();
//! assert_eq!(parsed.id(), 7);
//! assert_eq!(
//!     TokenDigest::of(parsed.secret()).to_hex(),
//!     "bb745b5454a4550147866ee6829a7cb2ff4a982cf06993a5efa33dd57d030a5a",
//! );
//! assert!(parse_token(b"x|secret").is_none());
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::session::{NewSecret, NewSession, SessionId, SessionLimit};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The id of a token: the row id of Sanctum's `personal_access_tokens` table.
pub type TokenId = u64;

/// Number of random characters in an issued secret, as in Sanctum.
pub const SECRET_ENTROPY_LEN: usize = 40;

/// Longest token (`{id}|{secret}`) the parser looks at. Longer input is rejected before hashing.
pub const MAX_TOKEN_LEN: usize = 1024;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

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

/// SHA-256 of a token secret: what a store keeps instead of the secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest of `secret` (everything after the first `|`).
    #[inline]
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// SHA-256 of `domain` followed by `data`: a digest that [`of`](Self::of) can never reproduce for
    /// a secret sent as is (refresh tokens are stored this way, so they never authenticate as Sanctum
    /// tokens).
    pub fn of_parts(domain: &[u8], data: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(domain);
        hasher.update(data);
        Self(hasher.finalize().into())
    }

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex characters, as stored in Sanctum's `token` column (either case accepted).
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(Self(out))
    }

    /// 64 lowercase hex characters, as Sanctum stores it.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// Constant-time equality of two fixed-size digests.
    #[inline]
    pub fn ct_eq(&self, other: &TokenDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digest is not a secret, but a short prefix is all anyone needs to tell two apart in logs.
        write!(f, "TokenDigest({}…)", &self.to_hex()[..8])
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A token as presented on the wire, split into its id and secret. Borrowed from the request.
///
/// `Debug` never prints the secret.
#[derive(Clone, Copy)]
pub struct ParsedToken<'a> {
    id: TokenId,
    secret: &'a [u8],
}

impl<'a> ParsedToken<'a> {
    /// The token id (the part before the first `|`).
    pub fn id(&self) -> TokenId {
        self.id
    }

    /// The secret (everything after the first `|`).
    pub fn secret(&self) -> &'a [u8] {
        self.secret
    }
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken").field("id", &self.id).field("secret", &"[redacted]").finish()
    }
}

/// Splits `{id}|{secret}` on the first `|`, as Sanctum does.
///
/// `None` when the id is empty, not all ASCII digits (no sign, no spaces; leading zeros are fine), does
/// not fit in a `u64`, or when the secret is empty or `"0"` (Sanctum's `empty()` check rejects `"0"`).
/// Whole tokens longer than [`MAX_TOKEN_LEN`] are rejected too. Never panics.
pub fn parse_token(token: &[u8]) -> Option<ParsedToken<'_>> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    // One pass up to the first `|`: every byte before it must be a digit, so a token whose id is not
    // a number is rejected as soon as a non-digit shows, whether or not a `|` follows.
    let mut value: u64 = 0;
    let mut bar = 0;
    loop {
        let b = *token.get(bar)?;
        if b == b'|' {
            break;
        }
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        // 19 digits always fit in a u64; longer ids (leading zeros) are parsed again below, checked.
        value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
        bar += 1;
    }
    let (id, secret) = (&token[..bar], &token[bar + 1..]);
    if id.is_empty() || secret.is_empty() || secret == b"0" {
        return None;
    }
    if id.len() > 19 {
        value = id.iter().try_fold(0u64, |value, &b| value.checked_mul(10)?.checked_add(u64::from(b - b'0')))?;
    }
    Some(ParsedToken { id: value, secret })
}

/// CRC-32 (zlib / PHP `crc32b`) of `data` as 8 lowercase hex characters.
pub fn crc32b_hex(data: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(data))
}

/// A token's plain text, `{id}|{secret}`, returned once when the token is issued.
///
/// It is never printed by `Debug`, has no `Display`, and its memory is zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainTextToken(Zeroizing<String>);

impl PlainTextToken {
    pub(crate) fn new(id: TokenId, secret: &str) -> Self {
        let mut s = Zeroizing::new(String::with_capacity(21 + secret.len()));
        s.push_str(&id.to_string());
        s.push('|');
        s.push_str(secret);
        Self(s)
    }

    /// The token to hand to the client, `{id}|{secret}`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PlainTextToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainTextToken([redacted])")
    }
}

/// Generates a Sanctum-format secret: `prefix` + 40 random `[A-Za-z0-9]` + CRC-32 hex of those 40.
///
/// The randomness comes from the operating system's CSPRNG; the characters are drawn without modulo bias.
pub fn generate_secret(prefix: &str) -> Result<Zeroizing<String>, getrandom::Error> {
    let mut entropy = Zeroizing::new([0u8; SECRET_ENTROPY_LEN]);
    let mut filled = 0;
    let mut pool = Zeroizing::new([0u8; 64]);
    while filled < SECRET_ENTROPY_LEN {
        getrandom::fill(&mut pool[..])?;
        for &b in pool.iter() {
            // 248 = 4 * 62: accept only bytes that map uniformly onto the alphabet.
            if b < 248 && filled < SECRET_ENTROPY_LEN {
                entropy[filled] = ALPHABET[usize::from(b % 62)];
                filled += 1;
            }
        }
    }
    let mut secret = Zeroizing::new(String::with_capacity(prefix.len() + SECRET_ENTROPY_LEN + 8));
    secret.push_str(prefix);
    secret.extend(entropy.iter().map(|&b| char::from(b)));
    secret.push_str(&crc32b_hex(&entropy[..]));
    Ok(secret)
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

/// What to issue: a builder passed to [`TokenStoreExt::issue`](crate::TokenStoreExt::issue). The token
/// becomes a session of its own.
///
/// ```
/// use std::time::Duration;
/// use tower_token_auth::NewToken;
///
/// let token = NewToken::access(42u64)
///     .name("laptop")
///     .abilities(["posts:read", "posts:write"])
///     .expires_in(Duration::from_secs(3600));
/// ```
#[derive(Clone, Debug)]
pub struct NewToken {
    pub(crate) user_id: UserId,
    pub(crate) kind: TokenKind,
    pub(crate) name: TokenName,
    pub(crate) abilities: Abilities,
    pub(crate) expires: Expiry,
    pub(crate) issued_at: Option<SystemTime>,
    pub(crate) prefix: String,
    pub(crate) limit: SessionLimit,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Expiry {
    Never,
    At(SystemTime),
    In(Duration),
}

impl Expiry {
    pub(crate) fn resolve(self, created_at: SystemTime) -> Option<SystemTime> {
        match self {
            Expiry::Never => None,
            Expiry::At(at) => Some(at),
            Expiry::In(ttl) => created_at.checked_add(ttl),
        }
    }
}

impl NewToken {
    /// An access token for `user_id`, with every ability (`["*"]`), no expiry and no name.
    pub fn access(user_id: impl Into<UserId>) -> Self {
        Self::of_kind(user_id.into(), TokenKind::Access)
    }

    /// A refresh token for `user_id`. It is rejected by [`TokenAuthLayer`](crate::TokenAuthLayer) and only
    /// exchanged for a new pair by [`RefreshTokens::exchange`](crate::refresh::RefreshTokens::exchange); its
    /// abilities are those of the access tokens it mints. Logins usually want a pair instead:
    /// [`RefreshTokens::issue_pair`](crate::refresh::RefreshTokens::issue_pair).
    pub fn refresh(user_id: impl Into<UserId>) -> Self {
        Self::of_kind(user_id.into(), TokenKind::Refresh)
    }

    fn of_kind(user_id: UserId, kind: TokenKind) -> Self {
        Self {
            user_id,
            kind,
            name: TokenName::default(),
            abilities: Abilities::all(),
            expires: Expiry::Never,
            issued_at: None,
            prefix: String::new(),
            limit: SessionLimit::default(),
        }
    }

    /// Sets the token's name (Sanctum's `name`, often the device).
    pub fn name(mut self, name: impl Into<TokenName>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the abilities (default `["*"]`). Reserved names (see [`Abilities::reserved`]) make
    /// [`issue`](crate::TokenStoreExt::issue) fail with [`StoreErrorKind::InvalidInput`](crate::store::StoreErrorKind::InvalidInput).
    pub fn abilities<I, S>(mut self, abilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.abilities = abilities.into_iter().collect();
        self
    }

    /// Expires the token at a fixed time.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires = Expiry::At(at);
        self
    }

    /// Expires the token `ttl` after it is issued.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expires = Expiry::In(ttl);
        self
    }

    /// Uses `now` as the issue time instead of the system clock (for tests with a [`ManualClock`](crate::clock::ManualClock)).
    pub fn issued_at(mut self, now: SystemTime) -> Self {
        self.issued_at = Some(now);
        self
    }

    /// Prepends `prefix` to the secret (Sanctum's `token_prefix`, for secret scanning), e.g. `"myapp_"`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many sessions the user may hold, counting this one (default [`SessionLimit::default`]: 100,
    /// the oldest revoked when full).
    pub fn session_limit(mut self, limit: SessionLimit) -> Self {
        self.limit = limit;
        self
    }

    /// The session this token is stored as, its secret's digest given.
    pub(crate) fn into_session(
        self,
        digest: TokenDigest,
        family: Option<TokenDigest>,
    ) -> Result<NewSession, InvalidToken> {
        if let Some(reserved) = self.abilities.reserved() {
            return Err(InvalidToken::ReservedAbility(reserved.to_owned()));
        }
        let created_at = self.issued_at.unwrap_or_else(SystemTime::now);
        let secret = NewSecret { digest, expires_at: self.expires.resolve(created_at) };
        let (access, refresh) = match self.kind {
            TokenKind::Access => (Some(secret), None),
            TokenKind::Refresh => (None, Some(secret)),
        };
        Ok(NewSession {
            user_id: self.user_id,
            name: self.name,
            abilities: self.abilities,
            created_at,
            access,
            refresh,
            family,
            limit: self.limit,
        })
    }
}

/// A freshly issued token: its plain text (shown to the client once) and the stored record.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// `{id}|{secret}`. Hand it to the client; it cannot be recovered later.
    pub plain_text: PlainTextToken,
    /// What was stored.
    pub record: TokenRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanctum_test_vectors_hold() {
        let entropy = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";
        assert_eq!(crc32b_hex(entropy.as_bytes()), "8d0bba66");
        assert_eq!(
            TokenDigest::of(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66").to_hex(),
            "bb745b5454a4550147866ee6829a7cb2ff4a982cf06993a5efa33dd57d030a5a"
        );
        assert_eq!(
            TokenDigest::of(b"myapp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN8d0bba66").to_hex(),
            "2df4502c5a5bd12e368a01784913873f2ae1e751d831abe39729fc1ea2a22db0"
        );
    }

    #[test]
    fn generated_secret_has_sanctum_layout() {
        let secret = generate_secret("myapp_").unwrap();
        assert_eq!(secret.len(), 6 + 40 + 8);
        let entropy = &secret[6..46];
        assert!(secret.starts_with("myapp_"));
        assert!(entropy.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(&secret[46..], crc32b_hex(entropy.as_bytes()));
        assert_ne!(*generate_secret("").unwrap(), *generate_secret("").unwrap());
    }

    #[test]
    fn generated_secrets_use_the_whole_alphabet() {
        let mut seen = [false; 256];
        for _ in 0..200 {
            for b in generate_secret("").unwrap()[..40].bytes() {
                seen[usize::from(b)] = true;
            }
        }
        assert!(ALPHABET.iter().all(|&c| seen[usize::from(c)]));
    }

    #[test]
    fn parse_splits_on_the_first_bar() {
        let t = parse_token(b"12|ab|cd").unwrap();
        assert_eq!(t.id(), 12);
        assert_eq!(t.secret(), b"ab|cd");
    }

    #[test]
    fn parse_accepts_leading_zeros_and_any_secret_length() {
        assert_eq!(parse_token(b"007|x").unwrap().id(), 7);
        let long = format!("1|{}", "a".repeat(80));
        assert_eq!(parse_token(long.as_bytes()).unwrap().secret().len(), 80);
    }

    #[test]
    fn parse_rejects_bad_ids_and_empty_secrets() {
        for bad in [
            &b"|secret"[..],
            b"-1|secret",
            b"+1|secret",
            b" 1|secret",
            b"1a|secret",
            b"1|",
            b"1|0",
            b"secret",
            b"",
            b"|",
            b"99999999999999999999999999999|secret",
            b"18446744073709551616|secret",
        ] {
            assert!(parse_token(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_token(b"18446744073709551615|s").unwrap().id(), u64::MAX);
    }

    #[test]
    fn parse_rejects_oversized_tokens() {
        let huge = format!("1|{}", "a".repeat(MAX_TOKEN_LEN));
        assert!(parse_token(huge.as_bytes()).is_none());
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let plain = PlainTextToken::new(5, "supersecretvalue");
        assert!(!format!("{plain:?}").contains("supersecret"));
        let parsed = parse_token(b"5|supersecretvalue").unwrap();
        assert!(!format!("{parsed:?}").contains("supersecret"));
        assert_eq!(plain.expose(), "5|supersecretvalue");
    }

    #[test]
    fn digest_hex_round_trips_and_compares() {
        let d = TokenDigest::of(b"abc");
        assert_eq!(TokenDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(TokenDigest::from_hex(&d.to_hex().to_uppercase()), Some(d));
        assert!(TokenDigest::from_hex("zz").is_none());
        assert!(d.ct_eq(&TokenDigest::of(b"abc")));
        assert!(!d.ct_eq(&TokenDigest::of(b"abd")));
    }

    #[test]
    fn abilities_star_grants_everything() {
        assert!(Abilities::all().can("anything"));
        let some: Abilities = ["read", "write"].into_iter().collect();
        assert!(some.can("read") && !some.can("admin"));
        assert!(!Abilities::none().can("read"));
        assert_eq!(some.to_json(), r#"["read","write"]"#);
        assert_eq!(Abilities::all().to_json(), r#"["*"]"#);
    }

    #[test]
    fn abilities_parse_php_json() {
        let a = Abilities::from_json(r#"["posts\/read","caf\u00e9"]"#).unwrap();
        assert!(a.can("posts/read") && a.can("café"));
        assert_eq!(Abilities::from_json(r#"["*"]"#).unwrap(), Abilities::all());
        assert!(Abilities::from_json("{}").is_none());
    }

    #[test]
    fn user_ids_normalise_decimal_text() {
        assert_eq!(UserId::from("42"), UserId::from(42u64));
        assert_ne!(UserId::from("042"), UserId::from(42u64));
        assert_eq!(UserId::from("0"), UserId::from(0u64));
        assert_eq!(UserId::from("01HX").to_string(), "01HX");
    }

    #[test]
    fn expiry_uses_the_sooner_of_expires_at_and_max_age() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let session = NewToken::access(1u64).issued_at(t0).expires_in(Duration::from_secs(100));
        let session = session.into_session(TokenDigest::of(b"x"), None).unwrap();
        let record = TokenRecord {
            digest: TokenDigest::of(b"x"),
            id: 1,
            session_id: crate::SessionId::new(1),
            kind: TokenKind::Access,
            expires_at: session.access.unwrap().expires_at,
            user_id: session.user_id,
            created_at: session.created_at,
            last_used_at: None,
            name: session.name,
            abilities: session.abilities,
        };
        assert!(!record.is_expired(t0 + Duration::from_secs(99), None));
        assert!(record.is_expired(t0 + Duration::from_secs(100), None));
        assert!(record.is_expired(t0 + Duration::from_secs(50), Some(Duration::from_secs(50))));
        assert!(!record.is_expired(t0 + Duration::from_secs(49), Some(Duration::from_secs(50))));
    }
}
