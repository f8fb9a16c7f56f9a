//! Connections that have closed, kept with their final figures and close reason for
//! `/connz?state=closed` (nats-server's `max_closed_clients` ring, 10000 by default).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::client::{ClientShared, ClosedReason, ConnKind, ConnMeta, OwnedSub};

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
pub(crate) struct ClosedConns {
    ring: Mutex<VecDeque<Arc<ClosedConn>>>,
    cap: usize,
    /// Connections closed since start (also those that fell out of the ring).
    total: AtomicU64,
}

impl ClosedConns {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::new()),
            cap,
            total: AtomicU64::new(0),
        }
    }

    /// Records a connection that just closed; `subs` are the subscriptions it held.
    pub(crate) fn push(&self, conn: &ClientShared, subs: &[OwnedSub], reason: ClosedReason) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if self.cap == 0 {
            return;
        }
        let (out_msgs, out_bytes) = conn.out_counts();
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
            meta: conn.meta.lock().clone(),
            start: conn.start,
            last_activity: conn.last_activity(),
            stop: SystemTime::now(),
            reason,
            rtt: conn.rtt(),
            pending_bytes: conn.out.pending(),
            in_msgs: conn.in_msgs.load(Ordering::Relaxed),
            in_bytes: conn.in_bytes.load(Ordering::Relaxed),
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
    #[cfg_attr(not(feature = "monitor"), allow(dead_code))]
    pub(crate) fn snapshot(&self) -> Vec<Arc<ClosedConn>> {
        self.ring.lock().iter().cloned().collect()
    }

    /// Connections closed since start.
    pub(crate) fn total(&self) -> u64 {
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
