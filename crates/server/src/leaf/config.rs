//! Leafnode configuration (nats-server's `leafnodes {}` block): where to accept leafnodes,
//! how they authenticate, and the hubs ("remotes") this server joins as a leaf.
//!
//! ```no_run
//! # async fn run() -> Result<(), starling_server::StartError> {
//! use starling_server::{Leafnodes, Remote, Server};
//! // An edge node: serves its local clients and joins a hub over one outbound connection.
//! let leaf = Server::builder()
//!     .listen("127.0.0.1:4222")
//!     .leafnodes(Leafnodes::new().remote(Remote::new("nats://hub.example:7422")))
//!     .start()
//!     .await?;
//! // A hub: accepts leafnodes on 7422.
//! let hub = Server::builder()
//!     .leafnodes(Leafnodes::new().listen("0.0.0.0:7422"))
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// nats-server's `DEFAULT_LEAFNODE_PORT`.
pub const DEFAULT_LEAFNODE_PORT: u16 = 7422;
/// nats-server's `DEFAULT_LEAF_NODE_RECONNECT`: the wait before re-dialling a lost hub.
pub const DEFAULT_LEAF_RECONNECT: Duration = Duration::from_secs(1);
/// nats-server's delay before re-dialling a hub that reported a loop
/// (`leafNodeReconnectDelayAfterLoopDetected`).
pub const LOOP_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// The leafnode side of a broker: accept leafnodes ([`Self::listen`]), join hubs
/// ([`Self::remote`]), or both (a daisy chain).
#[derive(Clone, Default, PartialEq)]
pub struct Leafnodes {
    pub(crate) listen: Option<String>,
    pub(crate) advertise: Option<String>,
    pub(crate) no_advertise: bool,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    /// The account a leafnode authenticated by `user`/`password` (or by no one) is bound to.
    pub(crate) account: Option<String>,
    pub(crate) users: Vec<LeafUser>,
    pub(crate) auth_timeout: Option<Duration>,
    pub(crate) remotes: Vec<Remote>,
    pub(crate) reconnect: Option<Duration>,
    /// TLS on the leafnode listener (`leafnodes { tls {} }`).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::TlsConfig>,
}

impl fmt::Debug for Leafnodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leafnodes")
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("account", &self.account)
            .field("users", &self.users.len())
            .field("remotes", &self.remotes)
            .finish_non_exhaustive()
    }
}

impl Leafnodes {
    /// Nothing accepted, no hub joined: add [`Self::listen`] and/or [`Self::remote`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts leafnodes on `addr` (`"host:port"`; port 0 picks a free port). nats-server's
    /// `leafnodes { listen }` (`port`/`host`).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// The `host:port` leafnodes should dial to reach this server (`leafnodes { advertise }`),
    /// sent to them in `leafnode_urls`.
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// Leaves this server's leafnode URL out of the `leafnode_urls` it sends
    /// (`leafnodes { no_advertise }`).
    pub fn no_advertise(mut self, yes: bool) -> Self {
        self.no_advertise = yes;
        self
    }

    /// The one user and password leafnodes must present (`leafnodes { authorization { user
    /// password } }`). Without leafnode authorization a leafnode authenticates as a client
    /// does (the server's users and accounts), as in nats-server.
    pub fn authorization(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// The account leafnodes authenticated by [`Self::authorization`] are bound to
    /// (`leafnodes { authorization { account } }`); `$G` by default.
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// One of several leafnode users, each bound to its account (`leafnodes { authorization {
    /// users [...] } }`).
    pub fn user(mut self, user: LeafUser) -> Self {
        self.users.push(user);
        self
    }

    /// How long an accepted leafnode has to send its CONNECT (`authorization { timeout }`);
    /// the server's `auth_timeout` by default.
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = Some(timeout);
        self
    }

    /// Joins a hub as a leaf (`leafnodes { remotes [...] }`); may be called for several hubs.
    pub fn remote(mut self, remote: Remote) -> Self {
        self.remotes.push(remote);
        self
    }

    /// The wait before re-dialling a lost hub (`leafnodes { reconnect }`, 1 s by default);
    /// repeated failures back off from it.
    pub fn reconnect(mut self, wait: Duration) -> Self {
        self.reconnect = Some(wait);
        self
    }

    /// TLS on the leafnode listener (`leafnodes { tls {} }`): the accepting side sends INFO
    /// with `tls_required`, then the leaf starts the TLS handshake (unless `handshake_first`).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    pub(crate) fn reconnect_delay(&self) -> Duration {
        self.reconnect.unwrap_or(DEFAULT_LEAF_RECONNECT)
    }

    pub(crate) fn has_authorization(&self) -> bool {
        self.user.is_some() || !self.users.is_empty()
    }
}

/// One leafnode user of the accepting side (`leafnodes { authorization { users [ { user
/// password account } ] } }`).
#[derive(Clone, PartialEq)]
pub struct LeafUser {
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) account: Option<String>,
}

impl fmt::Debug for LeafUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafUser")
            .field("user", &self.user)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl LeafUser {
    /// A user of `$G` (see [`Self::account`]).
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
            account: None,
        }
    }

    /// The account the leafnode is bound to.
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }
}

/// A hub this server joins as a leaf (one entry of `leafnodes { remotes [...] }`).
///
/// The connection binds one local account ([`Self::account`], `$G` by default) to the account
/// the hub gives the credentials: the hub's interest in that account reaches the local
/// account as subscriptions, and local interest goes the other way.
#[derive(Clone, PartialEq)]
pub struct Remote {
    pub(crate) urls: Vec<String>,
    pub(crate) account: Option<String>,
    pub(crate) credentials: Option<PathBuf>,
    pub(crate) deny_imports: Vec<String>,
    pub(crate) deny_exports: Vec<String>,
    /// TLS to the hub (`remotes [ { tls {} } ]`).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::TlsConfig>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may carry a password.
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|u| match url::Url::parse(u) {
                Ok(mut parsed) if parsed.password().is_some() => {
                    let _ = parsed.set_password(Some("xxxxx"));
                    parsed.to_string()
                }
                _ => u.clone(),
            })
            .collect();
        f.debug_struct("Remote")
            .field("urls", &urls)
            .field("account", &self.account)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// A hub at `url` (`nats-leaf://[user:pass@]host[:port]`, `nats://...`, or `host:port`;
    /// port 7422 by default).
    pub fn new(url: impl Into<String>) -> Self {
        Self::urls([url.into()])
    }

    /// A hub reachable at any of `urls` (tried in turn; `remotes [ { urls [...] } ]`).
    pub fn urls<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            account: None,
            credentials: None,
            deny_imports: Vec::new(),
            deny_exports: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The local account bound to the hub (`remotes [ { account } ]`); `$G` by default.
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// A NATS credentials file (user JWT and seed) to authenticate with
    /// (`remotes [ { credentials } ]`): the JWT is sent and the hub's nonce signed.
    pub fn credentials(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials = Some(path.into());
        self
    }

    /// Subjects (wildcards allowed) the hub's messages are not taken on
    /// (`remotes [ { deny_imports } ]`): interest in them is not sent to the hub, and the
    /// hub's messages on them are dropped.
    pub fn deny_imports<I, S>(mut self, subjects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.deny_imports = subjects.into_iter().map(Into::into).collect();
        self
    }

    /// Subjects (wildcards allowed) local messages are not sent to the hub on
    /// (`remotes [ { deny_exports } ]`): the hub's interest in them is ignored.
    pub fn deny_exports<I, S>(mut self, subjects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.deny_exports = subjects.into_iter().map(Into::into).collect();
        self
    }

    /// What the hub may send here and be sent, as permissions of the connection (the hub
    /// "publishes" to us what we import, and "subscribes" to what we export).
    pub(crate) fn permissions(&self) -> Option<crate::Permissions> {
        if self.deny_imports.is_empty() && self.deny_exports.is_empty() {
            return None;
        }
        use crate::SubjectPermission;
        Some(
            crate::Permissions::new()
                .publish(SubjectPermission::new().deny(self.deny_imports.iter().cloned()))
                .subscribe(SubjectPermission::new().deny(self.deny_exports.iter().cloned())),
        )
    }

    /// TLS to the hub (`remotes [ { tls {} } ]`). Also used when the hub's INFO says
    /// `tls_required`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }
}
