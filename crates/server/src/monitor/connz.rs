//! `/connz`: open and closed client connections, with nats-server 2.9.10's query options
//! (`sort`, `subs=1|detail`, `offset`, `limit`, `cid`, `state`, `auth`, `user`, `acc`) and its
//! error texts.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::format::{is_zero, uptime};
use super::{page, BadRequest, Handled, Monitor, Query};
use crate::conn::{Conn, ConnKind, ConnMeta};
use crate::gotime::{go_duration, rfc3339};
use crate::registry::{sid_order, ClosedConn};

#[derive(Serialize)]
struct Connz {
    server_id: String,
    now: String,
    num_connections: usize,
    total: usize,
    offset: usize,
    limit: usize,
    connections: Vec<ConnInfo>,
}

/// One connection, with nats-server's `ConnInfo` keys in its order; empty optional fields are
/// left out as Go's `omitempty` leaves them out.
#[derive(Serialize)]
struct ConnInfo {
    cid: u64,
    kind: &'static str,
    #[serde(rename = "type")]
    conn_type: &'static str,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    rtt: String,
    uptime: String,
    idle: String,
    pending_bytes: usize,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    tls_version: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    tls_cipher_suite: String,
    #[serde(skip_serializing_if = "is_zero")]
    tls_first: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    authorized_user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    account: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list_detail: Vec<SubDetail>,
}

/// A subscription in `/connz?subs=detail` and `/subsz?subs=1`.
#[derive(Serialize)]
pub(super) struct SubDetail {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) account: String,
    pub(super) subject: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) qgroup: String,
    pub(super) sid: String,
    pub(super) msgs: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) max: u64,
    pub(super) cid: u64,
}

/// How `/connz` sorts (`sort=`), as nats-server names the options.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
    Rtt,
}

impl SortBy {
    fn parse(s: &str) -> Result<Self, BadRequest> {
        Ok(match s {
            "" | "cid" => Self::Cid,
            "start" => Self::Start,
            "subs" => Self::Subs,
            "pending" => Self::Pending,
            "msgs_to" => Self::MsgsTo,
            "msgs_from" => Self::MsgsFrom,
            "bytes_to" => Self::BytesTo,
            "bytes_from" => Self::BytesFrom,
            "last" => Self::Last,
            "idle" => Self::Idle,
            "uptime" => Self::Uptime,
            "stop" => Self::Stop,
            "reason" => Self::Reason,
            "rtt" => Self::Rtt,
            other => return Err(BadRequest(format!("invalid sorting option: {other}"))),
        })
    }
}

/// Which connections `state=` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    Any,
}

/// How subscriptions are listed (`subs=`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Subs {
    None,
    List,
    Detail,
}

/// A connection's figures, the same for open and closed ones.
struct Row {
    cid: u64,
    kind: ConnKind,
    account: String,
    meta: ConnMeta,
    start: SystemTime,
    last: SystemTime,
    stop: Option<(SystemTime, &'static str)>,
    rtt: Duration,
    pending: usize,
    in_msgs: u64,
    in_bytes: u64,
    out_msgs: u64,
    out_bytes: u64,
    num_subs: usize,
    /// Filled only when subscriptions are asked for.
    subs: Vec<SubDetail>,
}

impl Row {
    fn open(conn: &Conn, subs: Subs) -> Self {
        let (out_msgs, out_bytes) = conn.out_counts();
        let (in_msgs, in_bytes) = conn.in_counts();
        let (num_subs, list) = {
            let held = conn.subs.lock();
            let list = if subs == Subs::None {
                Vec::new()
            } else {
                held.values()
                    .map(|o| SubDetail {
                        // nats-server leaves the account out of open connections' details.
                        account: String::new(),
                        subject: lossy(o.handle.subject()),
                        qgroup: o.handle.queue().map(lossy).unwrap_or_default(),
                        sid: lossy(&o.sub.sid),
                        msgs: o.sub.delivered.load(Ordering::Relaxed),
                        max: o.sub.max.load(Ordering::Relaxed),
                        cid: conn.cid,
                    })
                    .collect()
            };
            (held.len(), list)
        };
        Self {
            cid: conn.cid,
            kind: conn.kind,
            account: conn
                .account()
                .map(|a| a.name().to_string())
                .unwrap_or_default(),
            meta: conn.meta.lock().clone(),
            start: conn.start,
            last: conn.last_activity(),
            stop: None,
            rtt: conn.rtt(),
            pending: conn.pending_bytes(),
            in_msgs,
            in_bytes,
            out_msgs,
            out_bytes,
            num_subs,
            subs: sorted(list),
        }
    }

    fn closed(c: &ClosedConn, subs: Subs) -> Self {
        let list = if subs == Subs::None {
            Vec::new()
        } else {
            c.subs
                .iter()
                .map(|s| SubDetail {
                    account: c.account.clone(),
                    subject: s.subject.clone(),
                    qgroup: s.queue.clone().unwrap_or_default(),
                    sid: s.sid.clone(),
                    msgs: s.msgs,
                    max: s.max,
                    cid: c.cid,
                })
                .collect()
        };
        Self {
            cid: c.cid,
            kind: c.kind,
            account: c.account.clone(),
            meta: c.meta.clone(),
            start: c.start,
            last: c.last_activity,
            stop: Some((c.stop, c.reason.as_str())),
            rtt: c.rtt,
            pending: c.pending_bytes,
            in_msgs: c.in_msgs,
            in_bytes: c.in_bytes,
            out_msgs: c.out_msgs,
            out_bytes: c.out_bytes,
            num_subs: c.subs.len(),
            subs: list,
        }
    }

    /// Where the clock stops for uptime and idle: now for open connections.
    fn end(&self, now: SystemTime) -> SystemTime {
        self.stop.map_or(now, |(stop, _)| stop)
    }

    fn uptime(&self, now: SystemTime) -> Duration {
        self.end(now).duration_since(self.start).unwrap_or_default()
    }

    fn idle(&self, now: SystemTime) -> Duration {
        self.end(now).duration_since(self.last).unwrap_or_default()
    }

    fn info(self, now: SystemTime, subs: Subs, auth: bool) -> ConnInfo {
        let (ip, port) = match self.meta.addr {
            Some(a) => (a.ip().to_string(), a.port()),
            None => (String::new(), 0),
        };
        let (up, idle) = (self.uptime(now), self.idle(now));
        let (list, detail) = match subs {
            Subs::None => (Vec::new(), Vec::new()),
            Subs::List => (
                self.subs.into_iter().map(|s| s.subject).collect(),
                Vec::new(),
            ),
            Subs::Detail => (Vec::new(), self.subs),
        };
        #[cfg(feature = "tls")]
        let (tls_version, tls_cipher_suite, tls_first) = match &self.meta.tls {
            Some(t) => (t.version, t.cipher_suite.clone(), t.first),
            None => ("", String::new(), false),
        };
        #[cfg(not(feature = "tls"))]
        let (tls_version, tls_cipher_suite, tls_first) = ("", String::new(), false);
        ConnInfo {
            cid: self.cid,
            kind: "Client",
            conn_type: match self.kind {
                // nats-server's client type for a client that came over WebSocket.
                ConnKind::Client if self.meta.websocket => "websocket",
                ConnKind::Client => "nats",
                ConnKind::InProcess => "inprocess",
                // Routes are listed by /routez, leafnodes by /leafz, internal connections
                // nowhere.
                ConnKind::Route => "route",
                ConnKind::Leaf => "leafnode",
                ConnKind::Internal => "internal",
            },
            ip,
            port,
            start: rfc3339(self.start),
            last_activity: rfc3339(self.last),
            stop: self.stop.map(|(t, _)| rfc3339(t)),
            reason: self.stop.map(|(_, r)| r),
            rtt: go_duration(self.rtt),
            uptime: uptime(up),
            idle: uptime(idle),
            pending_bytes: self.pending,
            in_msgs: self.in_msgs,
            out_msgs: self.out_msgs,
            in_bytes: self.in_bytes,
            out_bytes: self.out_bytes,
            subscriptions: self.num_subs,
            name: self.meta.name.unwrap_or_default(),
            lang: self.meta.lang.unwrap_or_default(),
            version: self.meta.version.unwrap_or_default(),
            tls_version,
            tls_cipher_suite,
            tls_first,
            authorized_user: if auth {
                self.meta.user.unwrap_or_default()
            } else {
                String::new()
            },
            // As nats-server: with `auth`, and not for the global account.
            account: if auth && self.account != crate::account::GLOBAL_ACCOUNT {
                self.account
            } else {
                String::new()
            },
            subscriptions_list: list,
            subscriptions_list_detail: detail,
        }
    }
}

pub(super) fn connz(mon: &Monitor<'_>, query: &Query) -> Handled {
    let sort = SortBy::parse(query.get("sort").unwrap_or(""))?;
    let subs = match query.get("subs") {
        Some("detail") => Subs::Detail,
        _ if query.flag("subs")? => Subs::List,
        _ => Subs::None,
    };
    let auth = query.flag("auth")?;
    let state = match query.get("state").unwrap_or("") {
        "" | "open" => State::Open,
        "closed" => State::Closed,
        "any" | "all" => State::Any,
        other => return Err(BadRequest(format!("Error decoding state for {other}"))),
    };
    if matches!(sort, SortBy::Stop | SortBy::Reason) && state != State::Closed {
        let name = if sort == SortBy::Stop {
            "stop"
        } else {
            "reason"
        };
        return Err(BadRequest(format!(
            "sort by {name} only valid on closed connections"
        )));
    }
    let cid = query.int("cid")?.filter(|c| *c > 0).map(|c| c as u64);
    let (offset, mut limit) = query.page()?;
    let user = query.get("user").filter(|u| !u.is_empty());
    let acc = query.get("acc").filter(|a| !a.is_empty());
    let view = mon.view();
    let open: Vec<Arc<Conn>> = match (state, acc) {
        (State::Closed, _) => Vec::new(),
        (_, None) => view.clients(),
        // nats-server: an unknown account lists nothing.
        (_, Some(name)) => view.account(name).map_or_else(Vec::new, |a| {
            a.conns()
                .into_iter()
                .filter(|c| matches!(c.kind, ConnKind::Client | ConnKind::InProcess))
                .collect()
        }),
    };
    let closed: Vec<Arc<ClosedConn>> = match state {
        State::Open => Vec::new(),
        _ => view
            .closed()
            .into_iter()
            .filter(|c| acc.is_none_or(|a| c.account == a))
            .collect(),
    };
    let total = open.len() + closed.len();
    let wanted = |c: u64, meta_user: Option<&str>| {
        cid.is_none_or(|want| want == c) && user.is_none_or(|u| meta_user == Some(u))
    };
    let mut rows: Vec<Row> = Vec::new();
    for conn in &open {
        if wanted(conn.cid, conn.meta.lock().user.as_deref()) {
            rows.push(Row::open(conn, subs));
        }
    }
    for c in &closed {
        if wanted(c.cid, c.meta.user.as_deref()) {
            rows.push(Row::closed(c, subs));
        }
    }
    let now = SystemTime::now();
    sort_rows(&mut rows, sort, now);
    if cid.is_some() {
        limit = 1;
    }
    let offset = if cid.is_some() { 0 } else { offset };
    let connections: Vec<ConnInfo> = page(rows, offset, limit)
        .into_iter()
        .map(|r| r.info(now, subs, auth))
        .collect();
    Ok(mon.json(&Connz {
        server_id: mon.server_id(),
        now: rfc3339(now),
        num_connections: connections.len(),
        total,
        offset,
        limit,
        connections,
    }))
}

/// nats-server's orders: cid and start ascending, reason alphabetical, everything else
/// largest first. Ties keep cid order.
fn sort_rows(rows: &mut [Row], sort: SortBy, now: SystemTime) {
    rows.sort_by_key(|r| r.cid);
    match sort {
        SortBy::Cid => {}
        SortBy::Start => rows.sort_by_key(|r| r.start),
        SortBy::Subs => rows.sort_by_key(|r| Reverse(r.num_subs)),
        SortBy::Pending => rows.sort_by_key(|r| Reverse(r.pending)),
        SortBy::MsgsTo => rows.sort_by_key(|r| Reverse(r.out_msgs)),
        SortBy::MsgsFrom => rows.sort_by_key(|r| Reverse(r.in_msgs)),
        SortBy::BytesTo => rows.sort_by_key(|r| Reverse(r.out_bytes)),
        SortBy::BytesFrom => rows.sort_by_key(|r| Reverse(r.in_bytes)),
        SortBy::Last => rows.sort_by_key(|r| Reverse(r.last)),
        SortBy::Idle => rows.sort_by_key(|r| Reverse(r.idle(now))),
        SortBy::Uptime => rows.sort_by_key(|r| Reverse(r.uptime(now))),
        SortBy::Stop => rows.sort_by_key(|r| Reverse(r.stop.map(|(t, _)| t))),
        SortBy::Reason => rows.sort_by_key(|r| r.stop.map(|(_, reason)| reason)),
        SortBy::Rtt => rows.sort_by_key(|r| Reverse(r.rtt)),
    }
}

fn sorted(mut subs: Vec<SubDetail>) -> Vec<SubDetail> {
    subs.sort_by(|a, b| sid_order(&a.sid, &b.sid));
    subs
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
