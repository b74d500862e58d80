//! End-to-end tests of `examples/server.rs`: each test starts the real example binary on a free port and
//! drives it over loopback TCP with reqwest, the way a client application would.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use support::example_server::{server_binary, ExampleServer};

const DEMO_EMAIL: &str = "demo@example.com";
const DEMO_PASSWORD: &str = "demo-password";
const UNAUTHENTICATED: &str = r#"{"message":"Unauthenticated."}"#;
const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

/// A running example server with an HTTP client.
struct Server {
    process: ExampleServer,
    base: String,
    client: Client,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        Self::start_with_log(args, "info")
    }

    fn start_with_log(args: &[&str], rust_log: &str) -> Self {
        Self::start_in(None, args, rust_log)
    }

    fn start_in(dir: Option<&std::path::Path>, args: &[&str], rust_log: &str) -> Self {
        let process = ExampleServer::start_in(dir, args, rust_log);
        let client = Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("reqwest client");
        Server { base: format!("http://{}", process.addr), process, client }
    }

    fn logs(&self) -> String {
        self.process.logs()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, method: Method, path: &str, bearer: Option<&str>) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        Reply::from(request.send().await.expect("request")).await
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        self.send(Method::GET, path, bearer).await
    }

    async fn post(&self, path: &str, bearer: Option<&str>) -> Reply {
        self.send(Method::POST, path, bearer).await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Reply {
        Reply::from(self.client.post(self.url(path)).json(body).send().await.expect("request")).await
    }

    async fn post_raw(&self, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        Reply::from(request.send().await.expect("request")).await
    }

    /// Logs in and returns the token pair, asserting the response shape.
    async fn login(&self, email: &str, password: &str, device: &str) -> Tokens {
        let reply = self
            .post_json("/api/v1/auth/login", &json!({"email": email, "password": password, "device_name": device}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "login failed: {}", reply.body);
        reply.tokens()
    }

    async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post("/api/v1/auth/refresh", Some(refresh_token)).await
    }

    async fn delete(&self, path: &str, bearer: Option<&str>) -> Reply {
        self.send(Method::DELETE, path, bearer).await
    }

    /// `GET /api/v1/auth/sessions` as `bearer`, asserting the shape; the `data` entries.
    async fn sessions(&self, bearer: &str) -> Vec<Value> {
        let reply = self.get("/api/v1/auth/sessions", Some(bearer)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let body = reply.json();
        let data = body["data"].as_array().unwrap_or_else(|| panic!("no data in {body}")).clone();
        for entry in &data {
            assert!(entry["id"].is_u64(), "{entry}");
            assert!(entry["name"].is_string(), "{entry}");
            assert!(entry["created_at"].is_u64(), "{entry}");
            assert!(entry["last_used_at"].is_u64() || entry["last_used_at"].is_null(), "{entry}");
            assert!(entry["expires_at"].is_u64() || entry["expires_at"].is_null(), "{entry}");
            assert!(entry["current"].is_boolean(), "{entry}");
        }
        assert_eq!(data.iter().filter(|e| e["current"] == true).count(), 1, "exactly one current session: {body}");
        data
    }

    /// The session id of the presenting token, from the list.
    async fn current_session(&self, bearer: &str) -> u64 {
        let sessions = self.sessions(bearer).await;
        sessions.iter().find(|e| e["current"] == true).and_then(|e| e["id"].as_u64()).expect("a current session")
    }

    /// The device names of the sessions, as listed (newest first).
    async fn session_names(&self, bearer: &str) -> Vec<String> {
        self.sessions(bearer).await.iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
    }

    async fn change_password(&self, bearer: &str, current: &str, new: &str) -> Reply {
        let body = json!({"current_password": current, "password": new});
        let request = self.client.post(self.url("/api/v1/auth/password")).bearer_auth(bearer).json(&body);
        Reply::from(request.send().await.expect("request")).await
    }
}

/// A response, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("response body");
        Reply { status, headers, body }
    }

    fn json(&self) -> Value {
        assert_eq!(self.header(CONTENT_TYPE.as_str()), "application/json", "body: {}", self.body);
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    fn tokens(&self) -> Tokens {
        assert_eq!(self.header(CACHE_CONTROL.as_str()), "no-store");
        let body = self.json();
        assert_eq!(body["token_type"], "Bearer");
        let token = |field: &str| {
            let token = body[field].as_str().unwrap_or_else(|| panic!("no {field} in {body}")).to_owned();
            let (id, secret) = token.split_once('|').unwrap_or_else(|| panic!("{field} {token:?} is not id|secret"));
            assert!(id.parse::<u64>().is_ok() && secret.len() >= 40, "{field} {token:?} is not Sanctum-shaped");
            token
        };
        let tokens = Tokens {
            access: token("access_token"),
            refresh: token("refresh_token"),
            expires_in: body["expires_in"].as_u64().expect("expires_in"),
        };
        assert_ne!(tokens.access, tokens.refresh);
        tokens
    }

    /// The crate's 401: exact body and `WWW-Authenticate`.
    fn assert_unauthenticated(&self, www_authenticate: &str) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "body: {}", self.body);
        assert_eq!(self.body, UNAUTHENTICATED);
        assert_eq!(self.header(CONTENT_TYPE.as_str()), "application/json");
        assert_eq!(self.header(WWW_AUTHENTICATE.as_str()), www_authenticate);
    }

    fn assert_invalid_token(&self) {
        self.assert_unauthenticated(INVALID_TOKEN);
    }

    fn assert_message(&self, status: StatusCode, message: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.json(), json!({ "message": message }));
    }

    /// Laravel's 422: a message and `errors` naming exactly `fields`.
    fn assert_invalid_fields(&self, fields: &[&str]) -> Value {
        assert_eq!(self.status, StatusCode::UNPROCESSABLE_ENTITY, "body: {}", self.body);
        let body = self.json();
        let errors = body["errors"].as_object().unwrap_or_else(|| panic!("no errors in {body}"));
        let mut named: Vec<&str> = errors.keys().map(String::as_str).collect();
        named.sort_unstable();
        assert_eq!(named, fields, "body: {body}");
        for messages in errors.values() {
            assert!(messages.as_array().is_some_and(|m| !m.is_empty() && m.iter().all(Value::is_string)), "{body}");
        }
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        body
    }
}

struct Tokens {
    access: String,
    refresh: String,
    expires_in: u64,
}

fn token_id(token: &str) -> u64 {
    token.split_once('|').and_then(|(id, _)| id.parse().ok()).expect("id|secret")
}

#[tokio::test]
async fn login_status_user_and_refresh_flow() {
    let server = Server::start(&[]);
    let tokens = server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
    assert_eq!(tokens.expires_in, 3600);

    let status = server.get("/api/v1/auth/status", Some(&tokens.access)).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    let status = status.json();
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["user"], json!({"id": 1, "email": DEMO_EMAIL, "name": "demo"}));
    assert_eq!(status["token"]["id"], token_id(&tokens.access));
    assert_eq!(status["token"]["name"], "laptop");
    assert_eq!(status["token"]["abilities"], json!(["*"]));
    let created_at = status["token"]["created_at"].as_u64().expect("created_at in unix seconds");
    let expires_at = status["token"]["expires_at"].as_u64().expect("expires_at in unix seconds");
    assert_eq!(expires_at - created_at, 3600);

    let user = server.get("/api/v1/user", Some(&tokens.access)).await;
    assert_eq!(user.status, StatusCode::OK);
    assert_eq!(user.json(), json!({"id": 1, "email": DEMO_EMAIL, "name": "demo"}));

    let refreshed = server.refresh(&tokens.refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let refreshed = refreshed.tokens();
    assert_ne!(refreshed.access, tokens.access);
    assert_ne!(refreshed.refresh, tokens.refresh);
    assert_eq!(server.get("/api/v1/user", Some(&refreshed.access)).await.status, StatusCode::OK);
    let status = server.get("/api/v1/auth/status", Some(&refreshed.access)).await.json();
    assert_eq!(status["token"]["name"], "laptop", "the device name survives rotation");

    // The new refresh token rotates in turn.
    let again = server.refresh(&refreshed.refresh).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_that_session_and_spares_the_others() {
    let server = Server::start(&[]);
    let laptop = server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
    let first = server.login(DEMO_EMAIL, DEMO_PASSWORD, "phone").await;
    let second = server.refresh(&first.refresh).await.tokens();
    // The previous access token of the session stops working with the exchange.
    server.get("/api/v1/user", Some(&first.access)).await.assert_invalid_token();

    // The rotated token is presented again: someone copied it.
    server.refresh(&first.refresh).await.assert_invalid_token();

    // Every token of that session is gone, including the pair issued by the legitimate refresh.
    server.get("/api/v1/user", Some(&second.access)).await.assert_invalid_token();
    server.refresh(&second.refresh).await.assert_invalid_token();
    // The user's other device keeps working.
    assert_eq!(server.get("/api/v1/user", Some(&laptop.access)).await.status, StatusCode::OK);
    assert_eq!(server.session_names(&laptop.access).await, ["laptop"]);

    // Logging in again works.
    let fresh = server.login(DEMO_EMAIL, DEMO_PASSWORD, "phone").await;
    assert_eq!(server.get("/api/v1/user", Some(&fresh.access)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_reuse_interval_lets_a_client_retry_a_lost_refresh() {
    let server = Server::start(&["--refresh-reuse-interval", "30"]);
    let first = server.login(DEMO_EMAIL, DEMO_PASSWORD, "phone").await;
    let _lost = server.refresh(&first.refresh).await.tokens();
    let retried = server.refresh(&first.refresh).await;
    assert_eq!(retried.status, StatusCode::OK, "a retry within the interval: {}", retried.body);
    let retried = retried.tokens();
    assert_eq!(server.get("/api/v1/user", Some(&retried.access)).await.status, StatusCode::OK);
    assert_eq!(server.session_names(&retried.access).await, ["phone"], "still one session");
}

/// The device-management flow of the example server, on whatever store it was started with.
async fn device_management_flow(server: &Server, alice: (&str, &str), bob: (&str, &str)) {
    let laptop = server.login(alice.0, alice.1, "laptop").await;
    let phone = server.login(alice.0, alice.1, "phone").await;
    let tablet = server.login(alice.0, alice.1, "tablet").await;
    let bobs = server.login(bob.0, bob.1, "desktop").await;

    // The list: every session once, newest first, the presenting one current.
    assert_eq!(server.session_names(&laptop.access).await, ["tablet", "phone", "laptop"]);
    let sessions = server.sessions(&phone.access).await;
    let current: Vec<&str> =
        sessions.iter().filter(|e| e["current"] == true).map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(current, ["phone"]);
    assert!(sessions.iter().all(|e| e["expires_at"].as_u64().is_some()), "sessions end with their refresh token");
    // A refreshed device is still one session, and still the current one.
    let laptop = server.refresh(&laptop.refresh).await.tokens();
    assert_eq!(server.session_names(&laptop.access).await, ["tablet", "phone", "laptop"]);
    let laptop_session = server.current_session(&laptop.access).await;
    let phone_session = server.current_session(&phone.access).await;
    let bob_session = server.current_session(&bobs.access).await;

    // Without a valid access token, or with a refresh token: the standard 401.
    server.get("/api/v1/auth/sessions", None).await.assert_unauthenticated("Bearer");
    server.get("/api/v1/auth/sessions", Some(&laptop.refresh)).await.assert_invalid_token();
    server
        .delete(&format!("/api/v1/auth/sessions/{phone_session}"), Some(&laptop.refresh))
        .await
        .assert_invalid_token();

    // Ids that are not one of alice's sessions: 404, and nothing of anyone is touched.
    let overflow = "9".repeat(30);
    let bob_path = format!("/api/v1/auth/sessions/{bob_session}");
    for id in ["abc", "-1", "1e3", overflow.as_str(), "18446744073709551616", "0", bob_path.rsplit('/').next().unwrap()]
    {
        let reply = server.delete(&format!("/api/v1/auth/sessions/{id}"), Some(&laptop.access)).await;
        reply.assert_message(StatusCode::NOT_FOUND, "Not found.");
    }
    assert_eq!(server.get("/api/v1/user", Some(&bobs.access)).await.status, StatusCode::OK, "bob's session survives");
    assert_eq!(server.session_names(&laptop.access).await.len(), 3);

    // Revoke the phone from the laptop: its access and refresh tokens stop at once.
    let reply = server.delete(&format!("/api/v1/auth/sessions/{phone_session}"), Some(&laptop.access)).await;
    reply.assert_message(StatusCode::OK, "Session revoked");
    server.get("/api/v1/user", Some(&phone.access)).await.assert_invalid_token();
    server.refresh(&phone.refresh).await.assert_invalid_token();
    let reply = server.delete(&format!("/api/v1/auth/sessions/{phone_session}"), Some(&laptop.access)).await;
    reply.assert_message(StatusCode::NOT_FOUND, "Not found.");
    assert_eq!(server.session_names(&laptop.access).await, ["tablet", "laptop"]);

    // A bad scope: 422 naming the field, nothing revoked.
    for bad in ["everything", "", "LOCAL"] {
        let reply = server.post(&format!("/api/v1/auth/logout?scope={bad}"), Some(&laptop.access)).await;
        reply.assert_invalid_fields(&["scope"]);
    }
    assert_eq!(server.session_names(&laptop.access).await, ["tablet", "laptop"]);

    // Log out the others: the tablet goes, the laptop stays, bob is untouched.
    let reply = server.post("/api/v1/auth/logout?scope=others", Some(&laptop.access)).await;
    reply.assert_message(StatusCode::OK, "Successfully logged out");
    server.get("/api/v1/user", Some(&tablet.access)).await.assert_invalid_token();
    server.refresh(&tablet.refresh).await.assert_invalid_token();
    assert_eq!(server.session_names(&laptop.access).await, ["laptop"]);
    assert_eq!(server.current_session(&laptop.access).await, laptop_session);

    // Log out here: this device, its refresh token included.
    let desk = server.login(alice.0, alice.1, "desk").await;
    let reply = server.post("/api/v1/auth/logout?scope=local", Some(&laptop.access)).await;
    reply.assert_message(StatusCode::OK, "Successfully logged out");
    server.get("/api/v1/user", Some(&laptop.access)).await.assert_invalid_token();
    server.refresh(&laptop.refresh).await.assert_invalid_token();
    assert_eq!(server.session_names(&desk.access).await, ["desk"]);

    // Revoking the current session is allowed.
    let desk_session = server.current_session(&desk.access).await;
    let reply = server.delete(&format!("/api/v1/auth/sessions/{desk_session}"), Some(&desk.access)).await;
    reply.assert_message(StatusCode::OK, "Session revoked");
    server.get("/api/v1/auth/sessions", Some(&desk.access)).await.assert_invalid_token();

    // ?scope=global is the contract's logout.
    let a = server.login(alice.0, alice.1, "a").await;
    let b = server.login(alice.0, alice.1, "b").await;
    let reply = server.post("/api/v1/auth/logout?scope=global", Some(&a.access)).await;
    reply.assert_message(StatusCode::OK, "Successfully logged out");
    server.get("/api/v1/user", Some(&b.access)).await.assert_invalid_token();
    assert_eq!(server.session_names(&bobs.access).await, ["desktop"]);
    assert_eq!(server.post("/api/v1/auth/logout", Some(&bobs.access)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn devices_are_listed_revoked_and_logged_out_by_scope() {
    let server = Server::start(&["--user", "alice@example.com:alice-pass", "--user", "bob@example.com:bob-pass"]);
    device_management_flow(&server, ("alice@example.com", "alice-pass"), ("bob@example.com", "bob-pass")).await;
}

#[tokio::test]
async fn changing_the_password_revokes_every_session_and_answers_a_fresh_pair() {
    let server = Server::start(&["--user", "alice@example.com:old-password", "--user", "bob@example.com:bob-pass"]);
    let laptop = server.login("alice@example.com", "old-password", "laptop").await;
    let phone = server.login("alice@example.com", "old-password", "phone").await;
    let bob = server.login("bob@example.com", "bob-pass", "desktop").await;

    let wrong = server.change_password(&laptop.access, "not-it", "new-password").await;
    wrong.assert_invalid_fields(&["current_password"]);
    let short = server.change_password(&laptop.access, "old-password", "short").await;
    short.assert_invalid_fields(&["password"]);
    let missing = server.post_raw("/api/v1/auth/password", Some("application/json"), "{}").await;
    missing.assert_unauthenticated("Bearer");
    assert_eq!(server.session_names(&laptop.access).await, ["phone", "laptop"], "nothing revoked on a 422");

    let changed = server.change_password(&laptop.access, "old-password", "new-password").await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let fresh = changed.tokens();
    for old in [&laptop, &phone] {
        server.get("/api/v1/user", Some(&old.access)).await.assert_invalid_token();
        server.refresh(&old.refresh).await.assert_invalid_token();
    }
    assert_eq!(server.get("/api/v1/user", Some(&fresh.access)).await.status, StatusCode::OK);
    assert_eq!(server.sessions(&fresh.access).await.len(), 1);
    server
        .post_json("/api/v1/auth/login", &json!({"email": "alice@example.com", "password": "old-password"}))
        .await
        .assert_message(StatusCode::UNAUTHORIZED, "Invalid credentials.");
    server.login("alice@example.com", "new-password", "phone").await;
    assert_eq!(server.get("/api/v1/user", Some(&bob.access)).await.status, StatusCode::OK, "bob is untouched");
}

#[tokio::test]
async fn tokens_of_the_wrong_kind_are_rejected() {
    let server = Server::start(&[]);
    let tokens = server.login(DEMO_EMAIL, DEMO_PASSWORD, "cli").await;

    server.refresh(&tokens.access).await.assert_invalid_token();
    server.get("/api/v1/user", Some(&tokens.refresh)).await.assert_invalid_token();
    server.get("/api/v1/auth/status", Some(&tokens.refresh)).await.assert_invalid_token();
    let forged = format!("{}|{}", token_id(&tokens.refresh), "x".repeat(48));
    server.refresh(&forged).await.assert_invalid_token();
    server.refresh("not-a-token").await.assert_invalid_token();
    server.post("/api/v1/auth/refresh", None).await.assert_unauthenticated("Bearer");
    server.get("/api/v1/user", None).await.assert_unauthenticated("Bearer");
    server.get("/api/v1/auth/status", Some("1|wrong")).await.assert_invalid_token();

    // None of those attempts revoked anything.
    assert_eq!(server.get("/api/v1/user", Some(&tokens.access)).await.status, StatusCode::OK);
    assert_eq!(server.refresh(&tokens.refresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_revokes_every_device_of_the_user_only() {
    let server = Server::start(&["--user", "alice@example.com:alice-pass", "--user", "bob@example.com:bob-pass"]);
    let laptop = server.login("alice@example.com", "alice-pass", "laptop").await;
    let phone = server.login("alice@example.com", "alice-pass", "phone").await;
    let bob = server.login("bob@example.com", "bob-pass", "desktop").await;
    let user = server.get("/api/v1/user", Some(&phone.access)).await.json();
    assert_eq!(user, json!({"id": 1, "email": "alice@example.com", "name": "alice"}));

    let logout = server.post("/api/v1/auth/logout", Some(&laptop.access)).await;
    assert_eq!(logout.status, StatusCode::OK);
    assert_eq!(logout.body, r#"{"message":"Successfully logged out"}"#);
    assert_eq!(logout.header(CONTENT_TYPE.as_str()), "application/json");

    for tokens in [&laptop, &phone] {
        server.get("/api/v1/user", Some(&tokens.access)).await.assert_invalid_token();
        server.get("/api/v1/auth/status", Some(&tokens.access)).await.assert_invalid_token();
        server.refresh(&tokens.refresh).await.assert_invalid_token();
    }
    // Logging out twice: the token is already revoked.
    server.post("/api/v1/auth/logout", Some(&laptop.access)).await.assert_invalid_token();
    server.post("/api/v1/auth/logout", Some(&phone.access)).await.assert_invalid_token();

    // Another user is not affected.
    let bob_user = server.get("/api/v1/user", Some(&bob.access)).await;
    assert_eq!(bob_user.status, StatusCode::OK);
    assert_eq!(bob_user.json()["email"], "bob@example.com");
    assert_eq!(server.refresh(&bob.refresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn logout_without_valid_credentials_follows_the_spec() {
    let server = Server::start(&[]);
    server.post("/api/v1/auth/logout", None).await.assert_unauthenticated("Bearer");
    server.post("/api/v1/auth/logout", Some("7|no-such-token")).await.assert_invalid_token();
    server.post("/api/v1/auth/logout", Some("")).await.assert_invalid_token();
    let basic = server
        .client
        .post(server.url("/api/v1/auth/logout"))
        .header(AUTHORIZATION, "Basic ZGVtbzpkZW1v")
        .send()
        .await
        .expect("request");
    Reply::from(basic).await.assert_unauthenticated("Bearer");

    let tokens = server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
    server.post("/api/v1/auth/logout", Some(&tokens.refresh)).await.assert_invalid_token();
    let get = server.get("/api/v1/auth/logout", Some(&tokens.access)).await;
    get.assert_message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.");
    assert_eq!(get.header(ALLOW.as_str()), "POST");
    // Neither the refresh token nor the GET logged anyone out.
    assert_eq!(server.get("/api/v1/user", Some(&tokens.access)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn expired_access_token_is_rejected_and_can_be_refreshed() {
    let server = Server::start(&["--access-ttl", "1"]);
    let tokens = server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
    assert_eq!(tokens.expires_in, 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    server.get("/api/v1/user", Some(&tokens.access)).await.assert_invalid_token();
    server.post("/api/v1/auth/logout", Some(&tokens.access)).await.assert_invalid_token();
    let refreshed = server.refresh(&tokens.refresh).await.tokens();
    assert_eq!(server.get("/api/v1/user", Some(&refreshed.access)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_credentials_get_401() {
    let server = Server::start(&[]);
    for (email, password) in [(DEMO_EMAIL, "wrong-password"), ("nobody@example.com", DEMO_PASSWORD), (DEMO_EMAIL, " ")]
    {
        let reply = server.post_json("/api/v1/auth/login", &json!({"email": email, "password": password})).await;
        reply.assert_message(StatusCode::UNAUTHORIZED, "Invalid credentials.");
        assert_eq!(reply.header(WWW_AUTHENTICATE.as_str()), "Bearer", "RFC 9110: every 401 has a challenge");
    }
    // Emails are case-insensitive; the device name is optional.
    let reply =
        server.post_json("/api/v1/auth/login", &json!({"email": "Demo@Example.com", "password": DEMO_PASSWORD})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn invalid_login_bodies_get_422_naming_the_field() {
    let server = Server::start(&[]);
    let login = "/api/v1/auth/login";

    let body = server.post_json(login, &json!({})).await.assert_invalid_fields(&["email", "password"]);
    assert_eq!(body["message"], "The email field is required. (and 1 more error)");
    assert_eq!(body["errors"]["email"], json!(["The email field is required."]));

    let cases = [
        (json!({"email": DEMO_EMAIL}), vec!["password"]),
        (json!({"email": "", "password": "x"}), vec!["email"]),
        (json!({"email": "not-an-email", "password": "x"}), vec!["email"]),
        (json!({"email": 5, "password": "x"}), vec!["email"]),
        (json!({"email": DEMO_EMAIL, "password": ["x"]}), vec!["password"]),
        (json!({"email": DEMO_EMAIL, "password": DEMO_PASSWORD, "device_name": {"x": 1}}), vec!["device_name"]),
        (json!({"email": DEMO_EMAIL, "password": DEMO_PASSWORD, "device_name": "d".repeat(256)}), vec!["device_name"]),
        (json!([DEMO_EMAIL, DEMO_PASSWORD]), vec!["body"]),
        (json!(null), vec!["body"]),
    ];
    for (body, fields) in cases {
        let reply = server.post_json(login, &body).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {}", reply.body);
        reply.assert_invalid_fields(&fields);
    }

    let credentials = format!(r#"{{"email":"{DEMO_EMAIL}","password":"{DEMO_PASSWORD}"}}"#);
    for (content_type, body) in [
        (Some("application/json"), r#"{"email":"#.to_owned()),
        (Some("application/json"), "not json".to_owned()),
        (Some("application/json"), String::new()),
        (None, credentials.clone()),
        (Some("text/plain"), credentials.clone()),
        (Some("application/x-www-form-urlencoded"), format!("email={DEMO_EMAIL}&password={DEMO_PASSWORD}")),
    ] {
        let reply = server.post_raw(login, content_type, body).await;
        reply.assert_invalid_fields(&["body"]);
    }
    let utf8_garbage = vec![b'{', 0xff, 0xfe, b'}'];
    server.post_raw(login, Some("application/json"), utf8_garbage).await.assert_invalid_fields(&["body"]);
}

#[tokio::test]
async fn oversized_body_gets_413_json() {
    let server = Server::start(&[]);
    let huge = json!({"email": DEMO_EMAIL, "password": "p".repeat(17 * 1024)});
    let reply = server.post_json("/api/v1/auth/login", &huge).await;
    reply.assert_message(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large.");
    // The server is still fine.
    server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
}

#[tokio::test]
async fn unknown_paths_get_404_and_wrong_methods_405_json_without_auth() {
    let server = Server::start(&[]);
    let health = server.get("/healthz", None).await;
    assert_eq!((health.status, health.json()), (StatusCode::OK, serde_json::json!({"status": "ok"})));
    for path in ["/", "/api", "/api/v1", "/api/v1/nope", "/api/v1/auth/status/", "/api/v2/user", "/%ff%00"] {
        server.get(path, None).await.assert_message(StatusCode::NOT_FOUND, "Not found.");
        server.post(path, None).await.assert_message(StatusCode::NOT_FOUND, "Not found.");
    }
    // A wrong method is 405 before any authentication: not 401.
    for (method, path, allow) in [
        (Method::GET, "/api/v1/auth/login", "POST"),
        (Method::PUT, "/api/v1/auth/refresh", "POST"),
        (Method::POST, "/api/v1/auth/status", "GET,HEAD"),
        (Method::DELETE, "/api/v1/user", "GET,HEAD"),
        (Method::DELETE, "/api/v1/auth/logout", "POST"),
        (Method::POST, "/api/v1/auth/sessions", "GET,HEAD"),
        (Method::GET, "/api/v1/auth/sessions/1", "DELETE"),
    ] {
        let reply = server.send(method.clone(), path, None).await;
        reply.assert_message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.");
        assert_eq!(reply.header(ALLOW.as_str()), allow, "{method} {path}");
    }
}

#[tokio::test]
async fn authorization_header_and_password_are_never_logged() {
    let server = Server::start_with_log(&[], "debug");
    let tokens = server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
    assert_eq!(server.get("/api/v1/user", Some(&tokens.access)).await.status, StatusCode::OK);
    assert_eq!(server.refresh(&tokens.refresh).await.status, StatusCode::OK);

    // Headers are logged at debug level; wait until the last request's are.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.logs().matches(r#""authorization": Sensitive"#).count() < 2 {
        assert!(Instant::now() < deadline, "request headers were not logged:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = server.logs();
    for secret in [&tokens.access, &tokens.refresh] {
        let (_, secret) = secret.split_once('|').unwrap();
        assert!(!logs.contains(secret), "a token secret was logged:\n{logs}");
    }
    assert!(!logs.contains(DEMO_PASSWORD), "the password was logged:\n{logs}");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_shuts_the_server_down_gracefully() {
    let mut server = Server::start(&[]);
    let pid = server.process.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.process.child.try_wait().expect("wait for the server") {
            break exit;
        }
        assert!(Instant::now() < deadline, "server still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit}");
    assert!(server.logs().contains("shutting down"));
}

#[test]
fn help_describes_the_server_and_lists_every_flag() {
    let output = Command::new(server_binary()).arg("--help").output().expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--addr",
        "--access-ttl",
        "--refresh-ttl",
        "--refresh-reuse-interval",
        "--store",
        "--user",
        "--prune-interval",
        "--redis-replicas",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    for what in [
        "Example auth API server",
        "demo@example.com / demo-password",
        "memory://",
        "redis://",
        "redis-sentinel://",
        "sqlite://",
    ] {
        assert!(help.contains(what), "{what:?} missing from --help:\n{help}");
    }
    assert!(!help.contains("Tower middleware for Laravel"), "--help shows the crate's description:\n{help}");
    let short = Command::new(server_binary()).arg("-h").output().expect("run -h");
    assert!(String::from_utf8_lossy(&short.stdout).contains("Example auth API server"));
}

/// Runs the binary expecting it to refuse to start, and returns its stderr.
fn startup_error(args: &[&str]) -> String {
    let output = Command::new(server_binary())
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the server");
    assert!(!output.status.success(), "server started with {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_flags_are_clear_startup_errors() {
    assert!(startup_error(&["--store", "bogus://x"]).contains("unknown --store"));
    assert!(startup_error(&["--user", "no-colon"]).contains("EMAIL:PASSWORD"));
    assert!(startup_error(&["--access-ttl", "0"]).contains("--access-ttl"));
    assert!(startup_error(&["--cors-origin", "http://app.example/path"]).contains("origin"));
    assert!(startup_error(&["--cors-origin", "*"]).contains("origin"));
    assert!(startup_error(&["--redis-replicas", "1"]).contains("--redis-replicas needs a Redis --store"));
    if !cfg!(feature = "metrics") {
        assert!(startup_error(&["--metrics-addr", "127.0.0.1:0"]).contains("rebuild with --features metrics"));
    }
    if !cfg!(feature = "redis") {
        assert!(startup_error(&["--store", "redis://127.0.0.1:1"]).contains("rebuild with --features redis"));
    }
    if !cfg!(feature = "postgres") {
        assert!(startup_error(&["--store", "postgres://localhost/app"]).contains("rebuild with --features postgres"));
    }
}

/// The README's `--store sqlite://tokens.db` works as written: the file is created.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_documented_sqlite_url_creates_its_file() {
    let dir = std::env::temp_dir().join(format!("tower-token-auth-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::remove_file(dir.join("tokens.db"));
    let server = Server::start_in(Some(&dir), &["--store", "sqlite://tokens.db"], "info");
    let tokens = server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
    assert_eq!(server.get("/api/v1/user", Some(&tokens.access)).await.status, StatusCode::OK);
    assert!(dir.join("tokens.db").exists(), "sqlite://tokens.db is created in the working directory");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Shared stores outlive a test run: start from no sessions for alice and bob.
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn log_everyone_out(server: &Server) {
    for (email, password) in [("alice@example.com", "alice-pass"), ("bob@example.com", "bob-pass")] {
        let tokens = server.login(email, password, "cleanup").await;
        assert_eq!(server.post("/api/v1/auth/logout", Some(&tokens.access)).await.status, StatusCode::OK);
    }
}

/// The Redis tests log the same users in and out of one shared store: one at a time.
#[cfg(feature = "redis")]
static REDIS_USERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The device flow on Redis, with two instances sharing it: a session revoked through one is dead on
/// the other at once.
#[cfg(feature = "redis")]
#[tokio::test]
async fn two_instances_on_redis_share_sessions_and_revocations() {
    let Some(url) = std::env::var("TOWER_TOKEN_AUTH_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        println!("skipped: TOWER_TOKEN_AUTH_REDIS_URL is not set");
        return;
    };
    let users = ["--user", "alice@example.com:alice-pass", "--user", "bob@example.com:bob-pass"];
    let args: Vec<&str> = ["--store", url.as_str()].into_iter().chain(users).collect();
    let _one_at_a_time = REDIS_USERS.lock().await;
    let (a, b) = (Server::start(&args), Server::start(&args));
    log_everyone_out(&a).await;
    device_management_flow(&a, ("alice@example.com", "alice-pass"), ("bob@example.com", "bob-pass")).await;

    let laptop = a.login("alice@example.com", "alice-pass", "laptop").await;
    let phone = b.login("alice@example.com", "alice-pass", "phone").await;
    assert_eq!(b.session_names(&laptop.access).await, ["phone", "laptop"], "b lists what a issued");
    let phone_session = b.current_session(&phone.access).await;
    let reply = a.delete(&format!("/api/v1/auth/sessions/{phone_session}"), Some(&laptop.access)).await;
    reply.assert_message(StatusCode::OK, "Session revoked");
    b.get("/api/v1/user", Some(&phone.access)).await.assert_invalid_token();
    b.refresh(&phone.refresh).await.assert_invalid_token();
    let reply = b.post("/api/v1/auth/logout", Some(&laptop.access)).await;
    reply.assert_message(StatusCode::OK, "Successfully logged out");
    a.get("/api/v1/user", Some(&laptop.access)).await.assert_invalid_token();
}

/// `--cache` on two instances over Redis: a token hot in the other instance's cache is refused there as
/// soon as the logout on this one has answered.
#[cfg(feature = "redis")]
#[tokio::test]
async fn two_cached_instances_on_redis_refuse_a_logged_out_token_at_once() {
    let Some(url) = std::env::var("TOWER_TOKEN_AUTH_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        println!("skipped: TOWER_TOKEN_AUTH_REDIS_URL is not set");
        return;
    };
    two_cached_instances_refuse_a_logged_out_token_at_once(&url).await;
}

/// The same on Redis Cluster: each instance's bus tracks every primary.
#[cfg(feature = "redis")]
#[tokio::test]
async fn two_cached_instances_on_a_redis_cluster_refuse_a_logged_out_token_at_once() {
    let Some(url) = std::env::var("TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL").ok().filter(|u| !u.is_empty()) else {
        println!("skipped: TOWER_TOKEN_AUTH_REDIS_CLUSTER_URL is not set");
        return;
    };
    two_cached_instances_refuse_a_logged_out_token_at_once(&url).await;
}

#[cfg(feature = "redis")]
async fn two_cached_instances_refuse_a_logged_out_token_at_once(url: &str) {
    let users = ["--user", "alice@example.com:alice-pass", "--user", "bob@example.com:bob-pass"];
    let args: Vec<&str> = ["--store", url, "--cache"].into_iter().chain(users).collect();
    let _one_at_a_time = REDIS_USERS.lock().await;
    let (a, b) = (Server::start(&args), Server::start(&args));
    log_everyone_out(&a).await;
    device_management_flow(&a, ("alice@example.com", "alice-pass"), ("bob@example.com", "bob-pass")).await;
    for _ in 0..20 {
        let laptop = a.login("alice@example.com", "alice-pass", "laptop").await;
        for _ in 0..5 {
            assert_eq!(b.get("/api/v1/user", Some(&laptop.access)).await.status, StatusCode::OK, "issued on a");
        }
        let reply = a.post("/api/v1/auth/logout", Some(&laptop.access)).await;
        reply.assert_message(StatusCode::OK, "Successfully logged out");
        b.get("/api/v1/user", Some(&laptop.access)).await.assert_invalid_token();
    }
    assert!(b.logs().contains("cached=true"), "{}", b.logs());
}

/// A cached instance stopped with `SIGSTOP` across a logout on another instance refuses the token when it
/// resumes, for a request sent while it was stopped: its lease ran out while it slept, and the fence after
/// it wakes reads the invalidations it missed first.
#[cfg(all(feature = "redis", unix))]
#[tokio::test]
async fn a_cached_instance_stopped_across_a_logout_refuses_the_token_when_it_resumes() {
    let Some(url) = std::env::var("TOWER_TOKEN_AUTH_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        println!("skipped: TOWER_TOKEN_AUTH_REDIS_URL is not set");
        return;
    };
    let users = ["--user", "alice@example.com:alice-pass", "--user", "bob@example.com:bob-pass"];
    let args: Vec<&str> = ["--store", url.as_str(), "--cache"].into_iter().chain(users).collect();
    let _one_at_a_time = REDIS_USERS.lock().await;
    let (a, b) = (Server::start(&args), Server::start(&args));
    log_everyone_out(&a).await;
    let signal = |pid: u32, which: &str| {
        let status = std::process::Command::new("kill").args([which, &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill {which} {pid}");
    };
    let pid = b.process.child.id();
    for stopped_ms in [100u64, 300, 1000] {
        let laptop = a.login("alice@example.com", "alice-pass", "laptop").await;
        for _ in 0..5 {
            assert_eq!(b.get("/api/v1/user", Some(&laptop.access)).await.status, StatusCode::OK, "hot on b");
        }
        signal(pid, "-STOP");
        let reply = a.post("/api/v1/auth/logout", Some(&laptop.access)).await;
        reply.assert_message(StatusCode::OK, "Successfully logged out");
        let resume = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(stopped_ms));
            signal(pid, "-CONT");
        });
        // Sent while b is stopped (the kernel queues it), answered once it resumes.
        b.get("/api/v1/user", Some(&laptop.access)).await.assert_invalid_token();
        resume.join().unwrap();
        b.get("/api/v1/user", Some(&laptop.access)).await.assert_invalid_token();
    }
}

/// The device flow on Laravel's table in PostgreSQL.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_device_flow_works_on_postgres() {
    let Some(url) = std::env::var("TOWER_TOKEN_AUTH_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        println!("skipped: TOWER_TOKEN_AUTH_POSTGRES_URL is not set");
        return;
    };
    let users = ["--user", "alice@example.com:alice-pass", "--user", "bob@example.com:bob-pass"];
    let args: Vec<&str> = ["--store", url.as_str()].into_iter().chain(users).collect();
    let server = Server::start(&args);
    log_everyone_out(&server).await;
    device_management_flow(&server, ("alice@example.com", "alice-pass"), ("bob@example.com", "bob-pass")).await;
}

/// The same flow on an SQL store: one code path for every store.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_store_serves_the_same_flow() {
    let file = std::env::temp_dir().join(format!("tower-token-auth-server-e2e-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let server = Server::start(&["--store", &url]);
    let laptop = server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
    let phone = server.login(DEMO_EMAIL, DEMO_PASSWORD, "phone").await;
    let rotated = server.refresh(&phone.refresh).await.tokens();
    assert_eq!(server.get("/api/v1/user", Some(&rotated.access)).await.status, StatusCode::OK);
    assert_eq!(server.post("/api/v1/auth/logout", Some(&laptop.access)).await.status, StatusCode::OK);
    server.get("/api/v1/user", Some(&rotated.access)).await.assert_invalid_token();
    server.refresh(&rotated.refresh).await.assert_invalid_token();
    drop(server);
    let _ = std::fs::remove_file(&file);
}

/// `--metrics-addr` serves Prometheus text with the crate's metrics.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_are_served_in_prometheus_text() {
    let server = Server::start(&["--metrics-addr", "127.0.0.1:0"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = loop {
        let printed = server.process.printed();
        if let Some(url) = printed.iter().find_map(|line| line.strip_prefix("metrics on ")) {
            break url.to_owned();
        }
        assert!(Instant::now() < deadline, "no metrics address printed: {printed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let tokens = server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
    assert_eq!(server.get("/api/v1/user", Some(&tokens.access)).await.status, StatusCode::OK);
    server.get("/api/v1/user", Some("1|wrong")).await.assert_invalid_token();
    let first = server.refresh(&tokens.refresh).await;
    assert_eq!(first.status, StatusCode::OK);
    server.refresh(&tokens.refresh).await.assert_invalid_token();
    let text = server.client.get(&url).send().await.unwrap().text().await.unwrap();
    for line in [
        "tower_token_auth_sign_ins_total 1",
        "tower_token_auth_refresh_reuse_detected_total 1",
        r#"tower_token_auth_refresh_exchanges_total{outcome="exchanged"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
    }
    let count = |labels: &str| {
        let prefix = format!("tower_token_auth_authenticate_duration_seconds_count{{{labels}}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.parse::<u64>().ok())
    };
    assert!(count(r#"result="success""#).is_some_and(|n| n >= 1), "{text}");
    assert!(count(r#"result="failure",reason="mismatch""#).is_some_and(|n| n >= 1), "{text}");
    assert!(!text.contains(&tokens.access), "no token in the metrics");
    assert!(text.contains("# HELP tower_token_auth_sign_ins_total "), "described: {text}");
    assert!(text.contains("# TYPE tower_token_auth_authenticate_duration_seconds histogram"), "{text}");
    assert!(
        text.contains(r#"tower_token_auth_authenticate_duration_seconds_bucket{result="success",le="1"}"#),
        "{text}"
    );
}

/// The OpenAPI document served at `/openapi.json` is `examples/openapi.json`, and every operation in it
/// exists and answers, without credentials and with an access token, only statuses it documents (with
/// the documented `WWW-Authenticate` on 401s). Schemathesis checks the rest in CI (`.ci/schemathesis.sh`).
#[tokio::test]
async fn the_openapi_document_describes_the_running_server() {
    let server = Server::start(&[]);
    let served = server.get("/openapi.json", None).await;
    assert_eq!(served.status, StatusCode::OK);
    let document: Value = serde_json::from_str(include_str!("../examples/openapi.json")).unwrap();
    assert_eq!(served.json(), document, "the served document is examples/openapi.json");
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");

    let tokens = server.login(DEMO_EMAIL, DEMO_PASSWORD, "laptop").await;
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.push((path.replace("{id}", "18446744073709551615"), method.to_uppercase(), operation.clone()));
        }
    }
    // Logging out revokes the token the other operations use: last.
    operations.sort_by_key(|(path, _, _)| path.ends_with("/logout"));
    assert_eq!(operations.len(), 10, "every route of the server is documented");
    for (path, method, operation) in &operations {
        let secured = operation["security"] != json!([]);
        for bearer in [None, Some(tokens.access.as_str())] {
            let reply = server.send(Method::from_bytes(method.as_bytes()).unwrap(), path, bearer).await;
            let documented = &operation["responses"][reply.status.as_str()];
            assert!(!documented.is_null(), "{method} {path} answered an undocumented {}: {}", reply.status, reply.body);
            if secured && bearer.is_none() {
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path} without credentials");
            }
            if reply.status == StatusCode::UNAUTHORIZED {
                assert!(
                    !reply.header(WWW_AUTHENTICATE.as_str()).is_empty(),
                    "{method} {path}: 401 without a challenge"
                );
            }
        }
    }
}
