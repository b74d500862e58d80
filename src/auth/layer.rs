use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::service::TokenAuth;
use super::verify::{Config, LastUsed};
use crate::clock::Clock;
use crate::devices::{RevokeSessionService, SessionListService};
use crate::logout::LogoutService;
use crate::token::TokenKind;

/// Layer that authenticates requests with bearer tokens. See the [module docs](crate::auth).
///
/// Cheap to clone. The configuration is shared with every service it builds, and with the
/// [`LogoutService`] from [`logout_service`](Self::logout_service).
pub struct TokenAuthLayer<St> {
    pub(crate) config: Arc<Config<St>>,
}

impl<St> TokenAuthLayer<St> {
    /// Authenticates access tokens from `store`, with no maximum age, a 5 s lookup timeout, and
    /// last-used tracking off.
    pub fn new(store: St) -> Self {
        Self { config: Arc::new(Config::new(store)) }
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.config.store
    }
}

/// Builder methods. None needs `St: Clone`: the store is shared behind an `Arc` by every service the
/// layer builds.
impl<St> TokenAuthLayer<St> {
    fn configure(mut self, f: impl FnOnce(&mut Config<St>)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Rejects tokens created more than `max_age` ago, whatever their own expiry (Sanctum's
    /// `expiration` setting, counted from `created_at`). The sooner of the two limits wins.
    pub fn max_age(self, max_age: Duration) -> Self {
        self.configure(|c| c.max_age = Some(max_age))
    }

    /// Bounds each store lookup (default 5 s; `None` waits forever). A lookup that times out is
    /// answered `503`. Needs tokio's time driver, which `#[tokio::main]` enables; stores that answer at
    /// once (like [`MemoryStore`](crate::MemoryStore)) never start the timer.
    pub fn lookup_timeout(self, timeout: Option<Duration>) -> Self {
        self.configure(|c| c.lookup_timeout = timeout)
    }

    /// Uses `clock` for expiry checks (tests use [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.configure(|c| c.clock = clock)
    }

    /// Records when tokens are used, at most once per token per `interval`, in a background task, so no
    /// request ever waits for the write. Off by default: Sanctum's write on every request is its most
    /// reported performance problem.
    pub fn track_last_used(self, interval: Duration) -> Self {
        let last_used = Arc::new(LastUsed::new(interval));
        self.configure(|c| c.last_used = Some(last_used))
    }

    /// Also accepts legacy Sanctum tokens sent without `{id}|` (looked up by digest). Off by default.
    pub fn legacy_tokens(self, enabled: bool) -> Self {
        self.configure(|c| c.legacy_tokens = enabled)
    }

    /// Makes authentication optional: a request with no credentials at all (no `Authorization` header, an
    /// empty one, or another scheme) reaches the inner service without an
    /// [`AuthenticatedToken`](crate::AuthenticatedToken), for routes that serve guests and users alike
    /// (Laravel's `auth('sanctum')->user()` on a public route). A bearer token that is present but bad still
    /// gets `401`, and a failing store still `503`.
    pub fn optional(self) -> Self {
        self.configure(|c| c.optional = true)
    }

    /// Accepts refresh tokens instead of access tokens: for the route that exchanges them. Handlers
    /// behind it see [`TokenKind::Refresh`].
    pub fn refresh_tokens_only(self) -> Self {
        self.configure(|c| c.kind = TokenKind::Refresh)
    }

    /// A [`LogoutService`] sharing this layer's store and settings.
    pub fn logout_service(&self) -> LogoutService<St> {
        LogoutService::from_config(Arc::clone(&self.config))
    }

    /// A [`SessionListService`] (the caller's devices) sharing this layer's store and settings.
    pub fn session_list_service(&self) -> SessionListService<St> {
        SessionListService::from_config(Arc::clone(&self.config))
    }

    /// A [`RevokeSessionService`] (revoke one of the caller's devices) sharing this layer's store and
    /// settings.
    pub fn revoke_session_service(&self) -> RevokeSessionService<St> {
        RevokeSessionService::from_config(Arc::clone(&self.config))
    }
}

impl<St> Clone for TokenAuthLayer<St> {
    fn clone(&self) -> Self {
        Self { config: Arc::clone(&self.config) }
    }
}

impl<St: fmt::Debug> fmt::Debug for TokenAuthLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthLayer").field("config", &self.config).finish()
    }
}

impl<S, St> Layer<S> for TokenAuthLayer<St> {
    type Service = TokenAuth<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenAuth { inner, config: Arc::clone(&self.config) }
    }
}
