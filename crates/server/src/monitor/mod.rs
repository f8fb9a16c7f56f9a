//! The monitoring HTTP server: nats-server's endpoints with nats-server 2.9's JSON (field
//! names, order, types and units), so prometheus-nats-exporter, the `nats` CLI and dashboards
//! read Starling unchanged, plus Prometheus text at `/metrics`.
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
//! | `/leafz`, `/gatewayz` | `other` (well-formed, nearly empty) |
//! | `/metrics` | `metrics` (Prometheus text format 0.0.4) |
//!
//! One task accepts; each HTTP connection is a task of its own on the server's task tracker,
//! and all of them end when the server shuts down. Handlers only read shared state under short
//! locks and never `.await` while holding one, so the monitor stays responsive under load.

mod accountz;
mod connz;
mod format;
mod healthz;
mod index;
mod metrics;
mod other;
mod process;
mod routez;
mod subsz;
mod varz;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::introspect::View;

/// nats-server's default page size for `/connz` and `/subsz` (`DefaultConnListSize`,
/// `DefaultSubListSize`).
const DEFAULT_LIMIT: usize = 1024;
/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish once the server shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Logs the monitor's address as nats-server does, before the client listener's lines (scripts
/// that read the log up to "Server is ready" find it).
pub(crate) fn announce(listener: &TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        info!("Starting http monitor on {addr}");
    }
}

/// Serves on the listener the builder bound: records its address and starts the accept loop on
/// the server's runtime, tracked by its task tracker.
pub(crate) fn start(broker: &Arc<Broker>, listener: TcpListener) {
    let addr = listener.local_addr().ok();
    broker.identity().set_monitor_addr(addr);
    let monitor = Arc::new(Monitor {
        broker: broker.clone(),
        addr,
        req_stats: Mutex::new(BTreeMap::new()),
        cpu: Mutex::new(process::CpuSampler::default()),
    });
    broker.lifecycle().spawn(accept_loop(monitor, listener));
}

/// The monitor's own state.
pub(crate) struct Monitor {
    broker: Arc<Broker>,
    addr: Option<SocketAddr>,
    /// Requests served per endpoint (`http_req_stats` in `/varz`).
    req_stats: Mutex<BTreeMap<&'static str, u64>>,
    cpu: Mutex<process::CpuSampler>,
}

async fn accept_loop(monitor: Arc<Monitor>, listener: TcpListener) {
    let shutdown = monitor.broker.lifecycle().shutdown_token().clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    monitor.broker.lifecycle().spawn(serve(monitor.clone(), stream));
                }
                Err(e) => {
                    warn!(error = %e, "monitor accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    debug!("monitor listener closed");
}

/// Serves one HTTP connection (keep-alive) until the peer closes it or the server shuts down.
async fn serve(monitor: Arc<Monitor>, stream: TcpStream) {
    let shutdown = monitor.broker.lifecycle().shutdown_token().clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let response = monitor.respond(&req);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
}

/// What a handler produces.
pub(crate) enum Reply {
    /// A JSON document (`application/json`, or JSONP when `?callback=` is given).
    Json {
        /// 200, or 503 for an unhealthy `/healthz`.
        status: StatusCode,
        body: Vec<u8>,
    },
    /// Anything else, always 200.
    Other {
        content_type: &'static str,
        body: Vec<u8>,
    },
}

impl Reply {
    /// A 200 JSON reply, pretty-printed with two-space indents as nats-server prints it.
    pub(crate) fn json(value: &impl Serialize) -> Self {
        Self::Json {
            status: StatusCode::OK,
            body: serde_json::to_vec_pretty(value).unwrap_or_default(),
        }
    }
}

/// A request nats-server would answer with `400 Bad Request` and this text.
pub(crate) struct BadRequest(pub(crate) String);

type Handled = Result<Reply, BadRequest>;

impl Monitor {
    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let query = Query::parse(req.uri().query());
        // nats-server does not check the method: POST /varz is served like GET.
        let (counted, handler): (&'static str, fn(&Self, &Query) -> Handled) = match path {
            "/" => ("/", index::index),
            "/varz" => ("/varz", varz::varz),
            "/connz" => ("/connz", connz::connz),
            "/routez" => ("/routez", routez::routez),
            "/subsz" | "/subscriptionsz" => ("/subsz", subsz::subsz),
            "/healthz" => ("/healthz", healthz::healthz),
            "/leafz" => ("/leafz", other::leafz),
            "/gatewayz" => ("/gatewayz", other::gatewayz),
            "/accountz" => ("/accountz", accountz::accountz),
            "/accstatz" => ("/accstatz", accountz::accstatz),
            "/metrics" => ("/metrics", metrics::metrics),
            _ => {
                return response(
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    b"404 page not found\n".to_vec(),
                )
            }
        };
        *self.req_stats.lock().entry(counted).or_insert(0) += 1;
        match handler(self, &query) {
            Ok(Reply::Json { status, body }) => match query.get("callback") {
                Some(cb) if !cb.is_empty() => {
                    let mut js = Vec::with_capacity(body.len() + cb.len() + 2);
                    js.extend_from_slice(cb.as_bytes());
                    js.push(b'(');
                    js.extend_from_slice(&body);
                    js.push(b')');
                    response(status, "application/javascript", js)
                }
                _ => response(status, "application/json", body),
            },
            Ok(Reply::Other { content_type, body }) => response(StatusCode::OK, content_type, body),
            Err(BadRequest(text)) => response(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                text.into_bytes(),
            ),
        }
    }

    /// The broker, read-only.
    fn view(&self) -> View<'_> {
        self.broker.view()
    }

    /// This server's id, for the `server_id` every endpoint starts with.
    fn server_id(&self) -> String {
        self.view().server_id().to_string()
    }

    fn req_stats(&self) -> BTreeMap<String, u64> {
        self.req_stats
            .lock()
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect()
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::NOT_FOUND {
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }
    resp
}

/// The current time as every endpoint's `now`.
fn now() -> String {
    format::rfc3339(SystemTime::now())
}

/// Query parameters, decoded; the first of repeated names wins (as Go's `Query().Get`).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
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
