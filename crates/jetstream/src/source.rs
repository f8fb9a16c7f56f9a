//! Mirrors and sources: a stream that pulls what another stream (its origin) holds.
//!
//! As nats-server does it, all through the JetStream API, so the origin may be in this
//! account or, through `external.api`, in another account or domain: for each origin the
//! stream creates an ephemeral push consumer there (no acks, flow control, idle heartbeats)
//! delivering to an inbox of this account's JetStream client, and stores what arrives.
//!
//! - A **mirror** stores each message at the origin's sequence and time; the origin's gaps
//!   (deleted or expired messages) become skipped sequences ([`crate::store::Store::skip_to`]).
//!   It resumes from its last sequence + 1.
//! - A **source** appends with the stream's own sequences and adds `Nats-Stream-Source:
//!   <origin> <origin seq> <filter> <transform dest> <subject>`; the last origin sequence of
//!   each source is found again from those headers after a restart.
//!
//! One task per origin. A consumer that cannot be created (the origin does not exist yet) is
//! retried with a backoff, and at once when a stream is created in the account; one that
//! goes quiet (no heartbeat for [`STALE`]) or skips a delivery is replaced, resuming where the
//! stream is. Deleting the stream, or removing its mirror, deletes the origin's consumers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use starling_server::{Client, Message, Server, Subject};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api::error::ApiError;
use crate::api::types::StreamConfig;
use crate::stream::Stream;
use crate::time::now_ns;
use crate::transform::Transform;

/// The origin consumer's idle heartbeat (nats-server's `sourceHealthHB`).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Nothing heard for this long: the consumer is replaced.
const STALE: Duration = Duration::from_secs(5);
/// The origin's consumer goes away on its own after this long without us (nats-server's
/// `sourceHealthCheckInterval`), should our delete never arrive.
const INACTIVE: Duration = Duration::from_secs(10);
/// How long a consumer create may take to be answered.
const CREATE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The most deliveries stored as one batch.
const MAX_BATCH: usize = 1024;

/// Null in JSON reads as the default (clients send `"subject_transforms": null`).
fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `mirror`, or one of `sources` (nats-server's `StreamSource`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SourceSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub(crate) name: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub(crate) opt_start_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) opt_start_time: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub(crate) filter_subject: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) subject_transforms: Vec<TransformSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) external: Option<External>,
    /// A durable consumer of the origin to use (2.14's durable sourcing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) consumer: Option<Value>,
}

/// One of `subject_transforms`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TransformSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub(crate) src: String,
    #[serde(default, deserialize_with = "null_default")]
    pub(crate) dest: String,
}

/// `external`: where the origin's JetStream API and deliveries are reached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct External {
    #[serde(default, deserialize_with = "null_default")]
    pub(crate) api: String,
    #[serde(default, deserialize_with = "null_default")]
    pub(crate) deliver: String,
}

impl SourceSpec {
    /// The key that tells a stream's sources apart (nats-server's `iname`): the name (with a
    /// hash of the external API prefix), the filters and the transform destinations.
    pub(crate) fn iname(&self) -> String {
        let mut name = self.name.clone();
        if let Some(ext) = &self.external {
            name.push(':');
            name.push_str(&short_hash(&ext.api));
        }
        let (src, dest) = if self.subject_transforms.is_empty() {
            let src = if self.filter_subject.is_empty() {
                ">"
            } else {
                self.filter_subject.as_str()
            };
            (src.to_string(), ">".to_string())
        } else {
            let or_all = |s: &str| {
                if s.is_empty() {
                    ">".to_string()
                } else {
                    s.to_string()
                }
            };
            let srcs: Vec<String> = self
                .subject_transforms
                .iter()
                .map(|t| or_all(&t.src))
                .collect();
            let dests: Vec<String> = self
                .subject_transforms
                .iter()
                .map(|t| or_all(&t.dest))
                .collect();
            (srcs.join("\u{c}"), dests.join("\u{c}"))
        };
        format!("{name} {src} {dest}")
    }

    /// The subjects asked of the origin.
    fn filters(&self) -> Vec<String> {
        if !self.filter_subject.is_empty() {
            return vec![self.filter_subject.clone()];
        }
        self.subject_transforms
            .iter()
            .map(|t| {
                if t.src.is_empty() {
                    ">".to_string()
                } else {
                    t.src.clone()
                }
            })
            .collect()
    }

    /// The transforms, in order (checked valid at create and update).
    fn transforms(&self) -> Vec<Transform> {
        self.subject_transforms
            .iter()
            .filter_map(|t| {
                let src = if t.src.is_empty() {
                    ">"
                } else {
                    t.src.as_str()
                };
                let dest = if t.dest.is_empty() {
                    src
                } else {
                    t.dest.as_str()
                };
                Transform::new(src, dest).ok()
            })
            .collect()
    }

    /// The API subject for `verb` (`CONSUMER.CREATE.<origin>`, ...), under `external.api`.
    fn api(&self, verb: &str) -> String {
        match self.external.as_ref().filter(|e| !e.api.is_empty()) {
            Some(e) => format!("{}.{verb}", e.api.trim_end_matches('.')),
            None => format!("$JS.API.{verb}"),
        }
    }
}

/// Eight characters of FNV-1a over `s` (stands in for nats-server's hash of an external API
/// prefix in source keys: only telling prefixes apart matters).
fn short_hash(s: &str) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..8)
        .map(|i| DIGITS[((h >> (i * 8)) % DIGITS.len() as u64) as usize] as char)
        .collect()
}

/// Writes `mirror` and `sources` back as nats-server keeps them: empty fields left out, a
/// null or empty one removed. What does not parse is left for [`validate`] to refuse.
pub(crate) fn normalize(config: &mut StreamConfig) {
    match config.extra.get("mirror") {
        Some(Value::Null) => {
            config.extra.remove("mirror");
        }
        Some(v) => {
            if let Ok(spec) = serde_json::from_value::<SourceSpec>(v.clone()) {
                if let Ok(v) = serde_json::to_value(spec) {
                    config.extra.insert("mirror".into(), v);
                }
            }
        }
        None => {}
    }
    match config.extra.get("sources") {
        Some(Value::Null) => {
            config.extra.remove("sources");
        }
        Some(Value::Array(a)) if a.is_empty() => {
            config.extra.remove("sources");
        }
        Some(v) => {
            if let Ok(specs) = serde_json::from_value::<Vec<SourceSpec>>(v.clone()) {
                if let Ok(v) = serde_json::to_value(specs) {
                    config.extra.insert("sources".into(), v);
                }
            }
        }
        None => {}
    }
}

/// The `mirror` of a configuration, if any.
pub(crate) fn mirror_of(config: &StreamConfig) -> Option<SourceSpec> {
    let v = config.extra.get("mirror").filter(|v| !v.is_null())?;
    serde_json::from_value(v.clone()).ok()
}

/// The `sources` of a configuration.
pub(crate) fn sources_of(config: &StreamConfig) -> Vec<SourceSpec> {
    config
        .extra
        .get("sources")
        .and_then(|v| serde_json::from_value::<Vec<Option<SourceSpec>>>(v.clone()).ok())
        .map(|v| v.into_iter().flatten().collect())
        .unwrap_or_default()
}

/// What nats-server refuses in `mirror` and `sources` (`checkStreamCfg`), with its codes.
pub(crate) fn validate(config: &StreamConfig) -> Result<(), ApiError> {
    let parse = |key: &str| -> Result<(), ApiError> {
        match config.extra.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(v) if key == "mirror" => serde_json::from_value::<SourceSpec>(v.clone())
                .map(|_| ())
                .map_err(ApiError::invalid_json),
            Some(v) => serde_json::from_value::<Vec<Option<SourceSpec>>>(v.clone())
                .map(|_| ())
                .map_err(ApiError::invalid_json),
        }
    };
    parse("mirror")?;
    parse("sources")?;
    let sources = sources_of(config);
    if let Some(m) = mirror_of(config) {
        let first_seq = config.extra.get("first_seq").and_then(Value::as_u64);
        if first_seq.is_some_and(|f| f > 0) {
            return Err(ApiError::new(
                400,
                10143,
                "stream mirrors can not have first sequence configured",
            ));
        }
        if !config.subjects.is_empty() {
            return Err(ApiError::new(
                400,
                10034,
                "stream mirrors can not contain subjects",
            ));
        }
        if !sources.is_empty() {
            return Err(ApiError::new(
                400,
                10031,
                "stream mirrors can not also contain other sources",
            ));
        }
        if !m.filter_subject.is_empty() && !m.subject_transforms.is_empty() {
            return Err(ApiError::new(
                400,
                10150,
                "mirror with multiple subject transforms cannot also have a single subject filter",
            ));
        }
        check_transforms(&m, true)?;
        if m.external.is_none() && !crate::api::types::valid_name(&m.name) {
            return Err(ApiError::new(400, 10142, "mirrored stream name is invalid"));
        }
        check_external(&m)?;
    }
    let mut inames = std::collections::HashSet::new();
    for s in &sources {
        if !crate::api::types::valid_name(&s.name) {
            return Err(ApiError::new(400, 10141, "sourced stream name is invalid"));
        }
        if !inames.insert(s.iname()) {
            return Err(ApiError::new(
                400,
                10140,
                "duplicate source configuration detected",
            ));
        }
        if !s.filter_subject.is_empty() && !s.subject_transforms.is_empty() {
            return Err(ApiError::new(
                400,
                10144,
                "source with multiple subject transforms cannot also have a single subject filter",
            ));
        }
        check_transforms(s, false)?;
        check_external(s)?;
    }
    Ok(())
}

/// A mirror's or source's `subject_transforms`: valid, and (nats-server's) not overlapping.
fn check_transforms(s: &SourceSpec, mirror: bool) -> Result<(), ApiError> {
    let who = if mirror { "mirror" } else { "source" };
    let (bad_src, bad_dest, overlap) = if mirror {
        (10151, 10154, 10152)
    } else {
        (10145, 10146, 10147)
    };
    for t in &s.subject_transforms {
        if !t.src.is_empty() && !starling_sublist::is_valid_subject(t.src.as_bytes()) {
            return Err(ApiError::new(
                400,
                bad_src,
                format!("{who} transform source: invalid subject {}", t.src),
            ));
        }
        let src = if t.src.is_empty() {
            ">"
        } else {
            t.src.as_str()
        };
        let dest = if t.dest.is_empty() {
            src
        } else {
            t.dest.as_str()
        };
        if let Err(e) = Transform::new(src, dest) {
            return Err(ApiError::new(
                400,
                bad_dest,
                format!("{who} transform: {e}"),
            ));
        }
    }
    for (i, a) in s.subject_transforms.iter().enumerate() {
        for b in &s.subject_transforms[i + 1..] {
            let (a, b) = (or_all(&a.src), or_all(&b.src));
            if starling_sublist::subjects_collide(a.as_bytes(), b.as_bytes()) {
                let text = if mirror {
                    "mirror subject filters can not overlap"
                } else {
                    "source filters can not overlap"
                };
                return Err(ApiError::new(400, overlap, text));
            }
        }
    }
    Ok(())
}

fn or_all(s: &str) -> &str {
    if s.is_empty() {
        ">"
    } else {
        s
    }
}

/// `external.deliver` must be a subject one can publish to.
fn check_external(s: &SourceSpec) -> Result<(), ApiError> {
    let Some(e) = &s.external else { return Ok(()) };
    if !e.deliver.is_empty() && !starling_sublist::is_valid_literal_subject(e.deliver.as_bytes()) {
        return Err(ApiError::new(
            400,
            10024,
            format!(
                "stream external delivery prefix {} must not contain wildcards",
                e.deliver
            ),
        ));
    }
    Ok(())
}

/// One origin being pulled.
struct Link {
    spec: SourceSpec,
    iname: String,
    mirror: bool,
    state: Mutex<LinkState>,
}

/// Where a link is.
#[derive(Default)]
struct LinkState {
    /// The last origin sequence stored.
    sseq: u64,
    /// The last delivery sequence of the current consumer (0: nothing from it yet).
    dseq: u64,
    /// What the origin has still to deliver (as its last delivery said).
    lag: u64,
    /// When we last heard from the origin (ns since the epoch; 0: never).
    last: i64,
    error: Option<Value>,
    /// The current consumer on the origin.
    consumer: Option<String>,
    /// Attempts that failed in a row (the backoff).
    fails: u32,
}

/// A stream's mirror or sources while it runs.
#[derive(Default)]
pub(crate) struct Sourcing {
    links: Mutex<Vec<Arc<Link>>>,
    stop: Mutex<CancellationToken>,
}

/// Starts pulling a stream's mirror or sources (creation, recovery, an update that changed
/// them). `wake`: notified when a stream is created in the account, so a link waiting for its
/// origin tries again at once.
pub(crate) fn start(stream: &Arc<Stream>, server: &Server, client: &Client, wake: &Arc<Notify>) {
    stop(stream);
    let config = stream.config();
    let mut links = Vec::new();
    if let Some(spec) = mirror_of(&config) {
        let sseq = stream.store().state().last_seq;
        links.push(link(spec, true, sseq));
    } else {
        let specs = sources_of(&config);
        if specs.is_empty() {
            return;
        }
        let inames: Vec<String> = specs.iter().map(SourceSpec::iname).collect();
        let found = last_sourced(stream, &inames);
        for (spec, sseq) in specs.into_iter().zip(found) {
            links.push(link(spec, false, sseq));
        }
    }
    let cancel = CancellationToken::new();
    for l in &links {
        let (l, weak, server2, client, cancel, wake) = (
            l.clone(),
            Arc::downgrade(stream),
            server.clone(),
            client.clone(),
            cancel.clone(),
            wake.clone(),
        );
        server.spawn(async move { run(l, weak, server2, client, cancel, wake).await });
    }
    *stream.sourcing.links.lock() = links;
    *stream.sourcing.stop.lock() = cancel;
}

fn link(spec: SourceSpec, mirror: bool, sseq: u64) -> Arc<Link> {
    Arc::new(Link {
        iname: spec.iname(),
        spec,
        mirror,
        state: Mutex::new(LinkState {
            sseq,
            ..LinkState::default()
        }),
    })
}

/// Stops pulling (the stream is deleted, or its mirror or sources changed): each link's task
/// deletes its consumer on the origin as it ends.
pub(crate) fn stop(stream: &Stream) {
    std::mem::take(&mut *stream.sourcing.stop.lock()).cancel();
    stream.sourcing.links.lock().clear();
}

/// `mirror` and `sources` of STREAM.INFO (nats-server's `StreamSourceInfo`).
pub(crate) fn info(stream: &Stream, v: &mut Value) {
    let links = stream.sourcing.links.lock().clone();
    let now = now_ns();
    let one = |l: &Link| {
        let st = l.state.lock();
        let mut o = json!({
            "name": l.spec.name,
            "lag": st.lag,
            "active": if st.last == 0 { -1 } else { (now - st.last).max(0) },
        });
        if let Some(e) = &st.error {
            o["error"] = e.clone();
        }
        if !l.spec.filter_subject.is_empty() {
            o["filter_subject"] = json!(l.spec.filter_subject);
        }
        if !l.spec.subject_transforms.is_empty() {
            o["subject_transforms"] = json!(l.spec.subject_transforms);
        }
        if let Some(e) = &l.spec.external {
            o["external"] = json!(e);
        }
        if !l.mirror && st.sseq > 0 {
            // 2.15 tells a source's last origin sequence.
            o["seq"] = json!(st.sseq);
        }
        o
    };
    match links.first() {
        Some(l) if l.mirror => v["mirror"] = one(l),
        Some(_) => v["sources"] = Value::Array(links.iter().map(|l| one(l)).collect()),
        None => {}
    }
}

/// The last origin sequence stored for each of `inames`, from the newest `Nats-Stream-Source`
/// header of each (0 when none is held).
fn last_sourced(stream: &Stream, inames: &[String]) -> Vec<u64> {
    let mut found = vec![0; inames.len()];
    let mut left = inames.len();
    let mut store = stream.store();
    let st = store.state();
    if st.msgs == 0 {
        return found;
    }
    // Newest first, until every source has been seen.
    let mut seq = st.last_seq;
    while seq >= st.first_seq && left > 0 {
        if let Ok(Some(m)) = store.load(seq) {
            if let Some((iname, oseq)) = m.headers().and_then(parse_source_header) {
                if let Some(i) = inames.iter().position(|n| *n == iname) {
                    if found[i] == 0 {
                        found[i] = oseq;
                        left -= 1;
                    }
                }
            }
        }
        seq -= 1;
    }
    found
}

/// `Nats-Stream-Source: <name> <seq> <filter> <dest> <subject>` → (iname, seq).
fn parse_source_header(block: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(block).ok()?;
    let value = text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == "Nats-Stream-Source").then(|| v.trim())
    })?;
    let f: Vec<&str> = value.split(' ').collect();
    if f.len() < 4 {
        return None;
    }
    Some((format!("{} {} {}", f[0], f[2], f[3]), f[1].parse().ok()?))
}

/// Why a session with the origin ended.
enum Ended {
    /// The stream is going (deleted, changed, the server shutting down).
    Stopped,
    /// Try again (after the backoff when `failed`).
    Retry { failed: bool },
}

/// One link's task: sessions with the origin until stopped.
async fn run(
    link: Arc<Link>,
    stream: Weak<Stream>,
    server: Server,
    client: Client,
    cancel: CancellationToken,
    wake: Arc<Notify>,
) {
    loop {
        let Some(s) = stream.upgrade() else { break };
        let ended = tokio::select! {
            e = session(&link, &s, &client) => e,
            () = cancel.cancelled() => Ended::Stopped,
            () = server.shutting_down() => return,
        };
        drop(s);
        delete_consumer(&link, &client).await;
        let Ended::Retry { failed } = ended else {
            break;
        };
        let delay = if failed {
            let fails = {
                let mut st = link.state.lock();
                st.fails = st.fails.saturating_add(1);
                st.fails
            };
            (Duration::from_millis(250) * 2u32.saturating_pow(fails.min(6))).min(MAX_BACKOFF)
        } else {
            Duration::from_millis(50)
        };
        let woken = wake.notified();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = woken => {}
            () = cancel.cancelled() => break,
            () = server.shutting_down() => return,
        }
    }
}

/// Deletes the link's consumer on the origin, if it has one (best effort: the origin also
/// drops it once inactive).
async fn delete_consumer(link: &Link, client: &Client) {
    let Some(name) = link.state.lock().consumer.take() else {
        return;
    };
    let subject = link
        .spec
        .api(&format!("CONSUMER.DELETE.{}.{name}", link.spec.name));
    let _ = client
        .request_with_timeout(subject, Bytes::new(), Duration::from_secs(2))
        .await;
}

/// Creates a consumer on the origin and stores what it delivers until it fails.
async fn session(link: &Link, stream: &Arc<Stream>, client: &Client) -> Ended {
    if link.spec.consumer.is_some() {
        // Durable sourcing (a consumer reset on a consumer the user made) is not done here.
        set_error(
            link,
            ApiError::new(
                500,
                if link.mirror { 10029 } else { 10045 },
                "durable consumer sourcing is not supported",
            ),
        );
        return Ended::Retry { failed: true };
    }
    let start = {
        let mut st = link.state.lock();
        if link.mirror {
            // A mirror resumes after what it holds.
            st.sseq = stream.store().state().last_seq;
        }
        st.dseq = 0;
        st.sseq
    };
    let token = format!(
        "{}{}",
        crate::api::random_token(),
        crate::api::random_token()
    );
    let deliver = match link
        .spec
        .external
        .as_ref()
        .filter(|e| !e.deliver.is_empty())
    {
        Some(e) => format!(
            "{}.{}.{token}",
            e.deliver.trim_end_matches('.'),
            if link.mirror { "M" } else { "S" }
        ),
        None => format!("$JS.{}.{token}", if link.mirror { "M" } else { "S" }),
    };
    let mut sub = match client.subscribe(&deliver).await {
        Ok(s) => s,
        Err(e) => {
            set_error(link, setup_failed(link, e));
            return Ended::Retry { failed: true };
        }
    };
    let request = create_request(link, &deliver, start);
    let subject = link
        .spec
        .api(&format!("CONSUMER.CREATE.{}", link.spec.name));
    let body = Bytes::from(serde_json::to_vec(&request).unwrap_or_default());
    let reply = match client
        .request_with_timeout(subject, body, CREATE_TIMEOUT)
        .await
    {
        Ok(m) => m,
        Err(e) => {
            set_error(link, setup_failed(link, e));
            return Ended::Retry { failed: true };
        }
    };
    let info: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
    if let Some(e) = info.get("error") {
        debug!(stream = %stream.name(), origin = %link.spec.name, "source consumer refused: {e}");
        link.state.lock().error = Some(e.clone());
        return Ended::Retry { failed: true };
    }
    let Some(name) = info.get("name").and_then(Value::as_str) else {
        set_error(link, setup_failed(link, "invalid consumer create response"));
        return Ended::Retry { failed: true };
    };
    {
        let mut st = link.state.lock();
        st.consumer = Some(name.to_string());
        st.error = None;
        st.fails = 0;
        st.last = now_ns();
        if let Some(n) = info.get("num_pending").and_then(Value::as_u64) {
            st.lag = n;
        }
    }
    let name = name.to_string();
    let transforms = link.spec.transforms();
    loop {
        let first = match tokio::time::timeout(STALE, sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Ended::Stopped,
            Err(_) => {
                debug!(stream = %stream.name(), origin = %link.spec.name, "source consumer went quiet");
                return Ended::Retry { failed: false };
            }
        };
        let mut msgs = vec![first];
        while msgs.len() < MAX_BATCH {
            match sub.next().now_or_never() {
                Some(Some(m)) => msgs.push(m),
                _ => break,
            }
        }
        link.state.lock().last = now_ns();
        // What to store, with the link's position before each (to go back to if refused).
        let mut batch: Vec<(Message, Option<(u64, i64)>)> = Vec::new();
        let mut before: Vec<(u64, u64)> = Vec::new();
        let mut retry = false;
        let mut controls = Vec::new();
        for m in msgs {
            if is_control(&m) {
                // Answered once what came before it is stored; a heartbeat is checked against
                // the deliveries before it, not those after it in the same batch.
                let dseq = link.state.lock().dseq;
                controls.push((m, dseq));
                continue;
            }
            let Some(ack) = AckInfo::parse(m.reply.as_ref().map_or("", |r| r.as_str())) else {
                continue;
            };
            if ack.consumer != name || ack.delivered > 1 {
                continue;
            }
            let mut st = link.state.lock();
            let prev = (st.sseq, st.dseq);
            if ack.stream_seq <= st.sseq {
                // Already held; only the delivery count moves.
                if ack.consumer_seq == st.dseq + 1 {
                    st.dseq += 1;
                }
                continue;
            }
            let fresh = st.dseq == 0;
            let next = if link.mirror {
                ack.stream_seq == st.sseq + 1 || fresh || ack.consumer_seq == st.dseq + 1
            } else {
                ack.consumer_seq == st.dseq + 1 || (fresh && ack.consumer_seq > st.dseq)
            };
            if !next {
                // A delivery was missed: start again from what is held.
                retry = true;
                break;
            }
            st.sseq = ack.stream_seq;
            st.dseq = ack.consumer_seq;
            st.lag = ack.pending;
            drop(st);
            before.push(prev);
            if link.mirror {
                let subject = transformed(&transforms, m.subject.as_str());
                batch.push((
                    Message {
                        subject: subject.map_or(m.subject.clone(), |s| Subject::from(s.as_str())),
                        reply: None,
                        headers: m.headers.clone(),
                        payload: m.payload.clone(),
                    },
                    Some((ack.stream_seq, ack.time)),
                ));
            } else {
                batch.push((sourced_message(link, &transforms, &m, ack.stream_seq), None));
            }
        }
        if !batch.is_empty() {
            let (done, refused) = stream.store_sourced(client, &batch).await;
            if let Some(e) = refused {
                // Asked again from the first one not stored.
                let (sseq, dseq) = before[done];
                let mut st = link.state.lock();
                st.sseq = sseq;
                st.dseq = dseq;
                drop(st);
                warn!(stream = %stream.name(), origin = %link.spec.name, "storing a sourced message failed: {e}");
                return Ended::Retry { failed: true };
            }
        }
        if retry {
            return Ended::Retry { failed: false };
        }
        for (m, dseq) in controls {
            if let Some(r) = control(client, &m, dseq).await {
                return r;
            }
        }
    }
}

/// The consumer create request for a link starting after origin sequence `last`.
fn create_request(link: &Link, deliver: &str, last: u64) -> Value {
    let spec = &link.spec;
    let mut config = json!({
        "deliver_subject": deliver,
        "ack_policy": "none",
        "ack_wait": 22 * 3600 * 1_000_000_000i64,
        "max_deliver": 1,
        "idle_heartbeat": HEARTBEAT.as_nanos() as i64,
        "flow_control": true,
        "direct": true,
        "inactive_threshold": INACTIVE.as_nanos() as i64,
        "num_replicas": 1,
        "mem_storage": true,
    });
    if last > 0 {
        config["deliver_policy"] = json!("by_start_sequence");
        config["opt_start_seq"] = json!(last + 1);
    } else if spec.opt_start_seq > 0 {
        config["deliver_policy"] = json!("by_start_sequence");
        config["opt_start_seq"] = json!(spec.opt_start_seq);
    } else if let Some(t) = &spec.opt_start_time {
        config["deliver_policy"] = json!("by_start_time");
        config["opt_start_time"] = json!(t);
    } else {
        config["deliver_policy"] = json!("all");
    }
    match spec.filters().as_slice() {
        [] => {}
        [one] => config["filter_subject"] = json!(one),
        many => config["filter_subjects"] = json!(many),
    }
    json!({ "stream_name": spec.name, "config": config })
}

/// A source's copy of origin message `m` (origin sequence `seq`): without the headers that
/// must not travel (an earlier `Nats-Stream-Source`, `Nats-Expected-*`, `Nats-Batch-*`), with
/// this link's `Nats-Stream-Source`, under the transformed subject.
fn sourced_message(link: &Link, transforms: &[Transform], m: &Message, seq: u64) -> Message {
    let mut parts = link.iname.splitn(3, ' ');
    let (name, src, dest) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or(">"),
        parts.next().unwrap_or(">"),
    );
    let mut block = BytesMut::with_capacity(64 + m.headers.as_ref().map_or(0, Bytes::len));
    block.put_slice(b"NATS/1.0\r\n");
    if let Some(h) = &m.headers {
        for line in String::from_utf8_lossy(h).split("\r\n").skip(1) {
            let key = line.split(':').next().unwrap_or_default();
            if line.is_empty()
                || key == "Nats-Stream-Source"
                || key.starts_with("Nats-Expected-")
                || key.starts_with("Nats-Batch-")
            {
                continue;
            }
            block.put_slice(line.as_bytes());
            block.put_slice(b"\r\n");
        }
    }
    block.put_slice(
        format!(
            "Nats-Stream-Source: {name} {seq} {src} {dest} {}\r\n\r\n",
            m.subject.as_str()
        )
        .as_bytes(),
    );
    let subject = transformed(transforms, m.subject.as_str());
    Message {
        subject: subject.map_or(m.subject.clone(), |s| Subject::from(s.as_str())),
        reply: None,
        headers: Some(block.freeze()),
        payload: m.payload.clone(),
    }
}

/// The subject under the first transform that matches it.
fn transformed(transforms: &[Transform], subject: &str) -> Option<String> {
    transforms.iter().find_map(|t| t.apply(subject))
}

/// A heartbeat or flow control request (`NATS/1.0 100 ...`, no payload).
fn is_control(m: &Message) -> bool {
    m.payload.is_empty()
        && m.headers
            .as_ref()
            .is_some_and(|h| h.starts_with(b"NATS/1.0 100 "))
}

/// Answers a flow control request, checks a heartbeat against `dseq`, the last delivery
/// before it: `Some` when the consumer must be replaced (the heartbeat says one was missed).
async fn control(client: &Client, m: &Message, dseq: u64) -> Option<Ended> {
    if let Some(reply) = &m.reply {
        let _ = client.publish(reply.as_str(), Bytes::new()).await;
        return None;
    }
    if let Some(last) = m
        .header("Nats-Last-Consumer")
        .and_then(|v| v.parse::<u64>().ok())
    {
        if last > 0 && last != dseq {
            return Some(Ended::Retry { failed: false });
        }
    }
    if let Some(fc) = m.header("Nats-Consumer-Stalled") {
        let _ = client.publish(fc, Bytes::new()).await;
    }
    None
}

/// What a delivery's ack subject says.
struct AckInfo<'a> {
    consumer: &'a str,
    delivered: u64,
    stream_seq: u64,
    consumer_seq: u64,
    time: i64,
    pending: u64,
}

impl<'a> AckInfo<'a> {
    /// `$JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<cseq>.<ts>.<pending>` (v1), or v2 with the
    /// domain and account hash after `$JS.ACK` (and a random token at the end).
    fn parse(reply: &'a str) -> Option<Self> {
        let t: Vec<&str> = reply.split('.').collect();
        if t.len() < 9 || t[0] != "$JS" || t[1] != "ACK" {
            return None;
        }
        let at = match t.len() {
            9 => 3,
            n if n >= 11 => 5,
            _ => return None,
        };
        let n = |i: usize| t.get(at + i).and_then(|s| s.parse::<u64>().ok());
        Some(Self {
            consumer: t[at],
            delivered: n(1)?,
            stream_seq: n(2)?,
            consumer_seq: n(3)?,
            time: t.get(at + 4)?.parse().ok()?,
            pending: n(5)?,
        })
    }
}

fn setup_failed(link: &Link, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(500, if link.mirror { 10029 } else { 10045 }, e.to_string())
}

fn set_error(link: &Link, e: ApiError) {
    link.state.lock().error = serde_json::to_value(e).ok();
}
