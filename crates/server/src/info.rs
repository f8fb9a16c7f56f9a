//! The server's identity and the INFO it sends.

use std::net::SocketAddr;

use starling_proto::Info;

use crate::server::Shared;

/// The NATS server version whose behaviour Starling implements. Clients gate features on
/// INFO `version` (headers need >= 2.2; many client tests skip below 2.10), so it is this,
/// not Starling's own crate version (which goes in `starling_version`, see DESIGN.md).
pub const NATS_VERSION: &str = "2.10.0";

/// Starling's own version.
pub const STARLING_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A server id in nats-server's shape: 'N' followed by 55 base32 characters.
pub(crate) fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut id = String::with_capacity(56);
    id.push('N');
    for _ in 0..55 {
        id.push(ALPHABET[fastrand::usize(..32)] as char);
    }
    id
}

impl Shared {
    /// The INFO a client connection gets.
    pub(crate) fn client_info(&self, cid: u64, addr: Option<SocketAddr>) -> Info {
        let listen = *self.client_addr.lock();
        let (host, port) = match listen {
            Some(a) => (a.ip().to_string(), a.port()),
            None => ("0.0.0.0".to_string(), 0),
        };
        Info {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: NATS_VERSION.to_string(),
            proto: 1,
            go: format!("starling {STARLING_VERSION}"),
            host,
            port,
            headers: true,
            max_payload: self.opts.max_payload,
            client_id: cid,
            client_ip: addr.map(|a| a.ip().to_string()),
            auth_required: self.opts.auth.is_required(),
            ldm: self.lame_duck.load(std::sync::atomic::Ordering::Relaxed),
            cluster: self.cluster.as_ref().map(|r| r.name()),
            connect_urls: if self.cluster.is_some() {
                self.connect_urls()
            } else {
                Vec::new()
            },
            ..Info::default()
        }
    }

    /// The INFO this server sends on a route: the 2.9-style single-connection protocol
    /// (`proto` 2, no `route_pool_size`, no `compression`), which nats-server 2.9 and 2.10+
    /// both speak.
    pub(crate) fn route_info(&self) -> Info {
        let routes = self.cluster.as_ref().expect("route INFO needs a cluster");
        let (host, port) = match routes.advertise.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse().unwrap_or(0),
            ),
            None => (routes.advertise.clone(), routes.listen_addr.port()),
        };
        Info {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: NATS_VERSION.to_string(),
            proto: 2,
            go: format!("starling {STARLING_VERSION}"),
            host,
            port,
            headers: true,
            max_payload: self.opts.max_payload,
            auth_required: routes.config.user.is_some(),
            ip: routes
                .config
                .advertise
                .as_ref()
                .map(|a| format!("nats-route://{a}/")),
            cluster: Some(routes.name()),
            cluster_dynamic: routes.is_dynamic(),
            connect_urls: if routes.config.no_advertise {
                Vec::new()
            } else {
                self.own_client_urls()
            },
            ldm: self.lame_duck.load(std::sync::atomic::Ordering::Relaxed),
            ..Info::default()
        }
    }
}
