//! Cluster routes: the registry of peers (one route per peer server id), the local interest
//! each peer is told about (`RS+`/`RS-`, per account), and the cluster's client URLs.
//!
//! Interest is aggregated per (account, subject, queue): a plain subject is announced when its
//! first local subscription appears and withdrawn with its last; a queue group is re-announced
//! with its new member count (the weight remote servers use to pick) whenever the count changes.
//!
//! A new route is sent the whole interest in chunks, waiting for its writer to drain between
//! them, so that a huge interest set cannot push a new route past its `max_pending`. Changes
//! that happen meanwhile are held back until the snapshot is out, so the peer never sees an
//! `RS-` before the `RS+` it withdraws.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use starling_proto::{encode, Info};

use super::config::{Cluster, Peer};
use super::discovery::DialTarget;
use crate::account::Account;
use crate::conn::Conn;
use crate::stats::RouteStats;
use crate::subscription::OwnedSub;
use crate::transport::addr::{is_unspecified, join_host_port, parse_url, DEFAULT_ROUTE_PORT};

/// Bytes of interest sent to a new route at once; the next chunk waits until its writer has
/// drained below half of `max_pending`.
const SYNC_CHUNK: usize = 64 * 1024;

/// (account, subject, queue).
type InterestKey = (Bytes, Bytes, Option<Bytes>);

/// A peer's interest this server holds: the subscription in the account's sublist.
pub(crate) struct RemoteSub {
    pub(crate) account: Arc<Account>,
    pub(crate) owned: OwnedSub,
}

/// One registered route to a peer.
pub(crate) struct RouteLink {
    pub(crate) conn: Arc<Conn>,
    pub(crate) server_id: String,
    /// The peer's INFO, as it sent it (used for gossip and client URLs).
    info: Mutex<Info>,
    remote_addr: Option<SocketAddr>,
    /// Where this node dialled the peer, if it did (re-dialled on loss).
    dial: Mutex<Option<DialTarget>>,
    /// Set when a duplicate connection to the same peer was dropped in favour of this one:
    /// if this one drops too, re-dial (both sides may have kept opposite connections).
    retry: AtomicBool,
    /// The peer's interest, keyed by `account subject [queue]` as nats-server keys it.
    remote_subs: Mutex<HashMap<Bytes, RemoteSub>>,
}

impl RouteLink {
    pub(crate) fn new(
        conn: Arc<Conn>,
        info: Info,
        remote_addr: Option<SocketAddr>,
        dial: Option<DialTarget>,
    ) -> Self {
        Self {
            conn,
            server_id: info.server_id.clone(),
            info: Mutex::new(info),
            remote_addr,
            dial: Mutex::new(dial),
            retry: AtomicBool::new(false),
            remote_subs: Mutex::new(HashMap::new()),
        }
    }

    /// The peer's INFO.
    pub(crate) fn info(&self) -> Info {
        self.info.lock().clone()
    }

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

    /// Takes over the dial duty of a duplicate connection that lost to this one, and re-dials
    /// if this one drops too.
    pub(crate) fn adopt_dial(&self, target: Option<DialTarget>) {
        if let Some(target) = target {
            self.dial.lock().get_or_insert(target);
        }
        self.retry.store(true, Ordering::Relaxed);
    }

    /// Whether a loss of this route must be re-dialled (see [`Self::adopt_dial`]).
    pub(crate) fn retry(&self) -> bool {
        self.retry.load(Ordering::Relaxed)
    }

    fn peer(&self) -> Peer {
        let solicited = self.dial.lock().is_some();
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

    /// The route's figures (what `/routez` and `server.stats()` report).
    pub(crate) fn stats(&self) -> RouteStats {
        let conn = &self.conn;
        let (out_msgs, out_bytes) = conn.out_counts();
        let (in_msgs, in_bytes) = conn.in_counts();
        let (did_solicit, is_configured) = match &*self.dial.lock() {
            Some(target) => (true, target.explicit),
            None => (false, false),
        };
        RouteStats {
            rid: conn.cid,
            remote_id: self.server_id.clone(),
            remote_name: self.info.lock().server_name.clone(),
            did_solicit,
            is_configured,
            addr: self.remote_addr,
            start: conn.start,
            last_activity: conn.last_activity(),
            rtt: conn.rtt(),
            pending_bytes: conn.pending_bytes() as u64,
            in_msgs,
            in_bytes,
            out_msgs,
            out_bytes,
            subscriptions: self.remote_subs.lock().len(),
        }
    }

    /// The peer registers interest `key` (`account subject [queue]`) with `weight`: `None`
    /// if it is new (the caller inserts it), else the known subscription, its weight updated,
    /// and its old weight.
    pub(crate) fn update_remote(
        &self,
        key: &[u8],
        weight: u32,
    ) -> Option<(Arc<crate::subscription::Subscription>, u32)> {
        let subs = self.remote_subs.lock();
        let existing = subs.get(key)?;
        let old = existing.owned.sub.weight();
        existing.owned.sub.set_weight(weight);
        Some((existing.owned.sub.clone(), old))
    }

    /// Records a new interest of the peer.
    pub(crate) fn add_remote(&self, key: Bytes, remote: RemoteSub) {
        self.remote_subs.lock().insert(key, remote);
    }

    /// The peer withdrew interest `key`.
    pub(crate) fn remove_remote(&self, key: &[u8]) -> Option<RemoteSub> {
        self.remote_subs.lock().remove(key)
    }

    /// Takes all of the peer's interest (the route closed).
    pub(crate) fn take_remotes(&self) -> Vec<RemoteSub> {
        self.remote_subs.lock().drain().map(|(_, s)| s).collect()
    }

    /// The peer's interest: (`account subject [queue]`, subject, queue, messages delivered).
    pub(crate) fn remote_interest(&self) -> Vec<(String, String, Option<String>, u64)> {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.remote_subs
            .lock()
            .iter()
            .map(|(key, r)| {
                (
                    lossy(key),
                    lossy(r.owned.handle.subject()),
                    r.owned.handle.queue().map(lossy),
                    r.owned.sub.delivered(),
                )
            })
            .collect()
    }
}

#[derive(Default)]
struct State {
    /// Local subscriptions per (account, subject, queue).
    interest: HashMap<InterestKey, u32>,
    links: HashMap<String, Arc<RouteLink>>,
    /// Registration order of the links (connect_urls lists peers in this order).
    order: Vec<String>,
    /// Interest changes held back for routes still being sent their snapshot.
    syncing: HashMap<String, BytesMut>,
    /// Peers that announced lame duck: their client URLs are no longer advertised.
    lame_duck: HashSet<String>,
    /// Cluster addresses currently being dialled.
    dialing: HashSet<String>,
}

/// The cluster side of a running broker.
pub(crate) struct Routes {
    config: Cluster,
    /// The cluster name; may change once if ours is dynamic and a named peer shows up.
    name: Mutex<String>,
    dynamic: AtomicBool,
    /// The address the cluster listener is bound to.
    listen_addr: SocketAddr,
    /// What peers should dial to reach us (`host:port`).
    advertise: String,
    state: Mutex<State>,
}

/// What a new route must be sent: the interest at the moment it registered.
pub(crate) struct Snapshot(Vec<(InterestKey, u32)>);

impl Routes {
    pub(crate) fn new(config: Cluster, listen_addr: SocketAddr, advertise: String) -> Self {
        let (name, dynamic) = match &config.name {
            Some(n) => (n.clone(), false),
            None => (crate::identity::new_server_id()[34..].to_string(), true),
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

    pub(crate) fn config(&self) -> &Cluster {
        &self.config
    }

    pub(crate) fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub(crate) fn advertise(&self) -> &str {
        &self.advertise
    }

    pub(crate) fn name(&self) -> String {
        self.name.lock().clone()
    }

    pub(crate) fn is_dynamic(&self) -> bool {
        self.dynamic.load(Ordering::Relaxed)
    }

    /// Adopts a peer's cluster name (ours was dynamic); it stays dynamic if theirs is.
    pub(crate) fn adopt_name(&self, name: &str, dynamic: bool) {
        *self.name.lock() = name.to_string();
        if !dynamic {
            self.dynamic.store(false, Ordering::Relaxed);
        }
    }

    /// A local subscription on (subject, queue) in `account` appeared (`delta` = 1) or went
    /// (-1): tell every peer when the aggregate changes.
    pub(crate) fn interest_changed(
        &self,
        account: &str,
        subject: &[u8],
        queue: Option<&[u8]>,
        delta: i32,
    ) {
        let mut st = self.state.lock();
        let key = (
            Bytes::copy_from_slice(account.as_bytes()),
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
        let acc = account.as_bytes();
        let mut line = BytesMut::new();
        match queue {
            None if old == 0 && new > 0 => encode::write_rs_plus(&mut line, acc, subject, None),
            None if old > 0 && new == 0 => encode::write_rs_minus(&mut line, acc, subject, None),
            None => return,
            Some(q) if new > 0 => encode::write_rs_plus(&mut line, acc, subject, Some((q, new))),
            Some(q) => encode::write_rs_minus(&mut line, acc, subject, Some(q)),
        }
        let st = &mut *st;
        for (id, link) in &st.links {
            match st.syncing.get_mut(id) {
                Some(held) => held.extend_from_slice(&line),
                None => link.conn.send(|b| b.extend_from_slice(&line)),
            }
        }
    }

    /// Registers a route once the peer's INFO is known: returns the other routes and the
    /// interest to send it ([`Self::sync`]). Fails with the existing link when this peer already
    /// has one: the first registered connection wins, as in nats-server.
    pub(crate) fn register(
        &self,
        link: &Arc<RouteLink>,
    ) -> Result<(Vec<Arc<RouteLink>>, Snapshot), Arc<RouteLink>> {
        let mut st = self.state.lock();
        if let Some(existing) = st.links.get(&link.server_id) {
            return Err(existing.clone());
        }
        let snapshot = Snapshot(st.interest.iter().map(|(k, n)| (k.clone(), *n)).collect());
        let others = st.links.values().cloned().collect();
        st.links.insert(link.server_id.clone(), link.clone());
        st.order.push(link.server_id.clone());
        st.syncing.insert(link.server_id.clone(), BytesMut::new());
        Ok((others, snapshot))
    }

    /// Sends a new route the interest it registered with, in chunks of [`SYNC_CHUNK`] bytes,
    /// each after the route's writer drained below half its limit; then the changes held back
    /// meanwhile.
    pub(crate) async fn sync(&self, link: &Arc<RouteLink>, snapshot: Snapshot) {
        let conn = &link.conn;
        // A chunk fits in the half of max_pending a drained writer leaves free.
        let limit = SYNC_CHUNK.min(conn.max_pending() / 4).max(1);
        let mut chunk = BytesMut::with_capacity(limit + 512);
        let mut entries = snapshot.0.iter().peekable();
        while entries.peek().is_some() {
            while chunk.len() < limit {
                let Some(((account, subject, queue), n)) = entries.next() else {
                    break;
                };
                let queue = queue.as_ref().map(|q| (&q[..], *n));
                encode::write_rs_plus(&mut chunk, account, subject, queue);
            }
            conn.send(|b| b.extend_from_slice(&chunk));
            chunk.clear();
            if conn.is_closed() {
                break;
            }
            conn.wait_drained().await;
        }
        let held = self.state.lock().syncing.remove(&link.server_id);
        if let Some(held) = held.filter(|h| !h.is_empty()) {
            conn.send(|b| b.extend_from_slice(&held));
        }
    }

    /// Forgets a route (if `link` is the registered one for its peer).
    pub(crate) fn unregister(&self, link: &Arc<RouteLink>) -> bool {
        let mut st = self.state.lock();
        match st.links.get(&link.server_id) {
            Some(l) if Arc::ptr_eq(l, link) => {
                st.links.remove(&link.server_id);
                st.order.retain(|id| id != &link.server_id);
                st.lame_duck.remove(&link.server_id);
                st.syncing.remove(&link.server_id);
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

/// `host:port` from `nats-route://[user:pass@]host[:port]/` (or a bare `host:port`).
pub(crate) fn url_host_port(url: &str) -> Option<String> {
    parse_url(url, DEFAULT_ROUTE_PORT).map(|u| u.addr)
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
        assert_eq!(url_host_port("nats-route://h").as_deref(), Some("h:6222"));
        assert_eq!(url_host_port("nats://").as_deref(), None);
    }
}
