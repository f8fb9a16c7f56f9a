//! `/routez`: the cluster routes, with nats-server 2.9.10's keys, built from the same
//! per-route figures as `server.stats().route_stats` (empty until clustering fills them).

use std::time::SystemTime;

use serde::Serialize;

use super::format::{go_duration, rfc3339, uptime};
use super::{Handled, Monitor, Query, Reply};
use crate::stats::RouteStats;

#[derive(Serialize)]
struct Routez {
    server_id: String,
    now: String,
    num_routes: usize,
    routes: Vec<RouteInfo>,
}

/// One route, with nats-server's `RouteInfo` keys in its order.
#[derive(Serialize)]
struct RouteInfo {
    rid: u64,
    remote_id: String,
    did_solicit: bool,
    is_configured: bool,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    rtt: String,
    uptime: String,
    idle: String,
    pending_size: u64,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
}

impl RouteInfo {
    fn new(r: &RouteStats, now: SystemTime) -> Self {
        let (ip, port) = match r.addr {
            Some(a) => (a.ip().to_string(), a.port()),
            None => (String::new(), 0),
        };
        Self {
            rid: r.rid,
            remote_id: r.remote_id.clone(),
            did_solicit: r.did_solicit,
            is_configured: r.is_configured,
            ip,
            port,
            start: rfc3339(r.start),
            last_activity: rfc3339(r.last_activity),
            rtt: go_duration(r.rtt),
            uptime: uptime(now.duration_since(r.start).unwrap_or_default()),
            idle: uptime(now.duration_since(r.last_activity).unwrap_or_default()),
            pending_size: r.pending_bytes,
            in_msgs: r.in_msgs,
            out_msgs: r.out_msgs,
            in_bytes: r.in_bytes,
            out_bytes: r.out_bytes,
            subscriptions: r.subscriptions,
        }
    }
}

pub(super) fn routez(mon: &Monitor, query: &Query) -> Handled {
    // `subs=1|detail` is accepted; per-route subscription lists come with clustering.
    if query.get("subs") != Some("detail") {
        query.flag("subs")?;
    }
    let now = SystemTime::now();
    let routes: Vec<RouteInfo> = mon
        .shared
        .route_stats()
        .iter()
        .map(|r| RouteInfo::new(r, now))
        .collect();
    Ok(Reply::json(&Routez {
        server_id: mon.server_id(),
        now: rfc3339(now),
        num_routes: routes.len(),
        routes,
    }))
}
