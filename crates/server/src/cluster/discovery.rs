//! How peers are found: the cluster listener, seed dialers (retried with `transport::dial`'s
//! back-off for ever), the discovery poll (seeds re-resolved, embedder sources), and one-shot
//! dials of peers learned by gossip.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use super::route::{self, Outcome};
use crate::broker::Broker;
use crate::transport;
use crate::transport::addr::{parse_url, DEFAULT_ROUTE_PORT};
use crate::transport::dial::{self, jitter, Backoff};

/// nats-server's route dial timeout.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Backoff between failed attempts at a seed: starts small so a cluster forms fast, grows to
/// this cap.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// nats-server's `DEFAULT_ROUTE_RECONNECT` for explicit routes after a loss.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A peer address this node dials, with the credentials to present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DialTarget {
    /// `host:port`.
    pub(crate) addr: String,
    pub(crate) user: Option<String>,
    pub(crate) pass: Option<String>,
    /// Configured (seed/discovery) rather than learned by gossip.
    pub(crate) explicit: bool,
}

impl DialTarget {
    pub(crate) fn parse(url: &str, explicit: bool) -> Option<Self> {
        let url = parse_url(url, DEFAULT_ROUTE_PORT)?;
        Some(Self {
            addr: url.addr,
            user: url.user,
            pass: url.pass,
            explicit,
        })
    }
}

/// Starts the cluster side: the listener and the discovery poll.
pub(crate) fn start(broker: &Arc<Broker>, listener: TcpListener) {
    broker
        .lifecycle()
        .spawn(accept_loop(broker.clone(), listener));
    broker.lifecycle().spawn(discovery_loop(broker.clone()));
}

async fn accept_loop(broker: Arc<Broker>, listener: TcpListener) {
    let stop = broker.clone();
    transport::accept_loop(
        "route",
        listener,
        async move { stop.lifecycle().shutting_down().await },
        |stream, addr| {
            let broker2 = broker.clone();
            broker.lifecycle().spawn(async move {
                match broker2.route_tls().cloned() {
                    None => {
                        let (r, w) = stream.into_split();
                        route::serve(broker2, r, w, Some(addr), None).await;
                    }
                    #[cfg(feature = "tls")]
                    Some(tls) => {
                        // Routes: the handshake comes before INFO, on both sides.
                        let timeout = tls.config().handshake_timeout();
                        match tokio::time::timeout(timeout, tls.accept(stream)).await {
                            Ok(Ok(s)) => {
                                let stream = transport::Stream::Tls(Box::new(s.into()));
                                let (r, w) = stream.split();
                                route::serve(broker2, r, w, Some(addr), None).await;
                            }
                            Ok(Err(e)) => warn!(%addr, "TLS route handshake error: {e}"),
                            Err(_) => warn!(%addr, "TLS route handshake timeout"),
                        }
                    }
                    #[cfg(not(feature = "tls"))]
                    Some(tls) => match *tls {},
                }
            });
        },
    )
    .await;
}

/// Polls the seeds and the embedder's discovery source; starts a dialer for every address
/// not already being dialled. Seed dialers run for ever; a dialer for an address that an
/// embedder's source stops listing ends at its next failure.
async fn discovery_loop(broker: Arc<Broker>) {
    let routes = broker.routes().expect("a cluster");
    let wanted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tick = tokio::time::interval(routes.config().discovery_interval);
    loop {
        tokio::select! {
            biased;
            _ = broker.lifecycle().shutting_down() => break,
            _ = tick.tick() => {}
            _ = routes.rediscovery() => {}
        }
        let mut urls = routes.seeds();
        if let Some(source) = &routes.config().discovery {
            urls.extend(source.peers().await);
        }
        let mut now_wanted = HashSet::new();
        for url in urls {
            let Some(target) = DialTarget::parse(&url, true) else {
                warn!(%url, "ignoring a malformed seed");
                continue;
            };
            // A DNS name may stand for several peers: dial each address it resolves to.
            let addrs = match tokio::net::lookup_host(&target.addr).await {
                Ok(a) => a.map(|a| a.to_string()).collect::<Vec<_>>(),
                Err(e) => {
                    debug!(addr = %target.addr, error = %e, "seed does not resolve (yet)");
                    continue;
                }
            };
            for addr in addrs {
                now_wanted.insert(addr.clone());
                if routes.start_dialing(&addr) {
                    let t = DialTarget {
                        addr,
                        ..target.clone()
                    };
                    broker
                        .lifecycle()
                        .spawn(explicit_dialer(broker.clone(), t, wanted.clone()));
                }
            }
        }
        *wanted.lock() = now_wanted;
    }
}

/// Dials a configured peer for as long as it is wanted, with backoff between failures.
async fn explicit_dialer(
    broker: Arc<Broker>,
    target: DialTarget,
    wanted: Arc<Mutex<HashSet<String>>>,
) {
    let routes = broker.routes().expect("a cluster");
    let mut backoff = Backoff::new(Duration::from_millis(50), MAX_BACKOFF);
    loop {
        if broker.lifecycle().is_shutting_down() {
            break;
        }
        let delay = match dial_once(&broker, &target).await {
            Outcome::SelfRoute => {
                debug!(addr = %target.addr, "seed is this server itself");
                break;
            }
            Outcome::Closed(_) => {
                backoff.reset();
                RECONNECT_DELAY + jitter()
            }
            Outcome::Duplicate(existing) => {
                // Another connection to the same peer serves; watch it and re-dial when it
                // goes.
                tokio::select! {
                    _ = existing.conn.closing().cancelled() => {}
                    _ = broker.lifecycle().shutting_down() => break,
                }
                jitter()
            }
            Outcome::Failed => {
                if !is_seed(&broker, &target) && !wanted.lock().contains(&target.addr) {
                    break; // the discovery source no longer lists it
                }
                backoff.failed()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = broker.lifecycle().shutting_down() => break,
        }
        if !is_seed(&broker, &target) && !wanted.lock().contains(&target.addr) {
            break; // a reload removed the seed (the discovery round has run since)
        }
    }
    routes.done_dialing(&target.addr);
}

fn is_seed(broker: &Broker, target: &DialTarget) -> bool {
    let routes = broker.routes().expect("a cluster");
    routes
        .seeds()
        .iter()
        .filter_map(|s| DialTarget::parse(s, true))
        .any(|s| s.addr == target.addr)
}

/// Dials a peer learned by gossip, unless it is already connected or being dialled. Failed
/// attempts are retried `connect_retries` times; a peer that went away is then forgotten.
/// When both sides dial each other at once, each may keep the opposite connection and drop
/// the other (nats-server's first-registered-wins rule), losing both: so a dialer whose
/// connection lost to a duplicate watches the survivor and re-dials if it drops, and a route
/// that dropped after winning over a duplicate (`retry`) is re-dialled too.
pub(crate) fn dial_discovered(broker: &Arc<Broker>, addr: String) {
    let routes = broker.routes().expect("a cluster");
    if routes.connected_to_addr(&addr) || !routes.start_dialing(&addr) {
        return;
    }
    let broker2 = broker.clone();
    broker.lifecycle().spawn(async move {
        let routes = broker2.routes().expect("a cluster");
        let target = DialTarget {
            addr: addr.clone(),
            user: routes.config().user.clone(),
            pass: routes.config().password.clone(),
            explicit: false,
        };
        let mut failures_left = 1 + routes.config().connect_retries;
        loop {
            if broker2.lifecycle().is_shutting_down() {
                break;
            }
            match dial_once(&broker2, &target).await {
                Outcome::Closed(link) if link.retry() => {}
                Outcome::Closed(_) | Outcome::SelfRoute => break,
                Outcome::Duplicate(existing) => {
                    tokio::select! {
                        _ = existing.conn.closing().cancelled() => {}
                        _ = broker2.lifecycle().shutting_down() => break,
                    }
                    if !existing.retry() {
                        break; // it went away for good: forget the peer
                    }
                }
                Outcome::Failed => {
                    failures_left -= 1;
                    if failures_left == 0 {
                        break;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(jitter()) => {}
                _ = broker2.lifecycle().shutting_down() => break,
            }
        }
        routes.done_dialing(&addr);
    });
}

async fn dial_once(broker: &Arc<Broker>, target: &DialTarget) -> Outcome {
    let stream = tokio::select! {
        r = dial::connect(&target.addr, DIAL_TIMEOUT) => r,
        _ = broker.lifecycle().shutting_down() => return Outcome::Failed,
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => {
            debug!(addr = %target.addr, error = %e, "route dial failed");
            return Outcome::Failed;
        }
    };
    let remote = stream.peer_addr().ok();
    let outcome = match broker.route_tls().cloned() {
        None => {
            let (r, w) = stream.into_split();
            route::serve(broker.clone(), r, w, remote, Some(target.clone())).await
        }
        #[cfg(feature = "tls")]
        Some(tls) => {
            let name = tls_name(broker, &target.addr);
            let timeout = tls.config().handshake_timeout();
            match tokio::time::timeout(timeout, tls.connect(stream, &name)).await {
                Ok(Ok(s)) => {
                    let (r, w) = transport::Stream::Tls(Box::new(s.into())).split();
                    route::serve(broker.clone(), r, w, remote, Some(target.clone())).await
                }
                Ok(Err(e)) => {
                    warn!(addr = %target.addr, "TLS route handshake error: {e}");
                    Outcome::Failed
                }
                Err(_) => {
                    warn!(addr = %target.addr, "TLS route handshake timeout");
                    Outcome::Failed
                }
            }
        }
        #[cfg(not(feature = "tls"))]
        Some(tls) => match *tls {},
    };
    if let Outcome::Closed(link) = &outcome {
        info!(peer = %link.server_id, addr = %target.addr, "route to peer lost");
    }
    outcome
}

/// The name a route's certificate must carry: the host of `addr`, or, when that is an IP
/// address (a peer learned by gossip), the first host name among the configured seeds, as
/// nats-server picks it (`routeTLSName`); the IP itself when there is none.
#[cfg(feature = "tls")]
fn tls_name(broker: &Broker, addr: &str) -> String {
    let host = parse_url(addr, DEFAULT_ROUTE_PORT).map_or_else(|| addr.to_string(), |u| u.host);
    if host.parse::<std::net::IpAddr>().is_err() {
        return host;
    }
    let seeds = broker.routes().map(|r| r.seeds()).unwrap_or_default();
    seeds
        .iter()
        .filter_map(|s| parse_url(s, DEFAULT_ROUTE_PORT))
        .map(|u| u.host)
        .find(|h| h.parse::<std::net::IpAddr>().is_err())
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_urls() {
        let t = DialTarget::parse("nats-route://ruser:T0p@10.0.0.1:6222", true).unwrap();
        assert_eq!(t.addr, "10.0.0.1:6222");
        assert_eq!(t.user.as_deref(), Some("ruser"));
        assert_eq!(t.pass.as_deref(), Some("T0p"));
        let t = DialTarget::parse("seed.local:6222", true).unwrap();
        assert_eq!((t.addr.as_str(), t.user), ("seed.local:6222", None));
    }
}
