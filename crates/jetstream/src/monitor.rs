//! JetStream in monitoring: `/jsz` (also `$SYS.REQ.SERVER.PING.JSZ`), the `jetstream` section of
//! `/varz`, and families in `/metrics`, with nats-server's keys.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::account::JsAccount;
use crate::api::types::Storage;
use crate::config::{JetStream, SyncPolicy};
use crate::time::{now_ns, rfc3339};

/// What the monitoring endpoints read: every account's JetStream.
pub(crate) struct JsMonitor {
    pub(crate) server_id: String,
    pub(crate) config: JetStream,
    pub(crate) accounts: Vec<Arc<JsAccount>>,
    pub(crate) max_memory: u64,
    pub(crate) max_storage: u64,
}

/// Totals over all accounts.
#[derive(Default)]
struct Totals {
    memory: u64,
    storage: u64,
    streams: u64,
    consumers: u64,
    messages: u64,
    bytes: u64,
    api_total: u64,
    api_errors: u64,
}

impl JsMonitor {
    fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for a in &self.accounts {
            t.api_total += a.api_total.load(Ordering::Relaxed);
            t.api_errors += a.api_errors.load(Ordering::Relaxed);
            for s in a.streams() {
                let st = s.store().state();
                match s.config().storage {
                    Storage::Memory => t.memory += st.bytes,
                    Storage::File => t.storage += st.bytes,
                }
                t.streams += 1;
                t.consumers += s.consumers().len() as u64;
                t.messages += st.msgs;
                t.bytes += st.bytes;
            }
        }
        t
    }

    fn config_json(&self) -> Value {
        let sync = match self.config.sync {
            SyncPolicy::Interval(d) => json!(d.as_nanos() as u64),
            SyncPolicy::Always => json!(0),
        };
        let mut c = json!({
            "max_memory": self.max_memory,
            "max_storage": self.max_storage,
            "store_dir": self
                .config
                .store_dir
                .as_ref()
                .map(|d| d.join("jetstream").display().to_string())
                .unwrap_or_default(),
            "sync_interval": sync,
        });
        if self.config.sync == SyncPolicy::Always {
            c["sync_always"] = json!(true);
        }
        if let Some(d) = &self.config.domain {
            c["domain"] = json!(d);
        }
        c
    }

    fn stats_json(&self, t: &Totals) -> Value {
        let (reserved_memory, reserved_storage) = self
            .accounts
            .first()
            .map_or((0, 0), |a| a.usage().server().reserved());
        json!({
            "memory": t.memory,
            "storage": t.storage,
            "reserved_memory": reserved_memory,
            "reserved_storage": reserved_storage,
            "accounts": self.accounts.len(),
            "ha_assets": 0,
            "api": { "level": 1, "total": t.api_total, "errors": t.api_errors },
        })
    }

    fn jsz(&self, query: &[(String, String)]) -> Value {
        let flag = |k: &str| {
            query
                .iter()
                .any(|(q, v)| q == k && matches!(v.as_str(), "true" | "1" | ""))
        };
        let only = query
            .iter()
            .find(|(q, _)| q == "acc")
            .map(|(_, v)| v.as_str());
        let (streams, consumers) = (flag("streams") || flag("consumers"), flag("consumers"));
        let accounts = flag("accounts") || streams || only.is_some();
        let t = self.totals();
        let mut v = self.stats_json(&t);
        v["server_id"] = json!(self.server_id);
        v["now"] = json!(rfc3339(now_ns()));
        v["config"] = self.config_json();
        v["limits"] = json!({});
        v["streams"] = json!(t.streams);
        v["consumers"] = json!(t.consumers);
        v["messages"] = json!(t.messages);
        v["bytes"] = json!(t.bytes);
        if accounts {
            let details: Vec<Value> = self
                .accounts
                .iter()
                .filter(|a| only.is_none_or(|o| o == a.name()))
                .map(|a| account_json(a, streams, consumers))
                .collect();
            v["account_details"] = json!(details);
        }
        v["total"] = json!(self.accounts.len());
        v
    }
}

fn account_json(a: &JsAccount, streams: bool, consumers: bool) -> Value {
    let (mut memory, mut storage) = (0, 0);
    let mut details = Vec::new();
    for s in a.streams() {
        let st = s.state_json();
        match s.config().storage {
            Storage::Memory => memory += st.bytes,
            Storage::File => storage += st.bytes,
        }
        if streams {
            let mut d = json!({
                "name": s.name(),
                "created": rfc3339(s.created()),
                "cluster": { "leader": a.server().server_name() },
                "state": st,
            });
            if consumers {
                let list: Vec<Value> = s
                    .consumers()
                    .iter()
                    .map(|c| crate::consumer::info_json(c, &s, a.server().server_name()))
                    .collect();
                d["consumer_detail"] = json!(list);
            }
            details.push(d);
        }
    }
    let mut v = json!({
        "name": a.name(),
        "id": a.name(),
        "memory": memory,
        "storage": storage,
        "reserved_memory": 0,
        "reserved_storage": 0,
        "accounts": 0,
        "ha_assets": 0,
        "api": {
            "level": 0,
            "total": a.api_total.load(Ordering::Relaxed),
            "errors": a.api_errors.load(Ordering::Relaxed),
        },
    });
    if streams {
        v["stream_detail"] = json!(details);
    }
    v
}

impl starling_server::Monitoring for JsMonitor {
    fn endpoint(&self, path: &str, query: &[(String, String)]) -> Option<Result<Value, String>> {
        (path == "/jsz").then(|| Ok(self.jsz(query)))
    }

    fn varz(&self) -> Option<(&'static str, Value)> {
        let t = self.totals();
        Some((
            "jetstream",
            json!({
                "config": self.config_json(),
                "stats": self.stats_json(&t),
                "limits": {},
            }),
        ))
    }

    fn metrics(&self, out: &mut String) {
        let t = self.totals();
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "starling_jetstream_streams",
            "JetStream streams.",
            t.streams,
        );
        gauge(
            "starling_jetstream_consumers",
            "JetStream consumers.",
            t.consumers,
        );
        gauge(
            "starling_jetstream_messages",
            "Messages held by all streams.",
            t.messages,
        );
        gauge(
            "starling_jetstream_bytes",
            "Bytes held by all streams.",
            t.bytes,
        );
        gauge(
            "starling_jetstream_memory_bytes",
            "Bytes held by memory streams.",
            t.memory,
        );
        gauge(
            "starling_jetstream_storage_bytes",
            "Bytes held by file streams.",
            t.storage,
        );
        gauge(
            "starling_jetstream_max_memory_bytes",
            "The memory streams may hold (max_memory_store).",
            self.max_memory,
        );
        gauge(
            "starling_jetstream_max_storage_bytes",
            "The bytes file streams may hold (max_file_store).",
            self.max_storage,
        );
        let _ = writeln!(
            out,
            "# HELP starling_jetstream_api_requests_total JetStream API requests served.\n# TYPE starling_jetstream_api_requests_total counter\nstarling_jetstream_api_requests_total {}",
            t.api_total
        );
        let _ = writeln!(
            out,
            "# HELP starling_jetstream_api_errors_total JetStream API requests answered with an error.\n# TYPE starling_jetstream_api_errors_total counter\nstarling_jetstream_api_errors_total {}",
            t.api_errors
        );
        let _ = writeln!(
            out,
            "# HELP starling_jetstream_stream_messages Messages held, per stream.\n# TYPE starling_jetstream_stream_messages gauge"
        );
        let mut bytes = String::new();
        for a in &self.accounts {
            for s in a.streams() {
                let st = s.store().state();
                let labels = format!(
                    "account=\"{}\",stream=\"{}\"",
                    escape(a.name()),
                    escape(s.name())
                );
                let _ = writeln!(
                    out,
                    "starling_jetstream_stream_messages{{{labels}}} {}",
                    st.msgs
                );
                let _ = writeln!(
                    bytes,
                    "starling_jetstream_stream_bytes{{{labels}}} {}",
                    st.bytes
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP starling_jetstream_stream_bytes Bytes held, per stream.\n# TYPE starling_jetstream_stream_bytes gauge"
        );
        out.push_str(&bytes);
    }
}

/// A Prometheus label value escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
