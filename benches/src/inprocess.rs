//! The in-process client against TCP loopback on the same broker, in one run: one embedded
//! Starling broker, the same scenarios once through `Client` (no socket, no codec) and once
//! through this tool's raw TCP client. Ratios are in-process over TCP (msgs/s), and TCP over
//! in-process for the request/reply round trip.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;

use starling_server::{Batch, Client, Server};

use crate::error::{BenchError, Result};
use crate::scenario::{self, Config, Scenario};

/// What `starling-bench inprocess` runs.
#[derive(Debug, Clone)]
pub struct InprocessConfig {
    /// Messages each pub→sub and fan-out round publishes.
    pub msgs: u64,
    /// Payload size.
    pub size: usize,
    /// Fan-out width.
    pub k: usize,
    /// Request/reply round trips per round.
    pub requests: u64,
    /// Rounds (medians are reported).
    pub rounds: usize,
    /// What the in-process messages' payloads are.
    pub payloads: Payloads,
}

/// The payloads of the in-process pub→sub and fan-out runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payloads {
    /// One allocation per message, made before the clock starts, freed by the subscriber (as
    /// an application's messages are): the default.
    Owned,
    /// One `Bytes` shared by every message: its reference count is written by the publisher
    /// and every subscriber, per message.
    Shared,
    /// `Bytes::from_static`: no allocation and no reference count, so what remains is the
    /// broker's own work per message.
    Static,
}

impl std::str::FromStr for Payloads {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "owned" => Ok(Self::Owned),
            "shared" => Ok(Self::Shared),
            "static" => Ok(Self::Static),
            _ => Err(format!("--payloads: owned, shared or static, not {s:?}")),
        }
    }
}

impl Default for InprocessConfig {
    fn default() -> Self {
        Self {
            msgs: 1_000_000,
            size: 16,
            k: 4,
            requests: 20_000,
            rounds: 3,
            payloads: Payloads::Owned,
        }
    }
}

/// One scenario's medians.
#[derive(Debug, Clone)]
pub struct Row {
    /// `pubsub`, `fanout`, `reqrep`.
    pub scenario: &'static str,
    /// In-process deliveries per second (`reqrep`: round trips per second).
    pub inprocess: f64,
    /// The same over TCP loopback.
    pub tcp: f64,
    /// `reqrep` only: the round trip in-process and over TCP, median, in nanoseconds.
    pub round_trip_ns: Option<(f64, f64)>,
}

/// Runs every scenario `cfg.rounds` times on one embedded broker, in-process and over TCP
/// alternately; `progress` gets a line per run.
pub fn run(cfg: &InprocessConfig, mut progress: impl FnMut(String)) -> Result<Vec<Row>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting a runtime", e))?;
    let server = rt
        .block_on(Server::builder().listen("127.0.0.1:0").start())
        .map_err(|e| BenchError::Usage(format!("embedded broker: {e}")))?;
    let url = server.client_url().expect("a client listener");
    let payload = Bytes::from(vec![b'x'; cfg.size]);
    let tcp_cfg = |scenario, k| Config {
        scenario,
        url: url.clone(),
        size: cfg.size,
        k,
        duration: Duration::from_secs(60),
        max_msgs: Some(if scenario == Scenario::ReqRep {
            cfg.requests
        } else {
            cfg.msgs
        }),
        // The broker runs in this process: its CPU is ours (not reported here).
        pid: Some(std::process::id()),
        ..Config::default()
    };
    let mut rows = Vec::new();
    for (name, k) in [("pubsub", 1), ("fanout", cfg.k)] {
        let (mut each, mut batch, mut bulk, mut tcp) = (vec![], vec![], vec![], vec![]);
        for round in 0..cfg.rounds {
            let run = |mode| {
                rt.block_on(pub_sub(
                    &server,
                    (cfg.size, cfg.payloads),
                    cfg.msgs,
                    k,
                    mode,
                ))
            };
            let e = run(Mode::Each)?;
            let b = run(Mode::Batch)?;
            let p = run(Mode::Payloads)?;
            let scenario = if k == 1 {
                Scenario::PubSub
            } else {
                Scenario::Fanout
            };
            let r = scenario::run(&tcp_cfg(scenario, k))?.msgs_per_sec();
            progress(format!(
                "{name} round {}: in-process {e:.0} msgs/s (publish_many: {b:.0}, \
                 next_payloads: {p:.0}), tcp {r:.0} msgs/s",
                round + 1,
            ));
            each.push(e);
            batch.push(b);
            bulk.push(p);
            tcp.push(r);
        }
        let tcp = median(tcp);
        let names = if k == 1 {
            [
                "pubsub",
                "pubsub (publish_many)",
                "pubsub (publish_many, next_payloads)",
            ]
        } else {
            [
                "fanout",
                "fanout (publish_many)",
                "fanout (publish_many, next_payloads)",
            ]
        };
        for (scenario, samples) in names.into_iter().zip([each, batch, bulk]) {
            rows.push(Row {
                scenario,
                inprocess: median(samples),
                tcp,
                round_trip_ns: None,
            });
        }
    }
    let (mut inproc, mut tcp, mut rtt_in, mut rtt_tcp) = (vec![], vec![], vec![], vec![]);
    for round in 0..cfg.rounds {
        let (rate, rtt) = rt.block_on(req_rep(&server, &payload, cfg.requests))?;
        inproc.push(rate);
        rtt_in.push(rtt);
        let r = scenario::run(&tcp_cfg(Scenario::ReqRep, 1))?;
        tcp.push(r.msgs_per_sec());
        let p50 = r.latency.as_ref().map_or(0.0, |l| l.p50);
        rtt_tcp.push(p50);
        progress(format!(
            "reqrep round {}: in-process {rtt:.0} ns, tcp {p50:.0} ns",
            round + 1
        ));
    }
    rows.push(Row {
        scenario: "reqrep",
        inprocess: median(inproc),
        tcp: median(tcp),
        round_trip_ns: Some((median(rtt_in), median(rtt_tcp))),
    });
    rt.block_on(server.shutdown());
    Ok(rows)
}

/// How the in-process side publishes and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `publish(..).await` per message, `next().await` per message: what a new user writes.
    Each,
    /// `publish_many` of `BATCH` messages, `next_batch` on the subscriber side.
    Batch,
    /// `publish_many` as `Batch`, `next_payloads` on the subscriber side (no `Message`).
    Payloads,
}

/// Messages per `publish_many` call (the most it hands over as one run).
const BATCH: usize = starling_server::PUBLISH_MANY_RUN;

/// One publisher task, `k` subscriber tasks, all on the runtime (as an application's tasks
/// are): deliveries per second from the first publish to the last delivery.
///
/// Each message has its own payload, made before the clock starts (as an application makes
/// each message; making them is not the broker's work). Every subscriber checks that message
/// `i` it reads is the publisher's payload `i` itself, not a copy: same address, same order.
async fn pub_sub(
    server: &Server,
    (size, kind): (usize, Payloads),
    msgs: u64,
    k: usize,
    mode: Mode,
) -> Result<f64> {
    static STATIC: [u8; 65536] = [b'x'; 65536];
    let shared = Bytes::from(vec![b'x'; size]);
    let payloads: Vec<Bytes> = (0..msgs)
        .map(|_| match kind {
            Payloads::Owned => Bytes::from(vec![b'x'; size]),
            Payloads::Shared => shared.clone(),
            Payloads::Static => Bytes::from_static(&STATIC[..size.min(STATIC.len())]),
        })
        .collect();
    let origins: Arc<Vec<usize>> = Arc::new(payloads.iter().map(|p| p.as_ptr() as usize).collect());
    let publisher = server.client();
    let mut readers = Vec::new();
    for _ in 0..k {
        let client = server.client();
        let mut sub = client
            .subscribe("bench.inprocess")
            .await
            .map_err(|e| BenchError::Usage(e.to_string()))?;
        let origins = origins.clone();
        readers.push(tokio::spawn(async move {
            let _client = client;
            let mut n = 0usize;
            let mut batch = Vec::with_capacity(BATCH);
            let mut payloads = Vec::new();
            let same = |p: &Bytes, n: usize| p.as_ptr() as usize == origins[n];
            while n < origins.len() {
                match mode {
                    Mode::Each => match sub.next().await {
                        Some(m) if same(&m.payload, n) => n += 1,
                        Some(_) => return Err("a payload was copied or reordered"),
                        None => return Err("the subscription ended"),
                    },
                    Mode::Batch => {
                        if !sub.next_batch(&mut batch).await {
                            return Err("the subscription ended");
                        }
                        for m in batch.drain(..) {
                            if !same(&m.payload, n) {
                                return Err("a payload was copied or reordered");
                            }
                            n += 1;
                        }
                    }
                    Mode::Payloads => match sub.next_payloads(&mut payloads).await {
                        Some(Batch::Payloads(_)) => {
                            for p in payloads.drain(..) {
                                if !same(&p, n) {
                                    return Err("a payload was copied or reordered");
                                }
                                n += 1;
                            }
                        }
                        Some(Batch::Message(_)) => return Err("a message with a reply"),
                        None => return Err("the subscription ended"),
                    },
                }
            }
            Ok(Instant::now())
        }));
    }
    let start = Instant::now();
    let publishing = tokio::spawn(async move {
        match mode {
            Mode::Each => {
                for payload in payloads {
                    publisher.publish("bench.inprocess", payload).await?;
                }
            }
            Mode::Batch | Mode::Payloads => {
                let mut payloads = payloads.into_iter();
                while payloads.len() > 0 {
                    publisher
                        .publish_many("bench.inprocess", payloads.by_ref().take(BATCH))
                        .await?;
                }
            }
        }
        Ok::<_, starling_server::ClientError>(())
    });
    publishing
        .await
        .map_err(|e| BenchError::Usage(e.to_string()))?
        .map_err(|e| BenchError::Usage(e.to_string()))?;
    let mut last = start;
    for r in readers {
        let end = r
            .await
            .map_err(|e| BenchError::Usage(e.to_string()))?
            .map_err(|e| BenchError::Usage(e.into()))?;
        last = last.max(end);
    }
    Ok((msgs * k as u64) as f64 / (last - start).as_secs_f64())
}

/// Sequential requests from a task to an in-process responder task: round trips per second,
/// and the median round trip in nanoseconds.
async fn req_rep(server: &Server, payload: &Bytes, requests: u64) -> Result<(f64, f64)> {
    let responder = server.client();
    let mut sub = responder
        .subscribe("bench.inprocess.req")
        .await
        .map_err(|e| BenchError::Usage(e.to_string()))?;
    let answering = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = &m.reply {
                let _ = responder.publish(reply.as_str(), m.payload.clone()).await;
            }
        }
    });
    let requester: Client = server.client();
    let payload = payload.clone();
    let asking = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(requests as usize);
        let start = Instant::now();
        for _ in 0..requests {
            let t = Instant::now();
            requester
                .request("bench.inprocess.req", payload.clone())
                .await?;
            samples.push(t.elapsed().as_nanos() as f64);
        }
        Ok::<_, starling_server::RequestError>((start.elapsed(), samples))
    });
    let (elapsed, samples) = asking
        .await
        .map_err(|e| BenchError::Usage(e.to_string()))?
        .map_err(|e| BenchError::Usage(e.to_string()))?;
    let rate = requests as f64 / elapsed.as_secs_f64();
    answering.abort();
    Ok((rate, median(samples)))
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The figures as a table, with the ratios the goals are stated in.
pub fn table(rows: &[Row]) -> String {
    let mut out =
        String::from("| scenario | in-process | TCP loopback | ratio |\n|---|---|---|---|\n");
    for r in rows {
        let rate = |x: f64| format!("{:.2} M/s", x / 1e6);
        out.push_str(&format!(
            "| {} | {} | {} | {:.2}× |\n",
            r.scenario,
            rate(r.inprocess),
            rate(r.tcp),
            r.inprocess / r.tcp.max(1.0)
        ));
        if let Some((i, t)) = r.round_trip_ns {
            out.push_str(&format!(
                "| reqrep round trip (median) | {:.1} µs | {:.1} µs | {:.2}× |\n",
                i / 1e3,
                t / 1e3,
                i / t.max(1.0)
            ));
        }
    }
    out
}
