//! The SQL each backend runs, built once per table name.

use super::{Backend, DEFAULT_TABLE, MYSQL_MIGRATION, POSTGRES_MIGRATION, SQLITE_MIGRATION};

/// Statements for one backend and table. Placeholders are bound in the order they appear.
#[derive(Clone, Debug)]
pub(super) struct Queries {
    /// `id`, `tokenable_type` -> columns (see [`SELECT_COLUMNS`]).
    pub(super) find: String,
    /// `token`, `tokenable_type` -> columns, then the id as text.
    pub(super) find_by_digest: String,
    /// `tokenable_type`, `tokenable_id`, `name`, `token`, `abilities`, `expires_at`, `created_at`, `updated_at`.
    pub(super) insert: String,
    /// `id`, `tokenable_type`.
    pub(super) revoke: String,
    /// `tokenable_type`, `tokenable_id`.
    pub(super) revoke_all: String,
    /// `updated_at`, `id`, `tokenable_type`.
    pub(super) mark_rotated: String,
    /// `tokenable_type`, `expires_at` cutoff.
    pub(super) prune_expired: String,
    /// `tokenable_type`, `expires_at` cutoff, `created_at` cutoff.
    pub(super) prune_expired_or_created: String,
    /// `last_used_at`, `updated_at`, `id`, `tokenable_type`.
    pub(super) touch: String,
    /// table name (quoted for PostgreSQL, plain otherwise) -> a row when the table exists.
    pub(super) table_exists: String,
    /// The migration, for this table name.
    pub(super) create_table: String,
}

/// Column order of `find` and `find_by_digest` rows.
pub(super) mod col {
    pub(crate) const TOKENABLE_ID: usize = 0;
    pub(crate) const NAME: usize = 1;
    pub(crate) const TOKEN: usize = 2;
    pub(crate) const ABILITIES: usize = 3;
    pub(crate) const LAST_USED_AT: usize = 4;
    pub(crate) const EXPIRES_AT: usize = 5;
    pub(crate) const CREATED_AT: usize = 6;
    /// Only in `find_by_digest`.
    pub(crate) const ID: usize = 7;
}

/// `name` as a quoted identifier. `name` is already validated as a plain identifier.
pub(super) fn quote(backend: Backend, name: &str) -> String {
    match backend {
        Backend::MySql => format!("`{name}`"),
        Backend::Postgres | Backend::Sqlite => format!("\"{name}\""),
    }
}

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
            format!("(SELECT r.{} FROM json_populate_record(NULL::{t}, json_build_object('tokenable_id', {param}::text)) AS r)", q("tokenable_id"))
        };
        let user_id_param = match backend {
            Backend::Postgres => user_id_as_column("?"),
            Backend::MySql | Backend::Sqlite => "?".to_owned(),
        };
        // sqlx decodes MySQL `TIMESTAMP` only into zoned types; as `DATETIME` it is the same naive value.
        let timestamp = |column: &str| match backend {
            Backend::MySql => format!("CAST({} AS DATETIME)", q(column)),
            Backend::Postgres | Backend::Sqlite => q(column),
        };
        let columns = [
            as_text("tokenable_id"),
            q("name"),
            q("token"),
            q("abilities"),
            timestamp("last_used_at"),
            timestamp("expires_at"),
            timestamp("created_at"),
        ]
        .join(", ");
        let (id, ty) = (q("id"), q("tokenable_type"));
        let insert_columns =
            ["tokenable_type", "tokenable_id", "name", "token", "abilities", "expires_at", "created_at", "updated_at"]
                .map(q)
                .join(", ");
        let insert = match backend {
            // Numbered by hand so the parameters bind in the same order as on the other backends.
            Backend::Postgres => format!(
                "INSERT INTO {t} ({insert_columns}) VALUES ($1, {}, $3, $4, $5, $6, $7, $8) RETURNING {id}",
                user_id_as_column("$2")
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
        let (expires_at, created_at, last_used_at, updated_at, abilities) =
            (q("expires_at"), q("created_at"), q("last_used_at"), q("updated_at"), q("abilities"));
        let queries = Self {
            find: format!("SELECT {columns} FROM {t} WHERE {id} = ? AND {ty} = ?"),
            find_by_digest: format!(
                "SELECT {columns}, {} FROM {t} WHERE {} = ? AND {ty} = ?",
                as_text("id"),
                q("token")
            ),
            insert,
            revoke: format!("DELETE FROM {t} WHERE {id} = ? AND {ty} = ?"),
            revoke_all: format!("DELETE FROM {t} WHERE {ty} = ? AND {} = {user_id_param}", q("tokenable_id")),
            mark_rotated: format!(
                "UPDATE {t} SET {abilities} = '[\"rotated-refresh-token\"]', {updated_at} = ? \
                 WHERE {id} = ? AND {ty} = ? AND {abilities} = '[\"issue-access-token\"]'"
            ),
            prune_expired: format!("DELETE FROM {t} WHERE {ty} = ? AND {expires_at} < ?"),
            prune_expired_or_created: format!(
                "DELETE FROM {t} WHERE {ty} = ? AND ({expires_at} < ? OR {created_at} < ?)"
            ),
            touch: format!("UPDATE {t} SET {last_used_at} = ?, {updated_at} = ? WHERE {id} = ? AND {ty} = ?"),
            table_exists,
            create_table: migration.replace(DEFAULT_TABLE, table),
        };
        match backend {
            Backend::Postgres => queries.numbered(),
            Backend::MySql | Backend::Sqlite => queries,
        }
    }

    /// PostgreSQL wants `$1, $2, ...` instead of `?`. No statement has a `?` inside a literal.
    fn numbered(self) -> Self {
        let number = |sql: String| {
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
        };
        Self {
            find: number(self.find),
            find_by_digest: number(self.find_by_digest),
            insert: number(self.insert),
            revoke: number(self.revoke),
            revoke_all: number(self.revoke_all),
            mark_rotated: number(self.mark_rotated),
            prune_expired: number(self.prune_expired),
            prune_expired_or_created: number(self.prune_expired_or_created),
            touch: number(self.touch),
            table_exists: number(self.table_exists),
            create_table: self.create_table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_in_order() {
        let q = Queries::new(Backend::Postgres, "tokens");
        assert_eq!(
            q.find,
            "SELECT \"tokenable_id\"::text, \"name\", \"token\", \"abilities\", \"last_used_at\", \"expires_at\", \
             \"created_at\" FROM \"tokens\" WHERE \"id\" = $1 AND \"tokenable_type\" = $2"
        );
        assert!(q
            .insert
            .contains("VALUES ($1, (SELECT r.\"tokenable_id\" FROM json_populate_record(NULL::\"tokens\", "));
        assert!(q.insert.contains("'tokenable_id', $2::text)) AS r), $3, $4, $5, $6, $7, $8) RETURNING \"id\""));
        assert!(q.create_table.contains("CREATE TABLE IF NOT EXISTS \"tokens\""));
        assert!(q.create_table.contains("\"tokens_token_unique\""));
        assert!(!q.create_table.contains("personal_access_tokens"));
    }

    #[test]
    fn mysql_and_sqlite_use_question_marks() {
        let q = Queries::new(Backend::MySql, "personal_access_tokens");
        assert_eq!(q.revoke, "DELETE FROM `personal_access_tokens` WHERE `id` = ? AND `tokenable_type` = ?");
        let q = Queries::new(Backend::Sqlite, "personal_access_tokens");
        assert_eq!(
            q.revoke_all,
            "DELETE FROM \"personal_access_tokens\" WHERE \"tokenable_type\" = ? AND \"tokenable_id\" = ?"
        );
    }
}
