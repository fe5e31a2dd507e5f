//! Who is connected and what they subscribed to. Deliveries are checked against
//! each subscriber's own permissions (iot:Receive) before they are queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferrocore_mqtt::{QoS, topic};
use ferrocore_registry::Permissions;
use tokio::sync::mpsc;

/// What a connection task is told to do.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Deliver { topic: String, payload: Bytes, qos: QoS },
    /// Another connection took over this client id.
    TakenOver,
}

struct Client {
    connection: u64,
    sender: mpsc::Sender<Outgoing>,
    permissions: Arc<Permissions>,
    subscriptions: HashMap<String, QoS>,
}

#[derive(Default)]
pub struct Router {
    clients: Mutex<HashMap<String, Client>>,
}

impl Router {
    /// Registers a connection; an older connection with the same client id is told to leave.
    pub fn connect(&self, client_id: &str, connection: u64, sender: mpsc::Sender<Outgoing>, permissions: Arc<Permissions>) {
        let client = Client { connection, sender, permissions, subscriptions: HashMap::new() };
        let previous = self.lock().insert(client_id.to_string(), client);
        if let Some(previous) = previous {
            let _ = previous.sender.try_send(Outgoing::TakenOver);
        }
    }

    /// Forgets the client, unless a newer connection already took its id.
    pub fn disconnect(&self, client_id: &str, connection: u64) {
        let mut clients = self.lock();
        if clients.get(client_id).is_some_and(|c| c.connection == connection) {
            clients.remove(client_id);
        }
    }

    pub fn subscribe(&self, client_id: &str, filter: &str, qos: QoS) {
        if let Some(client) = self.lock().get_mut(client_id) {
            client.subscriptions.insert(filter.to_string(), qos);
        }
    }

    pub fn unsubscribe(&self, client_id: &str, filter: &str) -> bool {
        self.lock().get_mut(client_id).is_some_and(|client| client.subscriptions.remove(filter).is_some())
    }

    /// Queues a message for every subscriber allowed to receive it.
    pub fn publish(&self, topic_name: &str, payload: &Bytes, qos: QoS, receive_resource: &str) {
        let clients = self.lock();
        for client in clients.values() {
            let granted = client
                .subscriptions
                .iter()
                .filter(|(filter, _)| topic::matches(filter, topic_name))
                .map(|(_, qos)| *qos)
                .max();
            let Some(granted) = granted else { continue };
            if !client.permissions.allows("iot:Receive", receive_resource) {
                metrics::counter!("ferrocore_mqtt_authorization_denied_total", "action" => "receive").increment(1);
                continue;
            }
            let delivery = Outgoing::Deliver { topic: topic_name.to_string(), payload: payload.clone(), qos: qos.min(granted) };
            if client.sender.try_send(delivery).is_err() {
                metrics::counter!("ferrocore_mqtt_messages_dropped_total", "reason" => "queue_full").increment(1);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Client>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}
