//! The cache's memory: sharded entries, the generation that guards fills, the epoch that a reset
//! bumps, and the lease that fences renew.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::bus::{Invalidation, InvalidationSink};
use super::stats::Stats;
use crate::token::{TokenId, TokenRecord, UserId};

const SHARDS: usize = 64;

/// What a fill must still match when it inserts: the shard's generation and the cache's epoch, both
/// read before the store read started.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket {
    epoch: u64,
    generation: u64,
}

struct Entry {
    record: TokenRecord,
    epoch: u64,
    filled_at: u64,
}

#[derive(Default)]
struct Shard {
    /// Bumped by every invalidation that touches this shard; a fill that read it before is dropped.
    generation: u64,
    entries: HashMap<TokenId, Entry>,
    hits: u64,
    misses: u64,
}

pub(super) struct State {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    max_entry_age: u64,
    base: Instant,
    /// Bumped by a reset (invalidation channel lost or re-established): older entries and tickets
    /// are dead.
    epoch: AtomicU64,
    /// Hits are served while `now < fresh_until` (nanoseconds since `base`; 0: never).
    fresh_until: AtomicU64,
    /// Serializes resets with lease renewals, so a fence that started before a reset never renews.
    lease: Mutex<()>,
    pub(super) stats: Stats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard lock leaves a consistent map (every critical section is a few
    // map operations); keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(super) fn new(capacity: usize, max_entry_age: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            max_entry_age: nanos(max_entry_age),
            base: Instant::now(),
            epoch: AtomicU64::new(1),
            fresh_until: AtomicU64::new(0),
            lease: Mutex::new(()),
            stats: Stats::default(),
        }
    }

    /// Nanoseconds since the cache started, on the monotonic clock (tokio's, so paused time works).
    pub(super) fn now(&self) -> u64 {
        nanos(self.base.elapsed()).max(1)
    }

    fn shard(&self, id: TokenId) -> &Mutex<Shard> {
        // Token ids of the Redis store keep their bucket in the low bits; mix so that any id
        // layout spreads.
        let mixed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.shards[(mixed >> 58) as usize % SHARDS]
    }

    pub(super) fn lease_is_fresh(&self) -> bool {
        self.now() < self.fresh_until.load(Ordering::Acquire)
    }

    /// The cached record of `id`, if the lease is fresh and the entry belongs to the current epoch.
    pub(super) fn hit(&self, id: TokenId) -> Option<TokenRecord> {
        let now = self.now();
        let fresh = now < self.fresh_until.load(Ordering::Acquire);
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut shard = lock(self.shard(id));
        let found = match shard.entries.get(&id) {
            Some(e) if fresh && e.epoch == epoch && now.saturating_sub(e.filled_at) < self.max_entry_age => {
                Some(e.record.clone())
            }
            _ => None,
        };
        if found.is_some() {
            shard.hits += 1;
        } else {
            shard.misses += 1;
        }
        found
    }

    /// Read before the store read starts; [`fill`](Self::fill) inserts only if nothing touched the
    /// shard in between.
    pub(super) fn ticket(&self, id: TokenId) -> Ticket {
        let shard = lock(self.shard(id));
        Ticket { epoch: self.epoch.load(Ordering::Acquire), generation: shard.generation }
    }

    pub(super) fn fill(&self, ticket: Ticket, record: TokenRecord) {
        let now = self.now();
        let mut shard = lock(self.shard(record.id));
        if shard.generation != ticket.generation || self.epoch.load(Ordering::Acquire) != ticket.epoch {
            self.stats.fills_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&record.id) {
            // Full: drop the entry filled longest ago (a scan of one shard, only on a full shard's fill).
            if let Some(oldest) = shard.entries.iter().min_by_key(|(_, e)| e.filled_at).map(|(id, _)| *id) {
                shard.entries.remove(&oldest);
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        shard.entries.insert(record.id, Entry { record, epoch: ticket.epoch, filled_at: now });
    }

    pub(super) fn evict_tokens(&self, ids: &[TokenId]) {
        for &id in ids {
            let mut shard = lock(self.shard(id));
            shard.generation += 1;
            shard.entries.remove(&id);
        }
    }

    pub(super) fn evict_user(&self, user: &UserId) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.generation += 1;
            shard.entries.retain(|_, e| e.record.user_id != *user);
        }
    }

    pub(super) fn evict_all(&self) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.generation += 1;
            shard.entries.clear();
        }
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A fence that started at `started` (see [`now`](Self::now)) in epoch `epoch` completed: hits
    /// may be served until `started + lease`, unless a reset came in between.
    pub(super) fn renew(&self, started: u64, epoch: u64, lease: Duration) {
        let _guard = lock(&self.lease);
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        let until = started.saturating_add(nanos(lease));
        let before = self.fresh_until.fetch_max(until, Ordering::AcqRel);
        if before <= started {
            self.stats.lease_lapsed();
        }
    }

    /// Hits, misses: summed over the shards (each counted under its shard's lock, which the lookup
    /// takes anyway).
    pub(super) fn hits_and_misses(&self) -> (u64, u64) {
        self.shards.iter().map(|s| lock(s)).fold((0, 0), |(h, m), s| (h + s.hits, m + s.misses))
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }
}

impl InvalidationSink for State {
    fn invalidate(&self, what: Invalidation) {
        self.stats.invalidated();
        match what {
            Invalidation::Tokens(ids) => self.evict_tokens(&ids),
            Invalidation::User(user) => self.evict_user(&user),
            Invalidation::Everything => self.evict_all(),
        }
    }

    fn reset(&self) {
        {
            let _guard = lock(&self.lease);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.fresh_until.store(0, Ordering::Release);
        }
        self.stats.reset();
        self.evict_all();
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
