//! A connection to the primary of a Redis Sentinel deployment that follows failovers.
//!
//! redis-rs resolves a primary through Sentinel ([`SentinelClient`]) but has no connection manager
//! that does it again when the primary changes. This one keeps one multiplexed connection to the
//! primary Sentinel named, shared by every clone, and drops it when a request shows it is no longer
//! the primary's: an I/O error, a dropped or refused connection, no answer within the command timeout,
//! or `READONLY` (a demoted primary that now replicates the new one). The request that saw it fails
//! (the layer answers `503`), and the next one asks Sentinel again. A request is never sent anywhere
//! else than to the server Sentinel named and that confirmed its role (`ROLE`) when connected.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisResult, Value};

use crate::store::StoreError;

/// The parts of a `redis-sentinel://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SentinelUrl {
    pub(super) sentinels: Vec<(String, u16)>,
    pub(super) master: String,
    pub(super) db: i64,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
}

/// The URL scheme of a Sentinel deployment.
pub(super) const SCHEME: &str = "redis-sentinel://";

impl SentinelUrl {
    /// Parses `redis-sentinel://[[user]:password@]host:port[,host:port...]/MASTER_NAME[/DB]`. The
    /// credentials are the primary's (Sentinels are asked without); they are taken literally.
    pub(super) fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |why: &str| StoreError::backend(format!("invalid redis-sentinel:// URL: {why}"));
        let rest = url.strip_prefix(SCHEME).ok_or_else(|| invalid("it must start with redis-sentinel://"))?;
        let (authority, path) = rest.split_once('/').ok_or_else(|| invalid("the master name is missing"))?;
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((credentials, hosts)) => (Some(credentials), hosts),
            None => (None, authority),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((user, password)) => ((!user.is_empty()).then(|| user.to_owned()), Some(password.to_owned())),
                None => (Some(c.to_owned()), None),
            },
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let (name, port) = host.rsplit_once(':').ok_or_else(|| invalid("every Sentinel needs host:port"))?;
            let port = port.parse::<u16>().map_err(|_| invalid("a Sentinel port is not a number"))?;
            sentinels.push((name.trim_start_matches('[').trim_end_matches(']').to_owned(), port));
        }
        if sentinels.is_empty() {
            return Err(invalid("no Sentinel address"));
        }
        let mut parts = path.split('/');
        let master = parts.next().filter(|m| !m.is_empty()).ok_or_else(|| invalid("the master name is missing"))?;
        let db = match parts.next().filter(|d| !d.is_empty()) {
            Some(db) => db.parse::<i64>().map_err(|_| invalid("the database is not a number"))?,
            None => 0,
        };
        if parts.next().is_some() {
            return Err(invalid("expected /MASTER_NAME[/DB] after the Sentinels"));
        }
        Ok(Self { sentinels, master: master.to_owned(), db, username, password })
    }
}

impl SentinelUrl {
    /// A resolver of the primary: its clients connect with the URL's database and credentials.
    pub(super) fn client_builder(&self) -> Result<SentinelClientBuilder, StoreError> {
        let sentinels = self.sentinels.iter().map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder = SentinelClientBuilder::new(sentinels, &self.master, SentinelServerType::Master)
            .map_err(super::map_error)?
            .set_client_to_redis_db(self.db);
        if let Some(username) = &self.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        Ok(builder)
    }
}

/// A connection to the current primary, shared by clones. See the [module docs](self).
#[derive(Clone)]
pub(super) struct SentinelConnection {
    shared: Arc<Shared>,
    /// Bounds every request, here rather than only by the caller: a request that timed out must drop the
    /// connection (the primary may be frozen, or cut off while Sentinel promotes a replica).
    timeout: Duration,
}

struct Shared {
    resolver: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<Current>>,
    config: AsyncConnectionConfig,
    db: i64,
}

#[derive(Clone)]
struct Current {
    generation: u64,
    conn: MultiplexedConnection,
}

impl SentinelConnection {
    /// A connection that asks Sentinel for the primary on first use.
    pub(super) fn lazy(url: &SentinelUrl, timeout: Duration) -> Result<Self, StoreError> {
        let client = url.client_builder()?.build().map_err(super::map_error)?;
        // No response timeout of redis-rs's own: `request` bounds each request and then drops the
        // connection.
        let config = AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(None);
        Ok(Self {
            shared: Arc::new(Shared {
                resolver: tokio::sync::Mutex::new(client),
                current: Mutex::new(None),
                config,
                db: url.db,
            }),
            timeout,
        })
    }

    /// A connection to the primary, resolved now: a wrong name or unreachable Sentinels fail at once.
    pub(super) async fn connect(url: &SentinelUrl, timeout: Duration) -> Result<Self, StoreError> {
        let conn = Self::lazy(url, timeout)?;
        match tokio::time::timeout(timeout, conn.current()).await {
            Ok(result) => result.map(drop).map_err(super::map_error)?,
            Err(_) => return Err(StoreError::timeout()),
        }
        Ok(conn)
    }

    /// Sets the bound of each request (the store's command timeout).
    pub(super) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub(super) fn db(&self) -> i64 {
        self.shared.db
    }

    /// The connection to the primary, asking Sentinel for it if there is none.
    async fn current(&self) -> RedisResult<Current> {
        if let Some(current) = self.shared.current.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(current);
        }
        // One resolution at a time; the ones that waited use its result.
        let mut resolver = self.shared.resolver.lock().await;
        let generation = {
            let current = self.shared.current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(current) = current.clone() {
                return Ok(current);
            }
            NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        let client = resolver.async_get_client().await?;
        let conn = client.get_multiplexed_async_connection_with_config(&self.shared.config).await?;
        let current = Current { generation, conn };
        *self.shared.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(current.clone());
        tracing::debug!("resolved the Redis primary through Sentinel");
        Ok(current)
    }

    /// Drops connection `generation` if it is still the current one.
    fn forget(&self, generation: u64) {
        let mut current = self.shared.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            tracing::warn!(
                "the Redis primary is unreachable or was demoted; asking Sentinel again on the next request"
            );
            *current = None;
        }
    }

    /// One command to the primary: sent behind a `ROLE`, in one write (see [`checked`](Self::checked)).
    pub(super) async fn request(&self, cmd: &Cmd) -> RedisResult<Value> {
        let mut pipeline = redis::pipe();
        pipeline.cmd("ROLE").add_command(cmd.clone());
        let mut replies = self.checked(&pipeline, 1).await?;
        replies.pop().ok_or_else(|| RedisError::from((ErrorKind::Parse, "no reply")))
    }

    /// A pipeline to the primary, written in one piece on one connection, behind a `ROLE` (see
    /// [`checked`](Self::checked)). Not for transactions (the store sends none through Sentinel).
    pub(super) async fn request_pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        debug_assert!(!pipeline.is_transaction());
        let mut with_role = redis::pipe();
        with_role.cmd("ROLE");
        for cmd in pipeline.cmd_iter() {
            with_role.add_command(cmd.clone());
        }
        let replies = self.checked(&with_role, offset + count).await?;
        Ok(replies.into_iter().skip(offset).collect())
    }

    /// Sends `pipeline`, whose first command is `ROLE`, and returns the `replies` replies after it, if
    /// the server still is the primary. A demoted primary keeps answering reads, from its old data while
    /// it resyncs from the new one, and only writes fail (`READONLY`): without the `ROLE`, a store that
    /// did not write since the failover would read revoked tokens as valid. Redis runs the commands of
    /// one write of one client back to back, so the `ROLE` speaks for the read behind it.
    async fn checked(&self, pipeline: &Pipeline, replies: usize) -> RedisResult<Vec<Value>> {
        let mut values = self
            .send(
                |mut conn| async move { conn.req_packed_commands(pipeline, 0, replies + 1).await },
                |result| match result {
                    Ok(values) => gone(Ok(values)) || !values.first().is_some_and(is_primary_role),
                    Err(e) => gone(Err(e)),
                },
            )
            .await?;
        if !values.first().is_some_and(is_primary_role) {
            return Err(RedisError::from((ErrorKind::Io, "the server Sentinel named is no longer the primary")));
        }
        values.remove(0);
        Ok(values)
    }

    /// Sends `request` on the current connection, and forgets that connection when the result shows it
    /// no longer leads to a primary.
    async fn send<'a, T, Fut>(
        &self,
        request: impl FnOnce(MultiplexedConnection) -> Fut,
        shows_gone: fn(&RedisResult<T>) -> bool,
    ) -> RedisResult<T>
    where
        Fut: std::future::Future<Output = RedisResult<T>> + 'a,
    {
        let attempt = async {
            let current = self.current().await?;
            let generation = current.generation;
            let result = request(current.conn).await;
            if shows_gone(&result) {
                self.forget(generation);
            }
            result
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                // Whatever it was waiting for (Sentinel or the primary) did not answer in time.
                if self.shared.current.lock().unwrap_or_else(|e| e.into_inner()).take().is_some() {
                    tracing::warn!(
                        "the Redis primary did not answer in time; asking Sentinel again on the next request"
                    );
                }
                Err(RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))
            }
        }
    }
}

/// Whether a `ROLE` reply says "master".
pub(crate) fn is_primary_role(reply: &Value) -> bool {
    let first = match reply {
        Value::Array(parts) => parts.first(),
        _ => None,
    };
    match first {
        Some(Value::BulkString(role)) => role == b"master",
        Some(Value::SimpleString(role)) => role == "master",
        _ => false,
    }
}

static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Whether a result shows the connection no longer leads to a primary: an I/O error, a dropped or
/// refused connection, a timeout, or `READONLY` (a demoted primary) in any reply.
fn gone(result: Result<&[Value], &RedisError>) -> bool {
    let readonly = Some(redis::ServerErrorKind::ReadOnly);
    match result {
        Err(e) => {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.kind() == ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        }
        Ok(values) => values.iter().any(|v| matches!(v, Value::ServerError(e) if e.kind() == readonly)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_role_reply_saying_master_is_a_primary() {
        let role = |first: Value| Value::Array(vec![first, Value::Int(0)]);
        assert!(is_primary_role(&role(Value::BulkString(b"master".to_vec()))));
        assert!(is_primary_role(&role(Value::SimpleString("master".into()))));
        assert!(!is_primary_role(&role(Value::BulkString(b"slave".to_vec()))));
        assert!(!is_primary_role(&Value::Array(vec![])));
        assert!(!is_primary_role(&Value::Nil));
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_database() {
        let url = SentinelUrl::parse("redis-sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster/3").unwrap();
        assert_eq!(url.sentinels, vec![("10.0.0.1".to_owned(), 26379), ("10.0.0.2".to_owned(), 26380)]);
        assert_eq!((url.master.as_str(), url.db), ("mymaster", 3));
        assert_eq!((url.username, url.password), (None, None));

        let url = SentinelUrl::parse("redis-sentinel://:s3cret@127.0.0.1:26379/m").unwrap();
        assert_eq!((url.master.as_str(), url.db, url.password.as_deref()), ("m", 0, Some("s3cret")));
        let url = SentinelUrl::parse("redis-sentinel://app:pw@127.0.0.1:26379/m/").unwrap();
        assert_eq!((url.username.as_deref(), url.password.as_deref(), url.db), (Some("app"), Some("pw"), 0));
    }

    #[test]
    fn readonly_replies_and_broken_connections_send_the_store_back_to_sentinel() {
        let reply = |wire: &[u8]| redis::parse_redis_value(wire).unwrap();
        let readonly = reply(b"-READONLY You can't write against a read only replica.\r\n");
        assert!(gone(Ok(&[reply(b"+OK\r\n"), readonly.clone()])), "READONLY anywhere in a pipeline");
        assert!(gone(Ok(std::slice::from_ref(&readonly))));
        assert!(!gone(Ok(&[reply(b"$-1\r\n"), reply(b"-ERR wrong number of arguments\r\n")])), "other errors");
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(gone(Err(&dropped)));
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(gone(Err(&refused)));
    }

    #[test]
    fn malformed_sentinel_urls_are_refused_with_the_reason() {
        for (url, why) in [
            ("redis-sentinel://127.0.0.1:26379", "master name"),
            ("redis-sentinel://127.0.0.1:26379/", "master name"),
            ("redis-sentinel:///m", "no Sentinel"),
            ("redis-sentinel://127.0.0.1/m", "host:port"),
            ("redis-sentinel://127.0.0.1:x/m", "port"),
            ("redis-sentinel://127.0.0.1:1/m/db", "database"),
            ("redis-sentinel://127.0.0.1:1/m/0/x", "expected"),
        ] {
            let error = SentinelUrl::parse(url).unwrap_err().to_string();
            assert!(error.contains(why), "{url}: {error}");
        }
    }
}
