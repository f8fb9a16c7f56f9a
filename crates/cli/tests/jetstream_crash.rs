//! JetStream durability under `kill -9`: publish as fast as possible, SIGKILL the broker at a
//! random moment, restart it on the same port and store directory, and check that everything
//! it acknowledged is still there, at the acknowledged sequence, with the same payload.
//!
//! A `PubAck` means the message was handed to the operating system (and, with
//! `sync_interval: always`, fsynced); a SIGKILL does not lose the page cache, so every acked
//! message must survive in both variants. Messages published but not acked may or may not be
//! there; no payload may appear twice, sequences only go up, and the first publish after a
//! restart continues at `last_seq + 1`.
//!
//! Rounds: 5 (default sync) and 3 (`sync_interval: always`) by default;
//! `STARLING_CRASH_ROUNDS=N` runs N rounds of each. The only sleep is the random delay before
//! each kill; every other wait is on a log line, a connection, a reply or the process's exit,
//! each bounded by a timeout.
#![cfg(unix)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{ClientError, ConnectOptions, Event};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

const BIN: &str = env!("CARGO_BIN_EXE_starling-server");
const TIMEOUT: Duration = Duration::from_secs(20);
const IN_FLIGHT: usize = 256;
const STREAM: &str = "CRASH";
/// The `id` of the probe published right after each restart.
const PROBE: u64 = u64::MAX;
/// How many old acked messages each round re-reads one by one (all are re-read at the end).
const SAMPLES: usize = 64;

// ---------------------------------------------------------------------------------------------
// The broker process.

/// Every line every incarnation of the broker wrote to stderr, in order.
type Log = Arc<Mutex<Vec<String>>>;

struct Broker {
    child: Option<Child>,
    pid: i32,
}

impl Broker {
    /// Starts the binary and waits until it is ready; returns it and its client port.
    async fn start(args: &[String], log: &Log) -> (Self, u16) {
        log.lock()
            .unwrap()
            .push(format!("---- starling-server {}", args.join(" ")));
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn starling-server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, mut lines) = mpsc::unbounded_channel();
        let all = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let broker = Self {
            pid: child.id() as i32,
            child: Some(child),
        };
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut port = None;
        loop {
            match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                        port = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok());
                    }
                    if line.contains("Server is ready") {
                        break;
                    }
                }
                Ok(None) => panic!(
                    "starling-server exited before it was ready:\n{}",
                    tail(log, 60)
                ),
                Err(_) => panic!("starling-server not ready in time:\n{}", tail(log, 60)),
            }
        }
        let port = port.unwrap_or_else(|| panic!("no client port logged:\n{}", tail(log, 60)));
        (broker, port)
    }

    /// SIGKILL, then waits for the process to be gone and checks that SIGKILL is what ended it.
    async fn kill9(&mut self) {
        // SAFETY: kill(2) on a child we spawned and have not reaped (so the pid is still ours).
        let rc = unsafe { libc::kill(self.pid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 {}", self.pid);
        let mut child = self.child.take().expect("running");
        let status =
            tokio::time::timeout(TIMEOUT, tokio::task::spawn_blocking(move || child.wait()))
                .await
                .expect("the killed broker exits")
                .unwrap()
                .expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(log: &Log, n: usize) -> String {
    let log = log.lock().unwrap();
    log[log.len().saturating_sub(n)..].join("\n")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "starling-crash-{name}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_owned()
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// A client that gives up after one failed reconnect, so that once its broker is killed it can
/// never deliver a buffered publish to the next incarnation; and the event that says so.
async fn connect(port: u16) -> (async_nats::Client, mpsc::UnboundedReceiver<Event>) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (tx, events) = mpsc::unbounded_channel();
        let options = ConnectOptions::new()
            .max_reconnects(1)
            .connection_timeout(Duration::from_secs(2))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            });
        match options.connect(format!("nats://127.0.0.1:{port}")).await {
            Ok(client) => return (client, events),
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect to {port}: {e}; retrying");
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("cannot connect to 127.0.0.1:{port}: {e}"),
        }
    }
}

/// Waits until the client has given up reconnecting (its connection task has ended).
async fn gone(events: &mut mpsc::UnboundedReceiver<Event>) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::ClientError(ClientError::MaxReconnects)) | Some(Event::Closed))
            | Ok(None) => return,
            Ok(Some(_)) => {}
            Err(_) => panic!("the old client is still reconnecting"),
        }
    }
}

fn js_context(client: async_nats::Client) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(10));
    js
}

// ---------------------------------------------------------------------------------------------
// Payloads: unique per (round, id), self-describing, of varying length.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    round: usize,
    id: u64,
}

fn payload(key: Key) -> Vec<u8> {
    let mut p = if key.id == PROBE {
        format!("probe-{}|", key.round).into_bytes()
    } else {
        format!("r{}-{}|", key.round, key.id).into_bytes()
    };
    let len = (key.id.wrapping_mul(2_654_435_761) % 300) as usize;
    p.extend((0..len).map(|i| b'a' + ((key.id as usize).wrapping_add(i) % 26) as u8));
    p
}

fn parse(p: &[u8]) -> Option<Key> {
    let head = std::str::from_utf8(&p[..p.iter().position(|&b| b == b'|')?]).ok()?;
    let key = if let Some(round) = head.strip_prefix("probe-") {
        Key {
            round: round.parse().ok()?,
            id: PROBE,
        }
    } else {
        let (round, id) = head.strip_prefix('r')?.split_once('-')?;
        Key {
            round: round.parse().ok()?,
            id: id.parse().ok()?,
        }
    };
    (payload(key) == p).then_some(key)
}

fn show(p: &[u8]) -> String {
    let s = String::from_utf8_lossy(&p[..p.len().min(40)]).into_owned();
    if p.len() > 40 {
        s + "…"
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Publishing.

struct Published {
    /// (id, seq) for every PubAck received.
    acked: Vec<(u64, u64)>,
    /// Ids `0..attempted` were handed to the client (stored or not).
    attempted: u64,
    /// Publish errors before the kill (there should be none).
    early_errors: Vec<String>,
}

/// Publishes `round`'s messages, `IN_FLIGHT` at a time, until `stop`.
async fn publish_until(
    js: jetstream::Context,
    round: usize,
    killed: Arc<AtomicBool>,
    mut stop: oneshot::Receiver<()>,
) -> Published {
    let mut inflight = FuturesUnordered::new();
    let mut out = Published {
        acked: Vec::new(),
        attempted: 0,
        early_errors: Vec::new(),
    };
    loop {
        while inflight.len() < IN_FLIGHT {
            let id = out.attempted;
            out.attempted += 1;
            let js = js.clone();
            inflight.push(async move {
                let key = Key { round, id };
                let ack = js
                    .publish(format!("crash.{}", id % 8), payload(key).into())
                    .await?
                    .await?;
                Ok::<_, async_nats::Error>((id, ack))
            });
        }
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(done) = inflight.next() => match done {
                Ok((id, ack)) => {
                    assert_eq!(ack.stream, STREAM);
                    assert!(!ack.duplicate, "seq {} acked as a duplicate", ack.sequence);
                    out.acked.push((id, ack.sequence));
                }
                Err(e) if !killed.load(Ordering::SeqCst) => {
                    out.early_errors.push(e.to_string());
                }
                Err(_) => {}
            },
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Checking.

/// What the test knows about the stream.
#[derive(Default)]
struct Model {
    /// Every PubAck received: seq → payload.
    acked: BTreeMap<u64, Key>,
    /// Every payload read back from the stream, and where.
    stored: HashMap<Key, u64>,
    /// How many ids each round handed to the client.
    attempted: HashMap<usize, u64>,
    /// Sequences `1..=verified` have been read back in full.
    verified: u64,
    /// Sequences found missing (published, never acked, not stored), for the summary.
    gaps: u64,
}

impl Model {
    fn attempted(&self, key: Key) -> bool {
        key.id == PROBE || key.id < self.attempted.get(&key.round).copied().unwrap_or(0)
    }
}

/// Reads sequences `from..=to` with an ephemeral pull consumer (ack none): (seq, payload).
async fn read_range(
    s: &stream::Stream,
    from: u64,
    to: u64,
    issues: &mut Vec<String>,
) -> Vec<(u64, Vec<u8>)> {
    let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
    if from > to {
        return got;
    }
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("create a reading consumer");
    let mut last = from - 1;
    let mut empty = 0;
    while last < to {
        let want = (to - last).min(2000) as usize;
        let mut batch = c
            .batch()
            .max_messages(want)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .expect("a consumer batch");
        let before = got.len();
        while let Some(m) = batch.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    issues.push(format!("consumer read error after seq {last}: {e}"));
                    break;
                }
            };
            let seq = m.info().expect("a JetStream message").stream_sequence;
            if seq <= last {
                issues.push(format!(
                    "consumer delivered seq {seq} after seq {last} (not increasing)"
                ));
            }
            last = last.max(seq);
            got.push((seq, m.payload.to_vec()));
            if seq >= to {
                break;
            }
        }
        if got.len() == before {
            empty += 1;
            if empty == 3 {
                issues.push(format!(
                    "consumer stalled at seq {last}, stream's last seq is {to}"
                ));
                break;
            }
        } else {
            empty = 0;
        }
    }
    let name = c.cached_info().name.clone();
    let _ = s.delete_consumer(&name).await;
    got
}

/// Reads `from..=to` and checks it against everything the model knows; updates the model.
async fn check_range(
    s: &stream::Stream,
    model: &mut Model,
    from: u64,
    to: u64,
    issues: &mut Vec<String>,
) -> usize {
    let got = read_range(s, from, to, issues).await;
    let mut present = std::collections::HashSet::new();
    for (seq, p) in &got {
        present.insert(*seq);
        if !(from..=to).contains(seq) {
            issues.push(format!("read seq {seq} outside {from}..={to}"));
        }
        let Some(key) = parse(p) else {
            issues.push(format!("seq {seq}: corrupted payload {:?}", show(p)));
            continue;
        };
        if !model.attempted(key) {
            issues.push(format!("seq {seq}: payload {key:?} was never published"));
        }
        if let Some(&acked) = model.acked.get(seq) {
            if acked != key {
                issues.push(format!("seq {seq}: acked for {acked:?} but holds {key:?}"));
            }
        }
        if let Some(prev) = model.stored.insert(key, *seq) {
            if prev != *seq {
                issues.push(format!(
                    "payload {key:?} stored twice: seq {prev} and seq {seq}"
                ));
            }
        }
    }
    for (&seq, key) in model.acked.range(from..=to) {
        if !present.contains(&seq) {
            let direct = match s.get_raw_message(seq).await {
                Ok(m) => format!("direct get: {:?}", show(&m.payload)),
                Err(e) => format!("direct get: {e}"),
            };
            issues.push(format!("LOST acked seq {seq} ({key:?}); {direct}"));
        }
    }
    model.gaps += (to + 1).saturating_sub(from) - present.len() as u64;
    got.len()
}

/// Re-reads up to `SAMPLES` acked messages below `model.verified` one by one.
async fn check_samples(s: &stream::Stream, model: &Model, issues: &mut Vec<String>) {
    let old: Vec<(u64, Key)> = model
        .acked
        .range(..=model.verified)
        .map(|(&s, &k)| (s, k))
        .collect();
    for _ in 0..SAMPLES.min(old.len()) {
        let (seq, key) = old[fastrand::usize(..old.len())];
        match s.get_raw_message(seq).await {
            Ok(m) if m.payload[..] == payload(key)[..] => {}
            Ok(m) => issues.push(format!(
                "old acked seq {seq} ({key:?}) now holds {:?}",
                show(&m.payload)
            )),
            Err(e) => issues.push(format!("old acked seq {seq} ({key:?}) is gone: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The loop.

fn rounds(default: usize) -> usize {
    std::env::var("STARLING_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `rounds` kill -9 rounds against a broker started with `args(port)`.
async fn crash_loop(name: &str, rounds: usize, args: impl Fn(&str) -> Vec<String>) {
    let log: Log = Arc::default();
    let started = Instant::now();
    let (mut broker, port) = Broker::start(&args("-1"), &log).await;
    let port_arg = port.to_string();
    let (client, mut events) = connect(port).await;
    let mut js = js_context(client);
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["crash.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("create the stream");

    let mut model = Model::default();
    let mut total_acked = 0;
    for round in 0..rounds {
        // Publish flat out; kill -9 at a random moment.
        let killed = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel();
        let publisher = tokio::spawn(publish_until(js.clone(), round, killed.clone(), stopped));
        let delay = Duration::from_millis(fastrand::u64(50..=400));
        tokio::time::sleep(delay).await;
        killed.store(true, Ordering::SeqCst);
        broker.kill9().await;
        let _ = stop.send(());
        let published = publisher.await.expect("publisher");
        drop(js);
        gone(&mut events).await;

        let mut issues = Vec::new();
        for e in &published.early_errors {
            issues.push(format!("publish failed before the kill: {e}"));
        }
        model.attempted.insert(round, published.attempted);
        let mut max_acked = model.verified;
        for &(id, seq) in &published.acked {
            let key = Key { round, id };
            if seq <= model.verified {
                issues.push(format!(
                    "{key:?} acked with seq {seq}, at or below the last seq {} before the round",
                    model.verified
                ));
            }
            if let Some(other) = model.acked.insert(seq, key) {
                issues.push(format!("seq {seq} acked twice: {other:?} and {key:?}"));
            }
            max_acked = max_acked.max(seq);
        }
        total_acked += published.acked.len();

        // Restart on the same port and store; everything acked must be there.
        let (next, _) = Broker::start(&args(&port_arg), &log).await;
        broker = next;
        let (client, next_events) = connect(port).await;
        events = next_events;
        js = js_context(client);
        let mut s = js.get_stream(STREAM).await.unwrap_or_else(|e| {
            panic!(
                "round {round}: stream not recovered: {e}\n{}",
                tail(&log, 60)
            )
        });
        let info = s.info().await.expect("stream info").clone();
        let state = &info.state;
        if state.last_sequence < max_acked {
            issues.push(format!(
                "last seq after restart is {}, but seq {max_acked} was acked",
                state.last_sequence
            ));
        }
        if state.messages > 0 && state.first_sequence != 1 {
            issues.push(format!("first seq is {}", state.first_sequence));
        }
        let from = model.verified + 1;
        let read = check_range(&s, &mut model, from, state.last_sequence, &mut issues).await;
        for (&seq, key) in model.acked.range(state.last_sequence + 1..) {
            issues.push(format!(
                "LOST acked seq {seq} ({key:?}): beyond the last seq"
            ));
        }
        check_samples(&s, &model, &mut issues).await;
        let last = state.last_sequence;
        let messages = state.messages;

        // The next publish continues the sequence.
        let probe = Key { round, id: PROBE };
        match js.publish("crash.probe", payload(probe).into()).await {
            Ok(ack) => match ack.await {
                Ok(ack) if ack.sequence == last + 1 => {
                    model.acked.insert(ack.sequence, probe);
                }
                Ok(ack) => issues.push(format!(
                    "first publish after restart got seq {}, last seq was {last}",
                    ack.sequence
                )),
                Err(e) => issues.push(format!("first publish after restart: {e}")),
            },
            Err(e) => issues.push(format!("first publish after restart: {e}")),
        }
        model.verified = last;

        eprintln!(
            "{name} round {round}: killed after {delay:?}; {} published, {} acked (max seq \
             {max_acked}); recovered last seq {last}, {messages} msgs, {read} read back",
            published.attempted,
            published.acked.len()
        );
        if round + 1 == rounds {
            // Everything, once more, from the start.
            let mut full = Model {
                acked: model.acked.clone(),
                attempted: model.attempted.clone(),
                ..Default::default()
            };
            let last = s.info().await.expect("stream info").state.last_sequence;
            let read = check_range(&s, &mut full, 1, last, &mut issues).await;
            eprintln!("{name}: final full read: {read} messages up to seq {last}");
        }
        if !issues.is_empty() {
            let mut report = format!("{name} round {round} (kill after {delay:?}):\n");
            for i in issues.iter().take(50) {
                let _ = writeln!(report, "  {i}");
            }
            if issues.len() > 50 {
                let _ = writeln!(report, "  … {} more", issues.len() - 50);
            }
            panic!("{report}server log (tail):\n{}", tail(&log, 80));
        }
    }
    eprintln!(
        "{name}: {rounds} rounds, {total_acked} acked, {} unacked gaps, in {:?}",
        model.gaps,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_kill_9() {
    let dir = temp_dir("default");
    let store = path_str(&dir.join("store"));
    crash_loop("default sync", rounds(5), |port| {
        ["-a", "127.0.0.1", "-p", port, "-js", "-sd", &store]
            .map(String::from)
            .to_vec()
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_kill_9_with_sync_always() {
    let dir = temp_dir("always");
    let conf = dir.join("js.conf");
    std::fs::write(
        &conf,
        format!(
            "jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            path_str(&dir.join("store"))
        ),
    )
    .unwrap();
    let conf = path_str(&conf);
    crash_loop("sync always", rounds(3), |port| {
        ["-c", &conf, "-a", "127.0.0.1", "-p", port]
            .map(String::from)
            .to_vec()
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
