//! Reading replies back: every value from Redis is checked, and anything unexpected is a
//! [`StoreError::corrupt`], never a panic and never "not found".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

use crate::session::{RotatedRefresh, SessionId};
use crate::store::StoreError;
use crate::token::{Abilities, TokenDigest, TokenId, TokenKind, TokenName, TokenRecord, UserId};

/// Session hash fields (see the data model in the module docs).
pub(super) mod field {
    pub(crate) const USER: &str = "u";
    pub(crate) const NAME: &str = "n";
    pub(crate) const ABILITIES: &str = "ab";
    pub(crate) const SESSION_ID: &str = "sid";
    pub(crate) const CREATED: &str = "c";
    pub(crate) const VERSION: &str = "v";
    pub(crate) const ROTATED: &str = "rot";

    /// The four fields of one token: digest, expiry, creation, last use.
    pub(crate) const fn token(kind: crate::token::TokenKind) -> [&'static str; 4] {
        match kind {
            crate::token::TokenKind::Access => ["ad", "ae", "ac", "al"],
            crate::token::TokenKind::Refresh => ["rd", "re", "rc", "rl"],
        }
    }
}

/// What `find` reads for a token of each kind, in this order.
pub(super) const fn find_fields(kind: TokenKind) -> [&'static str; 8] {
    let [d, e, c, l] = field::token(kind);
    [field::USER, field::NAME, field::ABILITIES, field::SESSION_ID, d, e, c, l]
}

/// A reply's values as optional byte strings.
pub(super) fn fields<const N: usize>(
    reply: Value,
    what: &(dyn Fn() -> String + Sync),
) -> Result<[Option<Vec<u8>>; N], StoreError> {
    let Value::Array(items) = reply else {
        return Err(StoreError::corrupt(format!("{}: expected an array reply, got {reply:?}", what())));
    };
    let items: Vec<Option<Vec<u8>>> = items
        .into_iter()
        .map(optional_bytes)
        .collect::<Result<_, _>>()
        .map_err(|v| StoreError::corrupt(format!("{}: unexpected value {v:?}", what())))?;
    items
        .try_into()
        .map_err(|items: Vec<_>| StoreError::corrupt(format!("{}: expected {N} values, got {}", what(), items.len())))
}

fn optional_bytes(value: Value) -> Result<Option<Vec<u8>>, Value> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        other => Err(other),
    }
}

/// Parses the fields of one session hash: each accessor names the field it failed on.
pub(super) struct Reader<'a> {
    pub(super) what: &'a (dyn Fn() -> String + Sync),
}

impl Reader<'_> {
    fn corrupt(&self, field: &str, problem: &str) -> StoreError {
        StoreError::corrupt(format!("{}: field `{field}` {problem}", (self.what)()))
    }

    pub(super) fn text<'v>(&self, field: &str, value: &'v Option<Vec<u8>>) -> Result<&'v str, StoreError> {
        let bytes = value.as_deref().ok_or_else(|| self.corrupt(field, "is missing"))?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupt(field, "is not UTF-8"))
    }

    pub(super) fn user(&self, field: &str, value: &Option<Vec<u8>>) -> Result<UserId, StoreError> {
        Ok(UserId::from(self.text(field, value)?))
    }

    pub(super) fn name(&self, field: &str, value: &Option<Vec<u8>>) -> Result<TokenName, StoreError> {
        Ok(TokenName::from(self.text(field, value)?))
    }

    pub(super) fn abilities(&self, field: &str, value: &Option<Vec<u8>>) -> Result<Abilities, StoreError> {
        // The common case without a JSON parse.
        if value.as_deref() == Some(br#"["*"]"#) {
            return Ok(Abilities::all());
        }
        Abilities::from_json(self.text(field, value)?)
            .ok_or_else(|| self.corrupt(field, "is not a JSON array of strings"))
    }

    pub(super) fn digest(&self, field: &str, value: &Option<Vec<u8>>) -> Result<TokenDigest, StoreError> {
        TokenDigest::from_hex(self.text(field, value)?).ok_or_else(|| self.corrupt(field, "is not 64 hex digits"))
    }

    pub(super) fn id(&self, field: &str, value: &Option<Vec<u8>>) -> Result<u64, StoreError> {
        parse_u64(self.text(field, value)?).ok_or_else(|| self.corrupt(field, "is not a decimal id"))
    }

    pub(super) fn time(&self, field: &str, value: &Option<Vec<u8>>) -> Result<SystemTime, StoreError> {
        let text = self.text(field, value)?;
        parse_i64(text).and_then(from_millis).ok_or_else(|| self.corrupt(field, "is not a time in unix milliseconds"))
    }

    pub(super) fn optional_time(&self, field: &str, value: &Option<Vec<u8>>) -> Result<Option<SystemTime>, StoreError> {
        value.as_ref().map(|_| self.time(field, value)).transpose()
    }

    pub(super) fn rotated(&self, field: &str, value: &Option<Vec<u8>>) -> Result<Vec<RotatedRefresh>, StoreError> {
        let Some(_) = value else { return Ok(Vec::new()) };
        decode_rotated(self.text(field, value)?).ok_or_else(|| self.corrupt(field, "is not a list of rotated tokens"))
    }
}

/// The record of token `id` from the [`find_fields`] of its session, or `None` if the session has no
/// such token.
pub(super) fn token_record(
    id: TokenId,
    kind: TokenKind,
    values: [Option<Vec<u8>>; 8],
    what: &(dyn Fn() -> String + Sync),
) -> Result<Option<TokenRecord>, StoreError> {
    let [user, name, abilities, session, d, e, c, l] = &values;
    if d.is_none() {
        return Ok(None);
    }
    let fields = find_fields(kind);
    let r = Reader { what };
    Ok(Some(TokenRecord {
        digest: r.digest(fields[4], d)?,
        id,
        session_id: SessionId::new(r.id(fields[3], session)?),
        kind,
        expires_at: r.optional_time(fields[5], e)?,
        user_id: r.user(fields[0], user)?,
        created_at: r.time(fields[6], c)?,
        last_used_at: r.optional_time(fields[7], l)?,
        name: r.name(fields[1], name)?,
        abilities: r.abilities(fields[2], abilities)?,
    }))
}

/// `digest-hex:millis` entries joined by `,`, oldest first.
pub(super) fn encode_rotated(list: &[RotatedRefresh]) -> String {
    let mut out = String::with_capacity(list.len() * 80);
    for (i, tripwire) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&tripwire.digest.to_hex());
        out.push(':');
        out.push_str(&to_millis(tripwire.rotated_at).to_string());
    }
    out
}

fn decode_rotated(text: &str) -> Option<Vec<RotatedRefresh>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|entry| {
            let (digest, at) = entry.split_once(':')?;
            Some(RotatedRefresh { digest: TokenDigest::from_hex(digest)?, rotated_at: from_millis(parse_i64(at)?)? })
        })
        .collect()
}

fn parse_u64(text: &str) -> Option<u64> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

fn parse_i64(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

/// Unix milliseconds, saturating far outside the representable range.
pub(super) fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

pub(super) fn from_millis(ms: i64) -> Option<SystemTime> {
    if ms >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_millis(ms.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_millis(ms.unsigned_abs()))
    }
}

/// An integer reply.
pub(super) fn integer(value: &Value, what: &(dyn Fn() -> String + Sync)) -> Result<i64, StoreError> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().and_then(parse_i64),
        _ => None,
    }
    .ok_or_else(|| StoreError::corrupt(format!("{}: expected an integer, got {value:?}", what())))
}

/// A byte-string reply.
pub(super) fn bytes(value: Value, what: &(dyn Fn() -> String + Sync)) -> Result<Vec<u8>, StoreError> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        other => Err(StoreError::corrupt(format!("{}: expected a string, got {other:?}", what()))),
    }
}

/// An array reply.
pub(super) fn array(value: Value, what: &(dyn Fn() -> String + Sync)) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(StoreError::corrupt(format!("{}: expected an array, got {other:?}", what()))),
    }
}

/// An array of byte strings.
pub(super) fn strings(value: Value, what: &(dyn Fn() -> String + Sync)) -> Result<Vec<Vec<u8>>, StoreError> {
    array(value, what)?.into_iter().map(|v| bytes(v, what)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreErrorKind;

    fn what() -> String {
        "session tta:{1}:s:1".to_owned()
    }

    fn good() -> [Option<Vec<u8>>; 8] {
        [
            Some(b"42".to_vec()),
            Some(b"laptop".to_vec()),
            Some(br#"["*"]"#.to_vec()),
            Some(b"32769".to_vec()),
            Some(TokenDigest::of(b"s").to_hex().into_bytes()),
            None,
            Some(b"1700000000000".to_vec()),
            None,
        ]
    }

    #[test]
    fn millis_round_trip() {
        for ms in [0, 1, 1_700_000_000_123, -5_000] {
            assert_eq!(to_millis(from_millis(ms).unwrap()), ms);
        }
    }

    #[test]
    fn a_record_is_read_back() {
        let record = token_record(32768, TokenKind::Access, good(), &what).unwrap().unwrap();
        assert_eq!(record.user_id, UserId::from(42u64));
        assert_eq!(record.session_id, SessionId::new(32769));
        assert_eq!(record.created_at, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(record.abilities, Abilities::all());
        assert!(record.expires_at.is_none() && record.last_used_at.is_none());
        let mut missing = good();
        missing[4] = None;
        assert!(token_record(32768, TokenKind::Access, missing, &what).unwrap().is_none(), "no digest: no token");
    }

    #[test]
    fn bad_fields_are_corrupt_not_missing_and_never_panic() {
        let bad: [(usize, Option<&[u8]>); 10] = [
            (0, None),
            (0, Some(b"\xff")),
            (1, None),
            (2, Some(b"{")),
            (2, Some(b"[1]")),
            (3, Some(b"1e5")),
            (3, Some(b"99999999999999999999")),
            (4, Some(b"zz")),
            (5, Some(b"soon")),
            (6, None),
        ];
        for (i, value) in bad {
            let mut values = good();
            values[i] = value.map(<[u8]>::to_vec);
            let e = token_record(32768, TokenKind::Access, values, &what).unwrap_err();
            assert_eq!(e.kind(), StoreErrorKind::Corrupt, "field {i}");
            assert!(e.to_string().contains("tta:{1}:s:1"), "{e}");
        }
        let e = fields::<8>(Value::Int(3), &what).unwrap_err();
        assert_eq!(e.kind(), StoreErrorKind::Corrupt);
        let e = fields::<8>(Value::Array(vec![Value::Nil]), &what).unwrap_err();
        assert_eq!(e.kind(), StoreErrorKind::Corrupt);
    }

    #[test]
    fn rotated_lists_round_trip_and_reject_garbage() {
        let list = vec![
            RotatedRefresh { digest: TokenDigest::of(b"a"), rotated_at: UNIX_EPOCH + Duration::from_millis(5) },
            RotatedRefresh { digest: TokenDigest::of(b"b"), rotated_at: UNIX_EPOCH + Duration::from_millis(7) },
        ];
        let r = Reader { what: &what };
        assert_eq!(r.rotated("rot", &Some(encode_rotated(&list).into_bytes())).unwrap(), list);
        assert!(r.rotated("rot", &None).unwrap().is_empty());
        for garbage in ["x", "ab:1", &format!("{}:x", TokenDigest::of(b"a").to_hex()), ","] {
            assert!(r.rotated("rot", &Some(garbage.as_bytes().to_vec())).is_err(), "{garbage}");
        }
    }
}
