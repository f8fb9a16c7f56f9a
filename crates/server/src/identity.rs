//! Who this server is (id, name, start time, bound addresses) and the INFO it sends.

use crate::extension::Features;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use starling_proto::Info;

/// The NATS server version whose behaviour Starling implements. Clients gate features on
/// INFO `version` (headers need >= 2.2; many client tests skip below 2.10; per-message TTLs,
/// consumer pause and priority groups below 2.11), so it is this, not Starling's own crate
/// version (which goes in `starling_version`, see DESIGN.md). 2.11: JetStream has what 2.11
/// added that clients gate on (`Nats-TTL`, markers, pause, priority groups).
pub const NATS_VERSION: &str = "2.11.0";

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

/// The server's identity and where it listens.
pub(crate) struct Identity {
    server_id: String,
    server_name: String,
    start: SystemTime,
    config_loaded: Mutex<SystemTime>,
    client_addr: Mutex<Option<SocketAddr>>,
    monitor_addr: Mutex<Option<SocketAddr>>,
    /// Bumped whenever the cluster's client URLs change (async INFO to clients).
    urls_version: AtomicU64,
    /// What extensions offer (JetStream).
    features: Features,
}

/// What a client INFO says beyond the identity.
pub(crate) struct ClientInfo {
    pub(crate) cid: u64,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) max_payload: usize,
    pub(crate) auth_required: bool,
    pub(crate) tls_required: bool,
    pub(crate) tls_available: bool,
    pub(crate) tls_verify: bool,
    pub(crate) lame_duck: bool,
    pub(crate) cluster: Option<String>,
    pub(crate) connect_urls: Vec<String>,
}

impl Identity {
    pub(crate) fn new(server_name: Option<String>, features: Features) -> Self {
        let server_id = new_server_id();
        let now = SystemTime::now();
        Self {
            features,
            server_name: server_name.unwrap_or_else(|| server_id.clone()),
            server_id,
            start: now,
            config_loaded: Mutex::new(now),
            client_addr: Mutex::new(None),
            monitor_addr: Mutex::new(None),
            urls_version: AtomicU64::new(0),
        }
    }

    pub(crate) fn server_id(&self) -> &str {
        &self.server_id
    }

    /// What the server's extensions offer.
    pub(crate) fn features(&self) -> Features {
        self.features
    }

    pub(crate) fn server_name(&self) -> &str {
        &self.server_name
    }

    pub(crate) fn start(&self) -> SystemTime {
        self.start
    }

    /// When the configuration in effect was loaded (`/varz` `config_load_time`): the start,
    /// then each reload.
    pub(crate) fn config_loaded(&self) -> SystemTime {
        *self.config_loaded.lock()
    }

    pub(crate) fn set_config_loaded(&self, at: SystemTime) {
        *self.config_loaded.lock() = at;
    }

    pub(crate) fn client_addr(&self) -> Option<SocketAddr> {
        *self.client_addr.lock()
    }

    pub(crate) fn set_client_addr(&self, addr: Option<SocketAddr>) {
        *self.client_addr.lock() = addr;
    }

    pub(crate) fn monitor_addr(&self) -> Option<SocketAddr> {
        *self.monitor_addr.lock()
    }

    #[cfg(feature = "monitor")]
    pub(crate) fn set_monitor_addr(&self, addr: Option<SocketAddr>) {
        *self.monitor_addr.lock() = addr;
    }

    /// The version of the cluster's client URLs (0 until a route first connected).
    pub(crate) fn urls_version(&self) -> u64 {
        self.urls_version.load(Ordering::Relaxed)
    }

    /// The cluster's client URLs changed: returns the new version.
    pub(crate) fn bump_urls_version(&self) -> u64 {
        self.urls_version.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The fields every INFO shares.
    fn base_info(&self, max_payload: usize) -> Info {
        Info {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: NATS_VERSION.to_string(),
            go: format!("starling {STARLING_VERSION}"),
            headers: true,
            max_payload,
            ..Info::default()
        }
    }

    /// The INFO a client connection gets.
    pub(crate) fn client_info(&self, c: ClientInfo) -> Info {
        let (host, port) = match self.client_addr() {
            Some(a) => (a.ip().to_string(), a.port()),
            None => ("0.0.0.0".to_string(), 0),
        };
        Info {
            proto: 1,
            host,
            port,
            client_id: c.cid,
            client_ip: c.addr.map(|a| a.ip().to_string()),
            auth_required: c.auth_required,
            tls_required: c.tls_required,
            tls_available: c.tls_available,
            tls_verify: c.tls_verify,
            ldm: c.lame_duck,
            cluster: c.cluster,
            connect_urls: c.connect_urls,
            // Only clients hear of JetStream: a route peer that is nats-server must not take
            // this server's JetStream for a member of its own.
            jetstream: self.features.jetstream,
            ..self.base_info(c.max_payload)
        }
    }

    /// The INFO this server sends on a route: the 2.9-style single-connection protocol
    /// (`proto` 2, no `route_pool_size`, no `compression`), which nats-server 2.9 and 2.10+
    /// both speak. `advertise` is the `host:port` peers dial.
    pub(crate) fn route_info(&self, max_payload: usize, advertise: &str, listen_port: u16) -> Info {
        let (host, port) = match advertise.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse().unwrap_or(0),
            ),
            None => (advertise.to_string(), listen_port),
        };
        Info {
            proto: 2,
            host,
            port,
            ..self.base_info(max_payload)
        }
    }
}
