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
            ..Info::default()
        }
    }
}
