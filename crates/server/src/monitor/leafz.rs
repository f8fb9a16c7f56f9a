//! `/leafz`: the leafnode connections, with nats-server 2.15.1's keys in its order (2.9.10 has
//! no `id`, `name`, `is_spoke`; `compression` is left out, as Starling never compresses).
//! `subs=1` lists the subjects the peer is interested in. With no leafnode: `"leafs": null`,
//! as nats-server writes it.

use std::time::SystemTime;

use serde::Serialize;

use super::{Handled, Monitor, Query};
use crate::gotime::{go_duration, rfc3339};
use crate::leaf::LeafStats;

#[derive(Serialize)]
struct Leafz {
    server_id: String,
    now: String,
    leafnodes: usize,
    leafs: Option<Vec<LeafInfo>>,
}

#[derive(Serialize)]
struct LeafInfo {
    id: u64,
    name: String,
    /// We joined it: it is our hub.
    is_spoke: bool,
    account: String,
    ip: String,
    port: u16,
    rtt: String,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<String>,
}

impl LeafInfo {
    fn new(cid: u64, s: LeafStats, subs: bool) -> Self {
        let (ip, port) = match s.addr {
            Some(a) => (a.ip().to_string(), a.port()),
            None => (String::new(), 0),
        };
        Self {
            id: cid,
            name: s.name,
            is_spoke: s.solicited,
            account: s.account,
            ip,
            port,
            rtt: go_duration(s.rtt),
            in_msgs: s.in_msgs,
            out_msgs: s.out_msgs,
            in_bytes: s.in_bytes,
            out_bytes: s.out_bytes,
            subscriptions: s.subscriptions,
            subscriptions_list: if subs { s.subjects } else { Vec::new() },
        }
    }
}

pub(super) fn leafz(mon: &Monitor<'_>, query: &Query) -> Handled {
    let subs = query.flag("subs")?;
    let leafs: Vec<LeafInfo> = mon
        .view()
        .leaf_links()
        .iter()
        .map(|l| LeafInfo::new(l.conn.cid, l.stats(), subs))
        .collect();
    Ok(mon.json(&Leafz {
        server_id: mon.server_id(),
        now: rfc3339(SystemTime::now()),
        leafnodes: leafs.len(),
        leafs: (!leafs.is_empty()).then_some(leafs),
    }))
}
