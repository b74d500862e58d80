//! The store operations, each written once against [`Conn`]. The multi-statement ones run inside
//! [`in_transaction!`](super::conn::in_transaction); the locking that makes them atomic against each
//! other is described in the [module docs](super#atomicity).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;

use super::conn::{Conn, Param, TxError};
use super::queries::DELETE_CHUNK;
use super::rows::{self, Row, Token};
use super::{Config, UserIdParam};
use crate::session::{
    ExchangeDecision, ExchangeOutcome, ExchangedSession, NewSession, OnReuse, RefreshExchange, SessionId,
    SessionSummary, SessionTokens, Sessions,
};
use crate::store::StoreError;
use crate::token::{TokenDigest, TokenId, TokenKind, TokenRecord, UserId};

/// The most exchanged refresh tokens a session remembers on SQL, whatever
/// [`RefreshExchange::keep_rotated`] asks: each is about 95 bytes of the refresh row's `abilities`, and
/// MySQL's `TEXT` holds 64 KiB.
pub(super) const MAX_KEEP_ROTATED: usize = 128;

/// Locks every row of the user (one `SELECT ... ORDER BY id FOR UPDATE` on the `(tokenable_type,
/// tokenable_id)` index), then reads them all again in a statement of its own. In `READ COMMITTED` the
/// second statement's snapshot is taken after the lock wait, so it also sees rows that the transaction
/// we waited for inserted, which the locking statement's older snapshot cannot.
async fn lock_rows(conn: &mut Conn<'_>, config: &Config, user: &UserIdParam) -> Result<Vec<Row>, TxError> {
    let params = [Param::Text(&config.tokenable_type), user.param()];
    if let Some(lock) = &config.sql.lock_user {
        conn.execute(lock, &params).await?;
    }
    conn.rows(&config.sql.rows_of_user_locked, &params).await
}

/// Deletes rows by id (only of the configured `tokenable_type`).
async fn delete_ids(conn: &mut Conn<'_>, config: &Config, ids: &[TokenId]) -> Result<(), TxError> {
    let keys: Vec<i64> = ids.iter().filter_map(|&id| i64::try_from(id).ok()).collect();
    for chunk in keys.chunks(DELETE_CHUNK) {
        let mut params = Vec::with_capacity(chunk.len() + 1);
        params.push(Param::Text(&config.tokenable_type));
        params.extend(chunk.iter().map(|&id| Param::Int(id)));
        conn.execute_once(&config.sql.delete_ids(chunk.len()), &params).await?;
    }
    Ok(())
}

/// One session as the revocation and the session limit see it (rows read leniently).
struct RowSession {
    id: SessionId,
    created_at: Option<NaiveDateTime>,
    rows: Vec<TokenId>,
}

/// The user's sessions, from their (locked) rows. Retired rows belong to no session.
fn sessions_of(rows: &[Row]) -> Vec<RowSession> {
    let mut sessions: BTreeMap<SessionId, RowSession> = BTreeMap::new();
    for row in rows {
        let (id, retired) = row.session_leniently();
        if retired {
            continue;
        }
        let session = sessions.entry(id).or_insert(RowSession { id, created_at: row.created_at, rows: Vec::new() });
        session.created_at = session.created_at.min(row.created_at);
        session.rows.push(row.id);
    }
    sessions.into_values().collect()
}

/// Deletes the selected sessions of the user whose locked rows are `rows`; returns how many tokens
/// (rows that are not retired) went.
async fn revoke_rows(
    conn: &mut Conn<'_>,
    config: &Config,
    user: &UserIdParam,
    rows: &[Row],
    which: Sessions,
) -> Result<u64, TxError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let classified: Vec<(TokenId, SessionId, bool)> = rows
        .iter()
        .map(|row| {
            let (session, retired) = row.session_leniently();
            (row.id, session, retired)
        })
        .collect();
    let retired = |selected: &[(TokenId, SessionId, bool)]| selected.iter().filter(|(_, _, r)| *r).count() as u64;
    match which {
        Sessions::All => {
            // Laravel's own statement, as a statement of its own after the lock: it also takes any row
            // committed since the read.
            let params = [Param::Text(&config.tokenable_type), user.param()];
            let deleted = conn.execute(&config.sql.delete_user, &params).await?;
            Ok(deleted.saturating_sub(retired(&classified)))
        }
        Sessions::Only(_) | Sessions::AllExcept(_) => {
            let selected: Vec<(TokenId, SessionId, bool)> =
                classified.into_iter().filter(|(_, session, _)| which.includes(*session)).collect();
            let ids: Vec<TokenId> = selected.iter().map(|(id, _, _)| *id).collect();
            delete_ids(conn, config, &ids).await?;
            Ok(selected.len() as u64 - retired(&selected))
        }
    }
}

/// [`TokenStore::insert`](crate::TokenStore::insert), in a transaction. `new` is already validated (a
/// token at least, no reserved ability).
pub(super) async fn insert(conn: &mut Conn<'_>, config: &Config, new: &NewSession) -> Result<SessionTokens, TxError> {
    let user = UserIdParam::new(&new.user_id, config.backend);
    if let Some(lock) = &config.sql.advisory_lock {
        // PostgreSQL: serializes the logins of one user, including the first (who has no row to lock
        // yet), so that concurrent logins cannot exceed the session limit together.
        let key = format!("{}\n{}\n{}", config.table, config.tokenable_type, new.user_id);
        conn.execute(lock, &[Param::Text(&key)]).await?;
    }
    let rows = lock_rows(conn, config, &user).await?;
    let mut sessions = sessions_of(&rows);
    let max = new.limit.max().unwrap_or_default();
    let evictions = new.limit.evictions(sessions.len()).map_err(|()| StoreError::session_limit(max))?;
    if evictions > 0 {
        sessions.sort_by_key(|s| (s.created_at, s.id));
        let ids: Vec<TokenId> = sessions.iter().take(evictions).flat_map(|s| s.rows.iter().copied()).collect();
        delete_ids(conn, config, &ids).await?;
    }
    let created_at = Some(config.naive(new.created_at));
    let name = new.name.as_str();
    let refresh = match new.refresh {
        Some(secret) => {
            let abilities = rows::refresh_abilities(&new.abilities, new.family.as_ref(), &[])?;
            let expires_at = secret.expires_at.map(|t| config.naive(t));
            let row = NewRow { name, digest: secret.digest, abilities: &abilities, expires_at, created_at };
            Some(insert_row(conn, config, &user, row).await?)
        }
        None => None,
    };
    let access = match new.access {
        Some(secret) => {
            let abilities = rows::access_abilities(&new.abilities, refresh)?;
            let expires_at = secret.expires_at.map(|t| config.naive(t));
            let row = NewRow { name, digest: secret.digest, abilities: &abilities, expires_at, created_at };
            Some(insert_row(conn, config, &user, row).await?)
        }
        None => None,
    };
    let session = refresh.or(access).ok_or_else(|| StoreError::invalid_input("a session needs a token"))?;
    Ok(SessionTokens { session_id: SessionId::new(session), access, refresh })
}

/// A row to insert for the user.
struct NewRow<'a> {
    name: &'a str,
    digest: TokenDigest,
    abilities: &'a str,
    expires_at: Option<NaiveDateTime>,
    created_at: Option<NaiveDateTime>,
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

/// [`TokenStore::exchange_refresh`](crate::TokenStore::exchange_refresh), in a transaction: learn the
/// owner of the presented row, lock all the owner's rows, read the presented row again under the lock,
/// decide, write.
pub(super) async fn exchange(
    conn: &mut Conn<'_>,
    config: &Config,
    exchange: &RefreshExchange,
) -> Result<ExchangeOutcome, TxError> {
    let Ok(key) = i64::try_from(exchange.token_id) else { return Ok(ExchangeOutcome::Invalid) };
    let params = [Param::Int(key), Param::Text(&config.tokenable_type)];
    let Some(owner) = conn.text(&config.sql.owner_of, &params).await? else { return Ok(ExchangeOutcome::Invalid) };
    let user = UserIdParam::new(&UserId::from(owner), config.backend);
    let rows = lock_rows(conn, config, &user).await?;
    let Some(presented) = rows.iter().find(|row| row.id == exchange.token_id) else {
        return Ok(ExchangeOutcome::Invalid); // revoked between the two reads
    };
    let Some(Token { record: current, family, rotated }) = presented.record(config.offset)? else {
        return Ok(ExchangeOutcome::Invalid); // retired by an earlier version: never exchanges
    };
    match exchange.decide(Some(&current), family.as_ref(), &rotated) {
        ExchangeDecision::Invalid => Ok(ExchangeOutcome::Invalid),
        ExchangeDecision::Reuse => {
            let which = match exchange.on_reuse {
                OnReuse::RevokeSession => Sessions::Only(current.session_id),
                OnReuse::RevokeAllSessions => Sessions::All,
            };
            let revoked = revoke_rows(conn, config, &user, &rows, which).await?;
            Ok(ExchangeOutcome::Reused { user_id: current.user_id, session_id: current.session_id, revoked })
        }
        ExchangeDecision::Rotate => rotate(conn, config, exchange, &user, &rows, current, &rotated).await,
    }
}

/// The session's refresh row gets the new digest and expiry and remembers the replaced digest; its
/// access row is overwritten in place with the new access token (inserted if it was pruned), and any
/// other access row of the session is deleted.
async fn rotate(
    conn: &mut Conn<'_>,
    config: &Config,
    exchange: &RefreshExchange,
    user: &UserIdParam,
    rows: &[Row],
    current: TokenRecord,
    rotated: &[crate::session::RotatedRefresh],
) -> Result<ExchangeOutcome, TxError> {
    debug_assert_eq!(current.kind, TokenKind::Refresh);
    let session = current.id;
    let key = i64::try_from(session).map_err(|_| StoreError::corrupt("a refresh token id beyond BIGINT"))?;
    let bounded = RefreshExchange { keep_rotated: exchange.keep_rotated.min(MAX_KEEP_ROTATED), ..exchange.clone() };
    let remembered = bounded.rotated_after(rotated, current.digest);
    let now = Param::Time(Some(config.naive(exchange.now)));
    let ty = Param::Text(&config.tokenable_type);

    let refresh_abilities = rows::refresh_abilities(&current.abilities, Some(&exchange.next_family), &remembered)?;
    let refresh_digest = exchange.refresh.digest.to_hex();
    let refresh_expires = Param::Time(exchange.refresh.expires_at.map(|t| config.naive(t)));
    let params =
        [Param::Text(&refresh_digest), Param::Text(&refresh_abilities), refresh_expires, now, Param::Int(key), ty];
    if conn.execute(&config.sql.update_refresh, &params).await? != 1 {
        return Err(StoreError::backend("the refresh token's row changed while it was locked").into());
    }

    let linked = (SessionId::new(session), false);
    let access_rows: Vec<TokenId> =
        rows.iter().filter(|row| row.id != session && row.session_leniently() == linked).map(|row| row.id).collect();
    let access_abilities = rows::access_abilities(&current.abilities, Some(session))?;
    let access_digest = exchange.access.digest.to_hex();
    let access_expires = Param::Time(exchange.access.expires_at.map(|t| config.naive(t)));
    let name = Param::Text(current.name.as_str());
    let access = match access_rows.split_first() {
        Some((&kept, others)) => {
            delete_ids(conn, config, others).await?;
            let kept_key = i64::try_from(kept).map_err(|_| StoreError::corrupt("an access token id beyond BIGINT"))?;
            let params = [
                Param::Text(&access_digest),
                Param::Text(&access_abilities),
                name,
                access_expires,
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
                expires_at: exchange.access.expires_at.map(|t| config.naive(t)),
                created_at: Some(config.naive(exchange.now)),
            };
            insert_row(conn, config, user, row).await?
        }
    };
    Ok(ExchangeOutcome::Exchanged(ExchangedSession {
        session_id: current.session_id,
        user_id: current.user_id,
        name: current.name,
        abilities: current.abilities,
        access,
        refresh: session,
    }))
}

/// [`TokenStore::revoke_sessions`](crate::TokenStore::revoke_sessions), in a transaction.
pub(super) async fn revoke(
    conn: &mut Conn<'_>,
    config: &Config,
    user_id: &UserId,
    which: Sessions,
) -> Result<u64, TxError> {
    let user = UserIdParam::new(user_id, config.backend);
    let rows = lock_rows(conn, config, &user).await?;
    revoke_rows(conn, config, &user, &rows, which).await
}

/// [`TokenStore::list_sessions`](crate::TokenStore::list_sessions): one `SELECT`, so one snapshot.
pub(super) async fn list(
    conn: &mut Conn<'_>,
    config: &Config,
    user_id: &UserId,
) -> Result<Vec<SessionSummary>, TxError> {
    let user = UserIdParam::new(user_id, config.backend);
    let rows = conn.rows(&config.sql.rows_of_user, &[Param::Text(&config.tokenable_type), user.param()]).await?;
    // Per session: its summary, and whether it came from the refresh row (which holds the session's
    // name and abilities for every later exchange).
    let mut sessions: BTreeMap<SessionId, (SessionSummary, bool)> = BTreeMap::new();
    for row in &rows {
        let Some(Token { record, .. }) = row.record(config.offset)? else { continue };
        let from_refresh = record.kind == TokenKind::Refresh;
        let (summary, has_refresh) = sessions.entry(record.session_id).or_insert_with(|| {
            let summary = SessionSummary {
                id: record.session_id,
                user_id: record.user_id.clone(),
                name: record.name.clone(),
                abilities: record.abilities.clone(),
                created_at: record.created_at,
                last_used_at: record.last_used_at,
                expires_at: record.expires_at,
            };
            (summary, from_refresh)
        });
        if from_refresh && !*has_refresh {
            summary.name = record.name.clone();
            summary.abilities = record.abilities.clone();
            *has_refresh = true;
        }
        summary.created_at = summary.created_at.min(record.created_at);
        summary.last_used_at = summary.last_used_at.max(record.last_used_at);
        summary.expires_at = match (summary.expires_at, record.expires_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    let mut list: Vec<SessionSummary> = sessions.into_values().map(|(summary, _)| summary).collect();
    list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok(list)
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
