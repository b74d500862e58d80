//! [`RedisBus`]: invalidations from a single Redis primary, by server-assisted client tracking.
//!
//! The bus keeps one RESP3 connection of its own per instance, with
//! `CLIENT TRACKING ON BCAST PREFIX <key prefix>`: every write to a key under the store's prefix, by
//! any client (another instance, `redis-cli`, a key expiring, `FLUSHALL`), is pushed to it. The push
//! for a write is queued on every tracking connection before the writer's reply leaves the server,
//! and redis-rs hands pushes to the bus's sender inside its connection driver, in stream order,
//! before it routes any later reply. The sender evicts right there, so when the fence's `PONG` reaches
//! the cache, every invalidation queued before the `PING` has been applied.
//!
//! A session key invalidates both tokens of its session; index and counter keys are ignored (every
//! revocation deletes or rewrites the session hash); a `NULL` invalidation (flush) empties the cache.
//! The connection is named `tta-cache` in `CLIENT LIST` (see [`RedisBus::client_name`]); when it drops, the cache is emptied and the
//! bus reconnects every 100 ms until it succeeds.
//!
//! Limits: a single primary (or a Sentinel-managed primary reached through one URL). Redis Cluster
//! needs one tracking connection per primary and is not supported by this bus yet. The server must
//! speak RESP3 (Redis 6 or later) and allow `CLIENT TRACKING` (some managed services do not).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::Notify;

use super::bus::{BusFuture, Invalidation, InvalidationBus, InvalidationSink};
use crate::store::{RedisStore, StoreError};

/// The default name of the bus connections in `CLIENT LIST` (see [`RedisBus::client_name`]).
pub const CLIENT_NAME: &str = "tta-cache";

const RECONNECT_EVERY: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The [`InvalidationBus`] of a [`RedisStore`] on a single primary. See the [module docs](self).
#[derive(Clone)]
pub struct RedisBus {
    client: Client,
    store: RedisStore,
    current: Arc<Mutex<Option<Live>>>,
    lost: Arc<Notify>,
    name: Arc<str>,
}

#[derive(Clone)]
struct Live {
    conn: MultiplexedConnection,
    /// Which connection this is; a failure reported for an older one is ignored.
    number: u64,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus").field("prefix", &self.store.tracked_prefix()).finish_non_exhaustive()
    }
}

impl RedisBus {
    /// A bus for `store`, on its own connection to `url` (the server `store` uses). Connects when the
    /// cache starts it.
    pub fn new(url: &str, store: &RedisStore) -> Result<Self, StoreError> {
        if store.is_cluster() || url.contains(',') {
            return Err(StoreError::invalid_input("RedisBus supports a single primary, not Redis Cluster"));
        }
        let info = url.into_connection_info().map_err(StoreError::backend)?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings)).map_err(StoreError::backend)?;
        Ok(Self {
            client,
            store: store.clone(),
            current: Arc::default(),
            lost: Arc::default(),
            name: CLIENT_NAME.into(),
        })
    }

    /// Names the bus connection `name` in `CLIENT LIST` (default [`CLIENT_NAME`]; no spaces).
    pub fn client_name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    fn lose(&self, number: u64) {
        lose(&self.current, &self.lost, number);
    }

    async fn subscribe(&self, sink: &Arc<dyn InvalidationSink>, number: u64) -> Result<(), StoreError> {
        // The sender lives in the connection's driver: it must not hold the connection itself (through
        // `current`), or the connection would keep itself alive after the cache is dropped.
        let (store, current, lost) = (self.store.clone(), Arc::downgrade(&self.current), self.lost.clone());
        let push_sink = sink.clone();
        let sender = move |push: PushInfo| -> Result<(), std::convert::Infallible> {
            if deliver(&store, &*push_sink, push) {
                if let Some(current) = current.upgrade() {
                    lose(&current, &lost, number);
                }
            }
            Ok(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None)
            .set_push_sender(sender);
        let mut conn =
            tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_multiplexed_async_connection_with_config(&config))
                .await
                .map_err(|_| StoreError::timeout())?
                .map_err(StoreError::backend)?;
        let mut setup = redis::pipe();
        setup.cmd("CLIENT").arg("SETNAME").arg(&*self.name).ignore();
        setup.cmd("CLIENT").arg("TRACKING").arg("ON").arg("BCAST").arg("PREFIX").arg(self.store.tracked_prefix());
        let _: Vec<Value> = tokio::time::timeout(CONNECT_TIMEOUT, setup.query_async(&mut conn))
            .await
            .map_err(|_| StoreError::timeout())?
            .map_err(StoreError::backend)?;
        // Writes before this point may have been missed: start a new epoch, then let fences through.
        sink.reset();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Live { conn, number });
        Ok(())
    }
}

fn lose(current: &Mutex<Option<Live>>, lost: &Notify, number: u64) {
    let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
    if current.as_ref().is_some_and(|live| live.number == number) {
        *current = None;
        lost.notify_one();
    }
}

/// Applies one push; called by redis-rs inside the connection driver, before any later reply is routed.
/// True when the connection is gone.
fn deliver(store: &RedisStore, sink: &dyn InvalidationSink, push: PushInfo) -> bool {
    match push.kind {
        PushKind::Invalidate => match push.data.first() {
            Some(Value::Array(keys)) => {
                let ids: Vec<_> = keys
                    .iter()
                    .filter_map(|key| match key {
                        Value::BulkString(key) => store.token_ids_in_key(key),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                if !ids.is_empty() {
                    sink.invalidate(Invalidation::Tokens(ids));
                }
            }
            // `NULL`: a flush. Anything else is not understood: drop everything.
            _ => sink.invalidate(Invalidation::Everything),
        },
        PushKind::Disconnection => {
            sink.reset();
            return true;
        }
        // `tracking-redir-broken` and kinds this version does not know: be safe.
        PushKind::Other(_) => sink.reset(),
        _ => {}
    }
    false
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
                        tracing::warn!(target: "tower_token_auth::cache", "the cache's Redis tracking connection was lost; reconnecting");
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
        let live = self.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let bus = self.clone();
        Box::pin(async move {
            let Some(mut live) = live else { return Err(StoreError::backend("no invalidation connection")) };
            match redis::cmd("PING").query_async::<Value>(&mut live.conn).await {
                Ok(Value::SimpleString(pong)) if pong == "PONG" => Ok(()),
                Ok(other) => {
                    bus.lose(live.number);
                    Err(StoreError::corrupt(format!("unexpected fence reply {other:?}")))
                }
                Err(error) => {
                    bus.lose(live.number);
                    Err(StoreError::backend(error))
                }
            }
        })
    }
}
