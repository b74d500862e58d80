//! What the cache counts, and its `metrics` facade output (feature `metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub(super) struct Stats {
    pub(super) fills_dropped: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) invalidations: AtomicU64,
    pub(super) resets: AtomicU64,
    pub(super) lease_lapses: AtomicU64,
    pub(super) fence_failures: AtomicU64,
    pub(super) revocation_waits: AtomicU64,
    pub(super) revocation_wait_nanos: AtomicU64,
}

impl Stats {
    pub(super) fn lease_lapsed(&self) {
        self.lease_lapses.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_token_auth_cache_lease_lapses_total").increment(1);
    }

    pub(super) fn invalidated(&self) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_token_auth_cache_invalidations_total").increment(1);
    }

    pub(super) fn reset(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_token_auth_cache_resets_total").increment(1);
    }

    pub(super) fn fence_failed(&self) {
        self.fence_failures.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_token_auth_cache_fence_failures_total").increment(1);
    }

    pub(super) fn waited(&self, wait: Duration) {
        self.revocation_waits.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.revocation_wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::histogram!("tower_token_auth_cache_revocation_wait_seconds").record(wait.as_secs_f64());
    }
}

/// A snapshot of a [`CachedStore`](super::CachedStore)'s counters, since it was created.
///
/// With feature `metrics`, the cache also reports to the `metrics` facade:
/// the counters `tower_token_auth_cache_hits_total`, `tower_token_auth_cache_misses_total` (each `find`),
/// `tower_token_auth_cache_invalidations_total`, `tower_token_auth_cache_lease_lapses_total`,
/// `tower_token_auth_cache_resets_total`, `tower_token_auth_cache_fence_failures_total`, and the histogram
/// `tower_token_auth_cache_revocation_wait_seconds` (all described by
/// [`describe_metrics`](crate::observability::describe_metrics)); `CacheStats::record_gauges` (feature `metrics`) adds the
/// current entries and the other counts as gauges when you call it (from your scrape handler).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that went to the store (not cached, lease not fresh, or entry too old).
    pub misses: u64,
    /// Fills not inserted because an invalidation or a reset came while the store read was in flight.
    pub fills_dropped: u64,
    /// Entries dropped to stay within the capacity.
    pub evictions: u64,
    /// Invalidations applied (from the bus and from this instance's own revocations).
    pub invalidations: u64,
    /// Times the invalidation channel was lost or re-established (each empties the cache).
    pub resets: u64,
    /// Times a fence renewed a lease that had already run out.
    pub lease_lapses: u64,
    /// Fences that failed or timed out.
    pub fence_failures: u64,
    /// Revoking calls that waited for the other instances' leases.
    pub revocation_waits: u64,
    /// Their total wait.
    pub revocation_wait: Duration,
    /// Entries held now.
    pub entries: u64,
}

impl CacheStats {
    /// Reports the counters as gauges to the `metrics` facade (`tower_token_auth_cache_*`).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn record_gauges(&self) {
        let all = [
            ("tower_token_auth_cache_entries", self.entries),
            ("tower_token_auth_cache_invalidations", self.invalidations),
            ("tower_token_auth_cache_resets", self.resets),
            ("tower_token_auth_cache_lease_lapses", self.lease_lapses),
            ("tower_token_auth_cache_fills_dropped", self.fills_dropped),
            ("tower_token_auth_cache_evictions", self.evictions),
        ];
        for (name, value) in all {
            metrics::gauge!(name).set(value as f64);
        }
    }
}

pub(super) fn hit(hit: bool) {
    #[cfg(feature = "metrics")]
    if hit {
        metrics::counter!("tower_token_auth_cache_hits_total").increment(1);
    } else {
        metrics::counter!("tower_token_auth_cache_misses_total").increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = hit;
}
