//! `SystemTime` <-> the naive, second-precision timestamps Laravel writes.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};

/// The range of naive timestamps a backend can hold; values outside are clamped into it.
#[derive(Clone, Copy, Debug)]
pub(super) struct TimeRange {
    min: NaiveDateTime,
    max: NaiveDateTime,
}

impl TimeRange {
    /// Years 1 to 9999: PostgreSQL holds more, but SQLite compares timestamps as text, which only sorts
    /// correctly with four-digit years.
    pub(super) fn wide() -> Self {
        Self { min: naive(1, 1, 1, 0, 0, 0), max: naive(9999, 12, 31, 23, 59, 59) }
    }

    /// MySQL `TIMESTAMP`: 1970-01-01 00:00:01 to 2038-01-19 03:14:07 (session time zone `+00:00`).
    pub(super) fn mysql_timestamp() -> Self {
        Self { min: naive(1970, 1, 1, 0, 0, 1), max: naive(2038, 1, 19, 3, 14, 7) }
    }
}

fn naive(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d).and_then(|date| date.and_hms_opt(h, mi, s)).expect("valid constant date")
}

/// Whole seconds since the Unix epoch, rounded down (also before the epoch), saturating.
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            (-secs).saturating_sub(i64::from(d.subsec_nanos() > 0))
        }
    }
}

/// `t` as the naive wall-clock time at `offset`, truncated to whole seconds and clamped into `range`.
pub(super) fn to_naive(t: SystemTime, offset: FixedOffset, range: TimeRange) -> NaiveDateTime {
    let local = unix_seconds(t).saturating_add(i64::from(offset.local_minus_utc()));
    let naive = match DateTime::from_timestamp(local, 0) {
        Some(dt) => dt.naive_utc(),
        None if local < 0 => range.min,
        None => range.max,
    };
    naive.clamp(range.min, range.max)
}

/// The instant a naive wall-clock time at `offset` denotes.
pub(super) fn from_naive(naive: NaiveDateTime, offset: FixedOffset) -> SystemTime {
    // Sub-second parts are dropped: Laravel writes whole seconds, and PostgreSQL `timestamp(0)` rounds.
    let secs = naive.and_utc().timestamp() - i64::from(offset.local_minus_utc());
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    let shifted = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    };
    // Only reachable on platforms whose SystemTime cannot hold year 1..9999; fail towards "long ago".
    shifted.unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn utc_round_trip_at_second_precision() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let t = at(1_700_000_000) + Duration::from_millis(999);
        let n = to_naive(t, utc, TimeRange::wide());
        assert_eq!(n.to_string(), "2023-11-14 22:13:20");
        assert_eq!(from_naive(n, utc), at(1_700_000_000));
    }

    #[test]
    fn offset_shifts_the_wall_clock() {
        let plus2 = FixedOffset::east_opt(2 * 3600).unwrap();
        let n = to_naive(at(0), plus2, TimeRange::wide());
        assert_eq!(n.to_string(), "1970-01-01 02:00:00");
        assert_eq!(from_naive(n, plus2), at(0));
    }

    #[test]
    fn before_the_epoch_rounds_down() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let t = SystemTime::UNIX_EPOCH - Duration::from_millis(1500);
        let n = to_naive(t, utc, TimeRange::wide());
        assert_eq!(n.to_string(), "1969-12-31 23:59:58");
        assert_eq!(from_naive(n, utc), SystemTime::UNIX_EPOCH - Duration::from_secs(2));
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let far = at(100 * 365 * 86400);
        assert_eq!(to_naive(far, utc, TimeRange::mysql_timestamp()).to_string(), "2038-01-19 03:14:07");
        assert_eq!(to_naive(at(0), utc, TimeRange::mysql_timestamp()).to_string(), "1970-01-01 00:00:01");
        let very_far = at(u64::MAX / 4);
        assert_eq!(to_naive(very_far, utc, TimeRange::wide()).to_string(), "9999-12-31 23:59:59");
    }
}
