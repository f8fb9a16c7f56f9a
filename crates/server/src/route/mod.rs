//! Cluster routes: the registry of peers (one route per peer server id), the local interest
//! each peer is told about (`RS+`/`RS-`), gossip of new peers, and the cluster's client URLs.
//!
//! - `conn`: one route connection (handshake, `RS+`/`RS-`/`RMSG`, keepalive).
//! - `crate::discovery`: the cluster listener, seed and discovery-source dialers, gossip dials.
//!
//! Interest is aggregated per (subject, queue): a plain subject is announced when its first
//! local subscription appears and withdrawn with its last; a queue group is re-announced with
//! its new member count (the weight remote servers use to pick) whenever the count changes.

pub(crate) mod conn;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use starling_proto::{encode, Info};

use crate::client::{ClientShared, OwnedSub};
use crate::cluster::{Cluster, Peer};
use crate::events::Event;
use crate::server::Shared;

pub(crate) use crate::discovery::{start as start_cluster, DialTarget};

/// The only account Starling serves; other accounts' interest and messages from peers are
/// accepted and ignored (real servers send `$SYS` traffic at once).
pub(crate) const ACCOUNT: &[u8] = b"$G";

/// One registered route to a peer.
pub(crate) struct RouteLink {
    pub(crate) conn: Arc<ClientShared>,
    pub(crate) server_id: String,
    /// The peer's INFO, as it sent it (used for gossip and client URLs).
    pub(crate) info: Mutex<Info>,
    pub(crate) remote_addr: Option<SocketAddr>,
    /// Where this node dialled the peer, if it did (re-dialled on loss).
    pub(crate) dial: Mutex<Option<DialTarget>>,
    /// Set when a duplicate connection to the same peer was dropped in favour of this one:
    /// if this one drops too, re-dial (both sides may have kept opposite connections).
    pub(crate) retry: AtomicBool,
    /// The peer's interest, keyed by `subject` or `subject queue`.
    pub(crate) remote_subs: Mutex<HashMap<Bytes, OwnedSub>>,
}

impl RouteLink {
    /// The peer's cluster address as others should dial it: its advertised `ip` when it sent
    /// one, else the address it connected from with the port its INFO gives.
    pub(crate) fn cluster_addr(&self) -> String {
        let info = self.info.lock();
        if let Some(ip) = info.ip.as_deref().and_then(url_host_port) {
            return ip;
        }
        let host = match (self.remote_addr, info.host.as_str()) {
            (_, h) if !h.is_empty() && !is_unspecified(h) => h.to_string(),
            (Some(a), _) => a.ip().to_string(),
            (None, h) => h.to_string(),
        };
        join_host_port(&host, info.port)
    }

    fn peer(&self) -> Peer {
        let info = self.info.lock();
        let solicited = self.dial.lock().is_some();
        drop(info);
        let addr = self.cluster_addr();
        let info = self.info.lock();
        Peer {
            server_id: self.server_id.clone(),
            server_name: info.server_name.clone(),
            cluster_addr: addr,
            remote_addr: self.remote_addr,
            solicited,
            client_urls: info.connect_urls.clone(),
        }
    }
}

type InterestKey = (Bytes, Option<Bytes>);

#[derive(Default)]
struct State {
    /// Local subscriptions per (subject, queue).
    interest: HashMap<InterestKey, u32>,
    links: HashMap<String, Arc<RouteLink>>,
    /// Registration order of the links (connect_urls lists peers in this order).
    order: Vec<String>,
    /// Peers that announced lame duck: their client URLs are no longer advertised.
    lame_duck: HashSet<String>,
    /// Cluster addresses currently being dialled.
    dialing: HashSet<String>,
}

/// The cluster side of a running broker.
pub(crate) struct Routes {
    pub(crate) config: Cluster,
    /// The cluster name; may change once if ours is dynamic and a named peer shows up.
    pub(crate) name: Mutex<String>,
    pub(crate) dynamic: AtomicBool,
    /// The address the cluster listener is bound to.
    pub(crate) listen_addr: SocketAddr,
    /// What peers should dial to reach us (`host:port`).
    pub(crate) advertise: String,
    state: Mutex<State>,
}

impl Routes {
    pub(crate) fn new(config: Cluster, listen_addr: SocketAddr, advertise: String) -> Self {
        let (name, dynamic) = match &config.name {
            Some(n) => (n.clone(), false),
            None => (crate::info::new_server_id()[34..].to_string(), true),
        };
        Self {
            config,
            name: Mutex::new(name),
            dynamic: AtomicBool::new(dynamic),
            listen_addr,
            advertise,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn name(&self) -> String {
        self.name.lock().clone()
    }

    pub(crate) fn is_dynamic(&self) -> bool {
        self.dynamic.load(Ordering::Relaxed)
    }

    /// A local subscription on (subject, queue) appeared (`delta` = 1) or went (-1): tell
    /// every peer when the aggregate changes.
    pub(crate) fn interest_changed(&self, subject: &[u8], queue: Option<&[u8]>, delta: i32) {
        let mut st = self.state.lock();
        let key = (
            Bytes::copy_from_slice(subject),
            queue.map(Bytes::copy_from_slice),
        );
        let old = st.interest.get(&key).copied().unwrap_or(0);
        let new = (old as i64 + delta as i64).max(0) as u32;
        if new == 0 {
            st.interest.remove(&key);
        } else {
            st.interest.insert(key, new);
        }
        let mut line = BytesMut::new();
        match queue {
            None if old == 0 && new > 0 => encode::write_rs_plus(&mut line, ACCOUNT, subject, None),
            None if old > 0 && new == 0 => {
                encode::write_rs_minus(&mut line, ACCOUNT, subject, None)
            }
            None => return,
            Some(q) if new > 0 => {
                encode::write_rs_plus(&mut line, ACCOUNT, subject, Some((q, new)))
            }
            Some(q) => encode::write_rs_minus(&mut line, ACCOUNT, subject, Some(q)),
        }
        for link in st.links.values() {
            link.conn.out.push_with(|b| b.put_slice(&line));
            link.conn.out.wake.notify_one();
        }
    }

    /// Registers a route once the peer's INFO is known. Sends the peer our whole interest.
    /// Fails with the existing link when this peer already has one: the first registered
    /// connection wins, as in nats-server.
    pub(crate) fn register(
        &self,
        link: &Arc<RouteLink>,
    ) -> Result<Vec<Arc<RouteLink>>, Arc<RouteLink>> {
        let mut st = self.state.lock();
        if let Some(existing) = st.links.get(&link.server_id) {
            return Err(existing.clone());
        }
        let interest = &st.interest;
        link.conn.out.push_with(|b| {
            for ((subject, queue), n) in interest {
                encode::write_rs_plus(b, ACCOUNT, subject, queue.as_ref().map(|q| (&q[..], *n)));
            }
        });
        link.conn.out.wake.notify_one();
        let others = st.links.values().cloned().collect();
        st.links.insert(link.server_id.clone(), link.clone());
        st.order.push(link.server_id.clone());
        Ok(others)
    }

    /// Forgets a route (if `link` is the registered one for its peer).
    pub(crate) fn unregister(&self, link: &Arc<RouteLink>) -> bool {
        let mut st = self.state.lock();
        match st.links.get(&link.server_id) {
            Some(l) if Arc::ptr_eq(l, link) => {
                st.links.remove(&link.server_id);
                st.order.retain(|id| id != &link.server_id);
                st.lame_duck.remove(&link.server_id);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn link(&self, server_id: &str) -> Option<Arc<RouteLink>> {
        self.state.lock().links.get(server_id).cloned()
    }

    pub(crate) fn links(&self) -> Vec<Arc<RouteLink>> {
        let st = self.state.lock();
        st.order
            .iter()
            .filter_map(|id| st.links.get(id).cloned())
            .collect()
    }

    pub(crate) fn peers(&self) -> Vec<Peer> {
        self.links().iter().map(|l| l.peer()).collect()
    }

    /// Peers' client URLs in registration order (minus lame ducks).
    pub(crate) fn peer_client_urls(&self) -> Vec<String> {
        let st = self.state.lock();
        st.order
            .iter()
            .filter(|id| !st.lame_duck.contains(*id))
            .filter_map(|id| st.links.get(id))
            .flat_map(|l| l.info.lock().connect_urls.clone())
            .collect()
    }

    pub(crate) fn set_lame_duck(&self, server_id: &str) -> bool {
        self.state.lock().lame_duck.insert(server_id.to_string())
    }

    /// Claims `addr` for a dial; false if a dial to it is already under way.
    pub(crate) fn start_dialing(&self, addr: &str) -> bool {
        self.state.lock().dialing.insert(addr.to_string())
    }

    pub(crate) fn done_dialing(&self, addr: &str) {
        self.state.lock().dialing.remove(addr);
    }

    /// Whether a registered peer is reachable at `addr` (its advertised cluster address).
    pub(crate) fn connected_to_addr(&self, addr: &str) -> bool {
        self.links().iter().any(|l| l.cluster_addr() == addr)
    }
}

impl Shared {
    /// Called when a route registered: gossip, events, client URLs.
    pub(crate) fn route_added(&self, link: &Arc<RouteLink>, others: &[Arc<RouteLink>]) {
        // Tell the other peers about the newcomer, with the address to dial it at; they
        // connect to it (full mesh). Receivers ignore peers they already know.
        let mut info = link.info.lock().clone();
        info.ip = Some(format!("nats-route://{}/", link.cluster_addr()));
        info.nonce = None;
        let json = info.to_json();
        for other in others {
            other.conn.out.push_with(|b| {
                b.put_slice(b"INFO ");
                b.put_slice(json.as_bytes());
                b.put_slice(b"\r\n");
            });
            other.conn.out.wake.notify_one();
        }
        let server_name = info.server_name.clone();
        tracing::info!(peer = %link.server_id, name = %server_name, addr = %link.cluster_addr(), "Route connection created");
        self.emit(Event::PeerJoined {
            server_id: link.server_id.clone(),
            server_name,
        });
        self.client_urls_changed();
    }

    pub(crate) fn route_removed(&self, link: &Arc<RouteLink>) {
        self.retire_out_counts(&link.conn);
        let server_name = link.info.lock().server_name.clone();
        tracing::info!(peer = %link.server_id, name = %server_name, "Route connection closed");
        self.emit(Event::PeerLeft {
            server_id: link.server_id.clone(),
            server_name,
        });
        self.client_urls_changed();
    }
}

/// This host's global-unicast interface addresses (loopback and link-local excluded), for
/// advertising a node that listens on 0.0.0.0.
pub(crate) fn interface_ips() -> Vec<std::net::IpAddr> {
    let mut ips: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| match ip {
            std::net::IpAddr::V4(v4) => {
                !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified()
            }
            std::net::IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
            }
        })
        .collect();
    ips.sort_by_key(|ip| ip.is_ipv6()); // IPv4 first
    ips
}

/// `host:port` from `nats-route://[user:pass@]host:port/` (or a bare `host:port`).
pub(crate) fn url_host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hp = rest.trim_end_matches('/');
    (!hp.is_empty()).then(|| hp.to_string())
}

pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub(crate) fn is_unspecified(host: &str) -> bool {
    matches!(host, "0.0.0.0" | "::" | "[::]" | "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_from_route_urls() {
        assert_eq!(
            url_host_port("nats-route://127.0.0.1:6303/").as_deref(),
            Some("127.0.0.1:6303")
        );
        assert_eq!(url_host_port("nats://u:p@h:1").as_deref(), Some("h:1"));
        assert_eq!(url_host_port("h:2").as_deref(), Some("h:2"));
        assert_eq!(url_host_port("nats://").as_deref(), None);
        assert_eq!(join_host_port("::1", 4), "[::1]:4");
    }
}
