//! Admin commands that talk to a running server through its API.

mod client;
mod device;
mod shadow;

pub use device::{CaCommand, DeviceCommand, run_ca, run_device};
pub use shadow::{ShadowCommand, run_shadow};
