//! Listing a user's sessions.

use super::*;

impl Ops {
    pub(super) async fn list(mut self, user_id: UserId) -> Result<Vec<SessionSummary>, StoreError> {
        let user = self.user_keys(&user_id);
        let what = || format!("listing {}", user.by_creation);
        let mut members = Vec::new();
        loop {
            let start = members.len();
            let mut range = redis::cmd("ZRANGE");
            range.arg(&user.by_creation).arg(start).arg(start + 999);
            let page = decode::strings(self.query(&range).await?, &what)?;
            let done = page.len() < 1000;
            members.extend(page);
            if done {
                break;
            }
        }
        let [ad, ae, _, al] = field::token(TokenKind::Access);
        let [rd, re, _, rl] = field::token(TokenKind::Refresh);
        let fields =
            [field::USER, field::SESSION_ID, field::NAME, field::ABILITIES, field::CREATED, ad, ae, al, rd, re, rl];
        let mut sessions = Vec::with_capacity(members.len());
        for chunk in members.chunks(PAGE) {
            let mut read = scripts::READ_SESSIONS.prepare_invoke();
            for key in self.session_keys(&user, chunk)? {
                read.key(key);
            }
            read.arg(&fields[..]);
            let replies = decode::array(self.invoke(&read).await?, &what)?;
            for reply in replies {
                let values: [Option<Vec<u8>>; 11] = decode::fields(reply, &what)?;
                let [u, sid, n, ab, c, ad_v, ae_v, al_v, rd_v, re_v, rl_v] = &values;
                if ad_v.is_none() && rd_v.is_none() {
                    continue; // expired or revoked since the index was read
                }
                let r = Reader { what: &what };
                if r.user(field::USER, u)? != user_id {
                    continue;
                }
                let mut expires_at = Some(SystemTime::UNIX_EPOCH);
                let mut last_used_at = None;
                for (digest, expiry, used, names) in [(ad_v, ae_v, al_v, (ae, al)), (rd_v, re_v, rl_v, (re, rl))] {
                    if digest.is_none() {
                        continue;
                    }
                    expires_at = match (expires_at, r.optional_time(names.0, expiry)?) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                    last_used_at = last_used_at.max(r.optional_time(names.1, used)?);
                }
                sessions.push(SessionSummary {
                    id: crate::session::SessionId::new(r.id(field::SESSION_ID, sid)?),
                    user_id: user_id.clone(),
                    name: r.name(field::NAME, n)?,
                    abilities: r.abilities(field::ABILITIES, ab)?,
                    created_at: r.time(field::CREATED, c)?,
                    last_used_at,
                    expires_at,
                });
            }
        }
        sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(sessions)
    }
}
