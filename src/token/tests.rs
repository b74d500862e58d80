//! The token module's unit tests.

use super::format::ALPHABET;
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
