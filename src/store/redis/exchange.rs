//! Exchanging a refresh token: read, decide, then one compare-and-set script.

use super::*;

impl Ops {
    pub(super) async fn exchange(mut self, exchange: RefreshExchange) -> Result<ExchangeOutcome, StoreError> {
        let slot = Slot::of(exchange.token_id);
        if slot.kind != TokenKind::Refresh || slot.seq == 0 {
            return Ok(ExchangeOutcome::Invalid);
        }
        let keys = Arc::clone(&self.keys);
        let key = keys.session(slot.bucket, slot.seq);
        let what = || format!("session {key}");
        let [rd, re, rc, rl] = field::token(TokenKind::Refresh);
        let mut read = redis::cmd("HMGET");
        read.arg(key).arg(&[
            field::USER,
            field::NAME,
            field::ABILITIES,
            field::SESSION_ID,
            field::CREATED,
            field::VERSION,
            rd,
            re,
            rc,
            rl,
            field::ROTATED,
            field::FAMILY,
        ]);
        for _ in 0..MAX_ATTEMPTS {
            let values: [Option<Vec<u8>>; 12] = decode::fields(self.query(&read).await?, &what)?;
            let [u, n, ab, sid, c, v, d, e, tc, tl, rot, fam] = &values;
            if d.is_none() {
                return Ok(ExchangeOutcome::Invalid);
            }
            let r = Reader { what: &what };
            let current = TokenRecord {
                digest: r.digest(rd, d)?,
                id: exchange.token_id,
                session_id: crate::session::SessionId::new(r.id(field::SESSION_ID, sid)?),
                kind: TokenKind::Refresh,
                expires_at: r.optional_time(re, e)?,
                user_id: r.user(field::USER, u)?,
                created_at: r.time(rc, tc)?,
                last_used_at: r.optional_time(rl, tl)?,
                name: r.name(field::NAME, n)?,
                abilities: r.abilities(field::ABILITIES, ab)?,
            };
            let version = r.text(field::VERSION, v)?.to_owned();
            let created = r.text(field::CREATED, c)?.to_owned();
            let rotated = r.rotated(field::ROTATED, rot)?;
            let family = r.optional_digest(field::FAMILY, fam)?;
            let user = self.user_keys(&current.user_id);
            if user.bucket != slot.bucket {
                return Err(StoreError::corrupt(format!("{}: the user is not of this bucket", what())));
            }
            match exchange.decide(Some(&current), family.as_ref(), &rotated) {
                ExchangeDecision::Invalid => return Ok(ExchangeOutcome::Invalid),
                ExchangeDecision::Rotate => {
                    let list = exchange.rotated_after(&rotated, current.digest);
                    if self.rotate(&exchange, slot, &user, &version, &created, &list).await? {
                        return Ok(ExchangeOutcome::Exchanged(ExchangedSession {
                            session_id: current.session_id,
                            user_id: current.user_id,
                            name: current.name,
                            abilities: current.abilities,
                            access: slot.with_kind(TokenKind::Access),
                            refresh: exchange.token_id,
                        }));
                    }
                }
                ExchangeDecision::Reuse => {
                    let mut revoke = scripts::REVOKE_REUSED.prepare_invoke();
                    revoke.key(key).key(&user.by_creation).key(&user.by_deadline).arg(&version).arg(member(slot.seq));
                    let revoked = decode::integer(&self.invoke_acknowledged(&revoke).await?, &what)?;
                    let Ok(mut revoked) = u64::try_from(revoked) else { continue };
                    if exchange.on_reuse == OnReuse::RevokeAllSessions {
                        revoked += self.revoke(&current.user_id, Sessions::All).await?;
                    }
                    return Ok(ExchangeOutcome::Reused {
                        user_id: current.user_id,
                        session_id: current.session_id,
                        revoked,
                    });
                }
            }
        }
        Err(StoreError::backend("too many concurrent exchanges in one session; try again"))
    }

    /// The compare-and-set of a rotation: `false` if the session changed since it was read.
    pub(super) async fn rotate(
        &mut self,
        exchange: &RefreshExchange,
        slot: Slot,
        user: &UserKeys,
        version: &str,
        created: &str,
        rotated: &[crate::session::RotatedRefresh],
    ) -> Result<bool, StoreError> {
        let now_ms = to_millis(exchange.now);
        let deadline = deadline([&exchange.access.expires_at, &exchange.refresh.expires_at], self.grace_ms);
        let [_, ae, _, al] = field::token(TokenKind::Access);
        let [_, re, _, rl] = field::token(TokenKind::Refresh);
        let mut delete: Vec<&str> = vec![al, rl];
        if exchange.access.expires_at.is_none() {
            delete.push(ae);
        }
        if exchange.refresh.expires_at.is_none() {
            delete.push(re);
        }
        let mut set: Vec<Vec<u8>> = Vec::with_capacity(14);
        token_fields(&mut set, TokenKind::Access, &exchange.access, now_ms);
        token_fields(&mut set, TokenKind::Refresh, &exchange.refresh, now_ms);
        set.extend([field::FAMILY.into(), exchange.next_family.to_hex().into_bytes()]);
        if rotated.is_empty() {
            delete.push(field::ROTATED);
        } else {
            set.extend([field::ROTATED.into(), decode::encode_rotated(rotated).into_bytes()]);
        }
        let keys = Arc::clone(&self.keys);
        let key = keys.session(slot.bucket, slot.seq);
        let mut invocation = scripts::ROTATE.prepare_invoke();
        invocation
            .key(key)
            .key(&user.by_creation)
            .key(&user.by_deadline)
            .arg(version)
            .arg(member(slot.seq))
            .arg(created)
            .arg(deadline_arg(deadline))
            .arg(delete.len())
            .arg(&delete[..]);
        for arg in &set {
            invocation.arg(&arg[..]);
        }
        let what = || format!("rotating session {key}");
        Ok(decode::integer(&self.invoke_acknowledged(&invocation).await?, &what)? == 1)
    }
}
