//! Metrics recorded by a real recorder over a scripted flow (the audit events and spans of the same flow
//! are checked in `tests/audit.rs`, a process of its own: `tracing` caches callsite interest globally,
//! so a scoped subscriber must not share a process with other tests).

#![cfg(feature = "metrics")]

mod support;

use std::collections::HashMap;

use support::flow::scripted_flow;

#[cfg(feature = "metrics")]
#[test]
fn metrics_count_the_flow_with_bounded_labels() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::MetricKind;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(scripted_flow()));

    let mut histograms: HashMap<String, usize> = HashMap::new();
    let mut counters: HashMap<String, u64> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        for label in &labels {
            assert!(!label.contains('|') && !label.starts_with("user") && !label.starts_with("token"), "{label}");
        }
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        match (kind, value) {
            (MetricKind::Histogram, DebugValue::Histogram(samples)) => {
                assert!(samples.iter().all(|s| s.into_inner() >= 0.0 && s.into_inner() < 5.0), "{name}: seconds");
                histograms.insert(name, samples.len());
            }
            (MetricKind::Counter, DebugValue::Counter(n)) => {
                counters.insert(name, n);
            }
            other => panic!("unexpected {name}: {other:?}"),
        }
    }
    let auth =
        |labels: &str| histograms.get(&format!("tower_token_auth_authenticate_duration_seconds{{{labels}}}")).copied();
    // The 2 requests through the layer and the logout, which authenticates on its own.
    assert_eq!(auth("result=success"), Some(3), "{histograms:#?}");
    assert_eq!(auth("result=none"), Some(1));
    assert_eq!(auth("reason=expired,result=failure"), Some(1));
    assert_eq!(auth("reason=mismatch,result=failure"), Some(1));
    assert_eq!(auth("reason=unknown,result=failure").unwrap_or(0), 0, "only what happened is counted");
    let find = histograms.get("tower_token_auth_store_operation_duration_seconds{operation=find,store=memory}");
    assert_eq!(find, Some(&5), "the store was asked for the 4 requests with a token and the logout");

    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert_eq!(counter("tower_token_auth_sign_ins_total{}"), 2, "{counters:#?}");
    assert_eq!(counter("tower_token_auth_refresh_exchanges_total{outcome=exchanged}"), 1);
    assert_eq!(counter("tower_token_auth_refresh_exchanges_total{outcome=reused}"), 1);
    assert_eq!(counter("tower_token_auth_refresh_reuse_detected_total{}"), 1);
    assert_eq!(counter("tower_token_auth_logouts_total{scope=global}"), 1);
    assert_eq!(counter("tower_token_auth_logout_revoked_tokens_total{scope=global}"), 3);
    let store_ops = ["insert", "exchange_refresh", "revoke_sessions"].map(|op| {
        histograms
            .get(&format!("tower_token_auth_store_operation_duration_seconds{{operation={op},store=memory}}"))
            .copied()
    });
    assert_eq!(store_ops, [Some(2), Some(2), Some(1)], "{histograms:#?}");
    // Every revocation, counted where the store did it: the logout and the reuse.
    assert_eq!(counter("tower_token_auth_revocations_total{sessions=all,store=memory}"), 1);
    assert_eq!(counter("tower_token_auth_revoked_tokens_total{sessions=all,store=memory}"), 3);
    assert_eq!(counter("tower_token_auth_revocations_total{sessions=reuse,store=memory}"), 1);
    assert_eq!(counter("tower_token_auth_revoked_tokens_total{sessions=reuse,store=memory}"), 2);
}

/// An app's own handlers (log out others, an admin revoking a user, a password change) call the store
/// directly: those revocations are counted too, and the Prometheus text describes every metric and has
/// real histograms once given buckets.
#[test]
fn revocations_from_app_handlers_are_counted_and_every_metric_is_described() {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use tower_token_auth::refresh::{NewPair, RefreshTokens};
    use tower_token_auth::{MemoryStore, Sessions, TokenAuthLayer, TokenStore, TokenStoreExt};

    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &[0.001, 0.01, 1.0])
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            tower_token_auth::observability::describe_metrics();
            let store = MemoryStore::new();
            let tokens = RefreshTokens::new(store.clone());
            let mut pairs = Vec::new();
            for device in ["laptop", "phone", "tablet"] {
                pairs.push(tokens.issue_pair(NewPair::new(7u64).name(device)).await.unwrap());
            }
            // Log out other devices, from a handler of the app's own.
            let others = Sessions::AllExcept(pairs[0].session_id());
            assert_eq!(store.revoke_sessions(&7u64.into(), others).await.unwrap(), 4);
            // An admin revokes one session, then everything (a password change does the same).
            let fresh = tokens.issue_pair(NewPair::new(7u64)).await.unwrap();
            assert!(store.revoke_session(&7u64.into(), fresh.session_id()).await.unwrap());
            assert_eq!(store.revoke_all_for_user(&7u64.into()).await.unwrap(), 2);
            // The layer's first request describes the metrics too; it needs only to exist here.
            let _ = TokenAuthLayer::new(store);
        })
    });
    let text = handle.render();
    for line in [
        r#"tower_token_auth_revocations_total{store="memory",sessions="all_except"} 1"#,
        r#"tower_token_auth_revoked_tokens_total{store="memory",sessions="all_except"} 4"#,
        r#"tower_token_auth_revocations_total{store="memory",sessions="only"} 1"#,
        r#"tower_token_auth_revocations_total{store="memory",sessions="all"} 1"#,
        r#"tower_token_auth_revoked_tokens_total{store="memory",sessions="all"} 2"#,
        "# TYPE tower_token_auth_revocations_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
    }
    for name in [
        "tower_token_auth_revocations_total",
        "tower_token_auth_sign_ins_total",
        "tower_token_auth_session_revocations_total",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{name} is not described:\n{text}");
    }
}
