//! [`RedisStore`]: sessions and tokens in Redis, shared by every instance of a service, on a single
//! primary, on a primary found through Redis Sentinel, or on Redis Cluster (feature `redis`).
//!
//! ```no_run
//! use std::convert::Infallible;
//! use http::{header::AUTHORIZATION, Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_token_auth::store::redis::RedisStore;
//! use tower_token_auth::{NewToken, TokenAuthLayer, TokenStore, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // One primary, or a Redis Cluster from seed nodes: `RedisStore::connect_cluster(&[..])`, or a
//! // comma-separated list of URLs here.
//! let store = RedisStore::connect("redis://127.0.0.1:6379/0").await?.key_prefix("myapp:tokens:");
//! let issued = store.issue(NewToken::access(42u64).name("laptop")).await?;
//! let bearer = format!("Bearer {}", issued.plain_text.expose());
//!
//! let mut api = ServiceBuilder::new()
//!     .layer(TokenAuthLayer::new(store.clone()))
//!     .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
//! let request = Request::get("/").header(AUTHORIZATION, &bearer).body(())?;
//! assert_eq!(api.ready().await?.call(request).await?.status(), StatusCode::OK); // one HMGET
//!
//! // Log out everywhere: every instance using this Redis rejects the token from now on.
//! assert_eq!(store.revoke_all_for_user(&42u64.into()).await?, 1);
//! let request = Request::get("/").header(AUTHORIZATION, &bearer).body(())?;
//! assert_eq!(api.ready().await?.call(request).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```
//!
//! # Data model
//!
//! A session (a login: its access token and its refresh token) is **one hash**. A user's keys all
//! carry the user's *bucket* as their Redis Cluster hash tag: `bucket = crc32(user id) mod 16384`.
//! Every key starts with the [key prefix](RedisStore::key_prefix) (default `"tta:"`), written `{p}`:
//!
//! | key | type | content |
//! |---|---|---|
//! | `{p}{b}:s:{seq}` | hash | one session: `u` user, `n` name, `ab` abilities (JSON), `sid` session id, `c` login time, `v` version; per token (`a` access, `r` refresh): `ad`/`rd` digest (64 hex), `ae`/`re` expiry, `ac`/`rc` issue time, `al`/`rl` last use; `fam` the digest of the session's refresh family key (64 hex; see [`crate::refresh`]); `rot`, only with a reuse interval, the refresh digests exchanged within it (`hex:ms,...`, at most `keep_rotated`) |
//! | `{p}{b}:u:{user}` | sorted set | the user's sessions (members: `seq` zero-padded to 15 digits), scored by login time |
//! | `{p}{b}:x:{user}` | sorted set | the same members, scored by when their session key expires (`inf`: never) |
//! | `{p}{b}:n` | string | the bucket's session counter (`INCR`); never expires |
//!
//! Times are unix milliseconds. **Token ids** carry their place: `id = seq << 15 | kind << 14 | b`
//! (`kind` 0 access, 1 refresh), so [`find`](TokenStore::find) goes from the id in `{id}|{secret}` to
//! its session key with no lookup and reads the token with **one `HMGET`**. A session's id is the id
//! of its refresh token (or of its access token when it has none). Ids stay decimal `u64`s of the
//! Sanctum format; a bucket allocates 2^49 sessions, and ids pass 2^53 once a bucket's counter passes
//! 2^38: Lua never sees an id as a number (members and ids travel as strings), so every id works.
//!
//! Each session key expires by itself (`PEXPIREAT`) at the latest expiry of its tokens plus the
//! [expiry grace](RedisStore::expiry_grace) (never, if one of them never expires). The index keys
//! expire with their longest-lived session, and every script that touches an index first drops the
//! members whose session has expired (`ZRANGEBYSCORE` on the `x` index, by the server's clock), as
//! does [`prune_expired`](TokenStore::prune_expired): dead ids do not pile up.
//!
//! # Atomicity
//!
//! Every script declares every key it touches, all in one bucket (one slot), and Lua never compares a
//! digest:
//!
//! * **Login** ([`insert`](TokenStore::insert)): one script allocates the session number and reads
//!   the user's live session count and oldest sessions; a second stores the session, its index
//!   entries and the [session limit](crate::session::SessionLimit)'s evictions, after checking that
//!   the oldest sessions are still the ones read (otherwise it starts again).
//! * **Refresh** ([`exchange_refresh`](TokenStore::exchange_refresh)): one `HMGET` reads the session;
//!   [`RefreshExchange::decide`] decides in Rust (constant-time compares); a compare-and-set script
//!   applies the rotation (or the reuse revocation) only if the session's version `v` is unchanged,
//!   and the exchange decides again otherwise. So two presentations of one token have one winner, and
//!   an exchange that loses to a logout finds nothing (`Invalid`).
//! * **Logout** ([`revoke_sessions`](TokenStore::revoke_sessions)): the user's sessions are revoked in
//!   pages of 100 sessions, one short script each (owner-checked), from the oldest to the newest
//!   login at the time of the call, until none is left. No script runs long however many sessions a
//!   user holds ([`SessionLimit::unlimited`](crate::session::SessionLimit::unlimited)), and when the
//!   call returns, every session that existed when it began is gone: an exchange in between rotates
//!   a session still listed (so its new pair goes with it) or finds it gone. Logins during a logout
//!   may survive it, as if they came after.
//!
//! # Redis Cluster
//!
//! [`RedisStore::connect_cluster`] (or a comma-separated list of seed URLs in
//! [`connect`](RedisStore::connect)) runs the same code and the same scripts through redis-rs's async
//! cluster client. `MOVED` and `ASK` are followed (`ASKING` travels in one pipeline with its command,
//! which redis-rs alone does not guarantee on a shared connection); a script on a slot being migrated
//! gets `TRYAGAIN` until that slot's keys have moved, and is retried within the command timeout. A
//! failed primary is an error (the layer answers `503`) until a replica is promoted, then requests
//! succeed again without a restart. Limits:
//!
//! * A user's sessions live in one slot, so one user's traffic goes to one primary. Users spread over
//!   16,384 buckets, as evenly as the cluster's slots.
//! * The bucket count is part of every token id: it cannot change without invalidating every token.
//! * Replication is asynchronous, in a cluster as with a single primary and its replicas: a logout
//!   acknowledged just before its primary fails can be lost with it, and the promoted replica then
//!   still knows the revoked tokens, unless the store [waits for replicas](#durable-revocations)
//!   (`WAIT` on the primary that owns the user's slot). By default
//!   (`cluster-require-full-coverage yes`) the whole cluster refuses
//!   requests for the second or so between a primary being marked failed and its replica taking
//!   over; the store retries those within the command timeout.
//! * A single-primary deployment moves to a cluster by copying every key under the prefix
//!   (`redis-cli --cluster import`, which keeps expiries): the key names already carry their hash
//!   tags, so every token keeps working. Copy the bucket counters (`{p}{b}:n`) too: a counter that
//!   starts again at 1 makes logins in that bucket skip every taken number, one attempt at a time.
//!   The reverse move works the same way.
//! * A key prefix may not contain `{` or `}`.
//!
//! # Redis Sentinel
//!
//! `RedisStore::connect("redis-sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0")` asks the
//! Sentinels (the first that answers) for the primary of `mymaster`, checks with `ROLE` that it is
//! one, and keeps one multiplexed connection to it. When a request finds that connection broken,
//! refused, silent for the [command timeout](RedisStore::command_timeout), or answering `READONLY`
//! (a demoted primary), that request fails (`503`) and the next one asks the Sentinels again: after
//! a failover the store follows the promoted replica without a restart. While Sentinel has no
//! primary to name (the second or so of the election), requests answer `503`, never `401` for a
//! valid token nor `200` for a revoked one (`tests/redis_sentinel.rs`).
//!
//! The store learns of a failover from its own requests: it does not subscribe to Sentinel's
//! `+switch-master`. An old primary that is cut off from Sentinel but still reachable by this
//! instance, and not yet demoted, keeps being used until it is demoted or fails, and what it
//! accepts meanwhile is lost when it rejoins as a replica; with
//! [`wait_for_replicas`](RedisStore::wait_for_replicas) set to the number of replicas those writes
//! are not acknowledged (the promoted replica no longer follows it), so no such logout answers `200`.
//!
//! # Durable revocations
//!
//! Redis replicates asynchronously: a write is acknowledged by the primary before any replica has it.
//! A logout answered `200` whose revocation had not reached a replica is lost when that replica is
//! promoted, and the revoked tokens work again. [`RedisStore::wait_for_replicas`]`(n, timeout)` closes
//! that gap: every script that issues or revokes tokens (login and its session-limit evictions,
//! refresh exchange, reuse detection, logout in every scope, session revocation, the password-change
//! revocation, which is a logout) is sent with a `WAIT n timeout` in the same pipeline, on the same
//! connection, to the primary that runs it (on a cluster, the primary of the user's slot). Fewer than
//! `n` acknowledgements within `timeout` make the call fail with
//! [`StoreErrorKind::NotAcknowledged`](crate::store::StoreErrorKind::NotAcknowledged): the
//! [`LogoutService`](crate::LogoutService) and [`RefreshTokens`](crate::refresh::RefreshTokens)
//! answer `503`, never `200`. The write stands on the primary, so a retry is safe: a retried logout
//! revokes whatever is left (answering `200`), or finds its token already gone (`401`, when an earlier
//! attempt was applied), or answers `503` again while fewer than `n` replicas are attached (after a
//! failover, until the other replicas follow the new primary); once an answer other than `503` comes
//! back, the token is revoked. That holds on another connection or instance too: every script is
//! followed, in the same pipeline, by a small write in the user's slot (`{prefix}{bucket}:w`, expiring
//! after a minute) so that its `WAIT` covers every earlier write of that primary, and a revocation that
//! finds nothing to revoke still waits for the replicas (`WAIT` only waits for its own connection's
//! writes: without the marker, a retry that found the tokens already gone would have been
//! acknowledged at once while the attempt that removed them was on no replica). A refresh exchange
//! answered `503` this way did rotate on the primary,
//! as after any lost response: a client retrying with the same refresh token meets reuse detection
//! unless [`RefreshTokens::reuse_interval`](crate::refresh::RefreshTokens::reuse_interval) covers the
//! retry.
//!
//! What it guarantees: once a revoking call returned `Ok` (a logout answered `200`), the revocation is
//! in the memory of `n` replicas as well as the primary, and a failover that promotes one of those
//! replicas keeps it. Sentinel and Redis Cluster promote the most up-to-date replica they can reach,
//! so when the primary dies, the revocation survives whenever one of the replicas that acknowledged
//! it is promoted, which is always the case with `n` equal to the number of replicas.
//!
//! What it does not: `WAIT` is not consensus. With `n` below the replica count, a failover can promote
//! a replica that had not acknowledged yet. During a graceful failover (`SENTINEL FAILOVER`, or a
//! primary cut off while still running) the old primary keeps accepting writes, and acknowledging
//! them with the replicas not yet moved to the new one, until it is demoted: those writes are lost
//! (with `n` equal to the replica count they are not acknowledged, since the promoted replica no
//! longer replicates the old primary). A replica that acknowledged and then failed too takes the
//! revocation with it: replicas hold it in memory, not on disk (Redis 7.2's `WAITAOF` would add an
//! fsync on each replica, a disk write per logout; it is not used, the servers tested here are 7.0).
//! Lookups never wait, and a write that failed its `WAIT` is applied on the primary and visible to
//! lookups meanwhile (as with any timed-out write).
//!
//! The cost is one replication round trip per write: about 0.1 ms per logout at the median on loopback
//! (`BENCHMARKS.md`); in a real deployment, the network latency to the `n`-th fastest replica. While
//! fewer than `n` replicas are connected, every login and logout answers `503`: `n` below the replica
//! count rides out the loss of one replica, `n` equal to it closes more of the windows above. Pick by
//! which failure you would rather see: logins refused, or a logout undone.
//!
//! A local cache of token lookups (keeping revocations immediate across instances by its own means)
//! can only be as durable as the store under it: a revocation the store loses in a failover is lost
//! for cached and uncached lookups alike, and the cache would then rebuild the lost token from the
//! store. With `wait_for_replicas` the store keeps an acknowledged revocation across a failover that
//! promotes a replica that acknowledged it (see above), and a cache that evicts on revocation and serves only while its invalidation channel is alive
//! (reconnecting, and flushing, when the primary changes) inherits that guarantee unchanged.
//!
//! # Trade-offs
//!
//! * **One round trip per request.** `find` is one `HMGET` of 8 fields; the digest, expiry and kind
//!   checks happen in the caller. A login takes two round trips, an exchange two, a logout one per
//!   100 sessions plus one. Per request, `find` costs about 2% more instructions than the bare
//!   `HMGET` through redis-rs on a single primary, 6% on a cluster (callgrind; `benches/redis.rs`):
//!   decoding the record and the command timeout's timer, which the layer's lookup timeout
//!   duplicates (set `TokenAuthLayer::lookup_timeout(None)` to keep only this one).
//! * **Redis availability is auth availability.** When Redis is unreachable, slow (see
//!   [`command_timeout`](RedisStore::command_timeout)) or returns unreadable data, every method returns
//!   a [`StoreError`] naming the cause and the auth layer fails closed (`503`), never treating a token
//!   as valid or unknown. The connection reconnects by itself.
//! * [`find_by_digest`](TokenStore::find_by_digest) keeps the trait's default (finds nothing): there is
//!   no digest index, so legacy tokens without an `{id}|` part are not supported by this store.
//! * [`prune_expired`](TokenStore::prune_expired) `SCAN`s the keyspace (every primary of a cluster):
//!   run it off the request path. Redis expiry already removes whole sessions by itself.
//! * Times are stored with millisecond precision.

mod connection;
mod decode;
mod exchange;
mod insert;
mod layout;
mod list;
mod prune;
mod replicas;
mod revoke;
mod scripts;
mod sentinel;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisError, Script, Value};

use self::connection::Connection;
use self::decode::{field, to_millis, Reader};
use self::layout::{bucket_of, member, parse_member, Keys, Slot, MAX_SEQ};
use self::replicas::{Acknowledged, ReplicaAck};
use self::sentinel::{SentinelConnection, SentinelUrl};
use super::{counted_revocation, StoreError, StoreFuture, TokenStore};
use crate::session::{
    ExchangeDecision, ExchangeOutcome, ExchangedSession, NewSecret, NewSession, OnReuse, RefreshExchange,
    SessionSummary, SessionTokens, Sessions,
};
use crate::token::{TokenId, TokenKind, TokenRecord, UserId};

/// The default [key prefix](RedisStore::key_prefix).
pub const DEFAULT_KEY_PREFIX: &str = "tta:";

/// The default [command timeout](RedisStore::command_timeout): three seconds.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// The default [expiry grace](RedisStore::expiry_grace): none.
pub const DEFAULT_EXPIRY_GRACE: Duration = Duration::ZERO;

/// Sessions revoked (or pruned) per script call.
const PAGE: usize = 100;

/// Keys `SCAN`ned per call by `prune_expired`.
const SCAN_COUNT: usize = 1000;

/// Attempts of an insert or an exchange that keeps losing its compare-and-set to concurrent writes
/// of the same user, before it gives up with an error.
const MAX_ATTEMPTS: usize = 64;

/// Deadlines at or past this (about the year 5138) are stored as "never": a Lua number prints
/// exactly only below 10^14.
const FOREVER_MS: i64 = 100_000_000_000_000;

/// A [`TokenStore`] in Redis, single primary or Redis Cluster. Cheap to clone: clones share one
/// connection (a multiplexed [`ConnectionManager`], or a [`ClusterConnection`]), which reconnects by
/// itself.
///
/// See the [module documentation](self) for the data model, the atomicity of each operation and the
/// cluster notes.
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    keys: Arc<Keys>,
    timeout: Duration,
    expiry_grace: Duration,
    replicas: Option<ReplicaAck>,
}

impl RedisStore {
    /// Connects to Redis and waits until the connection is up, at most [`DEFAULT_COMMAND_TIMEOUT`].
    ///
    /// `url` is one server (`redis://[:password@]host:port/db`; `rediss://` needs the redis crate's
    /// TLS features), a comma-separated list of Redis Cluster seed nodes
    /// (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`), as [`connect_cluster`](Self::connect_cluster),
    /// or the Sentinels of a primary and its replicas:
    /// `redis-sentinel://[[user]:password@]host:port[,host:port...]/MASTER_NAME[/DB]` (the credentials
    /// are the primary's, taken literally; the Sentinels are asked without). With Sentinel the store
    /// asks the Sentinels for the primary, checks its role, and asks again after a failover (see
    /// [Sentinel](self#redis-sentinel)). A refused connection fails at once, with its cause. Must be
    /// called within a Tokio runtime.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with(sentinel::SCHEME) {
            let url = SentinelUrl::parse(url)?;
            let conn = SentinelConnection::connect(&url, DEFAULT_COMMAND_TIMEOUT).await?;
            return Ok(Self::with_connection(Connection::Sentinel(conn)));
        }
        if url.contains(',') {
            return Self::connect_cluster(&url.split(',').collect::<Vec<_>>()).await;
        }
        let manager = connection::connect_single(url, DEFAULT_COMMAND_TIMEOUT).await?;
        Ok(Self::from_manager(manager))
    }

    /// Connects to a Redis Cluster through any of its `nodes` (seed URLs; the client discovers the
    /// rest), and waits until the slot map is known, at most [`DEFAULT_COMMAND_TIMEOUT`]. One seed is
    /// enough (a managed service's configuration endpoint, say).
    pub async fn connect_cluster<S: AsRef<str>>(nodes: &[S]) -> Result<Self, StoreError> {
        let cluster = connection::connect_cluster(nodes, DEFAULT_COMMAND_TIMEOUT).await?;
        Ok(Self::from_cluster(cluster))
    }

    /// Like [`connect`](Self::connect) (one URL, or a comma-separated cluster seed list), but returns
    /// at once and connects on first use, so that a service can start while Redis is down (its
    /// requests then fail with a [`StoreError`] until Redis is reachable). Fails only for an invalid
    /// `url` or when called outside a Tokio runtime.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::backend("RedisStore::connect_lazy must be called within a Tokio runtime"));
        }
        if url.starts_with(sentinel::SCHEME) {
            let url = SentinelUrl::parse(url)?;
            return Ok(Self::with_connection(Connection::Sentinel(SentinelConnection::lazy(
                &url,
                DEFAULT_COMMAND_TIMEOUT,
            )?)));
        }
        if url.contains(',') {
            let nodes: Vec<&str> = url.split(',').collect();
            return Ok(Self::from_cluster(connection::connect_cluster_lazy(&nodes, DEFAULT_COMMAND_TIMEOUT)?));
        }
        Ok(Self::from_manager(connection::connect_single_lazy(url, DEFAULT_COMMAND_TIMEOUT)?))
    }

    /// Uses an existing connection manager to a single primary, with its own configuration (its
    /// response timeout, if any, applies in addition to [`command_timeout`](Self::command_timeout)).
    pub fn from_manager(manager: ConnectionManager) -> Self {
        Self::with_connection(Connection::Single(manager))
    }

    /// Uses an existing Redis Cluster connection, with its own configuration (retries, timeouts).
    pub fn from_cluster(cluster: ClusterConnection) -> Self {
        Self::with_connection(Connection::Cluster(cluster))
    }

    fn with_connection(conn: Connection) -> Self {
        Self {
            conn,
            keys: Arc::new(Keys::new(DEFAULT_KEY_PREFIX.to_owned())),
            timeout: DEFAULT_COMMAND_TIMEOUT,
            expiry_grace: DEFAULT_EXPIRY_GRACE,
            replicas: None,
        }
    }

    /// Sets the prefix of every key this store uses (default [`DEFAULT_KEY_PREFIX`], `"tta:"`), to share
    /// one Redis between applications or environments.
    ///
    /// # Panics
    ///
    /// If `prefix` contains `{` or `}`: the store puts its own hash tag right after the prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.keys = Arc::new(Keys::new(prefix.into()));
        self
    }

    /// Sets how long one Redis command (or script) may take (default [`DEFAULT_COMMAND_TIMEOUT`], three
    /// seconds). A command that takes longer fails with [`StoreError::timeout`], and the auth layer
    /// answers `503`. A write that timed out may still have been applied by Redis. Operations of
    /// several round trips (a logout of many sessions, a prune) bound each round trip.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        if let Connection::Sentinel(conn) = &mut self.conn {
            conn.set_timeout(timeout);
        }
        self
    }

    /// Makes every write that issues or revokes tokens (login, refresh exchange and reuse detection,
    /// logout in every scope, session revocation, the evictions of a session limit) wait until
    /// `replicas` replicas acknowledged it (`WAIT`), at most `timeout`; `0` replicas (the default)
    /// waits for none. A write not acknowledged in time fails with
    /// [`StoreErrorKind::NotAcknowledged`](crate::store::StoreErrorKind::NotAcknowledged) and the
    /// services answer `503`, never `200`: the write stands on the primary, and retrying is safe.
    ///
    /// Keep `timeout` below the [command timeout](Self::command_timeout), which bounds the write and
    /// its wait together. Lookups never wait. See [durable revocations](self#durable-revocations) for
    /// what this does and does not guarantee.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = (replicas > 0).then_some(ReplicaAck { replicas, timeout });
        self
    }

    /// Sets how long a session key outlives the expiry of its last token before Redis deletes it by
    /// itself (default [`DEFAULT_EXPIRY_GRACE`]: none). The auth layer rejects a token by its
    /// `expires_at` whatever the grace; a grace only keeps expired records around for inspection.
    /// Applies to sessions written afterwards.
    pub fn expiry_grace(mut self, grace: Duration) -> Self {
        self.expiry_grace = grace;
        self
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Connection::Cluster(_))
    }

    /// Whether this store finds its primary through Redis Sentinel.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.conn, Connection::Sentinel(_))
    }

    fn grace_ms(&self) -> i64 {
        i64::try_from(self.expiry_grace.as_millis()).unwrap_or(i64::MAX).min(FOREVER_MS)
    }

    /// Runs `op` (which bounds each of its round trips) with a clone of the store's state.
    fn run<T, F, Fut>(&self, op: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(Ops) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        StoreFuture::new(op(Ops {
            conn: self.conn.clone(),
            keys: Arc::clone(&self.keys),
            timeout: self.timeout,
            grace_ms: self.grace_ms(),
            replicas: self.replicas,
        }))
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection info may hold a password: leave the connection out.
        f.debug_struct("RedisStore")
            .field("cluster", &self.is_cluster())
            .field("sentinel", &self.is_sentinel())
            .field("wait_for_replicas", &self.replicas.map(|r| (r.replicas, r.timeout)))
            .field("key_prefix", &self.keys.prefix())
            .field("command_timeout", &self.timeout)
            .field("expiry_grace", &self.expiry_grace)
            .finish_non_exhaustive()
    }
}

fn map_error(e: RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::timeout()
    } else {
        StoreError::backend(e)
    }
}

async fn bounded<T>(timeout: Duration, fut: impl Future<Output = Result<T, RedisError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result.map_err(map_error),
        Err(_) => Err(StoreError::timeout()),
    }
}

/// A session key's deadline: the latest expiry plus the grace, `None` (never) if a token never expires
/// or the deadline is too far to matter. At least 1 ms: `PEXPIREAT` with a past time deletes the key,
/// as it should, but 0 or less is refused by some servers.
fn deadline<'a>(expiries: impl IntoIterator<Item = &'a Option<SystemTime>>, grace_ms: i64) -> Option<i64> {
    let mut latest = i64::MIN;
    for expiry in expiries {
        latest = latest.max(to_millis((*expiry)?));
    }
    let at = latest.saturating_add(grace_ms).max(1);
    (at < FOREVER_MS).then_some(at)
}

fn deadline_arg(deadline: Option<i64>) -> String {
    deadline.map_or_else(|| "inf".to_owned(), |ms| ms.to_string())
}

/// The fields of one token, as `HSET` arguments.
fn token_fields(args: &mut Vec<Vec<u8>>, kind: TokenKind, secret: &NewSecret, created_ms: i64) {
    let [d, e, c, _] = field::token(kind);
    args.extend([d.into(), secret.digest.to_hex().into_bytes(), c.into(), created_ms.to_string().into_bytes()]);
    if let Some(at) = secret.expires_at {
        args.extend([e.into(), to_millis(at).to_string().into_bytes()]);
    }
}

/// What a store operation needs, moved into its future.
struct Ops {
    conn: Connection,
    keys: Arc<Keys>,
    timeout: Duration,
    grace_ms: i64,
    replicas: Option<ReplicaAck>,
}

/// One bucket's index keys for one user.
struct UserKeys {
    bucket: u16,
    by_creation: String,
    by_deadline: String,
}

impl Ops {
    fn user_keys(&self, user: &UserId) -> UserKeys {
        let bucket = bucket_of(user);
        UserKeys {
            bucket,
            by_creation: self.keys.sessions_by_creation(bucket, user),
            by_deadline: self.keys.sessions_by_deadline(bucket, user),
        }
    }

    /// The session keys of index `members` of `user`.
    fn session_keys(&self, user: &UserKeys, members: &[Vec<u8>]) -> Result<Vec<layout::SessionKey<'_>>, StoreError> {
        members
            .iter()
            .map(|m| {
                let seq = parse_member(m).ok_or_else(|| {
                    StoreError::corrupt(format!("the session index {} holds a malformed member", user.by_creation))
                })?;
                Ok(self.keys.session(user.bucket, seq))
            })
            .collect()
    }

    /// `script` with the keys of a page: the user's two indexes, then the sessions of `members`.
    fn page_invocation<'s>(
        &self,
        script: &'s Script,
        user: &UserKeys,
        members: &[Vec<u8>],
    ) -> Result<redis::ScriptInvocation<'s>, StoreError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(&user.by_creation).key(&user.by_deadline);
        for key in self.session_keys(user, members)? {
            invocation.key(key);
        }
        Ok(invocation)
    }

    async fn query(&mut self, cmd: &Cmd) -> Result<Value, StoreError> {
        bounded(self.timeout, cmd.query_async::<Value>(&mut self.conn)).await
    }

    async fn invoke(&mut self, invocation: &redis::ScriptInvocation<'_>) -> Result<Value, StoreError> {
        bounded(self.timeout, invocation.invoke_async::<Value>(&mut self.conn)).await
    }

    /// [`invoke`](Self::invoke) for a script that issues or revokes tokens: with
    /// [`wait_for_replicas`](RedisStore::wait_for_replicas), its `WAIT` travels with it and a shortfall
    /// is an error (see `replicas.rs`).
    async fn invoke_acknowledged(&mut self, invocation: &redis::ScriptInvocation<'_>) -> Result<Value, StoreError> {
        let Some(ack) = self.replicas else { return self.invoke(invocation).await };
        let mut conn = Acknowledged::new(&mut self.conn, ack);
        let result = tokio::time::timeout(self.timeout, invocation.invoke_async::<Value>(&mut conn)).await;
        match result {
            Err(_) => Err(StoreError::timeout()),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => match conn.unacknowledged() {
                Some(acks) => Err(not_acknowledged(acks, ack)),
                None => Err(map_error(error)),
            },
        }
    }

    /// With [`wait_for_replicas`](RedisStore::wait_for_replicas): returns once the replicas have every
    /// write the primary of `key`'s slot applied before now (a call that wrote nothing itself).
    async fn acknowledge_prior_writes(&mut self, key: &[u8]) -> Result<(), StoreError> {
        let Some(ack) = self.replicas else { return Ok(()) };
        match tokio::time::timeout(self.timeout, replicas::wait_behind_marker(&mut self.conn, key, ack)).await {
            Err(_) => Err(StoreError::timeout()),
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(acks))) => Err(not_acknowledged(acks, ack)),
            Ok(Err(error)) => Err(map_error(error)),
        }
    }
}

fn not_acknowledged(acks: i64, ack: ReplicaAck) -> StoreError {
    StoreError::not_acknowledged(format!(
        "acknowledged by {acks} of the {} replicas required within {:?}: applied on the primary but a failover \
         could undo it; safe to retry",
        ack.replicas, ack.timeout
    ))
}

enum Commit {
    Stored(SessionTokens),
    Full,
    Again,
}

/// What a revocation page script says about the next page.
struct Next {
    cutoff: String,
    kept: Option<Vec<u8>>,
    page: Vec<Vec<u8>>,
}

impl TokenStore for RedisStore {
    fn backend_name(&self) -> &'static str {
        if self.is_cluster() {
            "redis_cluster"
        } else {
            "redis"
        }
    }

    /// One `HMGET` of the token's session hash, located from the id alone.
    fn find(&self, id: TokenId) -> StoreFuture<Option<TokenRecord>> {
        let slot = Slot::of(id);
        if slot.seq == 0 {
            // Below 2^15: never allocated.
            return StoreFuture::ready(Ok(None));
        }
        let fields = decode::find_fields(slot.kind);
        let mut cmd = Cmd::with_capacity(2 + fields.len(), 64 + self.keys.prefix().len());
        cmd.arg("HMGET").arg(self.keys.session(slot.bucket, slot.seq)).arg(&fields[..]);
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        // No `Arc` of the key names is cloned for the error messages: every clone and drop of a
        // shared count is a write to a cache line all request threads share.
        StoreFuture::new(async move {
            // Not `query_async`: its `extract_error` copies the reply's array (see `Connection::request`).
            let reply = bounded(timeout, conn.request(&cmd)).await?;
            let what = || format!("session {{{}}}:s:{} (token {id})", slot.bucket, slot.seq);
            decode::token_record(id, slot.kind, decode::fields(reply, &what)?, &what)
        })
    }

    fn insert(&self, session: NewSession) -> StoreFuture<SessionTokens> {
        self.run(move |ops| ops.insert(session))
    }

    /// Two round trips (read, then compare-and-set), more only when the session changed in between.
    fn exchange_refresh(&self, exchange: RefreshExchange) -> StoreFuture<ExchangeOutcome> {
        self.run(move |ops| ops.exchange(exchange))
    }

    fn list_sessions(&self, user_id: &UserId) -> StoreFuture<Vec<SessionSummary>> {
        let user_id = user_id.clone();
        self.run(move |ops| ops.list(user_id))
    }

    /// In pages of 100 sessions, one script each: see the [module docs](self#atomicity).
    fn revoke_sessions(&self, user_id: &UserId, sessions: Sessions) -> StoreFuture<u64> {
        let user_id = user_id.clone();
        let revoke = self.run(move |mut ops| async move { ops.revoke(&user_id, sessions).await });
        counted_revocation(self.backend_name(), sessions, revoke)
    }

    /// Deletes matching tokens, and index members whose session expired, with `SCAN` over the
    /// `{prefix}{*}:x:*` indexes (on every primary of a cluster) and one script per 100 sessions of
    /// each user found. Redis expiry already removes a session [`expiry_grace`](RedisStore::expiry_grace)
    /// after its last token expires; this removes expired tokens of live sessions, applies
    /// `created_before`, and counts only what it deleted itself. The command timeout applies to each
    /// call, not to the whole scan.
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        self.run(move |ops| ops.prune(expired_before, created_before))
    }

    /// One script: sets the token's last use only if the token is still stored.
    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        let slot = Slot::of(id);
        if slot.seq == 0 {
            return StoreFuture::ready(Ok(()));
        }
        let [d, _, _, l] = field::token(slot.kind);
        self.run(move |mut ops| async move {
            let mut touch = scripts::TOUCH.prepare_invoke();
            touch.key(ops.keys.session(slot.bucket, slot.seq)).arg(d).arg(l).arg(to_millis(at));
            ops.invoke(&touch).await.map(drop)
        })
    }
}

impl RedisStore {
    /// Loads the store's Lua scripts (on every primary of a cluster). Optional: a script missing on the
    /// server (after a restart or a failover) is loaded on first use; this only moves that cost to
    /// startup.
    pub async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let all: [&Script; 8] = [
            &scripts::PREPARE_INSERT,
            &scripts::COMMIT_INSERT,
            &scripts::ROTATE,
            &scripts::REVOKE_REUSED,
            &scripts::REVOKE_PAGE,
            &scripts::PRUNE_PAGE,
            &scripts::READ_SESSIONS,
            &scripts::TOUCH,
        ];
        for script in all {
            bounded(self.timeout, script.load_async(&mut conn)).await?;
        }
        Ok(())
    }
}

/// A resolver of the primary named by a `redis-sentinel://` URL, whose clients speak RESP3 (the
/// cache's tracking connection).
pub(crate) fn sentinel_resolver_resp3(url: &str) -> Result<redis::sentinel::SentinelClient, StoreError> {
    let url = SentinelUrl::parse(url)?;
    url.client_builder()?.set_client_to_redis_protocol(redis::ProtocolVersion::RESP3).build().map_err(map_error)
}

pub(crate) use self::sentinel::is_primary_role;

/// Whether `url` names Sentinels (`redis-sentinel://`).
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.starts_with(sentinel::SCHEME)
}

impl RedisStore {
    /// The key prefix, which the cache's bus tracks (`CLIENT TRACKING ... BCAST PREFIX`).
    pub(crate) fn tracked_prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The two token ids whose records live in `key`, when it is a session key of this store.
    pub(crate) fn token_ids_in_key(&self, key: &[u8]) -> Option<[TokenId; 2]> {
        let rest = key.strip_prefix(self.keys.prefix().as_bytes())?.strip_prefix(b"{")?;
        let close = rest.iter().position(|&b| b == b'}')?;
        let (bucket, rest) = rest.split_at(close);
        let seq = rest.strip_prefix(b"}:s:")?;
        let number = |digits: &[u8]| -> Option<u64> {
            let ok = !digits.is_empty() && digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit);
            std::str::from_utf8(digits).ok().filter(|_| ok)?.parse().ok()
        };
        let (bucket, seq) = (number(bucket)?, number(seq)?);
        if bucket >= layout::BUCKETS || seq > MAX_SEQ {
            return None;
        }
        let bucket = bucket as u16;
        Some([Slot::id(seq, TokenKind::Access, bucket), Slot::id(seq, TokenKind::Refresh, bucket)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_output_never_shows_the_connection_or_its_password() {
        for url in [
            "redis://:hunter2@127.0.0.1:1/0",
            "redis://:hunter2@127.0.0.1:1,redis://:hunter2@127.0.0.1:2",
            "redis-sentinel://:hunter2@127.0.0.1:1,127.0.0.1:2/mymaster/0",
        ] {
            let store = RedisStore::connect_lazy(url).unwrap().key_prefix("app:");
            let debug = format!("{store:?}");
            assert!(!debug.contains("hunter2") && !debug.contains("127.0.0.1"), "{debug}");
            assert!(debug.contains("app:"), "{debug}");
            assert_eq!(store.is_cluster(), url.starts_with("redis://") && url.contains(','));
            assert_eq!(store.is_sentinel(), url.starts_with("redis-sentinel://"));
        }
    }

    #[test]
    fn deadlines_are_the_latest_expiry_plus_the_grace_or_never() {
        let at = |ms: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(deadline([&at(5), &at(9)], 1), Some(10));
        assert_eq!(deadline([&at(5), &None], 1), None, "a token that never expires keeps the session");
        assert_eq!(deadline([&at(5)], FOREVER_MS), None, "too far to matter");
        assert_eq!(deadline([&Some(SystemTime::UNIX_EPOCH - Duration::from_secs(1))], 0), Some(1), "past: at least 1");
        assert_eq!(deadline_arg(None), "inf");
    }

    #[tokio::test]
    async fn session_keys_name_their_two_tokens_for_the_cache() {
        let store = RedisStore::connect_lazy("redis://127.0.0.1:1/0").unwrap().key_prefix("app:");
        let key = store.keys.session(17, 42).to_string();
        let ids = store.token_ids_in_key(key.as_bytes()).unwrap();
        assert_eq!(ids.map(|id| Slot::of(id).seq), [42, 42]);
        assert_eq!(ids.map(|id| Slot::of(id).kind), [TokenKind::Access, TokenKind::Refresh]);
        for other in ["app:{17}:u:5", "app:{17}:n", "other:{17}:s:42", "app:{99999}:s:1", "app:{1}:s:x"] {
            assert_eq!(store.token_ids_in_key(other.as_bytes()), None, "{other}");
        }
    }
}
