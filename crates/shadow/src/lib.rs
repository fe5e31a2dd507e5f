//! AWS IoT Device Shadow documents.
//!
//! [`parse_update`] validates a request the way the Device Shadow service does,
//! [`Shadow::update`] applies it (partial deep merge, `null` deletes, arrays are
//! whole values, per-leaf metadata timestamps, optimistic versions, size limit) and
//! produces the `accepted`, `delta` and `documents` messages; [`Shadow::document`]
//! is the GET document. Errors carry AWS's codes and messages. Time is passed in.

mod document;
mod error;
mod request;
pub mod topic;

pub use document::{Applied, Section, Shadow, delete_document, error_document};
pub use error::ShadowError;
pub use request::{CLIENT_TOKEN_MAX_BYTES, Patch, UpdateRequest, parse_update, request_token};

/// A JSON object with its keys in document order.
pub type Map = serde_json::Map<String, serde_json::Value>;

/// Limits AWS fixes and an operator may raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of desired plus reported state (AWS: 8 KB; metadata not counted).
    pub max_state_bytes: usize,
    /// Levels of nesting inside desired or reported, the section itself included.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_state_bytes: 8 * 1024, max_depth: 8 }
    }
}
