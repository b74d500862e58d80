//! The store operations, each written once against [`Conn`]. The multi-statement ones run inside
//! [`in_transaction!`](super::conn::in_transaction); the locking that makes them atomic against each
//! other is described in the [module docs](super#atomicity).
//!
//! Every operation on one session (an exchange, a logout of one device, reuse revoking its session)
//! touches that session's rows by primary key: the refresh row, and the access row it names. A login
//! reads the user's refresh rows only (bounded by the session limit), never the rows a Laravel
//! application wrote. Only "every session" and "every session but this one" read all the user's rows,
//! since they delete them.

use std::collections::BTreeMap;

use super::conn::{Conn, Param, TxError};
use super::queries::{ACCESS_ROW_PATTERN, DELETE_CHUNK, REFRESH_ROW_PATTERN, RETIRED_ROW_PATTERN};
use super::rows::{self, AccessLink, Meaning, RefreshRow, Row, Token};
use super::{Config, UserIdParam};
use crate::session::{
    ExchangeDecision, ExchangeOutcome, ExchangedSession, NewSession, OnReuse, RefreshExchange, SessionId, SessionLimit,
    SessionSummary, SessionTokens, Sessions,
};
use crate::store::StoreError;
use crate::token::{TokenDigest, TokenId, TokenKind, TokenRecord, UserId};

/// The most exchanged refresh tokens a session remembers on SQL, whatever
/// [`RefreshExchange::keep_rotated`] asks: each is about 95 bytes of the refresh row's `abilities`, and
/// MySQL's `TEXT` holds 64 KiB.
pub(super) const MAX_KEEP_ROTATED: usize = 128;

/// The most sessions one login evicts. A login adds one session, so one eviction keeps a full user at
/// the limit; a limit lowered by more than this is reached over several logins, each doing bounded work.
pub(super) const MAX_EVICTIONS_PER_LOGIN: usize = 64;

/// Locks every row of the user (one `SELECT ... ORDER BY id FOR UPDATE` on the `(tokenable_type,
/// tokenable_id)` index), then reads them all again in a statement of its own. In `READ COMMITTED` the
/// second statement's snapshot is taken after the lock wait, so it also sees rows that the transaction
/// we waited for inserted, which the locking statement's older snapshot cannot. Only for revoking all
/// sessions but one, which deletes those rows anyway.
async fn lock_rows(conn: &mut Conn<'_>, config: &Config, user: &UserIdParam) -> Result<Vec<Row>, TxError> {
    let params = [Param::Text(&config.tokenable_type), user.param()];
    if let Some(lock) = &config.sql.lock_user {
        conn.execute(lock, &params).await?;
    }
    conn.rows(&config.sql.rows_of_user_locked, &params).await
}

/// The user's row `id`, locked, if it exists.
async fn row_of_user(
    conn: &mut Conn<'_>,
    config: &Config,
    user: &UserIdParam,
    id: TokenId,
) -> Result<Option<Row>, TxError> {
    let Ok(key) = i64::try_from(id) else { return Ok(None) };
    let params = [Param::Int(key), Param::Text(&config.tokenable_type), user.param()];
    conn.row(&config.sql.row_of_user_locked, &params).await
}

/// Deletes rows of the user by id (only of the configured `tokenable_type`).
async fn delete_ids(conn: &mut Conn<'_>, config: &Config, user: &UserIdParam, ids: &[TokenId]) -> Result<(), TxError> {
    for (count, params) in id_chunks(config, user, ids) {
        conn.execute_once(&config.sql.delete_ids(count), &params).await?;
    }
    Ok(())
}

/// `ids` in chunks of at most [`DELETE_CHUNK`], each with its parameters: `tokenable_type`,
/// `tokenable_id`, then the ids (those beyond BIGINT cannot exist and are left out).
fn id_chunks<'a>(config: &'a Config, user: &'a UserIdParam, ids: &[TokenId]) -> Vec<(usize, Vec<Param<'a>>)> {
    let keys: Vec<i64> = ids.iter().filter_map(|&id| i64::try_from(id).ok()).collect();
    keys.chunks(DELETE_CHUNK)
        .map(|chunk| {
            let mut params = Vec::with_capacity(chunk.len() + 2);
            params.push(Param::Text(&config.tokenable_type));
            params.push(user.param());
            params.extend(chunk.iter().map(|&id| Param::Int(id)));
            (chunk.len(), params)
        })
        .collect()
}

/// Deletes every session of the user but `kept`: locks all the user's rows, reads them, and deletes
/// those of other sessions by id. Returns how many tokens (rows that are not retired) went.
async fn revoke_all_except(
    conn: &mut Conn<'_>,
    config: &Config,
    user: &UserIdParam,
    kept: SessionId,
) -> Result<u64, TxError> {
    let rows = lock_rows(conn, config, user).await?;
    let mut ids = Vec::new();
    let mut tokens = 0;
    for row in &rows {
        let (session, retired) = row.session_leniently();
        if session != kept {
            ids.push(row.id);
            tokens += u64::from(!retired);
        }
    }
    delete_ids(conn, config, user, &ids).await?;
    Ok(tokens)
}

/// Deletes one session of the user, by primary keys: its first row (locked), and the access row that
/// row names, if that row links back to it. Returns how many tokens went.
async fn revoke_session(
    conn: &mut Conn<'_>,
    config: &Config,
    user: &UserIdParam,
    session: SessionId,
) -> Result<u64, TxError> {
    let Some(head) = row_of_user(conn, config, user, session.get()).await? else { return Ok(0) };
    let (own, retired) = head.session_leniently();
    if own != session {
        return Ok(0); // an access row of another session: not a session id
    }
    let mut ids = vec![head.id];
    if let Some(access) = head.access_leniently() {
        if let Some(row) = row_of_user(conn, config, user, access).await? {
            if row.session_leniently() == (session, false) {
                ids.push(row.id);
            }
        }
    }
    delete_ids(conn, config, user, &ids).await?;
    Ok(ids.len() as u64 - u64::from(retired))
}

/// Makes room for one more session under `limit`. Counts only the user's refresh rows (the sessions
/// this crate wrote with a refresh token), locked in id order, and evicts the oldest of them, at most
/// [`MAX_EVICTIONS_PER_LOGIN`]: rows a Laravel application wrote (its API keys) neither count nor go.
async fn make_room(
    conn: &mut Conn<'_>,
    config: &Config,
    user: &UserIdParam,
    limit: SessionLimit,
) -> Result<(), TxError> {
    let Some(max) = limit.max() else { return Ok(()) };
    let params = [Param::Text(&config.tokenable_type), user.param(), Param::Text(REFRESH_ROW_PATTERN)];
    let candidates = conn.rows(&config.sql.matching_rows_of_user_locked, &params).await?;
    let mut sessions: Vec<&Row> = candidates.iter().filter(|row| row.is_refresh_leniently()).collect();
    let evictions = limit.evictions(sessions.len()).map_err(|()| StoreError::session_limit(max))?;
    let evictions = evictions.min(MAX_EVICTIONS_PER_LOGIN);
    if evictions == 0 {
        return Ok(());
    }
    sessions.sort_by_key(|row| (row.since_leniently(config.offset), row.id));
    let ids: Vec<TokenId> =
        sessions.iter().take(evictions).flat_map(|row| std::iter::once(row.id).chain(row.access_leniently())).collect();
    delete_ids(conn, config, user, &ids).await
}

/// [`TokenStore::insert`](crate::TokenStore::insert), in a transaction. `new` is already validated (a
/// token at least, a family with a refresh token, no reserved ability).
pub(super) async fn insert(conn: &mut Conn<'_>, config: &Config, new: &NewSession) -> Result<SessionTokens, TxError> {
    let user = UserIdParam::new(&new.user_id, config.backend);
    if let Some(lock) = &config.sql.advisory_lock {
        // PostgreSQL: serializes the logins of one user, including the first (who has no row to lock
        // yet), so that concurrent logins cannot exceed the session limit together.
        let key = format!("{}\n{}\n{}", config.table, config.tokenable_type, new.user_id);
        conn.execute(lock, &[Param::Text(&key)]).await?;
    }
    make_room(conn, config, &user, new.limit).await?;
    let created_at = Some(config.naive(new.created_at));
    let name = new.name.as_str();
    let mut refresh = match (new.refresh, new.family) {
        (Some(secret), Some(family)) => {
            let bookkeeping = RefreshRow {
                grants: new.abilities.clone(),
                family,
                rotated: Vec::new(),
                since: Some(new.created_at),
                access: None,
            };
            let abilities = rows::refresh_abilities(&bookkeeping)?;
            let expires_at = secret.expires_at.map(|t| config.naive(t));
            let row = NewRow { name, digest: secret.digest, abilities: &abilities, expires_at, created_at };
            Some((insert_row(conn, config, &user, row).await?, bookkeeping))
        }
        (Some(_), None) => return Err(StoreError::invalid_input("a refresh token needs a family").into()),
        (None, _) => None,
    };
    let access = match new.access {
        Some(secret) => {
            let abilities = rows::access_abilities(&new.abilities, refresh.as_ref().map(|(id, _)| *id))?;
            let expires_at = secret.expires_at.map(|t| config.naive(t));
            let row = NewRow { name, digest: secret.digest, abilities: &abilities, expires_at, created_at };
            Some(insert_row(conn, config, &user, row).await?)
        }
        None => None,
    };
    if let (Some((id, bookkeeping)), Some(access_id), Some(secret)) = (refresh.as_mut(), access, new.access) {
        // The refresh row names its access row, so that an exchange finds it by primary key.
        bookkeeping.access = Some(AccessLink { id: access_id, expires_at: secret.expires_at });
        set_abilities(conn, config, *id, &rows::refresh_abilities(bookkeeping)?).await?;
    }
    let refresh = refresh.map(|(id, _)| id);
    let session = refresh.or(access).ok_or_else(|| StoreError::invalid_input("a session needs a token"))?;
    Ok(SessionTokens { session_id: SessionId::new(session), access, refresh })
}

async fn set_abilities(conn: &mut Conn<'_>, config: &Config, id: TokenId, abilities: &str) -> Result<(), TxError> {
    let key = i64::try_from(id).map_err(|_| StoreError::corrupt("a token id beyond BIGINT"))?;
    let params = [Param::Text(abilities), Param::Int(key), Param::Text(&config.tokenable_type)];
    conn.execute(&config.sql.update_abilities, &params).await.map(drop)
}

/// A row to insert for the user.
struct NewRow<'a> {
    name: &'a str,
    digest: TokenDigest,
    abilities: &'a str,
    expires_at: Option<chrono::NaiveDateTime>,
    created_at: Option<chrono::NaiveDateTime>,
}

/// Inserts `row` (`created_at` = `updated_at`) and returns its id.
async fn insert_row(
    conn: &mut Conn<'_>,
    config: &Config,
    user: &UserIdParam,
    row: NewRow<'_>,
) -> Result<TokenId, TxError> {
    let digest = row.digest.to_hex();
    let params = [
        Param::Text(&config.tokenable_type),
        user.param(),
        Param::Text(row.name),
        Param::Text(&digest),
        Param::Text(row.abilities),
        Param::Time(row.expires_at),
        Param::Time(row.created_at),
        Param::Time(row.created_at),
    ];
    conn.insert(&config.sql.insert, &params).await
}

/// [`TokenStore::exchange_refresh`](crate::TokenStore::exchange_refresh), in a transaction: lock the
/// presented row by primary key, check it is a refresh row this crate wrote, decide, write.
pub(super) async fn exchange(
    conn: &mut Conn<'_>,
    config: &Config,
    exchange: &RefreshExchange,
) -> Result<ExchangeOutcome, TxError> {
    let Ok(key) = i64::try_from(exchange.token_id) else { return Ok(ExchangeOutcome::Invalid) };
    let params = [Param::Int(key), Param::Text(&config.tokenable_type)];
    let Some(row) = conn.row(&config.sql.find_locked, &params).await? else { return Ok(ExchangeOutcome::Invalid) };
    // Only a refresh row this crate wrote exchanges (a row Laravel wrote is an access token, whatever its
    // abilities), and only for a secret that carries a family key: the row's digest is then of the
    // domain-tagged secret, which no Laravel-generated token hashes to.
    if exchange.family.is_none() || !matches!(rows::meaning(row.abilities.as_deref()), Ok(Meaning::Refresh(_))) {
        return Ok(ExchangeOutcome::Invalid);
    }
    let Some(Token { record: current, refresh: Some(refresh) }) = row.record(config.offset)? else {
        return Ok(ExchangeOutcome::Invalid);
    };
    let owner = UserIdParam::new(&current.user_id, config.backend);
    match exchange.decide(Some(&current), Some(&refresh.family), &refresh.rotated) {
        ExchangeDecision::Invalid => Ok(ExchangeOutcome::Invalid),
        ExchangeDecision::Reuse => {
            let revoked = match exchange.on_reuse {
                OnReuse::RevokeSession => revoke_session(conn, config, &owner, current.session_id).await?,
                OnReuse::RevokeAllSessions => revoke_all(conn, config, &owner).await?,
            };
            Ok(ExchangeOutcome::Reused { user_id: current.user_id, session_id: current.session_id, revoked })
        }
        ExchangeDecision::Rotate => rotate(conn, config, exchange, &owner, current, refresh).await,
    }
}

/// The session's access row is overwritten in place with the new access token (found by the id its
/// refresh row names; inserted if it was pruned after expiring), and the refresh row gets the new
/// digest, expiry, access link and `created_at` (the exchange), remembering the replaced digest. An
/// access row deleted before it expired (Laravel's `currentAccessToken()->delete()`) ends the session.
async fn rotate(
    conn: &mut Conn<'_>,
    config: &Config,
    exchange: &RefreshExchange,
    user: &UserIdParam,
    current: TokenRecord,
    refresh: RefreshRow,
) -> Result<ExchangeOutcome, TxError> {
    debug_assert_eq!(current.kind, TokenKind::Refresh);
    let session = current.id;
    let key = i64::try_from(session).map_err(|_| StoreError::corrupt("a refresh token id beyond BIGINT"))?;
    let now = Param::Time(Some(config.naive(exchange.now)));
    let ty = Param::Text(&config.tokenable_type);

    let kept = match refresh.access {
        Some(link) => {
            let found = row_of_user(conn, config, user, link.id).await?;
            match found.filter(|row| row.session_leniently() == (SessionId::new(session), false)) {
                Some(row) => Some(row.id),
                // Pruned after it expired (`sanctum:prune-expired`, `prune_expired`): mint a new one.
                None if link.expired_by(exchange.now) => None,
                None => {
                    // Deleted while it was valid: a logout on the Laravel side. The session is over.
                    delete_ids(conn, config, user, &[session]).await?;
                    return Ok(ExchangeOutcome::Invalid);
                }
            }
        }
        None => None,
    };

    let access_abilities = rows::access_abilities(&current.abilities, Some(session))?;
    let access_digest = exchange.access.digest.to_hex();
    let access_expires = exchange.access.expires_at.map(|t| config.naive(t));
    let access = match kept {
        Some(kept) => {
            let kept_key = i64::try_from(kept).map_err(|_| StoreError::corrupt("an access token id beyond BIGINT"))?;
            let params = [
                Param::Text(&access_digest),
                Param::Text(&access_abilities),
                Param::Text(current.name.as_str()),
                Param::Time(access_expires),
                now,
                now,
                Param::Int(kept_key),
                ty,
            ];
            conn.execute(&config.sql.update_access, &params).await?;
            kept
        }
        None => {
            let row = NewRow {
                name: current.name.as_str(),
                digest: exchange.access.digest,
                abilities: &access_abilities,
                expires_at: access_expires,
                created_at: Some(config.naive(exchange.now)),
            };
            insert_row(conn, config, user, row).await?
        }
    };

    let bounded = RefreshExchange { keep_rotated: exchange.keep_rotated.min(MAX_KEEP_ROTATED), ..exchange.clone() };
    let next = RefreshRow {
        grants: current.abilities.clone(),
        family: exchange.next_family,
        rotated: bounded.rotated_after(&refresh.rotated, current.digest),
        since: Some(current.created_at),
        access: Some(AccessLink { id: access, expires_at: exchange.access.expires_at }),
    };
    let refresh_abilities = rows::refresh_abilities(&next)?;
    let refresh_digest = exchange.refresh.digest.to_hex();
    let refresh_expires = Param::Time(exchange.refresh.expires_at.map(|t| config.naive(t)));
    let params =
        [Param::Text(&refresh_digest), Param::Text(&refresh_abilities), refresh_expires, now, now, Param::Int(key), ty];
    if conn.execute(&config.sql.update_refresh, &params).await? != 1 {
        return Err(StoreError::backend("the refresh token's row changed while it was locked").into());
    }
    Ok(ExchangeOutcome::Exchanged(ExchangedSession {
        session_id: current.session_id,
        user_id: current.user_id,
        name: current.name,
        abilities: current.abilities,
        access,
        refresh: session,
    }))
}

/// [`TokenStore::revoke_sessions`](crate::TokenStore::revoke_sessions), in a transaction: one session by
/// primary keys, or every row of the user (locked, then deleted).
pub(super) async fn revoke(
    conn: &mut Conn<'_>,
    config: &Config,
    user_id: &UserId,
    which: Sessions,
) -> Result<u64, TxError> {
    let user = UserIdParam::new(user_id, config.backend);
    match which {
        Sessions::Only(session) => revoke_session(conn, config, &user, session).await,
        Sessions::All => revoke_all(conn, config, &user).await,
        Sessions::AllExcept(kept) => revoke_all_except(conn, config, &user, kept).await,
    }
}

/// Every row of the user: lock them in id order (PostgreSQL, MySQL; SQLite's `BEGIN IMMEDIATE` already
/// holds the database), count the retired ones, then Laravel's own `DELETE`, a statement of its own that
/// also takes any row committed since the lock. No row is sent to the client: a user with 100,000 rows
/// is logged out in one statement's time.
async fn revoke_all(conn: &mut Conn<'_>, config: &Config, user: &UserIdParam) -> Result<u64, TxError> {
    let params = [Param::Text(&config.tokenable_type), user.param()];
    if let Some(lock) = &config.sql.lock_user {
        conn.execute(lock, &params).await?;
    }
    let retired = [Param::Text(&config.tokenable_type), user.param(), Param::Text(RETIRED_ROW_PATTERN)];
    let retired = conn.count(&config.sql.count_matching_of_user, &retired).await?;
    let deleted = conn.execute(&config.sql.delete_user, &params).await?;
    Ok(deleted.saturating_sub(retired))
}

/// [`TokenStore::list_sessions`](crate::TokenStore::list_sessions): the user's newest rows that begin a
/// session (at most [`MAX_LISTED_ROWS`](super::queries::MAX_LISTED_ROWS)), then the access rows their
/// refresh rows name, by primary key. A row this crate cannot read is skipped, with a warning naming
/// it; it can still be revoked.
pub(super) async fn list(
    conn: &mut Conn<'_>,
    config: &Config,
    user_id: &UserId,
) -> Result<Vec<SessionSummary>, TxError> {
    let user = UserIdParam::new(user_id, config.backend);
    let params = [Param::Text(&config.tokenable_type), user.param(), Param::Text(ACCESS_ROW_PATTERN)];
    let heads = conn.rows(&config.sql.session_rows_of_user, &params).await?;
    let mut sessions: BTreeMap<SessionId, SessionSummary> = BTreeMap::new();
    let mut access_rows = Vec::new();
    for row in &heads {
        let Some(Token { record, refresh }) = readable(config, row) else { continue };
        if record.session_id.get() != record.id {
            continue; // a row of another session (listed through that session's refresh row)
        }
        access_rows.extend(refresh.and_then(|r| r.access).map(|link| link.id));
        let summary = SessionSummary {
            id: record.session_id,
            user_id: record.user_id,
            name: record.name,
            abilities: record.abilities,
            created_at: record.created_at,
            last_used_at: record.last_used_at,
            expires_at: record.expires_at,
        };
        sessions.insert(summary.id, summary);
    }
    for (count, params) in id_chunks(config, &user, &access_rows) {
        for row in conn.rows_once(&config.sql.rows_by_ids(count), &params).await? {
            let Some(Token { record, .. }) = readable(config, &row) else { continue };
            let Some(summary) = sessions.get_mut(&record.session_id) else { continue };
            summary.last_used_at = summary.last_used_at.max(record.last_used_at);
            summary.expires_at = match (summary.expires_at, record.expires_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
    }
    let mut list: Vec<SessionSummary> = sessions.into_values().collect();
    list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(list)
}

/// The row as a token for a listing: `None` for a retired row, and for an unreadable one, which is
/// logged at `warn` with its id and counted, not an error: one bad row must not hide the others.
fn readable(config: &Config, row: &Row) -> Option<Token> {
    match row.record(config.offset) {
        Ok(token) => token,
        Err(error) => {
            tracing::warn!(token.id = row.id, %error, "list_sessions skipped a row it cannot read");
            crate::observability::record::unreadable_rows_skipped(config.backend.name(), 1);
            None
        }
    }
}

/// [`TokenStore::find`](crate::TokenStore::find) and
/// [`find_by_digest`](crate::TokenStore::find_by_digest): one `SELECT`, by primary key or by the unique
/// `token` column.
pub(super) async fn find(
    conn: &mut Conn<'_>,
    config: &Config,
    sql: &str,
    key: Param<'_>,
) -> Result<Option<TokenRecord>, TxError> {
    let row = conn.row(sql, &[key, Param::Text(&config.tokenable_type)]).await?;
    Ok(row.map(|row| row.record(config.offset)).transpose()?.flatten().map(|token| token.record))
}
