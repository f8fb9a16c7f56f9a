//! nats-server's monitoring endpoints with nats-server 2.9's JSON (field names, order, types and
//! units), so prometheus-nats-exporter, the `nats` CLI and dashboards read Starling unchanged,
//! plus Prometheus text at `/metrics`. The same endpoints answer the system account's
//! `$SYS.REQ.SERVER.PING.<X>` requests (compact JSON there), so they are built whether or not
//! the HTTP server (`http`, feature `monitor`) is.
//!
//! | path | file |
//! |---|---|
//! | `/` | `index` (HTML links) |
//! | `/varz` | `varz` (server figures and options) |
//! | `/connz` | `connz` (open and closed connections) |
//! | `/routez` | `routez` (cluster routes) |
//! | `/subsz`, `/subscriptionsz` | `subsz` (sublist figures and subscriptions) |
//! | `/healthz` | `healthz` (readiness) |
//! | `/accountz`, `/accstatz` | `accountz` (accounts and their figures) |
//! | `/leafz` | `leafz` (leafnode connections) |
//! | `/gatewayz` | `other` (well-formed, nearly empty) |
//! | `/metrics` | `metrics` (Prometheus text format 0.0.4) |
//!
//! Handlers only read the broker through its read-only view, under short locks, and never
//! `.await`, so the monitor stays responsive under load.

mod accountz;
mod connz;
mod format;
mod healthz;
#[cfg(feature = "monitor")]
pub(crate) mod http;
mod index;
mod leafz;
mod metrics;
mod other;
mod process;
mod routez;
mod subsz;
mod varz;

use std::collections::BTreeMap;
use std::time::SystemTime;

use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;

pub(crate) use crate::gotime::rfc3339;
pub(crate) use format::go_float;

use crate::introspect::View;

/// nats-server's default page size for `/connz` and `/subsz` (`DefaultConnListSize`,
/// `DefaultSubListSize`).
const DEFAULT_LIMIT: usize = 1024;

/// What the monitoring endpoints keep between requests (a broker component).
#[derive(Default)]
pub(crate) struct MonitorState {
    /// HTTP requests served per endpoint (`http_req_stats` in `/varz`).
    req_stats: Mutex<BTreeMap<&'static str, u64>>,
    cpu: Mutex<process::CpuSampler>,
    /// What extensions show (JetStream's `/jsz`).
    extensions: Mutex<Vec<std::sync::Arc<dyn crate::Monitoring>>>,
}

impl MonitorState {
    pub(crate) fn add_extension(&self, m: std::sync::Arc<dyn crate::Monitoring>) {
        self.extensions.lock().push(m);
    }

    fn extensions(&self) -> Vec<std::sync::Arc<dyn crate::Monitoring>> {
        self.extensions.lock().clone()
    }

    /// An extension's answer for `path`.
    fn extension_endpoint(
        &self,
        path: &str,
        query: &Query,
    ) -> Option<Result<serde_json::Value, String>> {
        self.extensions()
            .iter()
            .find_map(|e| e.endpoint(path, &query.0))
    }
}

/// One request's context: the broker's view, the monitor's state, and how to write JSON.
pub(crate) struct Monitor<'a> {
    view: View<'a>,
    state: &'a MonitorState,
    /// Compact JSON (system account replies) rather than nats-server's pretty HTTP bodies.
    compact: bool,
}

/// An answer: status, content type and body.
#[cfg(feature = "monitor")]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

/// What a handler produces.
pub(crate) enum Reply {
    /// A JSON document (`application/json`, or JSONP when `?callback=` is given).
    Json {
        /// 200, or 503 for an unhealthy `/healthz`.
        #[cfg_attr(not(feature = "monitor"), allow(dead_code))]
        status: u16,
        body: Vec<u8>,
    },
    /// Anything else, always 200.
    Other {
        #[cfg_attr(not(feature = "monitor"), allow(dead_code))]
        content_type: &'static str,
        body: Vec<u8>,
    },
}

/// A request nats-server would answer with `400 Bad Request` and this text.
pub(crate) struct BadRequest(pub(crate) String);

type Handled = Result<Reply, BadRequest>;
type Handler = fn(&Monitor<'_>, &Query) -> Handled;

/// The handler of `path` and the name it is counted under.
fn route(path: &str) -> Option<(&'static str, Handler)> {
    Some(match path {
        "/" => ("/", index::index),
        "/varz" => ("/varz", varz::varz),
        "/connz" => ("/connz", connz::connz),
        "/routez" => ("/routez", routez::routez),
        "/subsz" | "/subscriptionsz" => ("/subsz", subsz::subsz),
        "/healthz" => ("/healthz", healthz::healthz),
        "/leafz" => ("/leafz", leafz::leafz),
        "/gatewayz" => ("/gatewayz", other::gatewayz),
        "/accountz" => ("/accountz", accountz::accountz),
        "/accstatz" => ("/accstatz", accountz::accstatz),
        "/metrics" => ("/metrics", metrics::metrics),
        _ => return None,
    })
}

#[cfg(feature = "monitor")]
/// Answers an HTTP request for `path` (`None`: no such endpoint), counting it.
pub(crate) fn answer_http(view: View<'_>, path: &str, query: Option<&str>) -> Option<Answer> {
    let Some((counted, handler)) = route(path) else {
        let parsed = Query::parse(query);
        let state = view.monitor();
        return match state.extension_endpoint(path, &parsed)? {
            Ok(v) => Some(Answer {
                status: 200,
                content_type: "application/json",
                body: serde_json::to_vec_pretty(&v).unwrap_or_default(),
            }),
            Err(text) => Some(Answer {
                status: 400,
                content_type: "text/plain; charset=utf-8",
                body: text.into_bytes(),
            }),
        };
    };
    let state = view.monitor();
    *state.req_stats.lock().entry(counted).or_insert(0) += 1;
    let query = Query::parse(query);
    let mon = Monitor {
        view,
        state,
        compact: false,
    };
    Some(match handler(&mon, &query) {
        Ok(Reply::Json { status, body }) => match query.get("callback") {
            Some(cb) if !cb.is_empty() => {
                let mut js = Vec::with_capacity(body.len() + cb.len() + 2);
                js.extend_from_slice(cb.as_bytes());
                js.push(b'(');
                js.extend_from_slice(&body);
                js.push(b')');
                Answer {
                    status,
                    content_type: "application/javascript",
                    body: js,
                }
            }
            _ => Answer {
                status,
                content_type: "application/json",
                body,
            },
        },
        Ok(Reply::Other { content_type, body }) => Answer {
            status: 200,
            content_type,
            body,
        },
        Err(BadRequest(text)) => Answer {
            status: 400,
            content_type: "text/plain; charset=utf-8",
            body: text.into_bytes(),
        },
    })
}

/// The compact JSON of endpoint `path` with `params` as its query (the system account's
/// `$SYS.REQ.SERVER.*.<X>` requests), or the error text nats-server would answer with.
pub(crate) fn json_for(
    view: View<'_>,
    path: &str,
    params: Vec<(String, String)>,
) -> Result<Vec<u8>, String> {
    let Some((_, handler)) = route(path) else {
        let query = Query(params);
        return match view.monitor().extension_endpoint(path, &query) {
            Some(Ok(v)) => serde_json::to_vec(&v).map_err(|e| e.to_string()),
            Some(Err(text)) => Err(text),
            None => Err(format!("unknown endpoint {path}")),
        };
    };
    let mon = Monitor {
        view,
        state: view.monitor(),
        compact: true,
    };
    match handler(&mon, &Query(params)) {
        Ok(Reply::Json { body, .. }) => Ok(body),
        Ok(Reply::Other { body, .. }) => Ok(body),
        Err(BadRequest(text)) => Err(text),
    }
}

/// The process's resident memory, the machine's cores, and the CPU the process used since the
/// last sample (percent), as `/varz` and STATSZ report them.
pub(crate) fn process_figures(view: View<'_>) -> (u64, usize, f64) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu = view.monitor().cpu.lock().sample(view.start());
    (process::rss_bytes(), cores, cpu)
}

impl Monitor<'_> {
    /// The broker, read-only.
    fn view(&self) -> View<'_> {
        self.view
    }

    /// This server's id, for the `server_id` every endpoint starts with.
    fn server_id(&self) -> String {
        self.view.server_id().to_string()
    }

    /// A 200 JSON reply: pretty-printed with two-space indents as nats-server prints it over
    /// HTTP, compact in system account replies.
    fn json(&self, value: &impl Serialize) -> Reply {
        let body = if self.compact {
            serde_json::to_vec(value)
        } else {
            serde_json::to_vec_pretty(value)
        };
        Reply::Json {
            status: 200,
            body: body.unwrap_or_default(),
        }
    }

    fn req_stats(&self) -> BTreeMap<String, u64> {
        self.state
            .req_stats
            .lock()
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect()
    }

    fn cpu(&self) -> MutexGuard<'_, process::CpuSampler> {
        self.state.cpu.lock()
    }
}

/// The current time as every endpoint's `now`.
fn now() -> String {
    rfc3339(SystemTime::now())
}

/// Query parameters, decoded; the first of repeated names wins (as Go's `Query().Get`).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    #[cfg(feature = "monitor")]
    fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The value of `name`, if given.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter (absent or empty = `None`), with nats-server's error text.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, BadRequest> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                BadRequest(format!(
                    "Error decoding int for '{name}': strconv.Atoi: parsing {v:?}: invalid syntax"
                ))
            }),
        }
    }

    /// A boolean parameter as Go's `strconv.ParseBool` reads it (absent or empty = false).
    pub(crate) fn flag(&self, name: &str) -> Result<bool, BadRequest> {
        match self.get(name) {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(v) => Err(BadRequest(format!(
                "Error decoding boolean for '{name}': strconv.ParseBool: parsing {v:?}: invalid syntax"
            ))),
        }
    }

    /// `offset` and `limit` as nats-server reads them: negative offset = 0, limit 0 or
    /// absent = the default page size.
    pub(crate) fn page(&self) -> Result<(usize, usize), BadRequest> {
        let offset = self.int("offset")?.unwrap_or(0).max(0) as usize;
        let limit = match self.int("limit")?.unwrap_or(0) {
            n if n <= 0 => DEFAULT_LIMIT,
            n => n as usize,
        };
        Ok((offset, limit))
    }
}

/// The `[offset, offset + limit)` window of `items`.
pub(crate) fn page<T>(items: Vec<T>, offset: usize, limit: usize) -> Vec<T> {
    items.into_iter().skip(offset).take(limit).collect()
}
