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
//! - `server`, `builder`: the public [`Server`] handle and [`ServerBuilder`] (every option with
//!   nats-server's default; `options` holds them resolved).
//! - `broker`: the broker's components, owned and wired together:
//!   `lifecycle` (tasks, lame duck, shutdown), `registry` (client connections, the closed ring),
//!   `identity` (server id, addresses, INFO), `account/` (accounts with their sublists,
//!   imports and exports, the system account), `auth` (users and their accounts),
//!   `cluster/` (routes, interest per account, discovery), `leaf/` (leafnodes: accepted,
//!   and hubs joined), `events`, `stats` (counters).
//! - `introspect`: read-only views of the broker for monitoring and the system account.
//! - `conn/`: what every connection kind shares: [`ConnKind`], [`ClosedReason`], the outbound
//!   queue (every append has one outcome path), the writer task, and the read side (`reader`:
//!   one read loop, keepalive and close path that the client, route and leafnode protocols
//!   plug into).
//! - `transport/`: sockets for every listener: one accept loop, URL and `host:port` splitting,
//!   the byte stream (TCP or TLS), TLS itself and what client certificates say (`cert`).
//! - `client/`: the client protocol on a byte stream, and the in-process [`Client`].
//! - `delivery`: the hot path from a published message to subscribers' queues.
//! - `permissions`: users' publish/subscribe permissions, compiled into shared matchers.
//! - `subscription`, `message`: what a sublist stores; what in-process subscribers get.
//! - `monitor/` (feature `monitor`, on by default): the HTTP server with nats-server's
//!   monitoring endpoints (`/varz`, `/connz`, ...) and Prometheus `/metrics`.
//! - `jwt`, `operator`: NATS JWTs read and verified; operator mode (trusted operators, the
//!   MEMORY resolver, user JWT authentication).
//! - `extension`: services that start and stop with the server on its public API (JetStream).
//! - `websocket/` (feature `websocket`, on by default): NATS clients over WebSocket, the
//!   [`Websocket`] listener's configuration, its HTTP upgrade; the frames themselves are
//!   `transport/websocket`.
//! - `error`: the embedding API's errors.
#![warn(missing_docs)]

mod account;
mod auth;
mod authenticator;
mod broker;
mod builder;
mod client;
mod cluster;
mod config;
mod conn;
mod delivery;
mod error;
mod events;
mod extension;
pub mod gotime;
mod identity;
mod introspect;
pub mod jwt;
mod leaf;
mod lifecycle;
mod message;
mod monitor;
mod operator;
mod permissions;
mod registry;
mod server;
mod stats;
mod subscription;
mod transport;
#[cfg(feature = "websocket")]
mod websocket;

pub use account::cancel::CANCEL_PREFIX;
pub use account::config::{
    Account, Latency, ResponseType, Sampling, ServiceExport, ServiceImport, StreamExport,
    StreamImport, User, DEFAULT_RESPONSE_THRESHOLD, DEFAULT_SYSTEM_ACCOUNT, GLOBAL_ACCOUNT,
};
pub use authenticator::{AuthRequest, Authenticator, BoxFuture, Decision, Grant};
pub use builder::ServerBuilder;
pub use client::inprocess::{
    Batch, Cancelled, Client, Frame, Gather, Subscriber, DEFAULT_REQUEST_TIMEOUT, NEXT_BATCH_MAX,
    PUBLISH_MANY_RUN,
};
pub use client::service::{
    Endpoint, Request, Service, ServiceBuilder, ServiceError, DEFAULT_SERVICE_QUEUE,
    SERVICE_ERROR_CODE_HEADER, SERVICE_ERROR_HEADER,
};
pub use cluster::{Cluster, Discovery, Peer, Seeds};
pub use config::{
    Auth, Config, ConfigError, Monitor, ReloadError, Reloaded, DEFAULT_AUTH_TIMEOUT, DEFAULT_HOST,
    DEFAULT_LAME_DUCK_DURATION, DEFAULT_MAX_CLOSED_CLIENTS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONTROL_LINE, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PENDING, DEFAULT_PORT,
    MAX_PAYLOAD_CEILING, MIN_LAME_DUCK_DURATION,
};
pub use conn::{ClosedReason, ConnKind};
pub use error::{AccountError, ClientError, RequestError, StartError};
pub use events::{Event, EventStream};
pub use extension::{Extension, ExtensionError, Features, Monitoring};
pub use identity::{NATS_VERSION, STARLING_VERSION};
pub use leaf::{
    LeafUser, Leafnodes, Remote, DEFAULT_LEAFNODE_PORT, DEFAULT_LEAF_RECONNECT,
    LOOP_RECONNECT_DELAY,
};
pub use message::{Message, Subject};
pub use permissions::{
    Permissions, ResponsePermission, SubjectPermission, DEFAULT_ALLOW_RESPONSE_EXPIRATION,
    DEFAULT_ALLOW_RESPONSE_MAX_MSGS,
};
pub use server::{Kick, Recheck, Server};
pub use stats::{RouteStats, Stats, SublistFigures};
#[cfg(feature = "tls")]
pub use transport::tls::{
    HandshakeFirst, TlsConfig, TlsError, TlsVersion, DEFAULT_HANDSHAKE_FIRST_FALLBACK,
    DEFAULT_TLS_TIMEOUT,
};
#[cfg(feature = "websocket")]
pub use websocket::Websocket;
