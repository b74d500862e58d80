//! Storing a session: the session limit applied in the same script.

use super::*;

impl Ops {
    pub(super) async fn insert(mut self, new: NewSession) -> Result<SessionTokens, StoreError> {
        if new.access.is_none() && new.refresh.is_none() {
            return Err(StoreError::invalid_input("a session needs an access or a refresh token"));
        }
        let user = self.user_keys(&new.user_id);
        let counter = self.keys.counter(user.bucket);
        let max = new.limit.max();
        let max_arg = max.map(|m| m.to_string()).unwrap_or_default();
        let refuse = new.limit.when_full() == crate::session::WhenFull::Refuse;
        let what = || format!("inserting a session into bucket {}", user.bucket);
        for _ in 0..MAX_ATTEMPTS {
            let mut prepare = scripts::PREPARE_INSERT.prepare_invoke();
            prepare.key(&counter).key(&user.by_creation).key(&user.by_deadline).arg(&max_arg).arg(PAGE);
            let reply = decode::array(self.invoke(&prepare).await?, &what)?;
            let [seq, live, oldest]: [Value; 3] =
                reply.try_into().map_err(|_| StoreError::corrupt(format!("{}: unexpected reply", what())))?;
            let seq = u64::try_from(decode::integer(&seq, &what)?)
                .ok()
                .filter(|&seq| (1..=MAX_SEQ).contains(&seq))
                .ok_or_else(|| StoreError::backend(format!("the session counter {counter} is out of range")))?;
            let live = usize::try_from(decode::integer(&live, &what)?).unwrap_or(usize::MAX);
            let oldest = decode::strings(oldest, &what)?;
            let evictions =
                new.limit.evictions(live).map_err(|()| StoreError::session_limit(max.unwrap_or_default()))?;
            if evictions > oldest.len() {
                // More to evict than one script should: revoke a page of the oldest, then look again.
                self.revoke_page(&new.user_id, &user, &oldest, "", "", "").await?;
                continue;
            }
            match self.commit(&new, &user, seq, &oldest[..evictions], &max_arg, refuse).await? {
                Commit::Stored(tokens) => return Ok(tokens),
                Commit::Full => return Err(StoreError::session_limit(max.unwrap_or_default())),
                Commit::Again => continue,
            }
        }
        Err(StoreError::backend("too many concurrent logins of one user; try again"))
    }

    pub(super) async fn commit(
        &mut self,
        new: &NewSession,
        user: &UserKeys,
        seq: u64,
        evict: &[Vec<u8>],
        max_arg: &str,
        refuse: bool,
    ) -> Result<Commit, StoreError> {
        let bucket = user.bucket;
        let primary = if new.refresh.is_some() { TokenKind::Refresh } else { TokenKind::Access };
        let tokens = SessionTokens {
            session_id: crate::session::SessionId::new(Slot::id(seq, primary, bucket)),
            access: new.access.map(|_| Slot::id(seq, TokenKind::Access, bucket)),
            refresh: new.refresh.map(|_| Slot::id(seq, TokenKind::Refresh, bucket)),
        };
        let created_ms = to_millis(new.created_at);
        let expiries = [new.access.map(|s| s.expires_at), new.refresh.map(|s| s.expires_at)];
        let deadline = deadline(expiries.iter().flatten(), self.grace_ms);
        let keys = Arc::clone(&self.keys);
        let session_key = keys.session(bucket, seq);
        let evicted: Vec<_> = evict.iter().filter_map(|m| parse_member(m)).map(|s| keys.session(bucket, s)).collect();
        if evicted.len() != evict.len() {
            return Err(StoreError::corrupt(format!(
                "the session index {} holds a malformed member",
                user.by_creation
            )));
        }
        let mut args: Vec<Vec<u8>> = vec![
            max_arg.into(),
            if refuse { "1" } else { "0" }.into(),
            member(seq).into_bytes(),
            created_ms.to_string().into_bytes(),
            deadline_arg(deadline).into_bytes(),
            new.user_id.to_text().as_bytes().to_vec(),
            evict.len().to_string().into_bytes(),
        ];
        args.extend(evict.iter().cloned());
        args.extend([
            field::USER.into(),
            new.user_id.to_text().as_bytes().to_vec(),
            field::NAME.into(),
            new.name.as_bytes().to_vec(),
            field::ABILITIES.into(),
            new.abilities.to_json().into_bytes(),
            field::SESSION_ID.into(),
            tokens.session_id.to_string().into_bytes(),
            field::CREATED.into(),
            created_ms.to_string().into_bytes(),
            field::VERSION.into(),
            b"1".to_vec(),
        ]);
        if let Some(secret) = &new.access {
            token_fields(&mut args, TokenKind::Access, secret, created_ms);
        }
        if let Some(secret) = &new.refresh {
            token_fields(&mut args, TokenKind::Refresh, secret, created_ms);
        }
        if let Some(family) = &new.family {
            args.extend([field::FAMILY.into(), family.to_hex().into_bytes()]);
        }
        let mut invocation = scripts::COMMIT_INSERT.prepare_invoke();
        invocation.key(session_key).key(&user.by_creation).key(&user.by_deadline);
        for key in &evicted {
            invocation.key(*key);
        }
        for arg in &args {
            invocation.arg(&arg[..]);
        }
        let what = || format!("storing session {session_key}");
        let reply = decode::strings(self.invoke_acknowledged(&invocation).await?, &what)?;
        match reply.first().map(Vec::as_slice) {
            Some(b"ok") => Ok(Commit::Stored(tokens)),
            Some(b"full") => Ok(Commit::Full),
            Some(b"retry" | b"collision") => Ok(Commit::Again),
            _ => Err(StoreError::corrupt(format!("{}: unexpected reply", what()))),
        }
    }
}
