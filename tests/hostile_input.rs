//! Hostile input against the real example server (`examples/server.rs`), over raw TCP: each request is
//! written byte for byte (`Connection: close`), so headers can hold what no HTTP client library sends:
//! non-UTF-8 bytes, NUL, several `Authorization` headers, megabyte values. Every case checks the exact
//! status, body and headers; none may be a 5xx, and the server must keep serving afterwards.
//!
//! The outcomes are the table in `SECURITY.md` ("Hostile input"). Two answers come from hyper before the
//! request reaches the application, both documented: `400` with an empty body for bytes HTTP forbids in
//! a header value (NUL, CR, DEL, obsolete line folding), and `431` with an empty body for a header
//! section over hyper's buffer (about 400 KiB; 8 and 64 KiB values still reach the layer).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::example_server::ExampleServer;

const UNAUTHENTICATED: &str = r#"{"message":"Unauthenticated."}"#;
const LOGGED_OUT: &str = r#"{"message":"Successfully logged out"}"#;
const DEMO_USER: &str = r#"{"id":1,"email":"demo@example.com","name":"demo"}"#;
const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running example server on a free port, killed when dropped.
struct Server {
    /// Owned so the server lives as long as this handle (it is killed on drop).
    _process: ExampleServer,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Self {
        let process = ExampleServer::start(&["--store", "memory://"], "warn");
        Self { addr: process.addr, _process: process }
    }

    /// Logs the demo user in and returns `(access, refresh)`.
    async fn login(&self) -> (String, String) {
        let body = json!({"email": "demo@example.com", "password": "demo-password", "device_name": "hostile"});
        let reply = self.post("/api/v1/auth/login", Some("application/json"), body.to_string().as_bytes()).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let pair: Value = serde_json::from_str(&reply.body).unwrap();
        (pair["access_token"].as_str().unwrap().to_owned(), pair["refresh_token"].as_str().unwrap().to_owned())
    }

    async fn post(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(content_type) = content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        exchange(self.addr, [head.as_bytes(), body].concat()).await
    }

    /// `method path` with one `Authorization` header per value.
    async fn with_authorization(&self, method: &str, path: &str, values: &[Vec<u8>]) -> Reply {
        exchange(self.addr, raw_request(method, path, values)).await
    }

    /// Fails unless the server still answers a fresh login and an authenticated request.
    async fn assert_still_serving(&self) {
        let (access, _) = self.login().await;
        let reply = self.with_authorization("GET", "/api/v1/user", &[format!("Bearer {access}").into_bytes()]).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, DEMO_USER), "the server stopped serving");
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Writes `request` and reads the response until the server closes the connection. The write runs
/// alongside the read: the server may answer (413, 431) before it has read a large request.
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("the server accepts connections");
    let (mut reader, mut writer) = stream.into_split();
    let write = tokio::spawn(async move {
        // An early answer closes the connection under a large body; the response is what matters.
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(IO_TIMEOUT, reader.read_to_end(&mut raw)).await;
    let _writer = write.await.unwrap();
    match read {
        Ok(Ok(_)) => {}
        // A reset after the answer was received is fine (the server closed with unread input).
        Ok(Err(error)) => assert!(!raw.is_empty(), "no response: {error}"),
        Err(_) => panic!("no response within {IO_TIMEOUT:?}"),
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("incomplete response: {:?}", String::from_utf8_lossy(raw));
    });
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = &raw[split + 4..];
    if let Some(length) = headers.iter().find(|(n, _)| n == "content-length") {
        body = &body[..length.1.parse::<usize>().unwrap().min(body.len())];
    }
    Reply { status, headers, body: String::from_utf8(body.to_vec()).expect("UTF-8 body") }
}

/// What the server must answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 401, `WWW-Authenticate: Bearer`, `{"message":"Unauthenticated."}`.
    NoCredentials,
    /// 401, `WWW-Authenticate: Bearer error="invalid_token"`, `{"message":"Unauthenticated."}`.
    InvalidToken,
    /// 200 and the demo user (the protected route) or the logout message.
    Authenticated,
    /// 400 with an empty body, from hyper: bytes HTTP forbids in a header.
    HyperBadRequest,
    /// 431 with an empty body, from hyper: the header section is over its buffer.
    HyperHeadersTooLarge,
}

/// One row of the matrix: a name, the `Authorization` values (`$A` access token, `$R` refresh token,
/// `$I` access token id, `$S` access token secret), and the outcome.
struct Case {
    name: &'static str,
    values: Vec<Vec<u8>>,
    expect: Expect,
}

fn case(name: &'static str, values: &[&[u8]], expect: Expect) -> Case {
    Case { name, values: values.iter().map(|v| v.to_vec()).collect(), expect }
}

fn matrix() -> Vec<Case> {
    use Expect::*;
    let long_id = [&b"Bearer "[..], &[b'9'; 30], b"|$S"].concat();
    let kib_8 = [&b"Bearer $I|"[..], &[b'a'; 8 * 1024]].concat();
    let kib_64 = [&b"Bearer $I|"[..], &[b'a'; 64 * 1024]].concat();
    let mib_1 = [&b"Bearer $I|"[..], &[b'a'; 1024 * 1024]].concat();
    let spaces_8k = [&b"Bearer"[..], &[b' '; 8 * 1024], b"$A"].concat();
    let over_1k = [&b"Bearer $I|"[..], &[b'a'; 1025]].concat();
    let zeros = [&b"Bearer "[..], &[b'0'; 20], b"$I|$S"].concat();
    vec![
        case("header absent", &[], NoCredentials),
        case("empty value", &[b""], NoCredentials),
        case("only spaces", &[b"    "], NoCredentials),
        case("`Bearer` alone", &[b"Bearer"], InvalidToken),
        case("`Bearer` and spaces", &[b"Bearer    "], InvalidToken),
        case("Basic credentials", &[b"Basic dXNlcjpwYXNz"], NoCredentials),
        case("`Token` scheme with a valid token", &[b"Token $A"], NoCredentials),
        case("scheme glued to the token", &[b"Bearer$A"], NoCredentials),
        case("lower-case scheme", &[b"bearer $A"], Authenticated),
        case("upper-case scheme", &[b"BEARER $A"], Authenticated),
        case("many spaces after the scheme", &[b"Bearer             $A"], Authenticated),
        case("8 KiB of spaces after the scheme", &[&spaces_8k], Authenticated),
        case("tabs around the value", &[b"\tBearer $A\t"], Authenticated),
        case("tab between scheme and token", &[b"Bearer\t$A"], InvalidToken),
        case("tab inside the token", &[b"Bearer $I|\t$S"], InvalidToken),
        case("space inside the token", &[b"Bearer $A $A"], InvalidToken),
        case("two tokens, comma-separated", &[b"Bearer $A, Bearer $A"], InvalidToken),
        case("two Authorization headers, same valid token", &[b"Bearer $A", b"Bearer $A"], InvalidToken),
        case("two Authorization headers, Basic then Bearer", &[b"Basic dXNlcjpwYXNz", b"Bearer $A"], InvalidToken),
        case("two Authorization headers, one empty", &[b"", b"Bearer $A"], InvalidToken),
        case("token over 1 KiB", &[&over_1k], InvalidToken),
        case("8 KiB value", &[&kib_8], InvalidToken),
        case("64 KiB value", &[&kib_64], InvalidToken),
        case("1 MiB value", &[&mib_1], HyperHeadersTooLarge),
        case("non-UTF-8 bytes in the secret", &[b"Bearer $I|\xff\xfe\xfd"], InvalidToken),
        case("valid token followed by Latin-1", &[b"Bearer $A\xe9"], InvalidToken),
        case("UTF-8 (non-ASCII) secret", &[b"Bearer $I|s\xc3\xa9cret"], InvalidToken),
        case("NUL byte in the secret", &[b"Bearer $I|$S\x00"], HyperBadRequest),
        case("CR inside the value", &[b"Bearer $I|a\rb"], HyperBadRequest),
        case("DEL byte in the secret", &[b"Bearer $I|a\x7fb"], HyperBadRequest),
        case("obsolete line folding", &[b"Bearer\r\n $A"], HyperBadRequest),
        case("`|` only", &[b"Bearer |"], InvalidToken),
        case("`||`", &[b"Bearer ||"], InvalidToken),
        case("id-less (legacy) secret", &[b"Bearer $S"], InvalidToken),
        case("id 0", &[b"Bearer 0|$S"], InvalidToken),
        case("negative id", &[b"Bearer -$I|$S"], InvalidToken),
        case("`+` sign on the id", &[b"Bearer +$I|$S"], InvalidToken),
        case("hex id", &[b"Bearer 0x$I|$S"], InvalidToken),
        case("leading zeros on the id", &[&zeros], Authenticated),
        case("30-digit id", &[&long_id], InvalidToken),
        case("id u64::MAX", &[b"Bearer 18446744073709551615|$S"], InvalidToken),
        case("id u64::MAX + 1", &[b"Bearer 18446744073709551616|$S"], InvalidToken),
        case("empty secret", &[b"Bearer $I|"], InvalidToken),
        case("secret `0`", &[b"Bearer $I|0"], InvalidToken),
        case("secret containing `|`", &[b"Bearer $A|$S"], InvalidToken),
        case("secret with a different case", &[b"Bearer $I|$U"], InvalidToken),
        case("refresh token as access token", &[b"Bearer $R"], InvalidToken),
    ]
}

/// Expands the placeholders of a case value.
fn expand(value: &[u8], access: &str, refresh: &str) -> Vec<u8> {
    let (id, secret) = access.split_once('|').unwrap();
    let upper = secret.to_ascii_uppercase();
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.iter().position(|&b| b == b'$') {
        out.extend_from_slice(&rest[..at]);
        let replacement = match rest.get(at + 1) {
            Some(b'A') => access,
            Some(b'R') => refresh,
            Some(b'I') => id,
            Some(b'S') => secret,
            Some(b'U') => &upper,
            _ => panic!("unknown placeholder"),
        };
        out.extend_from_slice(replacement.as_bytes());
        rest = &rest[at + 2..];
    }
    out.extend_from_slice(rest);
    out
}

fn check(reply: &Reply, expect: Expect, authenticated_body: &str, name: &str) {
    assert!(reply.status < 500, "{name}: {reply:?}");
    let (status, body, challenge) = match expect {
        Expect::NoCredentials => (401, UNAUTHENTICATED, Some("Bearer")),
        Expect::InvalidToken => (401, UNAUTHENTICATED, Some(INVALID_TOKEN)),
        Expect::Authenticated => (200, authenticated_body, None),
        Expect::HyperBadRequest => (400, "", None),
        Expect::HyperHeadersTooLarge => (431, "", None),
    };
    assert_eq!(reply.status, status, "{name}: {reply:?}");
    assert_eq!(reply.body, body, "{name}");
    assert_eq!(reply.header("www-authenticate"), challenge, "{name}");
    if !body.is_empty() {
        assert_eq!(reply.header("content-type"), Some("application/json"), "{name}");
    }
}

#[tokio::test]
async fn every_hostile_authorization_header_gets_its_documented_answer_on_a_protected_route() {
    let server = Server::start();
    let (access, refresh) = server.login().await;
    for case in matrix() {
        let values: Vec<_> = case.values.iter().map(|v| expand(v, &access, &refresh)).collect();
        let reply = server.with_authorization("GET", "/api/v1/user", &values).await;
        check(&reply, case.expect, DEMO_USER, case.name);
    }
    server.assert_still_serving().await;
}

#[tokio::test]
async fn every_hostile_authorization_header_gets_its_documented_answer_on_logout() {
    let server = Server::start();
    let (access, refresh) = server.login().await;
    // Everything that would not authenticate first: none of it may log the user out.
    let (valid, invalid): (Vec<_>, Vec<_>) = matrix().into_iter().partition(|c| c.expect == Expect::Authenticated);
    for case in invalid {
        let values: Vec<_> = case.values.iter().map(|v| expand(v, &access, &refresh)).collect();
        let reply = server.with_authorization("POST", "/api/v1/auth/logout", &values).await;
        check(&reply, case.expect, LOGGED_OUT, case.name);
    }
    let bearer = format!("Bearer {access}").into_bytes();
    let reply = server.with_authorization("GET", "/api/v1/user", std::slice::from_ref(&bearer)).await;
    assert_eq!(reply.status, 200, "a rejected logout revoked the token");

    // Then one authenticating variant logs out, and the token is dead for every other variant.
    let first = &valid[0];
    let values: Vec<_> = first.values.iter().map(|v| expand(v, &access, &refresh)).collect();
    let reply = server.with_authorization("POST", "/api/v1/auth/logout", &values).await;
    check(&reply, Expect::Authenticated, LOGGED_OUT, first.name);
    for case in &valid {
        let values: Vec<_> = case.values.iter().map(|v| expand(v, &access, &refresh)).collect();
        let reply = server.with_authorization("POST", "/api/v1/auth/logout", &values).await;
        check(&reply, Expect::InvalidToken, LOGGED_OUT, case.name);
    }
    server.assert_still_serving().await;
}

#[tokio::test]
async fn tokens_only_work_for_their_own_kind() {
    let server = Server::start();
    let (access, refresh) = server.login().await;
    let reply = server.with_authorization("GET", "/api/v1/auth/status", &[format!("Bearer {refresh}").into()]).await;
    check(&reply, Expect::InvalidToken, "", "refresh token on status");
    let reply = server.with_authorization("POST", "/api/v1/auth/refresh", &[format!("Bearer {access}").into()]).await;
    check(&reply, Expect::InvalidToken, "", "access token on refresh");
    let reply = server.with_authorization("POST", "/api/v1/auth/refresh", &[b"Bearer 1|".to_vec()]).await;
    check(&reply, Expect::InvalidToken, "", "malformed token on refresh");
    let reply = server.with_authorization("POST", "/api/v1/auth/refresh", &[]).await;
    check(&reply, Expect::NoCredentials, "", "no token on refresh");
    server.assert_still_serving().await;
}

/// A login body: name, `Content-Type`, bytes, expected status and JSON.
type LoginCase<'a> = (&'a str, Option<&'a str>, &'a [u8], u16, &'a Value);

#[tokio::test]
async fn login_and_refresh_bodies_that_are_not_json_or_are_huge_are_refused_cleanly() {
    let server = Server::start();
    let not_json = json!({"message": "The request body must be valid JSON.",
        "errors": {"body": ["The request body must be valid JSON."]}});
    let not_object = json!({"message": "The request body must be a JSON object.",
        "errors": {"body": ["The request body must be a JSON object."]}});
    let wrong_type = "The request must be JSON, sent with Content-Type: application/json.";
    let wrong_type = json!({"message": wrong_type, "errors": {"body": [wrong_type]}});
    let too_large = json!({"message": "The request body is too large."});
    let huge = vec![b'{'; 1024 * 1024];
    let huge_string = format!(r#"{{"email":"demo@example.com","password":"{}"}}"#, "p".repeat(1024 * 1024));
    let cases: [LoginCase<'_>; 9] = [
        ("garbage", Some("application/json"), b"\x00\xff{not json", 422, &not_json),
        ("truncated JSON", Some("application/json"), br#"{"email":"demo@example.com","#, 422, &not_json),
        ("empty body", Some("application/json"), b"", 422, &not_json),
        ("JSON array", Some("application/json"), b"[1,2,3]", 422, &not_object),
        ("JSON string", Some("application/json"), br#""demo""#, 422, &not_object),
        ("no content type", None, br#"{"email":"demo@example.com","password":"demo-password"}"#, 422, &wrong_type),
        ("form content type", Some("application/x-www-form-urlencoded"), b"email=a&password=b", 422, &wrong_type),
        ("1 MiB of `{`", Some("application/json"), &huge, 413, &too_large),
        ("1 MiB password", Some("application/json"), huge_string.as_bytes(), 413, &too_large),
    ];
    for (name, content_type, body, status, expected) in cases {
        let reply = server.post("/api/v1/auth/login", content_type, body).await;
        assert_eq!(reply.status, status, "login, {name}: {reply:?}");
        assert_eq!(serde_json::from_str::<Value>(&reply.body).unwrap(), *expected, "login, {name}");
        assert_eq!(reply.header("content-type"), Some("application/json"), "login, {name}");
        assert_eq!(reply.header("cache-control"), None, "login, {name}: no token in an error");
    }

    // The refresh endpoint reads only the Authorization header: any body is ignored.
    for (name, body) in [("garbage", &b"\x00\xff{not json"[..]), ("1 MiB", &huge[..])] {
        let reply = server.post("/api/v1/auth/refresh", Some("application/json"), body).await;
        check(&reply, Expect::NoCredentials, "", &format!("refresh, {name}"));
    }
    let (_, refresh) = server.login().await;
    let mut request = format!(
        "POST /api/v1/auth/refresh HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {refresh}\r\n\
         Content-Type: application/json\r\nContent-Length: 9\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(b"\xffnot json");
    let reply = exchange(server.addr, request).await;
    assert_eq!(reply.status, 200, "a valid refresh token with a garbage body: {reply:?}");
    let pair: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    server.assert_still_serving().await;
}

/// The device routes: any session id that is not one of the user's (not a number, negative, an
/// exponent, overflowing, unknown) is the JSON 404; hostile bodies on `/password` get their documented
/// 413/422; no 5xx, nothing revoked.
#[tokio::test]
async fn session_ids_and_password_bodies_that_are_hostile_are_refused_cleanly() {
    let server = Server::start();
    let (access, _) = server.login().await;
    let bearer = format!("Bearer {access}").into_bytes();
    let not_found = json!({"message": "Not found."});
    let overflow = "9".repeat(30);
    for id in ["abc", "-1", "1e3", overflow.as_str(), "18446744073709551616", "0x10", "1%00", "%20", "1.0", "999999"] {
        let reply = server
            .with_authorization("DELETE", &format!("/api/v1/auth/sessions/{id}"), std::slice::from_ref(&bearer))
            .await;
        assert_eq!(reply.status, 404, "session id {id:?}: {reply:?}");
        assert_eq!(serde_json::from_str::<Value>(&reply.body).unwrap(), not_found, "session id {id:?}");
        assert_eq!(reply.header("content-type"), Some("application/json"), "session id {id:?}");
    }
    let listed = server.with_authorization("GET", "/api/v1/auth/sessions", std::slice::from_ref(&bearer)).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let listed: Value = serde_json::from_str(&listed.body).unwrap();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "nothing was revoked: {listed}");

    let huge = vec![b'{'; 1024 * 1024];
    let huge_password = format!(r#"{{"current_password":"demo-password","password":"{}"}}"#, "p".repeat(1024 * 1024));
    let cases: [(&str, Option<&str>, &[u8], u16); 6] = [
        ("garbage", Some("application/json"), b"\x00\xff{not json", 422),
        ("JSON array", Some("application/json"), b"[1,2,3]", 422),
        ("no content type", None, br#"{"current_password":"demo-password","password":"long-enough"}"#, 422),
        ("wrong field types", Some("application/json"), br#"{"current_password":1,"password":[]}"#, 422),
        ("1 MiB of `{`", Some("application/json"), &huge, 413),
        ("1 MiB password", Some("application/json"), huge_password.as_bytes(), 413),
    ];
    for (name, content_type, body, status) in cases {
        let mut head = format!(
            "POST /api/v1/auth/password HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {access}\r\n"
        );
        if let Some(content_type) = content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let reply = exchange(server.addr, [head.as_bytes(), body].concat()).await;
        assert_eq!(reply.status, status, "password, {name}: {reply:?}");
        let body: Value = serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("password, {name}: not JSON"));
        assert!(body["message"].is_string(), "password, {name}: {body}");
        assert_eq!(reply.header("cache-control"), None, "password, {name}: no token in an error");
    }
    let reply = server.with_authorization("GET", "/api/v1/user", &[bearer]).await;
    assert_eq!(reply.status, 200, "a refused password change revoked nothing");
    server.assert_still_serving().await;
}

#[tokio::test]
async fn hostile_traffic_does_not_disturb_valid_requests_running_alongside() {
    let server = Server::start();
    let (access, refresh) = server.login().await;
    let bearer = format!("Bearer {access}").into_bytes();
    let hostile: Vec<Vec<Vec<u8>>> = matrix()
        .into_iter()
        .filter(|c| c.expect != Expect::Authenticated)
        .map(|c| c.values.iter().map(|v| expand(v, &access, &refresh)).collect())
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let requests = hostile.iter().map(|values| (false, values.clone()));
        for (is_valid, values) in requests.chain(std::iter::repeat_n((true, vec![bearer.clone()]), 20)) {
            let request = raw_request("GET", "/api/v1/user", &values);
            let addr = server.addr;
            tasks.spawn(async move { (is_valid, exchange(addr, request).await.status) });
        }
    }
    let mut valid = 0;
    while let Some(result) = tasks.join_next().await {
        let (is_valid, status) = result.expect("no request task panics");
        assert!(status < 500);
        if is_valid {
            assert_eq!(status, 200, "a valid request failed amid hostile ones");
            valid += 1;
        } else {
            assert_ne!(status, 200, "a hostile request authenticated");
        }
    }
    assert_eq!(valid, 80);
    server.assert_still_serving().await;
}

/// A bodiless request with one `Authorization` header per value, byte for byte.
fn raw_request(method: &str, path: &str, values: &[Vec<u8>]) -> Vec<u8> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n").into_bytes();
    if method == "POST" {
        request.extend_from_slice(b"Content-Length: 0\r\n");
    }
    for value in values {
        request.extend_from_slice(b"Authorization: ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request
}
