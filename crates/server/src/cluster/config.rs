//! Cluster configuration: where to listen for peers, how to find them, what to advertise.
//!
//! ```no_run
//! # async fn run() -> Result<(), starling_server::StartError> {
//! use starling_server::{Cluster, Server};
//! let server = Server::builder()
//!     .cluster(Cluster::new("storage").listen("0.0.0.0:6222").seeds(["nats://10.0.0.1:6222"]))
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Where a node finds its peers, polled periodically. Implement it to plug in your own
/// membership service; [`Cluster::seeds`] (static URLs, DNS names re-resolved on every poll)
/// covers the common case.
pub trait Discovery: Send + Sync + 'static {
    /// The cluster addresses (`host:port`, or `nats-route://[user:pass@]host:port`) of peers
    /// to connect to now. A node also learns peers from its peers (gossip), so one reachable
    /// peer is enough.
    fn peers(&self) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>>;
}

/// A fixed list of seed URLs; host names are resolved anew on every poll, and a name that
/// resolves to several addresses yields each of them.
#[derive(Clone, Debug, Default)]
pub struct Seeds(pub Vec<String>);

impl Discovery for Seeds {
    fn peers(&self) -> Pin<Box<dyn Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(async move { self.0.clone() })
    }
}

/// The cluster side of a broker.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) name: Option<String>,
    pub(crate) listen: String,
    pub(crate) seeds: Vec<String>,
    pub(crate) discovery: Option<Arc<dyn Discovery>>,
    pub(crate) advertise: Option<String>,
    pub(crate) no_advertise: bool,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) discovery_interval: Duration,
    pub(crate) connect_retries: u32,
    /// TLS on routes (`cluster { tls {} }`): both sides verify each other.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::TlsConfig>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("seeds", &self.seeds)
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster named `name` (nats-server's `cluster.name`). Peers with another name are
    /// refused. Listens on `0.0.0.0:6222` unless [`Self::listen`] says otherwise.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::unnamed()
        }
    }

    /// A cluster without a configured name: it picks a random one and adopts the name of
    /// the first named peer it meets (nats-server's dynamic cluster names).
    pub fn unnamed() -> Self {
        Self {
            name: None,
            listen: "0.0.0.0:6222".into(),
            seeds: Vec::new(),
            discovery: None,
            advertise: None,
            no_advertise: false,
            user: None,
            password: None,
            discovery_interval: Duration::from_secs(5),
            connect_retries: 0,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The address to listen on for peers (`host:port`, port 0 allowed).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Peers to connect to (nats-server's `routes`): `nats://host:port`,
    /// `nats-route://user:pass@host:port` or plain `host:port`. Dialled with backoff for ever;
    /// DNS names are re-resolved periodically and may resolve to several peers.
    pub fn seeds<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.seeds.extend(seeds.into_iter().map(Into::into));
        self
    }

    /// A discovery source of your own, polled every [`Self::discovery_interval`].
    pub fn discovery(mut self, source: impl Discovery) -> Self {
        self.discovery = Some(Arc::new(source));
        self
    }

    /// How often seeds and the discovery source are polled (default 5 s).
    pub fn discovery_interval(mut self, every: Duration) -> Self {
        self.discovery_interval = every;
        self
    }

    /// The `host:port` peers should use to reach this node (`cluster_advertise`), when the
    /// listen address is not reachable as is (NAT, containers).
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// Do not tell clients about the other nodes' client URLs (`no_advertise`).
    pub fn no_advertise(mut self, yes: bool) -> Self {
        self.no_advertise = yes;
        self
    }

    /// Credentials peers must present, and that this node presents to peers found by
    /// gossip (`cluster.authorization`).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// TLS on routes (nats-server's `cluster { tls {} }`): the handshake comes first, before
    /// INFO, and both sides present certificates verified against the config's `ca_file`
    /// (verification is always on for routes). Gossiped peers known only by IP are asked for
    /// the first host name among the seeds, as nats-server does.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Extra attempts for a peer learned by gossip before giving up (`connect_retries`,
    /// default 0).
    pub fn connect_retries(mut self, n: u32) -> Self {
        self.connect_retries = n;
        self
    }

    /// nats-server's checks: a name without spaces, a `host:port` to listen on, seeds that
    /// name a host.
    pub(crate) fn validate(&self) -> Result<(), crate::ConfigError> {
        let invalid = |option, reason: String| crate::ConfigError::Invalid { option, reason };
        if let Some(name) = &self.name {
            if name.contains(char::is_whitespace) {
                return Err(invalid(
                    "cluster.name",
                    format!("cluster name {name:?} cannot contain spaces or new lines"),
                ));
            }
        }
        match self.listen.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => {}
            _ => {
                return Err(invalid(
                    "cluster.listen",
                    format!("cluster.listen {:?} is not host:port", self.listen),
                ))
            }
        }
        for seed in &self.seeds {
            if crate::transport::addr::parse_url(seed, crate::transport::addr::DEFAULT_ROUTE_PORT)
                .is_none()
            {
                return Err(invalid(
                    "cluster.routes",
                    format!("route url {seed:?} names no host"),
                ));
            }
        }
        Ok(())
    }

    /// The first option that differs between `self` and `new` and cannot change while the
    /// server runs (everything but the seeds, which a reload adds and removes, and the TLS
    /// files, which it reads again), with both values for the message.
    pub(crate) fn fixed_difference(&self, new: &Self) -> Option<(&'static str, String, String)> {
        let pair = |a: &dyn fmt::Debug, b: &dyn fmt::Debug| (format!("{a:?}"), format!("{b:?}"));
        let differs: [(&'static str, bool, (String, String)); 5] = [
            (
                "cluster.name",
                self.name != new.name,
                pair(&self.name, &new.name),
            ),
            (
                "cluster.listen",
                self.listen != new.listen,
                pair(&self.listen, &new.listen),
            ),
            (
                "cluster.advertise",
                self.advertise != new.advertise || self.no_advertise != new.no_advertise,
                pair(&self.advertise, &new.advertise),
            ),
            (
                "cluster.authorization",
                self.user != new.user || self.password != new.password,
                ("[REDACTED]".into(), "[REDACTED]".into()),
            ),
            (
                "cluster.tls",
                tls_presence(self) != tls_presence(new),
                pair(&tls_presence(self), &tls_presence(new)),
            ),
        ];
        differs
            .into_iter()
            .find(|(_, d, _)| *d)
            .map(|(name, _, (old, new))| (name, old, new))
    }

    /// The seed URLs.
    pub(crate) fn seed_urls(&self) -> &[String] {
        &self.seeds
    }
}

/// Whether routes use TLS (turning it on or off needs a restart).
fn tls_presence(c: &Cluster) -> bool {
    #[cfg(feature = "tls")]
    return c.tls.is_some();
    #[cfg(not(feature = "tls"))]
    {
        let _ = c;
        false
    }
}

/// A peer this node has a route to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Peer {
    /// The peer's server id.
    pub server_id: String,
    /// The peer's server name.
    pub server_name: String,
    /// The peer's cluster address as advertised to others (`host:port`).
    pub cluster_addr: String,
    /// The remote end of the route's TCP connection.
    pub remote_addr: Option<SocketAddr>,
    /// Whether this node dialled the route (`did_solicit`).
    pub solicited: bool,
    /// The peer's client URLs.
    pub client_urls: Vec<String>,
}
