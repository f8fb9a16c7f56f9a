//! What every kind of connection shares (clients, in-process clients, routes, leafnodes): the state other
//! tasks see ([`Conn`]), its outbound queue and writer task, and why it closed.
//!
//! - `outbound`: the queue producers append to and the writer drains.
//! - `writer`: the task that writes the queue to the socket.
//! - `reason`: [`ClosedReason`], worded as nats-server words it.
//!
//! Every append to a connection's queue goes through [`Conn`]'s `push_*` methods, so every
//! append has one outcome path: an append that would take the connection past its
//! `max_pending` closes it as a slow consumer, whatever was appended (a message, a PONG, an
//! INFO, a route's `RS+`). The broker counts and reports slow consumers when it retires the
//! connection (`Broker::retire`), the one place every closed connection passes.

pub(crate) mod outbound;
pub(crate) mod reader;
mod reason;
mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub use reason::ClosedReason;
pub(crate) use writer::write_loop;

use crate::account::Account;
use crate::lifecycle::Lifecycle;
use crate::permissions::ConnPermissions;
use crate::subscription::SubsBySid;
use outbound::{Appended, Outbound};

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
    /// A leafnode connection: to a hub this server joined, or from a leaf that joined it.
    Leaf,
    /// The server's own subscriptions (service imports, the system account's services): never
    /// listed as a connection.
    Internal,
}

/// Descriptive state of a connection, for monitoring.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnMeta {
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) name: Option<String>,
    pub(crate) lang: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) user: Option<String>,
    /// What a socket client presented at CONNECT, for [`crate::Server::recheck`].
    pub(crate) presented: Option<Arc<crate::auth::Presented>>,
    /// The TLS version and suite, for a client that connected over TLS.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::transport::tls::TlsState>,
    /// A client that came over WebSocket (`/connz` says `websocket`).
    pub(crate) websocket: bool,
}

/// The part of a connection that other tasks see: delivery appends to its queue, monitoring
/// reads the counters, shutdown closes it.
pub(crate) struct Conn {
    pub(crate) cid: u64,
    pub(crate) kind: ConnKind,
    out: Outbound,
    /// The account it is bound to, once known (at CONNECT for socket clients). Its reader keeps
    /// its own `Arc<Account>` for the hot path; this one is for everyone else.
    account: OnceLock<Arc<Account>>,
    /// The user's permissions, for connections that have any: what delivery must check
    /// (deny entries a wildcard subscription overlaps, reply subjects it may answer).
    /// Swapped whole when the user's permissions change at runtime.
    permissions: arc_swap::ArcSwapOption<ConnPermissions>,
    /// Whether `permissions` is set: the one load delivery pays for connections without.
    has_permissions: AtomicBool,
    /// Whether deliveries here must be checked against the permissions (see
    /// [`ConnPermissions::checks_deliveries`]): the one load delivery pays when they need not.
    checks_deliveries: AtomicBool,
    /// Bumped on every swap: the read loop reloads its own copy when it moves.
    permissions_generation: AtomicU64,
    /// CONNECT's `echo`: deliver this connection's own messages back to it.
    echo: AtomicBool,
    /// CONNECT's `headers`: HMSG may be sent (otherwise headers are stripped).
    headers: AtomicBool,
    /// Its subscriptions stay on this server: cluster peers never hear of them.
    local_only: AtomicBool,
    /// A leafnode connection this server dialled (it is the leaf, the peer its hub).
    solicited_leaf: AtomicBool,
    /// A leafnode connection's remote cluster, as a hash (0: none).
    leaf_origin: AtomicU64,
    /// Messages a local-only (server-side) client refused at its `max_pending`.
    local_refused: AtomicU64,
    /// CONNECT's `protocol`: 1 = the client accepts asynchronous INFO updates.
    protocol: AtomicU8,
    /// The client answered its handshake PING: asynchronous INFOs may be pushed to it.
    info_ready: AtomicBool,
    /// The version of the cluster's client URLs this client was last told about.
    urls_seen: AtomicU64,
    /// Cancelled when the connection starts closing (output is still flushed).
    closing: CancellationToken,
    /// Set when it starts closing, and the server's flag set when shutdown starts: together
    /// they say what `closing.is_cancelled()` says, without its mutex.
    closed: AtomicBool,
    server_down: Arc<AtomicBool>,
    /// Cancelled when pending output must be dropped at once.
    kill: CancellationToken,
    reason: Mutex<Option<ClosedReason>>,
    /// Subscriptions by sid.
    pub(crate) subs: Mutex<SubsBySid>,
    pub(crate) meta: Mutex<ConnMeta>,
    pub(crate) start: SystemTime,
    /// When the client last sent something, in nanoseconds since the Unix epoch (monitoring).
    last_activity: AtomicU64,
    /// The last measured round-trip time in nanoseconds; 0 = not measured (monitoring).
    rtt: AtomicU64,
    in_msgs: AtomicU64,
    in_bytes: AtomicU64,
    /// Bytes queued to in-process subscribers and not yet taken (their slow-consumer limit).
    local_pending: AtomicUsize,
    /// Messages and bytes delivered to in-process subscriptions (socket output is counted by
    /// the outbound queue).
    local_out_msgs: AtomicU64,
    local_out_bytes: AtomicU64,
}

impl Conn {
    /// `closing` and `kill` are children of the server's tokens, so server shutdown reaches
    /// every connection, registered or not.
    pub(crate) fn new(cid: u64, kind: ConnKind, max_pending: usize, lifecycle: &Lifecycle) -> Self {
        let start = SystemTime::now();
        Self {
            cid,
            kind,
            out: Outbound::new(max_pending),
            account: OnceLock::new(),
            permissions: arc_swap::ArcSwapOption::empty(),
            has_permissions: AtomicBool::new(false),
            checks_deliveries: AtomicBool::new(false),
            permissions_generation: AtomicU64::new(0),
            echo: AtomicBool::new(true),
            headers: AtomicBool::new(false),
            local_only: AtomicBool::new(false),
            solicited_leaf: AtomicBool::new(false),
            leaf_origin: AtomicU64::new(0),
            local_refused: AtomicU64::new(0),
            protocol: AtomicU8::new(0),
            info_ready: AtomicBool::new(false),
            urls_seen: AtomicU64::new(0),
            closing: lifecycle.shutdown_token().child_token(),
            closed: AtomicBool::new(false),
            server_down: lifecycle.down_flag().clone(),
            kill: lifecycle.kill_token().child_token(),
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

    // --- The outbound queue: every append, and its one outcome path. ---

    /// Appends protocol lines built by `build` (PONG, +OK, -ERR, INFO, RS+ ...). The caller wakes
    /// the writer on [`Appended::Signal`] (at the end of its batch); see [`Self::send`].
    pub(crate) fn push_with(&self, build: impl FnOnce(&mut BytesMut)) -> Appended {
        self.outcome(self.out.push_with(build))
    }

    /// Appends a message (control line built by `ctl`, `data`, CRLF), sharing a large `data`
    /// with `owner` instead of copying it.
    pub(crate) fn push_msg(
        &self,
        ctl: impl FnOnce(&mut BytesMut),
        data: &[u8],
        owner: &Bytes,
    ) -> Appended {
        self.outcome(self.out.push_msg(ctl, data, owner))
    }

    /// Appends messages a producer laid out in `staged` (see [`Outbound::push_staged`]).
    pub(crate) fn push_staged(&self, staged: &mut BytesMut, msgs: u64, payload: u64) -> Appended {
        self.outcome(self.out.push_staged(staged, msgs, payload))
    }

    /// Appends protocol lines and wakes the writer now: for pushes outside a read batch.
    pub(crate) fn send(&self, build: impl FnOnce(&mut BytesMut)) {
        if self.push_with(build) == Appended::Signal {
            self.wake();
        }
    }

    /// The one place an append's overflow is handled: the connection is closed as a slow
    /// consumer (silently, as nats-server does; counted and reported when it is retired).
    fn outcome(&self, appended: Appended) -> Appended {
        if appended == Appended::SlowConsumer {
            self.close(ClosedReason::SlowConsumerPendingBytes);
        }
        appended
    }

    /// Wakes the writer.
    pub(crate) fn wake(&self) {
        self.out.wake.notify_one();
    }

    /// Whether producers should stall for this consumer (over half its pending limit).
    pub(crate) fn is_stalled(&self) -> bool {
        self.out.is_stalled()
    }

    /// Waits until this consumer drains below half its limit (or closes).
    pub(crate) async fn wait_drained(&self) {
        self.out.wait_drained().await;
    }

    /// Whether the queue refuses appends (closed or cut off).
    pub(crate) fn out_closed(&self) -> bool {
        self.out.is_closed()
    }

    /// Pending output bytes (monitoring).
    pub(crate) fn pending_bytes(&self) -> usize {
        self.out.pending()
    }

    /// The outbound limit (`max_pending`), which also bounds in-process subscribers.
    pub(crate) fn max_pending(&self) -> usize {
        self.out.max_pending()
    }

    // --- Lifecycle. ---

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
        self.closed.store(true, Ordering::Release);
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
        self.closed.load(Ordering::Acquire) || self.server_down.load(Ordering::Acquire)
    }

    /// Cancelled when the connection starts closing.
    pub(crate) fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    // --- The account. ---

    /// Binds the connection to its account (once; later calls are ignored).
    pub(crate) fn bind_account(&self, account: &Arc<Account>) {
        let _ = self.account.set(account.clone());
    }

    /// Sets the user's permissions (at CONNECT, and when they change at runtime).
    pub(crate) fn set_permissions(&self, permissions: Option<Arc<ConnPermissions>>) {
        self.has_permissions
            .store(permissions.is_some(), Ordering::Release);
        let checks = permissions.as_ref().is_some_and(|p| p.checks_deliveries());
        self.checks_deliveries.store(checks, Ordering::Release);
        self.permissions.store(permissions);
        self.permissions_generation.fetch_add(1, Ordering::Release);
    }

    /// The user's permissions, if it has any.
    #[inline]
    pub(crate) fn permissions(&self) -> Option<Arc<ConnPermissions>> {
        if !self.has_permissions.load(Ordering::Acquire) {
            return None;
        }
        self.permissions.load_full()
    }

    /// Turns on delivery checks: a subscription of this connection overlaps a deny entry of
    /// `permissions` (its current ones).
    pub(crate) fn filter_deliveries(&self, permissions: &ConnPermissions) {
        permissions.filter_deliveries();
        self.checks_deliveries.store(true, Ordering::Release);
    }

    /// Whether a message on `subject` (to `queue`, with `reply`) may be delivered here under
    /// the user's permissions (the hot path: one relaxed load unless deliveries need checks).
    #[inline]
    pub(crate) fn may_deliver(
        &self,
        subject: &[u8],
        queue: Option<&[u8]>,
        reply: Option<&[u8]>,
    ) -> bool {
        if !self.checks_deliveries.load(Ordering::Relaxed) {
            return true;
        }
        match &*self.permissions.load() {
            Some(p) => p.on_delivery(subject, queue, reply),
            None => true,
        }
    }

    /// Counts permission swaps (see [`Self::set_permissions`]).
    #[inline]
    pub(crate) fn permissions_generation(&self) -> u64 {
        self.permissions_generation.load(Ordering::Acquire)
    }

    /// The account it is bound to (`None` before CONNECT, and for routes).
    pub(crate) fn account(&self) -> Option<&Arc<Account>> {
        self.account.get()
    }

    // --- What CONNECT said. ---

    pub(crate) fn echo(&self) -> bool {
        self.echo.load(Ordering::Relaxed)
    }

    pub(crate) fn set_echo(&self, yes: bool) {
        self.echo.store(yes, Ordering::Relaxed);
    }

    pub(crate) fn wants_headers(&self) -> bool {
        self.headers.load(Ordering::Relaxed)
    }

    pub(crate) fn set_headers(&self, yes: bool) {
        self.headers.store(yes, Ordering::Relaxed);
    }

    /// Whether its interest stays on this server (not announced to routes).
    pub(crate) fn is_local_only(&self) -> bool {
        self.local_only.load(Ordering::Relaxed)
    }

    pub(crate) fn set_local_only(&self, yes: bool) {
        self.local_only.store(yes, Ordering::Relaxed);
    }

    /// Whether this is a leafnode connection this server dialled (nats-server's "spoke"
    /// side: the peer is our hub).
    #[inline]
    pub(crate) fn is_solicited_leaf(&self) -> bool {
        self.solicited_leaf.load(Ordering::Relaxed)
    }

    pub(crate) fn set_solicited_leaf(&self, yes: bool) {
        self.solicited_leaf.store(yes, Ordering::Relaxed);
    }

    /// The cluster on the other side of a leafnode connection, as a hash (0: none, or not a
    /// leafnode). Interest and messages from that cluster never go back into it.
    #[inline]
    pub(crate) fn leaf_origin(&self) -> u64 {
        self.leaf_origin.load(Ordering::Relaxed)
    }

    pub(crate) fn set_leaf_origin(&self, origin: u64) {
        self.leaf_origin.store(origin, Ordering::Relaxed);
    }

    /// Whether a message or interest from `from` must not be passed to this leafnode
    /// connection: both lead into the same remote cluster.
    #[inline]
    pub(crate) fn same_leaf_origin(&self, from: &Self) -> bool {
        let o = self.leaf_origin();
        o != 0 && o == from.leaf_origin()
    }

    /// CONNECT's `protocol` (1 = takes asynchronous INFOs).
    pub(crate) fn protocol(&self) -> u8 {
        self.protocol.load(Ordering::Relaxed)
    }

    pub(crate) fn set_protocol(&self, p: u8) {
        self.protocol.store(p, Ordering::Relaxed);
    }

    /// Whether the handshake PONG went out (asynchronous INFOs may follow).
    pub(crate) fn info_ready(&self) -> bool {
        self.info_ready.load(Ordering::Relaxed)
    }

    /// Marks the handshake PONG sent; returns whether it already was.
    pub(crate) fn mark_info_ready(&self) -> bool {
        self.info_ready.swap(true, Ordering::Relaxed)
    }

    /// Records that the client was told about client-URL version `v`; returns the one it knew.
    pub(crate) fn saw_urls(&self, v: u64) -> u64 {
        self.urls_seen.swap(v, Ordering::Relaxed)
    }

    /// Whether asynchronous INFOs may be pushed to it now.
    pub(crate) fn takes_async_info(&self) -> bool {
        self.kind == ConnKind::Client && self.protocol() >= 1
    }

    // --- Figures. ---

    /// Messages and bytes delivered to this connection.
    pub(crate) fn out_counts(&self) -> (u64, u64) {
        let (m, b) = self.out.out_counts();
        (
            m + self.local_out_msgs.load(Ordering::Relaxed),
            b + self.local_out_bytes.load(Ordering::Relaxed),
        )
    }

    /// Messages and payload bytes received from this connection.
    pub(crate) fn in_counts(&self) -> (u64, u64) {
        (
            self.in_msgs.load(Ordering::Relaxed),
            self.in_bytes.load(Ordering::Relaxed),
        )
    }

    /// Counts what one read batch brought in (once per batch, not per message).
    pub(crate) fn count_in(&self, msgs: u64, bytes: u64) {
        self.in_msgs.fetch_add(msgs, Ordering::Relaxed);
        self.in_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes `size` bytes of an in-process subscriber's budget; false if that would pass
    /// `max_pending` (nothing is taken then).
    pub(crate) fn reserve_local(&self, size: usize) -> bool {
        let pending = self.local_pending.fetch_add(size, Ordering::Relaxed) + size;
        if pending > self.max_pending() {
            self.local_pending.fetch_sub(size, Ordering::Relaxed);
            false
        } else {
            true
        }
    }

    /// Counts a message a local-only client refused at its `max_pending`; returns how many it
    /// has refused, this one included.
    pub(crate) fn count_local_refused(&self) -> u64 {
        self.local_refused.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Gives back `size` bytes of the in-process budget (taken by the subscriber, or undelivered).
    pub(crate) fn release_local(&self, size: usize) {
        self.local_pending.fetch_sub(size, Ordering::Relaxed);
    }

    /// Counts messages delivered to an in-process subscription.
    pub(crate) fn count_local_out(&self, msgs: u64, bytes: usize) {
        self.local_out_msgs.fetch_add(msgs, Ordering::Relaxed);
        self.local_out_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
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
}

/// Nanoseconds since the Unix epoch (0 for times before it).
fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(max_pending: usize) -> Conn {
        Conn::new(1, ConnKind::Client, max_pending, &Lifecycle::new())
    }

    /// A control line that takes a connection past max_pending closes it as a slow consumer,
    /// exactly as a message would: it is never left open, silently dropping output.
    #[test]
    fn a_control_line_past_max_pending_closes_as_slow_consumer() {
        let c = conn(64);
        assert_eq!(
            c.push_with(|b| b.extend_from_slice(&[b'x'; 60])),
            Appended::Signal
        );
        assert!(!c.is_closed());
        assert_eq!(
            c.push_with(|b| b.extend_from_slice(b"PONG\r\n")),
            Appended::SlowConsumer
        );
        assert!(c.is_closed());
        assert_eq!(
            c.closed_reason(),
            Some(ClosedReason::SlowConsumerPendingBytes)
        );
        assert!(c.kill.is_cancelled(), "a slow consumer's output is dropped");
        assert_eq!(
            c.push_with(|b| b.extend_from_slice(b"+OK\r\n")),
            Appended::Closed
        );
    }

    #[test]
    fn staged_output_past_max_pending_closes_as_slow_consumer() {
        let c = conn(16);
        let mut staged = BytesMut::from(&b"MSG a 1 20\r\n01234567890123456789\r\n"[..]);
        assert_eq!(c.push_staged(&mut staged, 1, 20), Appended::SlowConsumer);
        assert_eq!(
            c.closed_reason(),
            Some(ClosedReason::SlowConsumerPendingBytes)
        );
    }
}
