//! `Server::builder()`: every option has nats-server's default and, where nats-server has
//! one, its equivalent setting.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::account::config::{Account, User};
use crate::cluster::Cluster;
use crate::config::{Auth, Config};
use crate::error::StartError;
use crate::extension::{Extension, Extensions};
use crate::server::Server;

/// Configures and starts a [`Server`].
///
/// ```no_run
/// # async fn run() -> Result<(), starling_server::StartError> {
/// let server = starling_server::Server::builder()
///     .listen("127.0.0.1:4222")
///     .max_payload(8 * 1024 * 1024)
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until .start().await"]
pub struct ServerBuilder {
    config: Config,
    /// An already-bound client listener ([`Self::listener`]).
    listener: Option<std::net::TcpListener>,
    extensions: Extensions,
}

impl ServerBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Starts from `config` instead of the defaults: every option set so far is replaced
    /// (authenticators and extensions stay).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), starling_server::StartError> {
    /// let mut config = starling_server::Config::standalone();
    /// config.max_payload = 8 * 1024 * 1024;
    /// let server = starling_server::Server::builder().config(config).start().await?;
    /// # Ok(()) }
    /// ```
    pub fn config(mut self, mut config: Config) -> Self {
        config.authenticators = std::mem::take(&mut self.config.authenticators);
        self.config = config;
        self
    }

    /// Listens for NATS clients on `addr` (`"host:port"`; port 0 picks a free port). Without
    /// this (or [`Self::listener`]) the broker has no TCP port: in-process clients only.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.config.listen = Some(addr.into());
        self
    }

    /// Serves clients on an already-bound listener.
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Adds a service that starts and stops with the server (JetStream is one: see
    /// `starling-jetstream`). Extensions start in the order given, after the accounts exist and
    /// before the client listener accepts; one that fails stops the start with
    /// [`StartError::Extension`].
    pub fn extension(mut self, extension: impl Extension) -> Self {
        self.extensions.push(std::sync::Arc::new(extension));
        self
    }

    /// Accepts leafnodes and/or joins hubs as a leaf (nats-server's `leafnodes {}`).
    pub fn leafnodes(mut self, leafnodes: crate::leaf::Leafnodes) -> Self {
        self.config.leafnodes = Some(leafnodes);
        self
    }

    /// Joins (or forms) a cluster: listen for peers, dial the seeds, discover the rest.
    /// Works with or without a client listener.
    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.config.cluster = Some(cluster);
        self
    }

    /// The server's name (`server_name`; defaults to the server id).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.config.server_name = Some(name.into());
        self
    }

    /// The largest message payload accepted (`max_payload`, default 1 MiB, at most 64 MiB and
    /// never above max_pending).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// The longest protocol line accepted (`max_control_line`, default 4096).
    pub fn max_control_line(mut self, bytes: usize) -> Self {
        self.config.max_control_line = bytes;
        self
    }

    /// Outbound bytes a connection may have pending before it is cut off as a slow consumer
    /// (`max_pending`, default 64 MiB).
    pub fn max_pending(mut self, bytes: usize) -> Self {
        self.config.max_pending = bytes;
        self
    }

    /// The most client connections at once (`max_connections`, default 65536).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// The most subscriptions one connection may hold (`max_subscriptions`, 0 = no limit).
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.config.max_subscriptions = n;
        self
    }

    /// How often an idle client is PINGed (`ping_interval`, default 2 minutes).
    pub fn ping_interval(mut self, every: Duration) -> Self {
        self.config.ping_interval = every;
        self
    }

    /// Unanswered PINGs before `Stale Connection` (`ping_max`, default 2).
    pub fn max_pings_out(mut self, n: u32) -> Self {
        self.config.max_pings_out = n;
        self
    }

    /// How long one socket write may stall before the client is a slow consumer
    /// (`write_deadline`, default 10 s).
    pub fn write_deadline(mut self, d: Duration) -> Self {
        self.config.write_deadline = d;
        self
    }

    /// How long a client has to send CONNECT when authentication is required
    /// (`auth_timeout`, default 2 s).
    ///
    /// With TLS the default is the TLS handshake timeout plus one second, as in nats-server.
    pub fn auth_timeout(mut self, d: Duration) -> Self {
        self.config.auth_timeout = Some(d);
        self
    }

    /// TLS on the client listener (nats-server's `tls {}` block, or `--tls --tlscert
    /// --tlskey`): clients get INFO with `tls_required` and upgrade, or handshake first.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::TlsConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// With [`Self::tls`], still accept clients that do not upgrade (`allow_non_tls`; INFO then
    /// says `tls_available` instead of `tls_required`).
    pub fn allow_non_tls(mut self, yes: bool) -> Self {
        self.config.allow_non_tls = yes;
        self
    }

    /// Requires clients to authenticate (nats-server's `--user/--pass` or `--auth`).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.config.auth = auth;
        self
    }

    /// The single address advertised to clients in `connect_urls` (`client_advertise`).
    pub fn client_advertise(mut self, addr: impl Into<String>) -> Self {
        self.config.client_advertise = Some(addr.into());
        self
    }

    /// Lame-duck duration (`lame_duck_duration`, default 2 minutes, at least 30 s) used by
    /// [`Server::lame_duck`].
    pub fn lame_duck_duration(mut self, d: Duration) -> Self {
        self.config.lame_duck_duration = d;
        self
    }

    /// Lame-duck grace period before clients are closed (`lame_duck_grace_period`, 10 s).
    pub fn lame_duck_grace_period(mut self, d: Duration) -> Self {
        self.config.lame_duck_grace_period = d;
        self
    }

    /// How long [`Server::shutdown`] lets connections drain before cutting them (default 2 s).
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.config.drain_timeout = d;
        self
    }

    /// Never stall a fast publisher for a slow subscriber (`no_fast_producer_stall`); the slow
    /// subscriber is cut off sooner instead.
    pub fn no_fast_producer_stall(mut self, yes: bool) -> Self {
        self.config.no_fast_producer_stall = yes;
        self
    }

    /// Closed connections kept for `/connz?state=closed` (`max_closed_clients`, default
    /// 10000; 0 keeps none).
    pub fn max_closed_clients(mut self, n: usize) -> Self {
        self.config.max_closed_clients = n;
        self
    }

    /// Adds an account (nats-server's `accounts { NAME: {...} }`): its users' connections get
    /// a subject space of their own.
    pub fn account(mut self, account: Account) -> Self {
        self.config.accounts.push(account);
        self
    }

    /// Adds a user of the global account `$G` (nats-server's `authorization { users: [...] }`).
    pub fn user(mut self, user: User) -> Self {
        self.config.users.push(user);
        self
    }

    /// Permissions for `$G`'s users ([`Self::user`]) that have none of their own
    /// (nats-server's `authorization { default_permissions }`).
    pub fn default_permissions(mut self, permissions: crate::Permissions) -> Self {
        self.config.default_permissions = Some(permissions);
        self
    }

    /// Adds an authenticator to the chain: for every CONNECT the authenticators are asked in
    /// the order added; the first to allow or deny decides, and when all pass, the configured
    /// users do. See [`crate::Authenticator`].
    pub fn authenticator(mut self, authenticator: impl crate::Authenticator) -> Self {
        self.config
            .authenticators
            .0
            .push(std::sync::Arc::new(authenticator));
        self
    }

    /// Clients that present no credentials become this user, of whichever account it belongs
    /// to (`no_auth_user`); INFO then says `auth_required: false`.
    pub fn no_auth_user(mut self, name: impl Into<String>) -> Self {
        self.config.no_auth_user = Some(name.into());
        self
    }

    /// The system account's name (`system_account`, default `$SYS`): its clients see the
    /// server's `$SYS` advisories and services. Created if no [`Self::account`] has the name.
    pub fn system_account(mut self, name: impl Into<String>) -> Self {
        self.config.system_account = Some(name.into());
        self
    }

    /// No system account at all (`no_system_account`).
    pub fn no_system_account(mut self) -> Self {
        self.config.no_system_account = true;
        self
    }

    /// Trusts this operator JWT (`operator`; call again for more): operator mode, in which
    /// every client presents a user JWT signed by an account the operator signed, and signs
    /// its INFO's nonce with the user's key (unless the JWT is a bearer token). The system
    /// account is the operator's unless [`Self::system_account`] names it. Configured users
    /// and accounts are refused in this mode, as nats-server refuses them.
    ///
    /// ```no_run
    /// # async fn run(operator_jwt: &str, account_jwt: &str) -> Result<(), starling_server::StartError> {
    /// let server = starling_server::Server::builder()
    ///     .listen("127.0.0.1:4222")
    ///     .operator(operator_jwt)
    ///     .resolver_preload(account_jwt)
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn operator(mut self, jwt: impl Into<String>) -> Self {
        self.config.operators.push(jwt.into());
        self
    }

    /// An account JWT for the MEMORY resolver (`resolver: MEMORY`, `resolver_preload`): the
    /// account is named by its public key and has the JWT's limits, exports and imports. A
    /// JWT that is not valid, or not signed by a trusted operator, is logged and skipped, as
    /// nats-server does.
    pub fn resolver_preload(mut self, account_jwt: impl Into<String>) -> Self {
        self.config
            .resolver_preload
            .push((String::new(), account_jwt.into()));
        self
    }

    /// [`Self::resolver_preload`] under the public key the config file names it by
    /// (`resolver_preload: { KEY: JWT }`); a JWT about another account is skipped.
    pub fn resolver_preload_as(
        mut self,
        key: impl Into<String>,
        account_jwt: impl Into<String>,
    ) -> Self {
        self.config
            .resolver_preload
            .push((key.into(), account_jwt.into()));
        self
    }

    /// Serves nats-server's monitoring endpoints (`/varz`, `/connz`, `/routez`, `/subsz`,
    /// `/healthz`, ...) and Prometheus `/metrics` over HTTP on `addr` (`"host:port"`; port 0
    /// picks a free port, see [`Server::monitor_addr`]). nats-server's `-m`/`http`.
    #[cfg(feature = "monitor")]
    pub fn monitor(mut self, addr: impl Into<String>) -> Self {
        self.config.monitor = Some(crate::config::Monitor {
            addr: addr.into(),
            https: false,
        });
        self
    }

    /// Serves the monitoring endpoints over HTTPS on `addr` instead (nats-server's
    /// `-ms`/`https_port`), with the client listener's certificate ([`Self::tls`], which
    /// must be set); no client certificates are asked for.
    #[cfg(all(feature = "monitor", feature = "tls"))]
    pub fn monitor_https(mut self, addr: impl Into<String>) -> Self {
        self.config.monitor = Some(crate::config::Monitor {
            addr: addr.into(),
            https: true,
        });
        self
    }

    /// Serves NATS clients over WebSocket too (nats-server's `websocket {}`).
    #[cfg(feature = "websocket")]
    pub fn websocket(mut self, websocket: crate::Websocket) -> Self {
        self.config.websocket = Some(websocket);
        self
    }

    /// Checks the configuration as [`Self::start`] does before binding anything: limits that
    /// contradict each other, accounts, users, exports and imports that do not fit together,
    /// TLS files that cannot be read.
    pub fn check(&self) -> Result<(), StartError> {
        let mut config = self.config.clone();
        config.resolve()?;
        build_tls(&config)?;
        Ok(())
    }

    /// Starts the broker. Returns once every listener is bound and the broker accepts work.
    pub async fn start(self) -> Result<Server, StartError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StartError::NoRuntime);
        }
        let given = self.config.clone();
        let mut config = self.config;
        config.resolve()?;
        let tls = build_tls(&config)?;
        let listener = match (self.listener, &config.listen) {
            (Some(l), _) => {
                l.set_nonblocking(true).map_err(|e| bind_error(&l, e))?;
                Some(
                    TcpListener::from_std(l.try_clone().map_err(|e| bind_error(&l, e))?)
                        .map_err(|e| bind_error(&l, e))?,
                )
            }
            (None, Some(addr)) => Some(bind("client", addr).await?),
            (None, None) => None,
        };
        config.bound = listener.as_ref().and_then(|l| l.local_addr().ok());
        let cluster = match &config.cluster {
            Some(c) => {
                let l = bind("cluster", &c.listen).await?;
                let bound = l.local_addr().map_err(|source| StartError::Bind {
                    listener: "cluster",
                    addr: resolve("cluster", &c.listen).unwrap_or_else(|_| unspecified()),
                    source,
                })?;
                let advertise = advertise_addr(c, bound);
                Some((c.clone(), l, advertise))
            }
            None => None,
        };
        #[cfg(feature = "monitor")]
        let monitor = match &config.monitor {
            Some(m) => {
                let listener = bind("monitor", &m.addr).await?;
                crate::monitor::http::announce(&listener, m.https);
                Some(listener)
            }
            None => None,
        };
        #[cfg(feature = "websocket")]
        let websocket = crate::websocket::bind(&config).await?;
        config.features = self.extensions.features();
        let server = Server::launch(given, config, listener, cluster, tls, self.extensions).await?;
        #[cfg(feature = "monitor")]
        if let Some(listener) = monitor {
            crate::monitor::http::start(server.broker(), listener);
        }
        #[cfg(feature = "websocket")]
        if let Some(listener) = websocket {
            crate::websocket::start(server.broker(), listener);
        }
        Ok(server)
    }
}

/// Each listener's TLS, built from `config` (the files are read here).
pub(crate) fn build_tls(config: &Config) -> Result<crate::transport::TlsSet, StartError> {
    #[cfg(feature = "tls")]
    {
        use crate::transport::tls::Tls;
        use std::sync::Arc;
        let client = match &config.tls {
            Some(c) => Some(Arc::new(Tls::new(c.clone())?)),
            None => None,
        };
        let route = match config.cluster.as_ref().and_then(|c| c.tls.clone()) {
            Some(c) => Some(Arc::new(Tls::for_routes(c)?)),
            None => None,
        };
        let https = config.monitor.as_ref().is_some_and(|m| m.https);
        #[cfg(feature = "monitor")]
        let monitor = match (&config.tls, https) {
            (Some(c), true) => Some(Arc::new(Tls::for_monitor(c.clone())?)),
            (None, true) => {
                return Err(StartError::Config(
                    "TLS cert and key required for HTTPS".into(),
                ))
            }
            (_, false) => None,
        };
        #[cfg(not(feature = "monitor"))]
        let monitor = {
            let _ = https;
            None
        };
        Ok(crate::transport::TlsSet {
            client,
            route,
            monitor,
        })
    }
    #[cfg(not(feature = "tls"))]
    {
        if config.monitor.as_ref().is_some_and(|m| m.https) {
            return Err(StartError::Config(
                "TLS cert and key required for HTTPS".into(),
            ));
        }
        Ok(crate::transport::TlsSet::default())
    }
}

/// Binds `listener` on `addr` (`host:port`, a name like `localhost` allowed).
async fn bind(listener: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    let sock = resolve(listener, addr)?;
    TcpListener::bind(sock)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr: sock,
            source,
        })
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// What peers should dial: the configured advertise address, else the bound address, with
/// 0.0.0.0 replaced by this host's first global interface address (never loopback unless it
/// is all there is).
fn advertise_addr(c: &Cluster, bound: SocketAddr) -> String {
    if let Some(a) = &c.advertise {
        return a.clone();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    match crate::cluster::interface_ips().first() {
        Some(ip) => crate::transport::addr::join_host_port(&ip.to_string(), bound.port()),
        None => format!("127.0.0.1:{}", bound.port()),
    }
}

fn bind_error(l: &std::net::TcpListener, source: std::io::Error) -> StartError {
    StartError::Bind {
        listener: "client",
        addr: l.local_addr().unwrap_or_else(|_| unspecified()),
        source,
    }
}

/// Resolves `host:port` (a name like `localhost` is allowed).
pub(crate) fn resolve(listener: &'static str, addr: &str) -> Result<SocketAddr, StartError> {
    let err = |reason: String| StartError::Address {
        listener,
        addr: addr.to_string(),
        reason,
    };
    addr.to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}
