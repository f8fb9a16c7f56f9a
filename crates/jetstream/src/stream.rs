//! One stream: its configuration, its store, and the capture of what is published to its
//! subjects.
//!
//! Capture runs as one task per stream. It takes every message the stream's subscription has
//! received so far as one batch, checks and appends each to the store, hands the batch to the
//! operating system in one write (and, with `sync_interval: always`, one fsync), and only then
//! sends the publishers their acknowledgements: a `PubAck` always means the message is written.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use serde_json::json;
use starling_server::{Client, Message, Subscriber};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api::error::ApiError;
use crate::api::types::{Discard, PubAck, Retention, StreamConfig, StreamStateJson};
use crate::config::SyncPolicy;
use crate::consumer::Consumer;
use crate::replication::{Batch, Local, Replica};
use crate::store::{record_size, Store, StoreError};
use crate::time::{now_ns, rfc3339};
use crate::transform::Transform;
use crate::ttl::{self, Deadlines, Ttl};
use crate::usage::Usage;

/// The most messages one capture batch takes before writing.
const MAX_BATCH: usize = 1024;

/// A stream at run time.
pub(crate) struct Stream {
    name: String,
    config: Mutex<StreamConfig>,
    /// When it was created (ns since the epoch).
    created: i64,
    store: Arc<Mutex<Box<dyn Store>>>,
    /// The `Nats-Msg-Id`s seen within the duplicate window.
    dedupe: Mutex<Dedupe>,
    /// Where its configuration lives on disk (file streams).
    dir: Option<PathBuf>,
    /// Stops the running capture task (the stream is deleted or its subjects changed).
    stop: Mutex<CancellationToken>,
    sync: SyncPolicy,
    domain: Option<String>,
    consumers: Mutex<std::collections::BTreeMap<String, Arc<Consumer>>>,
    /// What all streams hold, against the server's limits.
    usage: Arc<Usage>,
    /// `subject_transform`: what a captured subject is stored as.
    subject_transform: Mutex<Option<Transform>>,
    /// `republish`: the transform to the destination, and whether only headers go.
    republish: Mutex<Option<(Transform, bool)>>,
    /// Where its writes must be before they are acknowledged (see `replication`).
    replica: Box<dyn Replica>,
    /// See [`Self::version`].
    version: std::sync::atomic::AtomicU64,
    /// The bytes of this stream counted in `usage` (0 for a stream with a reservation).
    counted: std::sync::atomic::AtomicU64,
    /// When the messages with a `Nats-TTL` expire.
    deadlines: Mutex<Deadlines>,
    /// Its mirror or sources, pulling from their origins (see `source`).
    pub(crate) sourcing: crate::source::Sourcing,
}

/// The ids of recent publishes: id → sequence, and the order they expire in.
#[derive(Default)]
struct Dedupe {
    ids: HashMap<Box<str>, u64>,
    order: VecDeque<(i64, Box<str>)>,
    /// The id of the last message stored, for `Nats-Expected-Last-Msg-Id`.
    last: Option<Box<str>>,
}

impl Dedupe {
    fn expire(&mut self, now: i64, window: i64) {
        while let Some((t, _)) = self.order.front() {
            if now - *t < window {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.ids.remove(&id);
            }
        }
    }

    fn insert(&mut self, id: &str, seq: u64, now: i64) {
        let id: Box<str> = id.into();
        self.ids.insert(id.clone(), seq);
        self.order.push_back((now, id));
    }
}

/// The outcome of one captured publish.
enum Stored {
    Seq(u64),
    Duplicate(u64),
}

/// A stored message's copy for `republish`: where it goes, its header block's length, and
/// headers + payload.
struct Republished {
    subject: String,
    header_len: usize,
    data: Bytes,
}

impl Stream {
    pub(crate) fn new(
        config: StreamConfig,
        created: i64,
        store: Box<dyn Store>,
        dir: Option<PathBuf>,
        sync: SyncPolicy,
        domain: Option<String>,
        usage: Arc<Usage>,
    ) -> Arc<Self> {
        let mut store = store;
        let deadlines = if config.allow_msg_ttl {
            ttl_deadlines(&mut *store, &config.name)
        } else {
            Deadlines::default()
        };
        let held = store.state().bytes;
        let storage = config.storage;
        let reserved = config.max_bytes.max(0) as u64;
        usage.moved(storage, 0, if reserved > 0 { 0 } else { held });
        let republish = Mutex::new(republish_of(&config));
        let subject_transform = Mutex::new(subject_transform_of(&config));
        Arc::new(Self {
            republish,
            subject_transform,
            replica: Box::new(Local),
            version: std::sync::atomic::AtomicU64::new(0),
            usage,
            counted: std::sync::atomic::AtomicU64::new(if reserved > 0 { 0 } else { held }),
            name: config.name.clone(),
            config: Mutex::new(config),
            created,
            store: Arc::new(Mutex::new(store)),
            dedupe: Mutex::new(Dedupe::default()),
            dir,
            stop: Mutex::new(CancellationToken::new()),
            sync,
            domain,
            consumers: Mutex::new(Default::default()),
            deadlines: Mutex::new(deadlines),
            sourcing: Default::default(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn config(&self) -> StreamConfig {
        self.config.lock().clone()
    }

    pub(crate) fn set_config(&self, config: StreamConfig) {
        *self.republish.lock() = republish_of(&config);
        *self.subject_transform.lock() = subject_transform_of(&config);
        *self.config.lock() = config;
    }

    pub(crate) fn dir(&self) -> Option<&PathBuf> {
        self.dir.as_ref()
    }

    /// Where a consumer with `config` keeps its state: durable consumers of file streams do
    /// (`obs/<name>` in the stream's directory), unless they ask for memory storage.
    pub(crate) fn consumer_dir(&self, config: &crate::consumer::ConsumerConfig) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let name = config.durable_name.as_deref().filter(|d| !d.is_empty())?;
        if config
            .extra
            .get("mem_storage")
            .and_then(serde_json::Value::as_bool)
            == Some(true)
        {
            return None;
        }
        Some(dir.join("obs").join(name))
    }

    /// Interest retention: removes each of `seqs` that every consumer is done with.
    pub(crate) fn release_interest(&self, seqs: &[u64]) {
        let consumers = self.consumers();
        let mut done = Vec::new();
        for &seq in seqs {
            let subject = match self.store.lock().load(seq) {
                Ok(Some(m)) => m.subject,
                _ => continue,
            };
            if consumers.iter().all(|c| c.is_done_with(seq, &subject)) {
                done.push(seq);
            }
        }
        if done.is_empty() {
            return;
        }
        let mut store = self.store.lock();
        for seq in done {
            let _ = store.remove(seq);
        }
        let _ = store.flush();
        drop(store);
        self.recount();
    }

    /// Tells `usage` what the stream holds now (after appends and removals).
    pub(crate) fn recount(&self) {
        let (storage, reserved) = {
            let c = self.config.lock();
            (c.storage, c.max_bytes > 0)
        };
        let now = if reserved {
            0
        } else {
            self.store.lock().state().bytes
        };
        let old = self.counted.swap(now, std::sync::atomic::Ordering::Relaxed);
        self.usage.moved(storage, old, now);
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Bumped after every change to what the stream holds (appends, removals): a consumer whose
    /// count was made at this version needs no new look at the store.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether this server leads the stream (always, until streams are replicated).
    pub(crate) fn is_leader(&self) -> bool {
        self.replica.is_leader()
    }

    /// The JetStream domain, if any.
    pub(crate) fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// Whether writes are fsynced before they are acknowledged.
    pub(crate) fn syncs_always(&self) -> bool {
        self.sync == SyncPolicy::Always
    }

    pub(crate) fn created(&self) -> i64 {
        self.created
    }

    pub(crate) fn consumer(&self, name: &str) -> Option<Arc<Consumer>> {
        self.consumers.lock().get(name).cloned()
    }

    pub(crate) fn consumers(&self) -> Vec<Arc<Consumer>> {
        self.consumers.lock().values().cloned().collect()
    }

    /// The consumers users see: not the `direct` ones mirrors and sources make (nats-server
    /// leaves those out of listings, counts and limits).
    pub(crate) fn public_consumers(&self) -> Vec<Arc<Consumer>> {
        self.consumers
            .lock()
            .values()
            .filter(|c| !c.config().config.is_direct())
            .cloned()
            .collect()
    }

    pub(crate) fn add_consumer(&self, c: Arc<Consumer>) {
        self.consumers.lock().insert(c.name().to_string(), c);
    }

    /// Removes a consumer, and what it kept on disk.
    pub(crate) fn remove_consumer(&self, name: &str) -> Option<Arc<Consumer>> {
        let c = self.consumers.lock().remove(name)?;
        c.stop();
        c.remove_files();
        Some(c)
    }

    pub(crate) fn store(&self) -> parking_lot::MutexGuard<'_, Box<dyn Store>> {
        self.store.lock()
    }

    /// The state as STREAM.INFO reports it.
    pub(crate) fn state_json(&self) -> StreamStateJson {
        let consumers = self.public_consumers().len() as u64;
        let st = self.store.lock().state();
        let fresh = st.last_seq == 0 && st.msgs == 0;
        StreamStateJson {
            messages: st.msgs,
            bytes: st.bytes,
            first_seq: if fresh { 0 } else { st.first_seq },
            first_ts: rfc3339(st.first_time),
            last_seq: st.last_seq,
            last_ts: rfc3339(st.last_time),
            num_subjects: st.num_subjects,
            num_deleted: st.num_deleted,
            subjects: None,
            consumer_count: consumers,
        }
    }

    /// Starts capturing: subscribes to the stream's subjects with `client` and runs the
    /// capture loop on the server.
    pub(crate) async fn start_capture(
        self: &Arc<Self>,
        server: &starling_server::Server,
        client: &Client,
    ) -> Result<(), ApiError> {
        let subjects = self.config.lock().subjects.clone();
        let mut subs = Vec::new();
        for s in &subjects {
            subs.push(
                client
                    .subscribe(s)
                    .await
                    .map_err(|e| ApiError::internal(format!("capture {s}: {e}")))?,
            );
        }
        let stream = self.clone();
        let client = client.clone();
        let stop = self.stop.lock().clone();
        server.spawn(async move {
            stream.capture(client, subs, stop).await;
        });
        Ok(())
    }

    /// Stops the capture task (before a delete or a change of subjects).
    pub(crate) fn stop_capture(&self) {
        std::mem::take(&mut *self.stop.lock()).cancel();
    }

    async fn capture(
        self: Arc<Self>,
        client: Client,
        subs: Vec<Subscriber>,
        stop: CancellationToken,
    ) {
        let mut merged = futures::stream::select_all(subs);
        let mut batch = Vec::with_capacity(64);
        loop {
            let first = tokio::select! {
                m = merged.next() => m,
                () = stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match merged.next().now_or_never() {
                    Some(Some(m)) => batch.push(m),
                    _ => break,
                }
            }
            self.store_batch(&client, &mut batch).await;
        }
        debug!(stream = %self.name, "capture stopped");
    }

    /// Stores one batch and acknowledges it.
    async fn store_batch(&self, client: &Client, batch: &mut Vec<Message>) {
        let first_seq = self.store.lock().state().last_seq + 1;
        let mut acks: Vec<(Bytes, Result<Stored, ApiError>)> = Vec::with_capacity(batch.len());
        let mut republished = Vec::new();
        for m in batch.iter() {
            let outcome = self.store_one(m, None, &mut republished);
            if let Some(reply) = &m.reply {
                acks.push((reply.to_bytes(), outcome));
            } else if let Err(e) = outcome {
                debug!(stream = %self.name, "publish without reply refused: {e}");
            }
        }
        batch.clear();
        let last = self.store.lock().state().last_seq;
        let written = match self.sync {
            SyncPolicy::Always => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || store.lock().sync())
                    .await
                    .unwrap_or_else(|e| Err(StoreError::io("sync", std::io::Error::other(e))))
            }
            SyncPolicy::Interval(_) => self.store.lock().flush(),
        };
        // Written here; committed once the replicas hold it (with one replica, at once).
        let written = written.and_then(|()| {
            self.replica.commit(Batch {
                first: first_seq,
                last,
            })
        });
        if let Err(e) = &written {
            warn!(stream = %self.name, "store write failed: {e}");
        }
        self.recount();
        for c in self.consumers() {
            c.wake();
        }
        if self.config.lock().no_ack {
            return;
        }
        let bodies: Vec<(Bytes, Bytes)> = acks
            .into_iter()
            .map(|(reply, outcome)| {
                let body = match (&written, outcome) {
                    (Err(e), _) => self.error_ack(&ApiError::store_failed(e)),
                    (Ok(()), Err(e)) => self.error_ack(&e),
                    (Ok(()), Ok(Stored::Seq(seq))) => self.ack(seq, false),
                    (Ok(()), Ok(Stored::Duplicate(seq))) => self.ack(seq, true),
                };
                (reply, body)
            })
            .collect();
        // Republished copies go out once the batch is written, before its acks.
        if written.is_ok() {
            send_republished(client, &republished).await;
        }
        // All of the batch's acks in one hand-over: one wake-up per publisher's connection.
        let frames: Vec<starling_server::Frame<'_>> = bodies
            .iter()
            .filter_map(|(reply, body)| {
                let reply = std::str::from_utf8(reply).ok()?;
                Some(starling_server::Frame {
                    to: reply,
                    subject: reply,
                    reply: None,
                    header_len: None,
                    data: body.clone(),
                })
            })
            .collect();
        let _ = client.deliver_frames(&frames).await;
    }

    /// A failed publish's acknowledgement, as nats-server sends it: the error, the stream, seq 0.
    fn error_ack(&self, e: &ApiError) -> Bytes {
        let body = json!({ "error": e, "stream": self.name, "seq": 0 });
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    fn ack(&self, seq: u64, duplicate: bool) -> Bytes {
        let ack = PubAck {
            stream: &self.name,
            seq,
            domain: self.domain.as_deref(),
            duplicate,
        };
        Bytes::from(serde_json::to_vec(&ack).unwrap_or_default())
    }

    /// Stores messages pulled from a mirror's or a source's origin (`source`), in order, and
    /// writes them as one batch. With `Some((seq, time))` a (mirror's) message goes at exactly
    /// the origin's sequence, with the origin's time. Stops at the first message refused:
    /// returns how many were stored (a duplicate counts as stored) and the refusal, if any.
    pub(crate) async fn store_sourced(
        &self,
        client: &Client,
        batch: &[(Message, Option<(u64, i64)>)],
    ) -> (usize, Option<ApiError>) {
        let mut republished = Vec::new();
        let mut done = 0;
        let mut refused = None;
        for (m, at) in batch {
            match self.store_one(m, Some(*at), &mut republished) {
                Ok(_) => done += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        if done == 0 {
            return (0, refused);
        }
        let written = match self.sync {
            SyncPolicy::Always => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || store.lock().sync())
                    .await
                    .unwrap_or_else(|e| Err(StoreError::io("sync", std::io::Error::other(e))))
            }
            SyncPolicy::Interval(_) => self.store.lock().flush(),
        };
        self.recount();
        for c in self.consumers() {
            c.wake();
        }
        if let Err(e) = written {
            warn!(stream = %self.name, "store write failed: {e}");
            return (0, Some(ApiError::store_failed(e)));
        }
        send_republished(client, &republished).await;
        (done, refused)
    }

    /// Checks one publish against the stream's rules and appends it. `sourced`: it comes from
    /// a mirror's or a source's origin, which checked it already (no `Nats-Expected-*` checks,
    /// no `subject_transform` of this stream); `Some(Some((seq, time)))` for a mirror's, which
    /// goes at that sequence with that time and is not deduplicated (the sequences must stay
    /// the origin's).
    fn store_one(
        &self,
        m: &Message,
        sourced: Option<Option<(u64, i64)>>,
        republished: &mut Vec<Republished>,
    ) -> Result<Stored, ApiError> {
        let config = self.config.lock();
        // `subject_transform`: the message is stored (and checked) under the new subject.
        let transformed = if sourced.is_some() {
            None
        } else {
            self.subject_transform
                .lock()
                .as_ref()
                .and_then(|t| t.apply(m.subject.as_str()))
        };
        let stored_subject = transformed.as_deref().unwrap_or(m.subject.as_str());
        if config.sealed {
            return Err(ApiError::sealed());
        }
        let mirrored = sourced.flatten();
        let now = mirrored.map_or_else(now_ns, |(_, t)| t);
        let msg_id = m.header("Nats-Msg-Id").filter(|s| !s.is_empty());
        let mut dedupe = self.dedupe.lock();
        dedupe.expire(now_ns(), config.duplicate_window);
        if let (Some(id), None) = (msg_id, mirrored) {
            if let Some(seq) = dedupe.ids.get(id) {
                return Ok(Stored::Duplicate(*seq));
            }
        }
        let checked = sourced.is_none();
        if let Some(expected) = m.header("Nats-Expected-Stream").filter(|_| checked) {
            if expected != self.name {
                return Err(ApiError::wrong_stream());
            }
        }
        let mut store = self.store.lock();
        if let Some((seq, _)) = mirrored {
            // The origin's gaps (deleted or expired messages) are gaps here too.
            store.skip_to(seq).map_err(ApiError::store_failed)?;
            if store.state().last_seq + 1 != seq {
                return Err(ApiError::store_failed("last sequence mismatch"));
            }
        }
        let state = store.state();
        if let Some(v) = m.header("Nats-Expected-Last-Sequence").filter(|_| checked) {
            let want: u64 = v.parse().map_err(|_| ApiError::bad_request())?;
            if want != state.last_seq {
                return Err(ApiError::wrong_last_sequence(state.last_seq));
            }
        }
        if let Some(v) = m
            .header("Nats-Expected-Last-Subject-Sequence")
            .filter(|_| checked)
        {
            let want: u64 = v.parse().map_err(|_| ApiError::bad_request())?;
            let last = store
                .subject_state(stored_subject.as_bytes())
                .map_or(0, |s| s.last);
            if want != last {
                return Err(ApiError::wrong_last_sequence(last));
            }
        }
        if let Some(want) = m.header("Nats-Expected-Last-Msg-Id").filter(|_| checked) {
            let last = dedupe.last.as_deref().unwrap_or("");
            if want != last {
                return Err(ApiError::wrong_last_msg_id(last));
            }
        }
        if checked && m.header("Nats-Stream-Source").is_some() {
            // Only a source writes it: a publish carrying it would confuse where sources resume.
            return Err(ApiError::new(
                400,
                10227,
                "message stream source header is not allowed",
            ));
        }
        let rollup = m.header("Nats-Rollup");
        if rollup.is_some() && !config.allow_rollup_hdrs && checked {
            return Err(ApiError::rollup_not_allowed());
        }
        let mut msg_ttl = match m.header(ttl::TTL_HEADER) {
            Some(v) => ttl::parse(v)?,
            None => Ttl::Seconds(0),
        };
        if msg_ttl != Ttl::Seconds(0) && !config.allow_msg_ttl {
            // A sourced message keeps its header; only a stream with TTLs acts on it.
            if checked {
                return Err(ApiError::message_ttl_disabled());
            }
            msg_ttl = Ttl::Seconds(0);
        }
        // With markers, a TTL is at least the marker's (nats-server: a shorter one could expire
        // a subject's message while its marker still stands, and the next marker be missed).
        // One message per subject cannot meet its own marker.
        let marker_secs = config.subject_delete_marker_ttl / 1_000_000_000;
        let mut raised_headers = None;
        if let Ttl::Seconds(secs) = msg_ttl {
            if secs > 0 && secs < marker_secs && config.max_msgs_per_subject != 1 {
                msg_ttl = Ttl::Seconds(marker_secs);
                raised_headers = m.headers.as_deref().map(|h| ttl::with_ttl(h, marker_secs));
            }
        }
        // The stored form: the header block and payload back to back, as on the wire.
        let headers = raised_headers.as_deref().or(m.headers.as_deref());
        let (header_len, data) = match headers {
            Some(h) => {
                let mut d = Vec::with_capacity(h.len() + m.payload.len());
                d.extend_from_slice(h);
                d.extend_from_slice(&m.payload);
                (h.len(), Bytes::from(d))
            }
            None => (0, m.payload.clone()),
        };
        if config.max_msg_size >= 0 && data.len() as i64 > config.max_msg_size {
            return Err(ApiError::message_too_large());
        }
        let subject = stored_subject.as_bytes();
        let size = record_size(subject.len(), data.len());
        if config.discard == Discard::New {
            if config.max_msgs > 0 && state.msgs as i64 >= config.max_msgs {
                return Err(ApiError::store_failed("maximum messages exceeded"));
            }
            if config.max_bytes > 0 && (state.bytes + size) as i64 > config.max_bytes {
                return Err(ApiError::store_failed("maximum bytes exceeded"));
            }
            if config.discard_new_per_subject && config.max_msgs_per_subject > 0 {
                let n = store.subject_state(subject).map_or(0, |s| s.msgs);
                if n as i64 >= config.max_msgs_per_subject {
                    return Err(ApiError::store_failed(
                        "maximum messages per subject exceeded",
                    ));
                }
            }
        }
        self.usage
            .check(config.storage, size, config.max_bytes > 0)?;
        // The subject's last sequence before this one (`Nats-Last-Sequence` of a republish).
        let last_on_subject = store.subject_state(subject).map_or(0, |s| s.last);
        let seq = store
            .append(subject, header_len, &data, now)
            .map_err(ApiError::store_failed)?;
        if let Some((transform, headers_only)) = self.republish.lock().as_ref() {
            if let Some(to) = transform.apply(stored_subject) {
                republished.push(republish_copy(
                    &self.name,
                    stored_subject,
                    m,
                    (seq, now, last_on_subject),
                    to,
                    *headers_only,
                ));
            }
        }
        let mut deadlines = self.deadlines.lock();
        if let Ttl::Seconds(secs @ 1..) = msg_ttl {
            deadlines.insert(seq, now, secs);
        }
        if let Some(id) = msg_id {
            dedupe.insert(id, seq, now);
        }
        dedupe.last = msg_id.map(Into::into);
        // A sourced roll-up purges here only where roll-ups are allowed.
        match rollup.filter(|_| config.allow_rollup_hdrs) {
            Some("sub") => {
                store
                    .purge_subject(subject, Some(seq), None)
                    .map_err(ApiError::store_failed)?;
            }
            Some("all") => {
                store.compact(seq).map_err(ApiError::store_failed)?;
            }
            _ => {}
        }
        enforce_limits(&config, &mut **store, Some(subject), now, &mut deadlines)
            .map_err(ApiError::store_failed)?;
        if config.retention == Retention::Interest
            && !self.consumers.lock().values().any(|c| c.wants(subject))
        {
            // Nobody is interested: acknowledged, and not kept (as nats-server does).
            store.remove(seq).map_err(ApiError::store_failed)?;
        }
        Ok(Stored::Seq(seq))
    }

    /// Removes what `max_age` and the messages' TTLs no longer allow, leaving subject delete
    /// markers where the stream asks for them; called on a timer.
    pub(crate) fn expire(&self) -> Result<(), StoreError> {
        let marked = {
            let config = self.config.lock();
            let mut store = self.store.lock();
            let mut deadlines = self.deadlines.lock();
            let now = now_ns();
            let last = store.state().last_seq;
            enforce_limits(&config, &mut **store, None, now, &mut deadlines)?;
            let due = deadlines.take_due(now);
            expire_each(&config, &mut **store, &due, now, &mut deadlines)?;
            let marked = store.state().last_seq != last;
            if marked {
                store.flush()?;
            }
            marked
        };
        self.recount();
        if marked {
            for c in self.consumers() {
                c.wake();
            }
        }
        Ok(())
    }

    /// When [`Self::expire`] next has work: the oldest message's `max_age`, or the earliest
    /// TTL (ns since the epoch).
    pub(crate) fn next_expiry(&self) -> Option<i64> {
        let max_age = self.config.lock().max_age;
        let by_age = (max_age > 0)
            .then(|| self.store.lock().state())
            .filter(|st| st.msgs > 0)
            .map(|st| st.first_time.saturating_add(max_age));
        let by_ttl = self.deadlines.lock().next();
        by_age.into_iter().chain(by_ttl).min()
    }

    /// Makes what is written durable (the `sync_interval` timer, shutdown).
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.store.lock().sync()
    }

    /// The JSON of a stored message for STREAM.MSG.GET.
    pub(crate) fn message_json(m: &crate::store::StoredMsg) -> serde_json::Value {
        use data_encoding::BASE64;
        let mut v = json!({
            "subject": m.subject_str(),
            "seq": m.seq,
        });
        if let Some(h) = m.headers() {
            v["hdrs"] = json!(BASE64.encode(h));
        }
        if !m.payload().is_empty() {
            v["data"] = json!(BASE64.encode(m.payload()));
        }
        v["time"] = json!(rfc3339(m.time));
        v
    }
}

/// Removes what the limits no longer allow (discard old), after `subject` was appended.
pub(crate) fn enforce_limits(
    config: &StreamConfig,
    store: &mut dyn Store,
    subject: Option<&[u8]>,
    now: i64,
    deadlines: &mut Deadlines,
) -> Result<(), StoreError> {
    if config.discard == Discard::Old || subject.is_none() {
        if let (Some(subject), true) = (subject, config.max_msgs_per_subject > 0) {
            while let Some(s) = store.subject_state(subject) {
                if s.msgs as i64 <= config.max_msgs_per_subject {
                    break;
                }
                store.remove(s.first)?;
            }
        }
        while config.max_msgs > 0 && store.state().msgs as i64 > config.max_msgs {
            let first = store.state().first_seq;
            store.compact(first + 1)?;
        }
        while config.max_bytes > 0 && store.state().bytes as i64 > config.max_bytes {
            let first = store.state().first_seq;
            store.compact(first + 1)?;
        }
    } else if config.max_msgs_per_subject > 0 {
        // discard new without the per-subject rule: the per-subject limit still drops old.
        if let Some(subject) = subject {
            while let Some(s) = store.subject_state(subject) {
                if s.msgs as i64 <= config.max_msgs_per_subject {
                    break;
                }
                store.remove(s.first)?;
            }
        }
    }
    if config.max_age > 0 {
        let cutoff = now - config.max_age;
        let st = store.state();
        if st.msgs > 0 && st.first_time <= cutoff && !config.allow_msg_ttl {
            // Everything at or before the cutoff goes: find the first message after it.
            let mut seq = st.first_seq;
            while let Some(m) = store.load_next(seq, None)? {
                if m.time > cutoff {
                    break;
                }
                seq = m.seq + 1;
            }
            store.compact(seq)?;
        } else if st.msgs > 0 && st.first_time <= cutoff {
            // With TTLs, `never` outlives `max_age`, and markers may replace what goes.
            let mut seq = st.first_seq;
            let mut due = Vec::new();
            while let Some(m) = store.load_next(seq, None)? {
                if m.time > cutoff {
                    break;
                }
                seq = m.seq + 1;
                if ttl::of_headers(m.headers()) != Some(Ttl::Never) {
                    due.push(m.seq);
                }
            }
            expire_each(config, store, &due, now, deadlines)?;
        }
    }
    Ok(())
}

/// Removes the expired messages `seqs` (ascending). With `subject_delete_marker_ttl`, the last
/// message of a subject (unless it is a marker itself) is replaced by a marker: appended with
/// `Nats-Rollup: sub`, which removes the subject's older messages.
fn expire_each(
    config: &StreamConfig,
    store: &mut dyn Store,
    seqs: &[u64],
    now: i64,
    deadlines: &mut Deadlines,
) -> Result<(), StoreError> {
    let marker_secs = config.subject_delete_marker_ttl / 1_000_000_000;
    for &seq in seqs {
        if marker_secs <= 0 {
            store.remove(seq)?;
            continue;
        }
        let Some(m) = store.load(seq)? else { continue };
        let last = store.subject_state(&m.subject).is_some_and(|s| s.msgs == 1);
        if last && !ttl::is_marker(m.headers()) {
            let marker = ttl::marker_headers(marker_secs);
            let marker_seq = store.append(&m.subject, marker.len(), &marker, now)?;
            store.purge_subject(&m.subject, Some(marker_seq), None)?;
            deadlines.insert(marker_seq, now, marker_secs);
        } else {
            store.remove(seq)?;
        }
    }
    Ok(())
}

/// The deadlines of a recovered stream's messages with a TTL (their headers hold it).
fn ttl_deadlines(store: &mut dyn Store, stream: &str) -> Deadlines {
    let mut deadlines = Deadlines::default();
    let mut seq = store.state().first_seq;
    loop {
        match store.load_next(seq, None) {
            Ok(Some(m)) => {
                if let Some(Ttl::Seconds(secs)) = ttl::of_headers(m.headers()) {
                    deadlines.insert(m.seq, m.time, secs);
                }
                seq = m.seq + 1;
            }
            Ok(None) => return deadlines,
            Err(e) => {
                warn!(%stream, "reading message TTLs failed at {seq}: {e}");
                return deadlines;
            }
        }
    }
}

/// Sends a written batch's `republish` copies, in one hand-over.
async fn send_republished(client: &Client, republished: &[Republished]) {
    if republished.is_empty() {
        return;
    }
    let frames: Vec<starling_server::Frame<'_>> = republished
        .iter()
        .map(|r| starling_server::Frame {
            to: &r.subject,
            subject: &r.subject,
            reply: None,
            header_len: Some(r.header_len),
            data: r.data.clone(),
        })
        .collect();
    let _ = client.deliver_frames(&frames).await;
}

/// The transform of a configuration's `subject_transform` (checked valid at create and update).
fn subject_transform_of(config: &StreamConfig) -> Option<Transform> {
    let (src, dest) = config.subject_transform_spec()?;
    Transform::new(&src, &dest).ok()
}

/// The transform of a configuration's `republish` (checked valid at create and update).
fn republish_of(config: &StreamConfig) -> Option<(Transform, bool)> {
    let (src, dest, headers_only) = config.republish_spec()?;
    Transform::new(&src, &dest).ok().map(|t| (t, headers_only))
}

/// A stored message (its stored subject; seq, time, and the subject's previous seq) as
/// `republish` sends it: its own headers, then `Nats-Stream`,
/// `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp`, `Nats-Last-Sequence` (and
/// `Nats-Msg-Size` with headers only), as nats-server writes them.
fn republish_copy(
    stream: &str,
    subject: &str,
    m: &Message,
    (seq, time, last_on_subject): (u64, i64, u64),
    to: String,
    headers_only: bool,
) -> Republished {
    let mut block = String::from("NATS/1.0\r\n");
    if let Some(h) = &m.headers {
        for line in String::from_utf8_lossy(h).split("\r\n").skip(1) {
            if !line.is_empty() {
                block.push_str(line);
                block.push_str("\r\n");
            }
        }
    }
    block.push_str(&format!(
        "Nats-Stream: {stream}\r\nNats-Subject: {}\r\nNats-Sequence: {seq}\r\nNats-Time-Stamp: {}\r\nNats-Last-Sequence: {last_on_subject}\r\n",
        subject,
        rfc3339(time)
    ));
    if headers_only {
        block.push_str(&format!("Nats-Msg-Size: {}\r\n", m.payload.len()));
    }
    block.push_str("\r\n");
    let header_len = block.len();
    let mut data = block.into_bytes();
    if !headers_only {
        data.extend_from_slice(&m.payload);
    }
    Republished {
        subject: to,
        header_len,
        data: Bytes::from(data),
    }
}
