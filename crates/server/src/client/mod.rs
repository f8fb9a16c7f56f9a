//! Clients: the NATS client protocol on a byte stream (`socket`), and the in-process client
//! (`inprocess`) that calls the same delivery path without a socket or a codec, and NATS
//! services on it (`service`, the micro service protocol). An in-process subscription's
//! messages wait in its `queue`.

pub(crate) mod inprocess;
mod queue;
pub(crate) mod service;
mod socket;

pub(crate) use queue::{Item, LocalQueue, Run, RunBuffers, Taken};
#[cfg(feature = "websocket")]
pub(crate) use socket::serve_ws;
pub(crate) use socket::{accept, serve};
