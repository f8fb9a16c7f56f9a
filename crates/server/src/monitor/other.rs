//! `/gatewayz`: Starling runs no gateways, so this is nats-server 2.9.10's reply for that
//! case: well-formed, with its keys and zero values.

use serde::Serialize;

use super::{now, Handled, Monitor, Query};

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
