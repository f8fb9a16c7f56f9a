//! The system account: the server's own services and advisories, as nats-server publishes them
//! (JSON key sets as nats-server 2.10+'s), visible only to the system account's clients.
//!
//! - Advisories: `$SYS.ACCOUNT.<acc>.CONNECT` / `.DISCONNECT` (`client_connect` /
//!   `client_disconnect`), `$SYS.SERVER.<id>.STATSZ` (from 250 ms after start, doubling up to
//!   10 s), `$SYS.SERVER.<id>.LAMEDUCK` and `.SHUTDOWN`.
//! - Services: `$SYS.REQ.SERVER.PING` (STATSZ) and `$SYS.REQ.SERVER.PING.<X>` answered by
//!   every server of the cluster (the subscriptions are announced to routes like any other),
//!   `$SYS.REQ.SERVER.<id>.<X>` by one; X is VARZ, CONNZ, SUBSZ, ROUTEZ, HEALTHZ, ACCOUNTZ,
//!   LEAFZ, GATEWAYZ, STATSZ or IDZ, with nats-server's request options in the body.
//!
//! The server's own subscriptions, here and in service imports, belong to one internal
//! connection ([`System::internal`]), which no listing shows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::debug;

use super::{Account, Accounts};
use crate::broker::Broker;
use crate::conn::{ClosedReason, Conn, ConnKind};
use crate::delivery::{self, Handler, Msg, Touched};
use crate::identity::NATS_VERSION;
use crate::monitor::{self, go_float, rfc3339};
use crate::subscription::{OwnedSub, Subscription, Target};

/// The first STATSZ goes out this long after start; the interval doubles up to
/// [`STATSZ_MAX`] (nats-server's schedule).
const STATSZ_FIRST: Duration = Duration::from_millis(250);
const STATSZ_MAX: Duration = Duration::from_secs(10);

/// The endpoints `$SYS.REQ.SERVER.PING.<X>` and `$SYS.REQ.SERVER.<id>.<X>` serve, with the
/// monitoring path each answers from.
const ENDPOINTS: &[(&str, Endpoint)] = &[
    ("VARZ", Endpoint::Monitor("/varz")),
    ("CONNZ", Endpoint::Monitor("/connz")),
    ("SUBSZ", Endpoint::Monitor("/subsz")),
    ("ROUTEZ", Endpoint::Monitor("/routez")),
    ("HEALTHZ", Endpoint::Monitor("/healthz")),
    ("ACCOUNTZ", Endpoint::Monitor("/accountz")),
    ("LEAFZ", Endpoint::Monitor("/leafz")),
    ("GATEWAYZ", Endpoint::Monitor("/gatewayz")),
    // Served by the JetStream extension when there is one.
    ("JSZ", Endpoint::Monitor("/jsz")),
    ("STATSZ", Endpoint::Statsz),
    ("IDZ", Endpoint::Idz),
];

/// The system account's side of the broker.
pub(crate) struct System {
    account: Option<Arc<Account>>,
    /// The connection the server's own subscriptions belong to.
    internal: Arc<Conn>,
    /// Sequence number of the server's messages (`server.seq`).
    seq: AtomicU64,
    next_sid: AtomicU64,
}

impl System {
    pub(crate) fn new(accounts: &Accounts, internal: Arc<Conn>) -> Self {
        Self {
            account: accounts.system().cloned(),
            internal,
            seq: AtomicU64::new(0),
            next_sid: AtomicU64::new(1),
        }
    }

    /// The connection the server's own subscriptions and messages belong to.
    pub(crate) fn internal_conn(&self) -> &Arc<Conn> {
        &self.internal
    }

    /// Subscribes the server itself to `subject` in `account`; `announce` tells cluster peers
    /// (so that their clients' requests reach it).
    pub(crate) fn subscribe(
        &self,
        account: &Account,
        subject: &str,
        handler: Arc<dyn Handler>,
        announce: bool,
    ) -> Option<OwnedSub> {
        let sid = self.next_sid.fetch_add(1, Ordering::Relaxed).to_string();
        let sub = Arc::new(Subscription::new(
            self.internal.clone(),
            sid.as_bytes(),
            Target::Internal(Box::new(handler)),
        ));
        let inserted = if announce {
            account.insert(&sub, subject.as_bytes(), None)
        } else {
            account.insert_unannounced(&sub, subject.as_bytes(), None)
        };
        match inserted {
            Ok(handle) => Some(OwnedSub { sub, handle }),
            Err(e) => {
                debug!(subject, error = %e, "internal subscription refused");
                None
            }
        }
    }

    /// Publishes a message of the server's own in `account`. With `touched` (inside another
    /// publish) deliveries join that batch; without, they are handed over at once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn publish(
        &self,
        broker: &Broker,
        account: &Account,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        data: &Bytes,
        touched: Option<&mut Touched>,
    ) -> bool {
        let msg = Msg::new(subject, reply, header_len, data, data);
        let mut own = Touched::default();
        let batch = touched.unwrap_or(&mut own);
        let delivered = delivery::publish(broker, account, &self.internal, &msg, batch);
        own.flush();
        delivered
    }

    /// Publishes JSON to `subject` in the system account, if anyone there listens.
    fn advise(&self, broker: &Broker, subject: &str, body: &impl Serialize) {
        let Some(sys) = &self.account else {
            return;
        };
        if !sys.sublist().has_interest(subject.as_bytes()) {
            return;
        }
        let data = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        self.publish(broker, sys, subject.as_bytes(), None, None, &data, None);
    }

    /// The `server` object every message of the server carries.
    fn server_info(&self, broker: &Broker) -> ServerInfo {
        let view = broker.view();
        ServerInfo {
            name: view.server_name().to_string(),
            host: view
                .client_addr()
                .map_or_else(|| "0.0.0.0".to_string(), |a| a.ip().to_string()),
            id: view.server_id().to_string(),
            cluster: view.routes().map(|r| r.name()).unwrap_or_default(),
            ver: NATS_VERSION,
            jetstream: broker.identity().features().jetstream,
            flags: 0,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time: rfc3339(SystemTime::now()),
        }
    }

    /// Starts the system account's services (once the broker is wired).
    pub(crate) fn start(&self, broker: &Arc<Broker>) {
        let Some(sys) = &self.account else {
            return;
        };
        let id = broker.identity().server_id().to_string();
        let ping = Arc::new(Request {
            endpoint: Endpoint::Statsz,
            ping: true,
        });
        self.subscribe(sys, "$SYS.REQ.SERVER.PING", ping, true);
        for (name, endpoint) in ENDPOINTS {
            for (subject, ping) in [
                (format!("$SYS.REQ.SERVER.PING.{name}"), true),
                (format!("$SYS.REQ.SERVER.{id}.{name}"), false),
            ] {
                let handler = Arc::new(Request {
                    endpoint: *endpoint,
                    ping,
                });
                self.subscribe(sys, &subject, handler, true);
            }
        }
        broker.lifecycle().spawn(statsz_loop(broker.clone(), id));
    }

    /// A client finished CONNECT.
    pub(crate) fn client_connected(&self, broker: &Broker, conn: &Conn) {
        let Some(account) = conn.account() else {
            return;
        };
        let subject = format!("$SYS.ACCOUNT.{}.CONNECT", account.name());
        if !self.listened(&subject) {
            return;
        }
        self.advise(
            broker,
            &subject,
            &ConnectEvent {
                event: TypedEvent::new("io.nats.server.advisory.v1.client_connect"),
                server: self.server_info(broker),
                client: client_info(conn, None),
            },
        );
    }

    /// A client bound to an account closed.
    pub(crate) fn client_disconnected(&self, broker: &Broker, conn: &Conn, reason: ClosedReason) {
        let Some(account) = conn.account() else {
            return;
        };
        let subject = format!("$SYS.ACCOUNT.{}.DISCONNECT", account.name());
        if !self.listened(&subject) {
            return;
        }
        let (in_msgs, in_bytes) = conn.in_counts();
        let (out_msgs, out_bytes) = conn.out_counts();
        self.advise(
            broker,
            &subject,
            &DisconnectEvent {
                event: TypedEvent::new("io.nats.server.advisory.v1.client_disconnect"),
                server: self.server_info(broker),
                client: client_info(conn, Some(SystemTime::now())),
                // As nats-server: what the client sent, what it was sent.
                sent: MsgBytes {
                    msgs: in_msgs,
                    bytes: in_bytes,
                },
                received: MsgBytes {
                    msgs: out_msgs,
                    bytes: out_bytes,
                },
                reason: reason.as_str(),
            },
        );
    }

    /// The server entered lame duck: `$SYS.SERVER.<id>.LAMEDUCK` carries its `server` object.
    pub(crate) fn lame_duck(&self, broker: &Broker) {
        let subject = format!("$SYS.SERVER.{}.LAMEDUCK", broker.identity().server_id());
        if self.listened(&subject) {
            self.advise(broker, &subject, &self.server_info(broker));
        }
    }

    /// The server is shutting down: `$SYS.SERVER.<id>.SHUTDOWN`.
    pub(crate) fn shutdown(&self, broker: &Broker) {
        let subject = format!("$SYS.SERVER.{}.SHUTDOWN", broker.identity().server_id());
        if self.listened(&subject) {
            self.advise(broker, &subject, &self.server_info(broker));
        }
    }

    /// Whether anyone in the system account (here or on a peer) listens on `subject`.
    fn listened(&self, subject: &str) -> bool {
        self.account
            .as_ref()
            .is_some_and(|a| a.sublist().has_interest(subject.as_bytes()))
    }

    /// The STATSZ message (`{"server", "statsz"}`).
    fn statsz(&self, broker: &Broker) -> Vec<u8> {
        let server = self.server_info(broker);
        serde_json::to_vec(&StatszMsg {
            server,
            statsz: statsz(broker),
        })
        .unwrap_or_default()
    }
}

/// Publishes `$SYS.SERVER.<id>.STATSZ` on nats-server's schedule while anyone listens.
async fn statsz_loop(broker: Arc<Broker>, id: String) {
    let subject = format!("$SYS.SERVER.{id}.STATSZ");
    let mut every = STATSZ_FIRST;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = broker.lifecycle().shutting_down() => return,
        }
        every = (every * 2).min(STATSZ_MAX);
        let system = broker.system();
        if system.listened(&subject) {
            let Some(sys) = &system.account else { return };
            let data = Bytes::from(system.statsz(&broker));
            system.publish(&broker, sys, subject.as_bytes(), None, None, &data, None);
        }
    }
}

/// What a request asks for.
#[derive(Clone, Copy)]
enum Endpoint {
    /// A monitoring endpoint's JSON as `data`.
    Monitor(&'static str),
    /// The STATSZ figures as `statsz`.
    Statsz,
    /// `{"name", "host", "id"}` as `data`.
    Idz,
}

/// A `$SYS.REQ.SERVER...` subscription.
struct Request {
    endpoint: Endpoint,
    /// A PING to every server (filters in the body may exclude this one).
    ping: bool,
}

impl Handler for Request {
    fn handle(
        &self,
        broker: &Broker,
        account: &Account,
        _from: &Conn,
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> bool {
        let Some(reply) = msg.reply else {
            return true;
        };
        let payload = msg.payload();
        let options: Map<String, Value> = if payload.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice(payload) {
                Ok(Value::Object(m)) => m,
                _ => {
                    let body = error_reply(broker, 400, "bad request");
                    let data = Bytes::from(body);
                    broker.system().publish(
                        broker,
                        account,
                        reply,
                        None,
                        None,
                        &data,
                        Some(touched),
                    );
                    return true;
                }
            }
        };
        if self.ping && filtered_out(broker, &options) {
            return true;
        }
        let system = broker.system();
        let body = match self.endpoint {
            Endpoint::Statsz => system.statsz(broker),
            Endpoint::Idz => {
                let info = system.server_info(broker);
                api_reply(
                    broker,
                    Ok(serde_json::to_vec(&Idz {
                        name: &info.name,
                        host: &info.host,
                        id: &info.id,
                    })
                    .unwrap_or_default()),
                )
            }
            Endpoint::Monitor(path) => {
                let data = monitor::json_for(broker.view(), path, query_params(path, &options));
                api_reply(broker, data.map_err(|e| (400, e)))
            }
        };
        let data = Bytes::from(body);
        system.publish(broker, account, reply, None, None, &data, Some(touched));
        true
    }
}

/// nats-server's request filters (`server_name`, `cluster`, `host`, `exact_match`): whether
/// this server is not among the servers asked.
fn filtered_out(broker: &Broker, options: &Map<String, Value>) -> bool {
    let view = broker.view();
    let get = |k: &str| {
        options
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let exact = options
        .get("exact_match")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let host = view
        .client_addr()
        .map_or_else(|| "0.0.0.0".to_string(), |a| a.ip().to_string());
    let cluster = view.routes().map(|r| r.name()).unwrap_or_default();
    [
        (get("server_name"), view.server_name()),
        (get("host"), host.as_str()),
        (get("cluster"), cluster.as_str()),
    ]
    .iter()
    .any(|(want, have)| match want {
        Some(w) if exact => w != have,
        Some(w) => !have.contains(w),
        None => false,
    })
}

/// A request's JSON options as the monitoring endpoint's query parameters.
fn query_params(path: &str, options: &Map<String, Value>) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (key, value) in options {
        let flag = value.as_bool().unwrap_or(false);
        match (path, key.as_str()) {
            ("/connz" | "/routez" | "/subsz", "subscriptions") if flag => {
                params.push(("subs".into(), "1".into()));
            }
            ("/connz" | "/routez", "subscriptions_detail") if flag => {
                params.push(("subs".into(), "detail".into()));
            }
            ("/connz", "state") => {
                // Go's ConnState: 0 open, 1 closed, 2 all.
                let state = match value.as_i64() {
                    Some(1) => "closed",
                    Some(2) => "any",
                    _ => "open",
                };
                params.push(("state".into(), state.into()));
            }
            ("/connz", "auth") if flag => params.push(("auth".into(), "1".into())),
            ("/connz", "sort" | "offset" | "limit" | "cid" | "user" | "acc")
            | ("/subsz", "offset" | "limit" | "test") => {
                params.push((key.clone(), text(value)));
            }
            ("/subsz" | "/accountz", "account") | ("/accountz", "acc") => {
                params.push(("acc".into(), text(value)));
            }
            _ => {}
        }
    }
    params
}

/// `{"server": ..., "data": ...}`, or `{"server": ..., "error": {"code", "description"}}`.
fn api_reply(broker: &Broker, data: Result<Vec<u8>, (u16, String)>) -> Vec<u8> {
    match data {
        Ok(data) => {
            let server = broker.system().server_info(broker);
            let mut out = b"{\"server\":".to_vec();
            out.extend(serde_json::to_vec(&server).unwrap_or_default());
            out.extend_from_slice(b",\"data\":");
            out.extend(data);
            out.push(b'}');
            out
        }
        Err((code, text)) => error_reply(broker, code, &text),
    }
}

fn error_reply(broker: &Broker, code: u16, description: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorReply {
        server: broker.system().server_info(broker),
        error: ApiError { code, description },
    })
    .unwrap_or_default()
}

/// The STATSZ figures.
fn statsz(broker: &Broker) -> ServerStats {
    let view = broker.view();
    let stats = view.stats();
    let (mem, cores, cpu) = monitor::process_figures(view);
    let active_accounts = view
        .accounts()
        .iter()
        .filter(|a| a.conn_count() > 0)
        .count();
    let routes: Vec<RouteStat> = stats
        .route_stats
        .iter()
        .map(|r| RouteStat {
            rid: r.rid,
            name: r.remote_name.clone(),
            sent: MsgBytes {
                msgs: r.out_msgs,
                bytes: r.out_bytes,
            },
            received: MsgBytes {
                msgs: r.in_msgs,
                bytes: r.in_bytes,
            },
            pending: r.pending_bytes,
        })
        .collect();
    let (route_out, route_in) = stats.route_stats.iter().fold(((0, 0), (0, 0)), |acc, r| {
        (
            (acc.0 .0 + r.out_msgs, acc.0 .1 + r.out_bytes),
            (acc.1 .0 + r.in_msgs, acc.1 .1 + r.in_bytes),
        )
    });
    ServerStats {
        start: rfc3339(stats.start),
        mem,
        cores,
        cpu,
        connections: stats.connections,
        total_connections: stats.total_connections,
        active_accounts,
        subscriptions: stats.subscriptions,
        sent: MsgBytes {
            msgs: stats.out_msgs,
            bytes: stats.out_bytes,
        },
        sent_to_clients: MsgBytes {
            msgs: stats.out_msgs - route_out.0,
            bytes: stats.out_bytes - route_out.1,
        },
        received: MsgBytes {
            msgs: stats.in_msgs,
            bytes: stats.in_bytes,
        },
        received_from_clients: MsgBytes {
            msgs: stats.in_msgs - route_in.0,
            bytes: stats.in_bytes - route_in.1,
        },
        slow_consumers: stats.slow_consumers,
        routes,
        active_servers: 1 + stats.routes,
        gomaxprocs: cores,
    }
}

/// A client as advisories describe it (nats-server's `ClientInfo`).
fn client_info(conn: &Conn, stop: Option<SystemTime>) -> ClientInfo {
    let meta = conn.meta.lock().clone();
    let account = conn
        .account()
        .map(|a| a.name().to_string())
        .unwrap_or_default();
    ClientInfo {
        start: rfc3339(conn.start),
        host: meta.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
        id: conn.cid,
        name_tag: account.clone(),
        acc: account,
        user: meta.user.unwrap_or_default(),
        name: meta.name.unwrap_or_default(),
        lang: meta.lang.unwrap_or_default(),
        ver: meta.version.unwrap_or_default(),
        rtt: u64::try_from(conn.rtt().as_nanos()).unwrap_or(u64::MAX),
        server: String::new(),
        cluster: String::new(),
        stop: stop.map(rfc3339),
        kind: "Client",
        client_type: match conn.kind {
            ConnKind::InProcess => "inprocess",
            _ => "nats",
        },
    }
}

/// A client in a service latency measurement (nats-server's `getClientInfo`): its account and
/// RTT, and everything else when `detailed` (the import shares it, or it is the responder).
pub(crate) fn latency_client(
    broker: &Broker,
    conn: &Conn,
    detailed: bool,
) -> Box<serde_json::value::RawValue> {
    let info = if detailed {
        let view = broker.view();
        ClientInfo {
            server: view.server_name().to_string(),
            cluster: view.routes().map(|r| r.name()).unwrap_or_default(),
            ..client_info(conn, None)
        }
    } else {
        ClientInfo {
            acc: conn
                .account()
                .map(|a| a.name().to_string())
                .unwrap_or_default(),
            rtt: u64::try_from(conn.rtt().as_nanos()).unwrap_or(u64::MAX),
            ..ClientInfo::default()
        }
    };
    serde_json::value::to_raw_value(&info).unwrap_or_else(|_| {
        serde_json::value::RawValue::from_string("{}".into()).expect("valid JSON")
    })
}

/// A random id of nats-server's shape (a NUID: 22 base-62 characters).
pub(crate) fn nuid() -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..22)
        .map(|_| DIGITS[fastrand::usize(..DIGITS.len())] as char)
        .collect()
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct ServerInfo {
    name: String,
    host: String,
    id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    cluster: String,
    ver: &'static str,
    jetstream: bool,
    flags: u64,
    seq: u64,
    time: String,
}

#[derive(Serialize)]
pub(crate) struct TypedEvent {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    timestamp: String,
}

impl TypedEvent {
    pub(crate) fn new(kind: &'static str) -> Self {
        Self {
            kind,
            id: nuid(),
            timestamp: rfc3339(SystemTime::now()),
        }
    }
}

#[derive(Serialize, Default)]
struct ClientInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    start: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    host: String,
    #[serde(skip_serializing_if = "is_zero")]
    id: u64,
    acc: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    ver: String,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    rtt: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    server: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    name_tag: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    client_type: &'static str,
}

#[derive(Serialize)]
struct ConnectEvent {
    #[serde(flatten)]
    event: TypedEvent,
    server: ServerInfo,
    client: ClientInfo,
}

#[derive(Serialize)]
struct DisconnectEvent {
    #[serde(flatten)]
    event: TypedEvent,
    server: ServerInfo,
    client: ClientInfo,
    sent: MsgBytes,
    received: MsgBytes,
    reason: &'static str,
}

#[derive(Serialize)]
struct MsgBytes {
    msgs: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct RouteStat {
    rid: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    sent: MsgBytes,
    received: MsgBytes,
    pending: u64,
}

#[derive(Serialize)]
struct ServerStats {
    start: String,
    mem: u64,
    cores: usize,
    #[serde(serialize_with = "go_float")]
    cpu: f64,
    connections: usize,
    total_connections: u64,
    active_accounts: usize,
    subscriptions: usize,
    sent: MsgBytes,
    sent_to_clients: MsgBytes,
    received: MsgBytes,
    received_from_clients: MsgBytes,
    slow_consumers: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteStat>,
    active_servers: usize,
    gomaxprocs: usize,
}

#[derive(Serialize)]
struct StatszMsg {
    server: ServerInfo,
    statsz: ServerStats,
}

#[derive(Serialize)]
struct Idz<'a> {
    name: &'a str,
    host: &'a str,
    id: &'a str,
}

#[derive(Serialize)]
struct ApiError<'a> {
    code: u16,
    description: &'a str,
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    server: ServerInfo,
    error: ApiError<'a>,
}
