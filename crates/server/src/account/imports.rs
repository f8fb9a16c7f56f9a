//! What accounts share: stream and service exports, and their imports.
//!
//! **Stream imports** work as nats-server's: a subscription in the importing account that
//! overlaps an import gets a *shadow* subscription in the exporter's sublist, on the subject
//! mapped back into the exporter's space. A message published in the exporter reaches the shadow
//! (on this server, or over a route in the exporter's account, since the shadow is interest like
//! any other) and is delivered to the subscriber under its subject in the importer's space. So
//! interest crosses routes only while someone subscribes, and a mixed cluster with nats-server
//! agrees on where each message goes.
//!
//! **Service imports**: a request published on the import's subject in the importing account
//! meets a server-side subscription there (announced to nobody: each server serves its own
//! clients), which publishes it in the exporter's account with its reply subject mapped to a
//! `_R_.` subject of the exporter's. The exporter's one wildcard subscription on its `_R_.`
//! prefix (announced, so responses come back from any server) maps each response back to the
//! requester's reply subject. A mapping ends after one response (singleton), an empty message
//! (chunked), or the export's response threshold without a response.
//!
//! **Service latency**: for a sampled request of an export with `latency`, the response also
//! publishes nats-server's `io.nats.server.metric.v1.service_latency` JSON on the latency
//! subject in the exporter's account.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::value::RawValue;

use super::config::{self, Latency, ResponseType, Sampling};
use super::system::{latency_client, TypedEvent};
use super::transform::{intersection, is_subset, Transform};
use super::Account;
use crate::broker::Broker;
use crate::conn::{Conn, ConnKind};
use crate::delivery::{self, Handler, Msg, Touched};
use crate::monitor::rfc3339;
use crate::subscription::{OwnedSub, Subscription, Target};

/// nats-server's reply prefix for service responses.
const REPLY_PREFIX: &str = "_R_.";
/// Service imports may chain (A imports from B, which imports from C); a loop stops here.
const MAX_CHAIN: usize = 8;

thread_local! {
    /// How deep this thread is in nested service imports.
    static CHAIN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// An account's exports, as configured.
#[derive(Default)]
pub(crate) struct Exports {
    streams: Vec<config::StreamExport>,
    services: Vec<Arc<ServiceExport>>,
}

/// A service export at run time.
pub(crate) struct ServiceExport {
    subject: String,
    accounts: Vec<String>,
    response: ResponseType,
    threshold: Duration,
    latency: Option<Latency>,
}

impl Exports {
    pub(crate) fn new(c: &config::Account) -> Self {
        Self {
            streams: c.stream_exports.clone(),
            services: c
                .service_exports
                .iter()
                .map(|e| {
                    Arc::new(ServiceExport {
                        subject: e.subject.clone(),
                        accounts: e.accounts.clone(),
                        response: e.response,
                        threshold: e.threshold,
                        latency: e.latency.clone(),
                    })
                })
                .collect(),
        }
    }

    /// Whether `importer` may import the stream `subject`.
    pub(crate) fn stream_allows(&self, importer: &str, subject: &str) -> bool {
        self.streams.iter().any(|e| {
            is_subset(subject, &e.subject)
                && (e.accounts.is_empty() || e.accounts.iter().any(|a| a == importer))
        })
    }

    /// The service export `importer` may send `subject` requests to.
    pub(crate) fn service_for(&self, importer: &str, subject: &str) -> Option<&Arc<ServiceExport>> {
        self.services.iter().find(|e| {
            is_subset(subject, &e.subject)
                && (e.accounts.is_empty() || e.accounts.iter().any(|a| a == importer))
        })
    }

    /// The shortest response threshold, if the account exports services.
    pub(crate) fn min_threshold(&self) -> Option<Duration> {
        self.services.iter().map(|e| e.threshold).min()
    }

    /// (kind, subject, approved accounts, response type, latency subject) per export.
    pub(crate) fn describe(&self) -> Vec<ExportInfo> {
        let streams = self.streams.iter().map(|e| ExportInfo {
            service: false,
            subject: e.subject.clone(),
            accounts: e.accounts.clone(),
            response: None,
            latency: None,
        });
        let services = self.services.iter().map(|e| ExportInfo {
            service: true,
            subject: e.subject.clone(),
            accounts: e.accounts.clone(),
            response: Some(e.response),
            latency: e.latency.clone(),
        });
        services.chain(streams).collect()
    }
}

/// One export, for `/accountz`.
pub(crate) struct ExportInfo {
    pub(crate) service: bool,
    pub(crate) subject: String,
    pub(crate) accounts: Vec<String>,
    pub(crate) response: Option<ResponseType>,
    pub(crate) latency: Option<Latency>,
}

/// One import, for `/accountz`.
pub(crate) struct ImportInfo {
    pub(crate) service: bool,
    pub(crate) account: String,
    /// The subject in the exporter's space.
    pub(crate) subject: String,
    /// The subject in the importer's space.
    pub(crate) local: String,
    pub(crate) share: bool,
    /// The export's latency measurement (service imports).
    pub(crate) latency: Option<Latency>,
}

/// One open reply mapping, for `/accountz`.
pub(crate) struct ResponseInfo {
    /// The `_R_.` subject.
    pub(crate) subject: String,
    pub(crate) requester: String,
    /// The requester's reply subject.
    pub(crate) reply: String,
    pub(crate) tracking: bool,
}

/// A stream import at run time.
pub(crate) struct StreamImport {
    exporter: Weak<Account>,
    exporter_name: String,
    /// The subject in the exporter's space.
    from: String,
    /// The subject in the importer's space.
    to: String,
    /// `from` → `to` when `from` has wildcards and differs from `to`.
    forward: Option<Transform>,
    /// `to` → `from` (for shadow subjects).
    back: Option<Transform>,
}

impl StreamImport {
    /// A validated import of `exporter`'s `from` as `to` (`to` already includes a prefix).
    pub(crate) fn new(exporter: &Arc<Account>, from: &str, to: &str) -> Result<Self, String> {
        let wild = from.split('.').any(|t| t == "*" || t == ">");
        let (forward, back) = if wild && from != to {
            let t = Transform::new(from, to)?;
            let back = t.reverse();
            (Some(t), Some(back))
        } else {
            (None, None)
        };
        Ok(Self {
            exporter: Arc::downgrade(exporter),
            exporter_name: exporter.name().to_string(),
            from: from.to_string(),
            to: to.to_string(),
            forward,
            back,
        })
    }

    /// The subject a subscriber in the importing account sees for `subject` (exporter's).
    fn deliver_as(&self, subject: &str) -> String {
        match &self.forward {
            Some(t) => t.apply(subject).unwrap_or_else(|| self.to.clone()),
            None if self.from == self.to => subject.to_string(),
            None => self.to.clone(),
        }
    }

    /// The exporter's subject a subscription on `subject` (importer's) needs, if it overlaps
    /// this import (nats-server's four cases: exact, subset, superset, overlap).
    fn shadow_subject(&self, subject: &str) -> Option<String> {
        let map_back = |s: &str| match &self.back {
            Some(back) => back.apply(s),
            None if self.from == self.to => Some(s.to_string()),
            None => Some(self.from.clone()),
        };
        if subject == self.to {
            return Some(self.from.clone());
        }
        if is_subset(subject, &self.to) {
            return map_back(subject);
        }
        let wild = subject.split('.').any(|t| t == "*" || t == ">");
        if !wild {
            return None;
        }
        if is_subset(&self.to, subject) {
            return Some(self.from.clone());
        }
        map_back(&intersection(subject, &self.to)?)
    }
}

/// A subscription's shadow in an exporter's sublist.
pub(crate) struct Shadow {
    exporter: Arc<Account>,
    owned: OwnedSub,
}

/// Where a shadow subscription's messages go: its subscriber, under the importer's subject.
pub(crate) struct ShadowTarget {
    pub(crate) of: Arc<Subscription>,
    import: Arc<StreamImport>,
}

impl ShadowTarget {
    /// The subject the subscriber gets `subject` (exporter's) under.
    pub(crate) fn subject(&self, subject: &[u8]) -> String {
        self.import
            .deliver_as(std::str::from_utf8(subject).unwrap_or_default())
    }
}

impl Account {
    /// Adds a client's subscription: in this account's sublist, and a shadow in the exporter's
    /// sublist for every stream import it overlaps.
    pub(crate) fn subscribe(
        &self,
        sub: &Arc<Subscription>,
        subject: &[u8],
        queue: Option<&[u8]>,
    ) -> Result<starling_sublist::SubHandle, starling_sublist::SublistError> {
        let handle = self.insert(sub, subject, queue)?;
        if let Some(reply) = super::cancel::watched_reply(subject) {
            self.watch_reply(
                Bytes::copy_from_slice(reply),
                super::cancel::Fire::Notify(sub.clone()),
            );
        }
        let streams = self.stream_imports();
        if streams.is_empty() {
            return Ok(handle);
        }
        let subject = String::from_utf8_lossy(subject);
        let mut shadows = Vec::new();
        for import in streams {
            let (Some(exporter), Some(shadow_subject)) =
                (import.exporter.upgrade(), import.shadow_subject(&subject))
            else {
                continue;
            };
            let shadow = Arc::new(Subscription::new(
                sub.conn.clone(),
                &sub.sid,
                Target::Shadow(Box::new(ShadowTarget {
                    of: sub.clone(),
                    import: import.clone(),
                })),
            ));
            if let Ok(h) = exporter.insert(&shadow, shadow_subject.as_bytes(), queue) {
                shadows.push(Shadow {
                    exporter,
                    owned: OwnedSub {
                        sub: shadow,
                        handle: h,
                    },
                });
            }
        }
        if !shadows.is_empty() {
            self.shadows.lock().insert(shadow_key(sub), shadows);
        }
        Ok(handle)
    }

    /// Removes the shadows of a subscription that is going.
    pub(crate) fn remove_shadows(&self, sub: &Subscription) {
        if self.stream_imports().is_empty() {
            return;
        }
        let shadows = self.shadows.lock().remove(&shadow_key(sub));
        for s in shadows.into_iter().flatten() {
            s.exporter.remove(&s.owned.sub, &s.owned.handle);
        }
    }

    fn stream_imports(&self) -> &[Arc<StreamImport>] {
        self.imports.get().map_or(&[], |i| &i.streams[..])
    }

    /// Resolves this account's imports once every account exists (the config was validated).
    pub(crate) fn resolve_imports(&self, c: &config::Account, accounts: &super::Accounts) {
        let mut imports = Imports::default();
        for im in &c.stream_imports {
            let Some(exporter) = accounts.get(&im.account) else {
                continue;
            };
            let to = local_stream_subject(im);
            if let Ok(i) = StreamImport::new(&exporter, &im.subject, &to) {
                imports.streams.push(Arc::new(i));
            }
        }
        for im in &c.service_imports {
            let Some(exporter) = accounts.get(&im.account) else {
                continue;
            };
            let Some(export) = exporter.exports.service_for(&self.name, &im.subject) else {
                continue;
            };
            let local = im.to.clone().unwrap_or_else(|| im.subject.clone());
            let forward = match Transform::new(&local, &im.subject) {
                Ok(t) if local != im.subject => Some(t),
                _ => None,
            };
            imports.services.push(Arc::new(ServiceImport {
                exporter: Arc::downgrade(&exporter),
                exporter_name: exporter.name().to_string(),
                local,
                remote: im.subject.clone(),
                forward,
                export: export.clone(),
                share: im.share,
            }));
        }
        let _ = self.imports.set(imports);
    }

    /// Subscribes the server to each service import's subject (not announced: each server
    /// serves its own clients' requests).
    pub(crate) fn install_service_imports(&self, broker_system: &super::system::System) {
        let Some(imports) = self.imports.get() else {
            return;
        };
        for import in &imports.services {
            broker_system.subscribe(self, &import.local, import.clone(), false);
        }
    }

    /// The account's imports, for `/accountz`.
    pub(crate) fn describe_imports(&self) -> Vec<ImportInfo> {
        let Some(imports) = self.imports.get() else {
            return Vec::new();
        };
        let services = imports.services.iter().map(|s| ImportInfo {
            service: true,
            account: s.exporter_name.clone(),
            subject: s.remote.clone(),
            local: s.local.clone(),
            share: s.share,
            latency: s.export.latency.clone(),
        });
        let streams = imports.streams.iter().map(|s| ImportInfo {
            service: false,
            account: s.exporter_name.clone(),
            subject: s.from.clone(),
            local: s.to.clone(),
            share: false,
            latency: None,
        });
        streams.chain(services).collect()
    }

    /// The account's exports, for `/accountz`.
    pub(crate) fn describe_exports(&self) -> Vec<ExportInfo> {
        self.exports.describe()
    }

    /// Open reply mappings of requests to this account's services, for `/accountz`.
    pub(crate) fn describe_responses(&self) -> Vec<ResponseInfo> {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.responses
            .map
            .lock()
            .iter()
            .map(|(k, r)| ResponseInfo {
                subject: lossy(k),
                requester: r
                    .requester
                    .upgrade()
                    .map(|a| a.name().to_string())
                    .unwrap_or_default(),
                reply: lossy(&r.reply),
                tracking: r.tracking.is_some(),
            })
            .collect()
    }

    /// Drops reply mappings that waited longer than their export's threshold; a tracked one
    /// reports `504 Service Timeout`.
    pub(crate) fn expire_responses(&self, broker: &Broker, now: Instant) {
        let expired: Vec<Response> = {
            let mut map = self.responses.map.lock();
            let keys: Vec<Bytes> = map
                .iter()
                .filter(|(_, r)| now.duration_since(r.last) >= r.export.threshold)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for r in expired {
            if let Some(t) = &r.tracking {
                let timeout = Outcome::Status(504, "Service Timeout");
                self.send_latency(broker, &r.export, r.started, t, timeout, None);
            }
        }
    }

    /// Creates this account's `_R_.` prefix and its wildcard response subscription, once.
    fn reply_prefix(&self, broker: &Broker) -> &str {
        self.responses.prefix.get_or_init(|| {
            let mut p = String::from(REPLY_PREFIX);
            p.extend((0..6).map(|_| base62()));
            p.push('.');
            let wildcard = format!("{p}>");
            let handler = Arc::new(Responses {
                account: self.weak.clone(),
            });
            broker.system().subscribe(self, &wildcard, handler, true);
            p
        })
    }

    /// Publishes a service latency measurement on the export's latency subject.
    fn send_latency(
        &self,
        broker: &Broker,
        export: &ServiceExport,
        started: Instant,
        t: &Tracking,
        outcome: Outcome,
        responder: Option<&Conn>,
    ) {
        let Some(latency) = &export.latency else {
            return;
        };
        let service = Instant::now().duration_since(started);
        let (status, description) = match outcome {
            Outcome::Status(s, d) => (s, d),
            Outcome::Ok => (200, ""),
        };
        let requestor_rtt = t.requestor_rtt;
        let m = ServiceLatency {
            event: TypedEvent::new("io.nats.server.metric.v1.service_latency"),
            status,
            description,
            requestor: Some(&t.requestor),
            responder: responder
                .filter(|c| matches!(c.kind, ConnKind::Client | ConnKind::InProcess))
                .map(|c| latency_client(broker, c, true)),
            header: t.header.as_ref(),
            start: rfc3339(t.start - requestor_rtt),
            service: nanos(service),
            system: 0,
            total: nanos(service + requestor_rtt),
        };
        let data = Bytes::from(serde_json::to_vec(&m).unwrap_or_default());
        broker.system().publish(
            broker,
            self,
            latency.subject.as_bytes(),
            None,
            None,
            &data,
            None,
        );
    }
}

/// Expires reply mappings while the broker runs: every half of the shortest response
/// threshold of any export (between 10 ms and 1 s).
pub(crate) async fn sweep_responses(broker: Arc<Broker>, threshold: Duration) {
    let every = (threshold / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = broker.lifecycle().shutting_down() => return,
        }
        let now = Instant::now();
        for account in broker.accounts().all() {
            account.expire_responses(&broker, now);
        }
    }
}

/// The key of a subscription in [`Account`]'s shadow map: its address (unique while it lives).
fn shadow_key(sub: &Subscription) -> usize {
    sub as *const Subscription as usize
}

/// A stream import's subject in the importing account.
fn local_stream_subject(im: &config::StreamImport) -> String {
    match (&im.prefix, &im.to) {
        (Some(p), _) => format!("{}.{}", p.trim_end_matches('.'), im.subject),
        (None, Some(to)) => to.clone(),
        (None, None) => im.subject.clone(),
    }
}

/// Checks an account's imports against the other accounts' exports (nats-server's errors).
pub(crate) fn validate(
    accounts: &[config::Account],
    system: Option<&str>,
) -> Result<(), crate::error::AccountError> {
    use crate::error::AccountError;
    let valid = |s: &str| starling_sublist::is_valid_subject(s.as_bytes());
    let find = |name: &str| accounts.iter().find(|a| a.name == name);
    for a in accounts {
        for e in &a.stream_exports {
            if !valid(&e.subject) {
                return Err(AccountError::InvalidSubject {
                    what: "stream export",
                    subject: e.subject.clone(),
                });
            }
            for name in &e.accounts {
                if find(name).is_none() {
                    return Err(AccountError::UnknownAccount {
                        account: name.clone(),
                        what: "stream export",
                    });
                }
            }
        }
        for e in &a.service_exports {
            if !valid(&e.subject) {
                return Err(AccountError::InvalidSubject {
                    what: "service export",
                    subject: e.subject.clone(),
                });
            }
            for name in &e.accounts {
                if find(name).is_none() {
                    return Err(AccountError::UnknownAccount {
                        account: name.clone(),
                        what: "service export",
                    });
                }
            }
            if let Some(l) = &e.latency {
                if let Sampling::Percent(p) = l.sampling {
                    if !(1..=100).contains(&p) {
                        return Err(AccountError::BadSampling(e.subject.clone()));
                    }
                }
                if system.is_none() {
                    return Err(AccountError::NoSystemAccount(e.subject.clone()));
                }
                if !starling_sublist::is_valid_literal_subject(l.subject.as_bytes()) {
                    return Err(AccountError::InvalidSubject {
                        what: "service latency subject",
                        subject: l.subject.clone(),
                    });
                }
            }
        }
    }
    for a in accounts {
        for im in &a.stream_imports {
            let Some(exporter) = find(&im.account) else {
                return Err(AccountError::UnknownAccount {
                    account: im.account.clone(),
                    what: "stream import",
                });
            };
            if !valid(&im.subject) {
                return Err(AccountError::InvalidSubject {
                    what: "stream import",
                    subject: im.subject.clone(),
                });
            }
            let allowed = Exports::new(exporter).stream_allows(&a.name, &im.subject);
            if !allowed {
                return Err(AccountError::NotAuthorized {
                    what: "stream import",
                    subject: im.subject.clone(),
                });
            }
            if let Some(p) = &im.prefix {
                if !starling_sublist::is_valid_literal_subject(p.trim_end_matches('.').as_bytes()) {
                    return Err(AccountError::BadPrefix(im.subject.clone()));
                }
            }
            let to = local_stream_subject(im);
            if !valid(&to) {
                return Err(AccountError::InvalidSubject {
                    what: "stream import",
                    subject: to,
                });
            }
            let wild = im.subject.split('.').any(|t| t == "*" || t == ">");
            if wild && to != im.subject {
                if let Err(reason) = Transform::new(&im.subject, &to) {
                    return Err(AccountError::BadMapping {
                        what: "stream import",
                        subject: im.subject.clone(),
                        reason,
                    });
                }
            }
        }
        for im in &a.service_imports {
            let Some(exporter) = find(&im.account) else {
                return Err(AccountError::UnknownAccount {
                    account: im.account.clone(),
                    what: "service import",
                });
            };
            let local = im.to.clone().unwrap_or_else(|| im.subject.clone());
            if !valid(&im.subject) || !valid(&local) {
                return Err(AccountError::InvalidSubject {
                    what: "service import",
                    subject: im.subject.clone(),
                });
            }
            if Exports::new(exporter)
                .service_for(&a.name, &im.subject)
                .is_none()
            {
                return Err(AccountError::NotAuthorized {
                    what: "service import",
                    subject: im.subject.clone(),
                });
            }
            if local != im.subject {
                if let Err(reason) = Transform::new(&local, &im.subject) {
                    return Err(AccountError::BadMapping {
                        what: "service import",
                        subject: im.subject.clone(),
                        reason,
                    });
                }
            }
        }
    }
    Ok(())
}

/// An account's resolved imports.
#[derive(Default)]
pub(crate) struct Imports {
    streams: Vec<Arc<StreamImport>>,
    services: Vec<Arc<ServiceImport>>,
}

/// A service import at run time: the server-side subscription on `local` in the importer.
pub(crate) struct ServiceImport {
    exporter: Weak<Account>,
    exporter_name: String,
    /// The subject in the importer's space.
    local: String,
    /// The subject in the exporter's space.
    remote: String,
    /// `local` → `remote` when they differ (wildcards carried over).
    forward: Option<Transform>,
    export: Arc<ServiceExport>,
    share: bool,
}

impl ServiceImport {
    fn exporter_subject(&self, subject: &[u8]) -> String {
        let subject = String::from_utf8_lossy(subject);
        match &self.forward {
            Some(t) => t.apply(&subject).unwrap_or_else(|| self.remote.clone()),
            None if self.local.contains(['*', '>']) => subject.into_owned(),
            None => self.remote.clone(),
        }
    }
}

impl Handler for ServiceImport {
    /// A request in the importing account: it crosses into the exporter with its reply
    /// subject mapped.
    fn handle(
        &self,
        broker: &Broker,
        importer: &Account,
        from: &Conn,
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> bool {
        // As nats-server: a route never brings a request to a service import (the requester's
        // own server handles it).
        if from.kind == ConnKind::Route {
            return false;
        }
        let Some(exporter) = self.exporter.upgrade() else {
            return false;
        };
        let depth = CHAIN.with(|c| c.get());
        if depth >= MAX_CHAIN {
            return false;
        }
        let subject = self.exporter_subject(msg.subject);
        let tracking = self
            .export
            .latency
            .as_ref()
            .and_then(|l| sampled(l, msg.headers()))
            .map(|header| Tracking {
                requestor: latency_client(broker, from, self.share),
                requestor_rtt: from.rtt(),
                start: SystemTime::now(),
                header,
            });
        let mut reply = None;
        if let Some(requester_reply) = msg.reply {
            let mut r = String::from(exporter.reply_prefix(broker));
            r.extend((0..6).map(|_| base62()));
            let key = Bytes::from(r);
            let now = Instant::now();
            exporter.responses.map.lock().insert(
                key.clone(),
                Response {
                    requester: importer.weak.clone(),
                    reply: Bytes::copy_from_slice(requester_reply),
                    export: self.export.clone(),
                    started: now,
                    last: now,
                    tracking,
                },
            );
            reply = Some(key);
        } else if let Some(t) = tracking {
            // A request without a reply subject: nats-server reports it as a bad request.
            let bad = Outcome::Status(400, "Bad Request");
            exporter.send_latency(broker, &self.export, Instant::now(), &t, bad, None);
        }
        CHAIN.with(|c| c.set(depth + 1));
        let crossed = Msg::new(
            subject.as_bytes(),
            reply.as_deref(),
            msg.header_len,
            msg.data,
            msg.owner,
        );
        let delivered = delivery::publish(broker, &exporter, from, &crossed, touched);
        CHAIN.with(|c| c.set(depth));
        if !delivered {
            let gone = reply.and_then(|key| exporter.responses.map.lock().remove(&key));
            if let Some(r) = gone {
                if let Some(t) = &r.tracking {
                    let unavailable = Outcome::Status(503, "Service Unavailable");
                    exporter.send_latency(broker, &r.export, r.started, t, unavailable, None);
                }
            }
        }
        delivered
    }
}

/// The reply mappings of one exporting account.
#[derive(Default)]
pub(crate) struct ResponseMap {
    prefix: std::sync::OnceLock<String>,
    map: Mutex<HashMap<Bytes, Response>>,
}

/// A request waiting for its response(s).
struct Response {
    requester: Weak<Account>,
    /// The requester's own reply subject.
    reply: Bytes,
    export: Arc<ServiceExport>,
    started: Instant,
    /// When the mapping was last used (a streamed response keeps it alive).
    last: Instant,
    tracking: Option<Tracking>,
}

/// What a sampled request's latency measurement needs.
struct Tracking {
    requestor: Box<RawValue>,
    requestor_rtt: Duration,
    start: SystemTime,
    /// The trace headers that made it sampled.
    header: Option<HashMap<String, Vec<String>>>,
}

/// How a tracked request ended.
enum Outcome {
    Ok,
    Status(u16, &'static str),
}

/// The exporter's subscription on its `_R_.` prefix: a response goes back to the requester.
struct Responses {
    account: Weak<Account>,
}

impl Handler for Responses {
    fn handle(
        &self,
        broker: &Broker,
        _exporter: &Account,
        from: &Conn,
        msg: &Msg<'_>,
        _touched: &mut Touched,
    ) -> bool {
        let Some(exporter) = self.account.upgrade() else {
            return false;
        };
        let (requester, reply, tracking) = {
            let mut map = exporter.responses.map.lock();
            let Some(r) = map.get_mut(msg.subject) else {
                return false;
            };
            let requester = r.requester.upgrade();
            let reply = r.reply.clone();
            let done = match r.export.response {
                ResponseType::Singleton => true,
                ResponseType::Chunked => msg.payload().is_empty(),
                ResponseType::Stream => false,
            };
            r.last = Instant::now();
            // The first response is the one measured.
            let tracking = r.tracking.take().map(|t| (r.export.clone(), r.started, t));
            if done || requester.is_none() {
                map.remove(msg.subject);
            }
            (requester, reply, tracking)
        };
        let Some(requester) = requester else {
            return false;
        };
        // From the server itself, not from the route it may have come over: the requester's
        // reply subscription may be on another server.
        let internal = broker.system().internal_conn();
        let back = Msg::new(&reply, None, msg.header_len, msg.data, msg.owner);
        let mut own = Touched::default();
        let delivered = delivery::publish(broker, &requester, internal, &back, &mut own);
        own.flush();
        if !delivered {
            exporter.responses.map.lock().remove(msg.subject);
        }
        if let Some((export, started, t)) = tracking {
            exporter.send_latency(broker, &export, started, &t, Outcome::Ok, Some(from));
        }
        delivered
    }
}

/// Whether a request to a service with `latency` is measured; `Some(headers)` when it is,
/// with the trace headers that made it so (nats-server's `shouldSample`).
fn sampled(
    latency: &Latency,
    headers: Option<&[u8]>,
) -> Option<Option<HashMap<String, Vec<String>>>> {
    if let Sampling::Percent(p) = latency.sampling {
        if p >= 100 || fastrand::u8(0..100) < p {
            return Some(None);
        }
    }
    let headers = parse_headers(headers?);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    // The trace headers to report: those named (any case), and those starting with `prefix`.
    let pick = |names: &[&str], prefix: Option<&str>| -> HashMap<String, Vec<String>> {
        let wanted = |k: &str| {
            let k = k.to_ascii_lowercase();
            names.contains(&k.as_str()) || prefix.is_some_and(|p| k.starts_with(p))
        };
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in headers.iter().filter(|(k, _)| wanted(k)) {
            out.entry(canonical(k)).or_default().push(v.clone());
        }
        out
    };
    if let Some(uber) = get("uber-trace-id") {
        // trace:span:parent:flags; sampled when flags has bit 0.
        let flags = uber.split(':').nth(3)?;
        let bits = u8::from_str_radix(flags.get(..flags.len().min(2))?, 16).ok()?;
        return (bits & 1 == 1).then(|| Some(pick(&["uber-trace-id"], Some("uberctx-"))));
    }
    const B3: [&str; 5] = [
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
    ];
    match get("x-b3-sampled") {
        Some("1") => return Some(Some(pick(&B3, None))),
        Some("0") => return None,
        _ => {}
    }
    if get("x-b3-traceid").is_some() {
        return Some(Some(pick(&B3, None)));
    }
    if let Some(b3) = get("b3") {
        let parts: Vec<&str> = b3.split('-').collect();
        let denied = (parts.len() > 2 && parts[2] == "0") || (parts.len() == 1 && parts[0] == "0");
        return (!denied).then(|| Some(pick(&["b3"], None)));
    }
    if let Some(tp) = get("traceparent") {
        // version-trace-parent-flags; sampled when flags has bit 0.
        let parts: Vec<&str> = tp.split('-').collect();
        let sampled = parts.len() == 4
            && parts[3].len() == 2
            && u8::from_str_radix(parts[3], 16).is_ok_and(|f| f & 1 == 1);
        return sampled.then(|| Some(pick(&["traceparent", "tracestate"], None)));
    }
    None
}

/// `(name, value)` pairs of a `NATS/1.0` header block.
fn parse_headers(block: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    text.split("\r\n")
        .skip(1)
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// A header name as Go's `textproto.CanonicalMIMEHeaderKey` writes it (`X-B3-Traceid`).
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn base62() -> char {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    DIGITS[fastrand::usize(..DIGITS.len())] as char
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// nats-server's `ServiceLatency` (durations in nanoseconds).
#[derive(Serialize)]
struct ServiceLatency<'a> {
    #[serde(flatten)]
    event: TypedEvent,
    status: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    requestor: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    responder: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<&'a HashMap<String, Vec<String>>>,
    start: String,
    service: u64,
    system: u64,
    total: u64,
}
