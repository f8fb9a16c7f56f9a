//! Starling: embed a NATS-compatible message broker in a Rust application.
//!
//! Add one dependency, start a broker inside your process with a builder, and every existing
//! NATS client (async-nats, nats.go, nats-py, nats.js, the C client) and the usual NATS tools
//! work against it unchanged, while your own code talks to it in-process, without a socket.
//!
//! ```no_run
//! use starling::{Server, StreamExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     .listen("0.0.0.0:4222")                 // optional: an embedded broker may have no TCP port
//!     .server_name("storage-node-1")
//!     .cluster(starling::Cluster::new("storage")
//!         .listen("0.0.0.0:6222")
//!         .seeds(["nats://10.0.0.1:6222"]))   // one known peer is enough: the rest is discovered
//!     .start()
//!     .await?;                                // returns once the broker accepts work
//!
//! let client = server.client();               // in-process: no socket, zero-copy Bytes
//! let mut sub = client.subscribe("volume.>").await?;
//! client.publish("volume.created", "vol-7").await?;
//! let msg = sub.next().await;                 // a Message whose payload is the publisher's Bytes
//!
//! let mut placer = client.subscribe("scheduler.place").await?;
//! tokio::spawn({
//!     let client = client.clone();
//!     async move {
//!         while let Some(req) = placer.next().await {
//!             if let Some(reply) = req.reply {
//!                 let _ = client.publish(reply.as_str(), "node-1").await;
//!             }
//!         }
//!     }
//! });
//! let reply = client.request("scheduler.place", "size=10GiB").await?;
//!
//! let mut events = server.events();           // peers joining, clients connecting, ...
//! server.shutdown().await;                    // lame duck: tell clients, drain, close
//! # Ok(()) }
//! ```
//!
//! # What you get
//!
//! - **The NATS client protocol, as nats-server speaks it**: `PUB`/`HPUB`/`SUB`/`UNSUB`,
//!   queue groups, request/reply, headers, no-responders, `verbose`/`pedantic`/`echo`, the
//!   same `-ERR` texts, limits and defaults (max payload, control line, connections,
//!   subscriptions, pending bytes, ping interval, auth timeout, write deadline).
//! - **A builder** ([`Server::builder`]) with nats-server's option names and defaults; `start()`
//!   is async and fails with a typed [`StartError`] naming what went wrong; port 0 picks a free
//!   port and [`Server::client_addr`] tells which.
//! - **A cheap-to-clone handle** ([`Server`]): [`Server::shutdown`] returns once every task of
//!   the broker has ended; dropping the last handle shuts down; several brokers can run in one
//!   process (no global state).
//! - **An in-process client** ([`Server::client`]): publish, subscribe (a [`Stream`] of
//!   [`Message`]s), queue subscribe, request with timeout; the same semantics and limits as a
//!   socket client, and visible as a connection.
//! - **Clustering** ([`ServerBuilder::cluster`] with a [`Cluster`]): give a node one seed and
//!   it finds the others (INFO gossip, full mesh); interest, messages and queue groups span
//!   the cluster; [`Server::peers`] lists the peers; routes speak nats-server's protocol.
//! - **Accounts** ([`ServerBuilder::account`] with an [`Account`]): isolated subject spaces,
//!   each with its users; stream and service exports and imports (reply subjects mapped, as
//!   nats-server maps them), service latency measurements, and the system account's `$SYS`
//!   advisories and services. [`Server::client_in`] makes an in-process client of an account.
//! - **TLS** ([`ServerBuilder::tls`] with a [`TlsConfig`]): rustls on the client listener,
//!   plaintext INFO then upgrade as nats-server does, or the handshake first; client
//!   certificates verified against a CA; [`Server::reload_certificates`] without a restart.
//! - **JetStream** (feature `jetstream`, [`jetstream`]): streams in memory or in a file store,
//!   publish acknowledgements, duplicates and expectations, limits; the JetStream API of
//!   nats-server, so every client's JetStream works unchanged.
//! - **Events** ([`Server::events`]): clients connecting and closing, peers joining and
//!   leaving, slow consumers, lame duck.
//! - **Good manners**: the library emits `tracing` events and never installs a subscriber,
//!   prints, installs signal handlers or exits the process.
//!
//! The `starling-server` binary (crate `starling-cli`) runs the same broker with nats-server's
//! command-line flags and configuration file.
#![warn(missing_docs)]

/// NATS clients over WebSocket ([`ServerBuilder::websocket`], feature `websocket`, on by
/// default).
#[cfg(feature = "websocket")]
pub use starling_server::Websocket;
/// Authentication: the embedder's own authenticators ([`ServerBuilder::authenticator`]) and
/// their answers, live connections kicked or re-checked, and NATS JWTs (operator mode).
pub use starling_server::{
    jwt, AuthRequest, Authenticator, BoxFuture, Decision, Grant, Kick, Recheck,
};
/// Accounts: what a [`ServerBuilder`] is given to host several tenants, and what they share.
pub use starling_server::{
    Account, AccountError, Latency, ResponseType, Sampling, ServiceExport, ServiceImport,
    StreamExport, StreamImport, User, DEFAULT_RESPONSE_THRESHOLD, DEFAULT_SYSTEM_ACCOUNT,
    GLOBAL_ACCOUNT,
};
pub use starling_server::{
    Auth, ClientError, ClosedReason, ConnKind, Event, EventStream, Message, RequestError, Server,
    ServerBuilder, StartError, Stats, Subject, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PENDING,
    DEFAULT_REQUEST_TIMEOUT, NATS_VERSION, STARLING_VERSION,
};
/// The in-process client, its subscriptions, how [`Client::request_many`] gathers replies,
/// how a responder learns its requester gave up ([`Client::cancelled`]), and the batch path
/// ([`Client::publish_many`], [`Subscriber::next_batch`], [`Subscriber::next_payloads`]).
pub use starling_server::{
    Batch, Cancelled, Client, Gather, Subscriber, CANCEL_PREFIX, NEXT_BATCH_MAX, PUBLISH_MANY_RUN,
};
/// Clustering: the [`Cluster`] a [`ServerBuilder`] joins, where peers come from ([`Seeds`], or
/// a [`Discovery`] source of your own), and the [`Peer`]s a [`Server`] has routes to.
pub use starling_server::{Cluster, Discovery, Peer, Seeds};
/// Every option in one type ([`Config`], what [`ServerBuilder::config`] takes and
/// [`Server::reload`] applies), its checks and what a reload changed.
pub use starling_server::{
    Config, ConfigError, Monitor, ReloadError, Reloaded, DEFAULT_AUTH_TIMEOUT, DEFAULT_HOST,
    DEFAULT_LAME_DUCK_DURATION, DEFAULT_PORT, MIN_LAME_DUCK_DURATION,
};
/// NATS services on the in-process client ([`Client::service`]): the micro service protocol
/// (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`).
pub use starling_server::{
    Endpoint, Request, Service, ServiceBuilder, ServiceError, DEFAULT_SERVICE_QUEUE,
    SERVICE_ERROR_CODE_HEADER, SERVICE_ERROR_HEADER,
};
/// TLS on the client listener ([`ServerBuilder::tls`], feature `tls`, on by default).
#[cfg(feature = "tls")]
pub use starling_server::{
    HandshakeFirst, TlsConfig, TlsError, TlsVersion, DEFAULT_HANDSHAKE_FIRST_FALLBACK,
    DEFAULT_TLS_TIMEOUT,
};
/// Leafnodes: join a hub over one outbound connection ([`Remote`]) or accept leafnodes
/// ([`Leafnodes::listen`]), with [`ServerBuilder::leafnodes`].
pub use starling_server::{
    LeafUser, Leafnodes, Remote, DEFAULT_LEAFNODE_PORT, DEFAULT_LEAF_RECONNECT,
    LOOP_RECONNECT_DELAY,
};
/// What a user may publish and subscribe to ([`User::permissions`], default permissions).
pub use starling_server::{
    Permissions, ResponsePermission, SubjectPermission, DEFAULT_ALLOW_RESPONSE_EXPIRATION,
    DEFAULT_ALLOW_RESPONSE_MAX_MSGS,
};
/// What [`Server::stats`] reports per route and about the subscription matcher.
pub use starling_server::{RouteStats, SublistFigures};
/// The remaining defaults and limits, with nats-server's values.
pub use starling_server::{
    DEFAULT_MAX_CLOSED_CLIENTS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONTROL_LINE,
    MAX_PAYLOAD_CEILING,
};

/// Extensions: services that start and stop with the server ([`ServerBuilder::extension`]).
pub use starling_server::{Extension, ExtensionError, Features};

/// JetStream (feature `jetstream`): persistent streams, served to every NATS client's JetStream
/// API. `use starling::jetstream::ServerBuilderExt` gives `ServerBuilder::jetstream`.
#[cfg(feature = "jetstream")]
pub use starling_jetstream as jetstream;

/// Payloads are `Bytes`: shared between publisher and subscribers, never copied.
pub use bytes::Bytes;
/// A [`Subscriber`] and an [`EventStream`] are `Stream`s: `StreamExt::next` reads them, with no
/// `futures` dependency of your own.
pub use futures::{Stream, StreamExt};
