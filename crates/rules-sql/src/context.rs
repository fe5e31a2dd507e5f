//! What evaluation may know about the message besides its payload, and the one
//! door to other services.

use std::fmt;
use std::sync::Arc;

/// What the functions may ask about the message being evaluated.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub topic: String,
    pub client_id: Option<String>,
    pub principal: Option<String>,
    pub account_id: String,
    pub timestamp_ms: i64,
    /// Given by the caller so evaluation stays deterministic (it also seeds `rand()`).
    pub new_uuid: String,
    pub trace_id: String,
    pub sql_version: String,
    /// The payload's bytes as published. `encode(*, …)` and the hash functions of
    /// `*` read them, because a parsed JSON payload no longer has its exact text;
    /// when empty, a JSON payload stands for its compact JSON text instead.
    pub raw_payload: bytes::Bytes,
    /// The MQTT 5 properties of the PUBLISH; `None` for MQTT 3.1.1 and HTTP.
    pub properties: Option<Arc<MessageProperties>>,
    /// Reads of other services (`get_thing_shadow`); without it they are Undefined.
    pub lookups: Option<Arc<dyn Lookups>>,
}

pub use ferrocore_message::MessageProperties;

/// Reads that functions make of other services during evaluation. The calls are
/// synchronous: a caller evaluates queries that [`uses_lookups`](crate::Query::uses_lookups)
/// on a thread that may block.
pub trait Lookups: Send + Sync {
    /// The document of a thing's shadow (the classic one when `shadow` is `None`),
    /// or `None` when there is none.
    fn thing_shadow(&self, thing: &str, shadow: Option<&str>) -> Option<serde_json::Value>;
}

/// Lets [`Context`] derive `Debug` whatever the implementation is.
impl fmt::Debug for dyn Lookups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lookups")
    }
}
