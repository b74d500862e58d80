//! Durable writes: with [`RedisStore::wait_for_replicas`](super::RedisStore::wait_for_replicas), every
//! script that issues or revokes tokens travels with a `WAIT numreplicas timeout` right behind it, in
//! one pipeline on one connection (on a cluster, to the primary that owns the user's slot), and its
//! result counts only once enough replicas acknowledged it.
//!
//! Why one pipeline: `WAIT` waits for the replication offset of the last write *of its own client
//! connection*. Sent separately, it could go out on a connection redis-rs has just reconnected, whose
//! server-side client never wrote anything, and `WAIT` would then answer at once with every replica:
//! an acknowledgement of nothing. In one pipeline the script and its `WAIT` are written together, so
//! they reach the same server connection, in order.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Arg, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value};

use super::connection::{redirect_address, Connection};

/// How many replicas must acknowledge each write, and how long to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReplicaAck {
    pub(super) replicas: u32,
    pub(super) timeout: Duration,
}

impl ReplicaAck {
    fn wait_cmd(self) -> Cmd {
        // `WAIT n 0` would block forever: at least one millisecond.
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replicas).arg(ms);
        wait
    }
}

/// A connection that sends `WAIT` behind every script call (`EVALSHA`, `EVAL`) and passes every other
/// command (the `SCRIPT LOAD` after a `NOSCRIPT`) through. A script whose `WAIT` counted fewer replicas
/// than asked fails, and [`unacknowledged`](Self::unacknowledged) says how many did acknowledge it.
pub(super) struct Acknowledged<'c> {
    conn: &'c mut Connection,
    ack: ReplicaAck,
    wait: Cmd,
    unacknowledged: Option<i64>,
}

impl<'c> Acknowledged<'c> {
    pub(super) fn new(conn: &'c mut Connection, ack: ReplicaAck) -> Self {
        Self { conn, ack, wait: ack.wait_cmd(), unacknowledged: None }
    }

    /// `Some(acks)` when the last script ran but only `acks` replicas acknowledged it in time.
    pub(super) fn unacknowledged(&self) -> Option<i64> {
        self.unacknowledged
    }

    async fn script_then_wait(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        self.unacknowledged = None;
        // `EVALSHA sha numkeys key...`: every key of a script is in one slot, that of the first.
        let Some(Arg::Simple(key)) = cmd.args_iter().nth(3) else {
            return Err(RedisError::from((ErrorKind::Client, "a script call without a key to route it by")));
        };
        let [script, wait] = request_then_wait(self.conn, cmd, key, &self.wait).await?;
        // A script that failed (NOSCRIPT, READONLY, ...) did not write: its error is the answer.
        let script = match script {
            Value::ServerError(error) => return Err(error.into()),
            value => value,
        };
        let acks = match wait {
            Value::Int(acks) => acks,
            Value::ServerError(error) => return Err(error.into()),
            other => return Err(RedisError::from((ErrorKind::Parse, "unexpected WAIT reply", format!("{other:?}")))),
        };
        if acks < i64::from(self.ack.replicas) {
            self.unacknowledged = Some(acks);
            return Err(RedisError::from((ErrorKind::Io, "write not acknowledged by enough replicas")));
        }
        Ok(script)
    }
}

fn is_script_call(cmd: &Cmd) -> bool {
    matches!(cmd.args_iter().next(), Some(Arg::Simple(name)) if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL"))
}

impl ConnectionLike for Acknowledged<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if is_script_call(cmd) {
            Box::pin(self.script_then_wait(cmd))
        } else {
            self.conn.req_packed_command(cmd)
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.conn.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// Sends `cmd` and `wait` as one pipeline and returns both replies (errors as values). On a cluster the
/// pipeline goes to the primary owning `cmd`'s slot, following `MOVED` and `ASK` (with `ASKING` in the
/// same pipeline) and trying again every 10 ms through `TRYAGAIN` and `CLUSTERDOWN`; the caller's
/// command timeout bounds the whole.
async fn request_then_wait(conn: &mut Connection, cmd: &Cmd, key: &[u8], wait: &Cmd) -> RedisResult<[Value; 2]> {
    let marker = marker_key(key);
    let mut pipe = redis::pipe();
    pipe.add_command(cmd.clone()).add_command(marker.clone()).add_command(wait.clone());
    let cluster = match conn {
        Connection::Cluster(cluster) => cluster,
        other => return pair(other.req_packed_commands(&pipe, 0, 3).await?),
    };
    let mut route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
    let mut asking = false;
    loop {
        let result = if asking {
            // `ASKING` holds for the next command only.
            let mut with_asking = redis::pipe();
            with_asking.cmd("ASKING").add_command(cmd.clone()).cmd("ASKING").add_command(marker.clone());
            with_asking.add_command(wait.clone());
            cluster.route_pipeline(with_asking, 0, 5, route.clone()).await.map(|replies| {
                replies.into_iter().enumerate().filter(|(i, _)| i % 2 == 1 || *i == 4).map(|(_, v)| v).collect()
            })
        } else {
            cluster.route_pipeline(pipe.clone(), 0, 3, route.clone()).await
        };
        let error = match result {
            Ok(replies) => match replies.first() {
                Some(Value::ServerError(e)) if redirected(e.kind()) => RedisError::from(e.clone()),
                _ => return pair(replies),
            },
            Err(e) if matches!(e.kind(), ErrorKind::Server(k) if redirected(Some(k))) => e,
            Err(e) if e.kind() == ErrorKind::ClusterConnectionNotFound => e,
            Err(e) => return Err(e),
        };
        asking = false;
        match error.kind() {
            ErrorKind::Server(kind @ (ServerErrorKind::Ask | ServerErrorKind::Moved)) => {
                let Some((host, port)) = redirect_address(&error) else {
                    return Err(error);
                };
                route = SingleNodeRoutingInfo::ByAddress { host, port };
                asking = kind == ServerErrorKind::Ask;
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The marker write and `WAIT` alone, on the primary of `key`'s slot (a `PING` stands for the script):
/// `Some(acks)` when fewer replicas than `ack` asks acknowledged every earlier write of that primary.
pub(super) async fn wait_behind_marker(conn: &mut Connection, key: &[u8], ack: ReplicaAck) -> RedisResult<Option<i64>> {
    let [_, wait] = request_then_wait(conn, &redis::cmd("PING"), key, &ack.wait_cmd()).await?;
    match wait {
        Value::Int(acks) if acks >= i64::from(ack.replicas) => Ok(None),
        Value::Int(acks) => Ok(Some(acks)),
        Value::ServerError(error) => Err(error.into()),
        other => Err(RedisError::from((ErrorKind::Parse, "unexpected WAIT reply", format!("{other:?}")))),
    }
}

fn redirected(kind: Option<ServerErrorKind>) -> bool {
    matches!(
        kind,
        Some(ServerErrorKind::Ask | ServerErrorKind::Moved | ServerErrorKind::TryAgain | ServerErrorKind::ClusterDown)
    )
}

/// A write that always reaches the replication stream, behind every script, in the script's slot:
/// `SET <the first key's hash tag>:w "" PX 60000`. `WAIT` waits for the offset of its connection's
/// last write; a script that writes nothing (a retried logout finding its tokens already gone) would
/// otherwise leave that offset where it was, and on a new connection `WAIT` would acknowledge
/// nothing, while the earlier attempt that did the write may not be on any replica yet. Behind this
/// write, `WAIT` covers everything the primary applied before it.
fn marker_key(first_key: &[u8]) -> Cmd {
    // The store's keys are `{prefix}{bucket}:...`: keep up to the hash tag, so the slot is the same.
    let tag_end = first_key.iter().position(|&b| b == b'}').map_or(first_key.len(), |i| i + 1);
    let mut key = first_key[..tag_end].to_vec();
    key.extend_from_slice(b":w");
    let mut set = redis::cmd("SET");
    set.arg(key).arg("").arg("PX").arg(60_000);
    set
}

/// The script's reply and `WAIT`'s, from the three replies of script, marker write, `WAIT`.
fn pair(replies: Vec<Value>) -> RedisResult<[Value; 2]> {
    let [script, _marker, wait]: [Value; 3] = replies
        .try_into()
        .map_err(|_| RedisError::from((ErrorKind::Parse, "expected three replies: the script's, SET's and WAIT's")))?;
    Ok([script, wait])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_script_calls_wait_and_wait_never_blocks_forever() {
        assert!(is_script_call(redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(is_script_call(redis::cmd("eval").arg("return 1").arg(0)));
        assert!(!is_script_call(redis::cmd("SCRIPT").arg("LOAD").arg("return 1")));
        let ack = ReplicaAck { replicas: 2, timeout: Duration::ZERO };
        assert_eq!(ack.wait_cmd().get_packed_command(), redis::cmd("WAIT").arg(2).arg(1).get_packed_command());
    }
}
