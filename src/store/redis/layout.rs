//! Where things live: buckets, token and session ids, key names. Everything here is part of the stored
//! data layout: changing it makes existing tokens unreadable.

use std::io::Write as _;

use redis::{RedisWrite, ToRedisArgs};

use crate::session::SessionId;
use crate::token::{TokenId, TokenKind, UserId};

/// Number of buckets (hash tags). A user's keys all live in the bucket of their id.
pub(super) const BUCKETS: u64 = 1 << BUCKET_BITS;
const BUCKET_BITS: u32 = 14;
const KIND_BIT: u64 = 1 << BUCKET_BITS;
const SEQ_SHIFT: u32 = BUCKET_BITS + 1;
/// The largest session sequence number: 2^49 - 1, so `seq << 15 | kind << 14 | bucket` fits in a u64.
pub(super) const MAX_SEQ: u64 = (1 << (64 - SEQ_SHIFT)) - 1;
/// Index members are sequence numbers zero-padded to this width, so that their byte order (the order
/// of a sorted set's equal scores) is their numeric order.
const MEMBER_WIDTH: usize = 15;

/// The bucket of a user: CRC-32 of the user id's text, modulo [`BUCKETS`]. Stable across processes and
/// versions (it is baked into every token id).
pub(super) fn bucket_of(user: &UserId) -> u16 {
    let hash = match user.as_u64() {
        Some(n) => {
            let mut digits = itoa_buf(n);
            crc32fast::hash(digits.as_bytes())
        }
        None => crc32fast::hash(user.to_text().as_bytes()),
    };
    (u64::from(hash) % BUCKETS) as u16
}

/// Decimal digits of `n` on the stack.
fn itoa_buf(n: u64) -> Digits {
    let mut out = Digits { buf: [0; 20], start: 20 };
    let mut n = n;
    loop {
        out.start -= 1;
        out.buf[out.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return out;
        }
    }
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// A token id (or session id) taken apart: `id = seq << 15 | kind << 14 | bucket`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) seq: u64,
    pub(super) kind: TokenKind,
    pub(super) bucket: u16,
}

impl Slot {
    /// Any u64 decodes; ids that were never allocated have `seq == 0` or name a session key that does
    /// not exist.
    pub(super) fn of(id: TokenId) -> Self {
        let kind = if id & KIND_BIT == 0 { TokenKind::Access } else { TokenKind::Refresh };
        Self { seq: id >> SEQ_SHIFT, kind, bucket: (id & (BUCKETS - 1)) as u16 }
    }

    pub(super) fn of_session(id: SessionId) -> Self {
        Self::of(id.get())
    }

    /// The id of the session's token of `kind`.
    pub(super) fn id(seq: u64, kind: TokenKind, bucket: u16) -> TokenId {
        debug_assert!(seq <= MAX_SEQ);
        let kind = match kind {
            TokenKind::Access => 0,
            TokenKind::Refresh => KIND_BIT,
        };
        (seq << SEQ_SHIFT) | kind | u64::from(bucket)
    }

    pub(super) fn with_kind(self, kind: TokenKind) -> TokenId {
        Self::id(self.seq, kind, self.bucket)
    }
}

/// The index member of session `seq`.
pub(super) fn member(seq: u64) -> String {
    format!("{seq:0MEMBER_WIDTH$}")
}

/// The sequence number of an index member, if it is one.
pub(super) fn parse_member(member: &[u8]) -> Option<u64> {
    if member.len() != MEMBER_WIDTH || !member.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(member).ok()?.parse().ok().filter(|&seq| seq <= MAX_SEQ)
}

/// Key names under one prefix. Every key of bucket `b` starts with `{prefix}{b}:`, so `{b}` is its
/// Redis Cluster hash tag.
#[derive(Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// # Panics
    /// If `prefix` contains `{` or `}`: they would change which part of each key Redis Cluster hashes.
    pub(super) fn new(prefix: String) -> Self {
        assert!(
            !prefix.contains(['{', '}']),
            "a RedisStore key prefix may not contain `{{` or `}}` (the store adds its own hash tags): {prefix:?}"
        );
        Self { prefix }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}{b}:s:{seq}`: the session hash.
    pub(super) fn session(&self, bucket: u16, seq: u64) -> SessionKey<'_> {
        SessionKey { prefix: &self.prefix, bucket, seq }
    }

    /// `{prefix}{b}:u:{user}`: the user's sessions by creation time.
    pub(super) fn sessions_by_creation(&self, bucket: u16, user: &UserId) -> String {
        format!("{}{{{bucket}}}:u:{user}", self.prefix)
    }

    /// `{prefix}{b}:x:{user}`: the user's sessions by the time their key expires.
    pub(super) fn sessions_by_deadline(&self, bucket: u16, user: &UserId) -> String {
        format!("{}{{{bucket}}}:x:{user}", self.prefix)
    }

    /// `{prefix}{b}:n`: the bucket's session counter.
    pub(super) fn counter(&self, bucket: u16) -> String {
        format!("{}{{{bucket}}}:n", self.prefix)
    }

    /// The glob that matches every deadline index under this prefix (for `SCAN`).
    pub(super) fn deadline_index_pattern(&self) -> String {
        let mut pattern = glob_escape(&self.prefix);
        pattern.push_str("\\{[0-9]*\\}:x:*");
        pattern
    }

    /// The bucket and user of a deadline index key found by `SCAN`, if it is one.
    pub(super) fn parse_deadline_index(&self, key: &[u8]) -> Option<(u16, UserId)> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?.strip_prefix(b"{")?;
        let close = rest.iter().position(|&b| b == b'}')?;
        let (digits, rest) = rest.split_at(close);
        let user = rest.strip_prefix(b"}:x:")?;
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let bucket: u16 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let user = UserId::from(std::str::from_utf8(user).ok()?);
        (u64::from(bucket) < BUCKETS && bucket_of(&user) == bucket).then_some((bucket, user))
    }
}

/// A session key, written straight into a command without an intermediate `String`.
#[derive(Clone, Copy)]
pub(super) struct SessionKey<'a> {
    prefix: &'a str,
    bucket: u16,
    seq: u64,
}

impl ToRedisArgs for SessionKey<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        let mut seq = itoa_buf(self.seq);
        let mut bucket = itoa_buf(u64::from(self.bucket));
        // Writing to a Vec cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(b"{");
        let _ = arg.write_all(bucket.as_bytes());
        let _ = arg.write_all(b"}:s:");
        let _ = arg.write_all(seq.as_bytes());
    }
}

impl std::fmt::Display for SessionKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{{}}}:s:{}", self.prefix, self.bucket, self.seq)
    }
}

/// Escapes glob metacharacters so that a key prefix matches only itself in `SCAN MATCH`.
pub(super) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_over_the_whole_range() {
        for (seq, bucket) in [(1, 0), (1, 16_383), (42, 7), (MAX_SEQ, 16_383), (1 << 40, 123)] {
            for kind in [TokenKind::Access, TokenKind::Refresh] {
                let id = Slot::id(seq, kind, bucket);
                assert_eq!(Slot::of(id), Slot { seq, kind, bucket }, "{id}");
            }
        }
        assert_eq!(Slot::id(MAX_SEQ, TokenKind::Refresh, 16_383), u64::MAX);
        assert_eq!(Slot::of(0).seq, 0);
        assert!(Slot::id(1 << 40, TokenKind::Access, 0) > 1 << 53, "ids past 2^53 are ordinary");
    }

    #[test]
    fn buckets_are_stable_and_equal_for_equal_users() {
        assert_eq!(bucket_of(&UserId::from(42u64)), bucket_of(&UserId::from("42")));
        assert_eq!(u64::from(bucket_of(&UserId::from(42u64))), u64::from(crc32fast::hash(b"42")) % BUCKETS);
        let spread: std::collections::HashSet<u16> = (0..1000u64).map(|u| bucket_of(&UserId::from(u))).collect();
        assert!(spread.len() > 900, "sequential user ids spread over the buckets: {}", spread.len());
    }

    #[test]
    fn members_sort_numerically_and_parse_strictly() {
        assert!(member(9) < member(10));
        assert_eq!(parse_member(member(MAX_SEQ).as_bytes()), Some(MAX_SEQ));
        assert_eq!(parse_member(b"12"), None);
        assert_eq!(parse_member(b"00000000000001x"), None);
    }

    #[test]
    fn session_keys_are_written_without_a_string() {
        let keys = Keys::new("tta:".into());
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(keys.session(17, 100_000_000_000_000));
        let key = keys.session(17, 100_000_000_000_000).to_string();
        assert_eq!(key, "tta:{17}:s:100000000000000");
        let packed = cmd.get_packed_command();
        assert_eq!(packed, format!("*2\r\n$5\r\nHMGET\r\n${}\r\n{key}\r\n", key.len()).into_bytes());
    }

    #[test]
    fn deadline_index_keys_parse_back_strictly() {
        let keys = Keys::new("p*:".into());
        let user = UserId::from("a}:x:b");
        let bucket = bucket_of(&user);
        let key = keys.sessions_by_deadline(bucket, &user);
        assert_eq!(keys.parse_deadline_index(key.as_bytes()), Some((bucket, user)));
        assert_eq!(keys.parse_deadline_index(b"p*:{1}:u:5"), None);
        assert_eq!(keys.parse_deadline_index(format!("p*:{{{}}}:x:5", bucket ^ 1).as_bytes()), None);
        assert_eq!(keys.deadline_index_pattern(), "p\\*:\\{[0-9]*\\}:x:*");
    }

    #[test]
    #[should_panic(expected = "may not contain")]
    fn braces_in_the_prefix_are_refused() {
        Keys::new("app{1}:".into());
    }
}
