//! How tokens and sessions live in Sanctum's rows: the `abilities` column decoded and encoded (see the
//! table in the [module docs](super)). Pure functions, no SQL.

use std::time::{Duration, SystemTime};

use chrono::NaiveDateTime;

use super::queries::col;
use super::time;
use crate::session::{RotatedRefresh, SessionId};
use crate::store::StoreError;
use crate::token::{
    Abilities, TokenDigest, TokenId, TokenKind, TokenRecord, UserId, REFRESH_ABILITY, RESERVED_ABILITY_PREFIX,
    ROTATED_REFRESH_ABILITY,
};
use chrono::FixedOffset;

/// On a refresh row: one ability its exchanges grant the access token (`tta:grant:*` for all).
pub(super) const GRANT: &str = "tta:grant:";
/// On a refresh row: its exchanges grant no ability at all (an explicit empty list).
pub(super) const GRANT_NONE: &str = "tta:grant-none";
/// On a refresh row: an exchanged refresh token, `tta:rotated:<64 lowercase hex>:<unix ms>`.
pub(super) const ROTATED: &str = "tta:rotated:";
/// On a refresh row: the digest of the session's refresh family key, `tta:family:<64 lowercase hex>`.
/// This entry, and nothing a Laravel application writes for itself, is what makes a row a refresh row.
pub(super) const FAMILY: &str = "tta:family:";
/// On a refresh row: when the session began (the login), `tta:since:<unix seconds>`. The row's own
/// `created_at` is the last exchange, so that pruning by age takes idle sessions whole.
pub(super) const SINCE: &str = "tta:since:";
/// On a refresh row: the session's access row and when it expires, `tta:access:<id>[:<unix ms>]`, so an
/// exchange finds it by primary key and can tell a pruned access row from one Laravel deleted.
pub(super) const ACCESS: &str = "tta:access:";
/// On an access row: the session (refresh row id) it belongs to, `tta:session:<id>`.
pub(super) const SESSION: &str = "tta:session:";

/// A row of the table as read (every column that can hold anything is optional: no row content panics).
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub(super) id: TokenId,
    pub(super) tokenable_id: Option<String>,
    pub(super) name: Option<String>,
    pub(super) token: Option<String>,
    pub(super) abilities: Option<String>,
    pub(super) last_used_at: Option<NaiveDateTime>,
    pub(super) expires_at: Option<NaiveDateTime>,
    pub(super) created_at: Option<NaiveDateTime>,
    /// Why a column could not be decoded (it then reads as `NULL` here). Reading the row as a token
    /// fails with it; revoking the row does not need it, so a logout works whatever a row holds.
    pub(super) defect: Option<String>,
}

impl Row {
    /// Reads the columns of [`col`] (the id as text, so that `BIGINT`, `BIGINT UNSIGNED` and SQLite's
    /// `INTEGER` read alike). Only an unreadable id is an error here.
    pub(super) fn read<R>(row: &R) -> Result<Self, StoreError>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<NaiveDateTime>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let id = row
            .try_get::<Option<String>, _>(col::ID)
            .ok()
            .flatten()
            .and_then(|id| id.parse::<TokenId>().ok())
            .ok_or_else(|| StoreError::corrupt("a row's id is not a non-negative integer"))?;
        let mut defect = None;
        let tokenable_id = lenient(&mut defect, row.try_get(col::TOKENABLE_ID));
        let name = lenient(&mut defect, row.try_get(col::NAME));
        let token = lenient(&mut defect, row.try_get(col::TOKEN));
        let abilities = lenient(&mut defect, row.try_get(col::ABILITIES));
        let last_used_at = lenient(&mut defect, row.try_get(col::LAST_USED_AT));
        let expires_at = lenient(&mut defect, row.try_get(col::EXPIRES_AT));
        let created_at = lenient(&mut defect, row.try_get(col::CREATED_AT));
        Ok(Self { id, tokenable_id, name, token, abilities, last_used_at, expires_at, created_at, defect })
    }

    /// The row as a token, or `None` for a retired row (see [`Meaning::Retired`]). Strict: anything
    /// this crate cannot read is [`StoreError::corrupt`], never "not found".
    pub(super) fn record(&self, offset: FixedOffset) -> Result<Option<Token>, StoreError> {
        let id = self.id;
        let corrupt = |what: &str| StoreError::corrupt(format!("token {id}: {what}"));
        if let Some(defect) = &self.defect {
            return Err(corrupt(defect));
        }
        let user_id = self.tokenable_id.as_deref().ok_or_else(|| corrupt("tokenable_id is NULL"))?;
        let digest = self
            .token
            .as_deref()
            .and_then(TokenDigest::from_hex)
            .ok_or_else(|| corrupt("the token column is not 64 hex characters"))?;
        let time = |naive: NaiveDateTime| time::from_naive(naive, offset);
        let created_at = self.created_at.map_or(SystemTime::UNIX_EPOCH, time);
        let (kind, session, abilities, refresh) = match meaning(self.abilities.as_deref()).map_err(corrupt)? {
            Meaning::Retired => return Ok(None),
            Meaning::Access { session, abilities } => (TokenKind::Access, session.unwrap_or(id), abilities, None),
            Meaning::Refresh(refresh) => (TokenKind::Refresh, id, refresh.grants.clone(), Some(refresh)),
        };
        let record = TokenRecord {
            digest,
            id,
            session_id: SessionId::new(session),
            kind,
            expires_at: self.expires_at.map(time),
            user_id: UserId::from(user_id),
            // A refresh row's `created_at` is its session's last exchange; the session began at `since`.
            created_at: refresh.as_ref().and_then(|r| r.since).unwrap_or(created_at),
            last_used_at: self.last_used_at.map(time),
            name: self.name.as_deref().unwrap_or_default().into(),
            abilities,
        };
        Ok(Some(Token { record, refresh }))
    }

    /// The session this row belongs to, and whether it is retired, read leniently: revoking must work on
    /// rows nothing else can read. An unreadable row is a session of its own unless it carries a
    /// readable session link.
    pub(super) fn session_leniently(&self) -> (SessionId, bool) {
        let own = (SessionId::new(self.id), false);
        let Some(list) = self.strings_leniently() else { return own };
        if list.iter().any(|a| a == ROTATED_REFRESH_ABILITY) {
            return (SessionId::new(self.id), true);
        }
        if list.iter().any(|a| a.starts_with(FAMILY)) {
            return own;
        }
        let link = list.iter().find_map(|a| a.strip_prefix(SESSION)).and_then(|id| id.parse::<SessionId>().ok());
        (link.unwrap_or(SessionId::new(self.id)), false)
    }

    /// For a refresh row (one with a family entry), read leniently: the id of its access row, if it
    /// names one. `None` for every other row.
    pub(super) fn access_leniently(&self) -> Option<TokenId> {
        let list = self.strings_leniently()?;
        if !list.iter().any(|a| a.starts_with(FAMILY)) {
            return None;
        }
        list.iter().find_map(|a| a.strip_prefix(ACCESS)).and_then(parse_access).map(|link| link.id)
    }

    /// Whether this row is one of the crate's refresh rows (a session with a refresh token), read
    /// leniently: it carries an exact `tta:family:` entry. Only such rows count toward the session limit.
    pub(super) fn is_refresh_leniently(&self) -> bool {
        self.strings_leniently().is_some_and(|list| {
            list.iter().any(|a| a.starts_with(FAMILY)) && !list.iter().any(|a| a == ROTATED_REFRESH_ABILITY)
        })
    }

    /// When the session of a refresh row began, read leniently (`tta:since`, else the row's `created_at`).
    pub(super) fn since_leniently(&self, offset: FixedOffset) -> Option<SystemTime> {
        let since = self.strings_leniently().and_then(|list| {
            list.iter().find_map(|a| a.strip_prefix(SINCE)).and_then(|s| s.parse::<u64>().ok()).map(from_unix_secs)
        });
        since.or_else(|| self.created_at.map(|naive| time::from_naive(naive, offset)))
    }

    /// The strings of the `abilities` array, skipping anything else; `None` if it is not an array.
    fn strings_leniently(&self) -> Option<Vec<String>> {
        let list = serde_json::from_str::<Vec<serde_json::Value>>(self.abilities.as_deref()?).ok()?;
        Some(
            list.into_iter()
                .filter_map(|v| if let serde_json::Value::String(s) = v { Some(s) } else { None })
                .collect(),
        )
    }
}

/// The value of a column, or `None` with the first decoding error kept in `defect`.
fn lenient<T>(defect: &mut Option<String>, value: Result<Option<T>, sqlx::Error>) -> Option<T> {
    value.unwrap_or_else(|e| {
        defect.get_or_insert_with(|| e.to_string());
        None
    })
}

/// A decoded token row: the record and, for a refresh row, its bookkeeping.
#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) record: TokenRecord,
    pub(super) refresh: Option<RefreshRow>,
}

/// The session's access row as its refresh row records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AccessLink {
    pub(super) id: TokenId,
    /// When that access token expires (`None`: never). An access row missing after this instant was
    /// pruned; missing before it, it was deleted (a Laravel logout).
    pub(super) expires_at: Option<SystemTime>,
}

impl AccessLink {
    /// Whether the access token had expired by `now`, as the table saw it: at the second precision of
    /// its `expires_at` column (which is truncated), so that a row pruned in the very second it expired
    /// reads as expired, not as deleted.
    pub(super) fn expired_by(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|expires| from_unix_secs(unix_secs(expires)) <= now)
    }
}

/// What a refresh row holds besides its token.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct RefreshRow {
    /// What its exchanges grant (never more than the session was issued with).
    pub(super) grants: Abilities,
    /// The session's refresh family digest.
    pub(super) family: TokenDigest,
    /// The refresh tokens it exchanged within the reuse interval.
    pub(super) rotated: Vec<RotatedRefresh>,
    /// When the session began (`None`: written before `tta:since`; the row's `created_at` stands in).
    pub(super) since: Option<SystemTime>,
    /// The session's access row, if it has one.
    pub(super) access: Option<AccessLink>,
}

/// What a row's `abilities` column says it is.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Meaning {
    /// `"rotated-refresh-token"`, written by version 0.1 of this crate for an exchanged refresh token:
    /// kept only until pruned or revoked; it never authenticates and never exchanges.
    Retired,
    /// An access token: its abilities (the session link removed) and the session it links to, if any.
    /// Every row Laravel writes is one, whatever its abilities (`"issue-access-token"` included).
    Access { session: Option<TokenId>, abilities: Abilities },
    /// A refresh row this crate wrote: it carries a `tta:family:` entry.
    Refresh(RefreshRow),
}

/// Decodes an `abilities` column (`None`: SQL `NULL`, no abilities). The JSON is parsed, never string
/// matched, so PHP's `\/` and `\uXXXX` escapes read as what they escape. `Err` names what is wrong.
///
/// The kind of a row is never inferred from an ability a Laravel application can grant its own tokens:
/// a row is a refresh row only with a `tta:family:` entry (and then it must be complete: grants, no
/// unknown `tta:` entry), and every other row is an access token with its literal abilities. A row
/// with `tta:` entries that form neither is unreadable (`Err`).
pub(super) fn meaning(abilities: Option<&str>) -> Result<Meaning, &'static str> {
    let list: Vec<String> = match abilities {
        None => Vec::new(),
        Some(json) => serde_json::from_str(json).map_err(|_| "the abilities column is not a JSON array of strings")?,
    };
    if list.iter().any(|a| a == ROTATED_REFRESH_ABILITY) {
        return Ok(Meaning::Retired);
    }
    if list.iter().any(|a| a.starts_with(FAMILY)) {
        return refresh_meaning(list).map(Meaning::Refresh);
    }
    let mut session = None;
    let mut abilities = Vec::with_capacity(list.len());
    for ability in list {
        if let Some(id) = ability.strip_prefix(SESSION) {
            let id = id.parse::<SessionId>().map_err(|_| "a session link is not a row id")?;
            if session.replace(id.get()).is_some() {
                return Err("an access token links to two sessions");
            }
        } else if ability.starts_with(RESERVED_ABILITY_PREFIX) {
            return Err("an access token carries a reserved (tta:) ability other than its session link");
        } else {
            abilities.push(ability);
        }
    }
    Ok(Meaning::Access { session, abilities: Abilities::from_iter(abilities) })
}

fn refresh_meaning(list: Vec<String>) -> Result<RefreshRow, &'static str> {
    let mut grants = Vec::new();
    let mut grants_none = false;
    let mut rotated = Vec::new();
    let mut family = None;
    let mut since = None;
    let mut access = None;
    for ability in list {
        if ability == REFRESH_ABILITY {
            continue;
        }
        if let Some(granted) = ability.strip_prefix(GRANT) {
            grants.push(granted.to_owned());
        } else if ability == GRANT_NONE {
            grants_none = true;
        } else if let Some(hex) = ability.strip_prefix(FAMILY) {
            let digest = TokenDigest::from_hex(hex).ok_or("a refresh family entry is not 64 hex digits")?;
            if family.replace(digest).is_some() {
                return Err("a refresh token has two families");
            }
        } else if let Some(entry) = ability.strip_prefix(ROTATED) {
            rotated.push(parse_rotated(entry).ok_or("an exchanged refresh token entry is malformed")?);
        } else if let Some(secs) = ability.strip_prefix(SINCE) {
            let secs = secs.parse::<u64>().ok().filter(|_| secs.bytes().all(|b| b.is_ascii_digit()));
            if since.replace(from_unix_secs(secs.ok_or("a session start is not unix seconds")?)).is_some() {
                return Err("a refresh token has two session starts");
            }
        } else if let Some(link) = ability.strip_prefix(ACCESS) {
            if access.replace(parse_access(link).ok_or("an access link is malformed")?).is_some() {
                return Err("a refresh token links two access rows");
            }
        } else if ability.starts_with(RESERVED_ABILITY_PREFIX) {
            return Err("a refresh token carries an unknown reserved (tta:) ability");
        }
        // Any other ability on the row is not a grant.
    }
    let family = family.ok_or("a refresh token without a family")?;
    let grants = match (grants_none, grants.is_empty()) {
        (true, true) => Abilities::none(),
        (true, false) => return Err("a refresh token both grants abilities and grants none"),
        // Never "everything": a refresh row that does not say what it grants is unreadable.
        (false, true) => return Err("a refresh token that does not say what it grants"),
        (false, false) => Abilities::from_iter(grants),
    };
    Ok(RefreshRow { grants, family, rotated, since, access })
}

fn parse_rotated(entry: &str) -> Option<RotatedRefresh> {
    let (hex, millis) = entry.split_once(':')?;
    let digest = TokenDigest::from_hex(hex)?;
    Some(RotatedRefresh { digest, rotated_at: from_unix_millis(millis)? })
}

fn parse_access(link: &str) -> Option<AccessLink> {
    let (id, expires) = match link.split_once(':') {
        Some((id, millis)) => (id, Some(from_unix_millis(millis)?)),
        None => (link, None),
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(AccessLink { id: id.parse().ok()?, expires_at: expires })
}

fn from_unix_millis(millis: &str) -> Option<SystemTime> {
    if millis.is_empty() || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis.parse().ok()?))
}

fn from_unix_secs(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn to_json(list: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(StoreError::corrupt)
}

/// The `abilities` of a refresh row: `"issue-access-token"` (so Laravel's refresh endpoints that check
/// `tokenCan('issue-access-token')` still recognise it), what its exchanges grant, the session's family
/// digest, when the session began, its access row, then the refresh tokens exchanged within the reuse
/// interval, oldest first.
pub(super) fn refresh_abilities(refresh: &RefreshRow) -> Result<String, StoreError> {
    let mut list = vec![REFRESH_ABILITY.to_owned()];
    list.extend(refresh.grants.iter().map(|ability| format!("{GRANT}{ability}")));
    if list.len() == 1 {
        list.push(GRANT_NONE.to_owned());
    }
    list.push(format!("{FAMILY}{}", refresh.family.to_hex()));
    list.extend(refresh.since.map(|since| format!("{SINCE}{}", unix_secs(since))));
    list.extend(refresh.access.map(|link| match link.expires_at {
        Some(expires) => format!("{ACCESS}{}:{}", link.id, unix_millis(expires)),
        None => format!("{ACCESS}{}", link.id),
    }));
    list.extend(
        refresh.rotated.iter().map(|r| format!("{ROTATED}{}:{}", r.digest.to_hex(), unix_millis(r.rotated_at))),
    );
    to_json(&list)
}

/// The `abilities` of an access row: the abilities verbatim, then the link to its session's refresh row
/// when it has one.
pub(super) fn access_abilities(abilities: &Abilities, session: Option<TokenId>) -> Result<String, StoreError> {
    let mut list: Vec<String> = abilities.iter().map(str::to_owned).collect();
    list.extend(session.map(|id| format!("{SESSION}{id}")));
    to_json(&list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(json: &str) -> Vec<String> {
        serde_json::from_str(json).unwrap()
    }

    fn family() -> TokenDigest {
        TokenDigest::of(b"family")
    }

    fn refresh_row(grants: Abilities, rotated: Vec<RotatedRefresh>) -> RefreshRow {
        RefreshRow { grants, family: family(), rotated, since: None, access: None }
    }

    #[test]
    fn laravel_rows_read_as_sanctum_reads_them() {
        assert_eq!(meaning(Some(r#"["*"]"#)), Ok(Meaning::Access { session: None, abilities: Abilities::all() }));
        let Ok(Meaning::Access { session: None, abilities }) = meaning(Some(r#"["posts\/read","caf\u00e9"]"#)) else {
            panic!("an access token")
        };
        assert!(abilities.can("posts/read") && abilities.can("café") && !abilities.can("admin"));
        assert_eq!(meaning(None), Ok(Meaning::Access { session: None, abilities: Abilities::none() }));
        assert_eq!(meaning(Some(r#"["issue-access-token","rotated-refresh-token"]"#)), Ok(Meaning::Retired));
        assert_eq!(meaning(Some(r#"["rotated-refresh-token"]"#)), Ok(Meaning::Retired));
    }

    #[test]
    fn issue_access_token_is_a_literal_ability_never_a_refresh_token() {
        // As Laravel's tokenCan reads them: access tokens, with exactly the abilities they list.
        for json in [
            r#"["issue-access-token"]"#,
            r#"["issue-access-token","posts:read"]"#,
            r#"["posts:read","issue-access-token"]"#,
            r#"["issue-access-token","*"]"#,
        ] {
            let Ok(Meaning::Access { session: None, abilities }) = meaning(Some(json)) else { panic!("{json}") };
            let listed: Vec<String> = list(json);
            assert!(abilities.can("issue-access-token"), "{json}");
            assert_eq!(abilities.can("admin"), listed.iter().any(|a| a == "*"), "{json}: nothing more than listed");
        }
        assert!(matches!(meaning(Some(r#"["issue-access-token-x"]"#)), Ok(Meaning::Access { .. })));
    }

    #[test]
    fn tta_entries_that_form_no_row_of_ours_are_unreadable() {
        for bad in [
            r#"["tta:admin"]"#,
            r#"["issue-access-token","tta:grant:*"]"#,
            r#"["issue-access-token","tta:grant-none"]"#,
            r#"["tta:grant:*"]"#,
            r#"["posts:read","tta:since:1"]"#,
        ] {
            assert!(meaning(Some(bad)).is_err(), "{bad}");
        }
        // A family without grants never grants everything: it is unreadable.
        let no_grants = format!(r#"["issue-access-token","tta:family:{}"]"#, family().to_hex());
        assert!(meaning(Some(&no_grants)).is_err());
    }

    #[test]
    fn refresh_rows_round_trip_their_bookkeeping() {
        let rotated = vec![
            RotatedRefresh {
                digest: TokenDigest::of(b"a"),
                rotated_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1),
            },
            RotatedRefresh {
                digest: TokenDigest::of(b"b"),
                rotated_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            },
        ];
        for grants in [
            Abilities::all(),
            Abilities::none(),
            ["posts:read", "a:b:c", "", "*", "x"].into_iter().collect::<Abilities>(),
        ] {
            for (since, access) in [
                (None, None),
                (
                    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
                    Some(AccessLink {
                        id: 77,
                        expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_900_456)),
                    }),
                ),
                (None, Some(AccessLink { id: 78, expires_at: None })),
            ] {
                let row = RefreshRow { since, access, ..refresh_row(grants.clone(), rotated.clone()) };
                let json = refresh_abilities(&row).unwrap();
                assert!(json.starts_with(r#"["issue-access-token","tta:grant"#), "{json}");
                assert_eq!(meaning(Some(&json)), Ok(Meaning::Refresh(row)), "{json}");
            }
        }
        let row = RefreshRow {
            since: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(5)),
            access: Some(AccessLink { id: 9, expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(7)) }),
            ..refresh_row(Abilities::all(), rotated[1..].to_vec())
        };
        assert_eq!(
            list(&refresh_abilities(&row).unwrap()),
            [
                "issue-access-token".to_owned(),
                "tta:grant:*".to_owned(),
                format!("tta:family:{}", family().to_hex()),
                "tta:since:5".to_owned(),
                "tta:access:9:7".to_owned(),
                format!("tta:rotated:{}:1700000000123", TokenDigest::of(b"b").to_hex()),
            ]
        );
        assert_eq!(
            list(&refresh_abilities(&refresh_row(Abilities::none(), Vec::new())).unwrap())[..2],
            ["issue-access-token", "tta:grant-none"]
        );
    }

    #[test]
    fn an_access_link_expires_at_the_precision_of_the_table() {
        let at = |millis: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(millis);
        let link = AccessLink { id: 1, expires_at: Some(at(10_700)) };
        assert!(!link.expired_by(at(9_999)));
        assert!(link.expired_by(at(10_000)), "expires_at holds 10 s: pruned at 10.2 s, it had expired");
        assert!(!AccessLink { id: 1, expires_at: None }.expired_by(at(u64::from(u32::MAX))));
    }

    #[test]
    fn access_rows_keep_the_abilities_verbatim_and_link_their_session() {
        let abilities: Abilities = ["posts:read", "posts/write"].into_iter().collect();
        let json = access_abilities(&abilities, Some(7)).unwrap();
        assert_eq!(list(&json), ["posts:read", "posts/write", "tta:session:7"]);
        assert_eq!(meaning(Some(&json)), Ok(Meaning::Access { session: Some(7), abilities: abilities.clone() }));
        assert_eq!(access_abilities(&Abilities::all(), None).unwrap(), r#"["*"]"#);
        let json = access_abilities(&Abilities::none(), Some(9)).unwrap();
        assert_eq!(meaning(Some(&json)), Ok(Meaning::Access { session: Some(9), abilities: Abilities::none() }));
        // PHP escapes round-trip: json_encode writes "\/" and "\u00e9".
        let php = r#"["posts\/read","caf\u00e9","tta:session:12"]"#;
        let Ok(Meaning::Access { session: Some(12), abilities }) = meaning(Some(php)) else { panic!("{php}") };
        assert_eq!(abilities.iter().collect::<Vec<_>>(), ["posts/read", "café"]);
    }

    #[test]
    fn malformed_bookkeeping_is_an_error_never_a_panic_or_a_guess() {
        let f = family().to_hex();
        for bad in [
            "{}".to_owned(),
            "[1]".to_owned(),
            "not json".to_owned(),
            r#"["tta:session:x"]"#.to_owned(),
            r#"["tta:session:-1"]"#.to_owned(),
            r#"["tta:session:1","tta:session:2"]"#.to_owned(),
            r#"["tta:unknown"]"#.to_owned(),
            format!(r#"["issue-access-token","tta:grant:*","tta:family:{f}","tta:rotated:zz:1"]"#),
            format!(r#"["issue-access-token","tta:grant:*","tta:family:{f}","tta:rotated:00"]"#),
            format!(r#"["issue-access-token","tta:grant-none","tta:grant:x","tta:family:{f}"]"#),
            format!(r#"["issue-access-token","tta:grant:*","tta:family:{f}","tta:session:3"]"#),
            format!(r#"["tta:grant:*","tta:family:{f}","tta:family:{f}"]"#),
            r#"["tta:grant:*","tta:family:00"]"#.to_owned(),
            format!(r#"["tta:grant:*","tta:family:{f}","tta:since:x"]"#),
            format!(r#"["tta:grant:*","tta:family:{f}","tta:access:"]"#),
            format!(r#"["tta:grant:*","tta:family:{f}","tta:access:1:x"]"#),
            format!(r#"["tta:grant:*","tta:family:{f}","tta:access:1","tta:access:2"]"#),
            format!(r#"["tta:grant:*","tta:family:{f}","tta:rotated:{}:99999999999999999999999"]"#, "0".repeat(64)),
        ] {
            assert!(meaning(Some(&bad)).is_err(), "{bad}");
        }
    }

    fn row(id: TokenId, abilities: Option<&str>) -> Row {
        Row {
            id,
            tokenable_id: Some("1".into()),
            name: None,
            token: Some(TokenDigest::of(b"x").to_hex()),
            abilities: abilities.map(str::to_owned),
            last_used_at: None,
            expires_at: None,
            created_at: None,
            defect: None,
        }
    }

    #[test]
    fn lenient_sessions_follow_a_readable_link_and_otherwise_stand_alone() {
        assert_eq!(row(5, Some(r#"["*","tta:session:3"]"#)).session_leniently(), (SessionId::new(3), false));
        assert_eq!(
            row(5, Some(r#"["*","tta:bogus","tta:session:3"]"#)).session_leniently(),
            (SessionId::new(3), false)
        );
        assert_eq!(row(5, Some("garbage")).session_leniently(), (SessionId::new(5), false));
        assert_eq!(row(5, None).session_leniently(), (SessionId::new(5), false));
        assert_eq!(row(5, Some(r#"["rotated-refresh-token"]"#)).session_leniently(), (SessionId::new(5), true));
        let refresh = format!(r#"["tta:grant:*","tta:family:{}","tta:access:9:1","tta:session:3"]"#, family().to_hex());
        let refresh = row(5, Some(&refresh));
        assert_eq!(refresh.session_leniently(), (SessionId::new(5), false));
        assert!(refresh.is_refresh_leniently());
        assert_eq!(refresh.access_leniently(), Some(9));
        // Only a refresh row names an access row; a Laravel row cannot point eviction elsewhere.
        assert_eq!(row(5, Some(r#"["tta:access:9"]"#)).access_leniently(), None);
        assert!(!row(5, Some(r#"["issue-access-token"]"#)).is_refresh_leniently());
    }

    #[test]
    fn records_carry_kind_session_and_grants() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let access = row(8, Some(r#"["a","tta:session:3"]"#)).record(utc).unwrap().unwrap();
        assert_eq!((access.record.kind, access.record.session_id), (TokenKind::Access, SessionId::new(3)));
        assert_eq!(access.record.abilities, ["a"].into_iter().collect());
        let json = format!(r#"["issue-access-token","tta:grant:a","tta:family:{}","tta:since:60"]"#, family().to_hex());
        let refresh = row(3, Some(&json)).record(utc).unwrap().unwrap();
        assert_eq!((refresh.record.kind, refresh.record.session_id), (TokenKind::Refresh, SessionId::new(3)));
        assert_eq!(refresh.record.abilities, ["a"].into_iter().collect());
        assert_eq!(refresh.record.created_at, SystemTime::UNIX_EPOCH + Duration::from_secs(60), "the session start");
        assert_eq!(refresh.refresh.unwrap().family, family());
        let laravel = row(4, Some(r#"["issue-access-token"]"#)).record(utc).unwrap().unwrap();
        assert_eq!((laravel.record.kind, laravel.record.session_id), (TokenKind::Access, SessionId::new(4)));
        assert!(laravel.refresh.is_none() && !laravel.record.abilities.can("posts:read"));
        assert!(row(4, Some(r#"["rotated-refresh-token"]"#)).record(utc).unwrap().is_none());
        let mut no_user = row(4, None);
        no_user.tokenable_id = None;
        assert!(no_user.record(utc).is_err());
        let mut bad_token = row(4, None);
        bad_token.token = Some("not-a-sha256".into());
        assert!(bad_token.record(utc).is_err());
        let mut undecodable = row(4, Some(r#"["*","tta:session:3"]"#));
        undecodable.defect = Some("error decoding column 6".into());
        assert!(undecodable.record(utc).is_err(), "strict reads report it");
        assert_eq!(undecodable.session_leniently(), (SessionId::new(3), false), "revocation still places it");
    }
}
