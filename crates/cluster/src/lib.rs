//! Several ferrocore nodes as one AWS IoT Core: PostgreSQL holds the state (every
//! node opens the same store), NATS carries messages and control events between
//! the nodes. `subject` maps MQTT topics and filters to NATS subjects, `frame` is
//! what travels, `link` is a node's connection to the others (the gateway's `Peers`),
//! `standing` whether the node is in the cluster or must step down, `interest` what
//! the other nodes subscribe to and the receipts a QoS 1 publisher waits for.

pub mod frame;
mod interest;
mod link;
mod standing;
pub mod subject;

pub use link::{ClusterError, ClusterHealth, Link, PeerHealth};
