//! The Lua scripts. Each declares every key it touches in `KEYS`, all of one bucket (one hash tag, so
//! one Redis Cluster slot), and never turns an id into a Lua number: sequence numbers travel as
//! strings (index members), times as integer milliseconds (below 2^53, exact in a Lua double) written
//! back with `string.format('%d')`. No script compares digests: the decisions that do happen in Rust,
//! in constant time.

use std::sync::LazyLock;

use redis::Script;

/// Shared by every script that changes an index: `now()` (the server's clock, which is the clock Redis
/// expires keys by), `clean()` (drops index members whose session key has expired) and `retime()`
/// (gives both index keys the expiry of their longest-lived session, or deletes them when empty).
const HELPERS: &str = r"
local function now()
  local t = redis.call('TIME')
  return string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
end
local function clean(u, x, at, limit)
  local dead = redis.call('ZRANGEBYSCORE', x, '-inf', '(' .. at, 'LIMIT', 0, limit)
  if #dead > 0 then
    redis.call('ZREM', u, unpack(dead))
    redis.call('ZREM', x, unpack(dead))
  end
  return #dead
end
local function retime(u, x)
  local top = redis.call('ZRANGE', x, -1, -1, 'WITHSCORES')
  if #top == 0 then
    redis.call('DEL', u, x)
  elseif top[2] == 'inf' then
    redis.call('PERSIST', u)
    redis.call('PERSIST', x)
  else
    local at = string.format('%d', tonumber(top[2]))
    redis.call('PEXPIREAT', u, at)
    redis.call('PEXPIREAT', x, at)
  end
end
";

/// How many dead members one script call removes from an index at most.
pub(super) const CLEAN_LIMIT: usize = 1024;

fn script(body: &str) -> Script {
    Script::new(&format!("{HELPERS}\nlocal CLEAN_LIMIT = {CLEAN_LIMIT}\n{body}"))
}

/// Allocates a session number and reads what the session limit needs.
///
/// KEYS: counter, by-creation index, by-deadline index. ARGV: max sessions or "", how many of the
/// oldest members to return at most. Returns `{seq, live sessions, oldest members}` where the oldest
/// are the ones that must go to make room (at most ARGV[2] of them).
pub(super) static PREPARE_INSERT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local u, x = KEYS[2], KEYS[3]
local seq = redis.call('INCR', KEYS[1])
if clean(u, x, now(), CLEAN_LIMIT) > 0 then retime(u, x) end
local n = redis.call('ZCARD', u)
local oldest = {}
if ARGV[1] ~= '' then
  local excess = n + 1 - tonumber(ARGV[1])
  if excess > 0 then
    oldest = redis.call('ZRANGE', u, 0, math.min(excess, tonumber(ARGV[2])) - 1)
  end
end
return {seq, n, oldest}
",
    )
});

/// Stores a session and applies the session limit, all or nothing.
///
/// KEYS: the new session, by-creation index, by-deadline index, then the sessions to evict.
/// ARGV: [1] max sessions or "", [2] "1" to refuse when full, [3] the new member, [4] its creation
/// (ms), [5] its key's deadline (ms or "inf"), [6] the user, [7] k = number of sessions to evict, then
/// k members (aligned with KEYS[4..]), then the session's field/value pairs.
///
/// Returns `{'ok'}`, `{'full'}` (refused), `{'retry'}` (the index changed since it was read: prepare
/// again) or `{'collision'}` (the session key exists: the counter was reset; prepare again).
pub(super) static COMMIT_INSERT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local s, u, x = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', s) == 1 then return {'collision'} end
clean(u, x, now(), CLEAN_LIMIT)
local k = tonumber(ARGV[7])
if ARGV[1] ~= '' then
  local excess = redis.call('ZCARD', u) + 1 - tonumber(ARGV[1])
  if excess > 0 then
    if ARGV[2] == '1' then
      retime(u, x)
      return {'full'}
    end
    if excess > k then return {'retry'} end
    local oldest = redis.call('ZRANGE', u, 0, excess - 1)
    for i = 1, excess do
      if oldest[i] ~= ARGV[7 + i] then return {'retry'} end
    end
    for i = 1, excess do
      if redis.call('HGET', KEYS[3 + i], 'u') == ARGV[6] then
        redis.call('DEL', KEYS[3 + i])
      end
      redis.call('ZREM', u, ARGV[7 + i])
      redis.call('ZREM', x, ARGV[7 + i])
    end
  end
end
redis.call('HSET', s, unpack(ARGV, 8 + k))
if ARGV[5] ~= 'inf' then redis.call('PEXPIREAT', s, ARGV[5]) end
redis.call('ZADD', u, ARGV[4], ARGV[3])
redis.call('ZADD', x, ARGV[5], ARGV[3])
retime(u, x)
return {'ok'}
",
    )
});

/// Rotates a session's tokens if it is still at the version the exchange was decided on.
///
/// KEYS: session, by-creation index, by-deadline index. ARGV: [1] expected version, [2] member,
/// [3] session creation (ms), [4] new deadline (ms or "inf"), [5] n = fields to delete, then n field
/// names, then field/value pairs to set. Returns 1, or 0 when the session changed (decide again).
pub(super) static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local s, u, x = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', s, 'v') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[5])
if n > 0 then redis.call('HDEL', s, unpack(ARGV, 6, 5 + n)) end
redis.call('HSET', s, unpack(ARGV, 6 + n))
redis.call('HINCRBY', s, 'v', 1)
if ARGV[4] == 'inf' then redis.call('PERSIST', s) else redis.call('PEXPIREAT', s, ARGV[4]) end
clean(u, x, now(), CLEAN_LIMIT)
redis.call('ZADD', u, 'NX', ARGV[3], ARGV[2])
redis.call('ZADD', x, ARGV[4], ARGV[2])
retime(u, x)
return 1
",
    )
});

/// Revokes a session whose refresh token was reused, if it is still at the version the exchange was
/// decided on.
///
/// KEYS: session, by-creation index, by-deadline index. ARGV: [1] expected version, [2] member.
/// Returns the number of tokens deleted, or -1 when the session changed (decide again).
pub(super) static REVOKE_REUSED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local s, u, x = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', s, 'v') ~= ARGV[1] then return -1 end
local live = redis.call('HEXISTS', s, 'ad') + redis.call('HEXISTS', s, 'rd')
redis.call('DEL', s)
redis.call('ZREM', u, ARGV[2])
redis.call('ZREM', x, ARGV[2])
clean(u, x, now(), CLEAN_LIMIT)
retime(u, x)
return live
",
    )
});

/// Revokes one page of a user's sessions, owner-checked, and reads the next page.
///
/// KEYS: by-creation index, by-deadline index, then the sessions of this page. ARGV: [1] the user,
/// [2] cutoff: "*" to take the newest creation time now, "" to read no next page, else a score,
/// [3] page size, [4] the session id to keep or "", [5] the only session id to revoke or "", then the
/// members of KEYS[3..].
///
/// Returns `{tokens deleted, cutoff, kept member or "", next page}`: the next page is the oldest
/// members created at or before the cutoff.
pub(super) static REVOKE_PAGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local u, x, user = KEYS[1], KEYS[2], ARGV[1]
local keep, only = ARGV[4], ARGV[5]
local revoked, kept = 0, ''
for i = 3, #KEYS do
  local s, member = KEYS[i], ARGV[3 + i]
  local f = redis.call('HMGET', s, 'u', 'sid', 'ad', 'rd')
  if f[1] == user then
    if only ~= '' and f[2] ~= only then
      -- Not the selected session: leave it.
    elseif keep ~= '' and f[2] == keep then
      kept = member
    else
      if f[3] then revoked = revoked + 1 end
      if f[4] then revoked = revoked + 1 end
      redis.call('DEL', s)
      redis.call('ZREM', u, member)
      redis.call('ZREM', x, member)
    end
  else
    -- Gone (expired, or revoked meanwhile), or not this user's: not a member of this index.
    redis.call('ZREM', u, member)
    redis.call('ZREM', x, member)
  end
end
clean(u, x, now(), CLEAN_LIMIT)
retime(u, x)
local cutoff = ARGV[2]
if cutoff == '*' then
  local top = redis.call('ZRANGE', u, -1, -1, 'WITHSCORES')
  cutoff = top[2] or '-inf'
end
local nextpage = {}
if cutoff ~= '' then
  nextpage = redis.call('ZRANGEBYSCORE', u, '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[3]))
end
return {revoked, cutoff, kept, nextpage}
",
    )
});

/// Deletes expired tokens of one page of a user's sessions (and sessions left without tokens), and
/// drops index members whose session is gone.
///
/// KEYS: by-creation index, by-deadline index, then the sessions. ARGV: [1] expired_before (ms),
/// [2] created_before (ms) or "", [3] expiry grace (ms), then the members of KEYS[3..].
/// Returns the number of tokens deleted.
pub(super) static PRUNE_PAGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local u, x = KEYS[1], KEYS[2]
local expired_before = tonumber(ARGV[1])
local created_before = ARGV[2] ~= '' and tonumber(ARGV[2]) or nil
local grace = tonumber(ARGV[3])
local FOREVER = 100000000000000
local pruned = 0
for i = 3, #KEYS do
  local s, member = KEYS[i], ARGV[1 + i]
  local f = redis.call('HMGET', s, 'ad', 'ae', 'ac', 'rd', 're', 'rc')
  local changed = false
  for t = 0, 1 do
    local d, e, c = f[1 + 3 * t], f[2 + 3 * t], f[3 + 3 * t]
    local expired = e and tonumber(e) < expired_before
    local old = created_before and c and tonumber(c) < created_before
    if d and (expired or old) then
      local p = (t == 0) and 'a' or 'r'
      redis.call('HDEL', s, p .. 'd', p .. 'e', p .. 'c', p .. 'l')
      f[1 + 3 * t] = false
      pruned = pruned + 1
      changed = true
    end
  end
  if not f[1] and not f[4] then
    redis.call('DEL', s)
    redis.call('ZREM', u, member)
    redis.call('ZREM', x, member)
  elseif changed then
    local deadline = 0
    for t = 0, 1 do
      if f[1 + 3 * t] then
        local e = f[2 + 3 * t]
        if not e then
          deadline = nil
        elseif deadline then
          deadline = math.max(deadline, tonumber(e) + grace)
        end
      end
    end
    if deadline == nil or deadline >= FOREVER then
      redis.call('PERSIST', s)
      redis.call('ZADD', x, 'inf', member)
    else
      deadline = string.format('%d', math.max(deadline, 1))
      redis.call('PEXPIREAT', s, deadline)
      redis.call('ZADD', x, deadline, member)
    end
    redis.call('HINCRBY', s, 'v', 1)
  end
end
clean(u, x, now(), CLEAN_LIMIT)
retime(u, x)
return pruned
",
    )
});

/// Reads the listing fields of a page of sessions (a script rather than a pipeline: in a cluster,
/// a pipeline is not redirected through a slot migration as a single command is).
///
/// KEYS: the sessions. ARGV: the fields. Returns one array of values per session.
pub(super) static READ_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HMGET', KEYS[i], unpack(ARGV))
end
return out
",
    )
});

/// Records a token's last use, only if the token exists (never creates a key or a field of a
/// deleted token).
///
/// KEYS: session. ARGV: [1] the token's digest field, [2] its last-used field, [3] the time (ms).
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
return 0
",
    )
});
