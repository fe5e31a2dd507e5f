//! Retained messages: one per topic, kept durably in the record store and in
//! memory for subscribe-time lookups. AWS delivers the stored copy only to a
//! SUBSCRIBE whose filter equals the topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferrocore_mqtt::QoS;
use ferrocore_store::{Collection, Expect, RecordStore, StoreError, Write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub payload: Bytes,
    pub qos: QoS,
}

/// Stored form: the QoS byte, then the payload.
fn encode(message: &Retained) -> Vec<u8> {
    let mut body = Vec::with_capacity(message.payload.len() + 1);
    body.push(message.qos as u8);
    body.extend_from_slice(&message.payload);
    body
}

fn decode(body: &[u8]) -> Option<Retained> {
    let (&qos, payload) = body.split_first()?;
    Some(Retained { qos: QoS::from_bits(qos)?, payload: Bytes::copy_from_slice(payload) })
}

pub struct RetainedStore {
    store: Arc<dyn RecordStore>,
    messages: Mutex<HashMap<String, Retained>>,
}

impl RetainedStore {
    pub async fn load(store: Arc<dyn RecordStore>) -> Result<Self, StoreError> {
        let mut messages = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let batch = store.list(Collection::RetainedMessage, after.as_deref(), 500).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.key.clone());
            for record in batch {
                if let Some(message) = decode(&record.body) {
                    messages.insert(record.key, message);
                }
            }
        }
        Ok(Self { store, messages: Mutex::new(messages) })
    }

    /// Stores (or, for an empty payload, deletes) the retained message of `topic`;
    /// returns once it is durable.
    pub async fn set(&self, topic: &str, payload: &Bytes, qos: QoS) -> Result<(), StoreError> {
        if payload.is_empty() {
            self.store.commit(vec![Write::delete(Collection::RetainedMessage, topic, Expect::Anything)]).await?;
            self.lock().remove(topic);
        } else {
            let message = Retained { payload: payload.clone(), qos };
            self.store.commit(vec![Write::put(Collection::RetainedMessage, topic, Expect::Anything, encode(&message))]).await?;
            self.lock().insert(topic.to_string(), message);
        }
        Ok(())
    }

    /// The message retained on exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<Retained> {
        self.lock().get(topic).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Retained>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips() {
        let message = Retained { payload: Bytes::from_static(b"{\"on\":true}"), qos: QoS::AtLeastOnce };
        assert_eq!(decode(&encode(&message)), Some(message));
        assert_eq!(decode(&[]), None);
    }
}
