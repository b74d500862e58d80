//! [`RedisStore`]: tokens in Redis, shared by every instance of a service (feature `redis`).
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_token_auth::store::redis::RedisStore;
//! use tower_token_auth::{NewToken, TokenStore, TokenStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_token_auth::StoreError> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379/0")
//!     .await?
//!     .key_prefix("myapp:tokens:")
//!     .command_timeout(Duration::from_secs(2));
//!
//! let issued = store.issue(NewToken::access(42u64).expires_in(Duration::from_secs(3600))).await?;
//! assert!(store.find(issued.record.id).await?.is_some());
//!
//! // Log out everywhere: one atomic script, seen at once by every instance using this Redis.
//! assert_eq!(store.revoke_all_for_user(&42u64.into()).await?, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Data model
//!
//! Every key starts with the [key prefix](RedisStore::key_prefix) (default `"tta:"`):
//!
//! | key                      | type   | content                                                        |
//! |--------------------------|--------|----------------------------------------------------------------|
//! | `{prefix}token:{id}`     | hash   | `user`, `kind`, `name`, `abilities` (JSON array), `digest` (64 hex), `created_at`, `expires_at`, `last_used_at` (unix milliseconds; the last two only when set) |
//! | `{prefix}user:{user_id}` | set    | the ids of that user's tokens                                  |
//! | `{prefix}next_id`        | string | the id counter (`INCR`)                                        |
//!
//! A token key with an `expires_at` gets a Redis expiry (`PEXPIREAT`) at `expires_at` plus the
//! [expiry grace](RedisStore::expiry_grace) (default none), so expired tokens disappear by themselves;
//! during the grace an expired token is still found and reported as expired rather than unknown, and
//! [`prune_expired`](TokenStore::prune_expired) can remove it earlier. A user set never expires before
//! the longest-lived of its tokens; a set member whose token key has already expired is harmless and is
//! skipped by [`revoke_all_for_user`](TokenStore::revoke_all_for_user).
//!
//! # Trade-offs
//!
//! * **One round trip per request.** [`find`](TokenStore::find) is a single `HMGET` by primary key; the
//!   digest comparison, expiry and kind checks happen in the caller.
//! * **Logout is one atomic script.** Issuing (`INCR` + `HSET` + `PEXPIREAT` + `SADD`), revoking, log-out
//!   everywhere and refresh rotation each run as one Lua script, so a token is never stored without being
//!   indexed under its user, and a rotation is won by exactly one caller. Every instance sees a logout as
//!   soon as the script returns.
//! * **Redis availability is auth availability.** When Redis is unreachable, slow (see
//!   [`command_timeout`](RedisStore::command_timeout)) or returns unreadable data, every method returns a
//!   [`StoreError`] and the auth layer fails closed (`503`), never treating a token as valid or as
//!   unknown. The [`ConnectionManager`] reconnects by itself once Redis is back.
//! * The scripts compute the token and user keys they touch, so the store expects a single Redis primary
//!   (optionally with replicas or Sentinel), not Redis Cluster.
//! * [`find_by_digest`](TokenStore::find_by_digest) keeps the trait's default (finds nothing): there is
//!   no digest index, so legacy tokens without an `{id}|` part are not supported by this store.
//! * Times are stored with millisecond precision.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use super::{StoreError, StoreFuture, TokenStore};
use crate::token::{Abilities, NewTokenRecord, TokenDigest, TokenId, TokenKind, TokenRecord, UserId};

/// The default [key prefix](RedisStore::key_prefix).
pub const DEFAULT_KEY_PREFIX: &str = "tta:";

/// The default [command timeout](RedisStore::command_timeout): three seconds.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// The default [expiry grace](RedisStore::expiry_grace): none.
pub const DEFAULT_EXPIRY_GRACE: Duration = Duration::ZERO;

/// Keys scanned per `SCAN` call (and deleted per script call) by `prune_expired`.
const PRUNE_BATCH: usize = 500;

/// The fields `find` reads, in this order.
const FIELDS: [&str; 8] = ["user", "kind", "name", "abilities", "digest", "created_at", "expires_at", "last_used_at"];

/// KEYS: next_id. ARGV: token key prefix, user set key, user, kind, name, abilities, digest, created_at,
/// expires_at or "", Redis expiry (unix ms) or "". Returns the new id.
static INSERT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id = redis.call('INCR', KEYS[1])
local key = ARGV[1] .. id
-- Only if the counter was reset behind existing tokens: never overwrite one.
while redis.call('EXISTS', key) == 1 do
  id = redis.call('INCR', KEYS[1])
  key = ARGV[1] .. id
end
redis.call('HSET', key, 'user', ARGV[3], 'kind', ARGV[4], 'name', ARGV[5], 'abilities', ARGV[6],
  'digest', ARGV[7], 'created_at', ARGV[8])
if ARGV[9] ~= '' then
  redis.call('HSET', key, 'expires_at', ARGV[9])
end
local set = ARGV[2]
local set_existed = redis.call('EXISTS', set)
redis.call('SADD', set, id)
if ARGV[10] == '' then
  redis.call('PERSIST', set)
else
  redis.call('PEXPIREAT', key, ARGV[10])
  if set_existed == 0 then
    redis.call('PEXPIREAT', set, ARGV[10])
  else
    local set_ttl = redis.call('PTTL', set)
    if set_ttl >= 0 and redis.call('PTTL', key) > set_ttl then
      redis.call('PEXPIREAT', set, ARGV[10])
    end
  end
end
return id
",
    )
});

/// KEYS: token key. ARGV: user set key prefix, id. Returns 1 if the token existed.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local user = redis.call('HGET', KEYS[1], 'user')
local deleted = redis.call('DEL', KEYS[1])
if user then
  redis.call('SREM', ARGV[1] .. user, ARGV[2])
end
return deleted
",
    )
});

/// KEYS: user set key. ARGV: token key prefix, user. Returns the number of token keys deleted.
static REVOKE_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('SMEMBERS', KEYS[1])
local deleted = 0
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  -- Members whose key expired are skipped; the owner check guards against a reset id counter.
  if redis.call('HGET', key, 'user') == ARGV[2] then
    deleted = deleted + redis.call('DEL', key)
  end
end
redis.call('DEL', KEYS[1])
return deleted
",
    )
});

/// KEYS: token key. Returns 1 if this call changed the kind from `refresh` to `rotated-refresh`.
static MARK_ROTATED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'kind') == 'refresh' then
  redis.call('HSET', KEYS[1], 'kind', 'rotated-refresh')
  return 1
end
return 0
",
    )
});

/// KEYS: token key. ARGV: last_used_at. Never creates the key.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1])
end
return 0
",
    )
});

/// KEYS: candidate token keys. ARGV: token key prefix, user set key prefix, expired_before,
/// created_before or "". Returns the number of token keys deleted.
static PRUNE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local expired_before = tonumber(ARGV[3])
local created_before = tonumber(ARGV[4])
local deleted = 0
for _, key in ipairs(KEYS) do
  if redis.call('TYPE', key).ok == 'hash' then
    local f = redis.call('HMGET', key, 'user', 'created_at', 'expires_at')
    local created_at = f[2] and tonumber(f[2])
    local expires_at = f[3] and tonumber(f[3])
    if (expires_at and expires_at < expired_before)
      or (created_before and created_at and created_at < created_before) then
      deleted = deleted + redis.call('DEL', key)
      if f[1] then
        redis.call('SREM', ARGV[2] .. f[1], string.sub(key, #ARGV[1] + 1))
      end
    end
  end
end
return deleted
",
    )
});

/// A [`TokenStore`] in Redis. Cheap to clone: clones share one [`ConnectionManager`] (one multiplexed
/// connection that reconnects by itself).
///
/// See the [module documentation](self) for the data model and the trade-offs.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Arc<Keys>,
    timeout: Duration,
    expiry_grace: Duration,
}

struct Keys {
    prefix: String,
    token: String,
    user: String,
    next_id: String,
}

impl Keys {
    fn new(prefix: String) -> Self {
        Self {
            token: format!("{prefix}token:"),
            user: format!("{prefix}user:"),
            next_id: format!("{prefix}next_id"),
            prefix,
        }
    }

    fn token(&self, id: TokenId) -> String {
        format!("{}{id}", self.token)
    }

    fn user(&self, user_id: &UserId) -> String {
        format!("{}{}", self.user, user_id.to_text())
    }
}

impl RedisStore {
    /// Connects to Redis at `url` (e.g. `redis://127.0.0.1:6379/0`, `rediss://…` needs the redis crate's
    /// TLS features) and waits until the first connection is up, at most [`DEFAULT_COMMAND_TIMEOUT`].
    ///
    /// The manager has no response timeout of its own: [`command_timeout`](Self::command_timeout) bounds
    /// every command. Must be called within a Tokio runtime.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(map_error)?;
        let connecting = ConnectionManager::new_with_config(client, manager_config());
        match tokio::time::timeout(DEFAULT_COMMAND_TIMEOUT, connecting).await {
            Ok(Ok(manager)) => Ok(Self::from_manager(manager)),
            Ok(Err(e)) => Err(map_error(e)),
            Err(_) => Err(StoreError::timeout()),
        }
    }

    /// Like [`connect`](Self::connect), but returns at once and connects on first use, so that a
    /// service can start while Redis is down (its requests then fail with a [`StoreError`] until Redis
    /// is reachable). Fails only for an invalid `url` or when called outside a Tokio runtime.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::backend("RedisStore::connect_lazy must be called within a Tokio runtime"));
        }
        let client = redis::Client::open(url).map_err(map_error)?;
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config()).map_err(map_error)?;
        Ok(Self::from_manager(manager))
    }

    /// Uses an existing connection manager, with its own configuration (its response timeout, if any,
    /// applies in addition to [`command_timeout`](Self::command_timeout)).
    pub fn from_manager(manager: ConnectionManager) -> Self {
        Self {
            conn: manager,
            keys: Arc::new(Keys::new(DEFAULT_KEY_PREFIX.to_owned())),
            timeout: DEFAULT_COMMAND_TIMEOUT,
            expiry_grace: DEFAULT_EXPIRY_GRACE,
        }
    }

    /// Sets the prefix of every key this store uses (default [`DEFAULT_KEY_PREFIX`], `"tta:"`), to share
    /// one Redis database between applications or environments.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.keys = Arc::new(Keys::new(prefix.into()));
        self
    }

    /// Sets how long one Redis command (or script) may take (default [`DEFAULT_COMMAND_TIMEOUT`], three
    /// seconds). A command that takes longer fails with [`StoreError::timeout`], and the auth layer
    /// answers `503`. A write that timed out may still have been applied by Redis.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long a token key outlives its `expires_at` before Redis deletes it by itself (default
    /// [`DEFAULT_EXPIRY_GRACE`]: none, the key vanishes when the token expires). The auth layer rejects a
    /// token by its `expires_at` whatever the grace; a grace only keeps expired records around for
    /// inspection. Applies to tokens inserted afterwards.
    pub fn expiry_grace(mut self, grace: Duration) -> Self {
        self.expiry_grace = grace;
        self
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// Runs `op` on a clone of the connection, bounded by the command timeout.
    fn run<T, F, Fut>(&self, op: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager, Arc<Keys>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let fut = op(self.conn.clone(), Arc::clone(&self.keys));
        let timeout = self.timeout;
        StoreFuture::new(async move {
            tokio::time::timeout(timeout, fut).await.unwrap_or_else(|_| Err(StoreError::timeout()))
        })
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new().set_response_timeout(None).set_connection_timeout(Some(DEFAULT_COMMAND_TIMEOUT))
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection info may hold a password: leave the manager out.
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.keys.prefix)
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

/// Unix milliseconds, saturating far outside the representable range.
fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

fn from_millis(ms: i64) -> Option<SystemTime> {
    if ms >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_millis(ms.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_millis(ms.unsigned_abs()))
    }
}

fn corrupt(id: TokenId, what: &str) -> StoreError {
    StoreError::corrupt(format!("token {id}: {what}"))
}

fn text(id: TokenId, field: &str, value: Option<Vec<u8>>) -> Result<String, StoreError> {
    let value = value.ok_or_else(|| corrupt(id, &format!("missing field `{field}`")))?;
    String::from_utf8(value).map_err(|_| corrupt(id, &format!("field `{field}` is not UTF-8")))
}

fn time(id: TokenId, field: &str, value: Option<Vec<u8>>) -> Result<Option<SystemTime>, StoreError> {
    let Some(value) = value else { return Ok(None) };
    std::str::from_utf8(&value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(from_millis)
        .map(Some)
        .ok_or_else(|| corrupt(id, &format!("field `{field}` is not a time in unix milliseconds")))
}

/// Builds a record from the `FIELDS` of an existing hash.
fn parse_record(id: TokenId, fields: Vec<Option<Vec<u8>>>) -> Result<TokenRecord, StoreError> {
    let [user, kind, name, abilities, digest, created_at, expires_at, last_used_at]: [Option<Vec<u8>>; 8] =
        fields.try_into().map_err(|_| corrupt(id, "unexpected HMGET reply length"))?;
    let user_id = UserId::from(text(id, "user", user)?);
    let kind = TokenKind::from_name(&text(id, "kind", kind)?).ok_or_else(|| corrupt(id, "unknown `kind`"))?;
    let name = text(id, "name", name)?;
    let abilities =
        Abilities::from_json(&text(id, "abilities", abilities)?).ok_or_else(|| corrupt(id, "invalid `abilities`"))?;
    let digest = TokenDigest::from_hex(&text(id, "digest", digest)?).ok_or_else(|| corrupt(id, "invalid `digest`"))?;
    let created_at = time(id, "created_at", created_at)?.ok_or_else(|| corrupt(id, "missing field `created_at`"))?;
    let expires_at = time(id, "expires_at", expires_at)?;
    let last_used_at = time(id, "last_used_at", last_used_at)?;
    Ok(TokenRecord { id, user_id, kind, name, abilities, digest, created_at, expires_at, last_used_at })
}

/// Escapes glob metacharacters so that a key prefix matches only itself in `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl TokenStore for RedisStore {
    fn find(&self, id: TokenId) -> StoreFuture<Option<Arc<TokenRecord>>> {
        self.run(move |mut conn, keys| async move {
            let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(keys.token(id))
                .arg(&FIELDS[..])
                .query_async(&mut conn)
                .await
                .map_err(map_error)?;
            if fields.iter().all(Option::is_none) {
                return Ok(None);
            }
            parse_record(id, fields).map(|record| Some(Arc::new(record)))
        })
    }

    fn insert(&self, token: NewTokenRecord) -> StoreFuture<TokenId> {
        let grace_ms = i64::try_from(self.expiry_grace.as_millis()).unwrap_or(i64::MAX);
        self.run(move |mut conn, keys| async move {
            let expires_ms = token.expires_at.map(to_millis);
            // At least 1: PEXPIREAT with a time in the past deletes the key, as it should.
            let redis_expiry = expires_ms.map(|ms| ms.saturating_add(grace_ms).max(1));
            let id: i64 = INSERT
                .key(&keys.next_id)
                .arg(&keys.token)
                .arg(keys.user(&token.user_id))
                .arg(&*token.user_id.to_text())
                .arg(token.kind.as_str())
                .arg(&token.name)
                .arg(token.abilities.to_json())
                .arg(token.digest.to_hex())
                .arg(to_millis(token.created_at))
                .arg(expires_ms.map(|ms| ms.to_string()).unwrap_or_default())
                .arg(redis_expiry.map(|ms| ms.to_string()).unwrap_or_default())
                .invoke_async(&mut conn)
                .await
                .map_err(map_error)?;
            TokenId::try_from(id).map_err(|_| StoreError::corrupt(format!("{}next_id is negative", keys.prefix)))
        })
    }

    fn revoke(&self, id: TokenId) -> StoreFuture<bool> {
        self.run(move |mut conn, keys| async move {
            let deleted: i64 =
                REVOKE.key(keys.token(id)).arg(&keys.user).arg(id).invoke_async(&mut conn).await.map_err(map_error)?;
            Ok(deleted > 0)
        })
    }

    fn revoke_all_for_user(&self, user_id: &UserId) -> StoreFuture<u64> {
        let user_id = user_id.clone();
        self.run(move |mut conn, keys| async move {
            let deleted: u64 = REVOKE_ALL
                .key(keys.user(&user_id))
                .arg(&keys.token)
                .arg(&*user_id.to_text())
                .invoke_async(&mut conn)
                .await
                .map_err(map_error)?;
            Ok(deleted)
        })
    }

    fn mark_refresh_rotated(&self, id: TokenId) -> StoreFuture<bool> {
        self.run(move |mut conn, keys| async move {
            let changed: i64 = MARK_ROTATED.key(keys.token(id)).invoke_async(&mut conn).await.map_err(map_error)?;
            Ok(changed == 1)
        })
    }

    /// Deletes matching tokens with `SCAN` over `{prefix}token:*` (500 keys per call, each batch checked
    /// and deleted by one script). Redis expiry already removes tokens [`expiry_grace`](RedisStore::expiry_grace)
    /// after they expire; this removes them sooner, and applies `created_before`. The command timeout
    /// applies to each call, not to the whole scan.
    fn prune_expired(&self, expired_before: SystemTime, created_before: Option<SystemTime>) -> StoreFuture<u64> {
        let (mut conn, keys, timeout) = (self.conn.clone(), Arc::clone(&self.keys), self.timeout);
        StoreFuture::new(async move {
            let pattern = format!("{}*", glob_escape(&keys.token));
            let expired_before = to_millis(expired_before);
            let created_before = created_before.map(|t| to_millis(t).to_string()).unwrap_or_default();
            let mut cursor = String::from("0");
            let mut pruned = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(&cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(PRUNE_BATCH);
                let (next, batch): (String, Vec<Vec<u8>>) = with_timeout(timeout, scan.query_async(&mut conn)).await?;
                if !batch.is_empty() {
                    let mut invocation = PRUNE.prepare_invoke();
                    invocation.key(batch).arg(&keys.token).arg(&keys.user).arg(expired_before).arg(&created_before);
                    let deleted: u64 = with_timeout(timeout, invocation.invoke_async(&mut conn)).await?;
                    pruned += deleted;
                }
                if next == "0" {
                    return Ok(pruned);
                }
                cursor = next;
            }
        })
    }

    fn touch_last_used(&self, id: TokenId, at: SystemTime) -> StoreFuture<()> {
        self.run(move |mut conn, keys| async move {
            let _: i64 =
                TOUCH.key(keys.token(id)).arg(to_millis(at)).invoke_async(&mut conn).await.map_err(map_error)?;
            Ok(())
        })
    }
}

async fn with_timeout<T>(timeout: Duration, fut: impl Future<Output = Result<T, RedisError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result.map_err(map_error),
        Err(_) => Err(StoreError::timeout()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        for ms in [0, 1, 1_700_000_000_123, -5_000] {
            assert_eq!(to_millis(from_millis(ms).unwrap()), ms);
        }
    }

    #[test]
    fn glob_escape_escapes_metacharacters() {
        assert_eq!(glob_escape("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:");
    }

    #[test]
    fn parse_record_reports_missing_and_bad_fields() {
        let good = || -> Vec<Option<Vec<u8>>> {
            vec![
                Some(b"42".to_vec()),
                Some(b"access".to_vec()),
                Some(b"laptop".to_vec()),
                Some(b"[\"*\"]".to_vec()),
                Some(TokenDigest::of(b"s").to_hex().into_bytes()),
                Some(b"1700000000000".to_vec()),
                None,
                None,
            ]
        };
        let record = parse_record(7, good()).unwrap();
        assert_eq!(record.user_id, UserId::from(42u64));
        assert_eq!(record.created_at, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert!(record.expires_at.is_none());
        for (i, bad) in [
            (0, None),
            (1, Some(b"bogus".to_vec())),
            (3, Some(b"{".to_vec())),
            (4, Some(b"zz".to_vec())),
            (5, None),
            (6, Some(b"x".to_vec())),
        ] {
            let mut fields = good();
            fields[i] = bad;
            let e = parse_record(7, fields).unwrap_err();
            assert_eq!(e.kind(), crate::store::StoreErrorKind::Corrupt, "field {i}");
        }
    }
}
