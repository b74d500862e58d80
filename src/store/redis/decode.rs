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
    /// The digest of the session's refresh family key (64 hex digits).
    pub(crate) const FAMILY: &str = "fam";

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

/// A reply's values as optional byte strings (without collecting them first: one allocation less on
/// the hot path).
pub(super) fn fields<const N: usize>(
    reply: Value,
    what: &(dyn Fn() -> String + Sync),
) -> Result<[Option<Vec<u8>>; N], StoreError> {
    let Value::Array(items) = reply else {
        return Err(StoreError::corrupt(format!("{}: expected an array reply, got {reply:?}", what())));
    };
    if items.len() != N {
        return Err(StoreError::corrupt(format!("{}: expected {N} values, got {}", what(), items.len())));
    }
    let mut items = items.into_iter();
    let mut unexpected = None;
    let fields = std::array::from_fn(|_| match items.next().map(optional_bytes) {
        Some(Ok(value)) => value,
        Some(Err(value)) => {
            unexpected.get_or_insert(value);
            None
        }
        None => None,
    });
    match unexpected {
        None => Ok(fields),
        Some(v) => Err(StoreError::corrupt(format!("{}: unexpected value {v:?}", what()))),
    }
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

// The accessors read bytes directly where they can (ids, times, digests, integer user ids): `find`
// decodes eight fields per request, and going through `str` first (UTF-8 validation, then parsing)
// cost about 1,200 instructions of its 26,500 (callgrind; see BENCHMARKS.md, "Redis").
impl Reader<'_> {
    fn corrupt(&self, field: &str, problem: &str) -> StoreError {
        StoreError::corrupt(format!("{}: field `{field}` {problem}", (self.what)()))
    }

    fn bytes<'v>(&self, field: &str, value: &'v Option<Vec<u8>>) -> Result<&'v [u8], StoreError> {
        value.as_deref().ok_or_else(|| self.corrupt(field, "is missing"))
    }

    pub(super) fn text<'v>(&self, field: &str, value: &'v Option<Vec<u8>>) -> Result<&'v str, StoreError> {
        std::str::from_utf8(self.bytes(field, value)?).map_err(|_| self.corrupt(field, "is not UTF-8"))
    }

    pub(super) fn user(&self, field: &str, value: &Option<Vec<u8>>) -> Result<UserId, StoreError> {
        let bytes = self.bytes(field, value)?;
        // A canonical decimal is an integer id (as `UserId::from(&str)` decides), without UTF-8 checks.
        if let (Some(n), false) = (parse_u64(bytes), bytes.len() > 1 && bytes[0] == b'0') {
            return Ok(UserId::from(n));
        }
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
        hex32(self.bytes(field, value)?)
            .map(TokenDigest::from_bytes)
            .ok_or_else(|| self.corrupt(field, "is not 64 hex digits"))
    }

    pub(super) fn optional_digest(
        &self,
        field: &str,
        value: &Option<Vec<u8>>,
    ) -> Result<Option<TokenDigest>, StoreError> {
        value.as_ref().map(|_| self.digest(field, value)).transpose()
    }

    pub(super) fn id(&self, field: &str, value: &Option<Vec<u8>>) -> Result<u64, StoreError> {
        parse_u64(self.bytes(field, value)?).ok_or_else(|| self.corrupt(field, "is not a decimal id"))
    }

    pub(super) fn time(&self, field: &str, value: &Option<Vec<u8>>) -> Result<SystemTime, StoreError> {
        parse_i64(self.bytes(field, value)?)
            .and_then(from_millis)
            .ok_or_else(|| self.corrupt(field, "is not a time in unix milliseconds"))
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
            let digest = TokenDigest::from_bytes(hex32(digest.as_bytes())?);
            Some(RotatedRefresh { digest, rotated_at: from_millis(parse_i64(at.as_bytes())?)? })
        })
        .collect()
}

/// Decimal digits only (no sign, no spaces), at most `u64::MAX`.
fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// An optional `-` and decimal digits, within `i64`.
fn parse_i64(bytes: &[u8]) -> Option<i64> {
    match bytes.strip_prefix(b"-") {
        Some(digits) => parse_u64(digits).and_then(|n| 0i64.checked_sub_unsigned(n)),
        None => parse_u64(bytes).and_then(|n| i64::try_from(n).ok()),
    }
}

/// 64 hex digits (either case) as 32 bytes.
fn hex32(hex: &[u8]) -> Option<[u8; 32]> {
    const fn table() -> [u8; 256] {
        let mut t = [0xff; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    }
    static VALUE: [u8; 256] = table();
    let hex: &[u8; 64] = hex.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let (high, low) = (VALUE[usize::from(pair[0])], VALUE[usize::from(pair[1])]);
        bad |= high | low;
        out[i] = (high << 4) | (low & 0x0f);
    }
    // Every valid digit is below 16; an invalid one is 0xff.
    (bad < 16).then_some(out)
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
        Value::BulkString(bytes) => parse_i64(bytes),
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
    fn numbers_and_digests_parse_strictly() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [&b""[..], b"18446744073709551616", b"1e5", b"-1", b" 1", b"+1", b"000000000000000000001"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
        assert_eq!(parse_i64(b"-5000"), Some(-5000));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"--1"), None);
        let d = TokenDigest::of(b"x");
        assert_eq!(hex32(d.to_hex().as_bytes()), Some(*d.as_bytes()));
        assert_eq!(hex32(d.to_hex().to_uppercase().as_bytes()), Some(*d.as_bytes()));
        let mut bad = d.to_hex().into_bytes();
        bad[17] = b'g';
        assert_eq!(hex32(&bad), None);
        assert_eq!(hex32(&bad[..62]), None);
    }

    #[test]
    fn integer_user_ids_are_read_as_integers_only_when_canonical() {
        let r = Reader { what: &what };
        assert_eq!(r.user("u", &Some(b"42".to_vec())).unwrap().as_u64(), Some(42));
        assert_eq!(r.user("u", &Some(b"0".to_vec())).unwrap().as_u64(), Some(0));
        assert_eq!(r.user("u", &Some(b"042".to_vec())).unwrap(), UserId::from("042"));
        assert_eq!(r.user("u", &Some(b"042".to_vec())).unwrap().as_u64(), None);
        assert_eq!(r.user("u", &Some(b"01HX".to_vec())).unwrap(), "01HX");
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
