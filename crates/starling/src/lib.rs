//! Starling: embed a NATS-compatible message broker in a Rust application.
#![warn(missing_docs)]
pub use starling_server::*;
