//! The cluster: configuration, routes to peers, and how peers are found.
//!
//! - `config`: [`Cluster`] (what an embedder configures), [`Discovery`] sources, [`Peer`].
//! - `routes`: the registry of routes and the interest each peer is told about, per account.
//! - `route`: one route connection (handshake, `RS+`/`RS-`/`RMSG`, keepalive, gossip).
//! - `discovery`: the cluster listener, seed and discovery-source dialers, gossip dials.

mod config;
mod discovery;
mod route;
mod routes;

pub use config::{Cluster, Discovery, Peer, Seeds};
pub(crate) use discovery::{start, DialTarget};
pub(crate) use routes::{interface_ips, url_host_port, RouteLink, Routes};
