//! tower-http's `CorsLayer` with the auth layer, over a real hyper server and client: preflights answered
//! before authentication, CORS headers on every rejection, and the documented behaviour when the order
//! is wrong.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, ORIGIN, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_http::cors::CorsLayer;
use tower_token_auth::ability::RequireAbilitiesLayer;
use tower_token_auth::{MemoryStore, NewToken, TokenAuthLayer, TokenStore, TokenStoreExt};

use support::faults::{Fault, FaultyStore};
use support::http::{boxed, client, serve, Body};

const ORIGIN_OK: &str = "http://app.example.test";

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(HeaderValue::from_static(ORIGIN_OK))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([AUTHORIZATION])
        .expose_headers([WWW_AUTHENTICATE])
}

fn ok(
) -> impl tower::Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone
{
    service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

/// Serves `ok` behind the auth layer (and an ability check), with the CORS layer outside (`right`) or
/// inside it.
async fn api<St: TokenStore + Clone>(store: St, right: bool) -> std::net::SocketAddr {
    let auth = TokenAuthLayer::new(store);
    let abilities = RequireAbilitiesLayer::all(["posts:write"]);
    if right {
        let svc = ServiceBuilder::new().layer(cors()).layer(auth).layer(abilities).service(ok());
        serve(service_fn(move |req| {
            let svc = svc.clone();
            async move { Ok::<Response<Body>, Infallible>(svc.oneshot(req).await?.map(boxed)) }
        }))
        .await
    } else {
        let svc = ServiceBuilder::new().layer(auth).layer(cors()).layer(abilities).service(ok());
        serve(service_fn(move |req| {
            let svc = svc.clone();
            async move { Ok::<Response<Body>, Infallible>(svc.oneshot(req).await?.map(boxed)) }
        }))
        .await
    }
}

async fn send(
    addr: std::net::SocketAddr,
    method: Method,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(format!("http://{addr}/api/v1/posts"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client().request(request.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

fn preflight() -> [(&'static str, &'static str); 3] {
    [
        (ORIGIN.as_str(), ORIGIN_OK),
        (ACCESS_CONTROL_REQUEST_METHOD.as_str(), "POST"),
        (ACCESS_CONTROL_REQUEST_HEADERS.as_str(), "authorization"),
    ]
}

#[tokio::test]
async fn with_cors_outside_preflights_pass_and_every_rejection_is_readable_by_scripts() {
    let store = FaultyStore::new(MemoryStore::new());
    let writer = store.issue(NewToken::access(1u64).abilities(["posts:write"])).await.unwrap();
    let reader = store.issue(NewToken::access(1u64).abilities(["posts:read"])).await.unwrap();
    let addr = api(store.clone(), true).await;

    let (status, headers, _) = send(addr, Method::OPTIONS, &preflight()).await;
    assert_eq!(status, StatusCode::OK, "the CORS layer answers the preflight");
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN_OK);
    assert!(headers[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().contains("authorization"));

    let bearer = |issued: &tower_token_auth::IssuedToken| format!("Bearer {}", issued.plain_text.expose());
    let (writer, reader) = (bearer(&writer), bearer(&reader));
    let cases = [
        ("no token", None, StatusCode::UNAUTHORIZED, r#"{"message":"Unauthenticated."}"#),
        ("bad token", Some("Bearer 1|wrong"), StatusCode::UNAUTHORIZED, r#"{"message":"Unauthenticated."}"#),
        ("missing ability", Some(reader.as_str()), StatusCode::FORBIDDEN, r#"{"message":"Invalid ability provided."}"#),
        ("good token", Some(writer.as_str()), StatusCode::OK, "ok"),
    ];
    for (case, authorization, status, body) in cases {
        let mut headers = vec![(ORIGIN.as_str(), ORIGIN_OK)];
        if let Some(value) = authorization {
            headers.push((AUTHORIZATION.as_str(), value));
        }
        let (got, response_headers, got_body) = send(addr, Method::POST, &headers).await;
        assert_eq!((got, got_body.as_str()), (status, body), "{case}");
        assert_eq!(response_headers[ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN_OK, "{case}: readable by the page's script");
        assert_eq!(response_headers[ACCESS_CONTROL_EXPOSE_HEADERS], "www-authenticate", "{case}");
    }
    store.set(Fault::Fail);
    let (status, headers, _) =
        send(addr, Method::POST, &[(ORIGIN.as_str(), ORIGIN_OK), (AUTHORIZATION.as_str(), &writer)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN_OK, "a 503 is readable too");
}

/// Warnings logged in this test binary.
fn warnings() -> &'static Mutex<Vec<String>> {
    static LOG: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
        log
    })
}

struct Sink(Arc<Mutex<Vec<String>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn with_cors_inside_a_preflight_is_a_401_never_the_handler_and_the_fix_is_logged() {
    let log = warnings();
    let store = MemoryStore::new();
    let addr = api(store, false).await;
    let (status, headers, body) = send(addr, Method::OPTIONS, &preflight()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "fail closed: the handler is not reached unauthenticated");
    assert_eq!(body, r#"{"message":"Unauthenticated."}"#);
    assert!(headers.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "so the browser blocks it");
    let logged = log.lock().unwrap().concat();
    assert!(logged.contains("CORS preflight") && logged.contains("CorsLayer"), "the fix is logged: {logged}");
    // Once per layer, not once per request.
    send(addr, Method::OPTIONS, &preflight()).await;
    assert_eq!(log.lock().unwrap().concat().matches("CORS preflight").count(), 1);
}
