//! The broker: its components, owned and wired together. Each component keeps its state
//! private behind a few methods; this file only connects them (a connection's arrival and
//! retirement, INFO from the identity and the cluster, lame duck told to everyone).
//!
//! | component | file | what it owns |
//! |---|---|---|
//! | [`Lifecycle`] | `lifecycle.rs` | tasks, lame duck, shutdown |
//! | [`Registry`] | `registry.rs` | client connections by id, the closed ring |
//! | [`Identity`] | `identity.rs` | server id and name, bound addresses, INFO |
//! | [`Accounts`] | `account/` | accounts, each with its sublist and connections |
//! | [`Credentials`] | `auth.rs` | users, the account each belongs to, the authenticator chain |
//! | [`Routes`] | `cluster/` | routes to peers, interest per account |
//! | [`Leafs`] | `leaf/` | leafnode connections, the interest each is told about |
//! | [`Events`] | `events.rs` | the event stream |
//! | [`Counters`] | `stats.rs` | server-wide counters |
//! | [`System`] | `account/system.rs` | the system account's services and advisories |
//! | [`MonitorState`] | `monitor/` | what the monitoring endpoints keep between requests |

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use starling_proto::{encode, Info};
use tracing::{debug, info, warn};

use crate::account::config::{User, GLOBAL_ACCOUNT};
use crate::account::system::System;
use crate::account::Accounts;
use crate::auth::Credentials;
use crate::client::RunBuffers;
use crate::cluster::{RouteLink, Routes};
use crate::config::Config;
use crate::conn::{ClosedReason, Conn, ConnKind};
use crate::error::AccountError;
use crate::events::{Event, Events};
use crate::identity::{ClientInfo, Identity};
use crate::introspect::View;
use crate::leaf::{LeafLink, Leafs};
use crate::lifecycle::Lifecycle;
use crate::monitor::MonitorState;
use crate::registry::Registry;
use crate::stats::Counters;
use crate::transport::{Tls, TlsSet};

/// The broker's components.
pub(crate) struct Broker {
    /// The configuration in effect, swapped whole by a reload.
    config: ArcSwap<Config>,
    /// Bumped by every reload: connections re-read their limits when it moves.
    config_generation: AtomicU64,
    lifecycle: Lifecycle,
    registry: Registry,
    identity: Identity,
    accounts: Accounts,
    /// Rebuilt whole by a reload that changes users or permissions.
    auth: ArcSwap<Credentials>,
    routes: Option<Arc<Routes>>,
    leafs: Option<Arc<Leafs>>,
    events: Events,
    counters: Counters,
    /// Buffers of in-process runs, reused (see [`RunBuffers`]).
    run_buffers: RunBuffers,
    system: System,
    monitor: MonitorState,
    /// Each listener's TLS.
    tls: TlsSet,
    /// The WebSocket listener's state.
    #[cfg(feature = "websocket")]
    websocket: crate::websocket::State,
}

impl Broker {
    /// Wires the components for `opts` (validated). `routes` is the cluster side, if any.
    pub(crate) fn new(opts: Config, routes: Option<Routes>, tls: TlsSet) -> Self {
        let routes = routes.map(Arc::new);
        let leafs = opts.leafnodes.clone().map(|l| Arc::new(Leafs::new(l)));
        let accounts = Accounts::new(&opts, routes.as_ref(), leafs.as_ref());
        let auth = Credentials::new(&opts, &accounts);
        if auth.plaintext_passwords() {
            warn!("Plaintext passwords detected, use nkeys or bcrypt");
        }
        let identity = Identity::new(opts.server_name.clone(), opts.features);
        let lifecycle = Lifecycle::new();
        // The server's own subscriptions (imports, $SYS) belong to this connection: cid 0,
        // never registered, never listed.
        let internal = Arc::new(Conn::new(0, ConnKind::Internal, usize::MAX, &lifecycle));
        let system = System::new(&accounts, internal);
        for account in accounts.all() {
            account.install_service_imports(&system);
        }
        Self {
            registry: Registry::new(opts.max_closed_clients),
            lifecycle,
            identity,
            accounts,
            auth: ArcSwap::from_pointee(auth),
            routes,
            leafs,
            events: Events::new(),
            counters: Counters::default(),
            run_buffers: RunBuffers::default(),
            system,
            monitor: MonitorState::default(),
            tls,
            #[cfg(feature = "websocket")]
            websocket: crate::websocket::State::new(opts.websocket.clone()),
            config: ArcSwap::from_pointee(opts),
            config_generation: AtomicU64::new(0),
        }
    }

    // --- Components. ---

    /// The configuration in effect (a reload may replace it: read it once per use).
    pub(crate) fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    /// How many reloads have been applied; connections compare it once per read.
    pub(crate) fn config_generation(&self) -> u64 {
        self.config_generation.load(Ordering::Acquire)
    }

    /// Puts a reloaded configuration (and, if users changed, its credentials) in effect.
    pub(crate) fn swap_config(&self, config: Config, credentials: Option<Credentials>) {
        if let Some(c) = credentials {
            self.auth.store(Arc::new(c));
        }
        self.config.store(Arc::new(config));
        self.config_generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(crate) fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The users and authenticators in effect (a reload may replace them).
    pub(crate) fn auth(&self) -> Arc<Credentials> {
        self.auth.load_full()
    }

    /// The client listener's TLS, if any.
    pub(crate) fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.client.as_ref()
    }

    /// The routes' TLS, if any.
    pub(crate) fn route_tls(&self) -> Option<&Arc<Tls>> {
        self.tls.route.as_ref()
    }

    /// The HTTPS monitor's TLS, if the monitor serves HTTPS.
    pub(crate) fn monitor_tls(&self) -> Option<&Arc<Tls>> {
        self.tls.monitor.as_ref()
    }

    /// The WebSocket listener's state.
    #[cfg(feature = "websocket")]
    pub(crate) fn websocket(&self) -> &crate::websocket::State {
        &self.websocket
    }

    pub(crate) fn routes(&self) -> Option<&Arc<Routes>> {
        self.routes.as_ref()
    }

    /// The leafnode side, when leafnodes are configured.
    pub(crate) fn leafs(&self) -> Option<&Arc<Leafs>> {
        self.leafs.as_ref()
    }

    pub(crate) fn events(&self) -> &Events {
        &self.events
    }

    pub(crate) fn run_buffers(&self) -> &RunBuffers {
        &self.run_buffers
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn monitor(&self) -> &MonitorState {
        &self.monitor
    }

    pub(crate) fn system(&self) -> &System {
        &self.system
    }

    /// A read-only view for monitoring and the system account's services.
    pub(crate) fn view(&self) -> View<'_> {
        View::new(self)
    }

    // --- Connections arriving and leaving. ---

    /// A new connection of `kind` (not yet registered anywhere).
    pub(crate) fn new_conn(&self, kind: ConnKind, addr: Option<SocketAddr>) -> Arc<Conn> {
        let conn = Arc::new(Conn::new(
            self.registry.next_cid(),
            kind,
            self.config.load().max_pending,
            &self.lifecycle,
        ));
        conn.meta.lock().addr = addr;
        conn
    }

    /// Creates and registers a client connection (socket or in-process).
    pub(crate) fn register_client(&self, kind: ConnKind, addr: Option<SocketAddr>) -> Arc<Conn> {
        let conn = self.new_conn(kind, addr);
        self.registry.insert(&conn);
        debug!(cid = conn.cid, ?addr, ?kind, "client connected");
        self.events.emit(Event::ClientConnected {
            cid: conn.cid,
            kind,
            addr,
        });
        conn
    }

    /// A client finished CONNECT and is bound to its account: the system account hears of it.
    pub(crate) fn client_connected(&self, conn: &Conn) {
        self.system.client_connected(self, conn);
    }

    /// Retires a closed client connection: its subscriptions leave their sublists, it leaves
    /// its account and the registry (kept in the closed ring), and a slow consumer is counted
    /// and reported. Every client connection passes here exactly once.
    pub(crate) fn retire_client(&self, conn: &Arc<Conn>) {
        conn.close(ClosedReason::ServerShutdown); // no-op when a reason is already set
        let subs = conn.subs.lock().take_all();
        let account = conn.account().cloned();
        if let Some(account) = &account {
            for owned in &subs {
                account.remove_owned(owned);
            }
            account.unbind(conn);
        }
        self.registry.retire_out_counts(conn);
        let reason = conn.closed_reason().unwrap_or(ClosedReason::ServerShutdown);
        self.registry.remove(conn, &subs, reason);
        self.note_closed(conn, reason);
        if account.is_some() {
            self.system.client_disconnected(self, conn, reason);
        }
        debug!(cid = conn.cid, %reason, "client closed");
        self.events.emit(Event::ClientClosed {
            cid: conn.cid,
            reason,
        });
    }

    /// Counts and reports a connection that was cut off for not keeping up.
    fn note_closed(&self, conn: &Conn, reason: ClosedReason) {
        if reason.is_slow_consumer() {
            self.counters.add_slow_consumer();
            warn!(cid = conn.cid, kind = ?conn.kind, "slow consumer detected, connection closed");
            self.events.emit(Event::SlowConsumer { cid: conn.cid });
        }
    }

    /// A route registered: gossip it to the other peers, tell embedders and clients.
    pub(crate) fn route_added(&self, link: &Arc<RouteLink>, others: &[Arc<RouteLink>]) {
        // Tell the other peers about the newcomer, with the address to dial it at; they
        // connect to it (full mesh). Receivers ignore peers they already know.
        let mut info = link.info();
        info.ip = Some(format!("nats-route://{}/", link.cluster_addr()));
        info.nonce = None;
        let json = info.to_json();
        for other in others {
            other.conn.send(|b| {
                b.extend_from_slice(b"INFO ");
                b.extend_from_slice(json.as_bytes());
                b.extend_from_slice(b"\r\n");
            });
        }
        let server_name = info.server_name.clone();
        info!(peer = %link.server_id, name = %server_name, addr = %link.cluster_addr(), "Route connection created");
        self.events.emit(Event::PeerJoined {
            server_id: link.server_id.clone(),
            server_name,
        });
        self.client_urls_changed();
        if let Some(leafs) = &self.leafs {
            leafs.urls_changed(self);
        }
    }

    /// A route closed (its interest already left the sublists).
    pub(crate) fn route_removed(&self, link: &Arc<RouteLink>) {
        self.registry.retire_out_counts(&link.conn);
        let reason = link
            .conn
            .closed_reason()
            .unwrap_or(ClosedReason::ServerShutdown);
        self.note_closed(&link.conn, reason);
        let server_name = link.info().server_name;
        info!(peer = %link.server_id, name = %server_name, "Route connection closed");
        self.events.emit(Event::PeerLeft {
            server_id: link.server_id.clone(),
            server_name,
        });
        self.client_urls_changed();
        if let Some(leafs) = &self.leafs {
            leafs.urls_changed(self);
        }
    }

    /// A leafnode connection registered (either side).
    pub(crate) fn leaf_connected(&self, link: &Arc<LeafLink>) {
        self.events.emit(Event::LeafnodeConnected {
            cid: link.conn.cid,
            server_name: link.remote_name.clone(),
            account: link.account.name().to_string(),
            solicited: link.solicited,
        });
    }

    /// A leafnode connection closed (its interest already left the sublist).
    pub(crate) fn leaf_disconnected(&self, link: &Arc<LeafLink>, loop_detected: bool) {
        self.registry.retire_out_counts(&link.conn);
        let reason = link
            .conn
            .closed_reason()
            .unwrap_or(ClosedReason::ServerShutdown);
        self.note_closed(&link.conn, reason);
        info!(peer = %link.remote_name, %reason, "Leafnode connection closed");
        self.events.emit(Event::LeafnodeClosed {
            cid: link.conn.cid,
            server_name: link.remote_name.clone(),
            reason,
            loop_detected,
        });
    }

    // --- INFO. ---

    /// The INFO a client connection gets.
    pub(crate) fn client_info(&self, cid: u64, addr: Option<SocketAddr>) -> Info {
        let config = self.config();
        self.identity.client_info(ClientInfo {
            cid,
            addr,
            max_payload: config.max_payload,
            auth_required: self.auth.load().auth_required(),
            tls_required: self.tls.client.is_some() && !config.allow_non_tls,
            tls_available: self.tls.client.is_some() && config.allow_non_tls,
            tls_verify: self
                .tls
                .client
                .as_ref()
                .is_some_and(|t| t.verifies_clients()),
            lame_duck: self.lifecycle.is_lame_duck(),
            cluster: self.routes.as_ref().map(|r| r.name()),
            connect_urls: if self.routes.is_some() {
                self.connect_urls()
            } else {
                Vec::new()
            },
        })
    }

    /// The INFO a connected client gets later (lame duck, new cluster URLs): a WebSocket
    /// client's names the WebSocket listener.
    pub(crate) fn client_info_of(&self, conn: &Conn) -> Info {
        let (addr, _websocket) = {
            let meta = conn.meta.lock();
            (meta.addr, meta.websocket)
        };
        let info = self.client_info(conn.cid, addr);
        #[cfg(feature = "websocket")]
        if _websocket {
            return crate::websocket::client_info(self, info);
        }
        info
    }

    /// The INFO this server sends on a route.
    pub(crate) fn route_info(&self) -> Info {
        let routes = self.routes.as_ref().expect("route INFO needs a cluster");
        let config = routes.config();
        Info {
            auth_required: config.user.is_some(),
            tls_required: self.tls.route.is_some(),
            tls_verify: self.tls.route.is_some(),
            ip: config
                .advertise
                .as_ref()
                .map(|a| format!("nats-route://{a}/")),
            cluster: Some(routes.name()),
            cluster_dynamic: routes.is_dynamic(),
            connect_urls: if config.no_advertise {
                Vec::new()
            } else {
                self.own_client_urls()
            },
            ldm: self.lifecycle.is_lame_duck(),
            // Gossiped to our peers' leafnodes, so that they can fail over to us.
            leafnode_urls: self
                .leafs
                .as_ref()
                .map(|l| l.leafnode_urls())
                .unwrap_or_default(),
            ..self.identity.route_info(
                self.config.load().max_payload,
                routes.advertise(),
                routes.listen_addr().port(),
            )
        }
    }

    /// Client URLs of the whole cluster, this server's first (INFO `connect_urls`).
    pub(crate) fn connect_urls(&self) -> Vec<String> {
        let mut urls = self.own_client_urls();
        if let Some(routes) = &self.routes {
            if !routes.config().no_advertise {
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
        if let Some(adv) = &self.config.load().client_advertise {
            return vec![adv.clone()];
        }
        let Some(addr) = self.identity.client_addr() else {
            return Vec::new();
        };
        if addr.ip().is_unspecified() {
            let ips = crate::cluster::interface_ips();
            if !ips.is_empty() {
                return ips
                    .iter()
                    .map(|ip| crate::transport::addr::join_host_port(&ip.to_string(), addr.port()))
                    .collect();
            }
        }
        vec![addr.to_string()]
    }

    /// The cluster's client URLs changed: push an INFO to clients that take async INFOs.
    pub(crate) fn client_urls_changed(&self) {
        let version = self.identity.bump_urls_version();
        if self
            .routes
            .as_ref()
            .is_some_and(|r| r.config().no_advertise)
        {
            return;
        }
        for conn in self.registry.snapshot() {
            if conn.takes_async_info() && conn.info_ready() {
                conn.saw_urls(version);
                let info = self.client_info_of(&conn);
                conn.send(|b| encode::write_info(b, &info));
            }
        }
    }

    /// Tells every client that understands async INFO, and every peer, that this server is
    /// going away; stops accepting.
    pub(crate) fn announce_lame_duck(&self) {
        if !self.lifecycle.enter_lame_duck() {
            return;
        }
        info!("Entering lame duck mode, stop accepting new clients");
        self.events.emit(Event::LameDuck);
        self.system.lame_duck(self);
        if let Some(routes) = &self.routes {
            let info = self.route_info();
            for link in routes.links() {
                link.conn.send(|b| encode::write_info(b, &info));
            }
        }
        for conn in self.registry.snapshot() {
            if conn.takes_async_info() {
                let info = self.client_info_of(&conn);
                conn.send(|b| encode::write_info(b, &info));
            }
        }
    }

    /// Puts a reloaded configuration in effect (already checked, TLS already re-read) and
    /// does what its changes take; see [`crate::Server::reload`].
    pub(crate) async fn apply_reload(&self, config: Config, plan: &crate::config::reload::Plan) {
        for name in &plan.changed {
            match crate::config::reload::describe(name, &config) {
                Some(value) => info!("Reloaded: {name} = {value}"),
                None => info!("Reloaded: {name}"),
            }
        }
        if plan.accounts {
            let (added, removed) = self.accounts.reconcile(&config.accounts, &self.system);
            info!(?added, ?removed, "Reloaded: accounts");
        }
        let credentials = plan.auth.then(|| Credentials::new(&config, &self.accounts));
        let resend = plan.limits || plan.changed.contains(&"client_advertise");
        let max_connections = config.max_connections;
        let seeds = config.cluster.as_ref().map(|c| c.seed_urls().to_vec());
        self.swap_config(config, credentials);
        self.identity
            .set_config_loaded(std::time::SystemTime::now());
        if resend {
            self.resend_info();
        }
        let closed = self.close_clients_beyond(max_connections);
        if closed > 0 {
            info!("Closed {closed} connections to fall within max_connections");
        }
        if plan.auth {
            let outcome = self.recheck(&crate::Kick::All).await;
            debug!(?outcome, "clients checked again after the reload");
        }
        if let (Some(routes), Some(seeds)) = (&self.routes, seeds) {
            if !plan.routes_added.is_empty() || !plan.routes_removed.is_empty() {
                routes.set_seeds(seeds);
                self.close_routes_to(routes, &plan.routes_removed).await;
            }
        }
    }

    /// Closes the routes this node dialled at `seeds` (a reload removed them).
    async fn close_routes_to(&self, routes: &Routes, seeds: &[String]) {
        let mut addrs = std::collections::HashSet::new();
        for seed in seeds {
            let Some(target) = crate::cluster::DialTarget::parse(seed, true) else {
                continue;
            };
            if let Ok(resolved) = tokio::net::lookup_host(&target.addr).await {
                addrs.extend(resolved.map(|a| a.to_string()));
            }
            addrs.insert(target.addr);
        }
        for link in routes.links() {
            if link.dialled_addr().is_some_and(|a| addrs.contains(&a)) {
                info!("Removed route {}", link.cluster_addr());
                link.conn.close(ClosedReason::ClientClosed);
            }
        }
    }

    /// Sends every client that takes async INFOs the INFO as it is now (a reload changed
    /// `max_payload` or `client_advertise`).
    pub(crate) fn resend_info(&self) {
        for conn in self.registry.snapshot() {
            if conn.kind == ConnKind::Client && conn.takes_async_info() && conn.info_ready() {
                let info = self.client_info(conn.cid, conn.meta.lock().addr);
                conn.send(|b| encode::write_info(b, &info));
            }
        }
    }

    /// Closes the newest client connections beyond `max` (a reload lowered
    /// `max_connections`), as nats-server does; returns how many.
    pub(crate) fn close_clients_beyond(&self, max: usize) -> usize {
        let mut clients: Vec<_> = self
            .registry
            .snapshot()
            .into_iter()
            .filter(|c| c.kind == ConnKind::Client && !c.is_closed())
            .collect();
        if clients.len() <= max {
            return 0;
        }
        clients.sort_by_key(|c| std::cmp::Reverse(c.cid));
        let excess = clients.len() - max;
        for conn in &clients[..excess] {
            conn.send(|b| encode::write_err(b, "Maximum Connections Exceeded"));
            conn.close(ClosedReason::MaxConnectionsExceeded);
        }
        excess
    }

    /// Closes every client connection (shutdown).
    pub(crate) fn close_clients(&self) {
        for conn in self.registry.snapshot() {
            conn.close(ClosedReason::ServerShutdown);
        }
    }

    /// Adds a user to account `account` while the server runs, with the account's default
    /// permissions (or the server's, for `$G`) if it has none of its own.
    pub(crate) fn add_user(&self, account: &str, user: &User) -> Result<(), AccountError> {
        let target = self
            .accounts
            .get(account)
            .ok_or_else(|| AccountError::NoSuchAccount(account.to_string()))?;
        let config = self.config();
        let defaults = if account == GLOBAL_ACCOUNT {
            config.default_permissions.as_ref()
        } else {
            config
                .accounts
                .iter()
                .find(|a| a.name == account)
                .and_then(|a| a.default_permissions.as_ref())
        };
        self.auth.load().add_user(&target, user, defaults)
    }

    /// Removes a user while the server runs and closes its connections as nats-server does
    /// on a reload that drops a user: `-ERR 'Authorization Violation'`, then close. `None`
    /// if there was no such user; else how many connections were closed.
    pub(crate) fn remove_user(&self, name: &str) -> Result<Option<usize>, AccountError> {
        if !self.auth.load().remove_user(name)? {
            return Ok(None);
        }
        let closed = self.kick(&crate::Kick::User(name.to_string()), true);
        info!(user = name, closed, "user removed");
        Ok(Some(closed))
    }

    /// Replaces a user's permissions and applies them to its live connections, as
    /// nats-server applies a reload: each gets the new permissions at once, and subscriptions
    /// they no longer allow are removed with an `-ERR`. Returns how many connections were
    /// updated, or `None` if there is no such user.
    pub(crate) fn set_user_permissions(
        &self,
        name: &str,
        permissions: Option<&crate::Permissions>,
    ) -> Result<Option<usize>, AccountError> {
        let Some(compiled) = self.auth.load().set_permissions(name, permissions)? else {
            return Ok(None);
        };
        let mut updated = 0;
        for conn in self.registry.snapshot() {
            let theirs =
                conn.kind == ConnKind::Client && conn.meta.lock().user.as_deref() == Some(name);
            if !theirs || conn.is_closed() {
                continue;
            }
            self.apply_permissions(&conn, compiled.clone());
            updated += 1;
        }
        info!(user = name, updated, "user permissions changed");
        Ok(Some(updated))
    }

    /// Gives a live connection new permissions: at once for its next message, and its
    /// subscriptions they refuse are removed, each with nats-server's `-ERR`.
    fn apply_permissions(
        &self,
        conn: &Arc<Conn>,
        compiled: Option<Arc<crate::permissions::Compiled>>,
    ) {
        let new = compiled
            .clone()
            .map(|c| Arc::new(crate::permissions::ConnPermissions::new(c)));
        let mut disallowed = Vec::new();
        if let (Some(c), Some(new)) = (&compiled, &new) {
            for owned in conn.subs.lock().values() {
                let (subject, queue) = (owned.handle.subject(), owned.handle.queue());
                if !c.may_subscribe(subject, queue) {
                    let subject = String::from_utf8_lossy(subject).into_owned();
                    let queue = queue.map(|q| String::from_utf8_lossy(q).into_owned());
                    disallowed.push((owned.sub.clone(), subject, queue));
                } else if c.overlaps_deny(subject, queue.is_some()) {
                    new.filter_deliveries();
                }
            }
        }
        conn.set_permissions(new);
        let Some(account) = conn.account() else {
            return;
        };
        for (sub, subject, queue) in disallowed {
            account.unsubscribe(&sub);
            let sid = String::from_utf8_lossy(&sub.sid[..]).into_owned();
            let text = match &queue {
                Some(q) => format!(
                    "Permissions Violation for Subscription to {subject:?} using queue {q:?} (sid {sid:?})"
                ),
                None => format!("Permissions Violation for Subscription to {subject:?} (sid {sid:?})"),
            };
            conn.send(|b| encode::write_err(b, &text));
            info!(
                cid = conn.cid,
                "Removed sub {subject:?} (sid {sid:?}) - not authorized"
            );
        }
    }

    /// Decides again about the client connections `which` picks, with what each presented
    /// at CONNECT and the users and authenticators as they are now, as nats-server re-checks
    /// its clients on a reload: refused, or now of another account → `-ERR 'Authorization
    /// Violation'` and closed; otherwise its permissions become the current ones.
    pub(crate) async fn recheck(&self, which: &crate::Kick) -> crate::Recheck {
        let mut outcome = crate::Recheck::default();
        for conn in self.registry.snapshot() {
            if !self.picks(&conn, which) || conn.is_closed() {
                continue;
            }
            let (presented, addr) = {
                let meta = conn.meta.lock();
                (meta.presented.clone(), meta.addr)
            };
            let Some(presented) = presented else {
                continue; // Not authenticated by CONNECT (in-process clients).
            };
            outcome.checked += 1;
            let verdict = self
                .auth()
                .decide(conn.cid, addr, &presented, &self.accounts)
                .await;
            let same_account = |v: &crate::auth::Verdict| {
                conn.account().is_some_and(|a| Arc::ptr_eq(a, &v.account))
            };
            match verdict {
                Ok(v) if same_account(&v) => {
                    let unchanged = match (conn.permissions(), &v.permissions) {
                        (Some(now), Some(new)) => now.compiled().same_as(new),
                        (None, None) => true,
                        _ => false,
                    };
                    if !unchanged {
                        self.apply_permissions(&conn, v.permissions);
                        outcome.updated += 1;
                    }
                }
                _ => {
                    conn.send(|b| encode::write_err(b, "Authorization Violation"));
                    conn.close(ClosedReason::AuthenticationViolation);
                    outcome.closed += 1;
                }
            }
        }
        outcome
    }

    fn picks(&self, conn: &Conn, which: &crate::Kick) -> bool {
        conn.kind == ConnKind::Client
            && match which {
                crate::Kick::Connection(cid) => conn.cid == *cid,
                crate::Kick::User(name) => conn.meta.lock().user.as_deref() == Some(name),
                crate::Kick::Account(name) => conn.account().is_some_and(|a| a.name() == name),
                crate::Kick::All => true,
            }
    }

    /// Closes the client connections `which` picks; `revoked`: they are told `Authorization
    /// Violation` first (their user is gone), else they are closed as `Kicked`.
    pub(crate) fn kick(&self, which: &crate::Kick, revoked: bool) -> usize {
        let mut closed = 0;
        for conn in self.registry.snapshot() {
            if !self.picks(&conn, which) || conn.is_closed() {
                continue;
            }
            if revoked {
                conn.send(|b| encode::write_err(b, "Authorization Violation"));
                conn.close(ClosedReason::AuthenticationViolation);
            } else {
                conn.close(ClosedReason::Kicked);
            }
            closed += 1;
        }
        closed
    }
}
