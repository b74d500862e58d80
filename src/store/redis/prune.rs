//! Pruning expired sessions and dead index members.

use super::*;

impl Ops {
    pub(super) async fn prune(
        mut self,
        expired_before: SystemTime,
        created_before: Option<SystemTime>,
    ) -> Result<u64, StoreError> {
        let pattern = self.keys.deadline_index_pattern();
        let expired_before = to_millis(expired_before).to_string();
        let created_before = created_before.map(|t| to_millis(t).to_string()).unwrap_or_default();
        let nodes = bounded(self.timeout, self.conn.primaries()).await?;
        let mut pruned = 0;
        for node in &nodes {
            let mut cursor = b"0".to_vec();
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(&cursor[..]).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT);
                let what = || "scanning for session indexes".to_owned();
                let reply = bounded(self.timeout, self.conn.on(node, scan)).await?;
                let [next, batch]: [Value; 2] = decode::array(reply, &what)?
                    .try_into()
                    .map_err(|_| StoreError::corrupt("an unexpected SCAN reply"))?;
                for key in decode::strings(batch, &what)? {
                    let Some((_, user)) = self.keys.parse_deadline_index(&key) else { continue };
                    pruned += self.prune_user(&user, &expired_before, &created_before).await?;
                }
                cursor = decode::bytes(next, &what)?;
                if cursor == b"0" {
                    break;
                }
            }
        }
        Ok(pruned)
    }

    /// Prunes one user's sessions, page by page. `ZSCAN` returns every member present for the whole
    /// iteration, whatever the scripts delete meanwhile.
    pub(super) async fn prune_user(
        &mut self,
        user_id: &UserId,
        expired_before: &str,
        created_before: &str,
    ) -> Result<u64, StoreError> {
        let user = self.user_keys(user_id);
        let what = || format!("pruning {}", user.by_creation);
        // Drops the dead members first (and an index left with none).
        let mut pruned = self.prune_page(&user, &[], expired_before, created_before).await?;
        let mut cursor = b"0".to_vec();
        loop {
            let mut scan = redis::cmd("ZSCAN");
            scan.arg(&user.by_creation).arg(&cursor[..]).arg("COUNT").arg(PAGE);
            let [next, batch]: [Value; 2] = decode::array(self.query(&scan).await?, &what)?
                .try_into()
                .map_err(|_| StoreError::corrupt(format!("{}: an unexpected ZSCAN reply", what())))?;
            // Members and scores alternate.
            let members: Vec<Vec<u8>> = decode::strings(batch, &what)?.into_iter().step_by(2).collect();
            for page in members.chunks(PAGE) {
                pruned += self.prune_page(&user, page, expired_before, created_before).await?;
            }
            cursor = decode::bytes(next, &what)?;
            if cursor == b"0" {
                return Ok(pruned);
            }
        }
    }

    pub(super) async fn prune_page(
        &mut self,
        user: &UserKeys,
        members: &[Vec<u8>],
        expired_before: &str,
        created_before: &str,
    ) -> Result<u64, StoreError> {
        let mut invocation = self.page_invocation(&scripts::PRUNE_PAGE, user, members)?;
        invocation.arg(expired_before).arg(created_before).arg(self.grace_ms);
        for m in members {
            invocation.arg(&m[..]);
        }
        let what = || format!("pruning {}", user.by_creation);
        Ok(u64::try_from(decode::integer(&self.invoke(&invocation).await?, &what)?).unwrap_or(0))
    }
}
