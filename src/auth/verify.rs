//! The validation shared by [`TokenAuth`](super::TokenAuth) and [`LogoutService`](crate::LogoutService).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tokio::time::Sleep;

use crate::authenticated::AuthenticatedToken;
use crate::clock::{Clock, SystemClock};
use crate::header::{credentials, BearerCredentials};
use crate::observability::record::{self, LayerMetrics, Outcome};
use crate::response::Rejection;
use crate::store::{StoreError, StoreFuture, TokenStore};
use crate::token::{TokenDigest, TokenId, TokenKind, TokenRecord};

/// Compared against when the id is unknown, so a miss costs what a hit costs.
const DUMMY_DIGEST: TokenDigest = TokenDigest::from_bytes([0x5a; 32]);

/// Default bound on one store lookup.
pub(crate) const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

// Aligned to its own cache lines: the `Arc` around it keeps its reference counts just before it, and
// servers clone the service, so bump the counts, on every request from every core. Apart, those writes
// do not evict the settings every request reads.
#[repr(align(128))]
pub(crate) struct Config<St> {
    /// Shared, so that configuring a layer never needs `St: Clone`.
    pub(crate) store: Arc<St>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) lookup_timeout: Option<Duration>,
    pub(crate) kind: TokenKind,
    pub(crate) last_used: Option<Arc<LastUsed>>,
    pub(crate) legacy_tokens: bool,
    pub(crate) optional: bool,
    pub(crate) metrics: LayerMetrics,
    /// Whether the misplaced-`CorsLayer` warning was logged.
    pub(crate) warned_preflight: AtomicBool,
}

impl<St> Clone for Config<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            clock: Arc::clone(&self.clock),
            max_age: self.max_age,
            lookup_timeout: self.lookup_timeout,
            kind: self.kind,
            last_used: self.last_used.clone(),
            legacy_tokens: self.legacy_tokens,
            optional: self.optional,
            metrics: LayerMetrics::default(),
            warned_preflight: AtomicBool::new(false),
        }
    }
}

impl<St> Config<St> {
    pub(crate) fn new(store: St) -> Self {
        Self {
            store: Arc::new(store),
            clock: Arc::new(SystemClock),
            max_age: None,
            lookup_timeout: Some(DEFAULT_LOOKUP_TIMEOUT),
            kind: TokenKind::Access,
            last_used: None,
            legacy_tokens: false,
            optional: false,
            metrics: LayerMetrics::default(),
            warned_preflight: AtomicBool::new(false),
        }
    }
}

impl<St: std::fmt::Debug> std::fmt::Debug for Config<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthConfig")
            .field("store", &self.store)
            .field("max_age", &self.max_age)
            .field("lookup_timeout", &self.lookup_timeout)
            .field("kind", &self.kind)
            .field("last_used_interval", &self.last_used.as_ref().map(|l| l.interval))
            .field("legacy_tokens", &self.legacy_tokens)
            .field("optional", &self.optional)
            .finish()
    }
}

/// Throttled last-used tracking: at most about one write per token per interval, off the request path.
///
/// Remembers when it last wrote each token in a fixed table of [`LAST_USED_SLOTS`] atomic words (512
/// KiB), indexed by a hash of the token id, so memory is bounded and each request costs one load and,
/// when a write is due, one compare-and-swap, however many tokens are in use. Two tokens sharing a slot
/// only cost an extra write now and then.
pub(crate) struct LastUsed {
    pub(crate) interval: Duration,
    epoch: SystemTime,
    slots: Box<[AtomicU64]>,
}

/// Slots of the last-used table (a power of two).
pub(crate) const LAST_USED_SLOTS: usize = 1 << 16;

/// A slot holds a 24-bit tag of the token id and, below it, 40 bits of milliseconds since `epoch`
/// (34 years).
const LAST_USED_TIME_BITS: u32 = 40;

impl LastUsed {
    pub(crate) fn new(interval: Duration) -> Self {
        let slots = (0..LAST_USED_SLOTS).map(|_| AtomicU64::new(0)).collect();
        Self { interval, epoch: SystemTime::now(), slots }
    }

    /// The slot index and tag of token `id`.
    fn place(id: TokenId) -> (usize, u64) {
        let hash = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // Bit 23 of the tag is always set, so an empty slot (0) never matches.
        ((hash >> 16) as usize & (LAST_USED_SLOTS - 1), (hash >> 40) | (1 << 23))
    }

    fn millis(&self, at: SystemTime) -> u64 {
        let ms = at.duration_since(self.epoch).map_or(0, |d| d.as_millis());
        u64::try_from(ms).unwrap_or(u64::MAX).min((1 << LAST_USED_TIME_BITS) - 1)
    }

    /// Whether a write of token `id`'s last use at `now` is due, claiming it if so.
    pub(crate) fn claim(&self, id: TokenId, now: SystemTime) -> bool {
        let (index, tag) = Self::place(id);
        let slot = &self.slots[index];
        let seen = slot.load(Ordering::Relaxed);
        let now_ms = self.millis(now);
        let interval_ms = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        if seen >> LAST_USED_TIME_BITS == tag {
            let written = seen & ((1 << LAST_USED_TIME_BITS) - 1);
            if now_ms.saturating_sub(written) < interval_ms {
                return false;
            }
        }
        // One caller wins a due write; the others see the new value next time.
        slot.compare_exchange(seen, (tag << LAST_USED_TIME_BITS) | now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    fn record<St: TokenStore>(&self, store: &St, record: &TokenRecord, now: SystemTime, timeout: Option<Duration>) {
        let recent = |at: SystemTime| now.duration_since(at).is_ok_and(|age| age < self.interval) || at > now;
        if record.last_used_at.is_some_and(recent) || !self.claim(record.id, now) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let id = record.id;
        let write = guarded("touch_last_used", store.backend_name(), timeout, || store.touch_last_used(id, now));
        runtime.spawn(async move {
            if let Err(error) = write.await {
                tracing::warn!(token.id = id, %error, "could not record token last use");
            }
        });
    }
}

pub(crate) fn store_panicked() -> StoreError {
    tracing::error!("token store panicked; answering 503");
    StoreError::backend("the token store panicked")
}

/// Runs a store call, turning a panic into a store error: a buggy store must not take the server down
/// or let a request through.
#[inline]
pub(crate) fn guard_panic<T>(call: impl FnOnce() -> StoreFuture<T>) -> StoreFuture<T> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|_| StoreFuture::ready(Err(store_panicked())))
}

/// A store call as every part of the crate makes it: a panic while making the call or while polling its
/// future becomes a [`StoreError`], and a pending future is bounded by `timeout`. A future that is ready
/// at once stays ready (no allocation, no timer).
///
/// `operation` and `store` name the call in the [metrics](crate::observability).
pub(crate) fn guarded<T: Send + 'static>(
    operation: &'static str,
    store: &'static str,
    timeout: Option<Duration>,
    call: impl FnOnce() -> StoreFuture<T>,
) -> StoreFuture<T> {
    let started = record::Started::now();
    match guard_panic(call).try_take_ready() {
        Ok(result) => {
            record::store_call(operation, store, started, error_label(&result));
            StoreFuture::ready(result)
        }
        Err(pending) => StoreFuture::new(async move {
            let result = bounded(timeout, pending).await;
            record::store_call(operation, store, started, error_label(&result));
            result
        }),
    }
}

fn error_label<T>(result: &Result<T, StoreError>) -> Option<&'static str> {
    result.as_ref().err().map(|error| error.kind().label())
}

/// Waits for a pending store future, bounded by `timeout`, with a panic turned into a store error.
async fn bounded<T>(timeout: Option<Duration>, mut future: StoreFuture<T>) -> Result<T, StoreError> {
    let guarded = std::future::poll_fn(move |cx| {
        catch_unwind(AssertUnwindSafe(|| Pin::new(&mut future).poll(cx)))
            .unwrap_or_else(|_| Poll::Ready(Err(store_panicked())))
    });
    match timeout {
        Some(limit) => tokio::time::timeout(limit, guarded).await.unwrap_or_else(|_| Err(StoreError::timeout())),
        None => guarded.await,
    }
}

/// A store lookup in flight, bounded by the lookup timeout.
pub(crate) struct Lookup {
    future: StoreFuture<Option<TokenRecord>>,
    pub(crate) digest: TokenDigest,
    /// When the request was parsed and the store asked.
    pub(crate) started: record::Started,
    timeout: Option<Duration>,
    // Created on the first pending poll only, so stores that answer at once never touch the timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Lookup {
    pub(crate) fn poll_lookup(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<TokenRecord>, StoreError>> {
        let polled = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.future).poll(cx)));
        match polled {
            Ok(Poll::Ready(result)) => return Poll::Ready(result),
            Ok(Poll::Pending) => {}
            // The store future is unusable after a panic; answer as for any other store failure.
            Err(_) => return Poll::Ready(Err(store_panicked())),
        }
        let Some(timeout) = self.timeout else { return Poll::Pending };
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(StoreError::timeout()))
    }
}

/// Why a request was not authenticated: what the operator sees (metrics, spans). Clients see only the
/// [`Rejection`], which does not tell the invalid-token cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No credentials at all.
    Missing,
    /// Bearer credentials that cannot be a token.
    Malformed,
    /// Well-formed, but no such token.
    Unknown,
    /// The secret does not match.
    Mismatch,
    /// Expired (its own expiry or the maximum age).
    Expired,
    /// A refresh token where an access token is needed, or the other way round.
    WrongKind,
    /// The store failed (or panicked).
    StoreError,
    /// The store did not answer in time.
    StoreTimeout,
}

impl Failure {
    pub(crate) fn rejection(self) -> Rejection {
        match self {
            Failure::Missing => Rejection::MissingCredentials,
            Failure::Malformed | Failure::Unknown | Failure::Mismatch | Failure::Expired | Failure::WrongKind => {
                Rejection::InvalidToken
            }
            Failure::StoreError | Failure::StoreTimeout => Rejection::StoreUnavailable,
        }
    }

    /// The metrics' name for it.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Failure::Missing => Outcome::None,
            Failure::Malformed => Outcome::Malformed,
            Failure::Unknown => Outcome::Unknown,
            Failure::Mismatch => Outcome::Mismatch,
            Failure::Expired => Outcome::Expired,
            Failure::WrongKind => Outcome::WrongKind,
            Failure::StoreError => Outcome::StoreError,
            Failure::StoreTimeout => Outcome::StoreTimeout,
        }
    }

    /// The `reason` label (bounded: these eight names).
    pub(crate) fn reason(self) -> &'static str {
        self.outcome().reason()
    }

    fn of_store_error(error: &StoreError) -> Self {
        match error.kind() {
            crate::store::StoreErrorKind::Timeout => Failure::StoreTimeout,
            _ => Failure::StoreError,
        }
    }
}

pub(crate) enum Started {
    /// Decided without a pending store call.
    Done(Result<AuthenticatedToken, Failure>),
    /// Waiting for the store.
    Pending(Lookup),
}

/// The caller of an endpoint (the device services): `known`, the token a [`TokenAuth`](super::TokenAuth)
/// in front of it put in the extensions, or else the request authenticated here, counted in the same
/// metrics as the layer's requests.
pub(crate) fn authenticate<St: TokenStore>(
    config: &Arc<Config<St>>,
    headers: &HeaderMap,
    known: Option<AuthenticatedToken>,
) -> impl Future<Output = Result<AuthenticatedToken, Failure>> + Send + 'static {
    let started = record::Started::now();
    // Authenticated before (by a layer in front): nothing to do or to count.
    let start = match known {
        Some(token) => Err(token),
        None => Ok(config.start_at(headers, started)),
    };
    let config = Arc::clone(config);
    async move {
        let result = match start {
            Err(known) => return Ok(known),
            Ok(Started::Done(result)) => result,
            Ok(Started::Pending(mut lookup)) => {
                let found = std::future::poll_fn(|cx| lookup.poll_lookup(cx)).await;
                config.finish(&lookup.digest, found)
            }
        };
        config.observe(&tracing::Span::none(), started, &result);
        result
    }
}

impl<St: TokenStore> Config<St> {
    /// Records a decision: the metrics, and the span's fields.
    #[inline]
    pub(crate) fn observe(
        &self,
        span: &tracing::Span,
        started: record::Started,
        result: &Result<AuthenticatedToken, Failure>,
    ) {
        let asked = !matches!(result, Err(Failure::Missing | Failure::Malformed));
        let outcome = result.as_ref().map_or_else(|failure| failure.outcome(), |_| Outcome::Success);
        self.metrics.authenticated(self.store.backend_name(), started, asked.then_some(started), outcome);
        if span.is_disabled() {
            return;
        }
        match result {
            Ok(token) => {
                span.record("user.id", tracing::field::display(token.user_id()));
                span.record("token.id", token.token_id());
                span.record("session.id", token.session_id().get());
                span.record("outcome", "success");
            }
            Err(failure) => {
                span.record("outcome", failure.reason());
            }
        }
    }

    /// A CORS preflight (an `OPTIONS` with `Access-Control-Request-Method`, which browsers send without
    /// credentials) reached the layer: it is answered like any request without credentials, and the
    /// first one is logged with what to change.
    pub(crate) fn preflight_rejected(&self, path: &str) {
        if !self.warned_preflight.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path,
                "a CORS preflight reached TokenAuthLayer and got 401, so browsers will block the real request: \
                 put tower_http::cors::CorsLayer outside (before) the auth layer so it answers preflights"
            );
        }
    }

    /// Parses the header and starts the lookup (`started`: when the request began). Malformed input
    /// never reaches the store.
    #[inline]
    pub(crate) fn start_at(&self, headers: &HeaderMap, started: record::Started) -> Started {
        let (future, digest) = match credentials(headers) {
            BearerCredentials::Missing => return Started::Done(Err(Failure::Missing)),
            BearerCredentials::Malformed => return Started::Done(Err(Failure::Malformed)),
            BearerCredentials::Token(token) => {
                (guard_panic(|| self.store.find(token.id())), TokenDigest::of(token.secret()))
            }
            BearerCredentials::Legacy(legacy) if self.legacy_tokens => {
                let digest = TokenDigest::of(legacy.secret());
                (guard_panic(|| self.store.find_by_digest(&digest)), digest)
            }
            BearerCredentials::Legacy(_) => return Started::Done(Err(Failure::Malformed)),
        };
        match future.try_take_ready() {
            Ok(result) => Started::Done(self.finish(&digest, result)),
            Err(future) => {
                Started::Pending(Lookup { future, digest, started, timeout: self.lookup_timeout, sleep: None })
            }
        }
    }

    /// Decides on the store's answer.
    #[inline]
    pub(crate) fn finish(
        &self,
        digest: &TokenDigest,
        found: Result<Option<TokenRecord>, StoreError>,
    ) -> Result<AuthenticatedToken, Failure> {
        let record = match found {
            Ok(Some(record)) => record,
            Ok(None) => {
                // Same work as a hit, so response time does not reveal which ids exist.
                let _ = std::hint::black_box(DUMMY_DIGEST.ct_eq(digest));
                return Err(Failure::Unknown);
            }
            Err(error) => {
                tracing::warn!(%error, "token store failed; answering 503");
                return Err(Failure::of_store_error(&error));
            }
        };
        if !record.digest.ct_eq(digest) {
            return Err(Failure::Mismatch);
        }
        if record.kind != self.kind {
            return Err(Failure::WrongKind);
        }
        let now = self.clock.now();
        if record.is_expired(now, self.max_age) {
            return Err(Failure::Expired);
        }
        if let Some(last_used) = &self.last_used {
            last_used.record(&*self.store, &record, now, self.lookup_timeout);
        }
        Ok(AuthenticatedToken::new(record))
    }
}
