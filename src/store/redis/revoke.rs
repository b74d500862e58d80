//! Revoking sessions: one session at once, many in pages of scripts.

use super::*;

impl Ops {
    pub(super) async fn revoke(&mut self, user_id: &UserId, which: Sessions) -> Result<u64, StoreError> {
        let revoked = self.revoke_unacknowledged_if_none(user_id, which).await?;
        if revoked == 0 {
            // Nothing written, so no `WAIT` yet: a retry after an attempt that was applied but not
            // acknowledged finds nothing left, and its answer must still wait until that attempt's
            // write is on the replicas (the marker write's `WAIT` covers every earlier write).
            let key = self.user_keys(user_id).by_creation;
            self.acknowledge_prior_writes(key.as_bytes()).await?;
        }
        Ok(revoked)
    }

    /// [`revoke`](Self::revoke), whose pages that revoke something wait for the replicas.
    async fn revoke_unacknowledged_if_none(&mut self, user_id: &UserId, which: Sessions) -> Result<u64, StoreError> {
        let user = self.user_keys(user_id);
        let own = |id: crate::session::SessionId| {
            let slot = Slot::of_session(id);
            (slot.bucket == user.bucket && slot.seq != 0).then_some(slot)
        };
        let keep = match which {
            Sessions::All => None,
            Sessions::AllExcept(keep) => Some(keep),
            Sessions::Only(id) => {
                let Some(slot) = own(id) else { return Ok(0) };
                let only = id.to_string();
                let (revoked, _) =
                    self.revoke_page(user_id, &user, &[member(slot.seq).into_bytes()], "", "", &only).await?;
                return Ok(revoked);
            }
        };
        // A session id of another bucket is none of this user's: keep nothing.
        let keep = keep.filter(|id| own(*id).is_some()).map(|id| id.to_string()).unwrap_or_default();
        let mut revoked = 0;
        let mut cutoff = "*".to_owned();
        let mut page: Vec<Vec<u8>> = Vec::new();
        let mut kept: Option<Vec<u8>> = None;
        loop {
            page.retain(|m| Some(m) != kept.as_ref());
            let first = cutoff == "*";
            if page.is_empty() && !first {
                return Ok(revoked);
            }
            let (n, next) = self.revoke_page(user_id, &user, &page, &cutoff, &keep, "").await?;
            revoked += n;
            let Some(Next { cutoff: c, kept: k, page: p }) = next else { return Ok(revoked) };
            cutoff = c;
            if k.is_some() {
                kept = k;
            }
            page = p;
        }
    }

    /// Revokes the sessions `members` of `user` (one script), reading the next page when `cutoff`
    /// is not empty.
    pub(super) async fn revoke_page(
        &mut self,
        user_id: &UserId,
        user: &UserKeys,
        members: &[Vec<u8>],
        cutoff: &str,
        keep: &str,
        only: &str,
    ) -> Result<(u64, Option<Next>), StoreError> {
        let mut invocation = self.page_invocation(&scripts::REVOKE_PAGE, user, members)?;
        invocation.arg(&*user_id.to_text()).arg(cutoff).arg(PAGE).arg(keep).arg(only);
        for m in members {
            invocation.arg(&m[..]);
        }
        let what = || format!("revoking sessions of {}", user.by_creation);
        // A call without sessions only reads the first page (and drops expired members): `revoke`
        // waits for the replicas at the end if nothing was revoked.
        let reply = if members.is_empty() {
            self.invoke(&invocation).await?
        } else {
            self.invoke_acknowledged(&invocation).await?
        };
        let reply = decode::array(reply, &what)?;
        let [revoked, cutoff_reply, kept, page]: [Value; 4] =
            reply.try_into().map_err(|_| StoreError::corrupt(format!("{}: unexpected reply", what())))?;
        let revoked = u64::try_from(decode::integer(&revoked, &what)?).unwrap_or(0);
        if cutoff.is_empty() {
            return Ok((revoked, None));
        }
        let cutoff = String::from_utf8(decode::bytes(cutoff_reply, &what)?)
            .map_err(|_| StoreError::corrupt(format!("{}: unexpected cutoff", what())))?;
        let kept = decode::bytes(kept, &what)?;
        let page = decode::strings(page, &what)?;
        Ok((revoked, Some(Next { cutoff, kept: (!kept.is_empty()).then_some(kept), page })))
    }
}
