//! [`RedisBus`]: invalidations from Redis, by server-assisted client tracking: a single primary, a
//! primary found through Sentinel, or every primary of a Redis Cluster.
//!
//! The bus keeps its own RESP3 connection to each server that can execute a write (one for a single
//! server or Sentinel's primary, one per primary of a cluster), with
//! `CLIENT TRACKING ON BCAST PREFIX <key prefix>`: every write to a key under the store's prefix on
//! that server, by any client (another instance, `redis-cli`, a key expiring, `FLUSHALL`), is pushed
//! to it. The push for a write is queued on every tracking connection before the writer's reply leaves
//! the server, and redis-rs hands pushes to the bus's sender inside its connection driver, in stream
//! order, before it routes any later reply. The sender evicts right there, so when a fence's reply
//! reaches the cache, every invalidation the server queued before the fence command has been applied.
//!
//! A session key invalidates both tokens of its session; index and counter keys are ignored (every
//! revocation deletes or rewrites the session hash); a `NULL` invalidation (flush) empties the cache.
//! The connections are named `tta-cache` in `CLIENT LIST` (see [`RedisBus::client_name`]); when one
//! drops, the cache is emptied and the bus subscribes again every 100 ms until it succeeds.
//!
//! # The fence, by deployment
//!
//! | deployment | fence, on each tracking connection | fails (and the bus subscribes again) when |
//! |---|---|---|
//! | one server | `PING` | the connection is lost |
//! | Sentinel (`redis-sentinel://`) | `ROLE` | the server is no longer a primary (demoted after a failover), or the connection is lost; the bus then asks the Sentinels for the primary again |
//! | Redis Cluster | `CLUSTER NODES` | a tracked node is no longer a primary (or not the same node), any node's view names a primary with slots, or a slot migration's target, that the bus does not track (a failover, a new primary), or a connection is lost |
//!
//! A fence that fails turns hits off on that instance until a fence succeeds again: requests read the
//! store, and a revocation committed meanwhile, on any primary, is seen. A slot migrating between
//! tracked primaries needs nothing: a key moved by `MIGRATE` is deleted on one tracked primary and
//! written on another, and both push.
//!
//! # Limits
//!
//! * On a cluster each fence costs one `CLUSTER NODES` per primary (about 100 bytes of reply per node
//!   of the cluster). With many nodes and many instances, raise
//!   [`CacheConfig::fence_every`](super::CacheConfig::fence_every) (and the lease with it).
//! * A primary with slots that cannot be reached (down, no replica to take over) keeps every fence
//!   failing: the cache reads the store for every token until the cluster has a reachable primary
//!   for every slot again.
//! * A primary cut off from Sentinel (or from the cluster's majority) but still reachable by this
//!   instance answers as a primary until it learns of the failover, to the bus as to every client.
//!   Redis bounds that window (a cluster primary in the minority stops accepting writes after
//!   `cluster-node-timeout`); the guarantee needs, as the store does, that a revocation is written to
//!   the primary that serves reads afterwards (see the store's notes on replication).
//! * The server must speak RESP3 (Redis 6 or later) and allow `CLIENT TRACKING` (some managed services
//!   do not), and, for a cluster, `CLUSTER NODES`.

mod cluster;
mod tracking;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::SentinelClient;
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, Value};
use tokio::sync::Notify;

use self::tracking::{text, CONNECT_TIMEOUT};
use super::bus::{BusFuture, InvalidationBus, InvalidationSink};
use crate::store::redis::{is_primary_role, is_sentinel_url, sentinel_resolver_resp3};
use crate::store::{RedisStore, StoreError};

/// The default name of the bus connections in `CLIENT LIST` (see [`RedisBus::client_name`]).
pub const CLIENT_NAME: &str = "tta-cache";

const RECONNECT_EVERY: Duration = Duration::from_millis(100);

/// The [`InvalidationBus`] of a [`RedisStore`]: one server, Sentinel, or Redis Cluster. See the
/// [module docs](self).
#[derive(Clone)]
pub struct RedisBus {
    deployment: Arc<Deployment>,
    store: RedisStore,
    current: Arc<Mutex<Option<Subscription>>>,
    lost: Arc<Notify>,
    name: Arc<str>,
}

enum Deployment {
    Single(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster {
        /// Where to ask for the cluster's nodes: the seeds, then the nodes last seen.
        seeds: Vec<ConnectionInfo>,
        known: Mutex<Vec<ConnectionInfo>>,
    },
}

/// The tracking connections in place, and which subscription they belong to.
#[derive(Clone)]
struct Subscription {
    number: u64,
    nodes: Arc<[Tracked]>,
    /// Cluster: the ids of the tracked nodes.
    ids: Arc<BTreeSet<String>>,
}

#[derive(Clone)]
struct Tracked {
    conn: MultiplexedConnection,
    /// Cluster: the node's id; otherwise empty.
    id: String,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let deployment = match &*self.deployment {
            Deployment::Single(_) => "single",
            Deployment::Sentinel(_) => "sentinel",
            Deployment::Cluster { .. } => "cluster",
        };
        f.debug_struct("RedisBus")
            .field("deployment", &deployment)
            .field("prefix", &self.store.tracked_prefix())
            .finish_non_exhaustive()
    }
}

fn resp3(info: ConnectionInfo) -> ConnectionInfo {
    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    info.set_redis_settings(settings)
}

impl RedisBus {
    /// A bus for `store`, with its own connections to the deployment `url` names: the URL `store`
    /// was connected with (one server, a `redis-sentinel://` URL, or a comma-separated list of
    /// cluster seeds; one seed is enough). Connects when the cache starts it.
    pub fn new(url: &str, store: &RedisStore) -> Result<Self, StoreError> {
        let deployment = if is_sentinel_url(url) || store.is_sentinel() {
            if !(is_sentinel_url(url) && store.is_sentinel()) {
                return Err(StoreError::invalid_input(
                    "RedisBus::new: give the redis-sentinel:// URL the store was connected with",
                ));
            }
            Deployment::Sentinel(tokio::sync::Mutex::new(sentinel_resolver_resp3(url)?))
        } else if store.is_cluster() {
            let mut seeds = Vec::new();
            for seed in url.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                seeds.push(resp3(seed.into_connection_info().map_err(StoreError::backend)?));
            }
            if seeds.is_empty() {
                return Err(StoreError::invalid_input("RedisBus::new: a Redis Cluster needs at least one seed URL"));
            }
            Deployment::Cluster { seeds, known: Mutex::default() }
        } else if url.contains(',') {
            return Err(StoreError::invalid_input(
                "RedisBus::new: the URL lists several servers but the store is not on Redis Cluster",
            ));
        } else {
            let info = resp3(url.into_connection_info().map_err(StoreError::backend)?);
            Deployment::Single(Client::open(info).map_err(StoreError::backend)?)
        };
        Ok(Self {
            deployment: Arc::new(deployment),
            store: store.clone(),
            current: Arc::default(),
            lost: Arc::default(),
            name: CLIENT_NAME.into(),
        })
    }

    /// Names the bus connections `name` in `CLIENT LIST` (default [`CLIENT_NAME`]; no spaces).
    pub fn client_name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    fn lose(&self, number: u64) {
        lose(&self.current, &self.lost, number);
    }

    /// Connects every tracking connection of subscription `number`, checks them, then resets the cache.
    async fn subscribe(&self, sink: &Arc<dyn InvalidationSink>, number: u64) -> Result<(), StoreError> {
        // The push handler lives in each connection's driver: it must not hold the connection itself
        // (through `current`), or the connection would keep itself alive after the cache is dropped.
        let (current, lost) = (Arc::downgrade(&self.current), self.lost.clone());
        let on_lost = move || {
            if let Some(current) = current.upgrade() {
                lose(&current, &lost, number);
            }
        };
        let (store, name) = (&self.store, &*self.name);
        let (nodes, ids) = match &*self.deployment {
            Deployment::Single(client) => {
                let (conn, _) = tracking::connect(client, store, name, sink, on_lost, None).await?;
                (vec![Tracked { conn, id: String::new() }], BTreeSet::new())
            }
            Deployment::Sentinel(resolver) => {
                let client = {
                    let mut resolver = resolver.lock().await;
                    tokio::time::timeout(CONNECT_TIMEOUT, resolver.async_get_client())
                        .await
                        .map_err(|_| StoreError::timeout())?
                        .map_err(StoreError::backend)?
                };
                let role = Some(redis::cmd("ROLE"));
                let (conn, role) = tracking::connect(&client, store, name, sink, on_lost, role).await?;
                if !is_primary_role(&role) {
                    return Err(StoreError::backend("the server Sentinel named is not a primary (yet)"));
                }
                (vec![Tracked { conn, id: String::new() }], BTreeSet::new())
            }
            Deployment::Cluster { seeds, known } => {
                let view = self.cluster_view(seeds, known).await?;
                let ids = cluster::writers(&view);
                let template = &seeds[0];
                let mut nodes = Vec::new();
                for id in &ids {
                    let node = view.iter().find(|n| &n.id == id).ok_or_else(|| {
                        StoreError::backend(format!("cluster node {id} takes writes but has no address yet"))
                    })?;
                    let client =
                        Client::open(at_address(template, &node.host, node.port)?).map_err(StoreError::backend)?;
                    let check = Some(redis::cmd("CLUSTER").arg("NODES").clone());
                    let (conn, reply) = tracking::connect(&client, store, name, sink, on_lost.clone(), check).await?;
                    let answered = cluster::parse(&text(&reply).unwrap_or_default());
                    cluster::check(id, &answered, &ids).map_err(changed)?;
                    nodes.push(Tracked { conn, id: id.clone() });
                }
                (nodes, ids)
            }
        };
        // Writes before this point may have been missed: start a new epoch, then let fences through.
        sink.reset();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Subscription { number, nodes: nodes.into(), ids: Arc::new(ids) });
        Ok(())
    }

    /// The cluster's nodes, as the first seed (or node seen before) that answers sees them.
    async fn cluster_view(
        &self,
        seeds: &[ConnectionInfo],
        known: &Mutex<Vec<ConnectionInfo>>,
    ) -> Result<Vec<cluster::Node>, StoreError> {
        let known_before = known.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut last_error = StoreError::backend("no cluster seed");
        for info in seeds.iter().chain(&known_before) {
            let asked = async {
                let client = Client::open(info.clone()).map_err(StoreError::backend)?;
                let mut conn = client.get_multiplexed_async_connection().await.map_err(StoreError::backend)?;
                let reply: Value =
                    redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn).await.map_err(StoreError::backend)?;
                Ok::<_, StoreError>(cluster::parse(&text(&reply).unwrap_or_default()))
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, asked).await {
                Ok(Ok(view)) if !view.is_empty() => {
                    let mut seen = Vec::new();
                    for node in &view {
                        seen.push(at_address(&seeds[0], &node.host, node.port)?);
                    }
                    *known.lock().unwrap_or_else(|e| e.into_inner()) = seen;
                    return Ok(view);
                }
                Ok(Ok(_)) => last_error = StoreError::backend("CLUSTER NODES named no node"),
                Ok(Err(error)) => last_error = error,
                Err(_) => last_error = StoreError::timeout(),
            }
        }
        Err(last_error)
    }
}

/// `template` (credentials, TLS) at another node's address.
fn at_address(template: &ConnectionInfo, host: &str, port: u16) -> Result<ConnectionInfo, StoreError> {
    let addr = match template.addr().clone() {
        ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host.to_owned(), port),
        ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
            ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure, tls_params }
        }
        _ => return Err(StoreError::invalid_input("Redis Cluster seeds must be TCP URLs")),
    };
    Ok(template.clone().set_addr(addr))
}

fn changed(why: cluster::Changed) -> StoreError {
    StoreError::backend(match why {
        cluster::Changed::NotThePrimary(id) => format!("cluster node {id} is no longer a primary"),
        cluster::Changed::Untracked(id) => format!("cluster node {id} takes writes and is not tracked yet"),
    })
}

fn lose(current: &Mutex<Option<Subscription>>, lost: &Notify, number: u64) {
    let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
    if current.as_ref().is_some_and(|sub| sub.number == number) {
        *current = None;
        lost.notify_one();
    }
}

/// The fence on one tracking connection: `Ok` when the reply shows nothing changed.
async fn fence_one(
    mut node: Tracked,
    deployment: Arc<Deployment>,
    ids: Arc<BTreeSet<String>>,
) -> Result<(), StoreError> {
    let command = match &*deployment {
        Deployment::Single(_) => redis::cmd("PING"),
        Deployment::Sentinel(_) => redis::cmd("ROLE"),
        Deployment::Cluster { .. } => redis::cmd("CLUSTER").arg("NODES").clone(),
    };
    let reply: Value = command.query_async(&mut node.conn).await.map_err(StoreError::backend)?;
    match &*deployment {
        Deployment::Single(_) if text(&reply).as_deref() == Some("PONG") => Ok(()),
        Deployment::Sentinel(_) if is_primary_role(&reply) => Ok(()),
        Deployment::Sentinel(_) => Err(StoreError::backend("the tracked server is no longer the primary")),
        Deployment::Cluster { .. } => {
            cluster::check(&node.id, &cluster::parse(&text(&reply).unwrap_or_default()), &ids).map_err(changed)
        }
        Deployment::Single(_) => Err(StoreError::corrupt(format!("unexpected fence reply {reply:?}"))),
    }
}

impl InvalidationBus for RedisBus {
    fn run(&self, sink: Arc<dyn InvalidationSink>) -> BusFuture<()> {
        let bus = self.clone();
        Box::pin(async move {
            let mut number = 0;
            loop {
                number += 1;
                let notified = bus.lost.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                match bus.subscribe(&sink, number).await {
                    Ok(()) => {
                        notified.await;
                        sink.reset();
                        tracing::warn!(target: "tower_token_auth::cache", "a Redis tracking connection of the cache was lost or its server changed role; subscribing again");
                    }
                    Err(error) => {
                        tracing::warn!(target: "tower_token_auth::cache", %error, "the cache cannot subscribe to Redis invalidations");
                    }
                }
                tokio::time::sleep(RECONNECT_EVERY).await;
            }
        })
    }

    fn fence(&self) -> BusFuture<Result<(), StoreError>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let bus = self.clone();
        Box::pin(async move {
            let Some(sub) = current else { return Err(StoreError::backend("no invalidation connection")) };
            let result = if let [node] = &*sub.nodes {
                fence_one(node.clone(), bus.deployment.clone(), sub.ids.clone()).await
            } else {
                // Every primary at once; the fence holds only when all of them answered.
                let mut fences = tokio::task::JoinSet::new();
                for node in sub.nodes.iter() {
                    fences.spawn(fence_one(node.clone(), bus.deployment.clone(), sub.ids.clone()));
                }
                let mut result = Ok(());
                while let Some(done) = fences.join_next().await {
                    if let Err(error) = done.unwrap_or_else(|e| Err(StoreError::backend(e))) {
                        result = Err(error);
                        break;
                    }
                }
                result
            };
            if result.is_err() {
                bus.lose(sub.number);
            }
            result
        })
    }
}
