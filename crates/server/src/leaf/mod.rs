//! Leafnodes: a server joins a remote hub over one outbound connection (it is the hub's
//! "leaf"), or accepts such connections (it is their hub). Each connection binds one account
//! on each side; interest crosses as `LS+`/`LS-`, messages as `LMSG`.
//!
//! - `config`: [`Leafnodes`], [`Remote`], [`LeafUser`] (what an embedder configures).
//! - `links`: the registry of leafnode connections and the interest each one is told about
//!   (where it differs from routes is said there).
//! - `proto`: one leafnode connection on the shared read loop (handshake, `LS+`/`LS-`/`LMSG`).
//! - `solicit`: the dialers of configured remotes, with back-off; credentials files.
//! - here: the leafnode listener.

mod config;
mod links;
mod proto;
mod solicit;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::info;

pub use config::{
    LeafUser, Leafnodes, Remote, DEFAULT_LEAFNODE_PORT, DEFAULT_LEAF_RECONNECT,
    LOOP_RECONNECT_DELAY,
};
pub(crate) use links::{LeafLink, LeafStats, Leafs};

use crate::broker::Broker;
use crate::conn::ConnKind;
use crate::error::StartError;

/// Starts the leafnode side: binds the listener (if configured) and starts a dialer per
/// remote.
pub(crate) async fn start(broker: &Arc<Broker>) -> Result<(), StartError> {
    let Some(leafs) = broker.leafs().cloned() else {
        return Ok(());
    };
    for remote in &leafs.config().remotes {
        if let Some(p) = remote.permissions() {
            p.validate().map_err(|e| {
                StartError::Config(format!("leafnode remote deny_imports/deny_exports: {e}"))
            })?;
        }
    }
    #[cfg(feature = "tls")]
    if let Some(config) = &leafs.config().tls {
        let tls = crate::transport::Tls::new(config.clone())?;
        leafs.set_tls(Arc::new(tls));
    }
    if let Some(listen) = &leafs.config().listen {
        let sock = crate::builder::resolve("leafnode", listen)?;
        let listener = TcpListener::bind(sock)
            .await
            .map_err(|source| StartError::Bind {
                listener: "leafnode",
                addr: sock,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            listener: "leafnode",
            addr: sock,
            source,
        })?;
        let advertise = match &leafs.config().advertise {
            Some(a) => a.clone(),
            None => advertise_addr(bound),
        };
        leafs.set_listen_addr(bound, advertise);
        info!("Listening for leafnode connections on {bound}");
        broker
            .lifecycle()
            .spawn(accept_loop(broker.clone(), leafs.clone(), listener));
    }
    solicit::start(broker, &leafs);
    Ok(())
}

/// The bound address as leafnodes elsewhere can dial it (0.0.0.0 replaced by this host's
/// first global interface address).
fn advertise_addr(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        if let Some(ip) = crate::cluster::interface_ips().first() {
            return crate::transport::addr::join_host_port(&ip.to_string(), bound.port());
        }
    }
    bound.to_string()
}

async fn accept_loop(broker: Arc<Broker>, leafs: Arc<Leafs>, listener: TcpListener) {
    let stop = broker.lifecycle().stop_accepting().clone();
    crate::transport::accept_loop(
        "leafnode",
        listener,
        stop.cancelled_owned(),
        |stream, addr| {
            broker
                .lifecycle()
                .spawn(serve_accepted(broker.clone(), leafs.clone(), stream, addr));
        },
    )
    .await;
}

/// Serves one accepted leafnode: INFO first (in plaintext), the TLS handshake when the
/// listener has TLS, then the protocol.
async fn serve_accepted(
    broker: Arc<Broker>,
    leafs: Arc<Leafs>,
    mut tcp: TcpStream,
    addr: SocketAddr,
) {
    let conn = broker.new_conn(ConnKind::Leaf, Some(addr));
    let nonce = crate::auth::new_nonce();
    let info = proto::hub_info(&broker, &leafs, &conn, &nonce);
    let mut first = bytes::BytesMut::new();
    starling_proto::encode::write_info(&mut first, &info);
    let role = proto::Role::Accepted { nonce };
    #[cfg(feature = "tls")]
    if let Some(tls) = leafs.tls() {
        match tls.client_handshake(tcp, &first, false).await {
            Ok(handshake) => {
                let (r, w) = handshake.stream.split();
                proto::serve(broker, leafs, conn, r, w, Some(addr), role).await;
            }
            Err(_) => tracing::debug!(%addr, "leafnode TLS handshake failed"),
        }
        return;
    }
    if tcp.write_all(&first).await.is_err() {
        return;
    }
    let (r, w) = tcp.into_split();
    proto::serve(broker, leafs, conn, r, w, Some(addr), role).await;
}
