//! NATS services on the in-process client: the micro service protocol (ADR-32) that
//! `nats micro` and the clients' service modules (async-nats `service`, nats.go `micro`)
//! speak. A service has a name, a version and endpoints; every instance answers
//! `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (each also as `.<name>` and `.<name>.<id>`) with
//! the JSON those clients read, and each endpoint is a queue subscription (group `q` unless
//! told otherwise), so requests are spread over the instances.
//!
//! ```no_run
//! # async fn run(client: starling_server::Client) -> Result<(), starling_server::ClientError> {
//! use futures::StreamExt;
//! let service = client.service("placement", "1.0.0").description("places volumes").start().await?;
//! let mut place = service.endpoint("place").await?;
//! while let Some(request) = place.next().await {
//!     let answer = format!("node-7 takes {}", String::from_utf8_lossy(&request.message.payload));
//!     request.respond(Ok(answer.into())).await?;
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::inprocess::{Client, Subscriber};
use crate::error::ClientError;
use crate::message::Message;

/// The queue group endpoints join unless told otherwise (ADR-32's default).
pub const DEFAULT_SERVICE_QUEUE: &str = "q";
/// The header an error response carries its description in.
pub const SERVICE_ERROR_HEADER: &str = "Nats-Service-Error";
/// The header an error response carries its code in.
pub const SERVICE_ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";

/// An error a handler answers a request with: sent as the `Nats-Service-Error` and
/// `Nats-Service-Error-Code` headers of an empty reply, and counted in the endpoint's stats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// A code, by convention an HTTP status (`400`, `500`, ...).
    pub code: u16,
    /// What went wrong.
    pub description: String,
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.code, self.description)
    }
}

/// Configures a service before it starts ([`Client::service`]).
#[derive(Debug)]
#[must_use = "a service does nothing until .start().await"]
pub struct ServiceBuilder {
    client: Client,
    name: String,
    version: String,
    description: String,
    metadata: BTreeMap<String, String>,
    queue_group: String,
}

impl ServiceBuilder {
    pub(crate) fn new(client: Client, name: String, version: String) -> Self {
        Self {
            client,
            name,
            version,
            description: String::new(),
            metadata: BTreeMap::new(),
            queue_group: DEFAULT_SERVICE_QUEUE.to_string(),
        }
    }

    /// What the service does (INFO's `description`).
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// A metadata entry (in every PING, INFO and STATS response).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The queue group endpoints join unless an endpoint names its own (default `q`).
    pub fn queue_group(mut self, group: impl Into<String>) -> Self {
        self.queue_group = group.into();
        self
    }

    /// Starts answering `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`. Fails for a name that is
    /// not `[A-Za-z0-9_-]+`, a version that is not semantic (`1.2.3`, `1.0.0-rc.1`), or a
    /// closed client.
    pub async fn start(self) -> Result<Service, ClientError> {
        if !is_service_name(&self.name) || !is_semver(&self.version) {
            return Err(ClientError::InvalidService);
        }
        let shared = Arc::new(Shared {
            name: self.name,
            id: new_service_id(),
            version: self.version,
            description: self.description,
            metadata: self.metadata,
            queue_group: self.queue_group,
            started: SystemTime::now(),
            endpoints: Mutex::new(Vec::new()),
        });
        let mut subs = Vec::new();
        for verb in [Verb::Ping, Verb::Info, Verb::Stats] {
            for subject in [
                format!("$SRV.{}", verb.name()),
                format!("$SRV.{}.{}", verb.name(), shared.name),
                format!("$SRV.{}.{}.{}", verb.name(), shared.name, shared.id),
            ] {
                subs.push((verb, self.client.subscribe(subject).await?));
            }
        }
        let client = self.client.clone();
        let state = shared.clone();
        let mut all = futures::stream::select_all(
            subs.into_iter()
                .map(|(verb, sub)| sub.map(move |m| (verb, m)).boxed()),
        );
        let task = tokio::spawn(async move {
            while let Some((verb, msg)) = all.next().await {
                let Some(reply) = msg.reply.as_ref() else {
                    continue;
                };
                let body = state.describe(verb);
                if client.publish(reply.as_str(), body).await.is_err() {
                    break;
                }
            }
        });
        Ok(Service {
            client: self.client,
            shared,
            task,
        })
    }
}

/// A running service. Dropping it (or [`Self::stop`]) stops its `$SRV` answers; its
/// endpoints stop when they are dropped.
#[derive(Debug)]
pub struct Service {
    client: Client,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Service {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This instance's id (unique per instance, as ADR-32 asks).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Adds endpoint `name` on subject `name`, in the service's queue group.
    pub async fn endpoint(&self, name: impl Into<String>) -> Result<Endpoint, ClientError> {
        let name = name.into();
        let subject = name.clone();
        self.endpoint_on(name, subject, None).await
    }

    /// Adds endpoint `name` on `subject` (wildcards allowed), in `queue_group` or, if
    /// `None`, the service's.
    pub async fn endpoint_on(
        &self,
        name: impl Into<String>,
        subject: impl Into<String>,
        queue_group: Option<&str>,
    ) -> Result<Endpoint, ClientError> {
        let name = name.into();
        if !is_service_name(&name) {
            return Err(ClientError::InvalidService);
        }
        let subject = subject.into();
        let queue = queue_group.unwrap_or(&self.shared.queue_group).to_string();
        let subscriber = self.client.queue_subscribe(&subject, &queue).await?;
        let stats = Arc::new(Mutex::new(EndpointStats::default()));
        self.shared.endpoints.lock().push(EndpointEntry {
            name: name.clone(),
            subject,
            queue_group: queue,
            stats: stats.clone(),
        });
        Ok(Endpoint {
            client: self.client.clone(),
            subscriber,
            stats,
        })
    }

    /// Stops answering `$SRV` requests (endpoints already added keep serving until dropped).
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// One endpoint's requests, as a stream.
#[derive(Debug)]
pub struct Endpoint {
    client: Client,
    subscriber: Subscriber,
    stats: Arc<Mutex<EndpointStats>>,
}

impl Stream for Endpoint {
    type Item = Request;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Request>> {
        let this = &mut *self;
        Pin::new(&mut this.subscriber).poll_next(cx).map(|m| {
            m.map(|message| Request {
                message,
                client: this.client.clone(),
                stats: this.stats.clone(),
                received: Instant::now(),
            })
        })
    }
}

/// A request to an endpoint; answer it with [`Self::respond`].
#[derive(Debug)]
pub struct Request {
    /// The request as it arrived (subject, reply, headers, payload).
    pub message: Message,
    client: Client,
    stats: Arc<Mutex<EndpointStats>>,
    received: Instant,
}

impl Request {
    /// Answers the request: the payload, or an error sent as nats-server's clients expect
    /// it (headers on an empty reply). Either way the endpoint's stats count it, with the
    /// time since it arrived. A request without a reply subject is counted and not answered.
    pub async fn respond(self, response: Result<Bytes, ServiceError>) -> Result<(), ClientError> {
        let elapsed = self.received.elapsed();
        self.stats.lock().record(elapsed, response.as_ref().err());
        let Some(reply) = self.message.reply.as_ref() else {
            return Ok(());
        };
        match response {
            Ok(payload) => self.client.publish(reply.as_str(), payload).await,
            Err(e) => {
                let code = e.code.to_string();
                self.client
                    .publish_with_headers(
                        reply.as_str(),
                        &[
                            (SERVICE_ERROR_HEADER, e.description.as_str()),
                            (SERVICE_ERROR_CODE_HEADER, code.as_str()),
                        ],
                        Bytes::new(),
                    )
                    .await
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Verb {
    Ping,
    Info,
    Stats,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Self::Ping => "PING",
            Self::Info => "INFO",
            Self::Stats => "STATS",
        }
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    id: String,
    version: String,
    description: String,
    metadata: BTreeMap<String, String>,
    queue_group: String,
    started: SystemTime,
    endpoints: Mutex<Vec<EndpointEntry>>,
}

#[derive(Debug)]
struct EndpointEntry {
    name: String,
    subject: String,
    queue_group: String,
    stats: Arc<Mutex<EndpointStats>>,
}

#[derive(Debug, Default)]
struct EndpointStats {
    requests: u64,
    errors: u64,
    processing: Duration,
    last_error: Option<ServiceError>,
}

impl EndpointStats {
    fn record(&mut self, took: Duration, error: Option<&ServiceError>) {
        self.requests += 1;
        self.processing += took;
        if let Some(e) = error {
            self.errors += 1;
            self.last_error = Some(e.clone());
        }
    }
}

/// The responses' JSON, field for field as ADR-32 (and async-nats's `service` types) has it.
#[derive(Serialize)]
struct Response<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    metadata: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoints: Option<Vec<serde_json::Value>>,
}

impl Shared {
    /// The JSON answer to a PING, INFO or STATS request.
    fn describe(&self, verb: Verb) -> Bytes {
        let endpoints = self.endpoints.lock();
        let (kind, description, started, list) = match verb {
            Verb::Ping => ("io.nats.micro.v1.ping_response", None, None, None),
            Verb::Info => (
                "io.nats.micro.v1.info_response",
                Some(self.description.as_str()),
                None,
                Some(
                    endpoints
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "name": e.name,
                                "subject": e.subject,
                                "queue_group": e.queue_group,
                                "metadata": {},
                            })
                        })
                        .collect(),
                ),
            ),
            Verb::Stats => (
                "io.nats.micro.v1.stats_response",
                None,
                Some(crate::gotime::rfc3339(self.started)),
                Some(
                    endpoints
                        .iter()
                        .map(|e| {
                            let s = e.stats.lock();
                            let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
                            let average = match s.requests {
                                0 => 0,
                                n => nanos(s.processing) / n,
                            };
                            serde_json::json!({
                                "name": e.name,
                                "subject": e.subject,
                                "queue_group": e.queue_group,
                                "num_requests": s.requests,
                                "num_errors": s.errors,
                                "processing_time": nanos(s.processing),
                                "average_processing_time": average,
                                "last_error": s.last_error.as_ref().map(ToString::to_string).unwrap_or_default(),
                            })
                        })
                        .collect(),
                ),
            ),
        };
        let body = Response {
            kind,
            name: &self.name,
            id: &self.id,
            version: &self.version,
            metadata: &self.metadata,
            description,
            started,
            endpoints: list,
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_default()
    }
}

/// ADR-32's names: letters, digits, `-` and `_`.
fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A semantic version: `MAJOR.MINOR.PATCH`, numbers without leading zeros, then an optional
/// `-pre.release` and `+build` of `[0-9A-Za-z-]` identifiers. (Written by hand: a regex or
/// semver crate for one check is more than it is worth.)
fn is_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let number = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let parts: Vec<_> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| number(p))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|i| ident(i) && (!i.bytes().all(|b| b.is_ascii_digit()) || number(i)))
        })
        && build.is_none_or(|b| b.split('.').all(ident))
}

/// A fresh instance id: 22 characters, as a NUID is.
fn new_service_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..22)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_as_adr_32_has_them() {
        assert!(is_service_name("placement-v2_x"));
        assert!(!is_service_name("a.b") && !is_service_name(""));
        for ok in [
            "0.0.1",
            "1.2.3",
            "1.0.0-rc.1",
            "1.0.0-alpha+001",
            "10.20.30+build.5",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "v1.2.3", "1.2.3+", "1.2.x",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
        assert_eq!(new_service_id().len(), 22);
    }
}
