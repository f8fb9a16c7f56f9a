//! Consumers: a cursor over a stream with acknowledgements. This module holds pull consumers:
//! `CONSUMER.MSG.NEXT` requests wait in a queue and are filled in order; every delivery's reply
//! subject is its ack subject (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
//! seq>.<time>.<pending>`), and what is not acknowledged within `ack_wait` is delivered again,
//! up to `max_deliver` times.
//!
//! One task per consumer does all of it: it wakes when the stream stores a message, when a
//! request or an ack arrives, or when a deadline (an ack wait, a request's expiry) passes.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use starling_server::{Client, Frame, Message, Server};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::api::error::ApiError;
use crate::api::types::{Nanos, Retention};
pub use crate::priority::PriorityPolicy;
use crate::priority::{Choice, Pin, PinEvent, PullGroup};
use crate::stream::Stream;
use crate::time::{now_ns, rfc3339};
use crate::unacked::Unacked;

/// nats-server's default `ack_wait`: 30 s.
const DEFAULT_ACK_WAIT: Nanos = 30_000_000_000;
/// nats-server's default `max_ack_pending` for acknowledged consumers.
const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
/// nats-server's default `max_waiting` for pull consumers.
const DEFAULT_MAX_WAITING: i64 = 512;
/// nats-server's default `inactive_threshold` for ephemeral consumers: 5 s.
const DEFAULT_INACTIVE: Nanos = 5_000_000_000;

/// `deliver_policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    /// From the first message.
    #[default]
    All,
    /// From the last message.
    Last,
    /// Only messages stored from now on.
    New,
    /// From `opt_start_seq`.
    ByStartSequence,
    /// From `opt_start_time`.
    ByStartTime,
    /// The last message of each subject, then everything new.
    LastPerSubject,
}

/// `ack_policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    /// Nothing is acknowledged.
    None,
    /// An ack acknowledges everything up to it.
    All,
    /// Each message is acknowledged on its own.
    #[default]
    Explicit,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}
fn is_none_str(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

/// A consumer's configuration (nats-server's `ConsumerConfig`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerConfig {
    /// The durable name (durable consumers).
    #[serde(default, skip_serializing_if = "is_none_str")]
    pub durable_name: Option<String>,
    /// The consumer's name.
    #[serde(default, skip_serializing_if = "is_none_str")]
    pub name: Option<String>,
    /// A description.
    #[serde(default, skip_serializing_if = "is_none_str")]
    pub description: Option<String>,
    /// Where delivery starts.
    #[serde(default)]
    pub deliver_policy: DeliverPolicy,
    /// With `by_start_sequence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_seq: Option<u64>,
    /// With `by_start_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// How deliveries are acknowledged.
    #[serde(default)]
    pub ack_policy: AckPolicy,
    /// How long an unacknowledged delivery waits before it is delivered again (ns).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ack_wait: Nanos,
    /// Most deliveries of one message; -1 = unlimited.
    #[serde(default)]
    pub max_deliver: i64,
    /// Only messages on this subject.
    #[serde(default, skip_serializing_if = "is_none_str")]
    pub filter_subject: Option<String>,
    /// Only messages on these subjects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_subjects: Option<Vec<String>>,
    /// `instant` or `original`.
    #[serde(default = "instant")]
    pub replay_policy: String,
    /// Most waiting pull requests.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_waiting: i64,
    /// Most unacknowledged deliveries.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
    /// Deliver headers only, with `Nats-Msg-Size`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub headers_only: bool,
    /// Removed after this long without requests (ns).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactive_threshold: Nanos,
    /// Redelivery delays, per attempt (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Vec<Nanos>>,
    /// A push consumer's delivery subject.
    #[serde(default, skip_serializing_if = "is_none_str")]
    pub deliver_subject: Option<String>,
    /// A push consumer delivers only to this queue group.
    #[serde(default, skip_serializing_if = "is_none_str")]
    pub deliver_group: Option<String>,
    /// A push consumer asks its subscriber to keep up (status 100 flow control requests).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flow_control: bool,
    /// A push consumer sends a status 100 heartbeat when idle this long (ns).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_heartbeat: Nanos,
    /// Replicas (0 = the stream's).
    #[serde(default)]
    pub num_replicas: i64,
    /// The priority groups pull requests name (`group`), with a `priority_policy`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::priority::nullable"
    )]
    pub priority_groups: Vec<String>,
    /// How requests of the priority groups are served.
    #[serde(
        default,
        skip_serializing_if = "PriorityPolicy::is_none",
        deserialize_with = "crate::priority::nullable"
    )]
    pub priority_policy: PriorityPolicy,
    /// `pinned_client`: the pin is dropped after this long without a request renewing it (ns).
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "crate::priority::nullable"
    )]
    pub priority_timeout: Nanos,
    /// Everything else the client sent, echoed back.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn instant() -> String {
    "instant".into()
}

impl ConsumerConfig {
    /// `direct`: a mirror's or source's consumer, left out of what users see.
    pub(crate) fn is_direct(&self) -> bool {
        self.extra.get("direct").and_then(Value::as_bool) == Some(true)
    }

    /// nats-server's defaults (`setConsumerConfigDefaults`).
    pub(crate) fn fill_defaults(&mut self, durable: bool) {
        if self.max_deliver == 0 {
            self.max_deliver = -1;
        }
        if self.ack_policy != AckPolicy::None {
            // With a backoff, the first wait is its first step (nats-server).
            if let Some(first) = self.backoff.as_ref().and_then(|b| b.first()) {
                self.ack_wait = *first;
            }
            if self.ack_wait == 0 {
                self.ack_wait = DEFAULT_ACK_WAIT;
            }
            if self.max_ack_pending == 0 {
                self.max_ack_pending = DEFAULT_MAX_ACK_PENDING;
            }
        }
        if self.deliver_subject.is_none() && self.max_waiting == 0 {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        if !durable && self.inactive_threshold == 0 {
            self.inactive_threshold = DEFAULT_INACTIVE;
        }
        if self.replay_policy.is_empty() {
            self.replay_policy = instant();
        }
        if self.priority_policy == PriorityPolicy::PinnedClient && self.priority_timeout == 0 {
            self.priority_timeout = crate::priority::DEFAULT_PINNED_TTL;
        }
    }

    /// The subjects this consumer takes (empty = all of the stream).
    pub(crate) fn filters(&self) -> Vec<String> {
        match (&self.filter_subject, &self.filter_subjects) {
            (Some(f), _) if !f.is_empty() => vec![f.clone()],
            (_, Some(fs)) => fs.clone(),
            _ => Vec::new(),
        }
    }
}

/// One waiting pull request.
struct Request {
    /// Where its deliveries go: shared by every delivery made to it, so that none allocates it.
    reply: Arc<str>,
    batch: u64,
    max_bytes: u64,
    expires: Option<Instant>,
    no_wait: bool,
    /// Delivered to this request so far.
    sent: u64,
    /// Send a heartbeat when idle this long.
    heartbeat: Option<Duration>,
    next_heartbeat: Instant,
    /// The push consumer's standing "request": its delivery subject, never filled.
    push: bool,
    /// Its priority-group fields (every JSON request has them).
    group: Option<PullGroup>,
}

/// What a consumer has delivered and what is acknowledged.
struct State {
    /// The next stream sequence to look at for a first delivery.
    next: u64,
    /// The last consumer sequence given out, and the stream sequence of it.
    delivered_consumer: u64,
    delivered_stream: u64,
    ack_floor_consumer: u64,
    ack_floor_stream: u64,
    /// Deliveries awaiting their ack, by sequence and by deadline.
    pending: Unacked,
    /// Stream sequences to deliver again, first come first.
    redeliver: BTreeSet<u64>,
    /// Stream sequences to deliver first, before `next` (`last_per_subject`).
    initial: BTreeSet<u64>,
    /// Deliveries done more than once.
    redelivered: u64,
    waiting: VecDeque<Request>,
    last_active: i64,
    /// A flow-control request not answered yet (push): delivery waits for its reply.
    flow_control: Option<String>,
    /// Bytes delivered since the last flow-control request.
    since_flow_control: u64,
    /// The messages left to deliver, kept up to date instead of counted per delivery.
    pending_count: Option<PendingCount>,
    /// Since when an ephemeral consumer has had no one to deliver to.
    idle_since: Option<Instant>,
    /// Changed since it was last saved.
    dirty: bool,
    /// Acked and not yet checked against the other consumers (interest retention).
    interest_acked: Vec<u64>,
    /// Paused until then (ns since the epoch; 0 = not paused): `CONSUMER.PAUSE`.
    paused_until: i64,
    /// When the last delivery and the last ack happened (ns since the epoch; 0 = never).
    last_delivery: i64,
    last_ack: i64,
    /// `replay_policy: original`: when the first message went out, and when it was stored.
    replay_base: Option<(Instant, i64)>,
    /// Advisories to publish: what happened, and (stream seq, consumer seq, deliveries).
    advisories: Vec<(crate::events::Delivery, (u64, u64, u64))>,
    /// `pinned_client`: the client pinned now. Not saved: a restart pins anew (nats-server).
    pin: Option<Pin>,
    /// Pin changes to advise.
    pin_events: Vec<PinEvent>,
}

/// What a durable consumer keeps on disk (`state.json`): enough to go on after a restart
/// without an ack floor ahead of what was acknowledged. Deliveries made after the last save
/// are made again (at least once).
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct SavedState {
    delivered_consumer: u64,
    delivered_stream: u64,
    ack_floor_consumer: u64,
    ack_floor_stream: u64,
    /// Unacknowledged deliveries: stream seq, consumer seq, deliveries.
    pending: Vec<(u64, u64, u64)>,
    redelivered: u64,
}

impl SavedState {
    fn of(st: &State) -> Self {
        Self {
            delivered_consumer: st.delivered_consumer,
            delivered_stream: st.delivered_stream,
            ack_floor_consumer: st.ack_floor_consumer,
            ack_floor_stream: st.ack_floor_stream,
            pending: st
                .pending
                .iter()
                .map(|(s, p)| (s, p.consumer_seq, p.deliveries))
                .collect(),
            redelivered: st.redelivered,
        }
    }
}

/// `num_pending`, counted once and then adjusted: minus each first delivery, plus what the
/// stream appended since it was last looked at. A removal from the stream counts it again.
struct PendingCount {
    value: u64,
    last_seq: u64,
    msgs: u64,
    /// The stream's version it was brought up to date at.
    version: u64,
}

/// A consumer's configuration, and its filters worked out once.
pub(crate) struct Settings {
    pub(crate) config: ConsumerConfig,
    filters: Vec<String>,
}

/// A consumer at run time.
pub(crate) struct Consumer {
    name: String,
    server: Server,
    account: String,
    stream: Weak<Stream>,
    /// The configuration and the filters it gives, swapped whole by an update.
    settings: arc_swap::ArcSwap<Settings>,
    created: i64,
    state: Mutex<State>,
    wake: Notify,
    stop: tokio_util::sync::CancellationToken,
    /// Where a durable consumer of a file stream keeps its state (`obs/<name>`).
    dir: Option<std::path::PathBuf>,
    /// Saves are fsynced (`sync_interval: always`).
    sync_always: bool,
    /// Taken by a save for its write and by [`Self::remove_files`].
    saving: Mutex<()>,
    /// Its files are gone: saves do nothing.
    removed: std::sync::atomic::AtomicBool,
}

/// A consumer's JSON view (`ConsumerInfo`).
pub(crate) fn info_json(c: &Consumer, stream: &Stream, leader: &str) -> Value {
    let mut st = c.state.lock();
    let pending = c.num_pending(stream, &mut st);
    let remaining = st.paused_until - now_ns();
    let settings = c.settings.load();
    let push = settings.config.deliver_subject.is_some();
    let waiting = st.waiting.iter().filter(|r| !r.push).count();
    let mut v = json!({
        "stream_name": stream.name(),
        "name": c.name,
        "created": rfc3339(c.created),
        "config": settings.config,
        "delivered": with_last_active(
            json!({ "consumer_seq": st.delivered_consumer, "stream_seq": st.delivered_stream }),
            st.last_delivery,
        ),
        "ack_floor": with_last_active(
            json!({ "consumer_seq": st.ack_floor_consumer, "stream_seq": st.ack_floor_stream }),
            st.last_ack,
        ),
        "num_ack_pending": st.pending.len(),
        "num_redelivered": st.redelivered,
        "num_waiting": waiting,
        "num_pending": pending,
        "cluster": { "leader": leader },
        "ts": rfc3339(now_ns()),
    });
    if push && c.push_bound() {
        v["push_bound"] = json!(true);
    }
    if remaining > 0 {
        v["paused"] = json!(true);
        v["pause_remaining"] = json!(remaining);
    }
    // nats-server reports the first group only, and a zero time when nobody is pinned.
    if let Some(group) = settings.config.priority_groups.first() {
        let mut g = json!({ "group": group, "pinned_ts": "0001-01-01T00:00:00Z" });
        if let Some(pin) = &st.pin {
            g["pinned_client_id"] = json!(pin.id);
            g["pinned_ts"] = json!(rfc3339(pin.since));
        }
        v["priority_groups"] = json!([g]);
    }
    v
}

impl Consumer {
    /// A consumer of `stream` starting where `config.deliver_policy` says.
    pub(crate) fn new(
        stream: &Arc<Stream>,
        name: String,
        config: ConsumerConfig,
        server: Server,
        account: String,
        created: i64,
    ) -> Result<Arc<Self>, ApiError> {
        let filters = config.filters();
        crate::priority::validate(&config)?;
        let (start, initial) = start_seq(stream, &config, &filters)?;
        if config.flow_control && config.idle_heartbeat <= 0 {
            return Err(ApiError::new(
                400,
                10108,
                "consumer with flow control also needs heartbeats",
            ));
        }
        if config.deliver_subject.is_none() && config.idle_heartbeat > 0 {
            return Err(ApiError::invalid_config(
                "consumer idle heartbeat requires a push based consumer",
            ));
        }
        let floor = initial.first().copied().unwrap_or(start).saturating_sub(1);
        let mut waiting = VecDeque::new();
        if let Some(to) = config.deliver_subject.clone() {
            let heartbeat = (config.idle_heartbeat > 0)
                .then(|| Duration::from_nanos(config.idle_heartbeat as u64));
            waiting.push_back(Request {
                reply: to.into(),
                batch: u64::MAX,
                max_bytes: 0,
                expires: None,
                no_wait: false,
                sent: 0,
                heartbeat,
                next_heartbeat: Instant::now() + heartbeat.unwrap_or_default(),
                push: true,
                group: None,
            });
        }
        Ok(Arc::new(Self {
            name,
            server,
            account,
            stream: Arc::downgrade(stream),
            created,
            state: Mutex::new(State {
                next: start,
                delivered_consumer: 0,
                delivered_stream: floor,
                ack_floor_consumer: 0,
                ack_floor_stream: floor,
                pending: Unacked::default(),
                redeliver: BTreeSet::new(),
                initial,
                redelivered: 0,
                waiting,
                last_active: now_ns(),
                flow_control: None,
                since_flow_control: 0,
                pending_count: None,
                idle_since: None,
                dirty: true,
                interest_acked: Vec::new(),
                replay_base: None,
                paused_until: config
                    .extra
                    .get("pause_until")
                    .and_then(Value::as_str)
                    .and_then(crate::time::parse_rfc3339)
                    .filter(|t| *t > now_ns())
                    .unwrap_or(0),
                last_delivery: 0,
                last_ack: 0,
                advisories: Vec::new(),
                pin: None,
                pin_events: Vec::new(),
            }),
            dir: stream.consumer_dir(&config),
            sync_always: stream.syncs_always(),
            saving: Mutex::new(()),
            removed: Default::default(),
            settings: arc_swap::ArcSwap::from_pointee(Settings { config, filters }),
            wake: Notify::new(),
            stop: tokio_util::sync::CancellationToken::new(),
        }))
    }

    /// Puts back what a durable consumer saved before a restart: deliveries not acknowledged
    /// then are delivered again after their ack wait.
    pub(crate) fn restore(&self, saved: SavedState) {
        let mut st = self.state.lock();
        let wait = self.ack_wait(1);
        let now = Instant::now();
        st.delivered_consumer = saved.delivered_consumer;
        st.delivered_stream = saved.delivered_stream;
        st.ack_floor_consumer = saved.ack_floor_consumer;
        st.ack_floor_stream = saved.ack_floor_stream;
        st.next = saved.delivered_stream + 1;
        st.initial.clear();
        st.redelivered = saved.redelivered;
        st.pending.clear();
        for (s, c, d) in saved.pending {
            st.pending.insert(s, c, d, now + wait);
        }
        st.pending_count = None;
        st.dirty = false;
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// When it was created (ns since the epoch).
    pub(crate) fn created(&self) -> i64 {
        self.created
    }

    /// Its configuration now.
    pub(crate) fn config(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Applies a new configuration, where nats-server allows the change (its errors).
    pub(crate) fn update(&self, config: ConsumerConfig) -> Result<(), ApiError> {
        let old = self.config();
        let old = &old.config;
        let refuse = |what: &str| Err(ApiError::new(500, 10012, what));
        if old.deliver_policy != config.deliver_policy {
            return refuse("deliver policy can not be updated");
        }
        if old.opt_start_seq != config.opt_start_seq {
            return refuse("start sequence can not be updated");
        }
        if old.opt_start_time != config.opt_start_time {
            return refuse("start time can not be updated");
        }
        if old.ack_policy != config.ack_policy {
            return refuse("ack policy can not be updated");
        }
        if old.replay_policy != config.replay_policy {
            return refuse("replay policy can not be updated");
        }
        if old.idle_heartbeat != config.idle_heartbeat {
            return refuse("heart beats can not be updated");
        }
        if old.flow_control != config.flow_control {
            return refuse("flow control can not be updated");
        }
        if old.deliver_subject != config.deliver_subject {
            return match (&old.deliver_subject, &config.deliver_subject) {
                (None, _) => refuse("can not update pull consumer to push based"),
                (_, None) => refuse("can not update push consumer to pull based"),
                _ => refuse("deliver subject can not be updated"),
            };
        }
        if old.max_waiting != config.max_waiting {
            return refuse("max waiting can not be updated");
        }
        if old.extra.get("mem_storage") != config.extra.get("mem_storage") {
            return refuse("storage type can not be updated");
        }
        crate::priority::validate(&config)?;
        let filters = config.filters();
        let pinned = config.priority_policy == PriorityPolicy::PinnedClient;
        self.settings.store(Arc::new(Settings { config, filters }));
        let mut st = self.state.lock();
        if !pinned {
            // No longer a pinned consumer: nobody stays pinned.
            st.pin = None;
        }
        st.pending_count = None;
        st.dirty = true;
        drop(st);
        self.wake();
        Ok(())
    }

    /// Where it keeps its state, if on disk.
    pub(crate) fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// Something changed: new messages, a request, an ack.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops its task (the consumer or its stream is deleted).
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// Messages left to deliver (from `st.next`), exact.
    fn num_pending(&self, stream: &Stream, st: &mut State) -> u64 {
        // Nothing changed in the stream since the count: it stands (deliveries adjust it).
        let version = stream.version();
        if let Some(c) = st.pending_count.as_ref().filter(|c| c.version == version) {
            return c.value + st.initial.len() as u64;
        }
        let settings = self.settings.load();
        let filters: Vec<&[u8]> = settings.filters.iter().map(|f| f.as_bytes()).collect();
        let mut store = stream.store();
        let now = store.state();
        let recount = match &st.pending_count {
            None => true,
            // Fewer messages than were there plus what was appended: something was removed.
            Some(c) => now.msgs < c.msgs + now.last_seq.saturating_sub(c.last_seq),
        };
        let count = if recount {
            PendingCount {
                value: store.num_pending(st.next, &filters),
                last_seq: now.last_seq,
                msgs: now.msgs,
                version,
            }
        } else {
            let c = st.pending_count.take().expect("checked above");
            // Appended since: those at or after the next to deliver (first deliveries of
            // messages appended since were never in the count).
            let added = if now.last_seq > c.last_seq {
                store.num_pending((c.last_seq + 1).max(st.next), &filters)
            } else {
                0
            };
            PendingCount {
                value: c.value + added,
                last_seq: now.last_seq,
                msgs: now.msgs,
                version,
            }
        };
        let v = count.value;
        st.pending_count = Some(count);
        v + st.initial.len() as u64
    }

    /// Runs the consumer: subscribes its ack subject and serves requests until stopped.
    pub(crate) async fn start(
        self: &Arc<Self>,
        server: &Server,
        client: &Client,
    ) -> Result<(), ApiError> {
        let Some(stream) = self.stream.upgrade() else {
            return Err(ApiError::stream_not_found());
        };
        let ack_subject = format!("$JS.ACK.{}.{}.>", stream.name(), self.name);
        let acks = client
            .subscribe(&ack_subject)
            .await
            .map_err(|e| ApiError::internal(format!("ack subscription: {e}")))?;
        let fc_subject = format!("$JS.FC.{}.{}.>", stream.name(), self.name);
        let fcs = client
            .subscribe(&fc_subject)
            .await
            .map_err(|e| ApiError::internal(format!("flow control subscription: {e}")))?;
        let me = self.clone();
        let client = client.clone();
        server.spawn(async move { me.run(client, acks, fcs).await });
        Ok(())
    }

    /// A `CONSUMER.MSG.NEXT` request. A refusal is a status (code and text) for the reply
    /// subject, as nats-server answers pull requests.
    pub(crate) fn request_next(&self, reply: &str, body: &[u8]) -> Result<(), (u16, String)> {
        #[derive(Deserialize, Default)]
        struct Next {
            #[serde(default)]
            batch: u64,
            #[serde(default)]
            expires: i64,
            #[serde(default)]
            no_wait: bool,
            #[serde(default)]
            max_bytes: u64,
            #[serde(default)]
            idle_heartbeat: i64,
            /// Priority-group fields: present (maybe empty) on every JSON request.
            #[serde(flatten)]
            group: PullGroup,
        }
        if self.settings.load().config.deliver_subject.is_some() {
            return Err((409, "Consumer is push based".into()));
        }
        let trimmed = body.trim_ascii();
        let next: Next = if trimmed.is_empty() {
            Next::default()
        } else if trimmed.iter().all(u8::is_ascii_digit) {
            Next {
                batch: std::str::from_utf8(trimmed)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1),
                ..Next::default()
            }
        } else if trimmed.starts_with(b"{") {
            serde_json::from_slice(trimmed).map_err(|e| (400, format!("Bad Request - {e}")))?
        } else {
            Next {
                batch: 1,
                ..Next::default()
            }
        };
        if next.idle_heartbeat > 0 && next.idle_heartbeat.saturating_mul(2) > next.expires {
            return Err((400, "Bad Request - heartbeat value too large".into()));
        }
        // A JSON request always has its group fields, empty when not sent (nats-server's).
        let group = if trimmed.starts_with(b"{") {
            Some(next.group)
        } else {
            None
        };
        let settings = self.settings.load();
        let mut st = self.state.lock();
        st.last_active = now_ns();
        let renews =
            crate::priority::check_request(&settings.config, group.as_ref(), st.pin.as_ref())?;
        if renews {
            // The pinned client asks again: its pin lasts another `priority_timeout`.
            if let Some(pin) = st.pin.as_mut() {
                pin.expires = Instant::now() + pinned_ttl(&settings.config);
            }
        }
        if next.no_wait && next.expires <= 0 && self.nothing_to_deliver(&mut st) {
            return Err((404, "No Messages".into()));
        }
        let max_waiting = self.settings.load().config.max_waiting;
        if max_waiting > 0 && st.waiting.len() as i64 >= max_waiting {
            // A request with heartbeats waits for them to go missing instead (nats-server).
            return if next.idle_heartbeat > 0 {
                Ok(())
            } else {
                Err((409, "Exceeded MaxWaiting".into()))
            };
        }
        // `prioritized`: after every request of the same or a lower number, before the rest.
        let at = if settings.config.priority_policy == PriorityPolicy::Prioritized {
            let rank = crate::priority::rank(group.as_ref());
            st.waiting
                .iter()
                .position(|r| crate::priority::rank(r.group.as_ref()) > rank)
                .unwrap_or(st.waiting.len())
        } else {
            st.waiting.len()
        };
        st.waiting.insert(
            at,
            Request {
                reply: reply.into(),
                batch: next.batch.max(1),
                max_bytes: next.max_bytes,
                expires: (next.expires > 0)
                    .then(|| Instant::now() + Duration::from_nanos(next.expires as u64)),
                no_wait: next.no_wait,
                sent: 0,
                heartbeat: (next.idle_heartbeat > 0)
                    .then(|| Duration::from_nanos(next.idle_heartbeat as u64)),
                next_heartbeat: Instant::now()
                    + Duration::from_nanos(next.idle_heartbeat.max(0) as u64),
                push: false,
                group,
            },
        );
        drop(st);
        self.wake();
        Ok(())
    }

    /// Whether nothing is there to deliver now (no redelivery, nothing new).
    fn nothing_to_deliver(&self, st: &mut State) -> bool {
        let Some(stream) = self.stream.upgrade() else {
            return true;
        };
        st.redeliver.is_empty() && st.initial.is_empty() && self.num_pending(&stream, st) == 0
    }

    async fn run(
        self: Arc<Self>,
        client: Client,
        mut acks: starling_server::Subscriber,
        mut fcs: starling_server::Subscriber,
    ) {
        let mut last_save = Instant::now();
        loop {
            let mut deadline = self.pump(&client).await;
            self.publish_advisories(&client).await;
            // Deliveries and plain acks are saved at most every SAVE_INTERVAL: after a crash,
            // what happened since is done again (redelivered), never skipped.
            if self.dir.is_some() && self.state.lock().dirty {
                if last_save.elapsed() >= SAVE_INTERVAL {
                    last_save = Instant::now();
                    if let Err(e) = self.save() {
                        warn!(consumer = %self.name, "consumer state not saved: {e}");
                    }
                } else {
                    deadline = min_some(deadline, Some(last_save + SAVE_INTERVAL));
                }
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = sleep => {}
                m = acks.next() => match m {
                    Some(m) => {
                        let mut batch = vec![m];
                        while batch.len() < 1024 {
                            match futures::FutureExt::now_or_never(acks.next()) {
                                Some(Some(m)) => batch.push(m),
                                _ => break,
                            }
                        }
                        self.on_acks(&client, &batch).await;
                    }
                    None => break,
                },
                m = fcs.next() => match m {
                    Some(m) => self.flow_control_answered(m.subject.as_str()),
                    None => break,
                },
                () = self.stop.cancelled() => break,
            }
        }
        if let Err(e) = self.save() {
            warn!(consumer = %self.name, "consumer state not saved at stop: {e}");
        }
        debug!(consumer = %self.name, "consumer stopped");
    }

    /// Handles a batch of messages on the ack subject: applies them all, makes the new state
    /// durable once, and only then answers the acks that asked for an answer (a double ack is a
    /// promise that the ack is kept).
    async fn on_acks(&self, client: &Client, batch: &[Message]) {
        let mut answers = Vec::new();
        let mut nexts = Vec::new();
        for m in batch {
            if let Some(next) = self.apply_ack(m) {
                nexts.push(next);
            } else if let Some(reply) = &m.reply {
                answers.push(reply.clone());
            }
        }
        let acked = self.take_interest_acked();
        if !acked.is_empty() {
            if let Some(stream) = self.stream.upgrade() {
                stream.release_interest(&acked);
            }
        }
        // A double ack is a promise: the state is saved before it is answered. Plain acks wait
        // for the next periodic save.
        if !answers.is_empty() {
            if let Err(e) = self.save() {
                // Not answered: the client's double ack fails rather than being promised what
                // may be lost.
                warn!(consumer = %self.name, "consumer state not saved: {e}");
                answers.clear();
            }
        }
        for reply in answers {
            // async-nats's double ack waits for this empty reply.
            let _ = client.publish(reply.as_str(), Bytes::new()).await;
        }
        for (reply, body) in nexts {
            if let Err((code, text)) = self.request_next(&reply, &body) {
                let block = format!("NATS/1.0 {code} {text}\r\n\r\n");
                let len = block.len();
                let _ = client
                    .publish_frame(&reply, None, Some(len), Bytes::from(block))
                    .await;
            }
        }
        self.publish_advisories(client).await;
        self.wake();
    }

    /// Publishes the delivery advisories gathered since the last call.
    async fn publish_advisories(&self, client: &Client) {
        let (pending, pins) = {
            let mut st = self.state.lock();
            (
                std::mem::take(&mut st.advisories),
                std::mem::take(&mut st.pin_events),
            )
        };
        if pending.is_empty() && pins.is_empty() {
            return;
        }
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        for what in pins {
            crate::events::pin(
                client,
                &self.account,
                stream.name(),
                &self.name,
                what,
                stream.domain(),
            )
            .await;
        }
        for (what, figures) in pending {
            crate::events::delivery(
                client,
                stream.name(),
                &self.name,
                what,
                figures,
                stream.domain(),
            )
            .await;
        }
    }

    /// Applies one ack; a `+NXT` with a reply returns the pull request it carries.
    fn apply_ack(&self, m: &Message) -> Option<(String, Vec<u8>)> {
        let tokens: Vec<&str> = m.subject.split('.').collect();
        // v1: $JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<cseq>.<ts>.<pending>; v2 has two more
        // tokens (domain, account hash) after $JS.ACK.
        let at = match tokens.len() {
            9 => 4,
            n if n >= 11 => 6,
            _ => return None,
        };
        let sseq = tokens[at + 1].parse::<u64>().ok()?;
        let body = m.payload.trim_ascii();
        let (verb, arg) = match body.iter().position(|b| b.is_ascii_whitespace()) {
            Some(i) => (&body[..i], body[i..].trim_ascii()),
            None => (body, &b""[..]),
        };
        let stream = self.stream.upgrade();
        let mut st = self.state.lock();
        st.last_active = now_ns();
        st.dirty = true;
        match verb {
            b"" | b"+ACK" | b"+OK" => self.ack(&mut st, sseq, stream.as_deref()),
            b"+NXT" => {
                self.ack(&mut st, sseq, stream.as_deref());
                if let Some(reply) = &m.reply {
                    return Some((reply.to_string(), arg.to_vec()));
                }
            }
            b"-NAK" => {
                let delay = parse_nak_delay(arg).unwrap_or_default();
                if let Some(p) = st.pending.reschedule(sseq, Instant::now() + delay) {
                    let figures = (sseq, p.consumer_seq, p.deliveries);
                    st.advisories.push((crate::events::Delivery::Nak, figures));
                }
            }
            b"+WPI" => {
                let wait = self.ack_wait(1);
                st.pending.reschedule(sseq, Instant::now() + wait);
            }
            b"+TERM" => {
                if let Some(p) = st.pending.remove(sseq) {
                    let reason = String::from_utf8_lossy(arg).into_owned();
                    let figures = (sseq, p.consumer_seq, p.deliveries);
                    st.advisories
                        .push((crate::events::Delivery::Terminated(reason), figures));
                }
                st.redeliver.remove(&sseq);
                Self::move_floor(&mut st);
            }
            _ => {}
        }
        None
    }

    /// Writes the consumer's state, when it is kept on disk and has changed.
    fn save(&self) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        // Held across the write: a delete waits for it, then nothing is written after.
        let _saving = self.saving.lock();
        if self.removed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let saved = {
            let mut st = self.state.lock();
            if !st.dirty {
                return Ok(());
            }
            st.dirty = false;
            SavedState::of(&st)
        };
        let body = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
        crate::account::write_durably(dir, "state.json", &body, self.sync_always)
    }

    /// `CONSUMER.PAUSE`: pauses deliveries until `until` (ns since the epoch), or resumes them
    /// (`None`, or a time passed). Returns the time it is paused until, 0 when not paused.
    pub(crate) fn pause(&self, until: Option<i64>) -> i64 {
        let until = until.filter(|t| *t > now_ns()).unwrap_or(0);
        let mut config = self.settings.load().config.clone();
        if until > 0 {
            config
                .extra
                .insert("pause_until".into(), json!(rfc3339(until)));
        } else {
            config.extra.remove("pause_until");
        }
        let filters = config.filters();
        self.settings.store(Arc::new(Settings { config, filters }));
        let mut st = self.state.lock();
        st.paused_until = until;
        st.dirty = true;
        drop(st);
        self.wake();
        until
    }

    /// Deletes what it keeps on disk, for good: no save comes after.
    pub(crate) fn remove_files(&self) {
        let _saving = self.saving.lock();
        self.removed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join("meta.json"));
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn ack(&self, st: &mut State, sseq: u64, stream: Option<&Stream>) {
        let acked: Vec<u64> = match self.settings.load().config.ack_policy {
            AckPolicy::None => return,
            AckPolicy::Explicit => st.pending.remove(sseq).map(|_| sseq).into_iter().collect(),
            AckPolicy::All => st.pending.remove_through(sseq),
        };
        for s in &acked {
            st.redeliver.remove(s);
        }
        if !acked.is_empty() {
            st.last_ack = now_ns();
        }
        Self::move_floor(st);
        if let Some(stream) = stream {
            if stream.config().retention == Retention::WorkQueue {
                let mut store = stream.store();
                for s in acked {
                    let _ = store.remove(s);
                }
                let _ = store.flush();
                drop(store);
                stream.recount();
            } else if stream.config().retention == Retention::Interest {
                st.interest_acked.extend(acked);
            }
        }
    }

    /// Whether this consumer is done with stream sequence `seq` on `subject`: it does not want
    /// it, or delivered it and needs no ack for it or has its ack (interest retention).
    pub(crate) fn is_done_with(&self, seq: u64, subject: &[u8]) -> bool {
        if !self.wants(subject) {
            return true;
        }
        let st = self.state.lock();
        seq < st.next && !st.pending.contains(seq) && !st.initial.contains(&seq)
    }

    /// Whether this consumer takes messages on `subject`.
    pub(crate) fn wants(&self, subject: &[u8]) -> bool {
        let settings = self.settings.load();
        settings.filters.is_empty()
            || settings
                .filters
                .iter()
                .any(|f| crate::store::subject_matches(f.as_bytes(), subject))
    }

    /// The sequences acked since the last call (interest retention checks them).
    fn take_interest_acked(&self) -> Vec<u64> {
        std::mem::take(&mut self.state.lock().interest_acked)
    }

    /// The ack floor: everything delivered below the oldest pending delivery.
    fn move_floor(st: &mut State) {
        match st.pending.first() {
            Some((sseq, p)) => {
                st.ack_floor_stream = sseq.saturating_sub(1);
                st.ack_floor_consumer = p.consumer_seq.saturating_sub(1);
            }
            None => {
                st.ack_floor_stream = st.delivered_stream;
                st.ack_floor_consumer = st.delivered_consumer;
            }
        }
    }

    fn ack_wait(&self, deliveries: u64) -> Duration {
        if let Some(b) = self
            .settings
            .load()
            .config
            .backoff
            .as_ref()
            .filter(|b| !b.is_empty())
        {
            let i = (deliveries as usize).saturating_sub(1).min(b.len() - 1);
            return Duration::from_nanos(b[i].max(0) as u64);
        }
        Duration::from_nanos(self.settings.load().config.ack_wait.max(0) as u64)
    }

    /// Fills waiting requests with what there is, sends heartbeats and expiries; returns the next
    /// deadline to wake at.
    async fn pump(&self, client: &Client) -> Option<Instant> {
        let stream = self.stream.upgrade()?;
        loop {
            let now = Instant::now();
            // What to send, worked out under the lock; sent after it.
            let mut out: Vec<Out> = Vec::new();
            let mut deadline: Option<Instant> = None;
            let mut retire = false;
            {
                let mut st = self.state.lock();
                self.redeliveries_due(&mut st, now);
                // A pin nobody renewed within `priority_timeout` goes; the next request takes it.
                match &st.pin {
                    Some(p) if p.expires <= now => {
                        let group = p.group.clone();
                        st.pin = None;
                        st.pin_events.push(PinEvent::Unpinned {
                            group,
                            reason: "timeout",
                        });
                    }
                    Some(p) => deadline = min_some(deadline, Some(p.expires)),
                    None => {}
                }
                // Requests that expired.
                while let Some(pos) = st
                    .waiting
                    .iter()
                    .position(|r| r.expires.is_some_and(|e| e <= now))
                {
                    let r = st.waiting.remove(pos).expect("position is in range");
                    out.push(Out::Status(r.reply, 408, "Request Timeout", None));
                }
                let bound = self.push_bound();
                self.fill(&stream, &mut st, now, bound, &mut out, &mut deadline);
                // Heartbeats of idle requests (and of a push consumer's subscriber).
                let stalled = st.flow_control.clone();
                let (lc, ls) = (st.delivered_consumer, st.delivered_stream);
                for r in st.waiting.iter_mut() {
                    let Some(hb) = r.heartbeat else { continue };
                    if r.push && !bound {
                        continue;
                    }
                    if r.next_heartbeat <= now {
                        let mut extra =
                            format!("Nats-Last-Consumer: {lc}\r\nNats-Last-Stream: {ls}\r\n");
                        if let Some(fc) = stalled.as_deref().filter(|_| r.push) {
                            extra.push_str(&format!("Nats-Consumer-Stalled: {fc}\r\n"));
                        }
                        out.push(Out::Status(
                            r.reply.clone(),
                            100,
                            "Idle Heartbeat",
                            Some(extra),
                        ));
                        r.next_heartbeat = now + hb;
                    }
                    deadline = min_some(deadline, Some(r.next_heartbeat));
                }
                // An ephemeral consumer nobody uses goes after its inactive threshold.
                if self.settings.load().config.durable_name.is_none()
                    && self.settings.load().config.inactive_threshold > 0
                {
                    let idle = if self.settings.load().config.deliver_subject.is_some() {
                        !bound
                    } else {
                        st.waiting.is_empty()
                    };
                    if idle {
                        let since = *st.idle_since.get_or_insert(now);
                        let until = since
                            + Duration::from_nanos(
                                self.settings.load().config.inactive_threshold as u64,
                            );
                        if until <= now {
                            retire = true;
                        }
                        deadline = min_some(deadline, Some(until));
                    } else {
                        st.idle_since = None;
                    }
                }
                deadline = min_some(
                    deadline,
                    st.pending
                        .next_deadline()
                        .into_iter()
                        .chain(st.waiting.iter().filter_map(|r| r.expires))
                        .min(),
                );
            }
            if retire {
                debug!(consumer = %self.name, "ephemeral consumer inactive: deleted");
                stream.remove_consumer(&self.name);
                return None;
            }
            if out.is_empty() {
                return deadline;
            }
            self.send(client, out).await;
        }
    }

    /// Ack waits that passed: deliver again, or give up at `max_deliver`.
    fn redeliveries_due(&self, st: &mut State, now: Instant) {
        let max_deliver = self.settings.load().config.max_deliver;
        for s in st.pending.take_due(now) {
            let over = max_deliver > 0
                && st
                    .pending
                    .get(s)
                    .is_some_and(|p| p.deliveries as i64 >= max_deliver);
            if over {
                if let Some(p) = st.pending.remove(s) {
                    let figures = (s, p.consumer_seq, p.deliveries);
                    st.advisories
                        .push((crate::events::Delivery::MaxDeliveries, figures));
                }
                Self::move_floor(st);
            } else {
                // Off the schedule until it goes out again.
                st.redeliver.insert(s);
            }
        }
    }

    /// Which waiting request gets the next message, under the consumer's priority policy.
    fn choose_request(&self, stream: &Stream, st: &mut State, ack_full: bool) -> Choice {
        let policy = self.settings.load().config.priority_policy;
        if policy.is_none() {
            return Choice::Serve(0);
        }
        let redelivery = !st.redeliver.is_empty();
        let pending = self.num_pending(stream, st);
        // With nothing to deliver no pin is given and no request is passed over: the first
        // request is the one a no-wait answer or an expiry concerns.
        if !redelivery && (ack_full || (st.initial.is_empty() && pending == 0)) {
            return Choice::Serve(0);
        }
        // Left to deliver, counting the one about to go (nats-server's `npc + 1`; a
        // redelivery is not in `num_pending`).
        let left = pending + u64::from(redelivery);
        crate::priority::choose(
            policy,
            st.waiting.iter().map(|r| r.group.as_ref()),
            st.pin.as_ref(),
            left,
            st.pending.len(),
        )
    }

    /// Pins the client of waiting request `i` (it gets the id with its messages). A request
    /// without a group is served without pinning, as nats-server serves it. Returns whether
    /// it was pinned.
    fn pin(&self, st: &mut State, i: usize, now: Instant) -> bool {
        let ttl = pinned_ttl(&self.settings.load().config);
        let Some(g) = st.waiting[i].group.as_mut().filter(|g| !g.group.is_empty()) else {
            return false;
        };
        let id = crate::priority::new_pin_id();
        // The request now carries the pin: the rest of its batch goes to it too.
        g.id = id.clone();
        let group = g.group.clone();
        st.pin = Some(Pin {
            id: id.clone(),
            group: group.clone(),
            since: now_ns(),
            expires: now + ttl,
        });
        st.pin_events.push(PinEvent::Pinned { group, id });
        true
    }

    /// `CONSUMER.UNPIN`: drops the pin of `group`, so that the next request takes it.
    pub(crate) fn unpin(&self, group: &str) -> Result<(), ApiError> {
        if !self
            .settings
            .load()
            .config
            .priority_groups
            .iter()
            .any(|g| g == group)
        {
            return Err(crate::priority::unknown_group());
        }
        let mut st = self.state.lock();
        st.pin = None;
        // Advised whether or not someone was pinned (nats-server's).
        st.pin_events.push(PinEvent::Unpinned {
            group: group.to_string(),
            reason: "admin",
        });
        drop(st);
        self.wake();
        Ok(())
    }

    /// `CONSUMER.RESET`: starts the consumer again at stream sequence `seq` (0: just after its
    /// ack floor), forgetting every delivery not acknowledged. Returns the sequence it starts
    /// at. A sequence before where the deliver policy starts is refused (nats-server's rules).
    pub(crate) fn reset(&self, seq: u64) -> Result<u64, ApiError> {
        let stream = self
            .stream
            .upgrade()
            .ok_or_else(ApiError::stream_not_found)?;
        let settings = self.settings.load_full();
        let config = &settings.config;
        let invalid = |why: &str| ApiError::new(400, 10204, format!("invalid reset: {why}"));
        let floor = self.state.lock().ack_floor_stream;
        let seq = if seq == 0 {
            floor + 1
        } else {
            match config.deliver_policy {
                DeliverPolicy::All => seq,
                DeliverPolicy::ByStartSequence => {
                    if seq < config.opt_start_seq.unwrap_or(0) {
                        return Err(invalid("below start seq"));
                    }
                    seq
                }
                DeliverPolicy::ByStartTime => {
                    let (first, _) = start_seq(&stream, config, &settings.filters)?;
                    if seq < first {
                        return Err(invalid("below start time"));
                    }
                    seq
                }
                _ => return Err(invalid("not allowed")),
            }
        }
        .max(1);
        let mut st = self.state.lock();
        // What this consumer no longer holds back (interest retention): its deliveries not
        // acknowledged and what it skips. Bounded: a far jump ahead is not walked in full.
        const MOST_RELEASED: u64 = 1 << 20;
        let mut released: Vec<u64> = st
            .pending
            .iter()
            .map(|(s, _)| s)
            .filter(|s| *s < seq)
            .collect();
        released.extend((st.next..seq).take(MOST_RELEASED as usize));
        st.pending.clear();
        st.redeliver.clear();
        st.initial.clear();
        st.next = seq;
        st.delivered_consumer = 0;
        st.delivered_stream = seq - 1;
        st.ack_floor_consumer = 0;
        st.ack_floor_stream = seq - 1;
        st.redelivered = 0;
        st.last_delivery = 0;
        st.last_ack = 0;
        st.replay_base = None;
        st.pending_count = None;
        st.dirty = true;
        drop(st);
        if stream.config().retention == Retention::Interest && !released.is_empty() {
            stream.release_interest(&released);
        }
        self.wake();
        Ok(seq)
    }

    /// Whether a push consumer's delivery subject has a subscriber (`push_bound`).
    fn push_bound(&self) -> bool {
        self.settings
            .load()
            .config
            .deliver_subject
            .as_deref()
            .is_some_and(|d| self.server.has_interest_in(&self.account, d))
    }

    /// Gives waiting requests the messages there are.
    fn fill(
        &self,
        stream: &Stream,
        st: &mut State,
        now: Instant,
        bound: bool,
        out: &mut Vec<Out>,
        deadline: &mut Option<Instant>,
    ) {
        let settings = self.settings.load();
        let config = &settings.config;
        // The request whose requester was last seen listening: looked up once per request and
        // fill, not once per message (a sublist lookup each).
        let mut checked: Option<Arc<str>> = None;
        // The wall clock once per fill, not per delivery.
        let wall = now_ns();
        let paused = st.paused_until - wall;
        if paused > 0 {
            // Paused: nothing goes out until then (requests wait, or expire).
            *deadline = min_some(*deadline, Some(now + Duration::from_nanos(paused as u64)));
            return;
        }
        let mut filled = 0;
        while !st.waiting.is_empty() {
            if filled == FILL_CHUNK {
                // The rest in the next round of `pump`, once these are handed over.
                return;
            }
            let ack_full = config.ack_policy != AckPolicy::None
                && config.max_ack_pending > 0
                && st.pending.len() as i64 >= config.max_ack_pending;
            // Which request the next message goes to: the first, unless a priority policy
            // says otherwise.
            let mut pinned_now = false;
            let i = match self.choose_request(stream, st, ack_full) {
                Choice::Serve(j) => j,
                Choice::Pin(j) => {
                    pinned_now = self.pin(st, j, now);
                    j
                }
                Choice::WrongPin(j) => {
                    let r = st.waiting.remove(j).expect("chosen from the queue");
                    out.push(Out::Status(
                        r.reply.clone(),
                        423,
                        "Nats-Wrong-Pin-Id",
                        Some(r.pending_headers()),
                    ));
                    continue;
                }
                Choice::Wait => return,
            };
            let req = &st.waiting[i];
            let (no_wait, push) = (req.no_wait, req.push);
            if push && (!bound || st.flow_control.is_some()) {
                if !bound {
                    // Interest is looked at again shortly: a subscriber may come.
                    *deadline = min_some(*deadline, Some(now + PUSH_INTEREST_POLL));
                }
                return;
            }
            if !push && !checked.as_ref().is_some_and(|c| Arc::ptr_eq(c, &req.reply)) {
                if !self.server.has_interest_in(&self.account, &req.reply) {
                    // Nobody listens on the reply any more: the request is dropped, not filled
                    // (nats-server checks the same), so a later request gets the message.
                    st.waiting.remove(i);
                    continue;
                }
                checked = Some(req.reply.clone());
            }
            // At max_ack_pending only redeliveries go out: they do not add to what is pending.
            let found = self.next_message(stream, st, !ack_full);
            // `replay_policy: original`: a new message goes out as long after the first as it
            // was stored after it.
            if let Some((m, false)) = &found {
                if config.replay_policy == "original" {
                    let (start, first) = *st.replay_base.get_or_insert((now, m.time));
                    let due = start + Duration::from_nanos((m.time - first).max(0) as u64);
                    if due > now {
                        st.next = m.seq;
                        if let Some(c) = st.pending_count.as_mut().filter(|c| m.seq <= c.last_seq) {
                            c.value += 1;
                        }
                        *deadline = min_some(*deadline, Some(due));
                        return;
                    }
                }
            }
            let Some((m, redelivery)) = found else {
                let waits = st
                    .waiting
                    .get(i)
                    .is_some_and(|r| r.expires.is_some() && r.sent == 0);
                if no_wait && !waits {
                    let r = st.waiting.remove(i).expect("chosen from the queue");
                    let (code, text) = if r.sent == 0 {
                        (404, "No Messages")
                    } else {
                        (408, "Request Timeout")
                    };
                    out.push(Out::Status(r.reply, code, text, None));
                    continue;
                }
                return;
            };
            let size = (m.subject.len() + m.data.len()) as u64;
            let req = &st.waiting[i];
            if req.max_bytes > 0 && req.sent > 0 && size > req.max_bytes {
                let r = st.waiting.remove(i).expect("chosen from the queue");
                if pinned_now {
                    // Pinned for a delivery that did not happen: the next request may take it.
                    st.pin = None;
                }
                out.push(Out::Status(
                    r.reply,
                    409,
                    "Message Size Exceeds MaxBytes",
                    None,
                ));
                // The message waits for the next request.
                st.redeliver.insert(m.seq);
                continue;
            }
            let deliveries = self.record_delivery(st, &m, redelivery, (now, wall));
            let pending = self.num_pending(stream, st);
            let cseq = st
                .pending
                .get(m.seq)
                .map_or(st.delivered_consumer, |p| p.consumer_seq);
            let ack = ack_subject(
                stream.name(),
                &self.name,
                [deliveries, m.seq, cseq, m.time.max(0) as u64, pending],
            );
            let pin_id = (config.priority_policy == PriorityPolicy::PinnedClient)
                .then(|| st.pin.as_ref().map(|p| p.id.clone()).unwrap_or_default());
            let req = &mut st.waiting[i];
            req.sent += 1;
            if let Some(hb) = req.heartbeat {
                req.next_heartbeat = now + hb;
            }
            if req.max_bytes > 0 {
                req.max_bytes = req.max_bytes.saturating_sub(size).max(1);
            }
            let done = req.sent >= req.batch;
            out.push(Out::Msg(req.reply.clone(), m, ack, pin_id));
            filled += 1;
            if done {
                st.waiting.remove(i);
            }
            if push && config.flow_control {
                st.since_flow_control += size;
                if st.since_flow_control >= FLOW_CONTROL_WINDOW {
                    let fc = format!(
                        "$JS.FC.{}.{}.{}",
                        stream.name(),
                        self.name,
                        &crate::api::random_token()[..4]
                    );
                    st.since_flow_control = 0;
                    st.flow_control = Some(fc.clone());
                    // To the subscriber of the delivery just pushed.
                    if let Some(Out::Msg(to, ..)) = out.last() {
                        let to = to.clone();
                        out.push(Out::FlowControl(to, fc));
                    }
                }
            }
        }
    }

    /// Sends what [`Self::pump`] worked out.
    async fn send(&self, client: &Client, out: Vec<Out>) {
        let headers_only = self.settings.load().config.headers_only;
        let mut i = 0;
        while i < out.len() {
            // A run of deliveries goes as one batch: one hand-over and one wake-up per receiver.
            let run = out[i..]
                .iter()
                .take_while(|o| matches!(o, Out::Msg(..)))
                .count();
            if run > 0 {
                let frames: Vec<Frame<'_>> = out[i..i + run]
                    .iter()
                    .filter_map(|o| match o {
                        Out::Msg(to, m, ack, pin) => {
                            let (mut header_len, mut data) = if headers_only {
                                headers_only_frame(m)
                            } else {
                                ((m.header_len > 0).then_some(m.header_len), m.data.clone())
                            };
                            if let Some(id) = pin {
                                (header_len, data) =
                                    with_header(header_len, &data, "Nats-Pin-Id", id);
                            }
                            Some(Frame {
                                to,
                                subject: m.subject_str(),
                                reply: Some(ack),
                                header_len,
                                data,
                            })
                        }
                        _ => None,
                    })
                    .collect();
                let _ = client.deliver_frames(&frames).await;
                i += run;
                continue;
            }
            match &out[i] {
                Out::Status(to, code, text, extra) => {
                    let block = format!(
                        "NATS/1.0 {code} {text}\r\n{}\r\n",
                        extra.as_deref().unwrap_or_default()
                    );
                    let len = block.len();
                    let _ = client
                        .publish_frame(to, None, Some(len), Bytes::from(block))
                        .await;
                }
                Out::FlowControl(to, fc) => {
                    let block = "NATS/1.0 100 FlowControl Request\r\n\r\n";
                    let _ = client
                        .publish_frame(to, Some(fc), Some(block.len()), Bytes::from(block))
                        .await;
                }
                Out::Msg(..) => unreachable!("runs of deliveries are sent above"),
            }
            i += 1;
        }
    }

    /// The subscriber answered a flow-control request.
    pub(crate) fn flow_control_answered(&self, subject: &str) {
        let mut st = self.state.lock();
        if st.flow_control.as_deref() == Some(subject) {
            st.flow_control = None;
        }
        drop(st);
        self.wake();
    }

    /// The next message to deliver: a due redelivery first, else the next new one.
    fn next_message(
        &self,
        stream: &Stream,
        st: &mut State,
        new_too: bool,
    ) -> Option<(crate::store::StoredMsg, bool)> {
        let mut store = stream.store();
        while let Some(seq) = st.redeliver.pop_first() {
            if let Ok(Some(m)) = store.load(seq) {
                return Some((m, true));
            }
            st.pending.remove(seq);
        }
        if !new_too {
            return None;
        }
        while let Some(seq) = st.initial.pop_first() {
            if let Ok(Some(m)) = store.load(seq) {
                return Some((m, false));
            }
        }
        let settings = self.settings.load();
        let filters: Vec<&[u8]> = settings.filters.iter().map(|f| f.as_bytes()).collect();
        let found = match filters.as_slice() {
            [] => store.load_next(st.next, None),
            [one] => store.load_next(st.next, Some(one)),
            many => {
                // The first of each filter's next message.
                let mut best: Option<crate::store::StoredMsg> = None;
                for f in many {
                    if let Ok(Some(m)) = store.load_next(st.next, Some(f)) {
                        if best.as_ref().is_none_or(|b| m.seq < b.seq) {
                            best = Some(m);
                        }
                    }
                }
                Ok(best)
            }
        };
        let m = found.ok().flatten()?;
        st.next = m.seq + 1;
        // Counted only if it was there when the count was last brought up to date.
        if let Some(c) = st.pending_count.as_mut().filter(|c| m.seq <= c.last_seq) {
            c.value = c.value.saturating_sub(1);
        }
        Some((m, false))
    }

    /// Notes a delivery; returns how many times this message has now been delivered.
    fn record_delivery(
        &self,
        st: &mut State,
        m: &crate::store::StoredMsg,
        redelivery: bool,
        (now, wall): (Instant, i64),
    ) -> u64 {
        if redelivery {
            st.redelivered += 1;
            let wait = {
                let p = st.pending.get(m.seq);
                self.ack_wait(p.map_or(1, |p| p.deliveries + 1))
            };
            return st.pending.redelivered(m.seq, now + wait).unwrap_or(1);
        }
        st.dirty = true;
        st.last_delivery = wall;
        st.delivered_consumer += 1;
        st.delivered_stream = m.seq;
        if self.settings.load().config.ack_policy == AckPolicy::None {
            st.ack_floor_consumer = st.delivered_consumer;
            st.ack_floor_stream = m.seq;
        } else {
            let (cseq, deadline) = (st.delivered_consumer, now + self.ack_wait(1));
            st.pending.insert(m.seq, cseq, 1, deadline);
        }
        1
    }
}

/// How long a pin lasts without a request renewing it.
fn pinned_ttl(config: &ConsumerConfig) -> Duration {
    let ns = if config.priority_timeout > 0 {
        config.priority_timeout
    } else {
        crate::priority::DEFAULT_PINNED_TTL
    };
    Duration::from_nanos(ns as u64)
}

impl Request {
    /// `Nats-Pending-Messages` / `Nats-Pending-Bytes`: what the request still wanted.
    fn pending_headers(&self) -> String {
        format!(
            "Nats-Pending-Messages: {}\r\nNats-Pending-Bytes: {}\r\n",
            self.batch.saturating_sub(self.sent),
            self.max_bytes
        )
    }
}

/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`
/// (v1), written without `format!`'s machinery: it is made for every delivery.
fn ack_subject(stream: &str, consumer: &str, numbers: [u64; 5]) -> String {
    let mut s = String::with_capacity(16 + stream.len() + consumer.len() + 5 * 20);
    s.push_str("$JS.ACK.");
    s.push_str(stream);
    s.push('.');
    s.push_str(consumer);
    let mut buf = itoa::Buffer::new();
    for n in numbers {
        s.push('.');
        s.push_str(buf.format(n));
    }
    s
}

/// `last_active` on a sequence pair, when something happened (nats-server omits it otherwise).
fn with_last_active(mut v: Value, at: i64) -> Value {
    if at > 0 {
        v["last_active"] = json!(rfc3339(at));
    }
    v
}

/// How often deliveries and plain acks are saved (double acks are saved before their answer).
const SAVE_INTERVAL: Duration = Duration::from_millis(100);
/// How often a push consumer without a subscriber looks for one.
const PUSH_INTEREST_POLL: Duration = Duration::from_millis(50);
/// Bytes a push consumer with flow control delivers between flow-control requests.
const FLOW_CONTROL_WINDOW: u64 = 256 * 1024;
/// Deliveries worked out per round of `pump` before they are handed over: a pull of 10,000
/// goes out in pieces the subscriber's writer starts on at once, not as one 2.5 MB hand-over
/// built first (a memory replay of 10,000-message pulls: 1.41 M msgs/s in one piece per request, 1.6 M in pieces of 256, 1.85 M of 64).
const FILL_CHUNK: usize = 64;

fn min_some(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What one pass of the consumer sends.
enum Out {
    /// A delivery: to, the message, its ack subject.
    Msg(Arc<str>, crate::store::StoredMsg, String, Option<String>),
    /// A status: to, code, text, extra header lines.
    Status(Arc<str>, u16, &'static str, Option<String>),
    /// A flow-control request: to, the subject the answer goes to.
    FlowControl(Arc<str>, String),
}

/// A message (`header_len` bytes of headers, then the payload) with one more header line.
fn with_header(
    header_len: Option<usize>,
    data: &Bytes,
    name: &str,
    value: &str,
) -> (Option<usize>, Bytes) {
    let (headers, payload) = match header_len {
        // The block ends with its blank line: the new line goes before it.
        Some(h) if h >= 4 && h <= data.len() => (&data[..h - 2], &data[h..]),
        _ => (&b"NATS/1.0\r\n"[..], &data[..]),
    };
    let mut out = Vec::with_capacity(headers.len() + name.len() + value.len() + 6 + payload.len());
    out.extend_from_slice(headers);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    let len = out.len();
    out.extend_from_slice(payload);
    (Some(len), Bytes::from(out))
}

/// The header block of `m` with `Nats-Msg-Size`, and no payload (`headers_only`).
fn headers_only_frame(m: &crate::store::StoredMsg) -> (Option<usize>, Bytes) {
    let mut block = String::from("NATS/1.0\r\n");
    if let Some(h) = m.headers() {
        for line in String::from_utf8_lossy(h).split("\r\n").skip(1) {
            if !line.is_empty() {
                block.push_str(line);
                block.push_str("\r\n");
            }
        }
    }
    block.push_str(&format!("Nats-Msg-Size: {}\r\n\r\n", m.payload().len()));
    let len = block.len();
    (Some(len), Bytes::from(block))
}

/// `-NAK 10s` or `-NAK {"delay": ns}`.
fn parse_nak_delay(arg: &[u8]) -> Option<Duration> {
    if arg.is_empty() {
        return None;
    }
    if arg.starts_with(b"{") {
        let v: Value = serde_json::from_slice(arg).ok()?;
        return v["delay"]
            .as_i64()
            .map(|n| Duration::from_nanos(n.max(0) as u64));
    }
    let s = std::str::from_utf8(arg).ok()?;
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Where a new consumer starts, from its deliver policy: the first new sequence to look at, and
/// sequences to deliver before it.
fn start_seq(
    stream: &Stream,
    c: &ConsumerConfig,
    filters: &[String],
) -> Result<(u64, BTreeSet<u64>), ApiError> {
    let mut store = stream.store();
    let st = store.state();
    if c.deliver_policy == DeliverPolicy::LastPerSubject {
        let patterns = if filters.is_empty() {
            vec![">".to_string()]
        } else {
            filters.to_vec()
        };
        let lasts: BTreeSet<u64> = patterns
            .iter()
            .flat_map(|f| store.subjects(f.as_bytes()))
            .map(|(_, s)| s.last)
            .collect();
        return Ok((st.last_seq + 1, lasts));
    }
    let start = match c.deliver_policy {
        DeliverPolicy::All => st.first_seq.max(1),
        DeliverPolicy::New => st.last_seq + 1,
        DeliverPolicy::Last => {
            let last = if filters.is_empty() {
                Some(st.last_seq)
            } else {
                filters
                    .iter()
                    .filter_map(|f| store.load_last(f.as_bytes()).ok().flatten().map(|m| m.seq))
                    .max()
            };
            last.filter(|s| *s > 0).unwrap_or(st.last_seq + 1)
        }
        DeliverPolicy::ByStartSequence => c
            .opt_start_seq
            .ok_or_else(|| ApiError::invalid_config("consumer delivery policy is deliver by start sequence, but optional start sequence is not set"))?
            .max(1),
        DeliverPolicy::ByStartTime => {
            let t = c
                .opt_start_time
                .as_deref()
                .and_then(crate::time::parse_rfc3339)
                .ok_or_else(|| ApiError::invalid_config("consumer delivery policy is deliver by start time, but optional start time is not set"))?;
            let mut seq = st.first_seq.max(1);
            while let Ok(Some(m)) = store.load_next(seq, None) {
                if m.time >= t {
                    break;
                }
                seq = m.seq + 1;
            }
            seq
        }
        DeliverPolicy::LastPerSubject => unreachable!("handled above"),
    };
    Ok((start, BTreeSet::new()))
}
