//! Server-wide counters (what `/varz` and `server.stats()` report).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated on the hot path with relaxed atomics (once per read batch, not per message).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) in_msgs: AtomicU64,
    pub(crate) in_bytes: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) total_connections: AtomicU64,
}

impl Counters {
    pub(crate) fn add_in(&self, msgs: u64, bytes: u64) {
        self.in_msgs.fetch_add(msgs, Ordering::Relaxed);
        self.in_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A snapshot of the broker's figures, for embedders who export metrics their own way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Open client connections (socket and in-process).
    pub connections: usize,
    /// Client connections accepted since start.
    pub total_connections: u64,
    /// Subscriptions in the sublist.
    pub subscriptions: usize,
    /// Messages received from clients.
    pub in_msgs: u64,
    /// Payload bytes received from clients.
    pub in_bytes: u64,
    /// Messages delivered to clients (open connections plus those closed since start).
    pub out_msgs: u64,
    /// Bytes delivered to clients, protocol lines included.
    pub out_bytes: u64,
    /// Connections cut off as slow consumers.
    pub slow_consumers: u64,
}
