//! Sockets, shared by every connection kind: one accept loop for every listener, the byte
//! stream a connection runs on (plain TCP, or TLS over it), and the one place that splits URLs
//! and `host:port`.

pub(crate) mod addr;
#[cfg(feature = "tls")]
pub(crate) mod cert;
pub(crate) mod dial;
#[cfg(feature = "tls")]
mod stream;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(feature = "websocket")]
pub(crate) mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

#[cfg(feature = "tls")]
pub(crate) use stream::Stream;
#[cfg(feature = "tls")]
pub(crate) use tls::Tls;

/// Each listener's TLS, if it has any: the broker holds them, and a certificate reload reaches
/// every one.
#[derive(Default)]
pub(crate) struct TlsSet {
    /// The client listener's.
    pub(crate) client: Option<std::sync::Arc<Tls>>,
    /// The routes' (both directions).
    pub(crate) route: Option<std::sync::Arc<Tls>>,
    /// The HTTPS monitor's (the client certificate, no client authentication).
    pub(crate) monitor: Option<std::sync::Arc<Tls>>,
}

/// Without the `tls` feature there is no TLS: an uninhabited stand-in keeps the broker's
/// `Option<Arc<Tls>>` (always `None`) free of `cfg`s.
#[cfg(not(feature = "tls"))]
pub(crate) enum Tls {}

#[cfg(not(feature = "tls"))]
impl Tls {
    pub(crate) fn verifies_clients(&self) -> bool {
        match *self {}
    }
}

/// Accepts connections on `listener` until `stop` completes, handing each (with Nagle off) to
/// `on_accept`. An accept error (EMFILE and friends) backs off a little rather than spin.
pub(crate) async fn accept_loop(
    name: &'static str,
    listener: TcpListener,
    stop: impl Future<Output = ()>,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    on_accept(stream, addr);
                }
                Err(e) => {
                    warn!(error = %e, "{name} accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    debug!("{name} listener closed");
}
