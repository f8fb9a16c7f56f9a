//! Every option a broker has, described once: [`Config`] holds them with nats-server's
//! defaults, [`Config::validate`] makes nats-server's checks, and [`reload`] is the difference
//! between two of them. The builder ([`crate::ServerBuilder`]) is sugar over a `Config`, and
//! the `starling-server` binary maps nats-server's flags and config file onto one.

pub(crate) mod reload;

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::account::config::{Account, User, DEFAULT_SYSTEM_ACCOUNT};
use crate::cluster::Cluster;

pub use reload::{ReloadError, Reloaded};

/// nats-server's `DEFAULT_HOST`: every interface.
pub const DEFAULT_HOST: &str = "0.0.0.0";
/// nats-server's `DEFAULT_PORT`: where the standalone binary listens for clients.
pub const DEFAULT_PORT: u16 = 4222;
/// nats-server's `MAX_PAYLOAD_SIZE`: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// nats-server's `MAX_CONTROL_LINE_SIZE`.
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// nats-server's `MAX_PENDING_SIZE`: per-connection outbound bytes before a slow consumer is cut off.
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
/// nats-server's `DEFAULT_MAX_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64 * 1024;
/// nats-server's `DEFAULT_MAX_CLOSED_CLIENTS`: closed connections kept for `/connz?state=closed`.
pub const DEFAULT_MAX_CLOSED_CLIENTS: usize = 10_000;
/// The largest max_payload accepted (it may not exceed max_pending, whose default is 64 MiB).
pub const MAX_PAYLOAD_CEILING: usize = 64 * 1024 * 1024;
/// nats-server's `DEFAULT_AUTH_TIMEOUT` (2 s); with TLS the TLS timeout plus one second.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(2);
/// nats-server's `DEFAULT_LAME_DUCK_DURATION`.
pub const DEFAULT_LAME_DUCK_DURATION: Duration = Duration::from_secs(120);
/// The shortest lame-duck duration nats-server's config accepts.
pub const MIN_LAME_DUCK_DURATION: Duration = Duration::from_secs(30);

/// How clients must authenticate (nats-server's `--user/--pass` and `--auth`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// No authentication: every client is accepted.
    #[default]
    None,
    /// A single user name and password.
    UserPassword {
        /// The user name clients must send.
        user: String,
        /// The password clients must send.
        password: String,
    },
    /// A single shared token (`auth_token` in CONNECT).
    Token(String),
}

impl Auth {
    /// Whether clients must present credentials (`auth_required` in INFO).
    pub fn is_required(&self) -> bool {
        !matches!(self, Self::None)
    }
}

/// The monitoring HTTP listener (nats-server's `http`/`https`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Monitor {
    /// `host:port`; port 0 picks a free port.
    pub addr: String,
    /// HTTPS with the client listener's certificate instead of HTTP.
    pub https: bool,
}

/// Everything a broker is configured with. `Config::default()` is an embedded broker: no
/// TCP listener (in-process clients only), every limit at nats-server's default;
/// [`Config::standalone`] is what `nats-server` with no options runs.
///
/// Fields are public so a configuration can be built or changed in place; the struct is
/// `#[non_exhaustive]`, so start from a default:
///
/// ```
/// let mut config = starling_server::Config::standalone();
/// config.max_payload = 8 * 1024 * 1024;
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The server's name (`server_name`; defaults to the server id).
    pub server_name: Option<String>,
    /// The client listener, `host:port` (`listen`, `host` + `port`); port 0 picks a free
    /// port. `None`: no TCP listener, in-process clients only.
    pub listen: Option<String>,
    /// The single address advertised to clients in `connect_urls` (`client_advertise`).
    pub client_advertise: Option<String>,
    /// The largest message payload accepted (`max_payload`, 1 MiB; at most 64 MiB and never
    /// above `max_pending`).
    pub max_payload: usize,
    /// The longest protocol line accepted (`max_control_line`, 4096).
    pub max_control_line: usize,
    /// Outbound bytes a connection may have pending before it is cut off as a slow consumer
    /// (`max_pending`, 64 MiB).
    pub max_pending: usize,
    /// The most client connections at once (`max_connections`, 65536).
    pub max_connections: usize,
    /// The most subscriptions one connection may hold (`max_subscriptions`; 0 = no limit).
    pub max_subscriptions: usize,
    /// How often an idle client is PINGed (`ping_interval`, 2 minutes).
    pub ping_interval: Duration,
    /// Unanswered PINGs before `Stale Connection` (`ping_max`, 2).
    pub max_pings_out: u32,
    /// How long one socket write may stall before the client is a slow consumer
    /// (`write_deadline`, 10 s).
    pub write_deadline: Duration,
    /// How long a client has to send CONNECT when authentication is required
    /// (`authorization.timeout`). `None`: nats-server's default, 2 s, or with TLS the TLS
    /// handshake timeout plus one second.
    pub auth_timeout: Option<Duration>,
    /// A single user/password or token (`authorization { user password token }`).
    pub auth: Auth,
    /// How long lame-duck mode spreads the closing of clients (`lame_duck_duration`, 2
    /// minutes, at least 30 s).
    pub lame_duck_duration: Duration,
    /// How long lame-duck mode waits before it starts closing clients
    /// (`lame_duck_grace_period`, 10 s).
    pub lame_duck_grace_period: Duration,
    /// How long [`crate::Server::shutdown`] lets connections drain before cutting them (2 s).
    pub drain_timeout: Duration,
    /// Never stall a fast publisher for a slow subscriber (`no_fast_producer_stall`).
    pub no_fast_producer_stall: bool,
    /// Closed connections kept for `/connz?state=closed` (`max_closed_clients`, 10000).
    pub max_closed_clients: usize,
    /// Accounts besides `$G` (`accounts`).
    pub accounts: Vec<Account>,
    /// Users of `$G` (`authorization.users`).
    pub users: Vec<User>,
    /// Permissions of `$G`'s users without their own (`authorization.default_permissions`).
    pub default_permissions: Option<crate::permissions::Permissions>,
    /// The user clients without credentials become (`no_auth_user`).
    pub no_auth_user: Option<String>,
    /// The system account's name (`system_account`). `None`: the operator's in operator
    /// mode, else `$SYS`.
    pub system_account: Option<String>,
    /// No system account at all (`no_system_account`).
    pub no_system_account: bool,
    /// TLS on the client listener (`tls {}`).
    #[cfg(feature = "tls")]
    pub tls: Option<crate::transport::tls::TlsConfig>,
    /// Clients may connect without TLS when TLS is configured (`allow_non_tls`).
    pub allow_non_tls: bool,
    /// Trusted operator JWTs (`operator`): operator mode when any is set.
    pub operators: Vec<String>,
    /// Account JWTs of the MEMORY resolver, by public key (`resolver_preload`; an empty key
    /// stands for the JWT's own subject).
    pub resolver_preload: Vec<(String, String)>,
    /// The cluster side (`cluster {}`), if any.
    pub cluster: Option<Cluster>,
    /// The monitoring endpoints (`http`/`https`), if any.
    pub monitor: Option<Monitor>,
    /// Leafnodes accepted and hubs joined (`leafnodes {}`), if any.
    pub leafnodes: Option<crate::leaf::Leafnodes>,
    /// The WebSocket listener (`websocket {}`), if any.
    #[cfg(feature = "websocket")]
    pub websocket: Option<crate::websocket::Websocket>,

    // What the server derives at start; never set by hand, never compared on reload.
    /// What extensions offer (set by the builder from them).
    pub(crate) features: crate::extension::Features,
    /// The embedder's authenticators, asked in order before the configured users.
    pub(crate) authenticators: crate::auth::Chain,
    /// What the operators trust, once checked at start ([`crate::operator::apply`]).
    pub(crate) trust: Option<std::sync::Arc<crate::operator::Trust>>,
    /// The system account in effect (from `system_account`, `no_system_account` and the
    /// operator), set by [`Config::resolve`].
    pub(crate) system: Option<String>,
    /// The client listener's bound address, once bound.
    pub(crate) bound: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: None,
            listen: None,
            client_advertise: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_pending: DEFAULT_MAX_PENDING,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subscriptions: 0,
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            write_deadline: Duration::from_secs(10),
            auth_timeout: None,
            auth: Auth::None,
            lame_duck_duration: DEFAULT_LAME_DUCK_DURATION,
            lame_duck_grace_period: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(2),
            no_fast_producer_stall: false,
            max_closed_clients: DEFAULT_MAX_CLOSED_CLIENTS,
            accounts: Vec::new(),
            users: Vec::new(),
            default_permissions: None,
            no_auth_user: None,
            system_account: None,
            no_system_account: false,
            #[cfg(feature = "tls")]
            tls: None,
            allow_non_tls: false,
            operators: Vec::new(),
            resolver_preload: Vec::new(),
            cluster: None,
            monitor: None,
            leafnodes: None,
            #[cfg(feature = "websocket")]
            websocket: None,
            features: Default::default(),
            authenticators: crate::auth::Chain::default(),
            trust: None,
            system: None,
            bound: None,
        }
    }
}

/// A configuration that contradicts itself or nats-server's rules. Each names the option.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value out of range or malformed (the text names the option).
    #[error("{reason}")]
    Invalid {
        /// The option, as nats-server's config file names it.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(option: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            option,
            reason: reason.into(),
        }
    }

    /// The option this error is about (`max_payload`, `lame_duck_duration`, ...).
    pub fn option(&self) -> &'static str {
        match self {
            Self::Invalid { option, .. } => option,
        }
    }
}

impl Config {
    /// What `nats-server` runs with no options: clients on `0.0.0.0:4222`.
    pub fn standalone() -> Self {
        Self {
            listen: Some(format!("{DEFAULT_HOST}:{DEFAULT_PORT}")),
            ..Self::default()
        }
    }

    /// How long a client has to send CONNECT: `auth_timeout`, else nats-server's default
    /// (2 s; with TLS the TLS handshake timeout plus one second).
    pub fn effective_auth_timeout(&self) -> Duration {
        if let Some(d) = self.auth_timeout {
            return d;
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.handshake_timeout() + Duration::from_secs(1);
        }
        DEFAULT_AUTH_TIMEOUT
    }

    /// Everything [`crate::ServerBuilder::start`] checks before binding: [`Self::validate`],
    /// then the operator's JWTs (which add their accounts), the system account, and how
    /// accounts, users, exports and imports fit together. Fills in what the server derives.
    pub(crate) fn resolve(&mut self) -> Result<(), crate::StartError> {
        self.validate()?;
        self.system = if self.no_system_account {
            None
        } else {
            Some(
                self.system_account
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SYSTEM_ACCOUNT.to_string()),
            )
        };
        let named = self.system_account.is_some() || self.no_system_account;
        crate::operator::apply(self, named)?;
        crate::account::config::validate(self)?;
        #[cfg(feature = "websocket")]
        crate::websocket::validate(self)?;
        Ok(())
    }

    /// nats-server's checks on the options themselves (the accounts, users, TLS files and
    /// operator JWTs are checked by [`crate::ServerBuilder::check`], which reads them).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_payload == 0 {
            return Err(ConfigError::invalid(
                "max_payload",
                "max_payload must be positive",
            ));
        }
        if self.max_payload > self.max_pending {
            return Err(ConfigError::invalid(
                "max_payload",
                format!(
                    "max_payload ({}) cannot be higher than max_pending ({})",
                    self.max_payload, self.max_pending
                ),
            ));
        }
        if self.max_payload > MAX_PAYLOAD_CEILING {
            return Err(ConfigError::invalid(
                "max_payload",
                format!(
                    "max_payload ({}) cannot be higher than {MAX_PAYLOAD_CEILING}",
                    self.max_payload
                ),
            ));
        }
        if self.max_control_line < 32 {
            return Err(ConfigError::invalid(
                "max_control_line",
                "max_control_line is too small",
            ));
        }
        if self.ping_interval.is_zero() {
            return Err(ConfigError::invalid(
                "ping_interval",
                "ping_interval must be positive",
            ));
        }
        if self.lame_duck_duration < MIN_LAME_DUCK_DURATION {
            return Err(ConfigError::invalid(
                "lame_duck_duration",
                format!(
                    "invalid lame_duck_duration of {}, minimum is 30 seconds",
                    crate::gotime::go_duration(self.lame_duck_duration)
                ),
            ));
        }
        if let Some(listen) = &self.listen {
            check_host_port("listen", listen)?;
        }
        if let Some(m) = &self.monitor {
            check_host_port("http", &m.addr)?;
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        Ok(())
    }
}

/// `host:port` with a numeric port (the host is resolved when the listener binds).
fn check_host_port(option: &'static str, addr: &str) -> Result<(), ConfigError> {
    match addr.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(ConfigError::invalid(
            option,
            format!("{option} {addr:?} is not host:port"),
        )),
    }
}
