//! What the other nodes subscribe to, and the receipts a QoS 1 publisher waits for.
//!
//! Each node announces the changes of its subscriptions, numbered per process
//! ([`Announcement`]); the others keep them in [`PeerInterest`], so a node accepting
//! a QoS 1 message knows which peers will take it. It acknowledges the message once
//! each of them sent a receipt: the message is routed there and stored for the
//! persistent sessions that must keep it ([`Awaited`]). A node killed before it
//! stored what it took gives no receipt, and the publisher gets no PUBACK.
//!
//! A gap in a node's numbers (an announcement lost, a node that started anew, a
//! node heard for the first time) is mended with a [`Snapshot`] of its whole
//! subscriptions. Heartbeats carry the last number, so a node whose announcements
//! stop arriving is noticed within two heartbeats.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use ferrocore_mqtt::FilterIndex;
use tokio::sync::oneshot;

use crate::frame::{Announcement, Snapshot};

/// One peer's subscriptions as last heard.
struct Known {
    process: u64,
    seq: u64,
    held: HashSet<String>,
    /// The number its previous heartbeat carried: not reached by the next one means behind.
    beat: u64,
}

/// The subscriptions of the other nodes, indexed for matching topics.
#[derive(Default)]
pub struct PeerInterest {
    nodes: HashMap<String, Known>,
    /// Unshared filters, named by the nodes holding them.
    unshared: FilterIndex,
    /// Shared subscriptions' filters, named by `$share/<group>/<filter>`, with how many nodes hold each.
    shared: FilterIndex,
    holders: HashMap<String, usize>,
}

/// What a peer's announcement did to the table.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    Applied,
    /// Already in the table (a copy, or older than a snapshot).
    Old,
    /// Announcements before it were missed: the peer's snapshot is needed.
    Gap,
}

/// The peers that take a message, and the shared subscriptions one of whose members does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Takers {
    pub nodes: Vec<String>,
    pub shared: Vec<String>,
}

impl Takers {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.shared.is_empty()
    }
}

impl PeerInterest {
    /// Applies a peer's change of subscriptions, when it follows what is known of it.
    pub fn announced(&mut self, announcement: &Announcement) -> Heard {
        let Announcement { node, process, seq, changes } = announcement;
        let known = self.nodes.get(node);
        let follows = match known {
            Some(known) if known.process == *process => {
                if *seq <= known.seq {
                    return Heard::Old;
                }
                *seq == known.seq + 1
            }
            // A node heard for the first time, or started anew, from its first change.
            _ => *seq == 1,
        };
        if !follows {
            return Heard::Gap;
        }
        if known.is_some_and(|known| known.process != *process) {
            self.forget(node);
        }
        let known = self.nodes.entry(node.clone()).or_insert_with(|| Known {
            process: *process,
            seq: 0,
            held: HashSet::new(),
            beat: 0,
        });
        known.seq = *seq;
        for (subscription, present) in changes {
            let changed = match present {
                true => known.held.insert(subscription.clone()),
                false => known.held.remove(subscription),
            };
            if changed {
                index(&mut self.unshared, &mut self.shared, &mut self.holders, node, subscription, *present);
            }
        }
        Heard::Applied
    }

    /// Puts a peer's whole subscriptions in place of what is known of it, unless
    /// what is known is newer.
    pub fn replace(&mut self, snapshot: Snapshot) {
        if let Some(known) = self.nodes.get(&snapshot.node)
            && known.process == snapshot.process
            && known.seq > snapshot.seq
        {
            return;
        }
        let beat = self.nodes.get(&snapshot.node).map_or(0, |known| known.beat);
        self.forget(&snapshot.node);
        let Snapshot { node, process, seq, subscriptions, .. } = snapshot;
        for subscription in &subscriptions {
            index(&mut self.unshared, &mut self.shared, &mut self.holders, &node, subscription, true);
        }
        let held = subscriptions.into_iter().collect();
        self.nodes.insert(node, Known { process, seq, held, beat });
    }

    /// Notes a peer's heartbeat (its process and last announced number); true when
    /// its snapshot is needed: a node not known, or started anew, with
    /// subscriptions, or one still behind the number its previous heartbeat carried.
    pub fn heartbeat(&mut self, node: &str, process: u64, seq: u64) -> bool {
        match self.nodes.get_mut(node) {
            Some(known) if known.process == process => {
                let behind = known.seq < known.beat;
                known.beat = seq;
                behind
            }
            // Nothing announced yet: nothing to fetch.
            _ if seq == 0 => {
                self.forget(node);
                let known = Known { process, seq: 0, held: HashSet::new(), beat: 0 };
                self.nodes.insert(node.to_string(), known);
                false
            }
            _ => true,
        }
    }

    /// Whether a peer's subscriptions are known (announced from its first, or a snapshot).
    pub fn knows(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// Drops what is known of a peer (gone silent, or about to be replaced).
    pub fn forget(&mut self, node: &str) {
        let Some(known) = self.nodes.remove(node) else { return };
        for subscription in &known.held {
            index(&mut self.unshared, &mut self.shared, &mut self.holders, node, subscription, false);
        }
    }

    /// The peers whose subscriptions match `topic`.
    pub fn takers(&self, topic: &str) -> Takers {
        let mut takers = Takers::default();
        self.unshared.for_each_match(topic, |_, nodes| {
            for node in nodes.keys() {
                if !takers.nodes.contains(node) {
                    takers.nodes.push(node.clone());
                }
            }
        });
        self.shared.for_each_match(topic, |_, names| takers.shared.extend(names.keys().cloned()));
        takers
    }
}

/// Adds or removes one node's subscription in the indexes.
fn index(
    unshared: &mut FilterIndex,
    shared: &mut FilterIndex,
    holders: &mut HashMap<String, usize>,
    node: &str,
    subscription: &str,
    present: bool,
) {
    let Some(Ok((_, filter))) = ferrocore_mqtt::topic::shared_subscription(subscription) else {
        match present {
            true => unshared.insert(subscription, node, ()),
            false => unshared.remove(subscription, node),
        };
        return;
    };
    let count = holders.entry(subscription.to_string()).or_default();
    match present {
        true => {
            *count += 1;
            if *count == 1 {
                shared.insert(filter, subscription, ());
            }
        }
        false => {
            *count = count.saturating_sub(1);
            if *count == 0 {
                holders.remove(subscription);
                shared.remove(filter, subscription);
            }
        }
    }
}

/// Why a message was not taken by every node that should have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no receipt from {0}")]
pub struct Missing(pub String);

struct Waiting {
    takers: Takers,
    since: Instant,
    done: oneshot::Sender<Result<(), Missing>>,
}

type Outcome = oneshot::Receiver<Result<(), Missing>>;

/// This process's QoS 1 messages waiting for their receipts, by number, and
/// the outcomes their publishers will wait on.
#[derive(Default)]
pub struct Awaited {
    waiting: BTreeMap<u64, Waiting>,
    outcomes: BTreeMap<u64, (Instant, Outcome)>,
}

impl Awaited {
    /// Waits for receipts from `takers` for message `seq`. What is older than
    /// `forgotten_after` (a publisher that did not come for its outcome) is dropped.
    pub fn expect(&mut self, seq: u64, takers: Takers, now: Instant, forgotten_after: Duration) {
        let old = |since: Instant| now.duration_since(since) >= forgotten_after;
        while let Some(entry) = self.waiting.first_entry() {
            if !old(entry.get().since) {
                break;
            }
            entry.remove();
        }
        while let Some(entry) = self.outcomes.first_entry() {
            if !old(entry.get().0) {
                break;
            }
            entry.remove();
        }
        let (done, outcome) = oneshot::channel();
        self.waiting.insert(seq, Waiting { takers, since: now, done });
        self.outcomes.insert(seq, (now, outcome));
    }

    /// What message `seq` waits for its receipts on; None when it needs none.
    pub fn outcome(&mut self, seq: u64) -> Option<Outcome> {
        self.outcomes.remove(&seq).map(|(_, outcome)| outcome)
    }

    /// A receipt from `node` for message `seq`, through a shared subscription or not.
    pub fn receipt(&mut self, seq: u64, node: &str, shared: Option<&str>) {
        let Some(waiting) = self.waiting.get_mut(&seq) else { return };
        match shared {
            Some(name) => waiting.takers.shared.retain(|s| s != name),
            None => waiting.takers.nodes.retain(|n| n != node),
        }
        if waiting.takers.is_empty()
            && let Some(waiting) = self.waiting.remove(&seq)
        {
            let _ = waiting.done.send(Ok(()));
        }
    }

    /// A peer went silent: what waits for its receipt will not get it.
    pub fn gone(&mut self, node: &str) {
        let missed: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, waiting)| waiting.takers.nodes.iter().any(|n| n == node))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in missed {
            if let Some(waiting) = self.waiting.remove(&seq) {
                let _ = waiting.done.send(Err(Missing(node.to_string())));
            }
        }
    }

    /// Stops waiting for message `seq` (its publisher gave up); answers who did not send a receipt.
    pub fn give_up(&mut self, seq: u64) -> Option<Missing> {
        let waiting = self.waiting.remove(&seq)?;
        let Takers { nodes, shared } = waiting.takers;
        Some(Missing(nodes.into_iter().chain(shared).collect::<Vec<_>>().join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(node: &str, process: u64, seq: u64, changes: &[(&str, bool)]) -> Announcement {
        let changes = changes.iter().map(|(s, p)| (s.to_string(), *p)).collect();
        Announcement { node: node.into(), process, seq, changes }
    }

    fn takers(nodes: &[&str], shared: &[&str]) -> Takers {
        Takers {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            shared: shared.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn sorted(mut found: Takers) -> Takers {
        found.nodes.sort();
        found.shared.sort();
        found
    }

    #[test]
    fn the_peers_whose_filters_match_a_topic_take_it() {
        let mut table = PeerInterest::default();
        assert_eq!(table.announced(&announcement("n2", 7, 1, &[("a/+", true), ("a/b", true)])), Heard::Applied);
        assert_eq!(
            table.announced(&announcement("n3", 9, 1, &[("a/#", true), ("$share/g/a/b", true)])),
            Heard::Applied
        );
        assert_eq!(sorted(table.takers("a/b")), takers(&["n2", "n3"], &["$share/g/a/b"]));
        assert_eq!(table.takers("a"), takers(&["n3"], &[]));
        assert_eq!(table.takers("z"), Takers::default());
        assert_eq!(table.takers("$aws/x"), Takers::default(), "wildcards do not match $ topics at the first level");
        table.announced(&announcement("n2", 7, 2, &[("a/+", false)]));
        assert_eq!(sorted(table.takers("a/b")), takers(&["n2", "n3"], &["$share/g/a/b"]), "n2 still holds a/b");
        assert_eq!(table.takers("a/c"), takers(&["n3"], &[]));
        assert!(table.knows("n3") && !table.knows("n4"));
        table.forget("n3");
        assert!(!table.knows("n3"));
        assert_eq!(table.takers("a/b"), takers(&["n2"], &[]));
    }

    #[test]
    fn a_shared_subscription_held_by_two_nodes_is_one_taker_until_both_leave() {
        let mut table = PeerInterest::default();
        table.announced(&announcement("n2", 7, 1, &[("$share/g/t", true)]));
        table.announced(&announcement("n3", 9, 1, &[("$share/g/t", true)]));
        assert_eq!(table.takers("t"), takers(&[], &["$share/g/t"]));
        table.announced(&announcement("n2", 7, 2, &[("$share/g/t", false)]));
        assert_eq!(table.takers("t"), takers(&[], &["$share/g/t"]), "n3 still holds it");
        table.forget("n3");
        assert_eq!(table.takers("t"), Takers::default());
    }

    #[test]
    fn a_gap_in_a_peers_numbers_asks_for_its_snapshot_which_mends_it() {
        let mut table = PeerInterest::default();
        assert_eq!(table.announced(&announcement("n2", 7, 2, &[("b", true)])), Heard::Gap, "first heard mid-way");
        table.announced(&announcement("n2", 7, 1, &[("a", true)]));
        assert_eq!(table.announced(&announcement("n2", 7, 1, &[("a", true)])), Heard::Old);
        assert_eq!(table.announced(&announcement("n2", 7, 3, &[("c", true)])), Heard::Gap, "2 was missed");
        assert_eq!(table.takers("c"), Takers::default(), "not applied out of order");
        let snapshot = |seq, subscriptions: &[&str]| Snapshot {
            node: "n2".into(),
            process: 7,
            seq,
            subscriptions: subscriptions.iter().map(|s| s.to_string()).collect(),
            last: true,
        };
        table.replace(snapshot(3, &["b", "c"]));
        assert_eq!(table.takers("a"), Takers::default(), "a was dropped in 2 or 3");
        assert_eq!(table.takers("c"), takers(&["n2"], &[]));
        assert_eq!(table.announced(&announcement("n2", 7, 4, &[("d", true)])), Heard::Applied);
        table.replace(snapshot(2, &["b"]));
        assert_eq!(table.takers("d"), takers(&["n2"], &[]), "an older snapshot changes nothing");
        // The node starts anew: its first change replaces everything known of it.
        assert_eq!(table.announced(&announcement("n2", 8, 1, &[("e", true)])), Heard::Applied);
        assert_eq!((table.takers("c"), table.takers("e")), (Takers::default(), takers(&["n2"], &[])));
    }

    #[test]
    fn heartbeats_tell_when_a_peers_announcements_stopped_arriving() {
        let mut table = PeerInterest::default();
        assert!(table.heartbeat("n3", 5, 3), "a node not known, with subscriptions");
        assert!(!table.knows("n3"));
        assert!(!table.heartbeat("n2", 7, 0), "a node with no subscriptions needs no snapshot");
        assert!(table.knows("n2"), "it is known to have none");
        table.announced(&announcement("n2", 7, 1, &[("a", true)]));
        assert!(!table.heartbeat("n2", 7, 2), "2 may still be on its way");
        table.announced(&announcement("n2", 7, 2, &[("b", true)]));
        assert!(!table.heartbeat("n2", 7, 3), "caught up with the previous heartbeat");
        assert!(table.heartbeat("n2", 7, 3), "a heartbeat later, 3 never came");
        assert!(table.heartbeat("n2", 9, 1), "started anew");
    }

    #[test]
    fn a_message_is_acknowledged_once_every_taker_sent_its_receipt() {
        let (now, keep) = (Instant::now(), Duration::from_secs(10));
        let mut awaited = Awaited::default();
        awaited.expect(1, takers(&["n2", "n3"], &["$share/g/t"]), now, keep);
        let mut done = awaited.outcome(1).unwrap();
        assert!(awaited.outcome(1).is_none() && awaited.outcome(7).is_none());
        awaited.receipt(1, "n2", None);
        awaited.receipt(1, "n3", Some("$share/g/t"));
        awaited.receipt(2, "n3", None);
        assert!(done.try_recv().is_err(), "n3's own receipt is still missing");
        awaited.receipt(1, "n3", None);
        assert_eq!(done.try_recv(), Ok(Ok(())));

        awaited.expect(2, takers(&["n2", "n3"], &[]), now, keep);
        awaited.expect(3, takers(&["n2"], &[]), now, keep);
        let (mut lost, mut other) = (awaited.outcome(2).unwrap(), awaited.outcome(3).unwrap());
        awaited.gone("n3");
        assert_eq!(lost.try_recv(), Ok(Err(Missing("n3".into()))));
        assert!(other.try_recv().is_err(), "waits only for n2");
        assert_eq!(awaited.give_up(3), Some(Missing("n2".into())));
        assert_eq!(awaited.give_up(3), None);

        // A wait its publisher never came back for is dropped later.
        awaited.expect(4, takers(&["n2"], &[]), now, keep);
        awaited.expect(5, takers(&["n2"], &[]), now + keep, keep);
        assert_eq!((awaited.give_up(4), awaited.outcome(4).is_none()), (None, true));
        let mut late = awaited.outcome(5).unwrap();
        awaited.receipt(5, "n2", None);
        assert_eq!(late.try_recv(), Ok(Ok(())));
    }
}
