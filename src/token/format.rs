//! The wire format: parsing `{id}|{secret}`, generating Sanctum-format secrets, the plain text handed out once.

use std::fmt;

use zeroize::Zeroizing;

use super::{TokenId, MAX_TOKEN_LEN, SECRET_ENTROPY_LEN};

pub(super) const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

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
