//! The Starling broker: an embeddable message broker that speaks the NATS protocol.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//!
//! let server = starling_server::Server::builder()
//!     .listen("127.0.0.1:4222")   // optional: a broker may have no TCP port at all
//!     .start()
//!     .await?;
//! let client = server.client();      // in-process: no socket, zero-copy payloads
//! let mut sub = client.subscribe("volume.>").await?;
//! client.publish("volume.created", "vol-7").await?;
//! let msg = sub.next().await;
//! server.shutdown().await;           // tell clients, drain, close
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `builder`: [`ServerBuilder`], every option with nats-server's default.
//! - `server`: the [`Server`] handle, shared state, accept loop, shutdown.
//! - `client/`: one socket client connection: protocol logic (`conn`), writer task
//!   (`writer`), outbound queue (`outbound`), close reasons.
//! - `delivery`: the hot path from a published message to subscribers' queues.
//! - `subscription`, `message`: what the sublist stores; what in-process subscribers get.
//! - `inprocess`: the in-process [`Client`].
//! - `cluster`, `route/`, `discovery`: cluster configuration ([`Cluster`]), routes to peers,
//!   how peers are found (seeds, DNS, gossip, [`Discovery`] sources).
//! - `auth`: the one place client credentials are checked.
//! - `closed`: the ring of closed connections kept for monitoring.
//! - `monitor/` (feature `monitor`, on by default): the HTTP server with nats-server's
//!   monitoring endpoints (`/varz`, `/connz`, ...) and Prometheus `/metrics`.
//! - `events`, `stats`, `info`, `options`, `error`: the rest of the embedding API.
#![warn(missing_docs)]

mod auth;
mod builder;
mod client;
mod closed;
mod cluster;
mod delivery;
mod discovery;
mod error;
mod events;
mod info;
mod inprocess;
mod message;
#[cfg(feature = "monitor")]
mod monitor;
mod options;
mod route;
mod server;
mod stats;
mod subscription;

pub use builder::ServerBuilder;
pub use client::{ClosedReason, ConnKind};
pub use cluster::{Cluster, Discovery, Peer, Seeds};
pub use error::{ClientError, RequestError, StartError};
pub use events::{Event, EventStream};
pub use info::{NATS_VERSION, STARLING_VERSION};
pub use inprocess::{Client, Subscriber, DEFAULT_REQUEST_TIMEOUT};
pub use message::{Message, Subject};
pub use options::{
    Auth, DEFAULT_MAX_CLOSED_CLIENTS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONTROL_LINE,
    DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PENDING, MAX_PAYLOAD_CEILING,
};
pub use server::Server;
pub use stats::{RouteStats, Stats, SublistFigures};
