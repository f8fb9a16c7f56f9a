//! The broker: shared state, the cheap-to-clone [`Server`] handle, the accept loop, and
//! shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use starling_proto::encode;
use starling_sublist::{SubHandle, Sublist, SublistError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::builder::ServerBuilder;
use crate::client::{self, ClientShared, ClosedReason, ConnKind};
use crate::closed::ClosedConns;
use crate::events::{Event, EventStream};
use crate::inprocess::Client;
use crate::options::Options;
use crate::route::Routes;
use crate::stats::{Counters, Stats, SublistFigures};
use crate::subscription::Subscription;

/// State shared by every task of one broker.
pub(crate) struct Shared {
    pub(crate) opts: Options,
    pub(crate) server_id: String,
    pub(crate) server_name: String,
    pub(crate) sublist: Sublist<Arc<Subscription>>,
    clients: Mutex<HashMap<u64, Arc<ClientShared>>>,
    next_cid: AtomicU64,
    pub(crate) stats: Counters,
    /// Messages and bytes delivered to connections that have since closed.
    closed_out: Mutex<(u64, u64)>,
    /// Closed connections kept for monitoring (`/connz?state=closed`).
    pub(crate) closed: ClosedConns,
    /// The monitoring HTTP listener's address, once bound.
    pub(crate) monitor_addr: Mutex<Option<SocketAddr>>,
    events: broadcast::Sender<Event>,
    /// Cancelled when the server shuts down: every connection is a child of it.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when shutdown gives up on draining: every connection drops its output.
    pub(crate) kill_all: CancellationToken,
    /// Cancelled to stop accepting new connections (lame duck, shutdown).
    pub(crate) stop_accepting: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) client_addr: Mutex<Option<SocketAddr>>,
    pub(crate) lame_duck: AtomicBool,
    pub(crate) start_time: SystemTime,
    /// The cluster side, when configured.
    pub(crate) cluster: Option<Routes>,
    /// Bumped whenever the cluster's client URLs change (async INFO to clients).
    pub(crate) urls_version: AtomicU64,
}

impl Shared {
    pub(crate) fn next_cid(&self) -> u64 {
        self.next_cid.fetch_add(1, Ordering::Relaxed)
    }

    /// Inserts a local client's subscription and tells cluster peers about new interest.
    pub(crate) fn insert_local_sub(
        &self,
        sub: &Arc<Subscription>,
        subject: &[u8],
        queue: Option<&[u8]>,
    ) -> Result<SubHandle, SublistError> {
        let handle = self.sublist.insert(subject, queue, sub.clone())?;
        if let Some(routes) = &self.cluster {
            routes.interest_changed(subject, queue, 1);
        }
        Ok(handle)
    }

    /// Removes a local client's subscription from the sublist (and peers' view of it).
    pub(crate) fn remove_local_sub(&self, sub: &Subscription, handle: &SubHandle) {
        sub.removed.store(true, Ordering::Relaxed);
        if let Some(tx) = &sub.local {
            // Ends the subscriber's stream after what was delivered before.
            let _ = tx.send(None);
        }
        if self.sublist.remove(handle).is_some() {
            if let Some(routes) = &self.cluster {
                routes.interest_changed(handle.subject(), handle.queue(), -1);
            }
        }
    }

    /// Client URLs of the whole cluster, this server's first (INFO `connect_urls`).
    pub(crate) fn connect_urls(&self) -> Vec<String> {
        let mut urls = self.own_client_urls();
        if let Some(routes) = &self.cluster {
            if !routes.config.no_advertise {
                for u in routes.peer_client_urls() {
                    if !urls.contains(&u) {
                        urls.push(u);
                    }
                }
            }
        }
        urls
    }

    /// This server's client URLs as clients elsewhere can use them.
    pub(crate) fn own_client_urls(&self) -> Vec<String> {
        if let Some(adv) = &self.opts.client_advertise {
            return vec![adv.clone()];
        }
        let Some(addr) = *self.client_addr.lock() else {
            return Vec::new();
        };
        if addr.ip().is_unspecified() {
            let ips = crate::route::interface_ips();
            if !ips.is_empty() {
                return ips
                    .iter()
                    .map(|ip| crate::route::join_host_port(&ip.to_string(), addr.port()))
                    .collect();
            }
        }
        vec![addr.to_string()]
    }

    /// The cluster's client URLs changed: push an INFO to clients that take async INFOs.
    pub(crate) fn client_urls_changed(&self) {
        let version = self.urls_version.fetch_add(1, Ordering::Relaxed) + 1;
        if self.cluster.as_ref().is_some_and(|r| r.config.no_advertise) {
            return;
        }
        for conn in self.snapshot_clients() {
            if conn.kind == ConnKind::Client
                && conn.protocol.load(Ordering::Relaxed) >= 1
                && conn.info_ready.load(Ordering::Relaxed)
            {
                conn.urls_seen.store(version, Ordering::Relaxed);
                let info = self.client_info(conn.cid, conn.meta.lock().addr);
                conn.out.push_with(|b| encode::write_info(b, &info));
                conn.out.wake.notify_one();
            }
        }
    }

    /// Peers of the cluster.
    pub(crate) fn peers(&self) -> Vec<crate::cluster::Peer> {
        self.cluster.as_ref().map(Routes::peers).unwrap_or_default()
    }

    pub(crate) fn client_count(&self) -> usize {
        self.clients.lock().len()
    }

    /// Creates and registers a new client connection.
    pub(crate) fn register_client(
        &self,
        kind: ConnKind,
        addr: Option<SocketAddr>,
    ) -> Arc<ClientShared> {
        let cid = self.next_cid();
        let conn = Arc::new(ClientShared::new(
            cid,
            kind,
            self.opts.max_pending,
            &self.shutdown,
            &self.kill_all,
        ));
        conn.meta.lock().addr = addr;
        self.clients.lock().insert(cid, conn.clone());
        self.stats.total_connections.fetch_add(1, Ordering::Relaxed);
        debug!(cid, ?addr, ?kind, "client connected");
        self.emit(Event::ClientConnected { cid, kind, addr });
        conn
    }

    /// Forgets a closed connection: its subscriptions leave the sublist.
    pub(crate) fn unregister_client(&self, conn: &Arc<ClientShared>) {
        conn.close(ClosedReason::ServerShutdown); // no-op when a reason is already set
        let subs = conn.subs.lock().take_all();
        for owned in &subs {
            self.remove_local_sub(&owned.sub, &owned.handle);
        }
        self.clients.lock().remove(&conn.cid);
        self.retire_out_counts(conn);
        let reason = conn.closed_reason().unwrap_or(ClosedReason::ServerShutdown);
        self.closed.push(conn, &subs, reason);
        debug!(cid = conn.cid, %reason, "client closed");
        self.emit(Event::ClientClosed {
            cid: conn.cid,
            reason,
        });
    }

    /// Keeps what a connection that is going away sent in the server-wide totals.
    pub(crate) fn retire_out_counts(&self, conn: &ClientShared) {
        let (msgs, bytes) = conn.out_counts();
        let mut c = self.closed_out.lock();
        c.0 += msgs;
        c.1 += bytes;
    }

    pub(crate) fn note_slow_consumer(&self, conn: &ClientShared) {
        self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
        warn!(cid = conn.cid, "slow consumer detected, connection closed");
        self.emit(Event::SlowConsumer { cid: conn.cid });
    }

    pub(crate) fn emit(&self, event: Event) {
        // No receivers is fine: events are optional.
        let _ = self.events.send(event);
    }

    pub(crate) fn snapshot_clients(&self) -> Vec<Arc<ClientShared>> {
        self.clients.lock().values().cloned().collect()
    }

    pub(crate) fn stats(&self) -> Stats {
        let clients = self.snapshot_clients();
        let (mut out_msgs, mut out_bytes) = *self.closed_out.lock();
        let mut pending_bytes = 0;
        for c in &clients {
            let (m, b) = c.out_counts();
            out_msgs += m;
            out_bytes += b;
            pending_bytes += c.out.pending() as u64;
        }
        // As nats-server counts: traffic over routes is part of the server's totals.
        let route_stats = self.route_stats();
        for r in &route_stats {
            out_msgs += r.out_msgs;
            out_bytes += r.out_bytes;
            pending_bytes += r.pending_bytes;
        }
        Stats {
            connections: clients.len(),
            total_connections: self.stats.total_connections.load(Ordering::Relaxed),
            subscriptions: self.sublist.len(),
            in_msgs: self.stats.in_msgs.load(Ordering::Relaxed),
            in_bytes: self.stats.in_bytes.load(Ordering::Relaxed),
            out_msgs,
            out_bytes,
            slow_consumers: self.stats.slow_consumers.load(Ordering::Relaxed),
            start: self.start_time,
            uptime: self.start_time.elapsed().unwrap_or_default(),
            closed_connections: self.closed.total(),
            pending_bytes,
            routes: route_stats.len(),
            route_stats,
            leafnodes: 0,
            sublist: SublistFigures::from_sublist(&self.sublist.stats()),
        }
    }

    /// Tells every client that understands async INFO that this server is going away.
    fn announce_lame_duck(&self) {
        if self.lame_duck.swap(true, Ordering::Relaxed) {
            return;
        }
        self.stop_accepting.cancel();
        info!("Entering lame duck mode, stop accepting new clients");
        self.emit(Event::LameDuck);
        if let Some(routes) = &self.cluster {
            let mut info = self.route_info();
            info.ldm = true;
            for link in routes.links() {
                link.conn.out.push_with(|b| encode::write_info(b, &info));
                link.conn.out.wake.notify_one();
            }
        }
        for conn in self.snapshot_clients() {
            if conn.kind == ConnKind::Client && conn.protocol.load(Ordering::Relaxed) >= 1 {
                let info = self.client_info(conn.cid, conn.meta.lock().addr);
                conn.out.push_with(|b| encode::write_info(b, &info));
                conn.out.wake.notify_one();
            }
        }
    }
}

/// Stops the server when the last [`Server`] handle is dropped.
struct DropGuard(Arc<Shared>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        let shared = &self.0;
        if !shared.shutdown.is_cancelled() {
            debug!("last server handle dropped: shutting down");
            for conn in shared.snapshot_clients() {
                conn.close(ClosedReason::ServerShutdown);
            }
            shared.stop_accepting.cancel();
            shared.shutdown.cancel();
            shared.tracker.close();
        }
    }
}

/// A running broker. Cheap to clone; dropping the last clone shuts the broker down.
#[derive(Clone)]
pub struct Server {
    pub(crate) shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("server_id", &self.shared.server_id)
            .field("client_addr", &self.client_addr())
            .finish()
    }
}

impl Server {
    /// Starts configuring a broker.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    pub(crate) fn launch(
        opts: Options,
        listener: Option<TcpListener>,
        cluster: Option<(crate::cluster::Cluster, TcpListener, String)>,
    ) -> Self {
        let (events, _) = broadcast::channel(4096);
        let server_id = crate::info::new_server_id();
        let server_name = opts
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.clone());
        let (routes, cluster_listener) = match cluster {
            Some((config, l, advertise)) => {
                let addr = l.local_addr().expect("bound listener has an address");
                (Some(Routes::new(config, addr, advertise)), Some(l))
            }
            None => (None, None),
        };
        let closed = ClosedConns::new(opts.max_closed_clients);
        let shared = Arc::new(Shared {
            opts,
            server_name,
            server_id,
            sublist: Sublist::new(),
            clients: Mutex::new(HashMap::new()),
            next_cid: AtomicU64::new(1),
            stats: Counters::default(),
            closed_out: Mutex::new((0, 0)),
            closed,
            monitor_addr: Mutex::new(None),
            events,
            shutdown: CancellationToken::new(),
            kill_all: CancellationToken::new(),
            stop_accepting: CancellationToken::new(),
            tracker: TaskTracker::new(),
            client_addr: Mutex::new(None),
            lame_duck: AtomicBool::new(false),
            start_time: SystemTime::now(),
            cluster: routes,
            urls_version: AtomicU64::new(0),
        });
        if let Some(listener) = listener {
            let addr = listener.local_addr().ok();
            *shared.client_addr.lock() = addr;
            if let Some(addr) = addr {
                info!("Listening for client connections on {addr}");
            }
            shared.tracker.spawn(accept_loop(shared.clone(), listener));
        }
        if let (Some(routes), Some(l)) = (&shared.cluster, cluster_listener) {
            info!("Listening for route connections on {}", routes.listen_addr);
            info!(
                "Cluster {:?} advertises {} to peers",
                routes.name(),
                routes.advertise
            );
            crate::route::start_cluster(&shared, l);
        }
        debug!(server_id = %shared.server_id, name = %shared.server_name, version = crate::info::STARLING_VERSION, "server identity");
        info!("Server is ready");
        Self {
            _guard: Arc::new(DropGuard(shared.clone())),
            shared,
        }
    }

    /// The address the client listener is bound to (`None` without a listener). With port 0
    /// this tells the port the system picked.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        *self.shared.client_addr.lock()
    }

    /// The address the monitoring HTTP server is bound to (`None` without one; see
    /// `ServerBuilder::monitor`). With port 0 this tells the port the system picked.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        *self.shared.monitor_addr.lock()
    }

    /// The client URL, `nats://host:port`, when there is a client listener.
    pub fn client_url(&self) -> Option<String> {
        self.client_addr().map(|a| format!("nats://{a}"))
    }

    /// This server's id (the `server_id` of INFO and monitoring).
    pub fn server_id(&self) -> &str {
        &self.shared.server_id
    }

    /// This server's name (defaults to its id).
    pub fn server_name(&self) -> &str {
        &self.shared.server_name
    }

    /// A new in-process client: no socket, zero-copy payloads, the same semantics and limits
    /// as a socket client.
    pub fn client(&self) -> Client {
        Client::new(self.shared.clone())
    }

    /// The cluster peers this server has routes to.
    pub fn peers(&self) -> Vec<crate::cluster::Peer> {
        self.shared.peers()
    }

    /// Whether any subscriber (here or, through routes, on a peer) is interested in `subject`.
    pub fn has_interest(&self, subject: &str) -> bool {
        self.shared.sublist.has_interest(subject.as_bytes())
    }

    /// The address the cluster listener is bound to, if clustering is on.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.shared.cluster.as_ref().map(|r| r.listen_addr)
    }

    /// A stream of server events from now on.
    pub fn events(&self) -> EventStream {
        EventStream::new(self.shared.events.subscribe())
    }

    /// A snapshot of the broker's counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Serves a client over any byte stream (a TLS stream, a Unix socket, an in-memory pipe):
    /// the server speaks the client protocol on it until either side closes.
    pub fn serve_connection<S>(&self, stream: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        if self.shared.shutdown.is_cancelled() {
            return;
        }
        let (r, w) = tokio::io::split(stream);
        self.shared
            .tracker
            .spawn(client::serve(self.shared.clone(), r, w, peer));
    }

    /// Lame-duck mode, as nats-server's `ldm` signal: stop accepting, tell clients (INFO with
    /// `ldm`), wait the grace period, then close clients spread over the lame-duck duration,
    /// and shut down.
    pub async fn lame_duck(&self) {
        let shared = &self.shared;
        shared.announce_lame_duck();
        let opts = &shared.opts;
        tokio::select! {
            _ = tokio::time::sleep(opts.lame_duck_grace_period) => {}
            _ = shared.shutdown.cancelled() => {}
        }
        let clients = shared.snapshot_clients();
        if !clients.is_empty() {
            let window = opts
                .lame_duck_duration
                .saturating_sub(opts.lame_duck_grace_period);
            let step = (window / clients.len() as u32).min(std::time::Duration::from_secs(1));
            for conn in clients {
                conn.close(ClosedReason::ServerShutdown);
                tokio::select! {
                    _ = tokio::time::sleep(step) => {}
                    _ = shared.shutdown.cancelled() => {}
                }
            }
        }
        self.shutdown().await;
    }

    /// Shuts down gracefully: stops accepting, tells clients (INFO with `ldm`), lets every
    /// connection drain its pending output (bounded by the drain timeout), closes them all,
    /// and returns once every task of this server has ended. Calling it again is harmless.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        if !shared.shutdown.is_cancelled() {
            shared.announce_lame_duck();
            for conn in shared.snapshot_clients() {
                conn.close(ClosedReason::ServerShutdown);
            }
            shared.shutdown.cancel();
            shared.tracker.close();
            if tokio::time::timeout(shared.opts.drain_timeout, shared.tracker.wait())
                .await
                .is_err()
            {
                // Every connection's kill token is a child of this one: it also reaches
                // writers whose reader already ended and left the clients map.
                shared.kill_all.cancel();
            }
            info!("Server Exiting..");
            shared.emit(Event::Shutdown);
        }
        shared.tracker.close();
        shared.tracker.wait().await;
    }

    /// Whether every task of this server has ended (true after `shutdown().await`).
    pub fn is_stopped(&self) -> bool {
        self.shared.tracker.is_closed() && self.shared.tracker.is_empty()
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        tokio::select! {
            biased;
            _ = shared.stop_accepting.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let (r, w) = stream.into_split();
                    shared.tracker.spawn(client::serve(shared.clone(), r, w, Some(addr)));
                }
                Err(e) => {
                    // EMFILE and friends: back off a little rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }
    debug!("client listener closed");
}
