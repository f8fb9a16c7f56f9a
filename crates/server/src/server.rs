//! The cheap-to-clone [`Server`] handle: starting, the embedding API, and shutdown. The broker
//! itself is `broker.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::account::config::User;
use crate::broker::Broker;
use crate::builder::ServerBuilder;
use crate::client::inprocess::Client;
use crate::config::Config;
use crate::conn::ClosedReason;
use crate::error::{AccountError, ClientError, StartError};
use crate::events::{Event, EventStream};
use crate::extension::Extensions;
use crate::stats::Stats;

/// Stops the server when the last [`Server`] handle is dropped.
struct DropGuard(Arc<Broker>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        let broker = &self.0;
        if !broker.lifecycle().is_shutting_down() {
            debug!("last server handle dropped: shutting down");
            broker.close_clients();
            broker.lifecycle().begin_shutdown();
        }
    }
}

/// A running broker. Cheap to clone; dropping the last clone shuts the broker down.
#[derive(Clone)]
pub struct Server {
    broker: Arc<Broker>,
    /// The configuration as given (before the server derived anything from it): what a
    /// reload is compared with. The lock also keeps reloads from overlapping.
    given: Arc<tokio::sync::Mutex<Config>>,
    _guard: Arc<DropGuard>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("server_id", &self.server_id())
            .field("client_addr", &self.client_addr())
            .finish()
    }
}

/// Which client connections [`Server::kick`] closes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kick {
    /// The connection with this id (`cid` in monitoring and events).
    Connection(u64),
    /// Every connection of this user.
    User(String),
    /// Every connection of this account.
    Account(String),
    /// Every client connection.
    All,
}

/// What [`Server::recheck`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recheck {
    /// Connections decided about again.
    pub checked: usize,
    /// Of those, refused now (or moved to another account): told `Authorization Violation`
    /// and closed.
    pub closed: usize,
    /// Of those, given changed permissions.
    pub updated: usize,
}

impl Server {
    /// Starts configuring a broker.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    pub(crate) async fn launch(
        given: Config,
        opts: Config,
        listener: Option<TcpListener>,
        cluster: Option<(crate::cluster::Cluster, TcpListener, String)>,
        tls: crate::transport::TlsSet,
        extensions: Extensions,
    ) -> Result<Self, StartError> {
        let (routes, cluster_listener) = match cluster {
            Some((config, l, advertise)) => {
                let addr = l.local_addr().expect("bound listener has an address");
                (
                    Some(crate::cluster::Routes::new(config, addr, advertise)),
                    Some(l),
                )
            }
            None => (None, None),
        };
        let broker = Arc::new(Broker::new(opts, routes, tls));
        let server = Self {
            given: Arc::new(tokio::sync::Mutex::new(given)),
            _guard: Arc::new(DropGuard(broker.clone())),
            broker: broker.clone(),
        };
        // As nats-server: the leafnode listener's line comes before the client listener's.
        crate::leaf::start(&broker).await?;
        if let Some(listener) = &listener {
            let addr = listener.local_addr().ok();
            broker.identity().set_client_addr(addr);
            if let Some(addr) = addr {
                info!("Listening for client connections on {addr}");
            }
            #[cfg(feature = "tls")]
            if let Some(tls) = broker.tls() {
                if broker.config().allow_non_tls {
                    info!("TLS available for client connections");
                } else {
                    info!("TLS required for client connections");
                }
                if tls.config().handshake_first_mode() == crate::HandshakeFirst::On {
                    tracing::warn!(
                        "Clients that are not using \"TLS Handshake First\" option will fail to connect"
                    );
                }
            }
        }
        if let (Some(routes), Some(l)) = (broker.routes(), cluster_listener) {
            info!(
                "Listening for route connections on {}",
                routes.listen_addr()
            );
            info!(
                "Cluster {:?} advertises {} to peers",
                routes.name(),
                routes.advertise()
            );
            crate::cluster::start(&broker, l);
        }
        broker.system().start(&broker);
        broker.accounts().start(&broker);
        // Extensions recover their state before the first client is accepted.
        for ext in extensions.iter() {
            ext.start(server.clone())
                .await
                .map_err(|source| StartError::Extension {
                    name: ext.name().to_string(),
                    source,
                })?;
        }
        if let Some(listener) = listener {
            broker
                .lifecycle()
                .spawn(crate::client::accept(broker.clone(), listener));
        }
        debug!(server_id = %broker.identity().server_id(), name = %broker.identity().server_name(), version = crate::identity::STARLING_VERSION, "server identity");
        info!("Server is ready");
        Ok(server)
    }

    /// The broker behind this handle (the monitor's and the builder's way in).
    #[cfg(any(feature = "monitor", feature = "websocket"))]
    pub(crate) fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The address the client listener is bound to (`None` without a listener). With port 0
    /// this tells the port the system picked.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.broker.identity().client_addr()
    }

    /// The address the monitoring HTTP server is bound to (`None` without one; see
    /// `ServerBuilder::monitor`). With port 0 this tells the port the system picked.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        self.broker.identity().monitor_addr()
    }

    /// The address the WebSocket listener is bound to (`None` without one; see
    /// `ServerBuilder::websocket`). With port 0 this tells the port the system picked.
    #[cfg(feature = "websocket")]
    pub fn websocket_addr(&self) -> Option<SocketAddr> {
        self.broker.websocket().addr()
    }

    /// The client URL, `nats://host:port`, when there is a client listener.
    pub fn client_url(&self) -> Option<String> {
        self.client_addr().map(|a| format!("nats://{a}"))
    }

    /// Reads the client listener's, the routes' and the WebSocket listener's certificate, key and CA files again: new TLS handshakes use
    /// them, established connections keep theirs. On an error the old certificates stay in use.
    /// Does nothing without TLS. [`Self::reload`] does this too.
    #[cfg(feature = "tls")]
    pub fn reload_certificates(&self) -> Result<(), crate::TlsError> {
        let b = &self.broker;
        for tls in [b.tls(), b.route_tls(), b.monitor_tls()]
            .into_iter()
            .flatten()
        {
            tls.reload(None)?;
        }
        #[cfg(feature = "websocket")]
        if let Some(tls) = b.websocket().tls_listener() {
            tls.reload(None)?;
        }
        Ok(())
    }

    /// The configuration the server was started with (or last reloaded with), as given: the
    /// starting point of a [`Self::reload`].
    pub async fn config(&self) -> Config {
        self.given.lock().await.clone()
    }

    /// Applies `config` to the running server, as nats-server applies a reload (SIGHUP):
    ///
    /// - `max_payload`, `max_control_line` and `ping_max` apply to open connections too
    ///   (clients that take async INFOs get one with the new `max_payload`); connections
    ///   beyond a lowered `max_connections` are closed, the newest first; `ping_interval`,
    ///   `write_deadline` and the authorization timeout apply to connections opened after;
    /// - users, passwords, tokens and permissions are replaced: every client is checked
    ///   again with what it presented at CONNECT; one no longer allowed gets
    ///   `-ERR 'Authorization Violation'` and is closed, and subscriptions that narrowed
    ///   permissions refuse are removed with nats-server's `-ERR`;
    /// - TLS certificate, key and CA files are read again (of the new `tls {}` settings);
    /// - cluster routes that are new are dialled, routes that are gone are closed.
    ///
    /// - accounts may be added (they serve at once) and removed (their clients are closed as
    ///   users that went away are).
    ///
    /// Options that need a restart (the client port, the cluster port, an existing account's
    /// limits, exports and imports, ...) are refused with [`ReloadError::NotSupported`] naming the first one;
    /// then, as on any error, nothing has changed. Users added with [`Self::add_user`] are
    /// replaced by the new configuration's, as a reload of nats-server's file replaces them.
    ///
    /// [`ReloadError::NotSupported`]: crate::ReloadError::NotSupported
    pub async fn reload(&self, config: Config) -> Result<crate::Reloaded, crate::ReloadError> {
        let mut given = self.given.lock().await;
        let plan = crate::config::reload::plan(&given, &config)?;
        let mut resolved = config.clone();
        {
            let current = self.broker.config();
            resolved.features = current.features;
            resolved.authenticators = current.authenticators.clone();
            resolved.bound = current.bound;
        }
        resolved.resolve()?;
        // TLS first: it reads files, the one step that can still fail.
        #[cfg(feature = "tls")]
        self.reload_tls(&resolved).map_err(StartError::from)?;
        self.broker.apply_reload(resolved, &plan).await;
        *given = config;
        info!("Reloaded server configuration");
        Ok(crate::Reloaded {
            changed: plan.changed,
        })
    }

    #[cfg(feature = "tls")]
    fn reload_tls(&self, config: &Config) -> Result<(), crate::TlsError> {
        let b = &self.broker;
        if let (Some(tls), Some(c)) = (b.tls(), &config.tls) {
            tls.reload(Some(c))?;
            info!("Reloaded: tls = enabled");
        }
        if let (Some(tls), Some(c)) = (b.monitor_tls(), &config.tls) {
            tls.reload(Some(c))?;
        }
        let route = config.cluster.as_ref().and_then(|c| c.tls.as_ref());
        if let (Some(tls), Some(c)) = (b.route_tls(), route) {
            tls.reload(Some(c))?;
            info!("Reloaded: cluster tls");
        }
        #[cfg(feature = "websocket")]
        {
            let ws = config.websocket.as_ref().and_then(|w| w.tls_config());
            if let (Some(tls), Some(c)) = (b.websocket().tls_listener(), ws) {
                tls.reload(Some(c))?;
            }
        }
        Ok(())
    }

    /// This server's id (the `server_id` of INFO and monitoring).
    pub fn server_id(&self) -> &str {
        self.broker.identity().server_id()
    }

    /// This server's name (defaults to its id).
    pub fn server_name(&self) -> &str {
        self.broker.identity().server_name()
    }

    /// A new in-process client in the global account `$G`: no socket, zero-copy payloads, the
    /// same semantics and limits as a socket client.
    pub fn client(&self) -> Client {
        let global = self.broker.accounts().global().clone();
        // `$G` has no connection limit of its own, so this cannot fail.
        Client::new(self.broker.clone(), global).expect("$G takes any number of clients")
    }

    /// A new in-process client in `account` whose subscriptions stay on this server: cluster
    /// peers never hear of them, so only messages published on this server reach them.
    /// JetStream's handlers are such clients: a mixed cluster's nats-server nodes must not route
    /// their clients' JetStream requests here, where a second JetStream would answer too. Being
    /// the server's own, what they publish is not held to `max_payload`.
    pub fn local_client_in(&self, account: &str) -> Result<Client, ClientError> {
        let client = self.client_in(account)?;
        client.keep_interest_local();
        Ok(client)
    }

    /// A new in-process client in account `account` (`"$G"` for the global account). Fails
    /// if there is no such account, or it is at its connection limit.
    pub fn client_in(&self, account: &str) -> Result<Client, ClientError> {
        let account = self
            .broker
            .accounts()
            .get(account)
            .ok_or(ClientError::UnknownAccount)?
            .clone();
        Client::new(self.broker.clone(), account)
    }

    /// Adds a user while the server runs, to account `account` (`"$G"` for the global
    /// account): new connections may authenticate as it at once. Its permissions are its own,
    /// else the account's default permissions. Fails for an unknown account, a name already
    /// taken, invalid permissions, or a server with a single user/password or token.
    pub fn add_user(&self, account: &str, user: User) -> Result<(), AccountError> {
        self.broker.add_user(account, &user)
    }

    /// Removes a user while the server runs. Its live connections get
    /// `-ERR 'Authorization Violation'` and are closed, as nats-server does when a reload drops
    /// a user. Returns how many were closed, or `None` if there was no such user. The
    /// `no_auth_user` cannot be removed.
    pub fn remove_user(&self, name: &str) -> Result<Option<usize>, AccountError> {
        self.broker.remove_user(name)
    }

    /// Replaces a user's permissions while the server runs (`None`: no restriction) and
    /// applies them to its live connections at once, as nats-server applies a reload: their
    /// subscriptions that the new permissions refuse are removed, each with nats-server's
    /// `-ERR 'Permissions Violation for Subscription to "x" (sid "N")'`; the connections stay
    /// open. Returns how many connections were updated, or `None` if there is no such user.
    pub fn set_permissions(
        &self,
        user: &str,
        permissions: Option<crate::Permissions>,
    ) -> Result<Option<usize>, AccountError> {
        self.broker.set_user_permissions(user, permissions.as_ref())
    }

    /// Decides again about the client connections `which` picks, with the credentials each
    /// presented at CONNECT and the users and authenticators as they are now: for an
    /// embedder whose user store changed behind an [`crate::Authenticator`], or after
    /// [`Self::add_user`]/[`Self::set_permissions`] changes it wants applied to everyone. As
    /// nats-server re-checks clients on a reload: a refused client (or one that would now be
    /// in another account) gets `-ERR 'Authorization Violation'` and is closed; the others
    /// get their current permissions (subscriptions these refuse are removed with `-ERR`).
    pub async fn recheck(&self, which: Kick) -> Recheck {
        let outcome = self.broker.recheck(&which).await;
        info!(?which, ?outcome, "authorization re-checked");
        outcome
    }

    /// Closes the client connections `which` picks, as nats-server's `KICK` request does
    /// (reason `Kicked`). Returns how many were closed. Kicked clients may reconnect: remove
    /// their user ([`Self::remove_user`]) to keep them out.
    pub fn kick(&self, which: Kick) -> usize {
        let closed = self.broker.kick(&which, false);
        info!(?which, closed, "kicked");
        closed
    }

    /// The names of the server's accounts: `$G`, the configured ones and the system account.
    pub fn accounts(&self) -> Vec<String> {
        self.broker
            .accounts()
            .all()
            .iter()
            .map(|a| a.name().to_string())
            .collect()
    }

    /// The cluster peers this server has routes to.
    pub fn peers(&self) -> Vec<crate::cluster::Peer> {
        self.broker.routes().map(|r| r.peers()).unwrap_or_default()
    }

    /// Whether any subscriber of the global account (here or, through routes, on a peer) is
    /// interested in `subject`.
    pub fn has_interest(&self, subject: &str) -> bool {
        self.has_interest_in("$G", subject)
    }

    /// Whether any subscriber of `account` (here or on a peer) is interested in `subject`.
    pub fn has_interest_in(&self, account: &str, subject: &str) -> bool {
        self.broker
            .accounts()
            .get(account)
            .is_some_and(|a| a.sublist().has_interest(subject.as_bytes()))
    }

    /// The address the cluster listener is bound to, if clustering is on.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.broker.routes().map(|r| r.listen_addr())
    }

    /// The address the leafnode listener is bound to, if it accepts leafnodes.
    pub fn leafnode_addr(&self) -> Option<SocketAddr> {
        self.broker.leafs().and_then(|l| l.listen_addr())
    }

    /// A stream of server events from now on.
    pub fn events(&self) -> EventStream {
        self.broker.events().subscribe()
    }

    /// A snapshot of the broker's counters.
    pub fn stats(&self) -> Stats {
        self.broker.view().stats()
    }

    /// Serves a client over any byte stream (a TLS stream, a Unix socket, an in-memory pipe):
    /// the server speaks the client protocol on it until either side closes.
    pub fn serve_connection<S>(&self, stream: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        if self.broker.lifecycle().is_shutting_down() {
            return;
        }
        let (r, w) = tokio::io::split(stream);
        self.broker
            .lifecycle()
            .spawn(crate::client::serve(self.broker.clone(), r, w, peer));
    }

    /// Lame-duck mode, as nats-server's `ldm` signal: stop accepting, tell clients (INFO with
    /// `ldm`), wait the grace period, then close clients spread over the lame-duck duration,
    /// and shut down.
    pub async fn lame_duck(&self) {
        let broker = &self.broker;
        let lifecycle = broker.lifecycle();
        broker.announce_lame_duck();
        let opts = broker.config();
        tokio::select! {
            _ = tokio::time::sleep(opts.lame_duck_grace_period) => {}
            _ = lifecycle.shutting_down() => {}
        }
        let clients = broker.registry().snapshot();
        if !clients.is_empty() {
            let window = opts
                .lame_duck_duration
                .saturating_sub(opts.lame_duck_grace_period);
            let step = (window / clients.len() as u32).min(std::time::Duration::from_secs(1));
            for conn in clients {
                conn.close(ClosedReason::ServerShutdown);
                tokio::select! {
                    _ = tokio::time::sleep(step) => {}
                    _ = lifecycle.shutting_down() => {}
                }
            }
        }
        self.shutdown().await;
    }

    /// Shuts down gracefully: stops accepting, tells clients (INFO with `ldm`), lets every
    /// connection drain its pending output (bounded by the drain timeout), closes them all,
    /// and returns once every task of this server has ended. Calling it again is harmless.
    pub async fn shutdown(&self) {
        let broker = &self.broker;
        let lifecycle = broker.lifecycle();
        if !lifecycle.is_shutting_down() {
            broker.announce_lame_duck();
            broker.system().shutdown(broker);
            broker.close_clients();
            lifecycle.begin_shutdown();
            if tokio::time::timeout(broker.config().drain_timeout, lifecycle.wait())
                .await
                .is_err()
            {
                // Every connection's kill token is a child of this one: it also reaches
                // writers whose reader already ended and left the registry.
                lifecycle.kill_all();
            }
            info!("Server Exiting..");
            broker.events().emit(Event::Shutdown);
        }
        lifecycle.wait().await;
    }

    /// Runs `task` as one of the server's own tasks: [`Self::shutdown`] waits for it to end. For
    /// extensions, whose work must finish (a store flushed) before the server is stopped.
    /// After shutdown has begun the task is still run, and still waited for.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.broker.lifecycle().spawn(task);
    }

    /// Adds what an extension shows in monitoring (see [`crate::Monitoring`]).
    pub fn add_monitoring(&self, monitoring: Arc<dyn crate::Monitoring>) {
        self.broker.monitor().add_extension(monitoring);
    }

    /// Completes when shutdown begins (also at once if it has).
    pub async fn shutting_down(&self) {
        self.broker.lifecycle().shutting_down().await;
    }

    /// Whether every task of this server has ended (true after `shutdown().await`).
    pub fn is_stopped(&self) -> bool {
        self.broker.lifecycle().is_stopped()
    }
}
