//! Sans-IO codec for the NATS protocols (work in progress).
#![warn(missing_docs)]
