//! The JetStream scenarios: acknowledged publishes, pull consumers with acks, an ordered
//! replay, and key-value puts and gets, each checked message by message.
//!
//! Everything goes through the JSON API on plain NATS connections, as a client library would:
//! `$JS.API.STREAM.CREATE.<name>` makes the round's stream (deleted first if a failed run left
//! it, and deleted again at the end), `$JS.API.CONSUMER.*` its consumer, and `STREAM.INFO` /
//! `CONSUMER.INFO` confirm the server's own count once the timed phase is over.
//!
//! - `js-pub`, `js-pub-sync`: one publisher keeps at most `--in-flight` publishes awaiting their
//!   PubAck; publish `i` (from 0) carries its index in its reply subject and must be answered,
//!   in order, by `{"stream":"BENCH","seq":i+1}` ([`PubAckCheck`]). `js-pub-sync` runs the
//!   server with `sync_interval: always`.
//! - `js-consume`: the stream is pre-filled (not timed); a durable pull consumer with explicit
//!   acks is fetched in batches of `--batch` (two requests in flight), every delivery acked
//!   with `+ACK`; deliveries must be stream sequences 1..N in order, each delivered once
//!   ([`DeliveryCheck`]), and the consumer's ack floor must reach N.
//! - `js-replay`: the same with an ephemeral `ack_policy: none` consumer and `--replay-batch`.
//! - `kv-put`, `kv-get`: a KV bucket's stream (`KV_bench`, `$KV.bench.>`, one message per
//!   subject, direct gets); puts are acknowledged publishes over `--keys` keys, gets are
//!   `$JS.API.DIRECT.GET.KV_bench.$KV.bench.<key>` requests whose headers and value must be
//!   the key's last put.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use starling_proto::ServerOp;

use crate::conn::{connect, Conn};
use crate::error::{BenchError, Result};
use crate::scenario::{Config, Scenario};
use crate::seq;

/// The stream of `js-pub`, `js-consume` and `js-replay`.
pub const STREAM: &str = "BENCH";
/// The subject messages are published to (the stream captures `bench.js.>`).
pub const SUBJECT: &str = "bench.js.msgs";
/// The KV scenarios' stream.
pub const KV_STREAM: &str = "KV_bench";
/// The KV bucket's subject prefix; key `k<i>` is `$KV.bench.k<i>`.
pub const KV_PREFIX: &str = "$KV.bench.";
/// The durable consumer of `js-consume`.
pub const DURABLE: &str = "bench_durable";
/// How long a pull request waits for messages (`expires`).
pub const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// Publishes in flight while a stream is pre-filled (not timed).
const PREFILL_WINDOW: usize = 4096;
/// Pause before the server's CPU is sampled at the end: work a server does after it has
/// answered (writing behind, processing the last acks) counts too.
const SETTLE: Duration = Duration::from_millis(100);

const API_INBOX: &str = "_INBOX.bench.api.";
const ACK_INBOX: &str = "_INBOX.bench.ack.";
const PULL_INBOX: &str = "_INBOX.bench.pull";
const GET_INBOX: &str = "_INBOX.bench.get.";

/// Where a stream keeps its messages (`--storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// On disk (`"storage": "file"`).
    #[default]
    File,
    /// In memory (`"storage": "memory"`).
    Memory,
}

impl Storage {
    /// Parses `file` or `memory`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "file" => Ok(Self::File),
            "memory" | "mem" => Ok(Self::Memory),
            _ => Err(BenchError::Usage(format!(
                "--storage must be file or memory, not {s:?}"
            ))),
        }
    }

    /// The name in the stream's JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Memory => "memory",
        }
    }
}

/// How a JetStream scenario's server must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsServer {
    /// `-js -sd <fresh dir>`.
    Enabled,
    /// A config file with `jetstream { store_dir: <fresh dir>, sync_interval: always }`.
    SyncAlways,
}

impl JsServer {
    /// The `jetstream {}` block for store directory `dir`, if this mode needs a config file.
    pub fn config_block(self, dir: &str) -> Option<String> {
        match self {
            Self::Enabled => None,
            Self::SyncAlways => Some(format!(
                "jetstream {{\n  store_dir: {}\n  sync_interval: always\n}}\n",
                json!(dir)
            )),
        }
    }

    /// The command-line flags for store directory `dir`.
    pub fn flags(self, dir: &str) -> Vec<String> {
        match self {
            Self::Enabled => vec!["-js".into(), "-sd".into(), dir.into()],
            Self::SyncAlways => Vec::new(),
        }
    }
}

/// What a JetStream run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsOutcome {
    /// Publishes sent, or messages the consumer was to receive, or gets sent.
    pub published: u64,
    /// PubAcks received, or deliveries received, or gets answered.
    pub delivered: u64,
    /// The timed phase.
    pub elapsed: Duration,
}

/// The stream a scenario uses and its configuration.
pub fn stream_config(cfg: &Config) -> (&'static str, Value) {
    let storage = match cfg.scenario {
        Scenario::JsPubSync => Storage::File,
        _ => cfg.storage,
    };
    match cfg.scenario {
        Scenario::KvPut | Scenario::KvGet => (
            KV_STREAM,
            json!({
                "name": KV_STREAM,
                "subjects": [format!("{KV_PREFIX}>")],
                "storage": storage.name(),
                "retention": "limits",
                "max_msgs_per_subject": 1,
                "discard": "new",
                "allow_direct": true,
                "allow_rollup_hdrs": true,
                "deny_delete": true,
                "num_replicas": 1,
            }),
        ),
        _ => (
            STREAM,
            json!({
                "name": STREAM,
                "subjects": ["bench.js.>"],
                "storage": storage.name(),
                "retention": "limits",
                "num_replicas": 1,
            }),
        ),
    }
}

/// Runs a JetStream scenario against `cfg.url`; `before` is called when the timed phase
/// starts, `after` once it is over and checked (before the stream is deleted).
pub fn run(
    cfg: &Config,
    before: impl FnOnce() -> Result<()>,
    after: impl FnOnce() -> Result<()>,
) -> Result<JsOutcome> {
    let mut api = Api::connect(cfg)?;
    let (stream, config) = stream_config(cfg);
    api.delete_stream(stream, true)?;
    let created = api.request(
        &format!("$JS.API.STREAM.CREATE.{stream}"),
        config.to_string().as_bytes(),
    )?;
    if created["config"]["name"] != stream {
        return Err(BenchError::Protocol(format!(
            "STREAM.CREATE.{stream} answered {created}"
        )));
    }
    let result = match cfg.scenario {
        Scenario::JsPub | Scenario::JsPubSync => publish_scenario(cfg, &mut api, before, after),
        Scenario::JsConsume => consume_scenario(cfg, &mut api, true, before, after),
        Scenario::JsReplay => consume_scenario(cfg, &mut api, false, before, after),
        Scenario::KvPut => publish_scenario(cfg, &mut api, before, after),
        Scenario::KvGet => kv_get_scenario(cfg, &mut api, before, after),
        other => Err(BenchError::Usage(format!(
            "{other} is not a JetStream scenario"
        ))),
    };
    // The stream goes whatever happened; a failed run's own error comes first.
    let deleted = api.delete_stream(stream, false);
    let outcome = result?;
    deleted?;
    Ok(outcome)
}

/// `js-pub`, `js-pub-sync`, `kv-put`: acknowledged publishes for `--duration` (or
/// `max_msgs`), then the stream's own count must agree.
fn publish_scenario(
    cfg: &Config,
    api: &mut Api,
    before: impl FnOnce() -> Result<()>,
    after: impl FnOnce() -> Result<()>,
) -> Result<JsOutcome> {
    let kv = cfg.scenario == Scenario::KvPut;
    let (stream, _) = stream_config(cfg);
    let mut conn = Publisher::connect(cfg)?;
    let keys = cfg.keys as u64;
    let plan = PubPlan {
        stream,
        size: cfg.size,
        window: cfg.in_flight,
        max: cfg.max_msgs.unwrap_or(u64::MAX),
        duration: Some(cfg.duration),
        stall: cfg.drain_timeout,
    };
    let subject = |i: u64, out: &mut Vec<u8>| {
        if kv {
            kv_subject(i % keys, out);
        } else {
            out.extend_from_slice(SUBJECT.as_bytes());
        }
    };
    let o = conn.run(&plan, subject, before)?;
    let info = api.request(&format!("$JS.API.STREAM.INFO.{stream}"), b"")?;
    let state = &info["state"];
    let want_msgs = if kv { o.acked.min(keys) } else { o.acked };
    if state["last_seq"] != o.acked || state["messages"] != want_msgs {
        return Err(BenchError::Sequence(format!(
            "{} PubAcks received, but STREAM.INFO.{stream} reports {state} (expected \
             last_seq {}, messages {want_msgs})",
            o.acked, o.acked
        )));
    }
    std::thread::sleep(SETTLE);
    after()?;
    Ok(JsOutcome {
        published: o.sent,
        delivered: o.acked,
        elapsed: o.elapsed,
    })
}

/// `js-consume` (durable, explicit acks) and `js-replay` (ephemeral, no acks): pre-fill
/// `cfg.msgs`, then consume them all.
fn consume_scenario(
    cfg: &Config,
    api: &mut Api,
    acks: bool,
    before: impl FnOnce() -> Result<()>,
    after: impl FnOnce() -> Result<()>,
) -> Result<JsOutcome> {
    let n = cfg.msgs;
    prefill(cfg, STREAM, n, |_, out| {
        out.extend_from_slice(SUBJECT.as_bytes())
    })?;
    let batch = if acks { cfg.batch } else { cfg.replay_batch };
    let (subject, body) = if acks {
        (
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.{DURABLE}"),
            json!({
                "stream_name": STREAM,
                "config": {
                    "durable_name": DURABLE,
                    "deliver_policy": "all",
                    "ack_policy": "explicit",
                    "max_ack_pending": 4 * batch,
                    "replay_policy": "instant",
                },
            }),
        )
    } else {
        (
            format!("$JS.API.CONSUMER.CREATE.{STREAM}"),
            json!({
                "stream_name": STREAM,
                "config": {
                    "deliver_policy": "all",
                    "ack_policy": "none",
                    "replay_policy": "instant",
                    "inactive_threshold": 300_000_000_000u64,
                    "mem_storage": true,
                    "num_replicas": 1,
                },
            }),
        )
    };
    let created = api.request(&subject, body.to_string().as_bytes())?;
    let consumer = created["name"]
        .as_str()
        .ok_or_else(|| BenchError::Protocol(format!("{subject} answered {created}")))?
        .to_string();
    let mut conn = connect(&cfg.url, cfg.connect_timeout)?;
    conn.writer.subscribe(PULL_INBOX.as_bytes(), None, 1);
    conn.round_trip(cfg.connect_timeout)?;
    let mut check = DeliveryCheck::new(STREAM, &consumer, SUBJECT, cfg.size, acks);
    let pull_subject = format!("$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer}");
    let pull_body = json!({"batch": batch, "expires": PULL_EXPIRES.as_nanos() as u64}).to_string();
    let batch = batch as u64;
    let mut requested = 0u64;
    let mut last_progress = Instant::now();
    before()?;
    let start = Instant::now();
    let mut last = start;
    while check.received < n {
        // Two requests in flight: the next batch is asked for while one is still arriving.
        while requested < n && requested - check.received <= batch {
            conn.writer.publish(
                pull_subject.as_bytes(),
                Some(PULL_INBOX.as_bytes()),
                pull_body.as_bytes(),
            )?;
            requested += batch;
        }
        conn.writer.flush()?;
        let before_poll = check.received;
        let w = &mut conn.writer;
        conn.reader.poll(|op| {
            let ServerOp::Msg(m) = op else { return Ok(()) };
            if let Some((code, text)) = m.headers().and_then(status) {
                return match code {
                    // Heartbeats carry nothing.
                    100 => Ok(()),
                    408 => Err(BenchError::Sequence(format!(
                        "a pull request of {batch} expired ({code} {text}) with {} of {n} \
                         messages delivered: the rest missing",
                        check.received
                    ))),
                    _ => Err(BenchError::Server(format!(
                        "{pull_subject} {pull_body} answered status {code} {text} after {} of {n} \
                         messages",
                        check.received
                    ))),
                };
            }
            check.check(m.subject, m.reply, m.payload())?;
            if acks {
                if let Some(reply) = m.reply {
                    w.publish(reply, None, b"+ACK")?;
                }
            }
            Ok(())
        })?;
        conn.writer.flush()?;
        let now = Instant::now();
        if check.received > before_poll {
            last_progress = now;
            last = now;
        } else if now.duration_since(last_progress) > cfg.drain_timeout {
            return Err(BenchError::Sequence(format!(
                "{pull_subject}: {} of {n} messages missing: nothing delivered for {:?} \
                 ({requested} requested in batches of {batch})",
                n - check.received,
                cfg.drain_timeout
            )));
        }
    }
    let elapsed = last.duration_since(start);
    api.await_consumer(STREAM, &consumer, n, acks, cfg.drain_timeout)?;
    std::thread::sleep(SETTLE);
    after()?;
    Ok(JsOutcome {
        published: n,
        delivered: check.received,
        elapsed,
    })
}

/// `kv-get`: every key put once (not timed), then direct gets over the keys with
/// `--in-flight` requests outstanding for `--duration` (or `max_msgs`).
fn kv_get_scenario(
    cfg: &Config,
    _api: &mut Api,
    before: impl FnOnce() -> Result<()>,
    after: impl FnOnce() -> Result<()>,
) -> Result<JsOutcome> {
    let keys = cfg.keys as u64;
    prefill(cfg, KV_STREAM, keys, kv_subject)?;
    let mut conn = connect(&cfg.url, cfg.connect_timeout)?;
    conn.writer
        .subscribe(format!("{GET_INBOX}*").as_bytes(), None, 1);
    conn.round_trip(cfg.connect_timeout)?;
    let slots = cfg.in_flight;
    let max = cfg.max_msgs.unwrap_or(u64::MAX);
    let mut pending: Vec<Option<u64>> = vec![None; slots];
    let mut subject = Vec::new();
    let mut reply = Vec::new();
    let mut get = GetCheck::new(cfg.size);
    let mut sent = 0u64;
    let mut outstanding = 0usize;
    let send = |w: &mut crate::conn::Writer,
                slot: usize,
                sent: &mut u64,
                pending: &mut [Option<u64>],
                subject: &mut Vec<u8>,
                reply: &mut Vec<u8>|
     -> Result<()> {
        let key = *sent % keys;
        subject.clear();
        subject.extend_from_slice(format!("$JS.API.DIRECT.GET.{KV_STREAM}.").as_bytes());
        kv_subject(key, subject);
        reply.clear();
        reply.extend_from_slice(GET_INBOX.as_bytes());
        reply.extend_from_slice(itoa::Buffer::new().format(slot).as_bytes());
        w.publish(subject, Some(reply), b"")?;
        pending[slot] = Some(key);
        *sent += 1;
        Ok(())
    };
    before()?;
    let start = Instant::now();
    let end = start + cfg.duration;
    for slot in 0..slots {
        if sent >= max {
            break;
        }
        send(
            &mut conn.writer,
            slot,
            &mut sent,
            &mut pending,
            &mut subject,
            &mut reply,
        )?;
        outstanding += 1;
    }
    conn.writer.flush()?;
    let mut last = start;
    let mut last_progress = start;
    while outstanding > 0 {
        let sending = Instant::now() < end;
        let w = &mut conn.writer;
        let before_poll = get.answered;
        conn.reader.poll(|op| {
            let ServerOp::Msg(m) = op else { return Ok(()) };
            let slot = m
                .subject
                .strip_prefix(GET_INBOX.as_bytes())
                .and_then(parse_u64)
                .map(|s| s as usize)
                .filter(|&s| s < slots)
                .ok_or_else(|| {
                    BenchError::Protocol(format!(
                        "a reply on an unknown inbox {}",
                        String::from_utf8_lossy(m.subject)
                    ))
                })?;
            let key = pending[slot].take().ok_or_else(|| {
                BenchError::Sequence(format!(
                    "a second reply to direct get slot {slot} (duplicate)"
                ))
            })?;
            get.check(key, m.headers(), m.payload())?;
            if sending && sent < max {
                send(w, slot, &mut sent, &mut pending, &mut subject, &mut reply)?;
            } else {
                outstanding -= 1;
            }
            Ok(())
        })?;
        conn.writer.flush()?;
        let now = Instant::now();
        if get.answered > before_poll {
            last = now;
            last_progress = now;
        } else if now.duration_since(last_progress) > cfg.drain_timeout {
            return Err(BenchError::Sequence(format!(
                "{outstanding} direct get(s) never answered (none for {:?})",
                cfg.drain_timeout
            )));
        }
    }
    std::thread::sleep(SETTLE);
    after()?;
    Ok(JsOutcome {
        published: sent,
        delivered: get.answered,
        elapsed: last.duration_since(start),
    })
}

/// `recover`: creates the file stream `BENCH` at `cfg.url` and fills it with `n` messages of
/// `cfg.size` bytes, every PubAck checked, then confirms the count with STREAM.INFO.
pub fn fill_file_stream(cfg: &Config, n: u64) -> Result<()> {
    let cfg = Config {
        scenario: Scenario::JsReplay,
        storage: Storage::File,
        ..cfg.clone()
    };
    let mut api = Api::connect(&cfg)?;
    let (stream, config) = stream_config(&cfg);
    api.delete_stream(stream, true)?;
    api.request(
        &format!("$JS.API.STREAM.CREATE.{stream}"),
        config.to_string().as_bytes(),
    )?;
    prefill(&cfg, stream, n, |_, out| {
        out.extend_from_slice(SUBJECT.as_bytes())
    })?;
    let info = api.request(&format!("$JS.API.STREAM.INFO.{stream}"), b"")?;
    if info["state"]["messages"] != n || info["state"]["last_seq"] != n {
        return Err(BenchError::Sequence(format!(
            "{n} PubAcks received, but STREAM.INFO.{stream} reports {}",
            info["state"]
        )));
    }
    Ok(())
}

/// `recover`: waits until the (restarted) server at `cfg.url` answers STREAM.INFO for
/// `BENCH`; returns its `messages` and `last_seq` then. Connection refusals, "no responders"
/// (JetStream not up yet) and errors are retried until `deadline`.
pub fn await_stream(cfg: &Config, deadline: Instant) -> Result<(u64, u64)> {
    let subject = format!("$JS.API.STREAM.INFO.{STREAM}");
    let mut api: Option<Api> = None;
    loop {
        let answer = match api.as_mut() {
            Some(a) => a.request(&subject, b""),
            None => Api::connect(cfg).and_then(|a| api.insert(a).request(&subject, b"")),
        };
        match answer {
            Ok(info) => {
                let state = &info["state"];
                return Ok((
                    state["messages"].as_u64().unwrap_or(0),
                    state["last_seq"].as_u64().unwrap_or(0),
                ));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context("waiting for the stream after the restart"))
            }
            // Not up yet: ask again shortly, on a new connection.
            Err(_) => {
                api = None;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Publishes `n` messages with acks checked, untimed (`subject(i)` names publish `i`'s
/// subject).
fn prefill(
    cfg: &Config,
    stream: &str,
    n: u64,
    subject: impl FnMut(u64, &mut Vec<u8>),
) -> Result<()> {
    let mut conn = Publisher::connect(cfg)?;
    let plan = PubPlan {
        stream,
        size: cfg.size,
        window: PREFILL_WINDOW,
        max: n,
        duration: None,
        stall: cfg.drain_timeout,
    };
    let o = conn
        .run(&plan, subject, || Ok(()))
        .map_err(|e| e.context("pre-filling the stream"))?;
    debug_assert_eq!(o.acked, n);
    Ok(())
}

/// `$KV.bench.k<key>` appended to `out`.
fn kv_subject(key: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(KV_PREFIX.as_bytes());
    out.push(b'k');
    out.extend_from_slice(itoa::Buffer::new().format(key).as_bytes());
}

/// Digits to a number; `None` for anything else (or an overflow).
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// A status header block's code and description (`NATS/1.0 408 Request Timeout`); `None`
/// for a plain header block.
pub fn status(headers: &[u8]) -> Option<(u16, String)> {
    let line = headers.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let rest = line.strip_prefix("NATS/1.0")?.trim_start();
    let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((code.parse().ok()?, text.trim().to_string()))
}

/// The value of header `name` (case-insensitive) in a header block.
pub fn header<'a>(headers: &'a [u8], name: &str) -> Option<&'a [u8]> {
    headers.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (k, v) = line.split_at(colon);
        k.eq_ignore_ascii_case(name.as_bytes())
            .then(|| v[1..].trim_ascii())
    })
}

/// A connection for API requests: one at a time, each with its own reply subject.
struct Api {
    conn: Conn,
    timeout: Duration,
    next: u64,
}

impl Api {
    fn connect(cfg: &Config) -> Result<Self> {
        let mut conn = connect(&cfg.url, cfg.connect_timeout)?;
        conn.writer
            .subscribe(format!("{API_INBOX}*").as_bytes(), None, 1);
        conn.round_trip(cfg.connect_timeout)?;
        Ok(Self {
            conn,
            // Deleting a large file stream may take a while.
            timeout: cfg.connect_timeout.max(Duration::from_secs(30)),
            next: 0,
        })
    }

    /// Sends `body` to `subject` and returns the JSON reply; a reply with `error` is an error
    /// that quotes the request and the reply.
    fn request(&mut self, subject: &str, body: &[u8]) -> Result<Value> {
        let v = self.request_raw(subject, body)?;
        if v.get("error").is_some() {
            return Err(BenchError::Server(format!(
                "{subject} {} answered {v}",
                String::from_utf8_lossy(body)
            )));
        }
        Ok(v)
    }

    /// [`Self::request`] without the `error` check.
    fn request_raw(&mut self, subject: &str, body: &[u8]) -> Result<Value> {
        self.next += 1;
        let reply = format!("{API_INBOX}{}", self.next);
        self.conn
            .writer
            .publish(subject.as_bytes(), Some(reply.as_bytes()), body)?;
        self.conn.writer.flush()?;
        // The reply's status line, if any, and its payload.
        type Answer = (Option<(u16, String)>, Vec<u8>);
        let mut answer: Option<Answer> = None;
        self.conn.reader.poll_until(
            Instant::now() + self.timeout,
            &format!("the reply to {subject}"),
            |op| {
                if let ServerOp::Msg(m) = op {
                    if m.subject == reply.as_bytes() {
                        answer = Some((m.headers().and_then(status), m.payload().to_vec()));
                        return Ok(true);
                    }
                }
                Ok(false)
            },
        )?;
        let (st, payload) = answer.expect("set when poll_until returns");
        if let Some((code, text)) = st {
            return Err(BenchError::Server(if code == 503 {
                format!("no responders for {subject}: is JetStream enabled on the server?")
            } else {
                format!("{subject} answered status {code} {text}")
            }));
        }
        serde_json::from_slice(&payload).map_err(|e| {
            BenchError::Protocol(format!(
                "{subject} answered {:?}, not JSON: {e}",
                String::from_utf8_lossy(&payload)
            ))
        })
    }

    /// Deletes `stream`; `missing_ok`: a stream that does not exist is fine (nothing left from
    /// an earlier run).
    fn delete_stream(&mut self, stream: &str, missing_ok: bool) -> Result<()> {
        let subject = format!("$JS.API.STREAM.DELETE.{stream}");
        let v = self.request_raw(&subject, b"")?;
        if missing_ok && v["error"]["err_code"] == 10059 {
            return Ok(());
        }
        if v["success"] != true {
            return Err(BenchError::Server(format!("{subject} answered {v}")));
        }
        Ok(())
    }

    /// Waits until the consumer reports every one of `n` messages delivered (and, with `acks`,
    /// acknowledged) and nothing redelivered.
    fn await_consumer(
        &mut self,
        stream: &str,
        consumer: &str,
        n: u64,
        acks: bool,
        timeout: Duration,
    ) -> Result<()> {
        let subject = format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}");
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.request(&subject, b"")?;
            let delivered = v["delivered"]["stream_seq"] == n;
            let acked = !acks || (v["ack_floor"]["stream_seq"] == n && v["num_ack_pending"] == 0);
            let redelivered = v["num_redelivered"].as_u64().unwrap_or(0);
            if redelivered > 0 {
                return Err(BenchError::Sequence(format!(
                    "{subject}: {redelivered} message(s) redelivered: {v}"
                )));
            }
            if delivered && acked {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Sequence(format!(
                    "{n} messages delivered{}, but after {timeout:?} {subject} reports \
                     delivered {}, ack_floor {}, num_ack_pending {}",
                    if acks { " and acked" } else { "" },
                    v["delivered"],
                    v["ack_floor"],
                    v["num_ack_pending"]
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What [`Publisher::run`] does.
struct PubPlan<'a> {
    stream: &'a str,
    size: usize,
    window: usize,
    max: u64,
    duration: Option<Duration>,
    /// No PubAck for this long fails the run.
    stall: Duration,
}

/// What [`Publisher::run`] measured.
struct PubOutcome {
    sent: u64,
    acked: u64,
    elapsed: Duration,
}

/// A connection that publishes with reply subjects `_INBOX.bench.ack.<index>`.
struct Publisher {
    conn: Conn,
}

impl Publisher {
    fn connect(cfg: &Config) -> Result<Self> {
        let mut conn = connect(&cfg.url, cfg.connect_timeout)?;
        conn.writer
            .subscribe(format!("{ACK_INBOX}*").as_bytes(), None, 1);
        conn.round_trip(cfg.connect_timeout)?;
        Ok(Self { conn })
    }

    /// Publishes until `plan.max` messages or `plan.duration` have gone, keeping at most
    /// `plan.window` awaiting their PubAck, then waits for the rest; every PubAck is checked.
    fn run(
        &mut self,
        plan: &PubPlan<'_>,
        mut subject: impl FnMut(u64, &mut Vec<u8>),
        before: impl FnOnce() -> Result<()>,
    ) -> Result<PubOutcome> {
        let mut payload = vec![b'j'; plan.size];
        let mut subj = Vec::with_capacity(64);
        let mut reply = Vec::with_capacity(64);
        let mut check = PubAckCheck::new(plan.stream);
        let window = plan.window as u64;
        let mut sent = 0u64;
        before()?;
        let start = Instant::now();
        let stop_at = plan.duration.map(|d| start + d);
        let mut last = start;
        loop {
            let now = Instant::now();
            let sending = sent < plan.max && stop_at.is_none_or(|t| now < t);
            if sending {
                let w = &mut self.conn.writer;
                while sent - check.acked < window && sent < plan.max {
                    seq::stamp(&mut payload, sent, 0);
                    subj.clear();
                    subject(sent, &mut subj);
                    reply.clear();
                    reply.extend_from_slice(ACK_INBOX.as_bytes());
                    reply.extend_from_slice(itoa::Buffer::new().format(sent).as_bytes());
                    w.publish(&subj, Some(&reply), &payload)?;
                    sent += 1;
                }
            } else if check.acked == sent {
                break;
            }
            self.conn.writer.flush()?;
            let before_poll = check.acked;
            self.conn.reader.poll(|op| {
                let ServerOp::Msg(m) = op else { return Ok(()) };
                let index = m
                    .subject
                    .strip_prefix(ACK_INBOX.as_bytes())
                    .and_then(parse_u64)
                    .ok_or_else(|| {
                        BenchError::Protocol(format!(
                            "a reply on an unknown inbox {}",
                            String::from_utf8_lossy(m.subject)
                        ))
                    })?;
                if let Some((code, text)) = m.headers().and_then(status) {
                    return Err(BenchError::Server(if code == 503 {
                        format!("publish {index}: no responders (no stream captures the subject?)")
                    } else {
                        format!("publish {index} answered status {code} {text}")
                    }));
                }
                check.check(index, m.payload())
            })?;
            let now = Instant::now();
            if check.acked > before_poll {
                last = now;
            } else if now.duration_since(last) > plan.stall {
                return Err(BenchError::Sequence(format!(
                    "{} PubAck(s) missing: {} of {sent} publishes acknowledged, none for {:?} \
                     (next awaited: publish {})",
                    sent - check.acked,
                    check.acked,
                    plan.stall,
                    check.acked
                )));
            }
        }
        Ok(PubOutcome {
            sent,
            acked: check.acked,
            elapsed: last.duration_since(start),
        })
    }
}

/// Checks PubAcks: publish `i` (from 0) must be acknowledged next, by `stream`, with
/// sequence `i + 1` (strictly increasing, gap-free), not as a duplicate.
#[derive(Debug)]
pub struct PubAckCheck {
    stream: String,
    /// PubAcks accepted so far (the index of the next one awaited).
    pub acked: u64,
    fast_prefix: Vec<u8>,
}

impl PubAckCheck {
    /// A check for a fresh stream `stream` (its first sequence is 1).
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.into(),
            acked: 0,
            fast_prefix: format!("{{\"stream\":\"{stream}\",\"seq\":").into_bytes(),
        }
    }

    /// Checks the PubAck `json` that answered publish `index`.
    pub fn check(&mut self, index: u64, json: &[u8]) -> Result<()> {
        let want = self.acked;
        if index != want {
            return Err(BenchError::Sequence(if index < want {
                format!("a second PubAck for publish {index} (duplicate)")
            } else {
                format!(
                    "PubAck for publish {index} while publish {want}'s is missing (lost or out \
                     of order)"
                )
            }));
        }
        let seq = self.parse(index, json)?;
        if seq != index + 1 {
            return Err(BenchError::Sequence(format!(
                "publish {index} acknowledged with seq {seq}, expected {} ({})",
                index + 1,
                if seq <= index {
                    "repeated or gone backwards"
                } else {
                    "a gap"
                }
            )));
        }
        self.acked += 1;
        Ok(())
    }

    /// The sequence of a PubAck: `{"stream":"S","seq":N}` read directly, anything else
    /// through serde_json.
    fn parse(&self, index: u64, json: &[u8]) -> Result<u64> {
        if let Some(rest) = json.strip_prefix(self.fast_prefix.as_slice()) {
            if let Some(digits) = rest.strip_suffix(b"}") {
                if let Some(seq) = parse_u64(digits) {
                    return Ok(seq);
                }
            }
        }
        let text = || String::from_utf8_lossy(json).into_owned();
        let v: Value = serde_json::from_slice(json).map_err(|e| {
            BenchError::Protocol(format!(
                "publish {index}: PubAck {:?} is not JSON: {e}",
                text()
            ))
        })?;
        if v.get("error").is_some() {
            return Err(BenchError::Server(format!(
                "publish {index} refused: {}",
                text()
            )));
        }
        if v["stream"] != self.stream.as_str() {
            return Err(BenchError::Sequence(format!(
                "publish {index}: PubAck {} does not name stream {}",
                text(),
                self.stream
            )));
        }
        if v["duplicate"] == true {
            return Err(BenchError::Sequence(format!(
                "publish {index}: PubAck {} marks it a duplicate",
                text()
            )));
        }
        v["seq"].as_u64().ok_or_else(|| {
            BenchError::Protocol(format!("publish {index}: PubAck {} has no seq", text()))
        })
    }
}

/// The numbers of a delivery's ack subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream
/// seq>.<consumer seq>.<ts>.<pending>`, or the 12-token form with a domain and an account hash
/// after `$JS.ACK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckInfo<'a> {
    /// The stream.
    pub stream: &'a str,
    /// The consumer.
    pub consumer: &'a str,
    /// How many times this message has been delivered.
    pub delivered: u64,
    /// Stream sequence.
    pub stream_seq: u64,
    /// Consumer sequence.
    pub consumer_seq: u64,
}

impl<'a> AckInfo<'a> {
    /// Parses an ack subject. Borrowed and without allocating: it runs for every delivery, and
    /// a replay's client must not be slower than the server it measures.
    pub fn parse(reply: &'a [u8]) -> Option<Self> {
        let s = std::str::from_utf8(reply).ok()?;
        let mut t = [""; 12];
        let mut len = 0;
        for token in s.split('.') {
            *t.get_mut(len)? = token;
            len += 1;
        }
        if len < 9 || t[0] != "$JS" || t[1] != "ACK" {
            return None;
        }
        let at = if len == 9 { 2 } else { 4 };
        if len < at + 7 {
            return None;
        }
        let n = |i: usize| parse_u64(t[at + i].as_bytes());
        Some(Self {
            stream: t[at],
            consumer: t[at + 1],
            delivered: n(2)?,
            stream_seq: n(3)?,
            consumer_seq: n(4)?,
        })
    }
}

/// Checks a consumer's deliveries: stream sequences 1, 2, 3, ... in order (so none lost or
/// duplicated), each a first delivery with the matching consumer sequence, on the published
/// subject, with the payload published at that sequence.
#[derive(Debug)]
pub struct DeliveryCheck {
    stream: String,
    consumer: String,
    subject: String,
    size: usize,
    /// Deliveries need an ack subject (explicit acks).
    need_reply: bool,
    /// Deliveries accepted.
    pub received: u64,
}

impl DeliveryCheck {
    /// A check for `consumer` on `stream` of messages published to `subject` with payloads of
    /// `size` bytes (stamped by [`seq::stamp`] with their publish index).
    pub fn new(stream: &str, consumer: &str, subject: &str, size: usize, need_reply: bool) -> Self {
        Self {
            stream: stream.into(),
            consumer: consumer.into(),
            subject: subject.into(),
            size,
            need_reply,
            received: 0,
        }
    }

    /// Checks one delivery.
    pub fn check(&mut self, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) -> Result<()> {
        let want = self.received + 1;
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if subject != self.subject.as_bytes() {
            return Err(BenchError::Sequence(format!(
                "delivery {want} on subject {}, not {}",
                lossy(subject),
                self.subject
            )));
        }
        match reply {
            Some(r) => {
                let a = AckInfo::parse(r).ok_or_else(|| {
                    BenchError::Protocol(format!("delivery {want}: odd ack subject {}", lossy(r)))
                })?;
                if a.stream != self.stream || a.consumer != self.consumer {
                    return Err(BenchError::Sequence(format!(
                        "delivery {want}: ack subject {} names another stream or consumer",
                        lossy(r)
                    )));
                }
                if a.stream_seq != want {
                    return Err(BenchError::Sequence(format!(
                        "delivery {} is stream seq {}, expected {want} ({})",
                        want,
                        a.stream_seq,
                        if a.stream_seq < want {
                            "a duplicate or gone backwards"
                        } else {
                            "a gap: messages lost"
                        }
                    )));
                }
                if a.delivered != 1 || a.consumer_seq != want {
                    return Err(BenchError::Sequence(format!(
                        "stream seq {want} delivered with {} (delivery count {}, consumer seq {}, \
                         expected 1 and {want}: a redelivery)",
                        lossy(r),
                        a.delivered,
                        a.consumer_seq
                    )));
                }
            }
            None if self.need_reply => {
                return Err(BenchError::Protocol(format!(
                    "delivery {want} has no ack subject"
                )))
            }
            None => {}
        }
        let (stamped, _) = seq::read(payload)?;
        if payload.len() != self.size || stamped + 1 != want {
            return Err(BenchError::Sequence(format!(
                "stream seq {want} holds publish {stamped} ({} bytes), expected publish {} \
                 ({} bytes)",
                payload.len(),
                want - 1,
                self.size
            )));
        }
        self.received = want;
        Ok(())
    }
}

/// Checks direct-get replies: key `k<i>` was put once, as publish `i` (sequence `i + 1`), so
/// its reply must name that subject and sequence and hold that value.
#[derive(Debug)]
pub struct GetCheck {
    size: usize,
    subject: Vec<u8>,
    /// Replies accepted.
    pub answered: u64,
}

impl GetCheck {
    /// A check of values of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            subject: Vec::new(),
            answered: 0,
        }
    }

    /// Checks the reply to a get of key `key`.
    pub fn check(&mut self, key: u64, headers: Option<&[u8]>, payload: &[u8]) -> Result<()> {
        self.subject.clear();
        kv_subject(key, &mut self.subject);
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let Some(h) = headers else {
            return Err(BenchError::Protocol(format!(
                "direct get of {} answered without headers: {:?}",
                lossy(&self.subject),
                lossy(payload)
            )));
        };
        if let Some((code, text)) = status(h) {
            return Err(BenchError::Sequence(format!(
                "direct get of {} answered status {code} {text}",
                lossy(&self.subject)
            )));
        }
        let seq = header(h, "Nats-Sequence").and_then(parse_u64);
        if header(h, "Nats-Subject") != Some(self.subject.as_slice()) || seq != Some(key + 1) {
            return Err(BenchError::Sequence(format!(
                "direct get of {} (put at seq {}) answered with headers {:?}",
                lossy(&self.subject),
                key + 1,
                lossy(h)
            )));
        }
        let (stamped, _) = seq::read(payload)?;
        if payload.len() != self.size || stamped != key {
            return Err(BenchError::Sequence(format!(
                "direct get of {} returned the value of put {stamped} ({} bytes), expected put \
                 {key} ({} bytes)",
                lossy(&self.subject),
                payload.len(),
                self.size
            )));
        }
        self.answered += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubacks_must_be_in_order_and_gap_free() {
        let mut c = PubAckCheck::new("S");
        c.check(0, br#"{"stream":"S","seq":1}"#).unwrap();
        c.check(1, br#"{"stream":"S", "seq":2, "domain":"d"}"#)
            .unwrap();
        assert!(c
            .check(1, br#"{"stream":"S","seq":2}"#)
            .unwrap_err()
            .is_sequence());
        assert!(c
            .check(3, br#"{"stream":"S","seq":4}"#)
            .unwrap_err()
            .is_sequence());
        assert!(c
            .check(2, br#"{"stream":"S","seq":4}"#)
            .unwrap_err()
            .is_sequence());
        assert!(c
            .check(2, br#"{"stream":"T","seq":3}"#)
            .unwrap_err()
            .is_sequence());
        assert!(c
            .check(2, br#"{"stream":"S","seq":3,"duplicate":true}"#)
            .unwrap_err()
            .is_sequence());
        assert!(matches!(
            c.check(2, br#"{"error":{"code":503,"description":"x"}}"#),
            Err(BenchError::Server(_))
        ));
        c.check(2, br#"{"stream":"S","seq":3}"#).unwrap();
        assert_eq!(c.acked, 3);
    }

    #[test]
    fn ack_subjects_in_both_forms() {
        let a = AckInfo::parse(b"$JS.ACK.S.C.1.5.4.1700000000.10").unwrap();
        assert_eq!((a.stream, a.consumer), ("S", "C"));
        assert_eq!((a.delivered, a.stream_seq, a.consumer_seq), (1, 5, 4));
        let b = AckInfo::parse(b"$JS.ACK.dom.HASH.S.C.2.5.4.1700000000.10.tok").unwrap();
        assert_eq!((b.stream, b.delivered, b.stream_seq), ("S", 2, 5));
        assert!(AckInfo::parse(b"$JS.ACK.S.C.1.x.4.1.1").is_none());
    }

    #[test]
    fn deliveries_must_be_every_sequence_once() {
        let payload = |i: u64| {
            let mut p = vec![0; 16];
            seq::stamp(&mut p, i, 0);
            p
        };
        let mut c = DeliveryCheck::new("S", "C", "a.b", 16, true);
        c.check(b"a.b", Some(b"$JS.ACK.S.C.1.1.1.0.1"), &payload(0))
            .unwrap();
        let dup = c.check(b"a.b", Some(b"$JS.ACK.S.C.1.1.1.0.1"), &payload(0));
        assert!(dup.unwrap_err().is_sequence());
        let gap = c.check(b"a.b", Some(b"$JS.ACK.S.C.1.3.2.0.1"), &payload(2));
        assert!(gap.unwrap_err().is_sequence());
        let redelivery = c.check(b"a.b", Some(b"$JS.ACK.S.C.2.2.2.0.1"), &payload(1));
        assert!(redelivery.unwrap_err().is_sequence());
        let wrong_value = c.check(b"a.b", Some(b"$JS.ACK.S.C.1.2.2.0.1"), &payload(7));
        assert!(wrong_value.unwrap_err().is_sequence());
        assert!(c.check(b"a.b", None, &payload(1)).is_err());
        c.check(b"a.b", Some(b"$JS.ACK.S.C.1.2.2.0.0"), &payload(1))
            .unwrap();
        assert_eq!(c.received, 2);
    }

    #[test]
    fn direct_get_replies_are_checked() {
        let mut value = vec![0; 16];
        seq::stamp(&mut value, 3, 0);
        let mut c = GetCheck::new(16);
        let h = b"NATS/1.0\r\nNats-Stream: KV_bench\r\nNats-Subject: $KV.bench.k3\r\nNats-Sequence: 4\r\n\r\n";
        c.check(3, Some(h), &value).unwrap();
        assert!(c.check(2, Some(h), &value).unwrap_err().is_sequence());
        let missing = b"NATS/1.0 404 Message Not Found\r\n\r\n";
        assert!(c.check(3, Some(missing), b"").unwrap_err().is_sequence());
        assert_eq!(status(missing), Some((404, "Message Not Found".into())));
        assert_eq!(status(b"NATS/1.0\r\n\r\n"), None);
        assert!(c.check(3, None, &value).is_err());
        assert_eq!(c.answered, 1);
    }
}
