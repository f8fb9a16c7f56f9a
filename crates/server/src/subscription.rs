//! One subscription: what the sublist stores and delivery reads.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::client::ClientShared;
use crate::message::Message;

/// A subscription of a local client (socket or in-process).
pub(crate) struct Subscription {
    /// The connection that owns it.
    pub(crate) conn: Arc<ClientShared>,
    /// The client's subscription id, echoed verbatim in MSG.
    pub(crate) sid: Bytes,
    pub(crate) subject: Bytes,
    #[allow(dead_code)] // read by monitoring (/subsz) and routes
    pub(crate) queue: Option<Bytes>,
    /// Messages delivered so far.
    pub(crate) delivered: AtomicU64,
    /// Auto-unsubscribe after this many messages; 0 = never.
    pub(crate) max: AtomicU64,
    /// In-process subscriptions get messages through a channel instead of the wire; `None`
    /// marks the end of the subscription.
    pub(crate) local: Option<mpsc::UnboundedSender<Option<Message>>>,
    /// Set once it has been removed; delivery skips it from then on.
    pub(crate) removed: AtomicBool,
    /// For a peer's queue subscription: how many members the peer has (queue picks are
    /// weighted by it). 1 for local subscriptions.
    pub(crate) weight: AtomicU32,
}

impl Subscription {
    pub(crate) fn new(
        conn: Arc<ClientShared>,
        sid: Bytes,
        subject: Bytes,
        queue: Option<Bytes>,
        local: Option<mpsc::UnboundedSender<Option<Message>>>,
    ) -> Self {
        Self {
            conn,
            sid,
            subject,
            queue,
            delivered: AtomicU64::new(0),
            max: AtomicU64::new(0),
            local,
            removed: AtomicBool::new(false),
            weight: AtomicU32::new(1),
        }
    }

    /// Claims one delivery. `None` if the subscription is gone or its max is used up;
    /// `Some(true)` if this delivery is the last one its max allows.
    #[inline]
    pub(crate) fn claim(&self) -> Option<bool> {
        if self.removed.load(Ordering::Relaxed) {
            return None;
        }
        let max = self.max.load(Ordering::Relaxed);
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if max == 0 {
            Some(false)
        } else if n > max {
            None
        } else {
            Some(n == max)
        }
    }
}

impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
