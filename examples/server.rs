//! A complete token-auth API server: login, refresh with rotation, devices (sessions) to list and
//! revoke, logout here / elsewhere / everywhere, password change, built only from this crate's public
//! API, axum 0.8 and argon2.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example server                       # http://127.0.0.1:3000, in-memory store
//! cargo run --example server -- --help             # every flag
//! cargo run --example server --features redis -- --store redis://127.0.0.1:6379
//! cargo run --example server --features redis -- --store redis-sentinel://127.0.0.1:26379/mymaster --redis-replicas 1
//! cargo run --example server --features redis -- --store redis://127.0.0.1:6379 --cache   # hot tokens from memory
//! ```
//!
//! It starts with one user, `demo@example.com` / `demo-password` (`--user EMAIL:PASSWORD`, repeatable,
//! replaces it). Endpoints, JSON in and out:
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `POST /api/v1/auth/login` `{"email","password","device_name"?}` | - | a token pair (a new session), `401`, `413` or `422` |
//! | `POST /api/v1/auth/refresh` | refresh token | a new pair in the same session; a reused refresh token revokes that session |
//! | `GET /api/v1/auth/sessions` | access token | the user's sessions (devices), newest first, the current one marked (the crate's `SessionListService`) |
//! | `DELETE /api/v1/auth/sessions/{id}` | access token | revokes that device, access and refresh token; `404` for any other id (the crate's `RevokeSessionService`) |
//! | `POST /api/v1/auth/logout[?scope=global\|local\|others]` | access token | every session (default), this one, or the others (the crate's `LogoutService`) |
//! | `POST /api/v1/auth/password` `{"current_password","password"}` | access token | sets the password, revokes every session, answers a fresh pair |
//! | `GET /api/v1/auth/status` | access token | the user and the token (timestamps in unix seconds) |
//! | `GET /api/v1/user` | access token | the user |
//!
//! | `GET /openapi.json` | - | this API's OpenAPI 3.1 document (`examples/openapi.json`) |
//!
//! Anything else is a JSON `404` or `405`. Request logs go to stderr (`RUST_LOG`, default `info`); at
//! `debug` they include request headers, with `Authorization` redacted.
//!
//! Users live in this process's memory (a real app keeps them in its database): with several instances
//! on one Redis, tokens and sessions are shared, passwords are not.

use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use clap::Parser;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_token_auth::cache::{CacheConfig, CachedStore, LocalBus};
use tower_token_auth::refresh::{NewPair, RefreshTokens, TokenPair};
use tower_token_auth::user::{CurrentUser, CurrentUserLayer, LoadUser};
use tower_token_auth::{AuthenticatedToken, MemoryStore, Rejection, TokenAuthLayer, TokenStore, TokenStoreExt, UserId};
use tracing::Level;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest request body accepted (the login JSON); bigger ones get `413`.
const BODY_LIMIT: usize = 16 * 1024;

/// Shortest password `/api/v1/auth/password` accepts.
const MIN_PASSWORD_LEN: usize = 8;

const ABOUT: &str = "Example auth API server for tower-token-auth: login with email and password, \
access/refresh token pairs, a device (session) list, logout here / elsewhere / everywhere, password change.";

const LONG_ABOUT: &str = "Example auth API server for tower-token-auth.

Serves a JSON auth API on --addr: POST /api/v1/auth/login, /refresh, /logout[?scope=global|local|others],
/password; GET /api/v1/auth/sessions, DELETE /api/v1/auth/sessions/{id}; GET /api/v1/auth/status,
/api/v1/user, /healthz. See the crate README for every request and answer.

Without --user it has one demo user: demo@example.com / demo-password.

Tokens live in --store:
  memory://                               in this process (the default)
  redis://HOST:PORT[/DB]                  Redis, shared by every instance (build with --features redis)
  redis://HOST:7000,redis://HOST:7001,..  Redis Cluster, from its seed nodes (--features redis)
  redis-sentinel://HOST:PORT[,HOST:PORT..]/MASTER[/DB]
                                          the primary Redis Sentinel names, followed across failovers
                                          (--features redis)
  postgres://USER[:PASS]@HOST/DB          Laravel Sanctum's personal_access_tokens table (--features postgres)
  mysql://USER[:PASS]@HOST/DB             the same on MySQL/MariaDB (--features mysql)
  sqlite://PATH  or  sqlite::memory:      the same on SQLite; the file is created if missing (--features sqlite)

--cache keeps hot tokens in this instance's memory, in front of the store (memory://, Redis: one
server, Sentinel or Cluster, PostgreSQL, MySQL/MariaDB, SQLite), and keeps logout immediate on every instance: a revocation waits about
--cache-lease-ms before it answers.";

/// The command line.
#[derive(Parser)]
#[command(version, about = ABOUT, long_about = LONG_ABOUT)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the chosen one is printed).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:3000")]
    addr: String,
    /// Lifetime of access tokens.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    access_ttl: u64,
    /// Lifetime of refresh tokens, counted from login and from each refresh.
    #[arg(long, value_name = "SECONDS", default_value_t = 30 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    refresh_ttl: u64,
    /// How long an exchanged refresh token may be exchanged again (a client retrying after a lost
    /// response) before it counts as reuse and its session is revoked. 0: never (strict).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    refresh_reuse_interval: u64,
    /// Token store (see above): memory://, redis://..., postgres://..., mysql://..., sqlite://...
    #[arg(long, value_name = "URL", default_value = "memory://")]
    store: String,
    /// Redis stores: every login, refresh and logout waits until N replicas acknowledged it (WAIT), or
    /// answers 503 (safe to retry), so that a failover cannot undo an acknowledged logout. 0: no wait.
    #[arg(long, value_name = "N", default_value_t = 0)]
    redis_replicas: u32,
    /// How long --redis-replicas waits for the replicas before answering 503.
    #[arg(long, value_name = "MILLISECONDS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    redis_replicas_timeout: u64,
    /// A user who can log in (repeatable; replaces the demo user). Visible to `ps`: for real
    /// deployments, load password hashes from your user database instead.
    #[arg(long = "user", value_name = "EMAIL:PASSWORD", value_parser = parse_user)]
    users: Vec<(String, String)>,
    /// How often expired tokens are deleted (memory and SQL stores; Redis expires them itself).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    prune_interval: u64,
    /// Let browser pages on ORIGIN (e.g. http://127.0.0.1:8080) call the API: CORS preflights are answered
    /// and every response carries the CORS headers, `WWW-Authenticate` exposed to scripts (repeatable;
    /// off by default). See examples/spa/.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    cors_origins: Vec<HeaderValue>,
    /// Serve the crate's metrics in Prometheus text format on http://HOST:PORT/metrics (off by default;
    /// build with --features metrics).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Authenticate hot tokens from this instance's memory (tower_token_auth::cache); a revocation
    /// still holds on every instance once it has answered.
    #[arg(long)]
    cache: bool,
    /// The cache's lease: how long a fence on the invalidation channel lets hits be served, and about
    /// how long each revocation waits.
    #[arg(long, value_name = "MILLISECONDS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(5..))]
    cache_lease_ms: u64,
}

fn parse_origin(value: &str) -> Result<HeaderValue, String> {
    let (scheme, rest) = value.split_once("://").unwrap_or_default();
    let valid = matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/');
    match HeaderValue::from_str(value) {
        Ok(origin) if valid => Ok(origin),
        _ => Err("expected an origin: scheme://host[:port], e.g. http://127.0.0.1:8080 (no path)".to_owned()),
    }
}

fn parse_user(value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((email, password)) if is_email(email) && !password.is_empty() => {
            Ok((email.to_owned(), password.to_owned()))
        }
        _ => Err("expected EMAIL:PASSWORD, e.g. alice@example.com:secret".to_owned()),
    }
}

/// A user of the app. Real apps load these from their database; ids are what tokens belong to.
#[derive(Clone, Serialize)]
struct User {
    id: u64,
    email: String,
    name: String,
}

/// A user's password hash and how often it changed (so a login that checked an old password can
/// notice a change that happened while it was hashing).
struct Credentials {
    hash: Arc<str>,
    version: u64,
}

/// The users, in memory.
struct Users {
    users: Vec<User>,
    credentials: Vec<RwLock<Credentials>>,
}

impl Users {
    fn by_email(&self, email: &str) -> Option<usize> {
        self.users.iter().position(|user| user.email.eq_ignore_ascii_case(email))
    }

    fn by_id(&self, id: &UserId) -> Option<usize> {
        let id = id.as_u64()?;
        self.users.iter().position(|user| user.id == id)
    }

    fn credentials(&self, index: usize) -> (Arc<str>, u64) {
        let credentials = self.credentials[index].read().unwrap_or_else(|e| e.into_inner());
        (Arc::clone(&credentials.hash), credentials.version)
    }
}

/// The app's side of the crate's user hook: loads the user of each authenticated request once.
impl LoadUser for App {
    type User = User;
    type Error = std::convert::Infallible;

    async fn load_user(&self, token: &AuthenticatedToken) -> Result<Option<User>, Self::Error> {
        Ok(self.users.by_id(token.user_id()).map(|index| self.users.users[index].clone()))
    }
}

#[derive(Clone)]
struct App {
    users: Arc<Users>,
    /// Verified against when the email is unknown, so a login takes as long whether or not it exists.
    dummy_hash: Arc<str>,
    /// Argon2 takes ~19 MiB per hash: at most one hash per core at a time, so a burst of (anonymous)
    /// logins queues instead of exhausting memory.
    hashing: Arc<Semaphore>,
    tokens: RefreshTokens<Arc<dyn TokenStore>>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    // Before anything records a metric: the layer keeps the handles it gets first.
    if let Some(addr) = &args.metrics_addr {
        serve_metrics(addr).await?;
    }
    let demo = args.users.is_empty();
    let accounts = if demo { vec![("demo@example.com".to_owned(), "demo-password".to_owned())] } else { args.users };
    let mut users = Users { users: Vec::new(), credentials: Vec::new() };
    for ((email, password), id) in accounts.into_iter().zip(1..) {
        let name = email.split('@').next().unwrap_or_default().to_owned();
        users.users.push(User { id, email, name });
        users.credentials.push(RwLock::new(Credentials { hash: hash_password(&password)?.into(), version: 0 }));
    }
    let dummy_hash = hash_password("not anyone's password")?.into();

    let replicas = (args.redis_replicas, Duration::from_millis(args.redis_replicas_timeout));
    let cache = args.cache.then(|| {
        let lease = Duration::from_millis(args.cache_lease_ms);
        CacheConfig::default().lease(lease).fence_every(lease / 5)
    });
    let store = open_store(&args.store, Duration::from_secs(args.prune_interval), replicas, cache).await?;
    let tokens = RefreshTokens::new(Arc::clone(&store))
        .access_ttl(Duration::from_secs(args.access_ttl))
        .refresh_ttl(Duration::from_secs(args.refresh_ttl))
        .reuse_interval(Duration::from_secs(args.refresh_reuse_interval));
    let auth = TokenAuthLayer::new(store).track_last_used(Duration::from_secs(60));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hashing = Arc::new(Semaphore::new(cores));
    let app = App { users: Arc::new(users), dummy_hash, hashing, tokens };
    let mut router = router(app, auth);
    if !args.cors_origins.is_empty() {
        // Outermost: it answers preflights before authentication, and adds its headers to every
        // response, the 401s included, so that the page's script can read them.
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::list(args.cors_origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([AUTHORIZATION, CONTENT_TYPE])
            .expose_headers([WWW_AUTHENTICATE])
            .max_age(Duration::from_secs(600));
        router = router.layer(cors);
    }

    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.addr))?;
    let addr = listener.local_addr()?;
    // Registered before announcing the address, so a SIGTERM sent right after it is not lost.
    let shutdown = shutdown_signal()?;
    println!("listening on http://{addr}");
    if demo {
        println!("demo user: demo@example.com / demo-password");
        println!("try: curl -s -X POST http://{addr}/api/v1/auth/login -H 'Content-Type: application/json' \\");
        println!("       -d '{{\"email\":\"demo@example.com\",\"password\":\"demo-password\"}}'");
    }
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

fn router(app: App, auth: TokenAuthLayer<Arc<dyn TokenStore>>) -> Router {
    // `route_layer` on each method router: authentication runs only for a matched path and method, so
    // unknown paths stay 404 and wrong methods 405, never 401. The user is loaded after the token.
    let protected = ServiceBuilder::new().layer(auth.clone()).layer(CurrentUserLayer::new(app.clone()));
    Router::new()
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        // The crate's service implements the logout contract, with `?scope=`; it answers 405 itself.
        .route_service("/api/v1/auth/logout", auth.logout_service().scope_from_query())
        // The device list and "revoke that device" are the crate's services too: no handler code.
        .route_service("/api/v1/auth/sessions", auth.session_list_service())
        .route_service("/api/v1/auth/sessions/{id}", auth.revoke_session_service())
        .route("/api/v1/auth/password", post(change_password).route_layer(protected.clone()))
        .route("/api/v1/auth/status", get(status).route_layer(protected.clone()))
        .route("/api/v1/user", get(current_user).route_layer(protected))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(
            ServiceBuilder::new()
                // Outermost, so no layer below (tracing included) ever sees the token in clear.
                .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                        .on_request(|request: &Request, _: &tracing::Span| {
                            tracing::debug!(headers = ?request.headers(), "started processing request");
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                ),
        )
        .with_state(app)
}

/// `GET /healthz`: a public liveness probe (and the unauthenticated baseline for load tests).
async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The OpenAPI 3.1 document of this API (`examples/openapi.json`). CI runs Schemathesis against the
/// running server with it, and `tests/server_e2e.rs` checks each operation's answers, so it cannot drift.
const OPENAPI: &str = include_str!("openapi.json");

/// `GET /openapi.json`: the API's OpenAPI document.
async fn openapi() -> Response {
    ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI).into_response()
}

/// `POST /api/v1/auth/login`: checks the password and issues an access/refresh pair: a new session.
async fn login(State(app): State<App>, body: Result<Json<Value>, JsonRejection>) -> Response {
    let login = match Validated::body(body).and_then(LoginRequest::validate) {
        Ok(login) => login,
        Err(response) => return response,
    };
    let index = app.users.by_email(&login.email);
    let (hash, version) = match index {
        Some(index) => app.users.credentials(index),
        None => (Arc::clone(&app.dummy_hash), 0),
    };
    let matches = password_matches(&app.hashing, hash, login.password).await;
    let Some(index) = index.filter(|_| matches) else {
        return invalid_credentials();
    };
    let user = &app.users.users[index];
    let pair = match app.tokens.issue_pair(NewPair::new(user.id).name(login.device_name.as_str())).await {
        Ok(pair) => pair,
        Err(error) => return reject(Rejection::from(error)),
    };
    // The password may have changed while it was being checked (argon2 takes a while): a session
    // issued on the old password must not survive that change.
    if app.users.credentials(index).1 != version {
        let _ = app.tokens.store().revoke_session(&user.id.into(), pair.session_id()).await;
        return invalid_credentials();
    }
    tracing::info!(user.id = user.id, session.id = %pair.session_id(), device = %login.device_name, "logged in");
    token_pair(&pair)
}

/// `POST /api/v1/auth/refresh`: exchanges a refresh token (once) for a new pair in the same session.
async fn refresh(State(app): State<App>, headers: HeaderMap) -> Response {
    match app.tokens.exchange(&headers).await {
        Ok(pair) => token_pair(&pair),
        Err(error) => {
            tracing::info!(%error, "refresh refused");
            reject(error.rejection())
        }
    }
}

/// `POST /api/v1/auth/password`: checks the current password, sets the new one, revokes every session
/// of the user (OWASP ASVS V3.3.3) and answers a fresh pair, in the login response's shape.
async fn change_password(
    State(app): State<App>,
    Extension(CurrentUser(user)): Extension<CurrentUser<User>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let change = match Validated::body(body).and_then(PasswordChange::validate) {
        Ok(change) => change,
        Err(response) => return response,
    };
    let Some(index) = app.users.by_id(&user.id.into()) else { return reject(Rejection::InvalidToken) };
    let (hash, version) = app.users.credentials(index);
    if !password_matches(&app.hashing, hash, change.current_password).await {
        let error = "The password is incorrect.";
        return invalid(vec![("current_password", error.to_owned())]);
    }
    let new_hash: Arc<str> = match hash_password(&change.password) {
        Ok(hash) => hash.into(),
        Err(error) => {
            tracing::error!(%error, "hashing the new password failed");
            return reject(Rejection::ServerError);
        }
    };
    {
        let mut credentials = app.users.credentials[index].write().unwrap_or_else(|e| e.into_inner());
        if credentials.version != version {
            // Changed by another request meanwhile: the current password checked above is stale.
            return invalid(vec![("current_password", "The password is incorrect.".to_owned())]);
        }
        *credentials = Credentials { hash: new_hash, version: version + 1 };
    }
    // First the new password, then the revocation: a login racing this either issued before the
    // revocation (and is revoked) or sees the changed version and revokes itself.
    let revoked = match app.tokens.store().revoke_all_for_user(&user.id.into()).await {
        Ok(revoked) => revoked,
        Err(error) => return reject(Rejection::from(error)),
    };
    tracing::info!(user.id = user.id, revoked, "password changed; every session revoked");
    match app.tokens.issue_pair(NewPair::new(user.id).name("password change")).await {
        Ok(pair) => token_pair(&pair),
        Err(error) => reject(Rejection::from(error)),
    }
}

/// `GET /api/v1/auth/status`: who is logged in, with which token. (With the crate's `axum` feature,
/// `AuthenticatedToken` and `CurrentUser` are extractors; `Extension` keeps this example free of features.)
async fn status(
    Extension(CurrentUser(user)): Extension<CurrentUser<User>>,
    Extension(token): Extension<AuthenticatedToken>,
) -> Response {
    // The token's serde shape: id, session_id, user_id, kind, name, abilities and times in unix seconds.
    Json(json!({ "authenticated": true, "user": user, "token": token })).into_response()
}

/// `GET /api/v1/user`: the authenticated user, like Laravel's `$request->user()`.
async fn current_user(Extension(CurrentUser(user)): Extension<CurrentUser<User>>) -> Response {
    Json(user).into_response()
}

async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found.")
}

async fn method_not_allowed() -> Response {
    message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
}

/// A JSON object body, or the answer for one that is not.
struct Validated;

impl Validated {
    #[allow(clippy::result_large_err)] // the error is the response itself, built once per bad request
    fn body(body: Result<Json<Value>, JsonRejection>) -> Result<Map<String, Value>, Response> {
        match body {
            Ok(Json(Value::Object(fields))) => Ok(fields),
            Ok(Json(_)) => Err(invalid(vec![("body", "The request body must be a JSON object.".into())])),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                let error = "The request must be JSON, sent with Content-Type: application/json.";
                Err(invalid(vec![("body", error.into())]))
            }
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(message(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large."))
            }
            Err(_) => Err(invalid(vec![("body", "The request body must be valid JSON.".into())])),
        }
    }
}

/// A validated login body.
struct LoginRequest {
    email: String,
    password: String,
    device_name: String,
}

impl LoginRequest {
    /// Laravel's `email: required|email|max:255`, `password: required|string`,
    /// `device_name: nullable|string|max:255`, with its `422` body on failure.
    #[allow(clippy::result_large_err)]
    fn validate(fields: Map<String, Value>) -> Result<Self, Response> {
        let mut errors = Vec::new();
        let email = string_field(&fields, "email", true, &mut errors).map(str::trim);
        match email {
            Some(email) if !is_email(email) => {
                errors.push(("email", "The email field must be a valid email address.".into()))
            }
            Some(email) if email.chars().count() > 255 => errors.push(("email", too_long("email"))),
            _ => {}
        }
        let password = string_field(&fields, "password", true, &mut errors);
        let device_name = string_field(&fields, "device_name", false, &mut errors).map(str::trim);
        if device_name.is_some_and(|name| name.chars().count() > 255) {
            errors.push(("device_name", too_long("device name")));
        }
        match (email, password) {
            (Some(email), Some(password)) if errors.is_empty() => Ok(Self {
                email: email.to_owned(),
                password: password.to_owned(),
                device_name: device_name.filter(|name| !name.is_empty()).unwrap_or("api").to_owned(),
            }),
            _ => Err(invalid(errors)),
        }
    }
}

/// A validated password change body.
struct PasswordChange {
    current_password: String,
    password: String,
}

impl PasswordChange {
    /// `current_password: required|string`, `password: required|string|min:8|max:255`.
    #[allow(clippy::result_large_err)]
    fn validate(fields: Map<String, Value>) -> Result<Self, Response> {
        let mut errors = Vec::new();
        let current = string_field(&fields, "current_password", true, &mut errors);
        let password = string_field(&fields, "password", true, &mut errors);
        match password.map(|p| p.chars().count()) {
            Some(n) if n < MIN_PASSWORD_LEN => {
                errors.push(("password", format!("The password field must be at least {MIN_PASSWORD_LEN} characters.")))
            }
            Some(n) if n > 255 => errors.push(("password", too_long("password"))),
            _ => {}
        }
        match (current, password) {
            (Some(current), Some(password)) if errors.is_empty() => {
                Ok(Self { current_password: current.to_owned(), password: password.to_owned() })
            }
            _ => Err(invalid(errors)),
        }
    }
}

/// Reads a string field; `""` and `null` count as missing, as in Laravel.
fn string_field<'a>(
    fields: &'a Map<String, Value>,
    name: &'static str,
    required: bool,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<&'a str> {
    let label = name.replace('_', " ");
    match fields.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Some(value),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            if required {
                errors.push((name, format!("The {label} field is required.")));
            }
            None
        }
        Some(_) => {
            errors.push((name, format!("The {label} field must be a string.")));
            None
        }
    }
}

fn too_long(label: &str) -> String {
    format!("The {label} field must not be greater than 255 characters.")
}

fn is_email(value: &str) -> bool {
    let parts = value.split_once('@');
    parts.is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !value.contains(char::is_whitespace)
    })
}

/// `422` in Laravel's shape: the first message (and how many more), and every message by field.
fn invalid(errors: Vec<(&'static str, String)>) -> Response {
    let mut message = errors.first().map(|(_, error)| error.clone()).unwrap_or_default();
    match errors.len() {
        0 | 1 => {}
        2 => message.push_str(" (and 1 more error)"),
        n => message.push_str(&format!(" (and {} more errors)", n - 1)),
    }
    let mut by_field = Map::new();
    for (field, error) in errors {
        let list = by_field.entry(field).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            list.push(error.into());
        }
    }
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "message": message, "errors": by_field }))).into_response()
}

/// The crate's own response for `rejection`: the same bodies and `WWW-Authenticate` as the layer's. (With
/// the crate's `axum` feature, `Rejection`, `StoreError` and `RefreshError` are `IntoResponse`; this
/// example builds without features.)
fn reject(rejection: Rejection) -> Response {
    rejection.to_response(false).map(axum::body::Body::new)
}

fn message(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// `401` for a wrong email or password. RFC 9110 asks every 401 for a challenge: the scheme to use
/// once logged in.
fn invalid_credentials() -> Response {
    let mut response = message(StatusCode::UNAUTHORIZED, "Invalid credentials.");
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The login and refresh answer, the pair's serde shape (`access_token`, `refresh_token`, `token_type`,
/// `expires_in`, `session_id`). `Cache-Control: no-store`, as OAuth 2 asks of token responses.
fn token_pair(pair: &TokenPair) -> Response {
    ([(CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(pair)).into_response()
}

fn hash_password(password: &str) -> Result<String, BoxError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)?;
    let hash = SaltString::encode_b64(&salt)
        .and_then(|salt| Argon2::default().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string()));
    hash.map_err(|error| format!("cannot hash a password: {error}").into())
}

/// Argon2 is deliberately slow, so it runs on the blocking pool, not on the async workers, and no more
/// than `hashing` allows at once.
async fn password_matches(hashing: &Semaphore, hash: Arc<str>, password: String) -> bool {
    let Ok(_permit) = hashing.acquire().await else { return false };
    let verify = move || {
        PasswordHash::new(&hash).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
    };
    tokio::task::spawn_blocking(verify).await.unwrap_or(false)
}

/// Installs a Prometheus recorder and serves its text on `addr` at `/metrics`, in the background.
#[cfg(feature = "metrics")]
async fn serve_metrics(addr: &str) -> Result<(), BoxError> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Buckets make the durations Prometheus histograms (aggregatable across instances) rather than
    // per-process summaries. Seconds: from 50 µs (an in-memory lookup) to 1 s (a store timing out).
    const BUCKETS: &[f64] =
        &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
    // `# HELP` for every metric of the crate, from the first scrape on.
    tower_token_auth::observability::describe_metrics();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| format!("cannot listen on --metrics-addr {addr}: {error}"))?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}

#[cfg(not(feature = "metrics"))]
async fn serve_metrics(_: &str) -> Result<(), BoxError> {
    Err("this build records no metrics: rebuild with --features metrics to use --metrics-addr".into())
}

/// Opens the store named by `--store`. Every backend becomes an `Arc<dyn TokenStore>`, so the rest of the
/// program has one code path.
/// With `cache`, the store is wrapped in a `CachedStore` listening on the backend's invalidation bus.
async fn open_store(
    url: &str,
    prune_interval: Duration,
    (replicas, replicas_timeout): (u32, Duration),
    cache: Option<CacheConfig>,
) -> Result<Arc<dyn TokenStore>, BoxError> {
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme).to_ascii_lowercase();
    if replicas > 0 && !scheme.starts_with("redis") {
        return Err("--redis-replicas needs a Redis --store (redis://, redis-sentinel:// or a cluster)".into());
    }
    let cached = cache.is_some();
    let store: Arc<dyn TokenStore> = match scheme.as_str() {
        "memory" => {
            let store = MemoryStore::new();
            store.spawn_pruner(prune_interval, Duration::ZERO);
            match cache {
                // One process: its own evictions are the only invalidations.
                Some(config) => Arc::new(CachedStore::new(store, LocalBus, config)),
                None => Arc::new(store),
            }
        }
        // Redis expires token keys by itself.
        "redis" | "rediss" | "redis-sentinel" => redis_store(url, (replicas, replicas_timeout), cache).await?,
        "postgres" | "postgresql" | "mysql" | "mariadb" | "sqlite" => {
            let store = sql_store(&scheme, url, cache).await?;
            tokio::spawn(prune_periodically(Arc::clone(&store), prune_interval));
            store
        }
        _ => {
            return Err(format!(
                "unknown --store {scheme:?}: use memory://, redis://, redis-sentinel://, postgres://, mysql:// or sqlite:// (see --help)"
            )
            .into())
        }
    };
    // Only the scheme: the URL may hold a password.
    tracing::info!(store = scheme, cached, "token store ready");
    Ok(store)
}

#[cfg(feature = "redis")]
async fn redis_store(
    url: &str,
    (replicas, timeout): (u32, Duration),
    cache: Option<CacheConfig>,
) -> Result<Arc<dyn TokenStore>, BoxError> {
    let store = tower_token_auth::store::RedisStore::connect(url).await?;
    // The wait is bounded by the command timeout too (3 s by default).
    let store = store.wait_for_replicas(replicas, timeout);
    let Some(config) = cache else { return Ok(Arc::new(store)) };
    // One server, Sentinel's primary, or every primary of a cluster: the bus follows the deployment.
    let bus = tower_token_auth::cache::redis::RedisBus::new(url, &store)?;
    Ok(Arc::new(CachedStore::new(store, bus, config)))
}

#[cfg(not(feature = "redis"))]
async fn redis_store(_: &str, _: (u32, Duration), _: Option<CacheConfig>) -> Result<Arc<dyn TokenStore>, BoxError> {
    Err("this build has no Redis store: rebuild with --features redis".into())
}

/// The SQL stores: each database has its own feature (and `SqlStore` needs at least one of them).
async fn sql_store(scheme: &str, url: &str, cache: Option<CacheConfig>) -> Result<Arc<dyn TokenStore>, BoxError> {
    let (feature, compiled_in) = match scheme {
        "postgres" | "postgresql" => ("postgres", cfg!(feature = "postgres")),
        "mysql" | "mariadb" => ("mysql", cfg!(feature = "mysql")),
        _ => ("sqlite", cfg!(feature = "sqlite")),
    };
    #[cfg(feature = "sql")]
    if compiled_in {
        let store = tower_token_auth::store::SqlStore::connect(url).await?;
        store.create_table_if_missing().await?;
        let Some(config) = cache else { return Ok(Arc::new(store)) };
        #[cfg(feature = "postgres")]
        if feature == "postgres" {
            let bus = tower_token_auth::cache::postgres::PgBus::new(url, tower_token_auth::store::sql::DEFAULT_TABLE)?;
            bus.install().await?;
            return Ok(Arc::new(CachedStore::new(store, bus, config)));
        }
        // MySQL/MariaDB and SQLite: a trigger-fed revocation log, polled.
        #[cfg(feature = "mysql")]
        if feature == "mysql" {
            let bus = tower_token_auth::cache::poll::PollBus::mysql(url, tower_token_auth::store::sql::DEFAULT_TABLE)?;
            bus.install().await?;
            return Ok(Arc::new(CachedStore::new(store, bus, config)));
        }
        #[cfg(feature = "sqlite")]
        if feature == "sqlite" {
            let bus = tower_token_auth::cache::poll::PollBus::sqlite(url, tower_token_auth::store::sql::DEFAULT_TABLE)?;
            bus.install().await?;
            return Ok(Arc::new(CachedStore::new(store, bus, config)));
        }
        let _ = config;
        unreachable!("a compiled-in SQL backend has a bus");
    }
    let _ = (compiled_in, url, cache); // used only when built with an SQL feature
    Err(format!("this build has no {feature} store: rebuild with --features {feature}").into())
}

/// What Laravel's scheduled `sanctum:prune-expired` does, for stores that keep expired rows.
async fn prune_periodically(store: Arc<dyn TokenStore>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        if let Err(error) = store.prune_expired(SystemTime::now(), None).await {
            tracing::warn!(%error, "pruning expired tokens failed");
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM; the server then finishes the requests in flight and exits. The
/// handlers are installed when this is called, not when the future is first polled.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, BoxError> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ctrl_c = tokio::signal::ctrl_c();
    Ok(async move {
        #[cfg(unix)]
        let terminate = async move {
            terminate.recv().await;
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            result = ctrl_c => {
                if result.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            () = terminate => {}
        }
        tracing::info!("shutting down");
    })
}
