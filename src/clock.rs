//! Injectable time source, so expiry can be tested without sleeping.
//!
//! Everything in this crate that asks "what time is it?" goes through a [`Clock`]. Production code uses
//! [`SystemClock`]; tests use [`ManualClock`] and move time forward by hand.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tower_token_auth::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
//! let before = clock.now();
//! clock.advance(Duration::from_secs(3600));
//! assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(3600));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real clock: [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Clone)]
pub struct ManualClock {
    nanos_since_epoch: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at `now`. Times before the Unix epoch are clamped to the epoch.
    pub fn new(now: SystemTime) -> Self {
        Self { nanos_since_epoch: Arc::new(AtomicU64::new(to_nanos(now))) }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos_since_epoch.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: SystemTime) {
        self.nanos_since_epoch.store(to_nanos(now), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    /// A clock stopped at the current system time.
    fn default() -> Self {
        Self::new(SystemTime::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.nanos_since_epoch.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

/// Whole seconds since the Unix epoch (0 for earlier times): the one shape in which the crate's
/// [serde](https://serde.rs) implementations write times (a JSON integer), as Laravel's `timestamp`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_token_auth::clock::unix_seconds;
///
/// assert_eq!(unix_seconds(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_999)), 1_700_000_000);
/// ```
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

fn to_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new(SystemTime::UNIX_EPOCH);
        let b = a.clone();
        a.advance(Duration::from_secs(5));
        assert_eq!(b.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(5));
    }

    #[test]
    fn manual_clock_clamps_times_before_epoch() {
        let c = ManualClock::new(SystemTime::UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(c.now(), SystemTime::UNIX_EPOCH);
    }
}
