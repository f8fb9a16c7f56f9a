//! `/leafz` and `/gatewayz`: Starling runs no leafnodes or gateways, so these are
//! nats-server 2.9.10's replies for that case: well-formed, with its keys and zero values.

use serde::Serialize;

use super::{now, Handled, Monitor, Query};

#[derive(Serialize)]
struct Leafz {
    server_id: String,
    now: String,
    leafnodes: usize,
    /// nats-server writes `null` when there is none.
    leafs: Option<Vec<()>>,
}

pub(super) fn leafz(mon: &Monitor<'_>, _query: &Query) -> Handled {
    Ok(mon.json(&Leafz {
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

pub(super) fn gatewayz(mon: &Monitor<'_>, _query: &Query) -> Handled {
    Ok(mon.json(&Gatewayz {
        server_id: mon.server_id(),
        now: now(),
        outbound_gateways: Empty {},
        inbound_gateways: Empty {},
    }))
}
