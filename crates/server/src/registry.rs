//! The connection registry: open client connections by id, and those that have closed, kept
//! with their final figures and close reason for `/connz?state=closed` (nats-server's
//! `max_closed_clients` ring, 10000 by default).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::conn::{ClosedReason, Conn, ConnKind, ConnMeta};
use crate::subscription::OwnedSub;

/// Client connections (socket and in-process), open and recently closed. Routes are the
/// cluster's (`cluster::Routes`); internal connections are nobody's.
pub(crate) struct Registry {
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_cid: AtomicU64,
    /// Client connections accepted since start.
    total: AtomicU64,
    /// Messages and bytes delivered to connections (of any kind) that have since closed.
    retired_out: Mutex<(u64, u64)>,
    closed: ClosedConns,
}

impl Registry {
    pub(crate) fn new(max_closed: usize) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            next_cid: AtomicU64::new(1),
            total: AtomicU64::new(0),
            retired_out: Mutex::new((0, 0)),
            closed: ClosedConns::new(max_closed),
        }
    }

    /// A new connection id (clients and routes share the sequence, as in nats-server).
    pub(crate) fn next_cid(&self) -> u64 {
        self.next_cid.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a client connection.
    pub(crate) fn insert(&self, conn: &Arc<Conn>) {
        self.open.lock().insert(conn.cid, conn.clone());
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a closed client connection, keeping its last state in the closed ring.
    pub(crate) fn remove(&self, conn: &Conn, subs: &[OwnedSub], reason: ClosedReason) {
        self.open.lock().remove(&conn.cid);
        self.closed.push(conn, subs, reason);
    }

    /// Keeps what a connection that is going away was sent in the server-wide totals.
    pub(crate) fn retire_out_counts(&self, conn: &Conn) {
        let (msgs, bytes) = conn.out_counts();
        let mut c = self.retired_out.lock();
        c.0 += msgs;
        c.1 += bytes;
    }

    /// Open client connections.
    pub(crate) fn len(&self) -> usize {
        self.open.lock().len()
    }

    /// Client connections accepted since start.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Client connections closed since start.
    pub(crate) fn total_closed(&self) -> u64 {
        self.closed.total()
    }

    /// What connections that have closed were sent (messages, bytes).
    pub(crate) fn retired_out(&self) -> (u64, u64) {
        *self.retired_out.lock()
    }

    /// The open client connections.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Conn>> {
        self.open.lock().values().cloned().collect()
    }

    /// The closed connections kept, oldest first.
    pub(crate) fn closed(&self) -> Vec<Arc<ClosedConn>> {
        self.closed.snapshot()
    }
}

/// One subscription as it was when its connection closed.
#[cfg_attr(not(feature = "monitor"), allow(dead_code))]
pub(crate) struct ClosedSub {
    pub(crate) subject: String,
    pub(crate) queue: Option<String>,
    pub(crate) sid: String,
    pub(crate) msgs: u64,
    pub(crate) max: u64,
}

/// A closed connection's last state.
#[cfg_attr(not(feature = "monitor"), allow(dead_code))]
pub(crate) struct ClosedConn {
    pub(crate) cid: u64,
    pub(crate) kind: ConnKind,
    /// The account it was bound to (empty if it closed before CONNECT).
    pub(crate) account: String,
    pub(crate) meta: ConnMeta,
    pub(crate) start: SystemTime,
    pub(crate) last_activity: SystemTime,
    pub(crate) stop: SystemTime,
    pub(crate) reason: ClosedReason,
    pub(crate) rtt: Duration,
    pub(crate) pending_bytes: usize,
    pub(crate) in_msgs: u64,
    pub(crate) in_bytes: u64,
    pub(crate) out_msgs: u64,
    pub(crate) out_bytes: u64,
    pub(crate) subs: Vec<ClosedSub>,
}

/// The bounded ring of closed connections, oldest first.
struct ClosedConns {
    ring: Mutex<VecDeque<Arc<ClosedConn>>>,
    cap: usize,
    /// Connections closed since start (also those that fell out of the ring).
    total: AtomicU64,
}

impl ClosedConns {
    fn new(cap: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::new()),
            cap,
            total: AtomicU64::new(0),
        }
    }

    /// Records a connection that just closed; `subs` are the subscriptions it held.
    fn push(&self, conn: &Conn, subs: &[OwnedSub], reason: ClosedReason) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if self.cap == 0 {
            return;
        }
        let (out_msgs, out_bytes) = conn.out_counts();
        let (in_msgs, in_bytes) = conn.in_counts();
        let mut subs: Vec<ClosedSub> = subs
            .iter()
            .map(|o| ClosedSub {
                subject: String::from_utf8_lossy(o.handle.subject()).into_owned(),
                queue: o
                    .handle
                    .queue()
                    .map(|q| String::from_utf8_lossy(q).into_owned()),
                sid: String::from_utf8_lossy(&o.sub.sid).into_owned(),
                msgs: o.sub.delivered.load(Ordering::Relaxed),
                max: o.sub.max.load(Ordering::Relaxed),
            })
            .collect();
        subs.sort_by(|a, b| sid_order(&a.sid, &b.sid));
        let record = Arc::new(ClosedConn {
            cid: conn.cid,
            kind: conn.kind,
            account: conn
                .account()
                .map(|a| a.name().to_string())
                .unwrap_or_default(),
            meta: conn.meta.lock().clone(),
            start: conn.start,
            last_activity: conn.last_activity(),
            stop: SystemTime::now(),
            reason,
            rtt: conn.rtt(),
            pending_bytes: conn.pending_bytes(),
            in_msgs,
            in_bytes,
            out_msgs,
            out_bytes,
            subs,
        });
        let mut ring = self.ring.lock();
        if ring.len() == self.cap {
            ring.pop_front();
        }
        ring.push_back(record);
    }

    /// The connections kept, oldest first.
    fn snapshot(&self) -> Vec<Arc<ClosedConn>> {
        self.ring.lock().iter().cloned().collect()
    }

    /// Connections closed since start.
    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Orders subscription ids numerically when both are numbers (as clients number them), else
/// lexically.
pub(crate) fn sid_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}
