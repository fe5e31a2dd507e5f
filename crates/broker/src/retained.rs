//! Retained messages: one per topic, kept durably in the record store and in
//! memory (in topic order, for ListRetainedMessages) for subscribe-time lookups.
//! AWS delivers the stored copy only to a SUBSCRIBE whose filter equals the topic;
//! a retained message whose MQTT 5 expiry passed is gone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferrocore_mqtt::QoS;
use ferrocore_store::{Collection, Expect, RecordStore, StoreError, Write};

use ferrocore_message::{Message, StoredExtras};

#[derive(Debug, Clone, PartialEq)]
pub struct Retained {
    pub message: Message,
    pub qos: QoS,
    /// Unix milliseconds of the publish that stored it.
    pub last_modified_ms: u64,
}

/// Marks the stored form that carries a header (the first byte of the older form is the QoS, 0 or 1).
const WITH_HEADER: u8 = 0x80;

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    last_modified_ms: u64,
    #[serde(default)]
    extras: StoredExtras,
}

/// Stored form: `0x80 | qos`, the header's length (u32, big-endian), the header (JSON), the payload.
fn encode(retained: &Retained) -> Vec<u8> {
    let header = Header { last_modified_ms: retained.last_modified_ms, extras: StoredExtras::of(&retained.message) };
    let header = serde_json::to_vec(&header).expect("headers always serialize");
    let mut body = Vec::with_capacity(5 + header.len() + retained.message.payload.len());
    body.push(WITH_HEADER | retained.qos as u8);
    body.extend_from_slice(&u32::try_from(header.len()).unwrap_or(u32::MAX).to_be_bytes());
    body.extend_from_slice(&header);
    body.extend_from_slice(&retained.message.payload);
    body
}

fn decode(topic: &str, body: &[u8]) -> Option<Retained> {
    let (&first, rest) = body.split_first()?;
    let qos = QoS::from_bits(first & !WITH_HEADER)?;
    if first & WITH_HEADER == 0 {
        let message = Message::new(topic, Bytes::copy_from_slice(rest));
        return Some(Retained { message, qos, last_modified_ms: 0 });
    }
    let length = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
    let header: Header = serde_json::from_slice(rest.get(4..4 + length)?).ok()?;
    let payload = Bytes::copy_from_slice(rest.get(4 + length..)?);
    let message = header.extras.into_message(topic.to_string(), payload)?;
    Some(Retained { message, qos, last_modified_ms: header.last_modified_ms })
}

async fn read_all(store: &dyn RecordStore) -> Result<BTreeMap<String, Retained>, StoreError> {
    let mut messages = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let batch = store.list(Collection::RetainedMessage, after.as_deref(), 500).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.key.clone());
        for record in batch {
            if let Some(message) = decode(&record.key, &record.body) {
                messages.insert(record.key, message);
            }
        }
    }
    Ok(messages)
}

pub struct RetainedStore {
    store: Arc<dyn RecordStore>,
    messages: Mutex<BTreeMap<String, Retained>>,
}

impl RetainedStore {
    pub async fn load(store: Arc<dyn RecordStore>) -> Result<Self, StoreError> {
        let messages = Mutex::new(read_all(store.as_ref()).await?);
        Ok(Self { store, messages })
    }

    /// Reads every retained message again (changes by other nodes may have been missed).
    pub async fn reload_all(&self) -> Result<(), StoreError> {
        let messages = read_all(self.store.as_ref()).await?;
        *self.lock() = messages;
        Ok(())
    }

    /// Stores (or, for an empty payload, deletes) the retained message of its topic;
    /// returns once it is durable.
    pub async fn set(&self, message: &Message, qos: QoS, now_ms: u64) -> Result<(), StoreError> {
        let topic = message.topic.as_str();
        if message.payload.is_empty() {
            self.store.commit(vec![Write::delete(Collection::RetainedMessage, topic, Expect::Anything)]).await?;
            self.lock().remove(topic);
        } else {
            let retained = Retained { message: message.clone(), qos, last_modified_ms: now_ms };
            self.store
                .commit(vec![Write::put(Collection::RetainedMessage, topic, Expect::Anything, encode(&retained))])
                .await?;
            self.lock().insert(topic.to_string(), retained);
        }
        Ok(())
    }

    /// Reads one topic's retained message again (another node of a cluster changed it).
    pub async fn reload(&self, topic: &str) -> Result<(), StoreError> {
        match self.store.get(Collection::RetainedMessage, topic).await?.and_then(|r| decode(topic, &r.body)) {
            Some(retained) => self.lock().insert(topic.to_string(), retained),
            None => self.lock().remove(topic),
        };
        Ok(())
    }

    /// The message retained on exactly `topic`, unless it expired.
    pub fn get(&self, topic: &str, now_ms: u64) -> Option<Retained> {
        self.lock().get(topic).filter(|r| !r.message.expired(now_ms)).cloned()
    }

    /// Unexpired retained messages in topic order after `after`, at most `limit`.
    pub fn list(&self, after: Option<&str>, limit: usize, now_ms: u64) -> Vec<Retained> {
        let messages = self.lock();
        let range = match after {
            Some(after) => messages.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => messages.range::<str, _>(..),
        };
        range.map(|(_, r)| r).filter(|r| !r.message.expired(now_ms)).take(limit).cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Retained>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips() {
        let properties = ferrocore_mqtt::Properties {
            user_properties: vec![("a".into(), "1".into())],
            message_expiry_interval: Some(30),
            ..Default::default()
        };
        let message = Message::published("t/1", Bytes::from_static(b"{\"on\":true}"), &properties, 1_000);
        let retained = Retained { message, qos: QoS::AtLeastOnce, last_modified_ms: 1_000 };
        assert_eq!(decode("t/1", &encode(&retained)), Some(retained));
        assert_eq!(decode("t/1", &[]), None);
    }

    #[test]
    fn the_older_stored_form_still_loads() {
        let old = decode("t", b"\x01hi").unwrap();
        assert_eq!((old.qos, old.message.payload.as_ref()), (QoS::AtLeastOnce, &b"hi"[..]));
    }
}
