//! `/metrics`: the broker's figures in the Prometheus text exposition format (version 0.0.4),
//! so Prometheus scrapes Starling directly, without an exporter process. Every figure comes
//! from the same snapshot embedders get from `server.stats()`.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{process, Handled, Monitor, Query, Reply};
use crate::identity::{NATS_VERSION, STARLING_VERSION};

/// The content type Prometheus expects for this format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric's value: counts print as integers, the rest as decimals.
#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Self::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Self::Int(v as u64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

/// Writes metric families: a `# HELP` and `# TYPE` line, then the samples.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = match value.into() {
            Value::Int(v) => writeln!(self.0, " {v}"),
            Value::Float(v) if v.is_nan() => writeln!(self.0, " NaN"),
            Value::Float(v) => writeln!(self.0, " {v}"),
        };
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Into<Value>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: impl Into<Value>) {
        self.single(name, "counter", help, value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Into<Value>) {
        self.single(name, "gauge", help, value);
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

pub(super) fn metrics(mon: &Monitor<'_>, _query: &Query) -> Handled {
    let view = mon.view();
    let stats = view.stats();
    let mut m = Exposition(String::with_capacity(8 * 1024));

    m.family(
        "starling_info",
        "gauge",
        "Always 1; the labels tell which server this is.",
    );
    m.sample(
        "starling_info",
        &[
            ("server_id", view.server_id()),
            ("server_name", view.server_name()),
            ("version", STARLING_VERSION),
            ("nats_version", NATS_VERSION),
        ],
        1u64,
    );
    let start = stats
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    m.gauge(
        "starling_start_time_seconds",
        "When the server started, in seconds since the Unix epoch.",
        start.as_secs_f64(),
    );
    m.gauge(
        "starling_uptime_seconds",
        "How long the server has been running.",
        stats.uptime.as_secs_f64(),
    );

    m.gauge(
        "starling_connections",
        "Open client connections (socket and in-process).",
        stats.connections,
    );
    m.counter(
        "starling_connections_total",
        "Client connections accepted since start.",
        stats.total_connections,
    );
    m.counter(
        "starling_closed_connections_total",
        "Client connections closed since start.",
        stats.closed_connections,
    );
    m.gauge(
        "starling_max_connections",
        "The most client connections accepted at once (max_connections).",
        view.config().max_connections,
    );
    m.gauge(
        "starling_subscriptions",
        "Subscriptions currently held.",
        stats.subscriptions,
    );
    m.counter(
        "starling_in_msgs_total",
        "Messages received from clients and routes.",
        stats.in_msgs,
    );
    m.counter(
        "starling_in_bytes_total",
        "Payload bytes received from clients and routes.",
        stats.in_bytes,
    );
    m.counter(
        "starling_out_msgs_total",
        "Messages delivered to clients and sent to routes.",
        stats.out_msgs,
    );
    m.counter(
        "starling_out_bytes_total",
        "Payload bytes delivered to clients and sent to routes.",
        stats.out_bytes,
    );
    m.counter(
        "starling_slow_consumers_total",
        "Connections cut off because they could not keep up.",
        stats.slow_consumers,
    );
    m.gauge(
        "starling_pending_bytes",
        "Outbound bytes queued and not yet written, over all connections and routes.",
        stats.pending_bytes,
    );

    m.gauge("starling_routes", "Open cluster routes.", stats.routes);
    // Per-route families, labelled by the peer (stable across reconnects, unlike the rid).
    type RouteFigure = fn(&crate::stats::RouteStats) -> Value;
    let per_route: [(&str, &str, &str, RouteFigure); 7] = [
        (
            "starling_route_in_msgs_total",
            "counter",
            "Messages received over a route.",
            |r| r.in_msgs.into(),
        ),
        (
            "starling_route_out_msgs_total",
            "counter",
            "Messages sent over a route.",
            |r| r.out_msgs.into(),
        ),
        (
            "starling_route_in_bytes_total",
            "counter",
            "Payload bytes received over a route.",
            |r| r.in_bytes.into(),
        ),
        (
            "starling_route_out_bytes_total",
            "counter",
            "Payload bytes sent over a route.",
            |r| r.out_bytes.into(),
        ),
        (
            "starling_route_pending_bytes",
            "gauge",
            "Outbound bytes queued on a route and not yet written.",
            |r| r.pending_bytes.into(),
        ),
        (
            "starling_route_subscriptions",
            "gauge",
            "Subscriptions a route's peer registered with this server.",
            |r| r.subscriptions.into(),
        ),
        (
            "starling_route_rtt_seconds",
            "gauge",
            "The last measured round-trip time of a route (0 until measured).",
            |r| r.rtt.as_secs_f64().into(),
        ),
    ];
    for (name, kind, help, figure) in per_route {
        m.family(name, kind, help);
        for r in &stats.route_stats {
            m.sample(
                name,
                &[("remote_id", &r.remote_id), ("remote_name", &r.remote_name)],
                figure(r),
            );
        }
    }
    m.gauge(
        "starling_leafnodes",
        "Open leafnode connections.",
        stats.leafnodes,
    );

    let sl = &stats.sublist;
    m.gauge(
        "starling_sublist_cache_hit_ratio",
        "Share of subject lookups answered from the match cache (0 to 1).",
        sl.cache_hit_rate(),
    );
    m.counter(
        "starling_sublist_matches_total",
        "Subject lookups since start.",
        sl.num_matches,
    );
    m.counter(
        "starling_sublist_cache_hits_total",
        "Subject lookups answered from the match cache.",
        sl.cache_hits,
    );
    m.counter(
        "starling_sublist_inserts_total",
        "Subscriptions inserted into the sublist since start.",
        sl.num_inserts,
    );
    m.counter(
        "starling_sublist_removes_total",
        "Subscriptions removed from the sublist since start.",
        sl.num_removes,
    );
    m.gauge(
        "starling_sublist_cache_entries",
        "Subjects in the match cache.",
        sl.num_cache,
    );
    m.gauge(
        "starling_sublist_max_fanout",
        "Largest fan-out among cached match results.",
        sl.max_fanout,
    );

    // Per-account families, labelled by the account's name.
    let accounts: Vec<_> = view
        .accounts()
        .iter()
        .map(|a| {
            (
                a.name().to_string(),
                a.figures(),
                a.sublist_stats().num_subscriptions,
            )
        })
        .collect();
    type AccountFigure = fn(&crate::account::AccountFigures, u32) -> Value;
    let per_account: [(&str, &str, &str, AccountFigure); 7] = [
        (
            "starling_account_connections",
            "gauge",
            "Open client connections of an account.",
            |f, _| f.conns.into(),
        ),
        (
            "starling_account_connections_total",
            "counter",
            "Client connections an account has had since start.",
            |f, _| f.total_conns.into(),
        ),
        (
            "starling_account_subscriptions",
            "gauge",
            "Subscriptions in an account's sublist (peers' interest included).",
            |_, subs| u64::from(subs).into(),
        ),
        (
            "starling_account_in_msgs_total",
            "counter",
            "Messages an account's clients published.",
            |f, _| f.in_msgs.into(),
        ),
        (
            "starling_account_in_bytes_total",
            "counter",
            "Payload bytes an account's clients published.",
            |f, _| f.in_bytes.into(),
        ),
        (
            "starling_account_out_msgs_total",
            "counter",
            "Messages delivered to an account's clients.",
            |f, _| f.out_msgs.into(),
        ),
        (
            "starling_account_slow_consumers_total",
            "counter",
            "An account's connections cut off as slow consumers.",
            |f, _| f.slow_consumers.into(),
        ),
    ];
    for (name, kind, help, figure) in per_account {
        m.family(name, kind, help);
        for (account, f, subs) in &accounts {
            m.sample(name, &[("account", account)], figure(f, *subs));
        }
    }

    m.gauge(
        "starling_process_resident_memory_bytes",
        "Resident memory of the process hosting the server.",
        process::rss_bytes(),
    );
    m.counter(
        "starling_process_cpu_seconds_total",
        "User and system CPU time of the process hosting the server.",
        process::cpu_time().as_secs_f64(),
    );

    m.family(
        "starling_http_requests_total",
        "counter",
        "Monitoring requests served, per endpoint.",
    );
    for (path, n) in mon.req_stats() {
        m.sample("starling_http_requests_total", &[("path", &path)], n);
    }
    for e in mon.state.extensions() {
        e.metrics(&mut m.0);
    }

    Ok(Reply::Other {
        content_type: CONTENT_TYPE,
        body: m.0.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut m = Exposition(String::new());
        m.sample("x", &[("a", "q\"b\\n\nl")], 3u64);
        m.sample("y", &[], 0.25);
        assert_eq!(m.0, "x{a=\"q\\\"b\\\\n\\nl\"} 3\ny 0.25\n");
    }
}
