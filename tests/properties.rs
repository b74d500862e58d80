//! Property tests: arbitrary header bytes never panic the parser or the layer, and the layer only ever
//! answers 200 for the real token, 401 otherwise.

use std::convert::Infallible;
use std::sync::OnceLock;

use http::{header::AUTHORIZATION, HeaderValue, Request, Response, StatusCode};
use proptest::prelude::*;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_token_auth::header::{bearer_token, BearerCredentials};
use tower_token_auth::token::{parse_token, TokenDigest};
use tower_token_auth::{IssuedToken, MemoryStore, NewToken, TokenAuthLayer, TokenStoreExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fn fixture() -> &'static (MemoryStore, IssuedToken) {
    static FIXTURE: OnceLock<(MemoryStore, IssuedToken)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let store = MemoryStore::new();
        let issued = runtime().block_on(store.issue(NewToken::access(1u64))).unwrap();
        (store, issued)
    })
}

fn status_for(value: Option<HeaderValue>) -> StatusCode {
    let (store, _) = fixture();
    let service = ServiceBuilder::new()
        .layer(TokenAuthLayer::new(store.clone()))
        .service(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
    let mut request = Request::new(());
    if let Some(value) = value {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    runtime().block_on(service.oneshot(request)).unwrap().status()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_token(&bytes);
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let _ = bearer_token(Some(&value));
        }
    }

    #[test]
    fn layer_answers_401_for_arbitrary_header_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            prop_assert_eq!(status_for(Some(value)), StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn layer_answers_401_for_arbitrary_bearer_tokens(token in "[ -~]{0,300}") {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        prop_assert_eq!(status_for(Some(value)), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn any_change_to_a_valid_secret_is_rejected(position in 0usize..48, replacement in "[A-Za-z0-9|]") {
        let (_, issued) = fixture();
        let plain = issued.plain_text.expose();
        let (id, secret) = plain.split_once('|').unwrap();
        let mut changed = secret.to_owned();
        changed.replace_range(position..position + 1, &replacement);
        prop_assume!(changed != secret);
        let value = HeaderValue::from_str(&format!("Bearer {id}|{changed}")).unwrap();
        prop_assert_eq!(status_for(Some(value)), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn any_nonempty_secret_parses_and_hashes_whole(id in 0u64.., secret in "[!-~]{1,200}") {
        prop_assume!(secret != "0");
        let token = format!("{id}|{secret}");
        let parsed = parse_token(token.as_bytes()).unwrap();
        prop_assert_eq!(parsed.id(), id);
        prop_assert_eq!(TokenDigest::of(parsed.secret()), TokenDigest::of(secret.as_bytes()));
    }

    #[test]
    fn scheme_case_and_spacing_do_not_matter(upper in proptest::collection::vec(any::<bool>(), 6), spaces in 1usize..8) {
        let (_, issued) = fixture();
        let scheme: String = "bearer".chars().zip(upper).map(|(c, u)| if u { c.to_ascii_uppercase() } else { c }).collect();
        let value = format!("{scheme}{}{}", " ".repeat(spaces), issued.plain_text.expose());
        let value = HeaderValue::from_str(&value).unwrap();
        prop_assert!(matches!(bearer_token(Some(&value)), BearerCredentials::Token(_)));
        prop_assert_eq!(status_for(Some(value)), StatusCode::OK);
    }
}

#[test]
fn the_real_token_is_accepted_and_no_header_is_401() {
    let (_, issued) = fixture();
    let value = HeaderValue::from_str(&format!("Bearer {}", issued.plain_text.expose())).unwrap();
    assert_eq!(status_for(Some(value)), StatusCode::OK);
    assert_eq!(status_for(None), StatusCode::UNAUTHORIZED);
}
