//! An exhaustive model check of the cache protocol of `src/cache/` with [`stateright`]: every
//! interleaving of a small system, where `tests/cache_*.rs` check sampled real histories.
//!
//! # What is modelled
//!
//! One token in one store: valid, then revoked once (a version counts the commits). Two cache
//! instances, each with:
//!
//! * a cache entry: empty, or the valid record with the epoch it was filled in (`Entry::epoch`);
//! * its shard's generation, its epoch and its lease (`State::fresh_until`, kept as ticks left);
//! * at most one fill in flight: the ticket (generation and epoch, read before the store read), then
//!   the value the store read returned, then the insert if the ticket still matches
//!   (`State::ticket`, the wrapped store's `find`, `State::fill`);
//! * at most one fence in flight (`fence_loop`): its start time and the epoch read first
//!   (`state.epoch()`, `state.now()`), then its ping sent on the channel (`bus.fence()`, which
//!   fails at once without a connection), then completed by the reply (`State::renew(started, epoch,
//!   lease)`: hits until `started + lease`, unless the epoch moved), or dropped: its connection lost,
//!   or timed out after a lease (a late reply is then discarded, as redis-rs matches replies);
//! * its bus channel from the store: up, with a FIFO queue of invalidations and fence replies
//!   delivered one at a time after any delay, so a reply comes after everything queued before its
//!   ping; lost (the queue is gone, the bus has not noticed); down (noticed: `reset`). Reconnecting
//!   `reset`s again, as `RedisBus::run` and `RedisBus::subscribe` do. A `reset`
//!   (`InvalidationSink::reset`) moves the epoch, ends the lease and empties the cache with
//!   `evict_all`, which moves the generation.
//!
//! The revoker (`CachedStore::revoking`) commits the revocation in the store, which queues an
//! invalidation on every channel that is up before it acknowledges, then waits the revocation wait
//! and returns. A request answers from the cache when the lease is fresh and the entry belongs to
//! the current epoch (`State::hit`), or else takes a ticket and fills, answering what the store read
//! said. Hits are one step; the steps of fills, fences, deliveries and faults interleave freely.
//!
//! Property (`always`): in no state after the revoking call returned would a request that starts
//! then be accepted (by a hit, or by a fill that started after the return and read the token
//! valid). And (`sometimes`) a hit can be served, so that the check is not vacuous.
//!
//! # Abstractions
//!
//! * Discrete time, **without clock drift**: one clock, ticking for every instance at once, with
//!   any number of steps in a tick. The lease is 2 ticks, and the revoker waits exactly the lease
//!   after its commit: no margin. That is the tightest wait, and it covers every longer one (a
//!   revoker that waits longer is one that returns later, which the model has). The drift factor
//!   `(1 + ρ)/(1 − ρ)` of `CacheConfig::revocation_wait` is arithmetic on top: the revoker's clock
//!   runs at least `1 − ρ`, a lease at most `1 + ρ`. What the model checks is the ordering argument
//!   under it, and that the wait is tight: one tick less and the checker finds a stale accept.
//! * Time is kept as ages that stop counting where they stop mattering (lease left, a fence's age,
//!   the revoker's wait), so the state space is finite with no horizon: runs of any length.
//! * Generations and epochs are counters as in `State`; the check identifies states that differ only
//!   in their numbering and in the order of the instances ([`representative`]).
//! * The revoker stands outside the instances, like another program writing the store; the local
//!   eviction `revoking` does on its own instance only helps, and is left out.
//! * A fence may start whenever none is in flight (`fence_every` is any period); the store answers
//!   its ping as soon as sent, the least it can cover.
//! * One channel loss in all; one fill per instance at a time; hits any time.
//!
//! # Negative controls
//!
//! A checker that cannot fail proves nothing. Each flaw of [`Flaws`] (and a wait shorter than the
//! lease, or none) breaks one part of the protocol on the same code path, and a test asserts that the
//! checker finds a stale accept (breadth first: the shortest run to it, which it prints).
//!
//! Found while writing it (not kept as a test): with a reset that moves the generation
//! (`evict_all`) but neither the epoch nor the lease, and no epoch compared anywhere, the checker
//! finds no stale accept either. In this protocol the epoch and the end of the lease at a reset are
//! a second line of defence behind the generation.
//!
//! `cargo test --test cache_model -- --nocapture` prints the state counts.

use std::time::Instant;

use stateright::{Checker, HasDiscoveries, Model, Property};

const INSTANCES: usize = 2;
const LEASE: u8 = 2;
const STALE: &str = "no request accepts a token after its revocation returned";
const HIT: &str = "a request is answered from the cache";

/// Deliberate breakages of the protocol, for the negative controls. All off: the real protocol.
#[derive(Clone, Copy, Debug, Default)]
struct Flaws {
    /// A fill inserts whatever its shard's generation did meanwhile (`State::fill` without the
    /// generation check).
    unguarded_fills: bool,
    /// A fence's reply overtakes what was queued on the channel before it.
    unordered_fence: bool,
    /// A reset only empties the cache: the epoch, the lease and the generation stay.
    shallow_reset: bool,
}

#[derive(Clone, Debug)]
struct CacheModel {
    /// How many ticks a revoking call waits after its commit (`CacheConfig::revocation_wait`).
    wait: u8,
    flaws: Flaws,
}

impl CacheModel {
    fn new() -> Self {
        Self { wait: LEASE, flaws: Flaws::default() }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct World {
    /// The token in the store.
    revoked: bool,
    version: u8,
    revoker: Revoker,
    caches: [Cache; INSTANCES],
    /// Channel losses so far (one at most).
    losses: u8,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Revoker {
    Idle,
    /// Committed `waited` ticks ago (counting stops at the wait).
    Waiting {
        waited: u8,
    },
    Returned,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Cache {
    /// The epoch the (valid) record was filled in, if cached.
    entry: Option<u8>,
    generation: u8,
    epoch: u8,
    /// Ticks of lease left (`fresh_until - now`): hits are served while it is not 0.
    lease_left: u8,
    fill: Option<Fill>,
    fence: Option<Fence>,
    channel: Channel,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Fill {
    /// The request started after the revoking call had returned.
    late: bool,
    /// The ticket.
    generation: u8,
    epoch: u8,
    /// What the store read returned: whether the token was valid, and its version.
    read: Option<(bool, u8)>,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Fence {
    /// Ticks since it started (counting stops at the lease).
    age: u8,
    epoch: u8,
    sent: bool,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Channel {
    Up(Queue),
    /// Gone with what it held; the bus has not noticed yet.
    Lost,
    /// Noticed (reset), not reconnected.
    Down,
}

/// A FIFO queue: at most the invalidation of the one revocation and the reply of the one fence in
/// flight, oldest first.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq, PartialOrd, Ord)]
struct Queue([Option<Message>; 2]);

impl Queue {
    fn push(&mut self, message: Message) {
        let free = self.0.iter_mut().find(|m| m.is_none());
        *free.expect("a queue holds an invalidation and a fence reply at most") = Some(message);
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Message {
    Invalidate {
        version: u8,
    },
    /// The reply to the fence in flight.
    Pong,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Tick,
    /// The store commits the revocation and queues the invalidations.
    Revoke,
    /// The revoking call returns.
    Return,
    /// A request on an instance: a hit, or a ticket and a fill in flight.
    Find(usize),
    StoreRead(usize),
    FillDone(usize),
    FenceStart(usize),
    FenceSend(usize),
    FenceTimeout(usize),
    Deliver(usize),
    Lose(usize),
    NoticeLoss(usize),
    Reconnect(usize),
}

impl CacheModel {
    /// `State::hit`.
    fn hit(c: &Cache) -> bool {
        c.lease_left > 0 && c.entry == Some(c.epoch)
    }

    /// A request that starts now (after the revoking call returned) is accepted: from the cache, or
    /// from a store read.
    fn stale_accept(w: &World) -> bool {
        w.revoker == Revoker::Returned
            && w.caches.iter().any(|c| Self::hit(c) || c.fill.is_some_and(|f| f.late && f.read.is_some_and(|r| r.0)))
    }

    /// `InvalidationSink::reset`: a new epoch, no lease, an empty cache (whose generation moves).
    fn reset(&self, c: &mut Cache) {
        if !self.flaws.shallow_reset {
            c.epoch += 1;
            c.lease_left = 0;
            c.generation += 1;
        }
        c.entry = None;
    }
}

impl Model for CacheModel {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        let cache = Cache {
            entry: None,
            generation: 0,
            epoch: 1,
            lease_left: 0,
            fill: None,
            fence: None,
            channel: Channel::Up(Queue::default()),
        };
        vec![World { revoked: false, version: 0, revoker: Revoker::Idle, caches: [cache; INSTANCES], losses: 0 }]
    }

    fn actions(&self, w: &World, actions: &mut Vec<Action>) {
        actions.push(Action::Tick);
        match w.revoker {
            Revoker::Idle => actions.push(Action::Revoke),
            Revoker::Waiting { waited } if waited >= self.wait => actions.push(Action::Return),
            _ => {}
        }
        for (i, c) in w.caches.iter().enumerate() {
            if Self::hit(c) || c.fill.is_none() {
                actions.push(Action::Find(i));
            }
            match c.fill {
                Some(Fill { read: None, .. }) => actions.push(Action::StoreRead(i)),
                Some(Fill { read: Some(_), .. }) => actions.push(Action::FillDone(i)),
                None => {}
            }
            match c.fence {
                None => actions.push(Action::FenceStart(i)),
                Some(Fence { sent: false, .. }) => actions.push(Action::FenceSend(i)),
                Some(Fence { age, .. }) if age >= LEASE => actions.push(Action::FenceTimeout(i)),
                Some(_) => {}
            }
            match &c.channel {
                Channel::Up(queue) => {
                    if queue.0[0].is_some() {
                        actions.push(Action::Deliver(i));
                    }
                    if w.losses == 0 {
                        actions.push(Action::Lose(i));
                    }
                }
                Channel::Lost => actions.push(Action::NoticeLoss(i)),
                Channel::Down => actions.push(Action::Reconnect(i)),
            }
        }
    }

    fn next_state(&self, last: &World, action: Action) -> Option<World> {
        let mut w = *last;
        match action {
            Action::Tick => {
                if let Revoker::Waiting { waited } = &mut w.revoker {
                    *waited = (*waited + 1).min(self.wait);
                }
                for c in &mut w.caches {
                    c.lease_left = c.lease_left.saturating_sub(1);
                    if let Some(fence) = &mut c.fence {
                        fence.age = (fence.age + 1).min(LEASE);
                    }
                }
            }
            Action::Revoke => {
                w.revoked = true;
                w.version += 1;
                for c in &mut w.caches {
                    if let Channel::Up(queue) = &mut c.channel {
                        queue.push(Message::Invalidate { version: w.version });
                    }
                }
                w.revoker = Revoker::Waiting { waited: 0 };
            }
            Action::Return => w.revoker = Revoker::Returned,
            Action::Find(i) => {
                // A hit changes nothing: `stale_accept` and the `HIT` property look at this state.
                if !Self::hit(&w.caches[i]) {
                    let late = w.revoker == Revoker::Returned;
                    let c = &mut w.caches[i];
                    c.fill = Some(Fill { late, generation: c.generation, epoch: c.epoch, read: None });
                }
            }
            Action::StoreRead(i) => {
                let (valid, version) = (!w.revoked, w.version);
                w.caches[i].fill.as_mut()?.read = Some((valid, version));
            }
            Action::FillDone(i) => {
                let c = &mut w.caches[i];
                let fill = c.fill.take()?;
                let (valid, _version) = fill.read?;
                let guarded = self.flaws.unguarded_fills || c.generation == fill.generation;
                if valid && guarded && c.epoch == fill.epoch {
                    c.entry = Some(fill.epoch);
                }
            }
            Action::FenceStart(i) => {
                let c = &mut w.caches[i];
                c.fence = Some(Fence { age: 0, epoch: c.epoch, sent: false });
            }
            Action::FenceSend(i) => {
                let c = &mut w.caches[i];
                let fence = c.fence.as_mut()?;
                match &mut c.channel {
                    Channel::Up(queue) => {
                        fence.sent = true;
                        if self.flaws.unordered_fence {
                            queue.0 = [Some(Message::Pong), queue.0[0]];
                        } else {
                            queue.push(Message::Pong);
                        }
                    }
                    // `RedisBus::fence` without a connection fails at once.
                    _ => c.fence = None,
                }
            }
            Action::FenceTimeout(i) => {
                // Its reply, if still coming, is dropped (redis-rs matches replies to requests).
                let c = &mut w.caches[i];
                c.fence = None;
                if let Channel::Up(queue) = &mut c.channel {
                    queue.0 = queue.0.map(|m| m.filter(|m| *m != Message::Pong));
                    queue.0.sort_by_key(Option::is_none);
                }
            }
            Action::Deliver(i) => {
                let c = &mut w.caches[i];
                let Channel::Up(queue) = &mut c.channel else { return None };
                let [Some(first), second] = queue.0 else { return None };
                queue.0 = [second, None];
                match first {
                    Message::Invalidate { version: _ } => {
                        c.generation += 1;
                        c.entry = None;
                    }
                    Message::Pong => {
                        let fence = c.fence.take()?;
                        // `State::renew`: hits until `started + lease`.
                        if c.epoch == fence.epoch {
                            c.lease_left = c.lease_left.max(LEASE - fence.age);
                        }
                    }
                }
            }
            Action::Lose(i) => {
                w.losses += 1;
                let c = &mut w.caches[i];
                c.channel = Channel::Lost;
                // Its ping is gone with the connection: the fence fails.
                if c.fence.is_some_and(|f| f.sent) {
                    c.fence = None;
                }
            }
            Action::NoticeLoss(i) => {
                let c = &mut w.caches[i];
                c.channel = Channel::Down;
                self.reset(c);
            }
            Action::Reconnect(i) => {
                let c = &mut w.caches[i];
                c.channel = Channel::Up(Queue::default());
                self.reset(c);
            }
        }
        Some(w)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(STALE, |_, w: &World| !Self::stale_accept(w)),
            Property::sometimes(HIT, |_, w: &World| w.caches.iter().any(Self::hit)),
        ]
    }
}

/// The representative of a state's class: states of one class have the same futures, up to the
/// same renaming. Instances are interchangeable (sorted); a generation is only ever compared with the
/// ticket of the fill in flight (counted from it); epochs only grow and are only compared with the
/// current one (current or older).
fn representative(w: &World) -> World {
    let mut w = *w;
    for c in &mut w.caches {
        let base = c.fill.map_or(c.generation, |f| f.generation);
        let epoch = c.epoch;
        let norm = |e: u8| u8::from(e == epoch);
        c.generation -= base;
        c.epoch = 1;
        c.entry = c.entry.map(norm);
        if let Some(fill) = &mut c.fill {
            fill.generation = 0;
            fill.epoch = norm(fill.epoch);
        }
        if let Some(fence) = &mut c.fence {
            fence.epoch = norm(fence.epoch);
        }
    }
    w.caches.sort();
    w
}

/// Prints how much of `model`'s state space `checker` explored.
fn report(name: &str, checker: &impl Checker<CacheModel>, started: Instant) {
    let (states, generated, depth) = (checker.unique_state_count(), checker.state_count(), checker.max_depth());
    println!("{name}: {states} states ({generated} generated, depth {depth}) in {:.2?}", started.elapsed());
}

/// Checks every state of `model` (depth first, one state per class of [`representative`]).
fn check_every_state(name: &str, model: CacheModel) -> impl Checker<CacheModel> {
    let started = Instant::now();
    let checker = model.checker().symmetry_fn(representative).spawn_dfs().join();
    report(name, &checker, started);
    checker
}

/// Asserts that the checker finds a stale accept in `model` (breadth first, stopping at the first),
/// and prints the steps to it.
fn assert_stale_accept_found(name: &str, model: CacheModel) {
    let started = Instant::now();
    let checker = model.checker().finish_when(HasDiscoveries::AnyFailures).spawn_bfs().join();
    report(name, &checker, started);
    let path = checker.assert_any_discovery(STALE);
    println!("{name}: counterexample {:?}", path.into_actions());
}

#[test]
fn no_request_accepts_a_token_after_its_revocation_returned() {
    let checker = check_every_state("correct", CacheModel::new());
    checker.assert_properties();
}

#[test]
fn the_checker_finds_the_stale_accept_when_revocations_do_not_wait() {
    assert_stale_accept_found("no wait", CacheModel { wait: 0, ..CacheModel::new() });
}

#[test]
fn the_checker_finds_the_stale_accept_when_the_wait_is_shorter_than_the_lease() {
    assert_stale_accept_found("wait < lease", CacheModel { wait: LEASE - 1, ..CacheModel::new() });
}

#[test]
fn the_checker_finds_the_stale_accept_when_fills_ignore_the_generation() {
    let flaws = Flaws { unguarded_fills: true, ..Flaws::default() };
    assert_stale_accept_found("unguarded fills", CacheModel { flaws, ..CacheModel::new() });
}

#[test]
fn the_checker_finds_the_stale_accept_when_a_fence_overtakes_the_invalidations() {
    let flaws = Flaws { unordered_fence: true, ..Flaws::default() };
    assert_stale_accept_found("unordered fence", CacheModel { flaws, ..CacheModel::new() });
}

#[test]
fn the_checker_finds_the_stale_accept_when_a_reset_only_empties_the_cache() {
    let flaws = Flaws { shallow_reset: true, ..Flaws::default() };
    assert_stale_accept_found("shallow reset", CacheModel { flaws, ..CacheModel::new() });
}
