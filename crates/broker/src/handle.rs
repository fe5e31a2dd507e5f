//! The gateway as the other services see it: `Publisher` for services that publish
//! (shadows, rules) and `DataPlane` for the iot-data API.

use std::sync::Arc;

use ferrocore_registry::{ApiPublish, DataPlane, Notification, PublishRefused, Publisher, RetainedMessage};

use ferrocore_message::Message;
use ferrocore_mqtt::QoS;

use crate::router::Signal;
use crate::{Shared, now_ms, retained};

/// A peer's message routed here, with the store writes it left.
pub struct FromPeer(crate::router::Published);

impl FromPeer {
    /// Whether deliveries wait for their records' commit (to live persistent
    /// sessions): a later message must not reach their connections first.
    pub fn holds_deliveries(&self) -> bool {
        !self.0.stored_first.is_empty()
    }
}

/// How long a node taking a client id waits for the connection here to finish
/// (less than the claiming node waits for the answer).
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The gateway as services see it: service-made messages go through the router
/// like any publish (QoS 1, each subscriber's iot:Receive checked, queued durably
/// for offline persistent sessions), and the iot-data API's data plane.
pub struct GatewayHandle(pub(crate) Arc<Shared>);

impl GatewayHandle {
    /// Live connections re-checked since the start because a registry write changed
    /// a record their permissions were computed from.
    pub fn permission_rechecks(&self) -> u64 {
        self.0.rechecks.done()
    }

    /// Routes a message another node of the cluster accepted to this node's unshared
    /// subscribers, or to one member here of the shared subscription `group`. Its
    /// deliveries are queued when this returns; finish with [`Self::settle_from_peer`].
    pub fn route_from_peer(&self, message: Message, qos: QoS, retain: bool, group: Option<&str>) -> FromPeer {
        FromPeer(self.0.route_from_peer(message, qos, retain, group))
    }

    /// Stores what routing a peer's message queued for persistent sessions, then
    /// hands the deliveries that waited for their records to their connections.
    /// False when what it must keep could not be stored.
    pub async fn settle_from_peer(&self, routed: FromPeer) -> bool {
        let settled = self.0.settle(routed.0).await;
        if let Err(err) = &settled {
            tracing::error!(error = %err, "cannot keep a message from another node");
        }
        settled.is_ok()
    }

    /// Lets another node take a client id: a live connection here is taken over
    /// and waited for until its session is parked and stored (or gone), then the
    /// parked session is let go. Answers whether this node held the client id, and
    /// the lifecycle version number it last gave it (0 when none).
    pub async fn release(&self, client_id: &str) -> (bool, u64) {
        let router = &self.0.router;
        let online = router.control_of(client_id);
        if let Some(control) = &online {
            control.signal(Signal::TakenOver);
            if tokio::time::timeout(RELEASE_WAIT, control.ended()).await.is_err() {
                tracing::warn!(client_id, "a connection taken over by another node did not end in time");
            }
        }
        let held = router.release(client_id, now_ms()) || online.is_some();
        (held, router.version_of(client_id))
    }

    /// DeleteConnection for a client id held by this node.
    pub async fn delete_connection_here(&self, client_id: &str, clean_session: bool, prevent_will: bool) -> bool {
        let shared = &self.0;
        if shared.router.kick(client_id, clean_session, prevent_will) {
            tracing::info!(client_id, clean_session, prevent_will, "disconnecting a client (DeleteConnection)");
            return true;
        }
        // Not connected: a persistent session may still be there to discard.
        if !clean_session {
            return shared.router.has_offline(client_id);
        }
        let Some(writes) = shared.router.discard_offline(client_id, now_ms()) else {
            return false;
        };
        shared.store_session_writes(client_id, writes).await;
        true
    }

    /// Takes the persistent sessions a node that died had parked; answers how many.
    pub async fn adopt_sessions(&self, node: &str) -> usize {
        match crate::upkeep::adopt_sessions(&self.0, node).await {
            Ok(taken) => taken,
            Err(err) => {
                tracing::error!(node, error = %err, "cannot take the sessions of a node that died");
                0
            }
        }
    }

    /// Leaves the cluster's work to the others (this node is cut off from them, and
    /// they count it dead and take its sessions): every connection is told to leave
    /// and every session let go, the store untouched. Answers the connections told.
    pub fn step_down(&self) -> usize {
        let live = self.0.router.let_go_all(now_ms());
        for control in &live {
            control.signal(Signal::SteppedDown);
        }
        live.len()
    }

    /// Back in the cluster after [`step_down`](Self::step_down): loads the sessions
    /// still stored as this node's (none when another node took them meanwhile).
    pub async fn rejoin(&self) -> usize {
        match crate::upkeep::load_sessions(&self.0).await {
            Ok(loaded) => loaded,
            Err(err) => {
                tracing::error!(error = %err, "cannot load this node's sessions again");
                0
            }
        }
    }

    /// Reads every retained message again (back on the message bus, changes by other
    /// nodes may have been missed).
    pub async fn reload_retained_all(&self) {
        if let Err(err) = self.0.retained.reload_all().await {
            tracing::warn!(error = %err, "cannot reload the retained messages");
        }
    }

    /// Another node changed the retained message of `topic`.
    pub async fn reload_retained(&self, topic: &str) {
        if let Err(err) = self.0.retained.reload(topic).await {
            tracing::warn!(topic, error = %err, "cannot reload a retained message another node changed");
        }
    }
}

#[async_trait::async_trait]
impl Publisher for GatewayHandle {
    async fn publish(&self, notifications: Vec<Notification>) {
        for notification in notifications {
            self.0.publish_from_service(notification).await;
        }
    }
}

fn retained_view(retained: retained::Retained) -> RetainedMessage {
    RetainedMessage {
        user_properties: retained.message.properties.as_ref().map(|p| p.user_properties.clone()).unwrap_or_default(),
        topic: retained.message.topic,
        payload: retained.message.payload,
        qos: retained.qos as u8,
        last_modified_ms: retained.last_modified_ms,
    }
}

#[async_trait::async_trait]
impl DataPlane for GatewayHandle {
    async fn publish_message(&self, message: ApiPublish) -> Result<(), PublishRefused> {
        self.0.publish_api(message).await
    }

    fn retained_message(&self, topic: &str) -> Option<RetainedMessage> {
        self.0.retained.get(topic, now_ms()).map(retained_view)
    }

    fn retained_messages(&self, after: Option<&str>, limit: usize) -> Vec<RetainedMessage> {
        self.0.retained.list(after, limit, now_ms()).into_iter().map(retained_view).collect()
    }

    async fn delete_connection(&self, client_id: &str, clean_session: bool, prevent_will: bool) -> bool {
        if self.delete_connection_here(client_id, clean_session, prevent_will).await {
            return true;
        }
        match self.0.peers.get() {
            Some(peers) => peers.delete_connection(client_id, clean_session, prevent_will).await,
            None => false,
        }
    }
}
