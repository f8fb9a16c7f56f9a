//! NATS clients over WebSocket (nats-server's `websocket {}`): the listener, each
//! connection's TLS and HTTP upgrade, then the ordinary client protocol on the frames
//! ([`crate::transport::websocket`]); what INFO, `/varz` and authentication do differently for
//! these clients.

mod config;
pub(crate) mod handshake;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, error, info, warn};

pub use config::Websocket;

use crate::broker::Broker;
use crate::conn::ClosedReason;
use crate::error::StartError;
use crate::transport::websocket::status;
use handshake::{Rules, Upgrade};

/// The WebSocket side of a broker: its configuration, and once bound, its listener's address,
/// rules and TLS.
#[derive(Default)]
pub(crate) struct State {
    config: Option<Websocket>,
    bound: OnceLock<Bound>,
}

struct Bound {
    addr: SocketAddr,
    rules: Rules,
    #[cfg(feature = "tls")]
    tls: Option<Arc<crate::transport::Tls>>,
}

/// A bound listener, not yet accepting.
pub(crate) struct Listener {
    tcp: TcpListener,
    #[cfg(feature = "tls")]
    tls: Option<Arc<crate::transport::Tls>>,
}

impl State {
    pub(crate) fn new(config: Option<Websocket>) -> Self {
        Self {
            config,
            bound: OnceLock::new(),
        }
    }

    /// The configuration, if WebSocket clients are served.
    pub(crate) fn config(&self) -> Option<&Websocket> {
        self.config.as_ref()
    }

    /// The bound listener's address.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.bound.get().map(|b| b.addr)
    }

    /// The listener's TLS, when it serves `wss://` (for certificate reloads).
    #[cfg(feature = "tls")]
    pub(crate) fn tls_listener(&self) -> Option<&Arc<crate::transport::Tls>> {
        self.bound.get().and_then(|b| b.tls.as_ref())
    }

    /// Whether the listener serves `wss://`.
    fn tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.bound.get().is_some_and(|b| b.tls.is_some());
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// Checks the `websocket {}` configuration as nats-server does at start.
pub(crate) fn validate(opts: &crate::config::Config) -> Result<(), StartError> {
    match &opts.websocket {
        Some(ws) => ws.validate(opts).map_err(StartError::Config),
        None => Ok(()),
    }
}

/// Binds the WebSocket listener (and builds its TLS) before the server starts, logging what
/// nats-server logs.
pub(crate) async fn bind(opts: &crate::config::Config) -> Result<Option<Listener>, StartError> {
    let Some(ws) = &opts.websocket else {
        return Ok(None);
    };
    let sock = crate::builder::resolve("websocket", &ws.listen)?;
    let tcp = TcpListener::bind(sock)
        .await
        .map_err(|source| StartError::Bind {
            listener: "websocket",
            addr: sock,
            source,
        })?;
    let bound = tcp.local_addr().map_err(|source| StartError::Bind {
        listener: "websocket",
        addr: sock,
        source,
    })?;
    #[cfg(feature = "tls")]
    let tls = match ws.tls_config() {
        Some(config) => Some(Arc::new(crate::transport::Tls::new(config.clone())?)),
        None => None,
    };
    #[cfg(feature = "tls")]
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    #[cfg(not(feature = "tls"))]
    let scheme = "ws";
    info!(
        "Listening for websocket clients on {scheme}://{}",
        crate::transport::addr::join_host_port(&sock.ip().to_string(), bound.port())
    );
    if scheme == "ws" {
        warn!("Websocket not configured with TLS. DO NOT USE IN PRODUCTION!");
    }
    Ok(Some(Listener {
        tcp,
        #[cfg(feature = "tls")]
        tls,
    }))
}

/// Starts accepting WebSocket clients on `listener`.
pub(crate) fn start(broker: &Arc<Broker>, listener: Listener) {
    let Some(config) = broker.websocket().config() else {
        return;
    };
    #[cfg(feature = "tls")]
    let tls_on = listener.tls.is_some();
    #[cfg(not(feature = "tls"))]
    let tls_on = false;
    let Ok(addr) = listener.tcp.local_addr() else {
        return;
    };
    let bound = Bound {
        addr,
        rules: Rules::new(config, tls_on),
        #[cfg(feature = "tls")]
        tls: listener.tls,
    };
    if broker.websocket().bound.set(bound).is_err() {
        return;
    }
    let b = broker.clone();
    broker.lifecycle().spawn(async move {
        let stop = b.lifecycle().stop_accepting().clone();
        crate::transport::accept_loop(
            "websocket",
            listener.tcp,
            stop.cancelled_owned(),
            |stream, addr| {
                b.lifecycle().spawn(serve(b.clone(), stream, addr));
            },
        )
        .await;
    });
}

/// What a client's upgrade (and TLS) gave it.
pub(crate) struct Accepted {
    pub(crate) upgrade: Upgrade,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::transport::tls::TlsState>,
    pub(crate) peer_certificates: Vec<Vec<u8>>,
}

/// One accepted socket: TLS when the listener has it, the HTTP upgrade (both within
/// `handshake_timeout`, when set), then the client protocol.
async fn serve(broker: Arc<Broker>, tcp: TcpStream, addr: SocketAddr) {
    let Some(bound) = broker.websocket().bound.get() else {
        return;
    };
    let timeout = broker
        .websocket()
        .config()
        .map_or(Duration::ZERO, |c| c.handshake_timeout);
    let within = |d: Duration| {
        if d.is_zero() {
            tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600)
        } else {
            tokio::time::Instant::now() + d
        }
    };
    let deadline = within(timeout);
    #[cfg(feature = "tls")]
    if let Some(tls) = bound.tls.clone() {
        let tls_deadline = if timeout.is_zero() {
            tokio::time::Instant::now() + tls.config().handshake_timeout()
        } else {
            deadline
        };
        let mut stream = match tokio::time::timeout_at(tls_deadline, tls.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(%addr, "websocket TLS handshake error: {e}");
                return;
            }
            Err(_) => {
                debug!(%addr, "websocket TLS handshake timeout");
                return;
            }
        };
        let state = crate::transport::tls::TlsState::of(&stream, false);
        let peer_certificates = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
            .unwrap_or_default();
        let Some(upgrade) = upgrade(&mut stream, &bound.rules, deadline, addr).await else {
            return;
        };
        let (r, w) = tokio::io::split(stream);
        let accepted = Accepted {
            upgrade,
            tls: Some(state),
            peer_certificates,
        };
        crate::client::serve_ws(broker, r, w, addr, accepted).await;
        return;
    }
    let mut tcp = tcp;
    let Some(upgrade) = upgrade(&mut tcp, &bound.rules, deadline, addr).await else {
        return;
    };
    let (r, w) = tcp.into_split();
    let accepted = Accepted {
        upgrade,
        #[cfg(feature = "tls")]
        tls: None,
        peer_certificates: Vec::new(),
    };
    crate::client::serve_ws(broker, r, w, addr, accepted).await;
}

async fn upgrade<S>(
    io: &mut S,
    rules: &Rules,
    deadline: tokio::time::Instant,
    addr: SocketAddr,
) -> Option<Upgrade>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout_at(deadline, handshake::upgrade(io, rules)).await {
        Ok(Ok(Ok(upgrade))) if upgrade.leafnode => {
            // As nats-server without leafnodes: upgraded, then closed without a word.
            error!("{addr} - Not configured to accept leaf node connections");
            None
        }
        Ok(Ok(Ok(upgrade))) => Some(upgrade),
        Ok(Ok(Err(refused))) => {
            error!("{addr} - {refused}");
            None
        }
        Ok(Err(e)) => {
            debug!(%addr, "websocket handshake read error: {e}");
            None
        }
        Err(_) => {
            debug!(%addr, "websocket handshake timeout");
            None
        }
    }
}

/// The INFO a WebSocket client gets: the server's, with the WebSocket listener's host and
/// port, `tls_required` (and `tls_available`) only for `wss://`, no client URLs, and
/// `auth_required` when the block overrides authentication.
pub(crate) fn client_info(broker: &Broker, mut info: starling_proto::Info) -> starling_proto::Info {
    let ws = broker.websocket();
    let tls = ws.tls();
    info.tls_required = tls;
    info.tls_available = tls;
    if let Some(config) = ws.config() {
        if let Some(addr) = ws.addr() {
            info.host = crate::builder::resolve("websocket", &config.listen)
                .map_or_else(|_| addr.ip().to_string(), |a| a.ip().to_string());
            info.port = addr.port();
        }
        if !info.auth_required {
            info.auth_required = config.auth_override();
        }
    }
    info.connect_urls = Vec::new();
    info
}

/// The credentials WebSocket clients present instead of the server's, when the block has
/// its own (`authorization`, `no_auth_user`).
pub(crate) fn auth_override(broker: &Broker) -> Option<Arc<crate::auth::Override>> {
    let config = broker.websocket().config()?;
    config.auth_override().then(|| {
        Arc::new(crate::auth::Override {
            single: config.auth.clone(),
            no_auth_user: config.no_auth_user.clone(),
        })
    })
}

/// The CLOSE status and reason nats-server sends a WebSocket client it closes for `reason`.
pub(crate) fn close_status(reason: Option<ClosedReason>) -> (u16, String) {
    let Some(reason) = reason else {
        return (status::GOING_AWAY, ClosedReason::ServerShutdown.to_string());
    };
    use ClosedReason as R;
    let code = match reason {
        R::ClientClosed => status::NORMAL,
        R::AuthenticationTimeout
        | R::AuthenticationViolation
        | R::SlowConsumerPendingBytes
        | R::SlowConsumerWriteDeadline
        | R::MaxAccountConnectionsExceeded
        | R::MaxConnectionsExceeded
        | R::MaxControlLineExceeded
        | R::AuthenticationExpired => status::POLICY_VIOLATION,
        R::TlsHandshakeError => status::TLS_HANDSHAKE,
        R::ParseError | R::ProtocolViolation | R::BadClientProtocolVersion => {
            status::PROTOCOL_ERROR
        }
        R::MaxPayloadExceeded => status::MESSAGE_TOO_BIG,
        R::WriteError | R::ReadError | R::StaleConnection | R::ServerShutdown => status::GOING_AWAY,
        _ => status::INTERNAL_ERROR,
    };
    (code, reason.to_string())
}

/// nats-server's `/varz` `websocket` object (every field left out when unset).
#[derive(Serialize, Default)]
pub(crate) struct Varz {
    #[serde(skip_serializing_if = "String::is_empty")]
    host: String,
    #[serde(skip_serializing_if = "is_zero")]
    port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    advertise: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    no_auth_user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    jwt_cookie: String,
    /// Nanoseconds, as Go's `time.Duration`.
    #[serde(skip_serializing_if = "is_zero")]
    handshake_timeout: u64,
    /// Seconds.
    #[serde(skip_serializing_if = "is_zero")]
    auth_timeout: f64,
    #[serde(skip_serializing_if = "is_zero")]
    no_tls: bool,
    #[serde(skip_serializing_if = "is_zero")]
    tls_map: bool,
    #[serde(skip_serializing_if = "is_zero")]
    same_origin: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    compression: bool,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The `/varz` `websocket` object of this broker (`{}` without WebSocket).
pub(crate) fn varz(state: &State) -> Varz {
    let Some(c) = state.config() else {
        return Varz::default();
    };
    let host = crate::builder::resolve("websocket", &c.listen)
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    #[cfg(feature = "tls")]
    let tls_map = c.tls.as_ref().is_some_and(|t| t.maps_clients());
    #[cfg(not(feature = "tls"))]
    let tls_map = false;
    Varz {
        host,
        port: state.addr().map_or(0, |a| a.port()),
        advertise: c.advertise.clone().unwrap_or_default(),
        no_auth_user: c.no_auth_user.clone().unwrap_or_default(),
        jwt_cookie: c.jwt_cookie.clone().unwrap_or_default(),
        handshake_timeout: c.handshake_timeout.as_nanos() as u64,
        auth_timeout: c.auth_timeout.map_or(0.0, |d| d.as_secs_f64()),
        no_tls: c.no_tls,
        tls_map,
        same_origin: c.same_origin,
        allowed_origins: c.allowed_origins.clone(),
        compression: c.compression,
    }
}
