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
pub(super) const FAMILY: &str = "tta:family:";
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
        let (kind, session, abilities, family, rotated) = match meaning(self.abilities.as_deref()).map_err(corrupt)? {
            Meaning::Retired => return Ok(None),
            Meaning::Access { session, abilities } => {
                (TokenKind::Access, session.unwrap_or(id), abilities, None, Vec::new())
            }
            Meaning::Refresh { grants, family, rotated } => (TokenKind::Refresh, id, grants, family, rotated),
        };
        let time = |naive: NaiveDateTime| time::from_naive(naive, offset);
        let record = TokenRecord {
            digest,
            id,
            session_id: SessionId::new(session),
            kind,
            expires_at: self.expires_at.map(time),
            user_id: UserId::from(user_id),
            created_at: self.created_at.map_or(SystemTime::UNIX_EPOCH, time),
            last_used_at: self.last_used_at.map(time),
            name: self.name.as_deref().unwrap_or_default().into(),
            abilities,
        };
        Ok(Some(Token { record, family, rotated }))
    }

    /// The session this row belongs to, and whether it is retired, read leniently: revoking must work on
    /// rows nothing else can read. An unreadable row is a session of its own unless it carries a
    /// readable session link.
    pub(super) fn session_leniently(&self) -> (SessionId, bool) {
        let own = (SessionId::new(self.id), false);
        let Some(json) = self.abilities.as_deref() else { return own };
        let Ok(list) = serde_json::from_str::<Vec<serde_json::Value>>(json) else { return own };
        let strings = || list.iter().filter_map(serde_json::Value::as_str);
        if strings().any(|a| a == ROTATED_REFRESH_ABILITY) {
            return (SessionId::new(self.id), true);
        }
        if strings().any(|a| a == REFRESH_ABILITY) {
            return own;
        }
        let link = strings().find_map(|a| a.strip_prefix(SESSION)).and_then(|id| id.parse::<SessionId>().ok());
        (link.unwrap_or(SessionId::new(self.id)), false)
    }
}

/// The value of a column, or `None` with the first decoding error kept in `defect`.
fn lenient<T>(defect: &mut Option<String>, value: Result<Option<T>, sqlx::Error>) -> Option<T> {
    value.unwrap_or_else(|e| {
        defect.get_or_insert_with(|| e.to_string());
        None
    })
}

/// A decoded token row: the record, and for a refresh token the refresh tokens it already exchanged.
#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) record: TokenRecord,
    /// The session's refresh family digest (refresh rows written since family keys).
    pub(super) family: Option<TokenDigest>,
    pub(super) rotated: Vec<RotatedRefresh>,
}

/// What a row's `abilities` column says it is.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Meaning {
    /// `"rotated-refresh-token"`, written by version 0.1 of this crate for an exchanged refresh token:
    /// kept only until pruned or revoked; it never authenticates and never exchanges.
    Retired,
    /// An access token: its abilities (reserved entries removed) and the session it links to, if any.
    Access { session: Option<TokenId>, abilities: Abilities },
    /// A refresh token (`"issue-access-token"` listed): what it grants, its family digest, and the
    /// tokens it exchanged within the reuse interval.
    Refresh { grants: Abilities, family: Option<TokenDigest>, rotated: Vec<RotatedRefresh> },
}

/// Decodes an `abilities` column (`None`: SQL `NULL`, no abilities). The JSON is parsed, never string
/// matched, so PHP's `\/` and `\uXXXX` escapes read as what they escape. `Err` names what is wrong.
pub(super) fn meaning(abilities: Option<&str>) -> Result<Meaning, &'static str> {
    let list: Vec<String> = match abilities {
        None => Vec::new(),
        Some(json) => serde_json::from_str(json).map_err(|_| "the abilities column is not a JSON array of strings")?,
    };
    if list.iter().any(|a| a == ROTATED_REFRESH_ABILITY) {
        return Ok(Meaning::Retired);
    }
    if list.iter().any(|a| a == REFRESH_ABILITY) {
        return refresh_meaning(list);
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
            return Err("an access token carries an unknown reserved (tta:) ability");
        } else {
            abilities.push(ability);
        }
    }
    Ok(Meaning::Access { session, abilities: Abilities::from_iter(abilities) })
}

fn refresh_meaning(list: Vec<String>) -> Result<Meaning, &'static str> {
    let mut grants = Vec::new();
    let mut grants_none = false;
    let mut rotated = Vec::new();
    let mut family = None;
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
        } else if ability.starts_with(RESERVED_ABILITY_PREFIX) {
            return Err("a refresh token carries an unknown reserved (tta:) ability");
        }
        // Any other ability a Laravel application gave its refresh token is not a grant.
    }
    let grants = match (grants_none, grants.is_empty()) {
        (true, true) => Abilities::none(),
        (true, false) => return Err("a refresh token both grants abilities and grants none"),
        // Written by a Laravel application (`["issue-access-token"]`): it grants everything.
        (false, true) => Abilities::all(),
        (false, false) => Abilities::from_iter(grants),
    };
    Ok(Meaning::Refresh { grants, family, rotated })
}

fn parse_rotated(entry: &str) -> Option<RotatedRefresh> {
    let (hex, millis) = entry.split_once(':')?;
    if !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digest = TokenDigest::from_hex(hex)?;
    let rotated_at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis.parse().ok()?))?;
    Some(RotatedRefresh { digest, rotated_at })
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn to_json(list: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(StoreError::corrupt)
}

/// The `abilities` of a refresh row: `"issue-access-token"`, what its exchanges grant, the session's
/// family digest, then the refresh tokens exchanged within the reuse interval, oldest first.
pub(super) fn refresh_abilities(
    grants: &Abilities,
    family: Option<&TokenDigest>,
    rotated: &[RotatedRefresh],
) -> Result<String, StoreError> {
    let mut list = vec![REFRESH_ABILITY.to_owned()];
    list.extend(grants.iter().map(|ability| format!("{GRANT}{ability}")));
    if list.len() == 1 {
        list.push(GRANT_NONE.to_owned());
    }
    list.extend(family.map(|family| format!("{FAMILY}{}", family.to_hex())));
    list.extend(rotated.iter().map(|r| format!("{ROTATED}{}:{}", r.digest.to_hex(), unix_millis(r.rotated_at))));
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

    #[test]
    fn laravel_rows_read_as_sanctum_reads_them() {
        assert_eq!(meaning(Some(r#"["*"]"#)), Ok(Meaning::Access { session: None, abilities: Abilities::all() }));
        let Ok(Meaning::Access { session: None, abilities }) = meaning(Some(r#"["posts\/read","caf\u00e9"]"#)) else {
            panic!("an access token")
        };
        assert!(abilities.can("posts/read") && abilities.can("café") && !abilities.can("admin"));
        assert_eq!(meaning(None), Ok(Meaning::Access { session: None, abilities: Abilities::none() }));
        // A refresh token as Laravel apps write it grants everything.
        assert_eq!(
            meaning(Some(r#"["issue-access-token"]"#)),
            Ok(Meaning::Refresh { grants: Abilities::all(), family: None, rotated: Vec::new() })
        );
        assert_eq!(meaning(Some(r#"["issue-access-token","rotated-refresh-token"]"#)), Ok(Meaning::Retired));
        assert_eq!(meaning(Some(r#"["rotated-refresh-token"]"#)), Ok(Meaning::Retired));
    }

    #[test]
    fn star_is_an_access_token_not_a_refresh_token() {
        assert!(matches!(meaning(Some(r#"["*"]"#)), Ok(Meaning::Access { .. })));
        assert!(matches!(meaning(Some(r#"["issue-access-token-x"]"#)), Ok(Meaning::Access { .. })));
    }

    #[test]
    fn refresh_rows_round_trip_grants_and_rotated_tokens() {
        let rotated = [
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
            let json = refresh_abilities(&grants, None, &rotated).unwrap();
            assert!(json.starts_with(r#"["issue-access-token","tta:grant"#), "{json}");
            let decoded = meaning(Some(&json)).unwrap();
            assert_eq!(
                decoded,
                Meaning::Refresh { grants: grants.clone(), family: None, rotated: rotated.to_vec() },
                "{json}"
            );
        }
        let json = refresh_abilities(&Abilities::all(), None, &rotated[1..]).unwrap();
        assert_eq!(
            list(&json),
            [
                "issue-access-token".to_owned(),
                "tta:grant:*".to_owned(),
                format!("tta:rotated:{}:1700000000123", TokenDigest::of(b"b").to_hex()),
            ]
        );
        assert_eq!(
            list(&refresh_abilities(&Abilities::none(), None, &[]).unwrap()),
            ["issue-access-token", "tta:grant-none"]
        );
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
        for bad in [
            "{}",
            "[1]",
            "not json",
            r#"["tta:session:x"]"#,
            r#"["tta:session:-1"]"#,
            r#"["tta:session:1","tta:session:2"]"#,
            r#"["tta:unknown"]"#,
            r#"["issue-access-token","tta:rotated:zz:1"]"#,
            r#"["issue-access-token","tta:rotated:00"]"#,
            r#"["issue-access-token","tta:grant-none","tta:grant:x"]"#,
            r#"["issue-access-token","tta:session:3"]"#,
        ] {
            assert!(meaning(Some(bad)).is_err(), "{bad}");
        }
        let huge = format!(r#"["issue-access-token","tta:rotated:{}:99999999999999999999999"]"#, "0".repeat(64));
        assert!(meaning(Some(&huge)).is_err());
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
        assert_eq!(
            row(5, Some(r#"["issue-access-token","tta:session:3"]"#)).session_leniently(),
            (SessionId::new(5), false)
        );
    }

    #[test]
    fn records_carry_kind_session_and_grants() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let access = row(8, Some(r#"["a","tta:session:3"]"#)).record(utc).unwrap().unwrap();
        assert_eq!((access.record.kind, access.record.session_id), (TokenKind::Access, SessionId::new(3)));
        assert_eq!(access.record.abilities, ["a"].into_iter().collect());
        let refresh = row(3, Some(r#"["issue-access-token","tta:grant:a"]"#)).record(utc).unwrap().unwrap();
        assert_eq!((refresh.record.kind, refresh.record.session_id), (TokenKind::Refresh, SessionId::new(3)));
        assert_eq!(refresh.record.abilities, ["a"].into_iter().collect());
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
