//! Client connections: the state every connection shares with the rest of the broker, the
//! protocol logic of a socket client (`conn`), its writer task (`writer`), and its outbound
//! queue (`outbound`).

mod conn;
pub(crate) mod outbound;
mod reason;
mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub(crate) use conn::serve;
pub use reason::ClosedReason;
pub(crate) use writer::write_loop;

pub(crate) use crate::subscription::OwnedSub;
use crate::subscription::SubsBySid;
use outbound::Outbound;

/// What kind of connection a client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnKind {
    /// A NATS client on a socket (or any byte stream handed to the server).
    Client,
    /// An in-process client made by `server.client()`.
    InProcess,
    /// A route to another server of the cluster.
    Route,
}

/// Descriptive state of a connection, for monitoring.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnMeta {
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) name: Option<String>,
    pub(crate) lang: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) user: Option<String>,
}

/// The part of a connection that other tasks see: delivery appends to `out`, monitoring reads
/// the counters, shutdown closes it.
pub(crate) struct ClientShared {
    pub(crate) cid: u64,
    pub(crate) kind: ConnKind,
    pub(crate) out: Outbound,
    /// CONNECT's `echo`: deliver this connection's own messages back to it.
    pub(crate) echo: AtomicBool,
    /// CONNECT's `headers`: HMSG may be sent (otherwise headers are stripped).
    pub(crate) headers: AtomicBool,
    /// CONNECT's `protocol`: 1 = the client accepts asynchronous INFO updates.
    pub(crate) protocol: AtomicU8,
    /// The client answered its handshake PING: asynchronous INFOs may be pushed to it.
    pub(crate) info_ready: AtomicBool,
    /// The version of the cluster's client URLs this client was last told about.
    pub(crate) urls_seen: AtomicU64,
    /// Cancelled when the connection starts closing (output is still flushed).
    pub(crate) closing: CancellationToken,
    /// Cancelled when pending output must be dropped at once.
    pub(crate) kill: CancellationToken,
    reason: Mutex<Option<ClosedReason>>,
    /// Subscriptions by sid.
    pub(crate) subs: Mutex<SubsBySid>,
    pub(crate) meta: Mutex<ConnMeta>,
    pub(crate) start: SystemTime,
    /// When the client last sent something, in nanoseconds since the Unix epoch (monitoring).
    last_activity: AtomicU64,
    /// The last measured round-trip time in nanoseconds; 0 = not measured (monitoring).
    rtt: AtomicU64,
    pub(crate) in_msgs: AtomicU64,
    pub(crate) in_bytes: AtomicU64,
    /// Bytes queued to in-process subscribers and not yet taken (their slow-consumer limit).
    pub(crate) local_pending: AtomicUsize,
    /// Messages and bytes delivered to in-process subscriptions (socket output is counted by
    /// the outbound queue).
    pub(crate) local_out_msgs: AtomicU64,
    pub(crate) local_out_bytes: AtomicU64,
}

impl ClientShared {
    /// `closing` and `kill` are children of the server's tokens, so server shutdown reaches
    /// every connection, registered or not.
    pub(crate) fn new(
        cid: u64,
        kind: ConnKind,
        max_pending: usize,
        parent: &CancellationToken,
        kill_parent: &CancellationToken,
    ) -> Self {
        let start = SystemTime::now();
        Self {
            cid,
            kind,
            out: Outbound::new(max_pending),
            echo: AtomicBool::new(true),
            headers: AtomicBool::new(false),
            protocol: AtomicU8::new(0),
            info_ready: AtomicBool::new(false),
            urls_seen: AtomicU64::new(0),
            closing: parent.child_token(),
            kill: kill_parent.child_token(),
            reason: Mutex::new(None),
            subs: Mutex::new(SubsBySid::default()),
            meta: Mutex::new(ConnMeta::default()),
            start,
            last_activity: AtomicU64::new(unix_nanos(start)),
            rtt: AtomicU64::new(0),
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            local_pending: AtomicUsize::new(0),
            local_out_msgs: AtomicU64::new(0),
            local_out_bytes: AtomicU64::new(0),
        }
    }

    /// Starts closing the connection. The first reason given wins. Returns whether this call
    /// was the one that closed it.
    pub(crate) fn close(&self, reason: ClosedReason) -> bool {
        {
            let mut r = self.reason.lock();
            if r.is_some() {
                return false;
            }
            *r = Some(reason);
        }
        self.out.close();
        if !reason.flushes() {
            self.kill.cancel();
        }
        self.closing.cancel();
        true
    }

    /// Why it closed, once it has.
    pub(crate) fn closed_reason(&self) -> Option<ClosedReason> {
        *self.reason.lock()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Messages and bytes delivered to this connection.
    pub(crate) fn out_counts(&self) -> (u64, u64) {
        let (m, b) = self.out.out_counts();
        (
            m + self.local_out_msgs.load(Ordering::Relaxed),
            b + self.local_out_bytes.load(Ordering::Relaxed),
        )
    }

    /// Counts the messages (and their payload bytes) one read batch brought in, on this
    /// connection and server-wide: once per batch, not per message.
    pub(crate) fn count_in(&self, shared: &crate::server::Shared, msgs: u64, bytes: u64) {
        if msgs > 0 {
            self.in_msgs.fetch_add(msgs, Ordering::Relaxed);
            self.in_bytes.fetch_add(bytes, Ordering::Relaxed);
            shared.stats.add_in(msgs, bytes);
        }
    }

    /// Notes that the client just sent something (once per read, not per message).
    pub(crate) fn touch(&self) {
        self.last_activity
            .store(unix_nanos(SystemTime::now()), Ordering::Relaxed);
    }

    /// When the client last sent something.
    pub(crate) fn last_activity(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.last_activity.load(Ordering::Relaxed))
    }

    /// Records a round-trip time measurement.
    pub(crate) fn set_rtt(&self, rtt: Duration) {
        let nanos = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.rtt.store(nanos, Ordering::Relaxed);
    }

    /// The last measured round-trip time (zero if never measured).
    pub(crate) fn rtt(&self) -> Duration {
        Duration::from_nanos(self.rtt.load(Ordering::Relaxed))
    }

    pub(crate) fn echo(&self) -> bool {
        self.echo.load(Ordering::Relaxed)
    }

    pub(crate) fn wants_headers(&self) -> bool {
        self.headers.load(Ordering::Relaxed)
    }
}

/// Nanoseconds since the Unix epoch (0 for times before it).
fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
