//! Everything a broker can be configured with, with nats-server's defaults.

use std::net::SocketAddr;
use std::time::Duration;

use crate::account::config::{Account, User, DEFAULT_SYSTEM_ACCOUNT};

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

/// The resolved configuration of one broker. Built by [`crate::ServerBuilder`].
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) server_name: Option<String>,
    /// What extensions offer (set by the builder from them).
    pub(crate) features: crate::extension::Features,
    /// Client listener address; `None` = no TCP listener (in-process clients only).
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) client_advertise: Option<String>,
    pub(crate) max_payload: usize,
    pub(crate) max_control_line: usize,
    pub(crate) max_pending: usize,
    pub(crate) max_connections: usize,
    /// 0 = unlimited (nats-server's default).
    pub(crate) max_subscriptions: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) max_pings_out: u32,
    pub(crate) write_deadline: Duration,
    pub(crate) auth_timeout: Duration,
    pub(crate) auth: Auth,
    pub(crate) lame_duck_duration: Duration,
    pub(crate) lame_duck_grace_period: Duration,
    /// How long `shutdown()` waits for each connection's pending output to drain.
    pub(crate) drain_timeout: Duration,
    pub(crate) no_fast_producer_stall: bool,
    /// Closed connections kept for monitoring (`max_closed_clients`).
    pub(crate) max_closed_clients: usize,
    /// Accounts besides `$G` (`accounts`).
    pub(crate) accounts: Vec<Account>,
    /// Users of `$G` (`authorization.users`).
    pub(crate) users: Vec<User>,
    /// Permissions of users without their own or their account's
    /// (`authorization { default_permissions }`).
    pub(crate) default_permissions: Option<crate::permissions::Permissions>,
    /// The user clients without credentials become (`no_auth_user`).
    pub(crate) no_auth_user: Option<String>,
    /// The system account's name (`system_account`); `None` = no system account
    /// (`no_system_account`).
    pub(crate) system_account: Option<String>,
    /// TLS on the client listener (`tls {}`).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::transport::tls::TlsConfig>,
    /// The embedder's authenticators, asked in order before the configured users.
    pub(crate) authenticators: crate::auth::Chain,
    /// Clients may connect without TLS when TLS is configured (`allow_non_tls`).
    pub(crate) allow_non_tls: bool,
    /// Trusted operator JWTs (`operator`): operator mode when any is set.
    pub(crate) operators: Vec<String>,
    /// Account JWTs of the MEMORY resolver, by public key (`resolver_preload`; an empty key
    /// stands for the JWT's own subject).
    pub(crate) resolver_preload: Vec<(String, String)>,
    /// What the operators trust, once checked at start ([`crate::operator::apply`]).
    pub(crate) trust: Option<std::sync::Arc<crate::operator::Trust>>,
    /// The WebSocket listener (`websocket {}`).
    #[cfg(feature = "websocket")]
    pub(crate) websocket: Option<crate::websocket::Websocket>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            server_name: None,
            features: Default::default(),
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
            auth_timeout: Duration::from_secs(2),
            auth: Auth::None,
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(2),
            no_fast_producer_stall: false,
            max_closed_clients: DEFAULT_MAX_CLOSED_CLIENTS,
            accounts: Vec::new(),
            users: Vec::new(),
            default_permissions: None,
            no_auth_user: None,
            system_account: Some(DEFAULT_SYSTEM_ACCOUNT.to_string()),
            #[cfg(feature = "tls")]
            tls: None,
            authenticators: crate::auth::Chain::default(),
            allow_non_tls: false,
            operators: Vec::new(),
            resolver_preload: Vec::new(),
            trust: None,
            #[cfg(feature = "websocket")]
            websocket: None,
        }
    }
}
