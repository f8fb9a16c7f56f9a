//! JetStream for Starling.
#![warn(missing_docs)]

pub mod store;
