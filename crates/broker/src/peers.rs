//! The other nodes of a cluster, as the gateway sees them. `ferrocore-cluster`
//! links the nodes (over NATS); alone, a gateway has no peers and none of this runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ferrocore_message::Message;
use ferrocore_mqtt::QoS;

/// Why a message could not be handed to the other nodes.
#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error("the message bus is unreachable: {0}")]
    Unreachable(String),
    #[error("{missing} of the other nodes did not answer in time")]
    Unanswered { missing: usize },
    /// A node whose clients subscribe to a QoS 1 message did not say it has it
    /// (routed, and stored where a session must keep it).
    #[error("a node that should take the message did not: {0}")]
    NotTaken(String),
}

/// What became of a message handed to the other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Refused: the messages waiting to leave are too many.
    Refused,
    /// On its way; a QoS 1 publisher need not wait for it (no other node is known
    /// to take it).
    Queued,
    /// On its way, numbered: a QoS 1 publisher is acknowledged once
    /// [`Peers::forwarded`] says so.
    Awaited(u64),
}

/// What the gateway asks of the other nodes.
#[async_trait::async_trait]
pub trait Peers: Send + Sync + 'static {
    /// Hands a message accepted on this node (never one that came from a peer) to
    /// the nodes whose clients subscribe to it, in the order of the calls.
    fn forward(&self, message: &Arc<Message>, qos: QoS, retain: bool) -> Forward;
    /// Resolves once the messages waiting to leave are few enough (publishers are
    /// slowed to what the message bus takes), or fails when they do not leave.
    async fn room(&self) -> Result<(), PeersError>;
    /// Resolves once the QoS 1 forward numbered `number` has left this process and
    /// every node whose clients subscribe to it has it (routed, and stored for the
    /// persistent sessions that keep it), so a publisher is acknowledged only for
    /// what other nodes got; fails when it could not be handed to the message bus
    /// or a node did not take it.
    async fn forwarded(&self, number: u64) -> Result<(), PeersError>;
    /// A subscription (a filter, or `$share/<group>/<filter>`) appeared on this
    /// node (`present`) or its last subscriber here left. Called under the router's
    /// locks: it must only note the change.
    fn interest(&self, subscription: &str, present: bool);
    /// Resolves once the interest noted before the call reaches the other nodes'
    /// publishes (before a SUBACK).
    async fn interest_settled(&self);
    /// Takes a client id from the node holding it (a live connection is taken over,
    /// a parked session let go after it is stored), before this node connects it;
    /// fails when a live node does not answer (it may still hold the client id).
    /// Answers the highest lifecycle version number a peer gave the client id.
    async fn claim(&self, client_id: &str) -> Result<u64, PeersError>;
    /// DeleteConnection for a client id this node does not hold; true when a peer had it.
    async fn delete_connection(&self, client_id: &str, clean_session: bool, prevent_will: bool) -> bool;
    /// This node changed the retained message of `topic` in the store.
    fn retained_changed(&self, topic: &str);
    /// Whether the message bus is reachable; new connections are refused while not.
    fn reachable(&self) -> bool;
}

/// The node's subscriptions by filter (shared ones by their whole
/// `$share/<group>/<filter>`), counted per subscriber, so the peers hear when one
/// appears or disappears on this node, not every subscriber's change.
#[derive(Default)]
pub(crate) struct Interest {
    counts: Mutex<HashMap<String, usize>>,
    peers: OnceLock<Arc<dyn Peers>>,
}

impl Interest {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(&self, subscription: &str) {
        let mut counts = self.lock();
        let count = counts.entry(subscription.to_string()).or_default();
        *count += 1;
        if *count == 1
            && let Some(peers) = self.peers.get()
        {
            peers.interest(subscription, true);
        }
    }

    pub(crate) fn remove(&self, subscription: &str) {
        let mut counts = self.lock();
        let Some(count) = counts.get_mut(subscription) else { return };
        *count -= 1;
        if *count == 0 {
            counts.remove(subscription);
            if let Some(peers) = self.peers.get() {
                peers.interest(subscription, false);
            }
        }
    }

    /// Tells `peers` of every subscription held now and of each change from now on.
    pub(crate) fn attach(&self, peers: Arc<dyn Peers>) {
        let counts = self.lock();
        for subscription in counts.keys() {
            peers.interest(subscription, true);
        }
        if self.peers.set(peers).is_err() {
            tracing::warn!("the gateway already has its peers");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Noted(Mutex<Vec<(String, bool)>>);

    #[async_trait::async_trait]
    impl Peers for Noted {
        fn forward(&self, _: &Arc<Message>, _: QoS, _: bool) -> Forward {
            Forward::Queued
        }
        async fn room(&self) -> Result<(), PeersError> {
            Ok(())
        }
        async fn forwarded(&self, _: u64) -> Result<(), PeersError> {
            Ok(())
        }
        fn interest(&self, subscription: &str, present: bool) {
            self.0.lock().unwrap().push((subscription.to_string(), present));
        }
        async fn interest_settled(&self) {}
        async fn claim(&self, _: &str) -> Result<u64, PeersError> {
            Ok(0)
        }
        async fn delete_connection(&self, _: &str, _: bool, _: bool) -> bool {
            false
        }
        fn retained_changed(&self, _: &str) {}
        fn reachable(&self) -> bool {
            true
        }
    }

    #[test]
    fn peers_hear_of_the_first_and_last_subscriber_of_a_filter_only() {
        let interest = Interest::default();
        interest.add("a/b");
        let noted = Arc::new(Noted::default());
        interest.attach(noted.clone());
        interest.add("a/b");
        interest.add("c/#");
        interest.remove("a/b");
        interest.remove("a/b");
        interest.remove("never/held");
        let seen = noted.0.lock().unwrap().clone();
        let expected = [("a/b", true), ("c/#", true), ("a/b", false)];
        assert_eq!(seen, expected.map(|(s, p)| (s.to_string(), p)));
    }
}
