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
//! | `tower_token_auth_store_errors_total` | counter | `operation`, `store`, `kind` = `backend` \| `timeout` \| `corrupt` \| `random` \| `invalid_input` \| `session_limit` | failed store calls |
//! | `tower_token_auth_sign_ins_total` | counter | | pairs issued by [`RefreshTokens::issue_pair`](crate::refresh::RefreshTokens::issue_pair) |
//! | `tower_token_auth_logouts_total` | counter | `scope` = `global` \| `local` \| `others` | successful logouts |
//! | `tower_token_auth_logout_revoked_tokens_total` | counter | `scope` | tokens those logouts revoked |
//! | `tower_token_auth_session_revocations_total` | counter | | sessions revoked one by one ([`TokenStoreExt::revoke_session`](crate::TokenStoreExt::revoke_session)) |
//! | `tower_token_auth_refresh_exchanges_total` | counter | `outcome` = `exchanged` \| `invalid` \| `reused` \| `error` | refresh-token exchanges |
//! | `tower_token_auth_refresh_reuse_detected_total` | counter | | **the theft signal**: an exchanged refresh token presented again |
//! | `tower_token_auth_forbidden_total` | counter | | `403`s of [`RequireAbilitiesLayer`](crate::ability::RequireAbilitiesLayer) |
//! | `tower_token_auth_unreadable_rows_skipped_total` | counter | `store` | rows a session listing skipped because the store cannot read them (each also logged at `warn` with its id) |
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

/// Counters and histograms; every function is empty without the `metrics` feature.
pub(crate) mod record {
    #[cfg(feature = "metrics")]
    use std::sync::OnceLock;
    #[cfg(feature = "metrics")]
    use std::time::Instant;

    use crate::auth::verify::Failure;
    use crate::store::StoreError;

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
    const FAILURES: [Failure; 7] = [
        Failure::Malformed,
        Failure::Unknown,
        Failure::Mismatch,
        Failure::Expired,
        Failure::WrongKind,
        Failure::StoreError,
        Failure::StoreTimeout,
    ];

    impl LayerMetrics {
        #[cfg(feature = "metrics")]
        fn handles(&self, store: &'static str) -> &Handles {
            self.handles.get_or_init(|| {
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
                    failures: FAILURES.map(|f| histogram("failure", f.reason())),
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
            outcome: Result<(), Failure>,
        ) {
            #[cfg(feature = "metrics")]
            {
                let handles = self.handles(store);
                let histogram = match outcome {
                    Ok(()) => &handles.success,
                    Err(Failure::Missing) => &handles.none,
                    Err(failure) => &handles.failures[FAILURES.iter().position(|f| *f == failure).unwrap_or(0)],
                };
                let now = Instant::now();
                histogram.record(now.duration_since(started.0));
                if let Some(lookup) = lookup {
                    handles.find.record(now.duration_since(lookup.0));
                    if let Err(failure @ (Failure::StoreError | Failure::StoreTimeout)) = outcome {
                        let kind = if failure == Failure::StoreTimeout { "timeout" } else { "backend" };
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

    /// A store call other than the layer's lookup finished.
    #[inline]
    pub(crate) fn store_call<T>(
        operation: &'static str,
        store: &'static str,
        started: Started,
        result: &Result<T, StoreError>,
    ) {
        #[cfg(feature = "metrics")]
        {
            metrics::histogram!("tower_token_auth_store_operation_duration_seconds", "operation" => operation, "store" => store)
                .record(started.0.elapsed());
            if let Err(error) = result {
                store_error_counter(operation, store, error_kind(error)).increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (operation, store, started, result);
    }

    #[cfg(feature = "metrics")]
    fn error_kind(error: &StoreError) -> &'static str {
        use crate::store::StoreErrorKind;
        match error.kind() {
            StoreErrorKind::Backend => "backend",
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::Random => "random",
            StoreErrorKind::InvalidInput => "invalid_input",
            StoreErrorKind::SessionLimit => "session_limit",
        }
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
        unreadable_rows_skipped => "tower_token_auth_unreadable_rows_skipped_total", "store": store;
    }
}
