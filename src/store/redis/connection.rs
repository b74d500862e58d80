//! One connection type for every deployment, so the store has one code path: a
//! [`ConnectionManager`] to a single primary, a [`SentinelConnection`] to the primary Sentinel names,
//! or a [`ClusterConnection`] to a Redis Cluster.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};

use super::sentinel::SentinelConnection;
use crate::store::StoreError;

#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Sentinel(SentinelConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    #[inline]
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => Box::pin(c.request(cmd)),
            Connection::Cluster(c) => cluster_request(c, cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Sentinel(c) => Box::pin(c.request_pipeline(cmd, offset, count)),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Sentinel(c) => c.db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// A request to the cluster that also gets through a slot migration:
///
/// * redis-rs follows `ASK` by sending `ASKING` and then the command as two requests on the target's
///   multiplexed connection, so under concurrency another request's command often comes in between
///   and takes the `ASKING`; the command is then bounced back (`MOVED`) until redis-rs gives up with
///   the `ASK` error. Here `ASKING` and the command go as one pipeline, which the connection writes in
///   one piece.
/// * A multi-key command (every script here) on a slot whose keys are split between two nodes gets
///   `TRYAGAIN` until the migration of that slot ends. That, `CLUSTERDOWN` (a failover in progress),
///   a `MOVED` left over once redis-rs has used its retries while the topology changes, and "no
///   connection" while it rebuilds its connections all mean the command did not run: it is tried
///   again every 10 ms. The caller's command timeout bounds the whole request.
fn cluster_request<'a>(cluster: &'a mut ClusterConnection, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
    Box::pin(async move {
        match cluster.req_packed_command(cmd).await.and_then(top_level_error) {
            // The rare path in a box of its own: inline, its state would make every request's future
            // (and the copy into its box) several times larger.
            Err(error) if should_follow(&error) => Box::pin(follow(cluster, cmd, error)).await,
            result => result,
        }
    })
}

fn should_follow(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::Ask | ServerErrorKind::TryAgain | ServerErrorKind::ClusterDown | ServerErrorKind::Moved
        ) | ErrorKind::ClusterConnectionNotFound
    )
}

async fn follow(cluster: &mut ClusterConnection, cmd: &Cmd, error: RedisError) -> RedisResult<Value> {
    let mut result = Err(error);
    loop {
        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) if should_follow(&error) => error,
            Err(error) => return Err(error),
        };
        if error.kind() == ErrorKind::Server(ServerErrorKind::Ask) {
            let Some((host, port)) = redirect_address(&error) else {
                return Err(error);
            };
            let mut asking = redis::pipe();
            asking.cmd("ASKING").add_command(cmd.clone());
            let route = SingleNodeRoutingInfo::ByAddress { host, port };
            result = cluster.route_pipeline(asking, 1, 1, route).await.and_then(|mut replies| {
                replies.pop().ok_or_else(|| RedisError::from((ErrorKind::Parse, "no reply after ASKING")))
            });
            result = result.and_then(top_level_error);
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            result = cluster.req_packed_command(cmd).await.and_then(top_level_error);
        }
    }
}

/// The `host:port` a `MOVED` or `ASK` error points to.
pub(super) fn redirect_address(error: &RedisError) -> Option<(String, u16)> {
    let (host, port) = error.redirect_node()?.0.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// A reply that is an error, as an `Err`. Only the top level: `Value::extract_error` rebuilds every
/// array it walks through, about 600 instructions for a `find` reply (callgrind), and the errors
/// acted on here are never nested.
#[inline]
fn top_level_error(value: Value) -> RedisResult<Value> {
    match value {
        Value::ServerError(error) => Err(error.into()),
        value => Ok(value),
    }
}

impl Connection {
    /// One command, as `ConnectionLike::req_packed_command` but without the second box around a
    /// cluster request (the hot path: `find`). Its own state is two pointers; redis-rs boxes the
    /// request, and the rare follow-up has a box of its own.
    #[inline]
    pub(super) async fn request(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd).await.and_then(top_level_error),
            Connection::Sentinel(c) => c.request(cmd).await.and_then(top_level_error),
            Connection::Cluster(c) => match c.req_packed_command(cmd).await.and_then(top_level_error) {
                Err(error) if should_follow(&error) => Box::pin(follow(c, cmd, error)).await,
                result => result,
            },
        }
    }

    /// Sends `cmd` to every primary in turn (one primary when not a cluster), e.g. `SCAN`.
    pub(super) async fn primaries(&mut self) -> Result<Vec<Option<(String, u16)>>, RedisError> {
        let Connection::Cluster(cluster) = self else { return Ok(vec![None]) };
        let slots: Value = cluster
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let mut primaries = Vec::new();
        if let Value::Array(ranges) = slots {
            for range in ranges {
                let Value::Array(parts) = range else { continue };
                let Some(Value::Array(node)) = parts.get(2) else { continue };
                let (Some(host), Some(Value::Int(port))) = (node.first(), node.get(1)) else { continue };
                let host = match host {
                    Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    Value::SimpleString(s) => s.clone(),
                    _ => continue,
                };
                let Ok(port) = u16::try_from(*port) else { continue };
                if !primaries.contains(&Some((host.clone(), port))) {
                    primaries.push(Some((host, port)));
                }
            }
        }
        Ok(primaries)
    }

    /// Runs `cmd` on the given primary (from [`primaries`](Self::primaries)).
    pub(super) async fn on(&mut self, node: &Option<(String, u16)>, cmd: Cmd) -> Result<Value, RedisError> {
        match (self, node) {
            (Connection::Cluster(cluster), Some((host, port))) => {
                let routing =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port });
                cluster.route_command(cmd, routing).await
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

/// How the manager reconnects: one attempt per failed request, no backoff of its own. A refused
/// connection then fails the request at once, with its cause (issue 13), instead of waiting out
/// retries until the command timeout hides it; the next request tries again.
fn manager_config(connect_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(connect_timeout))
        .set_number_of_retries(0)
}

pub(super) async fn connect_single(url: &str, timeout: Duration) -> Result<ConnectionManager, StoreError> {
    let client = redis::Client::open(url).map_err(super::map_error)?;
    // Connect once on our own: the manager would retry a refused connection until the timeout, and
    // report only the timeout.
    let config = AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
    let probe = client.get_multiplexed_async_connection_with_config(&config);
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(super::map_error(e)),
        Err(_) => return Err(StoreError::timeout()),
    }
    let manager = ConnectionManager::new_with_config(client, manager_config(timeout));
    match tokio::time::timeout(timeout, manager).await {
        Ok(result) => result.map_err(super::map_error),
        Err(_) => Err(StoreError::timeout()),
    }
}

pub(super) fn connect_single_lazy(url: &str, timeout: Duration) -> Result<ConnectionManager, StoreError> {
    let client = redis::Client::open(url).map_err(super::map_error)?;
    ConnectionManager::new_lazy_with_config(client, manager_config(timeout)).map_err(super::map_error)
}

/// A cluster client from seed nodes. Retries (topology changes, a failed primary) wait 10 to 100 ms,
/// so a promoted replica is found within a few hundred milliseconds of its promotion; the command
/// timeout bounds the whole request.
fn cluster_builder<S: AsRef<str>>(nodes: &[S], timeout: Duration) -> Result<ClusterClientBuilder, StoreError> {
    let nodes: Vec<&str> = nodes.iter().map(|n| n.as_ref().trim()).filter(|n| !n.is_empty()).collect();
    if nodes.is_empty() {
        return Err(StoreError::backend("a Redis Cluster needs at least one seed node URL"));
    }
    Ok(ClusterClientBuilder::new(nodes)
        .connection_timeout(timeout)
        .retries(6)
        .min_retry_wait(10)
        .max_retry_wait(100)
        .retry_wait_formula(10, 2))
}

pub(super) async fn connect_cluster<S: AsRef<str>>(
    nodes: &[S],
    timeout: Duration,
) -> Result<ClusterConnection, StoreError> {
    let client = cluster_builder(nodes, timeout)?.build().map_err(super::map_error)?;
    match tokio::time::timeout(timeout, client.get_async_connection()).await {
        Ok(result) => result.map_err(super::map_error),
        Err(_) => Err(StoreError::timeout()),
    }
}

pub(super) fn connect_cluster_lazy<S: AsRef<str>>(
    nodes: &[S],
    timeout: Duration,
) -> Result<ClusterConnection, StoreError> {
    let client = cluster_builder(nodes, timeout)?.build().map_err(super::map_error)?;
    let config = redis::cluster::ClusterConfig::new().set_connection_timeout(timeout);
    Ok(client.get_pending_async_connection_with_config(config))
}
