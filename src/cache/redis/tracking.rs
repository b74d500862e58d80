//! One tracking connection: a RESP3 connection to one Redis server with
//! `CLIENT TRACKING ON BCAST PREFIX <key prefix>`, whose pushes are applied to the cache inside
//! redis-rs's connection driver, in stream order, before any later reply is routed.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, Value};

use crate::cache::bus::{Invalidation, InvalidationSink};
use crate::store::{RedisStore, StoreError};

/// How long connecting and subscribing one connection may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a tracking connection to the server `client` names: named `name` in `CLIENT LIST`, tracking
/// every key under `store`'s prefix, its pushes delivered to `sink`. `lost` runs (in the connection's
/// driver) when a push says the connection is gone. `check` is sent in the same pipeline, after the
/// tracking is on; its reply is returned (`ROLE`, `CLUSTER NODES`: what the caller must verify before
/// it trusts the connection).
pub(super) async fn connect(
    client: &Client,
    store: &RedisStore,
    name: &str,
    sink: &Arc<dyn InvalidationSink>,
    lost: impl Fn() + Send + Sync + 'static,
    check: Option<redis::Cmd>,
) -> Result<(MultiplexedConnection, Value), StoreError> {
    let (store_for_pushes, push_sink) = (store.clone(), sink.clone());
    let sender = move |push: PushInfo| -> Result<(), std::convert::Infallible> {
        if deliver(&store_for_pushes, &*push_sink, push) {
            lost();
        }
        Ok(())
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None)
        .set_push_sender(sender);
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection_with_config(&config))
        .await
        .map_err(|_| StoreError::timeout())?
        .map_err(StoreError::backend)?;
    let mut setup = redis::pipe();
    setup.cmd("CLIENT").arg("SETNAME").arg(name).ignore();
    setup.cmd("CLIENT").arg("TRACKING").arg("ON").arg("BCAST").arg("PREFIX").arg(store.tracked_prefix()).ignore();
    setup.cmd("PING");
    if let Some(check) = check {
        setup.add_command(check);
    }
    let mut replies: Vec<Value> = tokio::time::timeout(CONNECT_TIMEOUT, setup.query_async(&mut conn))
        .await
        .map_err(|_| StoreError::timeout())?
        .map_err(StoreError::backend)?;
    let checked = replies.pop().unwrap_or(Value::Nil);
    Ok((conn, checked))
}

/// Applies one push; called by redis-rs inside the connection driver, before any later reply is
/// routed. True when the connection is gone.
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
        // `tracking-redir-broken` and kinds this version does not know: invalidations may have been
        // missed on this connection, so it is dropped (and the bus subscribes again), not trusted on.
        PushKind::Other(_) => {
            sink.reset();
            return true;
        }
        _ => {}
    }
    false
}

/// The text of a bulk or simple string reply.
pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        _ => None,
    }
}
