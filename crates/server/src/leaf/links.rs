//! The leafnode connections of a running broker, and the interest each one is told about.
//!
//! Where leaf semantics differ from routes (`cluster/routes.rs`):
//! - A route is told only this server's *local* interest (one hop). A leafnode that joined us
//!   (we are its hub) is told the bound account's *whole* interest: local clients, route peers'
//!   interest and other leafnodes' — it sees the hub's interest as subscriptions, and gets the
//!   whole set at connect. A hub we joined (we are its leaf, nats-server's "spoke") is told only
//!   the interest of our local clients and of leafnodes that joined us, never that of our routes
//!   (our cluster peers have their own leaf connections) nor of other hubs.
//! - Interest is counted per `subject [queue]` within the one account the connection is bound
//!   to (there is no account token on the wire): `LS+ subject` when the count leaves 0,
//!   `LS- subject` when it returns to 0; a queue group is re-announced with its new total
//!   weight (`LS+ subject queue weight`) on every change, as nats-server does.
//! - Loop detection: each account has a random `$LDS.<22 chars>` subject, announced to every
//!   leafnode connection. It is never in the sublist here; a peer's `$LDS.` subjects are (so
//!   they travel on), and seeing our own come back means a loop.
//! - Origin cluster: a connection remembers the cluster on its other side (the leaf's
//!   CONNECT `cluster`, the hub's INFO `cluster`); interest and messages that came from that
//!   cluster are never passed back into it through another of its connections. nats-server
//!   also carries the origin over routes (`LS+ <origin> ...`, `LMSG <origin> ...` when the
//!   peer says `lnoc`); Starling's routes do not (they never say `lnoc`, so peers send plain
//!   `RS+`/`RMSG`), so a leaf *cluster* attached to several nodes of a hub *cluster* may see
//!   a message twice.
//! - Queue groups: a leafnode's group is one member weighted by its member count (as a
//!   route's); an origin server picks a leafnode member only when no local or route member
//!   takes the message (`delivery.rs`), as nats-server does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use starling_proto::encode;

use super::config::Leafnodes;
use crate::account::Account;
use crate::conn::{Conn, ConnKind};
use crate::permissions::Compiled;
use crate::subscription::{OwnedSub, Subscription};

/// nats-server's loop-detection subject prefix.
pub(crate) const LDS_PREFIX: &[u8] = b"$LDS.";

/// One registered leafnode connection.
pub(crate) struct LeafLink {
    pub(crate) conn: Arc<Conn>,
    pub(crate) account: Arc<Account>,
    /// We dialled it: we are the leaf, the peer is our hub.
    pub(crate) solicited: bool,
    pub(crate) remote_id: String,
    pub(crate) remote_name: String,
    pub(crate) remote_addr: Option<SocketAddr>,
    /// The account the peer bound the connection to on its side, when it says (2.10+).
    pub(crate) remote_account: Option<String>,
    /// What we told the peer: `subject [queue]` → count (total weight for a queue group).
    smap: Mutex<Smap>,
    /// The peer's interest in our account's sublist, by `subject [queue]`.
    remote_subs: Mutex<HashMap<Bytes, OwnedSub>>,
    /// What the peer may send us ("publish") and be sent ("subscribe"): the remote's
    /// `deny_imports`/`deny_exports`, or the leafnode user's permissions on a hub.
    pub(crate) permissions: Option<Arc<Compiled>>,
}

/// The interest a link told its peer, and the changes held back while its snapshot is
/// still being sent.
#[derive(Default)]
struct Smap {
    counts: HashMap<Bytes, i64>,
    /// `Some` until the snapshot is out: changes are queued here, in order.
    held: Option<BytesMut>,
}

/// Bytes of the snapshot sent at once; the next chunk waits until the writer has drained
/// below half of `max_pending` (as for routes: a huge interest set must not make a new
/// link a slow consumer).
const SYNC_CHUNK: usize = 64 * 1024;

/// A leafnode's figures, as `/leafz` shows them.
#[derive(Clone, Debug)]
pub(crate) struct LeafStats {
    pub(crate) name: String,
    pub(crate) account: String,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) rtt: std::time::Duration,
    pub(crate) in_msgs: u64,
    pub(crate) out_msgs: u64,
    pub(crate) in_bytes: u64,
    pub(crate) out_bytes: u64,
    pub(crate) subscriptions: usize,
    pub(crate) subjects: Vec<String>,
    pub(crate) solicited: bool,
}

/// Who is on the other side of a leafnode connection.
pub(crate) struct LeafPeer {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) addr: Option<SocketAddr>,
    /// The account the peer bound the connection to on its side, when it says (2.10+).
    pub(crate) account: Option<String>,
}

impl LeafLink {
    pub(crate) fn new(
        conn: Arc<Conn>,
        account: Arc<Account>,
        solicited: bool,
        peer: LeafPeer,
        permissions: Option<Arc<Compiled>>,
    ) -> Self {
        Self {
            remote_account: peer.account,
            permissions,
            conn,
            account,
            solicited,
            remote_id: peer.id,
            remote_name: peer.name,
            remote_addr: peer.addr,
            smap: Mutex::new(Smap::default()),
            remote_subs: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a subscription's interest is announced on this link (besides the link's own).
    fn announces(&self, sub: &Subscription, subject: &[u8]) -> bool {
        if Arc::ptr_eq(&sub.conn, &self.conn) || sub.conn.is_local_only() {
            return false;
        }
        if self.conn.same_leaf_origin(&sub.conn) {
            return false; // Interest from the peer's own cluster, through another connection.
        }
        if subject.starts_with(LDS_PREFIX) {
            return true;
        }
        if self
            .permissions
            .as_ref()
            .is_some_and(|p| !p.may_publish(subject))
        {
            return false; // The peer may not send us these: no use asking for them.
        }
        if !self.solicited {
            return true; // A hub tells its leafs everything.
        }
        match sub.conn.kind {
            ConnKind::Client | ConnKind::InProcess | ConnKind::Internal => true,
            ConnKind::Leaf => !sub.conn.is_solicited_leaf(),
            _ => false,
        }
    }

    /// Applies a change of `delta` to `subject [queue]` and tells the peer when nats-server
    /// would: a plain subject when it appears or goes, a queue group on every change.
    fn update(&self, subject: &[u8], queue: Option<&[u8]>, delta: i64) {
        let key = key(subject, queue);
        let mut smap = self.smap.lock();
        let n = smap.counts.get(&key).copied().unwrap_or(0);
        if delta < 0 && n == 0 {
            return;
        }
        let new = n + delta;
        if new > 0 {
            smap.counts.insert(key, new);
        } else {
            smap.counts.remove(&key);
        }
        let tell = queue.is_some() || (n <= 0 && new > 0) || (n > 0 && new <= 0);
        if tell {
            // Sent (or held) under the lock: the peer sees changes to one key in order.
            match &mut smap.held {
                Some(held) => write_interest(held, subject, queue, new),
                None => self.conn.send(|b| write_interest(b, subject, queue, new)),
            }
        }
    }

    /// The peer announced `key` with `weight`: `None` if it is new (the caller inserts it),
    /// else the known subscription, its weight updated, and its old weight.
    pub(crate) fn update_remote(
        &self,
        key: &[u8],
        weight: u32,
    ) -> Option<(Arc<Subscription>, u32)> {
        let subs = self.remote_subs.lock();
        let existing = subs.get(key)?;
        let old = existing.sub.weight();
        existing.sub.set_weight(weight);
        Some((existing.sub.clone(), old))
    }

    pub(crate) fn add_remote(&self, key: Bytes, owned: OwnedSub) {
        self.remote_subs.lock().insert(key, owned);
    }

    pub(crate) fn remove_remote(&self, key: &[u8]) -> Option<OwnedSub> {
        self.remote_subs.lock().remove(key)
    }

    /// The peer's interest, taken (the connection closed).
    pub(crate) fn take_remotes(&self) -> Vec<OwnedSub> {
        self.remote_subs.lock().drain().map(|(_, s)| s).collect()
    }

    pub(crate) fn stats(&self) -> LeafStats {
        let (out_msgs, out_bytes) = self.conn.out_counts();
        let (in_msgs, in_bytes) = self.conn.in_counts();
        let remote = self.remote_subs.lock();
        let mut subjects: Vec<String> = remote
            .keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        subjects.sort();
        LeafStats {
            name: self.remote_name.clone(),
            account: self.account.name().to_string(),
            addr: self.remote_addr,
            rtt: self.conn.rtt(),
            in_msgs,
            out_msgs,
            in_bytes,
            out_bytes,
            subscriptions: remote.len(),
            subjects,
            solicited: self.solicited,
        }
    }
}

/// `LS+ subject [queue weight]` when `n > 0`, else `LS- subject [queue]`.
fn write_interest(b: &mut BytesMut, subject: &[u8], queue: Option<&[u8]>, n: i64) {
    if n > 0 {
        let weight = u32::try_from(n).unwrap_or(u32::MAX);
        encode::write_ls_plus(b, subject, queue.map(|q| (q, weight)));
    } else {
        encode::write_ls_minus(b, subject, queue);
    }
}

/// A cluster name as [`Conn::set_leaf_origin`] keeps it: FNV-1a, never 0.
pub(crate) fn origin_hash(cluster: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in cluster.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// `subject [queue]`, as nats-server keys leaf interest (and as `LS-` names it).
pub(crate) fn key(subject: &[u8], queue: Option<&[u8]>) -> Bytes {
    let mut k = BytesMut::with_capacity(subject.len() + queue.map_or(0, |q| q.len() + 1));
    k.put_slice(subject);
    if let Some(q) = queue {
        k.put_u8(b' ');
        k.put_slice(q);
    }
    k.freeze()
}

/// A link could not be registered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RegisterError {
    /// A connection to the same hub with the same account exists already.
    Duplicate,
}

/// The leafnode side of a running broker.
pub(crate) struct Leafs {
    config: Leafnodes,
    /// Where the leafnode listener is bound, once it is.
    listen_addr: OnceLock<SocketAddr>,
    /// What leafnodes should dial to reach us (`host:port`), once the listener is bound.
    advertise: OnceLock<String>,
    /// Held (shared) across a sublist change and its announcement, and (exclusive) while a
    /// new link takes its snapshot of the sublist: no change is counted twice or missed.
    order: RwLock<()>,
    links: Mutex<Vec<Arc<LeafLink>>>,
    /// How many links there are: the one load an account pays per subscription without any.
    count: AtomicUsize,
    /// Each account's loop-detection subject.
    lds: Mutex<HashMap<String, Bytes>>,
    /// The leafnode listener's TLS, if it has any (set at start).
    #[cfg(feature = "tls")]
    tls: OnceLock<Arc<crate::transport::Tls>>,
}

impl Leafs {
    pub(crate) fn new(config: Leafnodes) -> Self {
        Self {
            config,
            listen_addr: OnceLock::new(),
            advertise: OnceLock::new(),
            order: RwLock::new(()),
            links: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            lds: Mutex::new(HashMap::new()),
            #[cfg(feature = "tls")]
            tls: OnceLock::new(),
        }
    }

    #[cfg(feature = "tls")]
    pub(crate) fn set_tls(&self, tls: Arc<crate::transport::Tls>) {
        let _ = self.tls.set(tls);
    }

    /// The leafnode listener's TLS.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(&self) -> Option<&Arc<crate::transport::Tls>> {
        self.tls.get()
    }

    pub(crate) fn config(&self) -> &Leafnodes {
        &self.config
    }

    pub(crate) fn set_listen_addr(&self, addr: SocketAddr, advertise: String) {
        let _ = self.listen_addr.set(addr);
        let _ = self.advertise.set(advertise);
    }

    pub(crate) fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen_addr.get().copied()
    }

    /// The URLs leafnodes are told (`leafnode_urls`).
    pub(crate) fn leafnode_urls(&self) -> Vec<String> {
        match self.advertise.get() {
            Some(a) if !self.config.no_advertise => vec![a.clone()],
            _ => Vec::new(),
        }
    }

    /// Held across a sublist change and [`Self::interest_changed`] (see `order`).
    #[inline]
    pub(crate) fn hold(&self) -> RwLockReadGuard<'_, ()> {
        self.order.read_recursive()
    }

    /// The loop-detection subject of `account` (made on first use).
    pub(crate) fn lds(&self, account: &str) -> Bytes {
        self.lds
            .lock()
            .entry(account.to_string())
            .or_insert_with(|| {
                const ALPHABET: &[u8] =
                    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
                let mut s = LDS_PREFIX.to_vec();
                s.extend((0..22).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())]));
                Bytes::from(s)
            })
            .clone()
    }

    /// A subscription on (subject, queue) in `account` appeared (`delta` > 0, its weight) or
    /// went (< 0): tell every leafnode of the account that announces it.
    pub(crate) fn interest_changed(
        &self,
        account: &Account,
        sub: &Subscription,
        subject: &[u8],
        queue: Option<&[u8]>,
        delta: i64,
    ) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let links: Vec<Arc<LeafLink>> = self
            .links
            .lock()
            .iter()
            .filter(|l| std::ptr::eq(Arc::as_ptr(&l.account), account))
            .cloned()
            .collect();
        for link in links {
            if link.announces(sub, subject) {
                link.update(subject, queue, delta);
            }
        }
    }

    /// Registers a link and sends the peer `first` (the hub's INFO answering CONNECT, if any);
    /// returns the `LS+` lines of every interest of its account it should know about, and of
    /// our loop-detection subject, for [`Self::sync`]. Atomic with respect to sublist changes
    /// (see `order`); changes from now on are held back until the snapshot is out.
    pub(crate) fn register(
        &self,
        link: &Arc<LeafLink>,
        first: &[u8],
    ) -> Result<Bytes, RegisterError> {
        let _exclusive = self.order.write();
        let mut links = self.links.lock();
        if link.solicited
            && links.iter().any(|l| {
                l.solicited
                    && l.remote_id == link.remote_id
                    && Arc::ptr_eq(&l.account, &link.account)
                    && !l.conn.is_closed()
            })
        {
            return Err(RegisterError::Duplicate);
        }
        // A leaf that reconnects while its old connection is still open here (it has not
        // noticed the old one die) replaces it, as in nats-server (which tells the old one).
        if !link.solicited && link.remote_account.is_some() {
            for old in links.iter().filter(|l| {
                !l.solicited
                    && l.remote_name == link.remote_name
                    && l.remote_account == link.remote_account
                    && l.conn.leaf_origin() == link.conn.leaf_origin()
                    && Arc::ptr_eq(&l.account, &link.account)
            }) {
                old.conn
                    .send(|b| encode::write_err(b, "Duplicate Remote LeafNode Connection"));
                old.conn.close(crate::conn::ClosedReason::DuplicateLeafnode);
            }
        }
        let mut counts: HashMap<Bytes, i64> = HashMap::new();
        link.account.sublist().for_each(|subject, queue, sub| {
            if link.announces(sub, subject) {
                let w = if queue.is_some() { sub.weight() } else { 1 };
                *counts.entry(key(subject, queue)).or_default() += i64::from(w);
            }
        });
        let lds = self.lds(link.account.name());
        *counts.entry(lds).or_default() += 1;
        let mut out = BytesMut::with_capacity(counts.len() * 32);
        for (k, n) in &counts {
            let (subject, queue) = match k.iter().position(|&c| c == b' ') {
                Some(i) => (&k[..i], Some(&k[i + 1..])),
                None => (&k[..], None),
            };
            write_interest(&mut out, subject, queue, *n);
        }
        *link.smap.lock() = Smap {
            counts,
            held: Some(BytesMut::new()),
        };
        if !first.is_empty() {
            link.conn.send(|b| b.extend_from_slice(first));
        }
        links.push(link.clone());
        self.count.store(links.len(), Ordering::Release);
        Ok(out.freeze())
    }

    /// Sends a new link the snapshot [`Self::register`] returned, in chunks paced by its
    /// writer, then the changes held back meanwhile.
    pub(crate) async fn sync(link: Arc<LeafLink>, snapshot: Bytes) {
        let conn = &link.conn;
        let limit = SYNC_CHUNK.min(conn.max_pending() / 4).max(1);
        let mut rest = &snapshot[..];
        while !rest.is_empty() && !conn.is_closed() {
            // Cut after a line end.
            let mut cut = rest.len().min(limit);
            if cut < rest.len() {
                cut = rest[..cut]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1);
            }
            let (chunk, tail) = rest.split_at(cut);
            conn.send(|b| b.extend_from_slice(chunk));
            rest = tail;
            if !rest.is_empty() {
                conn.wait_drained().await;
            }
        }
        let mut smap = link.smap.lock();
        if let Some(held) = smap.held.take().filter(|h| !h.is_empty()) {
            conn.send(|b| b.extend_from_slice(&held));
        }
    }

    pub(crate) fn unregister(&self, link: &Arc<LeafLink>) {
        let mut links = self.links.lock();
        links.retain(|l| !Arc::ptr_eq(l, link));
        self.count.store(links.len(), Ordering::Release);
    }

    /// The cluster's leafnode URLs changed (a peer came or went): leafnodes that joined us
    /// get an INFO with the new list, as nats-server sends it.
    pub(crate) fn urls_changed(&self, broker: &crate::broker::Broker) {
        for link in self.links().iter().filter(|l| !l.solicited) {
            let mut info = super::proto::hub_info(broker, self, &link.conn, "");
            info.nonce = None;
            info.info_on_connect = false;
            link.conn.send(|b| encode::write_info(b, &info));
        }
    }

    pub(crate) fn links(&self) -> Vec<Arc<LeafLink>> {
        self.links.lock().clone()
    }
}
