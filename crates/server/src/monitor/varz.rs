//! `/varz`: the server's identity, options and figures, with nats-server 2.9.10's keys in its
//! order. Sub-objects for features Starling does not run (gateway, leafnodes, MQTT, websocket,
//! JetStream) are nats-server's empty `{}`; so is `cluster` without a cluster.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::format::{go_float, is_zero, uptime};
use super::{process, Handled, Monitor, Query};
use crate::gotime::rfc3339;
use crate::identity::{NATS_VERSION, STARLING_VERSION};
use crate::introspect::View;

/// nats-server's default `tls_timeout` in seconds (reported even without TLS, as it does).
const TLS_TIMEOUT_SECS: f64 = 2.0;
/// nats-server's default `cluster.auth_timeout` in seconds (the time a peer has to present
/// its CONNECT).
const CLUSTER_AUTH_TIMEOUT_SECS: f64 = 2.0;

#[derive(Serialize)]
struct Varz {
    server_id: String,
    server_name: String,
    version: &'static str,
    proto: u32,
    go: String,
    host: String,
    port: u16,
    #[serde(skip_serializing_if = "is_zero")]
    auth_required: bool,
    #[serde(skip_serializing_if = "is_zero")]
    tls_required: bool,
    #[serde(skip_serializing_if = "is_zero")]
    tls_verify: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    connect_urls: Vec<String>,
    max_connections: usize,
    #[serde(skip_serializing_if = "is_zero")]
    max_subscriptions: usize,
    /// Nanoseconds.
    ping_interval: u64,
    ping_max: u32,
    http_host: String,
    http_port: u16,
    http_base_path: &'static str,
    https_port: u16,
    /// Seconds.
    #[serde(serialize_with = "go_float")]
    auth_timeout: f64,
    max_control_line: usize,
    max_payload: usize,
    max_pending: usize,
    cluster: ClusterVarz,
    gateway: Empty,
    leaf: Empty,
    mqtt: Empty,
    #[cfg(feature = "websocket")]
    websocket: crate::websocket::Varz,
    #[cfg(not(feature = "websocket"))]
    websocket: Empty,
    jetstream: serde_json::Value,
    /// Seconds.
    #[serde(serialize_with = "go_float")]
    tls_timeout: f64,
    /// Nanoseconds.
    write_deadline: u64,
    start: String,
    now: String,
    uptime: String,
    mem: u64,
    cores: usize,
    gomaxprocs: usize,
    #[serde(serialize_with = "go_float")]
    cpu: f64,
    connections: usize,
    total_connections: u64,
    routes: usize,
    remotes: usize,
    leafnodes: usize,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    slow_consumers: u64,
    subscriptions: usize,
    http_req_stats: BTreeMap<String, u64>,
    config_load_time: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    system_account: String,
}

/// nats-server's `ClusterOptsVarz`: every field is left out while there is no cluster, and
/// `urls` (the configured seeds) while there are none.
#[derive(Serialize, Default)]
struct ClusterVarz {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(rename = "addr", skip_serializing_if = "String::is_empty")]
    host: String,
    #[serde(rename = "cluster_port", skip_serializing_if = "is_zero")]
    port: u16,
    #[serde(serialize_with = "go_float", skip_serializing_if = "is_zero")]
    auth_timeout: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
    #[serde(serialize_with = "go_float", skip_serializing_if = "is_zero")]
    tls_timeout: f64,
}

/// An options block of a feature that is not configured: `{}`.
#[derive(Serialize, Default)]
struct Empty {}

pub(super) fn varz(mon: &Monitor<'_>, _query: &Query) -> Handled {
    let view = mon.view();
    let opts = view.config();
    let stats = view.stats();
    let (host, port) = match view.client_addr() {
        Some(a) => (a.ip().to_string(), a.port()),
        None => ("0.0.0.0".to_string(), 0),
    };
    let (http_host, http_port) = match mon.view().monitor_addr() {
        Some(a) => (a.ip().to_string(), a.port()),
        None => (String::new(), 0),
    };
    let tls = view.tls();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu = mon.cpu().sample(view.start());
    let varz = Varz {
        server_id: mon.server_id(),
        server_name: view.server_name().to_string(),
        version: NATS_VERSION,
        proto: 1,
        go: format!("starling {STARLING_VERSION}"),
        host,
        port,
        auth_required: view.auth_required(),
        tls_required: tls.is_some_and(|_| !opts.allow_non_tls),
        tls_verify: tls.is_some_and(|t| t.verifies_clients()),
        connect_urls: view.varz_connect_urls(),
        max_connections: opts.max_connections,
        max_subscriptions: opts.max_subscriptions,
        ping_interval: nanos(opts.ping_interval),
        ping_max: opts.max_pings_out,
        http_host,
        // nats-server reports the monitor's port under the scheme it serves.
        http_port: if view.monitor_https() { 0 } else { http_port },
        http_base_path: "",
        https_port: if view.monitor_https() { http_port } else { 0 },
        auth_timeout: opts.effective_auth_timeout().as_secs_f64(),
        max_control_line: opts.max_control_line,
        max_payload: opts.max_payload,
        max_pending: opts.max_pending,
        cluster: cluster(view),
        gateway: Empty {},
        leaf: Empty {},
        mqtt: Empty {},
        #[cfg(feature = "websocket")]
        websocket: crate::websocket::varz(view.websocket()),
        #[cfg(not(feature = "websocket"))]
        websocket: Empty {},
        jetstream: mon
            .state
            .extensions()
            .iter()
            .find_map(|e| e.varz().filter(|(k, _)| *k == "jetstream").map(|(_, v)| v))
            .unwrap_or_else(|| serde_json::json!({})),
        tls_timeout: tls_timeout(view),
        write_deadline: nanos(opts.write_deadline),
        start: rfc3339(stats.start),
        now: rfc3339(SystemTime::now()),
        uptime: uptime(stats.uptime),
        mem: process::rss_bytes(),
        cores,
        gomaxprocs: cores,
        cpu,
        connections: stats.connections,
        total_connections: stats.total_connections,
        routes: stats.routes,
        remotes: stats.routes,
        leafnodes: stats.leafnodes,
        in_msgs: stats.in_msgs,
        out_msgs: stats.out_msgs,
        in_bytes: stats.in_bytes,
        out_bytes: stats.out_bytes,
        slow_consumers: stats.slow_consumers,
        subscriptions: stats.subscriptions,
        http_req_stats: mon.req_stats(),
        config_load_time: rfc3339(view.config_loaded()),
        system_account: view.system_account().unwrap_or_default().to_string(),
    };
    Ok(mon.json(&varz))
}

fn cluster(view: View<'_>) -> ClusterVarz {
    let Some(routes) = view.routes() else {
        return ClusterVarz::default();
    };
    ClusterVarz {
        name: routes.name(),
        host: routes.listen_addr().ip().to_string(),
        port: routes.listen_addr().port(),
        auth_timeout: CLUSTER_AUTH_TIMEOUT_SECS,
        // nats-server lists its `routes` option as `host:port`, credentials left out.
        urls: routes
            .config()
            .seeds
            .iter()
            .filter_map(|s| crate::cluster::url_host_port(s))
            .collect(),
        tls_timeout: TLS_TIMEOUT_SECS,
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The client listener's TLS timeout in seconds (nats-server's default without TLS).
fn tls_timeout(view: View<'_>) -> f64 {
    #[cfg(feature = "tls")]
    if let Some(tls) = view.tls() {
        return tls.config().handshake_timeout().as_secs_f64();
    }
    let _ = view;
    TLS_TIMEOUT_SECS
}
