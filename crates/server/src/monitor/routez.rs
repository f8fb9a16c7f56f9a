//! `/routez`: the cluster routes, with nats-server 2.9.10's keys (no `remote_name`, which
//! came with 2.10), built from the same per-route figures as `server.stats().route_stats`.
//! `subs=1` lists the subjects each peer is interested in, `subs=detail` the subscriptions.

use std::time::SystemTime;

use serde::Serialize;

use super::connz::SubDetail;
use super::format::uptime;
use super::{Handled, Monitor, Query};
use crate::cluster::RouteLink;
use crate::gotime::{go_duration, rfc3339};
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
    /// Go's `Duration.String()`: `"0s"` until measured, so always present.
    rtt: String,
    uptime: String,
    idle: String,
    pending_size: u64,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list_detail: Vec<SubDetail>,
}

/// What `subs=` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Subs {
    None,
    List,
    Detail,
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
            subscriptions_list: Vec::new(),
            subscriptions_list_detail: Vec::new(),
        }
    }

    /// Lists the peer's interest, as nats-server does for a route: the sid is
    /// `account subject [queue]`, the cid the route's.
    fn list_subs(&mut self, link: &RouteLink, subs: Subs) {
        let mut detail: Vec<SubDetail> = link
            .remote_interest()
            .into_iter()
            .map(|(key, subject, queue, msgs)| SubDetail {
                account: String::new(),
                subject,
                qgroup: queue.unwrap_or_default(),
                sid: key,
                msgs,
                max: 0,
                cid: link.conn.cid,
            })
            .collect();
        detail.sort_by(|a, b| a.sid.cmp(&b.sid));
        match subs {
            Subs::None => {}
            Subs::List => self.subscriptions_list = detail.into_iter().map(|d| d.subject).collect(),
            Subs::Detail => self.subscriptions_list_detail = detail,
        }
    }
}

pub(super) fn routez(mon: &Monitor<'_>, query: &Query) -> Handled {
    let subs = match query.get("subs") {
        Some("detail") => Subs::Detail,
        _ if query.flag("subs")? => Subs::List,
        _ => Subs::None,
    };
    let now = SystemTime::now();
    let routes: Vec<RouteInfo> = mon
        .view()
        .route_links()
        .iter()
        .map(|link| {
            let mut info = RouteInfo::new(&link.stats(), now);
            if subs != Subs::None {
                info.list_subs(link, subs);
            }
            info
        })
        .collect();
    Ok(mon.json(&Routez {
        server_id: mon.server_id(),
        now: rfc3339(now),
        num_routes: routes.len(),
        routes,
    }))
}
