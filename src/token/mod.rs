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

mod abilities;
mod digest;
mod format;
mod name;
mod record;
mod session_id;
mod user_id;

pub use abilities::{Abilities, REFRESH_ABILITY, RESERVED_ABILITY_PREFIX, ROTATED_REFRESH_ABILITY};
pub use digest::TokenDigest;
pub use format::{crc32b_hex, generate_secret, parse_token, ParsedToken, PlainTextToken};
pub use name::TokenName;
pub use record::{InvalidToken, IssuedToken, TokenKind, TokenRecord};
pub use session_id::{InvalidSessionId, SessionId};
pub use user_id::UserId;

/// The id of a token: the row id of Sanctum's `personal_access_tokens` table.
pub type TokenId = u64;

/// Number of random characters in an issued secret, as in Sanctum.
pub const SECRET_ENTROPY_LEN: usize = 40;

/// Longest token (`{id}|{secret}`) the parser looks at. Longer input is rejected before hashing.
pub const MAX_TOKEN_LEN: usize = 1024;

#[cfg(test)]
mod tests;
