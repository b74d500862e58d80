//! The refresh token's secret: a Sanctum-style secret followed by the **family key** of its session.
//!
//! A refresh token is `{id}|{secret}.{family key}`: the secret is a fresh Sanctum-format secret for every
//! token (40 random characters and a CRC, after the optional prefix), and the family key is 43 random
//! alphanumeric characters (about 256 bits) drawn once per login and carried by every refresh token the
//! session ever issues. The store keeps two digests and nothing else:
//!
//! - the token digest: SHA-256 of a domain tag and the whole secret (`tower-token-auth/refresh\0` +
//!   secret). Sanctum hashes the bare secret, so a refresh token never authenticates through Sanctum's
//!   algorithm or through [`TokenAuthLayer`](crate::TokenAuthLayer), on any store;
//! - the family digest: SHA-256 of another tag and the family key, the same for the whole session.
//!
//! Presenting a token whose family key matches the session but whose secret is not the current one
//! proves that the presenter holds a refresh token this session issued and has since exchanged: that is
//! reuse, however many exchanges happened since (nothing is forgotten, because nothing per exchange is
//! remembered). A forger who never held one of the session's tokens does not know the family key and
//! only ever gets "invalid", which revokes nothing. See the threat model in [`crate::refresh`].

use zeroize::Zeroizing;

use crate::token::{generate_secret, TokenDigest};

/// Characters of a family key.
pub(crate) const FAMILY_KEY_LEN: usize = 43;

const REFRESH_DOMAIN: &[u8] = b"tower-token-auth/refresh\0";
const FAMILY_DOMAIN: &[u8] = b"tower-token-auth/family\0";

/// What the store needs of a presented refresh secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PresentedRefresh {
    /// The digest stored for the token, if it is the session's current one.
    pub(crate) digest: TokenDigest,
    /// The family digest, when the secret carries a family key (`None`: a refresh token issued before
    /// family keys, whose digest is SHA-256 of the bare secret).
    pub(crate) family: Option<TokenDigest>,
}

/// Reads a presented refresh secret (everything after the first `|`). Never fails: a secret of another
/// shape is read as a refresh token issued before family keys, which only its exact digest can match.
pub(crate) fn presented(secret: &[u8]) -> PresentedRefresh {
    match family_key(secret) {
        Some(key) => PresentedRefresh { digest: token_digest(secret), family: Some(family_digest(key)) },
        None => PresentedRefresh { digest: TokenDigest::of(secret), family: None },
    }
}

/// The family key of a refresh secret: the part after the last `.`, if it has exactly the shape this
/// crate issues.
pub(crate) fn family_key(secret: &[u8]) -> Option<&str> {
    let dot = secret.iter().rposition(|&b| b == b'.')?;
    let key = &secret[dot + 1..];
    let shaped = dot > 0 && key.len() == FAMILY_KEY_LEN && key.iter().all(u8::is_ascii_alphanumeric);
    shaped.then(|| std::str::from_utf8(key).ok()).flatten()
}

/// A new family key from the OS CSPRNG.
pub(crate) fn new_family_key() -> Result<Zeroizing<String>, getrandom::Error> {
    use crate::token::SECRET_ENTROPY_LEN;
    // Two secrets' random characters (their CRC suffixes are not random, so they are left out).
    let (first, second) = (generate_secret("")?, generate_secret("")?);
    let mut key = Zeroizing::new(String::with_capacity(FAMILY_KEY_LEN));
    key.push_str(&first[..SECRET_ENTROPY_LEN]);
    key.push_str(&second[..FAMILY_KEY_LEN - SECRET_ENTROPY_LEN]);
    Ok(key)
}

/// A new refresh secret of the family `key`, with its token digest.
pub(crate) fn new_refresh_secret(
    prefix: &str,
    key: &str,
) -> Result<(Zeroizing<String>, TokenDigest), getrandom::Error> {
    let head = generate_secret(prefix)?;
    let mut secret = Zeroizing::new(String::with_capacity(head.len() + 1 + key.len()));
    secret.push_str(&head);
    secret.push('.');
    secret.push_str(key);
    let digest = token_digest(secret.as_bytes());
    Ok((secret, digest))
}

/// The digest stored for a refresh secret of the current format.
pub(crate) fn token_digest(secret: &[u8]) -> TokenDigest {
    TokenDigest::of_parts(REFRESH_DOMAIN, secret)
}

/// The digest stored for a session's family key.
pub(crate) fn family_digest(key: &str) -> TokenDigest {
    TokenDigest::of_parts(FAMILY_DOMAIN, key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_secrets_carry_their_family() {
        let key = new_family_key().unwrap();
        assert_eq!(key.len(), FAMILY_KEY_LEN);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
        let (secret, digest) = new_refresh_secret("app_", &key).unwrap();
        assert!(secret.starts_with("app_"));
        let presented = presented(secret.as_bytes());
        assert_eq!(presented.digest, digest);
        assert_eq!(presented.family, Some(family_digest(&key)));
        assert_ne!(digest, TokenDigest::of(secret.as_bytes()), "Sanctum's digest of the secret never matches");
    }

    #[test]
    fn other_shapes_are_read_as_bare_secrets() {
        for secret in ["", ".", "abc", "x.short", &format!(".{}", "a".repeat(43)), &format!("x.{}", "-".repeat(43))] {
            let presented = presented(secret.as_bytes());
            assert_eq!(presented.family, None, "{secret:?}");
            assert_eq!(presented.digest, TokenDigest::of(secret.as_bytes()));
        }
    }

    #[test]
    fn family_keys_differ() {
        assert_ne!(*new_family_key().unwrap(), *new_family_key().unwrap());
    }
}
