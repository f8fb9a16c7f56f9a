//! Read-only views of a running broker: what monitoring (`/varz`, `/connz`, ...), the system
//! account's services and `server.stats()` report. Nothing here changes the broker, and nothing
//! is held across an `.await`: each method takes a snapshot under short locks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use starling_sublist::SublistStats;

use crate::account::Account;
use crate::broker::Broker;
use crate::cluster::{RouteLink, Routes};
use crate::config::Config;
use crate::conn::Conn;
use crate::monitor::MonitorState;
use crate::registry::ClosedConn;
use crate::stats::{RouteStats, Stats, SublistFigures};

/// A read-only view of one broker.
#[derive(Clone, Copy)]
pub(crate) struct View<'b> {
    broker: &'b Broker,
}

impl<'b> View<'b> {
    pub(crate) fn new(broker: &'b Broker) -> Self {
        Self { broker }
    }

    pub(crate) fn server_id(&self) -> &'b str {
        self.broker.identity().server_id()
    }

    pub(crate) fn server_name(&self) -> &'b str {
        self.broker.identity().server_name()
    }

    pub(crate) fn start(&self) -> SystemTime {
        self.broker.identity().start()
    }

    pub(crate) fn config_loaded(&self) -> SystemTime {
        self.broker.identity().config_loaded()
    }

    pub(crate) fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.broker.config()
    }

    pub(crate) fn client_addr(&self) -> Option<SocketAddr> {
        self.broker.identity().client_addr()
    }

    /// Whether the monitor serves HTTPS.
    pub(crate) fn monitor_https(&self) -> bool {
        self.broker.monitor_tls().is_some()
    }

    pub(crate) fn monitor_addr(&self) -> Option<SocketAddr> {
        self.broker.identity().monitor_addr()
    }

    /// What the monitoring endpoints keep between requests.
    pub(crate) fn monitor(&self) -> &'b MonitorState {
        self.broker.monitor()
    }

    /// The client listener's TLS, if any.
    pub(crate) fn tls(&self) -> Option<&'b crate::transport::Tls> {
        self.broker.tls().map(|t| &**t)
    }

    /// The WebSocket listener's state.
    #[cfg(feature = "websocket")]
    pub(crate) fn websocket(&self) -> &'b crate::websocket::State {
        self.broker.websocket()
    }

    pub(crate) fn auth_required(&self) -> bool {
        self.broker.auth().auth_required()
    }

    pub(crate) fn is_lame_duck(&self) -> bool {
        self.broker.lifecycle().is_lame_duck()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.broker.lifecycle().is_shutting_down()
    }

    /// The system account's name, if there is one.
    pub(crate) fn system_account(&self) -> Option<&'b str> {
        self.broker.accounts().system().map(|a| a.name())
    }

    /// The cluster side, if clustering is on.
    pub(crate) fn routes(&self) -> Option<&'b Routes> {
        self.broker.routes().map(|r| &**r)
    }

    /// The cluster's client URLs as `/varz` lists them: from the first time a route connected
    /// on (a clustered node that never met a peer lists none).
    pub(crate) fn varz_connect_urls(&self) -> Vec<String> {
        if self.broker.routes().is_some() && self.broker.identity().urls_version() > 0 {
            self.broker.connect_urls()
        } else {
            Vec::new()
        }
    }

    /// Open client connections.
    pub(crate) fn clients(&self) -> Vec<Arc<Conn>> {
        self.broker.registry().snapshot()
    }

    /// Closed client connections kept, oldest first.
    pub(crate) fn closed(&self) -> Vec<Arc<ClosedConn>> {
        self.broker.registry().closed()
    }

    /// Every account, by name.
    pub(crate) fn accounts(&self) -> Vec<Arc<Account>> {
        self.broker.accounts().all()
    }

    pub(crate) fn account(&self, name: &str) -> Option<&'b Arc<Account>> {
        self.broker.accounts().get(name)
    }

    /// The open routes, in the order they registered.
    pub(crate) fn route_links(&self) -> Vec<Arc<RouteLink>> {
        self.broker.routes().map(|r| r.links()).unwrap_or_default()
    }

    /// Figures of every open route, in the order they registered.
    pub(crate) fn route_stats(&self) -> Vec<RouteStats> {
        self.route_links().iter().map(|l| l.stats()).collect()
    }

    /// The sublists' figures, summed over every account (or of `account` only) as nats-server
    /// sums them.
    pub(crate) fn sublist_stats(&self, account: Option<&str>) -> SublistStats {
        let mut total = SublistStats::default();
        for a in self.broker.accounts().all() {
            if account.is_none_or(|name| name == a.name()) {
                total.merge(&a.sublist_stats());
            }
        }
        total
    }

    /// A snapshot of the broker's figures.
    pub(crate) fn stats(&self) -> Stats {
        let registry = self.broker.registry();
        let clients = registry.snapshot();
        let (mut out_msgs, mut out_bytes) = registry.retired_out();
        let mut pending_bytes = 0;
        for c in &clients {
            let (m, b) = c.out_counts();
            out_msgs += m;
            out_bytes += b;
            pending_bytes += c.pending_bytes() as u64;
        }
        // As nats-server counts: traffic over routes is part of the server's totals.
        let route_stats = self.route_stats();
        for r in &route_stats {
            out_msgs += r.out_msgs;
            out_bytes += r.out_bytes;
            pending_bytes += r.pending_bytes;
        }
        let sublist = self.sublist_stats(None);
        let (in_msgs, in_bytes, slow_consumers) = self.broker.counters().get();
        let start = self.start();
        Stats {
            connections: clients.len(),
            total_connections: registry.total(),
            subscriptions: sublist.num_subscriptions as usize,
            in_msgs,
            in_bytes,
            out_msgs,
            out_bytes,
            slow_consumers,
            start,
            uptime: start.elapsed().unwrap_or_default(),
            closed_connections: registry.total_closed(),
            pending_bytes,
            routes: route_stats.len(),
            route_stats,
            leafnodes: 0,
            sublist: SublistFigures::from_sublist(&sublist),
        }
    }
}
