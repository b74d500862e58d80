//! What an operator can see: metrics (feature `metrics`), a span per request, and audit events.
//!
//! # Metrics
//!
//! With the `metrics` feature the crate records through the [`metrics`](https://docs.rs/metrics) facade;
//! the application picks the exporter (Prometheus, StatsD, OpenTelemetry...) and installs its recorder
//! **before** building the layer or serving the first request (handles are looked up once per layer and
//! kept). Without the feature none of this code exists. Times are in seconds. Labels are bounded: never a
//! user id, a token id or anything a client chooses.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `tower_token_auth_authenticate_duration_seconds` | histogram | `result` = `success` \| `failure` \| `none`; `reason` (failures) = `malformed` \| `unknown` \| `mismatch` \| `expired` \| `wrong_kind` \| `store_error` \| `store_timeout` | one per request through [`TokenAuthLayer`](crate::TokenAuthLayer) or a [`LogoutService`](crate::LogoutService) not behind one, from the header to the decision (`none`: no credentials) |
//! | `tower_token_auth_store_operation_duration_seconds` | histogram | `operation` = `find` \| `insert` \| `exchange_refresh` \| `list_sessions` \| `revoke_sessions` \| `touch_last_used` \| `find_by_digest`; `store` = [`TokenStore::backend_name`](crate::TokenStore::backend_name) | each store call the crate makes |
//! | `tower_token_auth_store_errors_total` | counter | `operation`, `store`, `kind` = `backend` \| `timeout` \| `corrupt` \| `random` \| `invalid_input` \| `session_limit` \| `not_acknowledged` | failed store calls |
//! | `tower_token_auth_sign_ins_total` | counter | | pairs issued by [`RefreshTokens::issue_pair`](crate::refresh::RefreshTokens::issue_pair) |
//! | `tower_token_auth_logouts_total` | counter | `scope` = `global` \| `local` \| `others` | successful logouts |
//! | `tower_token_auth_logout_revoked_tokens_total` | counter | `scope` | tokens those logouts revoked |
//! | `tower_token_auth_session_revocations_total` | counter | | sessions revoked one by one ([`TokenStoreExt::revoke_session`](crate::TokenStoreExt::revoke_session)) |
//! | `tower_token_auth_revocations_total` | counter | `store`; `sessions` = `all` \| `only` \| `all_except` \| `reuse` | **every** revocation a store of the crate did, whoever asked: logouts, the device list, an app's own handlers (password change, admin), refresh-token reuse |
//! | `tower_token_auth_revoked_tokens_total` | counter | `store`, `sessions` | tokens those revocations deleted |
//! | `tower_token_auth_refresh_exchanges_total` | counter | `outcome` = `exchanged` \| `invalid` \| `reused` \| `error` | refresh-token exchanges |
//! | `tower_token_auth_refresh_reuse_detected_total` | counter | | **the theft signal**: an exchanged refresh token presented again |
//! | `tower_token_auth_forbidden_total` | counter | | `403`s of [`RequireAbilitiesLayer`](crate::ability::RequireAbilitiesLayer) |
//! | `tower_token_auth_unreadable_rows_skipped_total` | counter | `store` | rows a session listing skipped because the store cannot read them (each also logged at `warn` with its id) |
//! | `tower_token_auth_cache_hits_total`, `tower_token_auth_cache_misses_total` | counter | | [`CachedStore`](crate::cache::CachedStore) lookups answered from memory, and those that went to the store |
//! | `tower_token_auth_cache_invalidations_total`, `tower_token_auth_cache_lease_lapses_total`, `tower_token_auth_cache_resets_total`, `tower_token_auth_cache_fence_failures_total` | counter | | invalidations applied, leases that ran out before a fence renewed them, channel losses, failed fences |
//! | `tower_token_auth_cache_revocation_wait_seconds` | histogram | | how long revoking calls through a `CachedStore` waited for the other instances' leases |
//!
//! The revocation counters are kept by the crate's stores themselves (memory, Redis, SQL), in
//! [`TokenStore::revoke_sessions`](crate::TokenStore::revoke_sessions), so a handler that calls the store
//! directly is counted too; a store of your own is counted only for reuse (which the crate sees in the
//! exchange's answer). Sessions a [`SessionLimit`](crate::session::SessionLimit) evicts at login are not
//! counted (the store does not report them).
//!
//! Every metric is described (unit and help text, Prometheus's `# HELP`): see [`describe_metrics`].
//!
//! **Histograms and Prometheus.** `metrics-exporter-prometheus` renders a histogram as a Prometheus
//! *summary* (quantiles computed in each process, which cannot be aggregated across instances) unless it
//! is given buckets. Give the crate's durations buckets, and they are real Prometheus histograms:
//!
//! ```
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Seconds: from 50 µs (an in-memory lookup) to 1 s (a store timing out).
//! const BUCKETS: &[f64] = &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
//! let recorder = PrometheusBuilder::new()
//!     .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), BUCKETS)?
//!     .build_recorder(); // or .install_recorder()? in an app
//! let handle = recorder.handle();
//! metrics::with_local_recorder(&recorder, || {
//!     tower_token_auth::observability::describe_metrics();
//!     metrics::histogram!("tower_token_auth_authenticate_duration_seconds", "result" => "success").record(0.0002);
//! });
//! let text = handle.render();
//! # #[cfg(feature = "metrics")] {
//! assert!(text.contains("# HELP tower_token_auth_authenticate_duration_seconds"));
//! assert!(text.contains("# TYPE tower_token_auth_authenticate_duration_seconds histogram"));
//! assert!(text.contains(r#"tower_token_auth_authenticate_duration_seconds_bucket{result="success",le="0.00025"} 1"#));
//! # }
//! # Ok(())
//! # }
//! ```
//!
//! Alert on `rate(tower_token_auth_refresh_reuse_detected_total[5m]) > 0`, on the share of
//! `result="failure"` with `reason=~"store_.*"` (the store is failing: every such request got `503`), and
//! on a jump of `reason="mismatch"` (someone guessing secrets).
//!
//! # Spans
//!
//! Every request through the layer runs in an `INFO` span `authenticate` (target `tower_token_auth`),
//! with `user.id`, `token.id` and `session.id` recorded once the token is known (OpenTelemetry's `user.id`
//! attribute) and `outcome` (`success`, or the failure reason). The inner service runs inside it, so a
//! handler's logs carry the user. No secret and no digest is ever a field.
//!
//! # Audit events
//!
//! Security events are `INFO` events on the target [`AUDIT_TARGET`] (`tower_token_auth::audit`), so a
//! subscriber can route them to a SIEM apart from the application's logs. Every event has an `event`
//! field naming it, and never a secret or a digest:
//!
//! | `event` | fields | emitted by |
//! |---|---|---|
//! | `sign_in` | `user.id`, `session.id`, `device` | [`RefreshTokens::issue_pair`](crate::refresh::RefreshTokens::issue_pair) |
//! | `logout` | `user.id`, `session.id` (the presenting one), `scope`, `revoked` | [`LogoutService`](crate::LogoutService) |
//! | `session_revoked` | `user.id`, `session.id` | [`TokenStoreExt::revoke_session`](crate::TokenStoreExt::revoke_session) |
//! | `refresh_reuse` | `user.id`, `session.id`, `token.id` (the reused token), `revoked` | [`RefreshTokens::exchange`](crate::refresh::RefreshTokens::exchange) |
//! | `password_change` | `user.id`, `revoked` | the application, with [`password_changed`] |
//!
//! ```
//! // Send audit events to their own file, everything else to stderr (tracing-subscriber):
//! use tracing_subscriber::{filter::filter_fn, prelude::*};
//!
//! let audit_log = std::io::sink; // e.g. a file appender
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer().with_writer(audit_log).with_filter(filter_fn(|meta| {
//!         meta.target() == tower_token_auth::observability::AUDIT_TARGET
//!     })))
//!     .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
//!     .init();
//! ```

use crate::session::SessionId;
use crate::token::{TokenId, UserId};

/// The `tracing` target of audit events.
pub const AUDIT_TARGET: &str = "tower_token_auth::audit";

/// Records the `password_change` audit event: `user_id` changed their password and `revoked` tokens
/// went with it. Call it from your password-change handler after revoking the user's sessions.
pub fn password_changed(user_id: &UserId, revoked: u64) {
    tracing::info!(target: AUDIT_TARGET, event = "password_change", user.id = %user_id, revoked, "password changed; every session revoked");
}

pub(crate) mod audit {
    use super::*;

    pub(crate) fn sign_in(user_id: &UserId, session_id: SessionId, device: &str) {
        tracing::info!(target: AUDIT_TARGET, event = "sign_in", user.id = %user_id, session.id = %session_id, device, "signed in");
    }

    pub(crate) fn logout(user_id: &UserId, session_id: SessionId, scope: &'static str, revoked: u64) {
        tracing::info!(target: AUDIT_TARGET, event = "logout", user.id = %user_id, session.id = %session_id, scope, revoked, "logged out");
    }

    pub(crate) fn session_revoked(user_id: &UserId, session_id: SessionId) {
        tracing::info!(target: AUDIT_TARGET, event = "session_revoked", user.id = %user_id, session.id = %session_id, "session revoked");
    }

    pub(crate) fn refresh_reuse(user_id: &UserId, session_id: SessionId, token_id: TokenId, revoked: u64) {
        tracing::warn!(
            target: AUDIT_TARGET,
            event = "refresh_reuse",
            user.id = %user_id,
            session.id = %session_id,
            token.id = token_id,
            revoked,
            "refresh token reused: a copy of it is in use; its session was revoked"
        );
    }
}

/// Every metric of the crate: name, whether it is a histogram (in seconds) or a counter, and its help.
#[cfg(feature = "metrics")]
const METRICS: [(&str, bool, &str); 20] = [
    ("tower_token_auth_authenticate_duration_seconds", true, "Time from the Authorization header to the decision, per request, by result and failure reason."),
    ("tower_token_auth_store_operation_duration_seconds", true, "Duration of the token store calls the crate makes, by operation and store."),
    ("tower_token_auth_store_errors_total", false, "Failed token store calls, by operation, store and error kind."),
    ("tower_token_auth_sign_ins_total", false, "Access/refresh pairs issued (logins)."),
    ("tower_token_auth_logouts_total", false, "Successful logouts through LogoutService, by scope."),
    ("tower_token_auth_logout_revoked_tokens_total", false, "Tokens revoked by LogoutService logouts, by scope."),
    ("tower_token_auth_session_revocations_total", false, "Sessions revoked one by one (a device revoked from the device list)."),
    ("tower_token_auth_revocations_total", false, "Revocations done by a store, whoever asked (logout, device list, admin, password change, reuse), by store and selection."),
    ("tower_token_auth_revoked_tokens_total", false, "Tokens those revocations deleted, by store and selection."),
    ("tower_token_auth_refresh_exchanges_total", false, "Refresh-token exchanges, by outcome."),
    ("tower_token_auth_refresh_reuse_detected_total", false, "Exchanged refresh tokens presented again: a copy is in use (theft signal)."),
    ("tower_token_auth_forbidden_total", false, "403 answers of RequireAbilitiesLayer."),
    ("tower_token_auth_unreadable_rows_skipped_total", false, "Rows a session listing skipped because the store cannot read them (each logged at warn with its id)."),
    ("tower_token_auth_cache_hits_total", false, "CachedStore lookups answered from memory."),
    ("tower_token_auth_cache_misses_total", false, "CachedStore lookups that went to the store."),
    ("tower_token_auth_cache_invalidations_total", false, "Invalidations a CachedStore applied (from its bus and its own revocations)."),
    ("tower_token_auth_cache_lease_lapses_total", false, "Times a CachedStore's lease had run out before a fence renewed it (hits were off meanwhile)."),
    ("tower_token_auth_cache_resets_total", false, "Times a CachedStore's invalidation channel was lost or re-established (each empties the cache)."),
    ("tower_token_auth_cache_fence_failures_total", false, "CachedStore fences that failed or timed out."),
    ("tower_token_auth_cache_revocation_wait_seconds", true, "How long revoking calls through a CachedStore waited for the other instances' leases."),
];

/// Describes every metric of the crate to the installed recorder (unit and help text: Prometheus's
/// `# HELP` lines). Each layer calls it when it records its first request; call it yourself right
/// after installing the recorder to describe the metrics before any is recorded. Does nothing without
/// the `metrics` feature.
pub fn describe_metrics() {
    #[cfg(feature = "metrics")]
    for (name, histogram, help) in METRICS {
        if histogram {
            metrics::describe_histogram!(name, metrics::Unit::Seconds, help);
        } else {
            metrics::describe_counter!(name, help);
        }
    }
}

/// Counters and histograms; every function is empty without the `metrics` feature.
pub(crate) mod record {
    #[cfg(feature = "metrics")]
    use std::sync::OnceLock;
    #[cfg(feature = "metrics")]
    use std::time::Instant;

    /// How an authentication ended, as the `result` and `reason` labels name it. Named here, not by the
    /// middleware, so that this module imports nothing above it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Outcome {
        Success,
        /// No credentials at all.
        None,
        Malformed,
        Unknown,
        Mismatch,
        Expired,
        WrongKind,
        StoreError,
        StoreTimeout,
    }

    impl Outcome {
        /// The `reason` label of a failure (`none` for missing credentials, `success` for a success).
        pub(crate) fn reason(self) -> &'static str {
            match self {
                Outcome::Success => "success",
                Outcome::None => "none",
                Outcome::Malformed => "malformed",
                Outcome::Unknown => "unknown",
                Outcome::Mismatch => "mismatch",
                Outcome::Expired => "expired",
                Outcome::WrongKind => "wrong_kind",
                Outcome::StoreError => "store_error",
                Outcome::StoreTimeout => "store_timeout",
            }
        }
    }

    /// When something started, for a duration histogram. A zero-sized nothing without `metrics`.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Started(#[cfg(feature = "metrics")] Instant);

    impl Started {
        #[inline]
        pub(crate) fn now() -> Self {
            Self(
                #[cfg(feature = "metrics")]
                Instant::now(),
            )
        }
    }

    /// The layer's metric handles, looked up once (on the first request) and kept, so a request costs
    /// no key hashing.
    #[derive(Default)]
    pub(crate) struct LayerMetrics {
        #[cfg(feature = "metrics")]
        handles: OnceLock<Handles>,
    }

    #[cfg(feature = "metrics")]
    struct Handles {
        success: metrics::Histogram,
        none: metrics::Histogram,
        failures: [metrics::Histogram; 7],
        find: metrics::Histogram,
    }

    #[cfg(feature = "metrics")]
    const FAILURES: [Outcome; 7] = [
        Outcome::Malformed,
        Outcome::Unknown,
        Outcome::Mismatch,
        Outcome::Expired,
        Outcome::WrongKind,
        Outcome::StoreError,
        Outcome::StoreTimeout,
    ];

    impl LayerMetrics {
        #[cfg(feature = "metrics")]
        fn handles(&self, store: &'static str) -> &Handles {
            self.handles.get_or_init(|| {
                super::describe_metrics();
                let histogram = |result: &'static str, reason: &'static str| {
                    if reason.is_empty() {
                        metrics::histogram!("tower_token_auth_authenticate_duration_seconds", "result" => result)
                    } else {
                        metrics::histogram!("tower_token_auth_authenticate_duration_seconds", "result" => result, "reason" => reason)
                    }
                };
                Handles {
                    success: histogram("success", ""),
                    none: histogram("none", ""),
                    failures: FAILURES.map(|outcome| histogram("failure", outcome.reason())),
                    find: metrics::histogram!(
                        "tower_token_auth_store_operation_duration_seconds",
                        "operation" => "find",
                        "store" => store
                    ),
                }
            })
        }

        /// One authentication decided: `outcome` after `started`; `lookup` is when the store call began
        /// (`None` when the store was not asked).
        #[inline]
        pub(crate) fn authenticated(
            &self,
            store: &'static str,
            started: Started,
            lookup: Option<Started>,
            outcome: Outcome,
        ) {
            #[cfg(feature = "metrics")]
            {
                let handles = self.handles(store);
                let histogram = match outcome {
                    Outcome::Success => &handles.success,
                    Outcome::None => &handles.none,
                    failure => &handles.failures[FAILURES.iter().position(|f| *f == failure).unwrap_or(0)],
                };
                let now = Instant::now();
                histogram.record(now.duration_since(started.0));
                if let Some(lookup) = lookup {
                    handles.find.record(now.duration_since(lookup.0));
                    if let failure @ (Outcome::StoreError | Outcome::StoreTimeout) = outcome {
                        let kind = if failure == Outcome::StoreTimeout { "timeout" } else { "backend" };
                        store_error_counter("find", store, kind).increment(1);
                    }
                }
            }
            #[cfg(not(feature = "metrics"))]
            let _ = (store, started, lookup, outcome);
        }
    }

    #[cfg(feature = "metrics")]
    fn store_error_counter(operation: &'static str, store: &'static str, kind: &'static str) -> metrics::Counter {
        metrics::counter!("tower_token_auth_store_errors_total", "operation" => operation, "store" => store, "kind" => kind)
    }

    /// A store call other than the layer's lookup finished; `error` is the failure's `kind` label.
    #[inline]
    pub(crate) fn store_call(
        operation: &'static str,
        store: &'static str,
        started: Started,
        error: Option<&'static str>,
    ) {
        #[cfg(feature = "metrics")]
        {
            metrics::histogram!("tower_token_auth_store_operation_duration_seconds", "operation" => operation, "store" => store)
                .record(started.0.elapsed());
            if let Some(kind) = error {
                store_error_counter(operation, store, kind).increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (operation, store, started, error);
    }

    /// A store revoked `tokens` tokens of the sessions `sessions` (`all`, `only`, `all_except`, or
    /// `reuse` for a refresh token's reuse) of one user: counted where the store does it, so every
    /// caller (the crate's services, an app's handlers, an admin tool) is counted.
    #[inline]
    pub(crate) fn revoked(store: &'static str, sessions: &'static str, tokens: u64) {
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("tower_token_auth_revocations_total", "store" => store, "sessions" => sessions)
                .increment(1);
            metrics::counter!("tower_token_auth_revoked_tokens_total", "store" => store, "sessions" => sessions)
                .increment(tokens);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (store, sessions, tokens);
    }

    macro_rules! counter_fns {
        ($($(#[$doc:meta])* $fn:ident => $name:literal $(, $label:literal: $arg:ident)?;)*) => {$(
            $(#[$doc])*
            #[inline]
            pub(crate) fn $fn($($arg: &'static str,)? by: u64) {
                #[cfg(feature = "metrics")]
                metrics::counter!($name $(, $label => $arg)?).increment(by);
                #[cfg(not(feature = "metrics"))]
                let _ = ($($arg,)? by);
            }
        )*};
    }

    counter_fns! {
        sign_ins => "tower_token_auth_sign_ins_total";
        logouts => "tower_token_auth_logouts_total", "scope": scope;
        logout_revoked_tokens => "tower_token_auth_logout_revoked_tokens_total", "scope": scope;
        session_revocations => "tower_token_auth_session_revocations_total";
        refresh_exchanges => "tower_token_auth_refresh_exchanges_total", "outcome": outcome;
        refresh_reuse_detected => "tower_token_auth_refresh_reuse_detected_total";
        forbidden => "tower_token_auth_forbidden_total";
        /// Only the SQL store skips rows it cannot read.
        #[cfg(feature = "sql")]
        unreadable_rows_skipped => "tower_token_auth_unreadable_rows_skipped_total", "store": store;
    }
}
