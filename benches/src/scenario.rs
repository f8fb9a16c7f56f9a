//! The scenarios, their configuration, and running one against a server.

use std::fmt;
use std::time::Duration;

use crate::error::{BenchError, Result};
use crate::flow::{Flow, PubPlan, SubPlan};
use crate::js::{self, JsServer, Storage};
use crate::procstat::{self, ProcSample};
use crate::report::RunResult;
use crate::{accounts, handshake, reqrep, subs};

/// One kind of load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Publish only, no subscribers (paced by PING/PONG).
    Pub,
    /// One publisher, one subscriber.
    PubSub,
    /// One publisher, one subscriber, `HPUB` → `HMSG`.
    PubSubHeaders,
    /// One publisher, K subscribers on the same subject.
    Fanout,
    /// K publishers, one subscriber.
    Fanin,
    /// One publisher, a queue group of K members: each message delivered once.
    Queue,
    /// One publisher over many subjects, K subscribers on a `*` wildcard.
    Wildcard,
    /// Request/reply round trips with a responder on the same server.
    ReqRep,
    /// Many subscriptions on distinct subjects: server memory per subscription.
    Subs,
    /// Publish on one server, subscribe on another of the same cluster.
    Route,
    /// Publish on a hub, subscribe on a leaf node connected to it. Not part of `all`.
    Leaf,
    /// Many accounts with a few subscriptions each: server memory per account.
    Accounts,
    /// K connector threads open and close connections: handshakes per second (with TLS
    /// under `--tls`). Not part of `all`.
    Handshake,
    /// JetStream: publishes awaiting their PubAck, at most `--in-flight` at a time.
    JsPub,
    /// [`Self::JsPub`] on a file stream with the server's `sync_interval: always`.
    JsPubSync,
    /// JetStream: a pre-filled stream consumed by a durable pull consumer, every message acked.
    JsConsume,
    /// JetStream: a pre-filled stream replayed by an `ack_policy: none` pull consumer.
    JsReplay,
    /// JetStream key-value: puts (publishes to `$KV.bench.<key>` awaiting their PubAck).
    KvPut,
    /// JetStream key-value: direct gets of the last value of a key.
    KvGet,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Self; 11] = [
        Self::Pub,
        Self::PubSub,
        Self::PubSubHeaders,
        Self::Fanout,
        Self::Fanin,
        Self::Queue,
        Self::Wildcard,
        Self::ReqRep,
        Self::Subs,
        Self::Route,
        Self::Accounts,
    ];

    /// Scenarios that `all` leaves out (it stays what earlier figures were measured with);
    /// they run when named.
    pub const EXTRA: [Self; 8] = [
        Self::Leaf,
        Self::Handshake,
        Self::JsPub,
        Self::JsPubSync,
        Self::JsConsume,
        Self::JsReplay,
        Self::KvPut,
        Self::KvGet,
    ];

    /// The JetStream scenarios (`js` on the command line).
    pub const JETSTREAM: [Self; 6] = [
        Self::JsPub,
        Self::JsPubSync,
        Self::JsConsume,
        Self::JsReplay,
        Self::KvPut,
        Self::KvGet,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pub => "pub",
            Self::PubSub => "pubsub",
            Self::PubSubHeaders => "pubsub-headers",
            Self::Fanout => "fanout",
            Self::Fanin => "fanin",
            Self::Queue => "queue",
            Self::Wildcard => "wildcard",
            Self::ReqRep => "reqrep",
            Self::Subs => "subs",
            Self::Route => "route",
            Self::Leaf => "leaf",
            Self::Accounts => "accounts",
            Self::Handshake => "handshake",
            Self::JsPub => "js-pub",
            Self::JsPubSync => "js-pub-sync",
            Self::JsConsume => "js-consume",
            Self::JsReplay => "js-replay",
            Self::KvPut => "kv-put",
            Self::KvGet => "kv-get",
        }
    }

    /// Parses a name as printed by [`Self::name`].
    pub fn parse(s: &str) -> Result<Self> {
        let known = || Self::ALL.into_iter().chain(Self::EXTRA);
        known().find(|x| x.name() == s).ok_or_else(|| {
            let names: Vec<_> = known().map(|x| x.name()).collect();
            BenchError::Usage(format!(
                "unknown scenario {s:?}; one of: {}",
                names.join(", ")
            ))
        })
    }

    /// Parses `all` (every scenario but [`Self::EXTRA`]) or a comma-separated list, in which
    /// `js` stands for every JetStream scenario.
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        if s == "all" {
            return Ok(Self::ALL.to_vec());
        }
        let mut out = Vec::new();
        for x in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            if x == "js" {
                out.extend(Self::JETSTREAM);
            } else {
                out.push(Self::parse(x)?);
            }
        }
        Ok(out)
    }

    /// How the server must run JetStream for this scenario; `None` for core NATS scenarios.
    pub fn jetstream(self) -> Option<JsServer> {
        match self {
            Self::JsPubSync => Some(JsServer::SyncAlways),
            Self::JsPub | Self::JsConsume | Self::JsReplay | Self::KvPut | Self::KvGet => {
                Some(JsServer::Enabled)
            }
            _ => None,
        }
    }

    /// The parameters a JetStream scenario's figures depend on, for reports (empty for the
    /// others): storage, window or batch, message count.
    pub fn detail(self, cfg: &Config) -> String {
        let storage = cfg.storage.name();
        match self {
            Self::JsPub => format!("{storage}, {} in flight", cfg.in_flight),
            Self::JsPubSync => format!("file, sync always, {} in flight", cfg.in_flight),
            Self::JsConsume => format!("{storage}, {} msgs, batch {}", cfg.msgs, cfg.batch),
            Self::JsReplay => format!("{storage}, {} msgs, batch {}", cfg.msgs, cfg.replay_batch),
            Self::KvPut | Self::KvGet => {
                format!("{storage}, {} keys, {} in flight", cfg.keys, cfg.in_flight)
            }
            _ => String::new(),
        }
    }

    /// The servers the scenario needs: one, two clustered, or a hub and its leaf (the
    /// second server is `url2`).
    pub fn topology(self) -> Topology {
        match self {
            Self::Route => Topology::Cluster,
            Self::Leaf => Topology::Leaf,
            _ => Topology::Single,
        }
    }

    /// Measures memory: every round gets fresh server processes.
    pub fn measures_memory(self) -> bool {
        matches!(self, Self::Subs | Self::Accounts)
    }

    /// The configuration file the server must run with for this scenario, if any.
    pub fn server_config(self, cfg: &Config) -> Option<String> {
        (self == Self::Accounts).then(|| accounts::server_config(cfg.accounts))
    }
}

/// How many servers a scenario runs on, and how they are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server.
    Single,
    /// Two servers with a route between them.
    Cluster,
    /// A hub, and a leaf node that solicits it (the second server).
    Leaf,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The scenario.
    pub scenario: Scenario,
    /// The server (`nats://host:port`).
    pub url: String,
    /// The second server, for `route` and `leaf`: subscribers connect here.
    pub url2: Option<String>,
    /// The server's pid, for CPU and RSS figures.
    pub pid: Option<u32>,
    /// The second server's pid (`route`, `leaf`): its CPU is added to the first's.
    pub pid2: Option<u32>,
    /// A label for reports (defaults to the URL).
    pub label: Option<String>,
    /// Payload size in bytes (16 B .. 64 KiB).
    pub size: usize,
    /// How long to publish.
    pub duration: Duration,
    /// Fan-out, fan-in, queue-group and wildcard width.
    pub k: usize,
    /// Requests in flight for `reqrep` (1: sequential).
    pub concurrency: usize,
    /// Subscriptions for `subs`.
    pub subs: usize,
    /// Distinct subjects for `wildcard`.
    pub subjects: usize,
    /// How long to wait for the rest once publishing stops.
    pub drain_timeout: Duration,
    /// Bound on connecting, handshakes and waiting for interest.
    pub connect_timeout: Duration,
    /// Stop each publisher after this many messages (tests); `None`: only the duration.
    pub max_msgs: Option<u64>,
    /// Accounts for `accounts`.
    pub accounts: usize,
    /// Subscriptions per account for `accounts`.
    pub subs_per_account: usize,
    /// JetStream publishes (`js-pub`, `kv-put`) and direct gets (`kv-get`) awaiting their
    /// reply at once.
    pub in_flight: usize,
    /// Storage of the JetStream scenarios' streams (`js-pub-sync`: always file).
    pub storage: Storage,
    /// Messages pre-filled and consumed by `js-consume` and `js-replay`.
    pub msgs: u64,
    /// Pull batch of `js-consume`.
    pub batch: usize,
    /// Pull batch of `js-replay`.
    pub replay_batch: usize,
    /// Keys of `kv-put` and `kv-get`.
    pub keys: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            scenario: Scenario::PubSub,
            url: "nats://127.0.0.1:4222".into(),
            url2: None,
            pid: None,
            pid2: None,
            label: None,
            size: 128,
            duration: Duration::from_secs(2),
            k: 4,
            concurrency: 1,
            subs: 100_000,
            subjects: 1000,
            drain_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_msgs: None,
            accounts: 1000,
            subs_per_account: 10,
            in_flight: 256,
            storage: Storage::File,
            msgs: 200_000,
            batch: 500,
            replay_batch: 10_000,
            keys: 1000,
        }
    }
}

/// Smallest and largest `--size`.
pub const SIZE_RANGE: (usize, usize) = (16, 64 * 1024);

impl Config {
    /// Checks the values a run depends on.
    pub fn validate(&self) -> Result<()> {
        if !(SIZE_RANGE.0..=SIZE_RANGE.1).contains(&self.size) {
            return Err(BenchError::Usage(format!(
                "--size must be within {}..={} bytes",
                SIZE_RANGE.0, SIZE_RANGE.1
            )));
        }
        if self.k == 0
            || self.concurrency == 0
            || self.subs == 0
            || self.subjects == 0
            || self.accounts == 0
        {
            return Err(BenchError::Usage(
                "--k, --concurrency, --subs, --subjects and --accounts must be positive".into(),
            ));
        }
        if self.in_flight == 0
            || self.msgs == 0
            || self.batch == 0
            || self.replay_batch == 0
            || self.keys == 0
        {
            return Err(BenchError::Usage(
                "--in-flight, --msgs, --batch, --replay-batch and --keys must be positive".into(),
            ));
        }
        if self.scenario.topology() != Topology::Single && self.url2.is_none() {
            return Err(BenchError::Usage(format!(
                "{} needs --url2",
                self.scenario.name()
            )));
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        self.pid.into_iter().chain(self.pid2).collect()
    }

    /// The publishers and subscribers of a streaming scenario; `None` for `reqrep`, `subs`,
    /// `accounts` and `handshake`.
    pub fn flow(&self) -> Option<Flow> {
        let url = || self.url.clone();
        let publisher = |subjects: Vec<String>, headers| PubPlan {
            url: url(),
            subjects,
            headers,
        };
        let subscriber = |subject: &str, queue: Option<&str>| SubPlan {
            url: url(),
            subject: subject.into(),
            queue: queue.map(Into::into),
        };
        let one = |s: &str| vec![s.to_string()];
        let (pubs, subs) = match self.scenario {
            Scenario::Pub => (vec![publisher(one("bench.pub"), false)], vec![]),
            Scenario::PubSub => (
                vec![publisher(one("bench.pubsub"), false)],
                vec![subscriber("bench.pubsub", None)],
            ),
            Scenario::PubSubHeaders => (
                vec![publisher(one("bench.hdr"), true)],
                vec![subscriber("bench.hdr", None)],
            ),
            Scenario::Fanout => (
                vec![publisher(one("bench.fanout"), false)],
                (0..self.k)
                    .map(|_| subscriber("bench.fanout", None))
                    .collect(),
            ),
            Scenario::Fanin => (
                (0..self.k)
                    .map(|_| publisher(one("bench.fanin"), false))
                    .collect(),
                vec![subscriber("bench.fanin", None)],
            ),
            Scenario::Queue => (
                vec![publisher(one("bench.queue"), false)],
                (0..self.k)
                    .map(|_| subscriber("bench.queue", Some("workers")))
                    .collect(),
            ),
            Scenario::Wildcard => (
                vec![publisher(
                    (0..self.subjects).map(|i| format!("bench.{i}.x")).collect(),
                    false,
                )],
                (0..self.k).map(|_| subscriber("bench.*.x", None)).collect(),
            ),
            Scenario::Route | Scenario::Leaf => (
                vec![publisher(one("bench.route"), false)],
                vec![SubPlan {
                    url: self.url2.clone()?,
                    subject: "bench.route".into(),
                    queue: None,
                }],
            ),
            Scenario::ReqRep
            | Scenario::Subs
            | Scenario::Accounts
            | Scenario::Handshake
            | Scenario::JsPub
            | Scenario::JsPubSync
            | Scenario::JsConsume
            | Scenario::JsReplay
            | Scenario::KvPut
            | Scenario::KvGet => return None,
        };
        Some(Flow {
            pubs,
            subs,
            size: self.size,
            duration: self.duration,
            drain_timeout: self.drain_timeout,
            connect_timeout: self.connect_timeout,
            probe: self.scenario.topology() != Topology::Single,
            max_msgs: self.max_msgs,
        })
    }
}

/// Runs `cfg.scenario` once against the server(s) it names.
pub fn run(cfg: &Config) -> Result<RunResult> {
    cfg.validate()?;
    let pids = cfg.pids();
    let mut before: Vec<ProcSample> = Vec::new();
    let mut result = RunResult {
        scenario: cfg.scenario.name().into(),
        server: cfg.label.clone().unwrap_or_else(|| cfg.url.clone()),
        published: 0,
        delivered: 0,
        elapsed: Duration::ZERO,
        size: cfg.size,
        server_cpu_ns: None,
        rss_before: None,
        rss_after: None,
        rss_per_sub: None,
        rss_per_account: None,
        latency: None,
    };
    let mut sample_before = || -> Result<()> {
        before = procstat::sample_all(&pids)?;
        Ok(())
    };
    let mut keep_open = None;
    let mut after_sample: Option<Vec<ProcSample>> = None;
    match cfg.scenario {
        Scenario::ReqRep => {
            let r = reqrep::run(cfg, &mut sample_before)?;
            result.published = r.requests;
            result.delivered = r.requests;
            result.elapsed = r.elapsed;
            result.latency = r.latency;
        }
        Scenario::Subs => {
            let r = subs::run(cfg, &mut sample_before)?;
            result.published = cfg.subs as u64;
            result.delivered = cfg.subs as u64;
            result.elapsed = r.elapsed;
            keep_open = Some(vec![r.conn]);
        }
        Scenario::Handshake => {
            let r = handshake::run(cfg, &mut sample_before)?;
            result.published = r.connects;
            result.delivered = r.connects;
            result.elapsed = r.elapsed;
        }
        Scenario::Accounts => {
            let r = accounts::run(cfg, &mut sample_before)?;
            let subs = (cfg.accounts * cfg.subs_per_account) as u64;
            result.published = subs;
            result.delivered = subs;
            result.elapsed = r.elapsed;
            keep_open = Some(r.conns);
        }
        s if s.jetstream().is_some() => {
            let sample_after = || -> Result<()> {
                if !pids.is_empty() {
                    after_sample = Some(procstat::sample_all(&pids)?);
                }
                Ok(())
            };
            let r = js::run(cfg, &mut sample_before, sample_after)?;
            result.published = r.published;
            result.delivered = r.delivered;
            result.elapsed = r.elapsed;
        }
        _ => {
            let flow = cfg.flow().expect("a streaming scenario");
            let o = flow.run(sample_before)?;
            result.published = o.published;
            result.delivered = o.delivered;
            result.elapsed = o.elapsed;
        }
    }
    if !pids.is_empty() {
        let after = match after_sample {
            Some(a) => a,
            None => procstat::sample_all(&pids)?,
        };
        result.server_cpu_ns = Some(procstat::cpu_delta(&before, &after));
        result.rss_before = Some(before.iter().map(|s| s.rss_bytes).sum());
        result.rss_after = Some(after.iter().map(|s| s.rss_bytes).sum());
        let grown = result.rss_after.unwrap_or(0) as f64 - result.rss_before.unwrap_or(0) as f64;
        match cfg.scenario {
            Scenario::Subs => result.rss_per_sub = Some(grown / cfg.subs as f64),
            Scenario::Accounts => {
                result.rss_per_account = Some(grown / cfg.accounts as f64);
                result.rss_per_sub = Some(grown / (cfg.accounts * cfg.subs_per_account) as f64);
            }
            _ => {}
        }
    }
    drop(keep_open);
    Ok(result)
}
