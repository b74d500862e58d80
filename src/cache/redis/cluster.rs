//! What the bus needs to know of a Redis Cluster: which nodes can accept a write to the store's keys,
//! read from `CLUSTER NODES`.
//!
//! Tracking is per server: a node pushes invalidations only for writes it executes. So the bus
//! keeps a tracking connection to every node that can execute a write, and each fence asks every
//! one of them, on that same connection, for its view of the cluster (`CLUSTER NODES`). The fence
//! succeeds only if every tracked node still calls itself a primary, under the id it had when the bus
//! connected, and no node's view names a node that can take writes which the bus does not track: a
//! primary holding slots, or the target of a slot being migrated (it takes `ASKING` writes before it
//! owns the slot). A failover, a demoted primary or a new primary therefore fails the fence; the bus
//! then subscribes again, to the cluster as it is now, and empties the cache.

use std::collections::BTreeSet;

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) id: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) myself: bool,
    pub(super) primary: bool,
    /// It serves at least one slot.
    pub(super) has_slots: bool,
    /// Nodes this node's line names in a migration (`[slot->-id]`, `[slot-<-id]`).
    pub(super) migrating_with: Vec<String>,
}

/// Parses a `CLUSTER NODES` reply; lines it cannot read are skipped (a node in handshake has no
/// usable address yet, and cannot own slots).
pub(super) fn parse(text: &str) -> Vec<Node> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Node> {
    let mut fields = line.split_whitespace();
    let id = fields.next()?.to_owned();
    // `ip:port@cport[,hostname]`; an empty ip (`:0@0`) is a node without an address.
    let address = fields.next()?.split(['@', ',']).next()?;
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
    let flags: Vec<&str> = fields.next()?.split(',').collect();
    if host.is_empty() || flags.contains(&"handshake") || flags.contains(&"noaddr") {
        return None;
    }
    let mut rest = fields.skip(4); // master id, ping-sent, pong-recv, config-epoch
    rest.next()?; // link-state
    let (mut has_slots, mut migrating_with) = (false, Vec::new());
    for slot in rest {
        match slot.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(migration) => {
                if let Some((_, other)) = migration.split_once("->-").or_else(|| migration.split_once("-<-")) {
                    migrating_with.push(other.to_owned());
                }
            }
            None => has_slots = true,
        }
    }
    Some(Node {
        id,
        host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port,
        myself: flags.contains(&"myself"),
        primary: flags.contains(&"master"),
        has_slots,
        migrating_with,
    })
}

/// The nodes of `view` that can execute a write to some key: primaries with slots, and the nodes
/// taking part in a migration. By id.
pub(super) fn writers(view: &[Node]) -> BTreeSet<String> {
    let mut writers = BTreeSet::new();
    for node in view {
        if node.primary && (node.has_slots || !node.migrating_with.is_empty()) {
            writers.insert(node.id.clone());
        }
        writers.extend(node.migrating_with.iter().cloned());
    }
    writers
}

/// Why a fence on a cluster fails.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Changed {
    /// The node answering is not the tracked one any more, or not a primary.
    NotThePrimary(String),
    /// A view names a node that can take writes and is not tracked.
    Untracked(String),
}

/// Checks the view `answered` by the tracked node `id`, against every tracked id.
pub(super) fn check(id: &str, answered: &[Node], tracked: &BTreeSet<String>) -> Result<(), Changed> {
    match answered.iter().find(|n| n.myself) {
        Some(me) if me.id == id && me.primary => {}
        _ => return Err(Changed::NotThePrimary(id.to_owned())),
    }
    match writers(answered).into_iter().find(|w| !tracked.contains(w)) {
        Some(untracked) => Err(Changed::Untracked(untracked)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTHY: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,hostname2 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003,hostname3 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005,hostname5 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006,hostname6 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,hostname1 myself,master - 0 0 1 connected 0-5460
";

    fn ids(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    const A: &str = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca";
    const B: &str = "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1";
    const C: &str = "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f";
    const A_REPLICA: &str = "07c37dfeb235213a872192d90877d0cd55635b91";

    #[test]
    fn the_primaries_with_slots_are_the_writers() {
        let view = parse(HEALTHY);
        assert_eq!(view.len(), 6);
        assert_eq!(writers(&view), ids(&[A, B, C]));
        let me = view.iter().find(|n| n.myself).unwrap();
        assert_eq!((me.host.as_str(), me.port, me.id.as_str()), ("127.0.0.1", 30001, A));
        assert_eq!(check(A, &view, &ids(&[A, B, C])), Ok(()));
    }

    #[test]
    fn an_untracked_primary_fails_the_check() {
        let view = parse(HEALTHY);
        assert_eq!(check(A, &view, &ids(&[A, B])), Err(Changed::Untracked(C.into())));
    }

    #[test]
    fn a_promoted_replica_fails_the_check_and_a_failed_primary_without_slots_does_not_count() {
        // B's view after A failed and its replica took over A's slots.
        let failed_over = HEALTHY
            .replace(
                &format!("{A_REPLICA} 127.0.0.1:30004@31004,hostname4 slave {A} 0 1426238317239 4 connected"),
                &format!("{A_REPLICA} 127.0.0.1:30004@31004,hostname4 master - 0 1426238317239 7 connected 0-5460"),
            )
            .replace("myself,master - 0 0 1 connected 0-5460", "master,fail - 0 0 1 connected")
            .replace("hostname2 master -", "hostname2 myself,master -");
        let view = parse(&failed_over);
        assert_eq!(writers(&view), ids(&[A_REPLICA, B, C]));
        assert_eq!(check(B, &view, &ids(&[A, B, C])), Err(Changed::Untracked(A_REPLICA.into())));
        assert_eq!(check(B, &view, &ids(&[A_REPLICA, B, C])), Ok(()));
    }

    #[test]
    fn a_demoted_primary_or_another_node_at_the_address_fails_the_check() {
        let demoted =
            HEALTHY.replace("myself,master - 0 0 1 connected 0-5460", &format!("myself,slave {A} 0 0 1 connected"));
        assert_eq!(check(A, &parse(&demoted), &ids(&[A, B, C])), Err(Changed::NotThePrimary(A.into())));
        assert_eq!(check(B, &parse(HEALTHY), &ids(&[A, B, C])), Err(Changed::NotThePrimary(B.into())));
    }

    #[test]
    fn a_migration_target_is_a_writer_before_it_owns_a_slot() {
        let new = "1111111111111111111111111111111111111111";
        let migrating = HEALTHY.replace("connected 0-5460", &format!("connected 0-5460 [93->-{new}]"))
            + &format!("{new} 127.0.0.1:30007@31007 master - 0 0 8 connected\n");
        let view = parse(&migrating);
        assert_eq!(view.iter().find(|n| n.myself).unwrap().migrating_with, vec![new.to_owned()]);
        assert_eq!(check(A, &view, &ids(&[A, B, C])), Err(Changed::Untracked(new.into())));
        assert_eq!(check(A, &view, &ids(&[A, B, C, new])), Ok(()));
    }

    #[test]
    fn unreadable_lines_are_skipped() {
        let junk = "x\nabc :0@0 master,noaddr - 0 0 0 connected 1-2\nid 1.2.3.4:notaport@1 master - 0 0 0 connected\n";
        assert!(parse(junk).is_empty());
    }
}
