//! Server-wide counters (what `/varz` and `server.stats()` report).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use starling_sublist::SublistStats;

/// Server-wide counters, updated with relaxed atomics (once per read batch, not per message).
/// What is sent is counted by each connection's queue instead (and kept by the registry when
/// the connection goes).
#[derive(Default)]
pub(crate) struct Counters {
    in_msgs: AtomicU64,
    in_bytes: AtomicU64,
    slow_consumers: AtomicU64,
}

impl Counters {
    pub(crate) fn add_in(&self, msgs: u64, bytes: u64) {
        self.in_msgs.fetch_add(msgs, Ordering::Relaxed);
        self.in_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }

    /// (in_msgs, in_bytes, slow_consumers).
    pub(crate) fn get(&self) -> (u64, u64, u64) {
        (
            self.in_msgs.load(Ordering::Relaxed),
            self.in_bytes.load(Ordering::Relaxed),
            self.slow_consumers.load(Ordering::Relaxed),
        )
    }
}

/// A snapshot of the broker's figures, for embedders who export metrics their own way. The
/// same figures `/varz` and `/metrics` report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Open client connections (socket and in-process).
    pub connections: usize,
    /// Client connections accepted since start.
    pub total_connections: u64,
    /// Subscriptions in the sublist.
    pub subscriptions: usize,
    /// Messages received from clients and routes (as nats-server counts them: a message
    /// that crossed a route is counted on both nodes).
    pub in_msgs: u64,
    /// Payload bytes received from clients and routes (headers included).
    pub in_bytes: u64,
    /// Messages delivered to clients and sent to routes (open connections plus those closed
    /// since start).
    pub out_msgs: u64,
    /// Payload bytes delivered to clients and sent to routes (headers included; for
    /// in-process subscribers the subject too).
    pub out_bytes: u64,
    /// Connections cut off as slow consumers.
    pub slow_consumers: u64,
    /// When the server started.
    pub start: SystemTime,
    /// How long it has been running.
    pub uptime: Duration,
    /// Client connections closed since start.
    pub closed_connections: u64,
    /// Outbound bytes queued and not yet written, over all open connections and routes.
    pub pending_bytes: u64,
    /// Open cluster routes.
    pub routes: usize,
    /// Figures per open route.
    pub route_stats: Vec<RouteStats>,
    /// Open leafnode connections.
    pub leafnodes: usize,
    /// The subscription matcher's figures (`/subsz`).
    pub sublist: SublistFigures,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            connections: 0,
            total_connections: 0,
            subscriptions: 0,
            in_msgs: 0,
            in_bytes: 0,
            out_msgs: 0,
            out_bytes: 0,
            slow_consumers: 0,
            start: SystemTime::UNIX_EPOCH,
            uptime: Duration::ZERO,
            closed_connections: 0,
            pending_bytes: 0,
            routes: 0,
            route_stats: Vec::new(),
            leafnodes: 0,
            sublist: SublistFigures::default(),
        }
    }
}

/// One cluster route's figures (what `/routez` reports per route).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteStats {
    /// The route's connection id (`rid`).
    pub rid: u64,
    /// The peer's server id.
    pub remote_id: String,
    /// The peer's server name.
    pub remote_name: String,
    /// Whether this server dialled the route (rather than accepted it).
    pub did_solicit: bool,
    /// Whether the peer is one this server was configured with (a seed or the embedder's
    /// discovery source) rather than learned by gossip.
    pub is_configured: bool,
    /// The remote end of the route's TCP connection (for a route this server accepted, the
    /// peer's ephemeral port, as nats-server reports it).
    pub addr: Option<SocketAddr>,
    /// When the route connected.
    pub start: SystemTime,
    /// When the peer last sent something.
    pub last_activity: SystemTime,
    /// The last measured round-trip time (zero until the first PING is answered, about a
    /// second after the route connects).
    pub rtt: Duration,
    /// Outbound bytes queued and not yet written.
    pub pending_bytes: u64,
    /// Messages received over the route.
    pub in_msgs: u64,
    /// Payload bytes received over the route.
    pub in_bytes: u64,
    /// Messages sent over the route.
    pub out_msgs: u64,
    /// Payload bytes sent over the route.
    pub out_bytes: u64,
    /// Subscriptions the peer has registered with this server (its interest in the served
    /// account; interest in other accounts, such as nats-server's `$SYS`, is ignored).
    pub subscriptions: usize,
}

impl Default for RouteStats {
    fn default() -> Self {
        Self {
            rid: 0,
            remote_id: String::new(),
            remote_name: String::new(),
            did_solicit: false,
            is_configured: false,
            addr: None,
            start: SystemTime::UNIX_EPOCH,
            last_activity: SystemTime::UNIX_EPOCH,
            rtt: Duration::ZERO,
            pending_bytes: 0,
            in_msgs: 0,
            in_bytes: 0,
            out_msgs: 0,
            out_bytes: 0,
            subscriptions: 0,
        }
    }
}

/// The subscription matcher's figures, with nats-server's `/subsz` meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SublistFigures {
    /// Subjects in the match cache (`num_cache`).
    pub num_cache: u64,
    /// Subscriptions inserted since start (`num_inserts`).
    pub num_inserts: u64,
    /// Subscriptions removed since start (`num_removes`).
    pub num_removes: u64,
    /// Subject lookups since start (`num_matches`).
    pub num_matches: u64,
    /// Lookups answered from the cache.
    pub cache_hits: u64,
    /// Largest fan-out among cached results (`max_fanout`).
    pub max_fanout: u64,
}

impl SublistFigures {
    /// Share of lookups answered from the cache, 0.0 to 1.0 (`cache_hit_rate`).
    pub fn cache_hit_rate(&self) -> f64 {
        if self.num_matches == 0 {
            0.0
        } else {
            self.cache_hits as f64 / self.num_matches as f64
        }
    }

    /// One sublist's figures.
    pub(crate) fn from_sublist(s: &SublistStats) -> Self {
        Self {
            num_cache: u64::from(s.num_cache),
            num_inserts: s.num_inserts,
            num_removes: s.num_removes,
            num_matches: s.num_matches,
            cache_hits: s.cache_hits(),
            max_fanout: u64::from(s.max_fanout),
        }
    }
}
