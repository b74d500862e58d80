//! The SQL each backend runs, built once per table name. Every value is a bound parameter; the only
//! text spliced in is the table name, validated as a plain identifier and quoted.

use super::{Backend, DEFAULT_TABLE, MYSQL_MIGRATION, POSTGRES_MIGRATION, SQLITE_MIGRATION};

/// Statements for one backend and table. Placeholders are bound in the order listed.
#[derive(Clone, Debug)]
pub(super) struct Queries {
    backend: Backend,
    /// `id`, `tokenable_type` -> a row (see [`col`]).
    pub(super) find: String,
    /// `token`, `tokenable_type` -> a row.
    pub(super) find_by_digest: String,
    /// `id`, `tokenable_type` -> the row, locked (`FOR UPDATE`; plain on SQLite).
    pub(super) find_locked: String,
    /// `id`, `tokenable_type`, `tokenable_id` -> the row if it is the user's, locked.
    pub(super) row_of_user_locked: String,
    /// `tokenable_type`, `tokenable_id`, a `LIKE` pattern -> the user's rows whose `abilities` match it,
    /// in id order, locked: the refresh rows (pattern [`REFRESH_ROW_PATTERN`]).
    pub(super) matching_rows_of_user_locked: String,
    /// `tokenable_type`, `tokenable_id`, a `LIKE` pattern -> the user's newest rows (at most
    /// [`MAX_LISTED_ROWS`]) whose `abilities` are `NULL` or do not match it, newest first: every row that
    /// begins a session (pattern [`ACCESS_ROW_PATTERN`]).
    pub(super) session_rows_of_user: String,
    /// `tokenable_type`, `tokenable_id`: locks every row of the user, in id order. `None` on SQLite,
    /// whose `BEGIN IMMEDIATE` already serializes writers.
    pub(super) lock_user: Option<String>,
    /// `tokenable_type`, `tokenable_id` -> the user's rows, in id order, locked (`FOR UPDATE`; plain
    /// on SQLite).
    pub(super) rows_of_user_locked: String,
    /// `tokenable_type`, `tokenable_id`, a `LIKE` pattern -> how many of the user's rows match it (the
    /// retired rows, pattern [`RETIRED_ROW_PATTERN`]).
    pub(super) count_matching_of_user: String,
    /// PostgreSQL only: a key -> a transaction-scoped advisory lock on it.
    pub(super) advisory_lock: Option<String>,
    /// `tokenable_type`, `tokenable_id`, `name`, `token`, `abilities`, `expires_at`, `created_at`,
    /// `updated_at` (-> `id` on PostgreSQL).
    pub(super) insert: String,
    /// `token`, `abilities`, `expires_at`, `created_at`, `updated_at`, `id`, `tokenable_type`.
    pub(super) update_refresh: String,
    /// `abilities`, `id`, `tokenable_type`.
    pub(super) update_abilities: String,
    /// `token`, `abilities`, `name`, `expires_at`, `created_at`, `updated_at`, `id`, `tokenable_type`;
    /// `last_used_at` becomes `NULL`.
    pub(super) update_access: String,
    /// `tokenable_type`, `tokenable_id`: Laravel's `$user->tokens()->delete()`.
    pub(super) delete_user: String,
    /// `tokenable_type`, `expires_at` cutoff.
    pub(super) prune_expired: String,
    /// `tokenable_type`, `expires_at` cutoff, `created_at` cutoff.
    pub(super) prune_expired_or_created: String,
    /// `last_used_at`, `updated_at`, `id`, `tokenable_type`, `at` again (no earlier than `created_at`).
    pub(super) touch: String,
    /// table name (quoted for PostgreSQL, plain otherwise) -> a row when the table exists.
    pub(super) table_exists: String,
    /// The migration, for this table name.
    pub(super) create_table: String,
    delete_ids_head: String,
    rows_by_ids_head: String,
}

/// Column order of the rows `find`, `find_by_digest` and `rows_of_user*` return.
pub(super) mod col {
    pub(crate) const ID: usize = 0;
    pub(crate) const TOKENABLE_ID: usize = 1;
    pub(crate) const NAME: usize = 2;
    pub(crate) const TOKEN: usize = 3;
    pub(crate) const ABILITIES: usize = 4;
    pub(crate) const LAST_USED_AT: usize = 5;
    pub(crate) const EXPIRES_AT: usize = 6;
    pub(crate) const CREATED_AT: usize = 7;
}

/// `name` as a quoted identifier. `name` is already validated as a plain identifier.
pub(super) fn quote(backend: Backend, name: &str) -> String {
    match backend {
        Backend::MySql => format!("`{name}`"),
        Backend::Postgres | Backend::Sqlite => format!("\"{name}\""),
    }
}

/// The most ids one `DELETE ... IN (...)` or `SELECT ... IN (...)` names.
pub(super) const DELETE_CHUNK: usize = 256;

/// The most rows [`Queries::session_rows_of_user`] returns, so the most sessions a listing holds.
pub(super) const MAX_LISTED_ROWS: usize = 1000;

/// `abilities LIKE` this: a candidate refresh row (the exact entry is checked after reading).
pub(super) const REFRESH_ROW_PATTERN: &str = "%\"tta:family:%";

/// `abilities LIKE` this: a row retired by version 0.1 (`"rotated-refresh-token"`, which no escape changes).
pub(super) const RETIRED_ROW_PATTERN: &str = "%\"rotated-refresh-token\"%";

/// `abilities LIKE` this: a candidate access row of a session with a refresh token.
pub(super) const ACCESS_ROW_PATTERN: &str = "%\"tta:session:%";

impl Queries {
    pub(super) fn new(backend: Backend, table: &str) -> Self {
        let t = quote(backend, table);
        let q = |name: &str| quote(backend, name);
        let as_text = |column: &str| match backend {
            Backend::Postgres => format!("{}::text", q(column)),
            Backend::MySql => format!("CAST({} AS CHAR)", q(column)),
            Backend::Sqlite => format!("CAST({} AS TEXT)", q(column)),
        };
        // The owner id is bound as text on PostgreSQL and converted to whatever type the column has
        // (bigint, uuid, char(26)...) by `json_populate_record`, so string ids work and the index on
        // (tokenable_type, tokenable_id) is still used. MySQL and SQLite convert by themselves.
        let user_id_as_column = |param: &str| {
            format!(
                "(SELECT r.{} FROM json_populate_record(NULL::{t}, json_build_object('tokenable_id', {param}::text)) AS r)",
                q("tokenable_id")
            )
        };
        let user = match backend {
            Backend::Postgres => user_id_as_column("?"),
            Backend::MySql | Backend::Sqlite => "?".to_owned(),
        };
        // Every value a column can hold must decode, never panic and never read as "no expiry":
        // - PostgreSQL holds `infinity`, `-infinity` and years beyond chrono's range (decoding those
        //   overflows); they are clamped to years 1 and 9999, so `infinity` reads as far in the future and
        //   `-infinity` as long ago.
        // - MySQL's zero date `0000-00-00 00:00:00` (allowed without `NO_ZERO_DATE`) reads as long ago, as
        //   Laravel's Carbon reads it; and sqlx decodes `TIMESTAMP` only into zoned types, so every value is
        //   read as the same naive `DATETIME`.
        let timestamp = |column: &str| {
            let c = q(column);
            match backend {
                Backend::Postgres => format!(
                    "CASE WHEN {c} < '0001-01-01' THEN TIMESTAMP '0001-01-01 00:00:00' \
                     WHEN {c} > '9999-12-31 23:59:59' THEN TIMESTAMP '9999-12-31 23:59:59' ELSE {c}::timestamp END"
                ),
                Backend::MySql => format!(
                    "CASE WHEN {c} < '1000-01-01' THEN CAST('1970-01-01 00:00:01' AS DATETIME) \
                     ELSE CAST({c} AS DATETIME) END"
                ),
                Backend::Sqlite => c,
            }
        };
        // PostgreSQL: `::text`, so that a `json`/`jsonb` abilities column (or a `citext` name) reads too.
        let text = |column: &str| match backend {
            Backend::Postgres => format!("{}::text", q(column)),
            Backend::MySql | Backend::Sqlite => q(column),
        };
        let columns = [
            as_text("id"),
            as_text("tokenable_id"),
            text("name"),
            text("token"),
            text("abilities"),
            timestamp("last_used_at"),
            timestamp("expires_at"),
            timestamp("created_at"),
        ]
        .join(", ");
        let (id, ty, tokenable_id) = (q("id"), q("tokenable_type"), q("tokenable_id"));
        let insert_columns =
            ["tokenable_type", "tokenable_id", "name", "token", "abilities", "expires_at", "created_at", "updated_at"]
                .map(q)
                .join(", ");
        let insert = match backend {
            Backend::Postgres => format!(
                "INSERT INTO {t} ({insert_columns}) VALUES (?, {}, ?, ?, ?, ?, ?, ?) RETURNING {id}",
                user_id_as_column("?")
            ),
            Backend::MySql | Backend::Sqlite => {
                format!("INSERT INTO {t} ({insert_columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            }
        };
        let migration = match backend {
            Backend::Postgres => POSTGRES_MIGRATION,
            Backend::MySql => MYSQL_MIGRATION,
            Backend::Sqlite => SQLITE_MIGRATION,
        };
        let table_exists = match backend {
            Backend::Postgres => "SELECT 1 WHERE to_regclass(?) IS NOT NULL".to_owned(),
            Backend::MySql => {
                "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?".to_owned()
            }
            Backend::Sqlite => "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?".to_owned(),
        };
        let for_update = match backend {
            Backend::Postgres | Backend::MySql => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        // Ordered by the table's column: a bare `id` would name the output column, which PostgreSQL sorts
        // as the text it is selected as (`'9999' > '20005'`).
        let by_id = format!("{t}.{id}");
        let of_user = format!("FROM {t} WHERE {ty} = ? AND {tokenable_id} = {user} ORDER BY {by_id}");
        let user_only = format!("{ty} = ? AND {tokenable_id} = {user}");
        let abilities_text = text("abilities");
        let (token, abilities, name) = (q("token"), q("abilities"), q("name"));
        let (expires_at, created_at, last_used_at, updated_at) =
            (q("expires_at"), q("created_at"), q("last_used_at"), q("updated_at"));
        let queries = Self {
            backend,
            find: format!("SELECT {columns} FROM {t} WHERE {id} = ? AND {ty} = ?"),
            find_by_digest: format!("SELECT {columns} FROM {t} WHERE {token} = ? AND {ty} = ?"),
            find_locked: format!("SELECT {columns} FROM {t} WHERE {id} = ? AND {ty} = ?{for_update}"),
            row_of_user_locked: format!("SELECT {columns} FROM {t} WHERE {id} = ? AND {user_only}{for_update}"),
            matching_rows_of_user_locked: format!(
                "SELECT {columns} FROM {t} WHERE {user_only} AND {abilities_text} LIKE ? ORDER BY {by_id}{for_update}"
            ),
            session_rows_of_user: format!(
                "SELECT {columns} FROM {t} WHERE {user_only} AND ({abilities} IS NULL OR {abilities_text} NOT LIKE ?) \
                 ORDER BY {by_id} DESC LIMIT {MAX_LISTED_ROWS}"
            ),
            lock_user: (backend != Backend::Sqlite).then(|| format!("SELECT {id} {of_user}{for_update}")),
            rows_of_user_locked: format!("SELECT {columns} {of_user}{for_update}"),
            count_matching_of_user: format!("SELECT COUNT(*) FROM {t} WHERE {user_only} AND {abilities_text} LIKE ?"),
            // Two int4 keys: a key space of their own, apart from the single-bigint advisory locks other
            // code in the database may take. The class id spells "tta\0".
            advisory_lock: (backend == Backend::Postgres)
                .then(|| "SELECT pg_advisory_xact_lock(1953784064, hashtext(?))".to_owned()),
            insert,
            update_refresh: format!(
                "UPDATE {t} SET {token} = ?, {abilities} = ?, {expires_at} = ?, {created_at} = ?, {updated_at} = ? \
                 WHERE {id} = ? AND {ty} = ?"
            ),
            update_abilities: format!("UPDATE {t} SET {abilities} = ? WHERE {id} = ? AND {ty} = ?"),
            update_access: format!(
                "UPDATE {t} SET {token} = ?, {abilities} = ?, {name} = ?, {expires_at} = ?, {created_at} = ?, \
                 {last_used_at} = NULL, {updated_at} = ? WHERE {id} = ? AND {ty} = ?"
            ),
            delete_user: format!("DELETE FROM {t} WHERE {ty} = ? AND {tokenable_id} = {user}"),
            prune_expired: format!("DELETE FROM {t} WHERE {ty} = ? AND {expires_at} < ?"),
            prune_expired_or_created: format!(
                "DELETE FROM {t} WHERE {ty} = ? AND ({expires_at} < ? OR {created_at} < ?)"
            ),
            // A touch for an access token that an exchange has since replaced in place (same id, issued
            // later) must not mark the new token as used before it existed.
            touch: format!(
                "UPDATE {t} SET {last_used_at} = ?, {updated_at} = ? \
                 WHERE {id} = ? AND {ty} = ? AND ({created_at} IS NULL OR {created_at} <= ?)"
            ),
            table_exists,
            create_table: migration.replace(DEFAULT_TABLE, table),
            delete_ids_head: format!("DELETE FROM {t} WHERE {user_only} AND {id} IN ("),
            rows_by_ids_head: format!("SELECT {columns} FROM {t} WHERE {user_only} AND {id} IN ("),
        };
        match backend {
            Backend::Postgres => queries.numbered(),
            Backend::MySql | Backend::Sqlite => queries,
        }
    }

    /// `tokenable_type`, `tokenable_id`, then `count` ids (at most [`DELETE_CHUNK`]): deletes those of the
    /// user's rows.
    pub(super) fn delete_ids(&self, count: usize) -> String {
        self.with_ids(&self.delete_ids_head, count)
    }

    /// `tokenable_type`, `tokenable_id`, then `count` ids (at most [`DELETE_CHUNK`]) -> those of the
    /// user's rows.
    pub(super) fn rows_by_ids(&self, count: usize) -> String {
        self.with_ids(&self.rows_by_ids_head, count)
    }

    fn with_ids(&self, head: &str, count: usize) -> String {
        let mut sql = head.to_owned();
        for i in 0..count {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
        }
        sql.push(')');
        match self.backend {
            Backend::Postgres => number(&sql),
            Backend::MySql | Backend::Sqlite => sql,
        }
    }

    /// PostgreSQL wants `$1, $2, ...` instead of `?`.
    fn numbered(self) -> Self {
        let n = |sql: String| number(&sql);
        Self {
            backend: self.backend,
            find: n(self.find),
            find_by_digest: n(self.find_by_digest),
            find_locked: n(self.find_locked),
            row_of_user_locked: n(self.row_of_user_locked),
            matching_rows_of_user_locked: n(self.matching_rows_of_user_locked),
            session_rows_of_user: n(self.session_rows_of_user),
            lock_user: self.lock_user.map(n),
            rows_of_user_locked: n(self.rows_of_user_locked),
            count_matching_of_user: n(self.count_matching_of_user),
            advisory_lock: self.advisory_lock.map(n),
            insert: n(self.insert),
            update_refresh: n(self.update_refresh),
            update_abilities: n(self.update_abilities),
            update_access: n(self.update_access),
            delete_user: n(self.delete_user),
            prune_expired: n(self.prune_expired),
            prune_expired_or_created: n(self.prune_expired_or_created),
            touch: n(self.touch),
            table_exists: n(self.table_exists),
            create_table: self.create_table,
            // Numbered per call, with the ids.
            delete_ids_head: self.delete_ids_head,
            rows_by_ids_head: self.rows_by_ids_head,
        }
    }
}

/// `?` -> `$1, $2, ...`. No statement has a `?` inside a literal or an identifier (table names are
/// plain identifiers).
fn number(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_starts_with(sql: &str, start: &str) {
        assert!(sql.starts_with(start), "{sql}\ndoes not start with\n{start}");
    }

    #[test]
    fn postgres_placeholders_are_numbered_in_order() {
        let q = Queries::new(Backend::Postgres, "tokens");
        assert_starts_with(
            &q.find,
            "SELECT \"id\"::text, \"tokenable_id\"::text, \"name\"::text, \"token\"::text, \"abilities\"::text, \
             CASE WHEN \"last_used_at\" < '0001-01-01' THEN TIMESTAMP '0001-01-01 00:00:00' \
             WHEN \"last_used_at\" > '9999-12-31 23:59:59' THEN TIMESTAMP '9999-12-31 23:59:59' \
             ELSE \"last_used_at\"::timestamp END, ",
        );
        assert!(q.find.ends_with(" FROM \"tokens\" WHERE \"id\" = $1 AND \"tokenable_type\" = $2"));
        assert!(q
            .insert
            .contains("VALUES ($1, (SELECT r.\"tokenable_id\" FROM json_populate_record(NULL::\"tokens\", "));
        assert!(q.insert.contains("'tokenable_id', $2::text)) AS r), $3, $4, $5, $6, $7, $8) RETURNING \"id\""));
        assert!(q.rows_of_user_locked.ends_with("ORDER BY \"tokens\".\"id\" FOR UPDATE"));
        assert!(q
            .lock_user
            .as_deref()
            .unwrap()
            .starts_with("SELECT \"id\" FROM \"tokens\" WHERE \"tokenable_type\" = $1"));
        assert!(q
            .delete_ids(3)
            .starts_with("DELETE FROM \"tokens\" WHERE \"tokenable_type\" = $1 AND \"tokenable_id\" = "));
        assert!(q.delete_ids(3).ends_with("$2::text)) AS r) AND \"id\" IN ($3, $4, $5)"), "{}", q.delete_ids(3));
        assert!(q
            .matching_rows_of_user_locked
            .ends_with("\"abilities\"::text LIKE $3 ORDER BY \"tokens\".\"id\" FOR UPDATE"));
        assert!(q.session_rows_of_user.ends_with("NOT LIKE $3) ORDER BY \"tokens\".\"id\" DESC LIMIT 1000"));
        assert!(q.touch.ends_with("(\"created_at\" IS NULL OR \"created_at\" <= $5)"));
        assert_eq!(q.advisory_lock.as_deref(), Some("SELECT pg_advisory_xact_lock(1953784064, hashtext($1))"));
        assert!(q.create_table.contains("CREATE TABLE IF NOT EXISTS \"tokens\""));
        assert!(q.create_table.contains("\"tokens_token_unique\""));
        assert!(!q.create_table.contains("personal_access_tokens"));
    }

    #[test]
    fn mysql_and_sqlite_use_question_marks() {
        let q = Queries::new(Backend::MySql, "personal_access_tokens");
        assert_eq!(
            q.delete_user,
            "DELETE FROM `personal_access_tokens` WHERE `tokenable_type` = ? AND `tokenable_id` = ?"
        );
        assert!(q.rows_of_user_locked.ends_with("ORDER BY `personal_access_tokens`.`id` FOR UPDATE"));
        assert!(q.find.contains("ELSE CAST(`created_at` AS DATETIME) END"));
        assert!(q.advisory_lock.is_none());
        let q = Queries::new(Backend::Sqlite, "personal_access_tokens");
        assert!(q.lock_user.is_none(), "BEGIN IMMEDIATE serializes SQLite writers");
        assert!(!q.rows_of_user_locked.contains("FOR UPDATE"));
        assert_eq!(
            q.delete_ids(1),
            "DELETE FROM \"personal_access_tokens\" WHERE \"tokenable_type\" = ? AND \"tokenable_id\" = ? AND \"id\" IN (?)"
        );
        assert!(!q.find_locked.contains("FOR UPDATE"));
    }
}
