//! The domain model of ferrocore: registry resources, their names and ARNs, and
//! the rules AWS IoT applies to them.
//!
//! Pure: no I/O and no clock. Callers pass the current time in (`Millis`) and
//! persist what these functions return.

pub mod arn;
pub mod error;
pub mod names;
pub mod registry;
pub mod rules;
pub mod security;

pub use arn::{Arn, ResourceKind};
pub use error::{Error, Result};

/// Milliseconds since the Unix epoch. AWS shows timestamps as fractional epoch seconds.
pub type Millis = i64;

/// Identity of one installation: the account and region that ARNs and endpoints use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub region: String,
}

impl Default for Account {
    fn default() -> Self {
        Self { id: "000000000000".into(), region: "us-east-1".into() }
    }
}
