//! WebSocket configuration: nats-server's `websocket {}` block.
//!
//! ```no_run
//! # async fn run() -> Result<(), starling_server::StartError> {
//! use starling_server::{Server, Websocket};
//! let server = Server::builder()
//!     .websocket(Websocket::new().listen("0.0.0.0:8080").no_tls(true).compression(true))
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::config::Auth;

/// The WebSocket listener for NATS clients (browsers with nats.ws, nats.py's `ws://`, ...):
/// nats-server's `websocket { listen no_tls tls compression same_origin allowed_origins
/// handshake_timeout jwt_cookie authorization no_auth_user headers }`.
///
/// As in nats-server, a listener without TLS must say so with [`Self::no_tls`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Websocket {
    pub(crate) listen: String,
    pub(crate) advertise: Option<String>,
    pub(crate) no_tls: bool,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::TlsConfig>,
    pub(crate) compression: bool,
    pub(crate) same_origin: bool,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) jwt_cookie: Option<String>,
    pub(crate) user_cookie: Option<String>,
    pub(crate) pass_cookie: Option<String>,
    pub(crate) token_cookie: Option<String>,
    pub(crate) auth: Auth,
    pub(crate) auth_timeout: Option<Duration>,
    pub(crate) no_auth_user: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl Default for Websocket {
    fn default() -> Self {
        Self::new()
    }
}

impl Websocket {
    /// A WebSocket listener on `0.0.0.0:8080` (nats-server has no default port: the config
    /// file's `port` or `listen` gives it).
    pub fn new() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            advertise: None,
            no_tls: false,
            #[cfg(feature = "tls")]
            tls: None,
            compression: false,
            same_origin: false,
            allowed_origins: Vec::new(),
            handshake_timeout: Duration::ZERO,
            jwt_cookie: None,
            user_cookie: None,
            pass_cookie: None,
            token_cookie: None,
            auth: Auth::None,
            auth_timeout: None,
            no_auth_user: None,
            headers: Vec::new(),
        }
    }

    /// Where to listen (`listen`, or `host` and `port`): `"host:port"`, port 0 picks one
    /// (see [`crate::Server::websocket_addr`]).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// The `host:port` advertised to clients (`advertise`).
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// Serve plain `ws://` (`no_tls: true`); without it, [`Self::tls`] is required.
    pub fn no_tls(mut self, yes: bool) -> Self {
        self.no_tls = yes;
        self
    }

    /// Serve `wss://` with this TLS configuration (`tls {}`); INFO then says `tls_required`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Offer permessage-deflate to clients that ask for it (`compression`, default off).
    pub fn compression(mut self, yes: bool) -> Self {
        self.compression = yes;
        self
    }

    /// Refuse (403) an upgrade whose `Origin` is not this listener's own scheme, host and
    /// port (`same_origin`). A request without `Origin` is accepted, as in nats-server.
    pub fn same_origin(mut self, yes: bool) -> Self {
        self.same_origin = yes;
        self
    }

    /// Accept upgrades only from these origins (`allowed_origins`: `http(s)://host[:port]`);
    /// a request without `Origin` is accepted.
    pub fn allowed_origins<S: Into<String>>(
        mut self,
        origins: impl IntoIterator<Item = S>,
    ) -> Self {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// How long a client has for the HTTP upgrade, TLS included (`handshake_timeout`; zero,
    /// the default, waits as long as the client takes, as nats-server does).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// The cookie a user JWT is read from when CONNECT carries none (`jwt_cookie`; operator
    /// mode only).
    pub fn jwt_cookie(mut self, name: impl Into<String>) -> Self {
        self.jwt_cookie = Some(name.into());
        self
    }

    /// The cookie a user name is read from when CONNECT carries none (`user_cookie`).
    pub fn user_cookie(mut self, name: impl Into<String>) -> Self {
        self.user_cookie = Some(name.into());
        self
    }

    /// The cookie a password is read from when CONNECT carries none (`pass_cookie`).
    pub fn pass_cookie(mut self, name: impl Into<String>) -> Self {
        self.pass_cookie = Some(name.into());
        self
    }

    /// The cookie a token is read from when CONNECT carries none (`token_cookie`).
    pub fn token_cookie(mut self, name: impl Into<String>) -> Self {
        self.token_cookie = Some(name.into());
        self
    }

    /// The user name and password, or the token, WebSocket clients must present instead of
    /// the server's own (`authorization { user password token }` in the `websocket` block).
    /// Not allowed with configured users, as in nats-server.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// How long a WebSocket client has to authenticate (`authorization { timeout }`;
    /// the server's `auth_timeout` when not set).
    pub fn auth_timeout(mut self, d: Duration) -> Self {
        self.auth_timeout = Some(d);
        self
    }

    /// The user WebSocket clients without credentials become, instead of the server's
    /// `no_auth_user` (`no_auth_user`).
    pub fn no_auth_user(mut self, name: impl Into<String>) -> Self {
        self.no_auth_user = Some(name.into());
        self
    }

    /// An HTTP header to add to every upgrade response (`headers { NAME: VALUE }`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The listener's TLS configuration, if it serves `wss://`.
    #[cfg(feature = "tls")]
    pub(crate) fn tls_config(&self) -> Option<&crate::TlsConfig> {
        self.tls.as_ref()
    }

    /// The block without its TLS settings (what a reload may not change).
    pub(crate) fn without_tls(&self) -> Self {
        #[allow(unused_mut)]
        let mut w = self.clone();
        #[cfg(feature = "tls")]
        {
            w.tls = w.tls.as_ref().map(|_| crate::TlsConfig::new("", ""));
        }
        w
    }

    /// Whether the block overrides the server's authentication for WebSocket clients
    /// (nats-server's `authOverride`).
    pub(crate) fn auth_override(&self) -> bool {
        self.auth.is_required() || self.no_auth_user.is_some()
    }

    /// nats-server's `validateWebsocketOptions`, with its texts.
    pub(crate) fn validate(&self, opts: &crate::config::Config) -> Result<(), String> {
        #[cfg(feature = "tls")]
        let has_tls = self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let has_tls = false;
        if !has_tls && !self.no_tls {
            return Err("websocket requires TLS configuration".into());
        }
        for origin in &self.allowed_origins {
            super::handshake::parse_allowed_origin(origin)?;
        }
        if let Some(name) = &self.no_auth_user {
            let known = opts.users.iter().any(|u| &u.name == name)
                || opts
                    .accounts
                    .iter()
                    .any(|a| a.users.iter().any(|u| &u.name == name));
            if !known {
                return Err(format!(
                    "no_auth_user: {name:?} not present as user or nkey in authorization block or account configuration"
                ));
            }
        }
        let users = !opts.users.is_empty() || opts.accounts.iter().any(|a| !a.users.is_empty());
        if users {
            match &self.auth {
                Auth::UserPassword { .. } => return Err(
                    "websocket authentication username not compatible with presence of users/nkeys"
                        .into(),
                ),
                Auth::Token(_) => return Err(
                    "websocket authentication token not compatible with presence of users/nkeys"
                        .into(),
                ),
                _ => {}
            }
        }
        if let Some(cookie) = &self.jwt_cookie {
            if opts.operators.is_empty() {
                return Err(format!(
                    "trusted operators or trusted keys configuration is required for JWT authentication via cookie {cookie:?}"
                ));
            }
        }
        for (name, _) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "host" | "content-length" | "connection" | "upgrade" | "nats-no-masking"
            ) {
                return Err(format!("websocket: invalid header {name:?} not allowed"));
            }
            if lower.starts_with("sec-websocket-") {
                return Err(format!(
                    "websocket: invalid header {name:?}, \"Sec-WebSocket-\" prefix not allowed"
                ));
            }
        }
        Ok(())
    }
}
