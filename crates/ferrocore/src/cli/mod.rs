//! Admin commands that talk to a running server through its API.

mod client;
mod device;

pub use device::{CaCommand, DeviceCommand, run_ca, run_device};
