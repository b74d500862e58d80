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
}
