//! A complete token-auth API server: login, refresh with rotation, status, a protected route and
//! logout everywhere, built only from this crate's public API, axum 0.8 and argon2.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example server                       # http://127.0.0.1:3000, in-memory store
//! cargo run --example server -- --help             # every flag
//! cargo run --example server --features redis -- --store redis://127.0.0.1:6379
//! ```
//!
//! It starts with one user, `demo@example.com` / `demo-password` (`--user EMAIL:PASSWORD`, repeatable,
//! replaces it). Endpoints, JSON in and out:
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `POST /api/v1/auth/login` `{"email","password","device_name"?}` | - | a token pair, `401`, `413` or `422` |
//! | `POST /api/v1/auth/refresh` | refresh token | a new pair; a reused refresh token revokes every token of the user |
//! | `POST /api/v1/auth/logout` | access token | revokes every token of the user (the crate's `LogoutService`) |
//! | `GET /api/v1/auth/status` | access token | the user and the token (timestamps in unix seconds) |
//! | `GET /api/v1/user` | access token | the user |
//!
//! Anything else is a JSON `404` or `405`. Request logs go to stderr (`RUST_LOG`, default `info`); at
//! `debug` they include request headers, with `Authorization` redacted.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use clap::Parser;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tower_token_auth::refresh::{NewPair, RefreshTokens, TokenPair};
use tower_token_auth::{AuthenticatedToken, MemoryStore, Rejection, TokenAuthLayer, TokenStore};
use tracing::Level;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest request body accepted (the login JSON); bigger ones get `413`.
const BODY_LIMIT: usize = 16 * 1024;

/// Example auth API server for tower-token-auth.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the chosen one is printed).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:3000")]
    addr: String,
    /// Lifetime of access tokens.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    access_ttl: u64,
    /// Lifetime of refresh tokens.
    #[arg(long, value_name = "SECONDS", default_value_t = 30 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    refresh_ttl: u64,
    /// Token store: memory://, redis://... (feature redis), postgres://, mysql://, sqlite:... (features
    /// postgres, mysql, sqlite).
    #[arg(long, value_name = "URL", default_value = "memory://")]
    store: String,
    /// A user who can log in (repeatable; replaces the demo user). Visible to `ps`: for real
    /// deployments, load password hashes from your user database instead.
    #[arg(long = "user", value_name = "EMAIL:PASSWORD", value_parser = parse_user)]
    users: Vec<(String, String)>,
    /// How often expired tokens are deleted (memory and SQL stores; Redis expires them itself).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    prune_interval: u64,
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
#[derive(Serialize)]
struct User {
    id: u64,
    email: String,
    name: String,
    #[serde(skip)]
    password_hash: Arc<str>,
}

#[derive(Clone)]
struct App {
    users: Arc<[User]>,
    /// Verified against when the email is unknown, so a login takes as long whether or not it exists.
    dummy_hash: Arc<str>,
    /// Argon2 takes ~19 MiB per hash: at most one hash per core at a time, so a burst of (anonymous)
    /// logins queues instead of exhausting memory.
    hashing: Arc<Semaphore>,
    tokens: RefreshTokens<Arc<dyn TokenStore>>,
}

impl App {
    fn user(&self, token: &AuthenticatedToken) -> Option<&User> {
        let id = token.user_id().as_u64()?;
        self.users.iter().find(|user| user.id == id)
    }
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
    let demo = args.users.is_empty();
    let users = if demo { vec![("demo@example.com".to_owned(), "demo-password".to_owned())] } else { args.users };
    let users: Arc<[User]> = users
        .into_iter()
        .zip(1..)
        .map(|((email, password), id)| {
            let name = email.split('@').next().unwrap_or_default().to_owned();
            Ok(User { id, email, name, password_hash: hash_password(&password)?.into() })
        })
        .collect::<Result<_, BoxError>>()?;
    let dummy_hash = hash_password("not anyone's password")?.into();

    let store = open_store(&args.store, Duration::from_secs(args.prune_interval)).await?;
    let tokens = RefreshTokens::new(Arc::clone(&store))
        .access_ttl(Duration::from_secs(args.access_ttl))
        .refresh_ttl(Duration::from_secs(args.refresh_ttl));
    let auth = TokenAuthLayer::new(store);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hashing = Arc::new(Semaphore::new(cores));
    let app = router(App { users, dummy_hash, hashing, tokens }, auth);

    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.addr))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    if demo {
        println!("demo user: demo@example.com / demo-password");
        println!("try: curl -s -X POST http://{addr}/api/v1/auth/login -H 'Content-Type: application/json' \\");
        println!("       -d '{{\"email\":\"demo@example.com\",\"password\":\"demo-password\"}}'");
    }
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(())
}

fn router(app: App, auth: TokenAuthLayer<Arc<dyn TokenStore>>) -> Router {
    let logout = auth.logout_service();
    Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        // The crate's service implements the logout contract; it answers 405 itself for other methods.
        .route_service("/api/v1/auth/logout", logout)
        // `route_layer` on the method router: authentication runs only for a matched path and method,
        // so unknown paths stay 404 and wrong methods 405, never 401.
        .route("/api/v1/auth/status", get(status).route_layer(auth.clone()))
        .route("/api/v1/user", get(current_user).route_layer(auth))
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

/// `POST /api/v1/auth/login`: checks the password and issues an access/refresh pair.
async fn login(State(app): State<App>, body: Result<Json<Value>, JsonRejection>) -> Response {
    let login = match LoginRequest::validate(body) {
        Ok(login) => login,
        Err(response) => return response,
    };
    let user = app.users.iter().find(|user| user.email.eq_ignore_ascii_case(&login.email));
    let hash = Arc::clone(user.map_or(&app.dummy_hash, |user| &user.password_hash));
    let matches = password_matches(&app.hashing, hash, login.password).await;
    let Some(user) = user.filter(|_| matches) else {
        return message(StatusCode::UNAUTHORIZED, "Invalid credentials.");
    };
    match app.tokens.issue_pair(NewPair::new(user.id).name(login.device_name.as_str())).await {
        Ok(pair) => {
            tracing::info!(user_id = user.id, device = %login.device_name, "logged in");
            token_pair(&pair, &app)
        }
        Err(error) => {
            tracing::warn!(%error, "token store failed during login");
            rejection(Rejection::StoreUnavailable)
        }
    }
}

/// `POST /api/v1/auth/refresh`: exchanges a refresh token (once) for a new pair.
async fn refresh(State(app): State<App>, headers: HeaderMap) -> Response {
    match app.tokens.exchange(&headers).await {
        Ok(pair) => token_pair(&pair, &app),
        Err(error) => {
            tracing::info!(%error, "refresh refused");
            rejection(error.rejection())
        }
    }
}

/// `GET /api/v1/auth/status`: who is logged in, with which token. (With the crate's `axum` feature,
/// `token: AuthenticatedToken` is an extractor; `Extension` keeps this example free of features.)
async fn status(State(app): State<App>, Extension(token): Extension<AuthenticatedToken>) -> Response {
    let Some(user) = app.user(&token) else { return rejection(Rejection::InvalidToken) };
    Json(json!({
        "authenticated": true,
        "user": user,
        "token": {
            "id": token.token_id(),
            "name": token.name(),
            "abilities": token.abilities(),
            "expires_at": token.expires_at().map(unix_seconds),
            "created_at": unix_seconds(token.created_at()),
        },
    }))
    .into_response()
}

/// `GET /api/v1/user`: the authenticated user, like Laravel's `$request->user()`.
async fn current_user(State(app): State<App>, Extension(token): Extension<AuthenticatedToken>) -> Response {
    match app.user(&token) {
        Some(user) => Json(user).into_response(),
        // The user was deleted after the token was issued.
        None => rejection(Rejection::InvalidToken),
    }
}

async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found.")
}

async fn method_not_allowed() -> Response {
    message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
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
    #[allow(clippy::result_large_err)] // the error is the response itself, built once per bad request
    fn validate(body: Result<Json<Value>, JsonRejection>) -> Result<Self, Response> {
        let fields = match body {
            Ok(Json(Value::Object(fields))) => fields,
            Ok(Json(_)) => return Err(invalid(vec![("body", "The request body must be a JSON object.".into())])),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                let error = "The request must be JSON, sent with Content-Type: application/json.";
                return Err(invalid(vec![("body", error.into())]));
            }
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(message(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large."));
            }
            Err(_) => return Err(invalid(vec![("body", "The request body must be valid JSON.".into())])),
        };
        let mut errors = Vec::new();
        let email = string_field(&fields, "email", true, &mut errors).map(str::trim);
        match email {
            Some(email) if !is_email(email) => {
                errors.push(("email", "The email field must be a valid email address.".into()))
            }
            Some(email) if email.len() > 255 => errors.push(("email", too_long("email"))),
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

fn message(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// The crate's own response for `rejection`: the same bodies and `WWW-Authenticate` as the layer's.
fn rejection(rejection: Rejection) -> Response {
    rejection.to_response(false).map(axum::body::Body::new)
}

/// The login and refresh answer. `Cache-Control: no-store`, as OAuth 2 asks of token responses.
fn token_pair(pair: &TokenPair, app: &App) -> Response {
    let body = Json(json!({
        "access_token": pair.access.plain_text.expose(),
        "refresh_token": pair.refresh.plain_text.expose(),
        "token_type": "Bearer",
        "expires_in": app.tokens.access_token_ttl().map(|ttl| ttl.as_secs()),
    }));
    ([(CACHE_CONTROL, HeaderValue::from_static("no-store"))], body).into_response()
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
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

/// Opens the store named by `--store`. Every backend becomes an `Arc<dyn TokenStore>`, so the rest of the
/// program has one code path.
async fn open_store(url: &str, prune_interval: Duration) -> Result<Arc<dyn TokenStore>, BoxError> {
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme).to_ascii_lowercase();
    let store: Arc<dyn TokenStore> = match scheme.as_str() {
        "memory" => {
            let store = MemoryStore::new();
            store.spawn_pruner(prune_interval, Duration::ZERO);
            Arc::new(store)
        }
        // Redis expires token keys by itself.
        "redis" | "rediss" => redis_store(url).await?,
        "postgres" | "postgresql" | "mysql" | "mariadb" | "sqlite" => {
            let store = sql_store(&scheme, url).await?;
            tokio::spawn(prune_periodically(Arc::clone(&store), prune_interval));
            store
        }
        _ => {
            return Err(format!(
                "unknown --store {scheme:?}: use memory://, redis://, postgres://, mysql:// or sqlite:"
            )
            .into())
        }
    };
    // Only the scheme: the URL may hold a password.
    tracing::info!(store = scheme, "token store ready");
    Ok(store)
}

#[cfg(feature = "redis")]
async fn redis_store(url: &str) -> Result<Arc<dyn TokenStore>, BoxError> {
    Ok(Arc::new(tower_token_auth::store::RedisStore::connect(url).await?))
}

#[cfg(not(feature = "redis"))]
async fn redis_store(_: &str) -> Result<Arc<dyn TokenStore>, BoxError> {
    Err("this build has no Redis store: rebuild with --features redis".into())
}

/// The SQL stores: each database has its own feature (and `SqlStore` needs at least one of them).
async fn sql_store(scheme: &str, url: &str) -> Result<Arc<dyn TokenStore>, BoxError> {
    let (feature, compiled_in) = match scheme {
        "postgres" | "postgresql" => ("postgres", cfg!(feature = "postgres")),
        "mysql" | "mariadb" => ("mysql", cfg!(feature = "mysql")),
        _ => ("sqlite", cfg!(feature = "sqlite")),
    };
    #[cfg(feature = "sql")]
    if compiled_in {
        let store = tower_token_auth::store::SqlStore::connect(url).await?;
        store.create_table_if_missing().await?;
        return Ok(Arc::new(store));
    }
    let _ = (compiled_in, url); // used only when built with an SQL feature
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

/// Resolves on Ctrl-C or SIGTERM; the server then finishes the requests in flight and exits.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
