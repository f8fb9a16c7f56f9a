//! `/leafz`, `/gatewayz` and `/accountz`: Starling runs no leafnodes, gateways or accounts
//! beyond the global one, so these are nats-server 2.9.10's replies for that case:
//! well-formed, with its keys and zero values.

use serde::Serialize;

use super::format::{go_float, rfc3339};
use super::{now, BadRequest, Handled, Monitor, Query, Reply};

#[derive(Serialize)]
struct Leafz {
    server_id: String,
    now: String,
    leafnodes: usize,
    /// nats-server writes `null` when there is none.
    leafs: Option<Vec<()>>,
}

pub(super) fn leafz(mon: &Monitor, _query: &Query) -> Handled {
    Ok(Reply::json(&Leafz {
        server_id: mon.server_id(),
        now: now(),
        leafnodes: 0,
        leafs: None,
    }))
}

#[derive(Serialize)]
struct Gatewayz {
    server_id: String,
    now: String,
    outbound_gateways: Empty,
    inbound_gateways: Empty,
}

#[derive(Serialize)]
struct Empty {}

pub(super) fn gatewayz(mon: &Monitor, _query: &Query) -> Handled {
    Ok(Reply::json(&Gatewayz {
        server_id: mon.server_id(),
        now: now(),
        outbound_gateways: Empty {},
        inbound_gateways: Empty {},
    }))
}

/// The accounts nats-server lists: the global account every client is in, and the system
/// account `/varz` names.
const ACCOUNTS: [&str; 2] = ["$G", "$SYS"];

#[derive(Serialize)]
struct Accountz {
    server_id: String,
    now: String,
    system_account: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts: Option<[&'static str; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_detail: Option<AccountDetail>,
}

#[derive(Serialize)]
struct AccountDetail {
    account_name: String,
    update_time: String,
    expired: bool,
    complete: bool,
    jetstream_enabled: bool,
    leafnode_connections: usize,
    client_connections: usize,
    subscriptions: u32,
    sublist_stats: SublistStats,
}

#[derive(Serialize, Default)]
struct SublistStats {
    num_subscriptions: u32,
    num_cache: u32,
    num_inserts: u64,
    num_removes: u64,
    num_matches: u64,
    #[serde(serialize_with = "go_float")]
    cache_hit_rate: f64,
    max_fanout: u32,
    #[serde(serialize_with = "go_float")]
    avg_fanout: f64,
}

pub(super) fn accountz(mon: &Monitor, query: &Query) -> Handled {
    let shared = &mon.shared;
    let detail = match query.get("acc").filter(|a| !a.is_empty()) {
        None => None,
        Some("$G") => {
            let s = shared.sublist.stats();
            Some(AccountDetail {
                account_name: "$G".into(),
                update_time: rfc3339(shared.start_time),
                expired: false,
                complete: true,
                jetstream_enabled: false,
                leafnode_connections: 0,
                client_connections: shared.client_count(),
                subscriptions: s.num_subscriptions,
                sublist_stats: SublistStats {
                    num_subscriptions: s.num_subscriptions,
                    num_cache: s.num_cache,
                    num_inserts: s.num_inserts,
                    num_removes: s.num_removes,
                    num_matches: s.num_matches,
                    cache_hit_rate: s.cache_hit_rate,
                    max_fanout: s.max_fanout,
                    avg_fanout: s.avg_fanout,
                },
            })
        }
        Some("$SYS") => Some(AccountDetail {
            account_name: "$SYS".into(),
            update_time: rfc3339(shared.start_time),
            expired: false,
            complete: true,
            jetstream_enabled: false,
            leafnode_connections: 0,
            client_connections: 0,
            subscriptions: 0,
            sublist_stats: SublistStats::default(),
        }),
        Some(other) => return Err(BadRequest(format!("Account {other} does not exist"))),
    };
    Ok(Reply::json(&Accountz {
        server_id: mon.server_id(),
        now: now(),
        system_account: "$SYS",
        accounts: detail.is_none().then_some(ACCOUNTS),
        account_detail: detail,
    }))
}
