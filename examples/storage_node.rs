//! A storage platform's node with the broker embedded in it: the node's services talk over the
//! in-process client, and schedulers, other nodes and tools reach the same subjects over TCP.
//!
//! | subject                      | pattern                     | who                          |
//! |------------------------------|-----------------------------|------------------------------|
//! | `volume.<event>.<id>`        | broadcast events            | the node publishes; anyone watches `volume.>` |
//! | `scheduler.place`            | request/reply               | a scheduler asks, the node places a volume |
//! | `jobs.<kind>.<id>`           | queue group `workers`       | one of the node's workers runs each job |
//! | `node.<name>.status`         | request/reply               | health checks                |
//!
//! ```sh
//! cargo run --example storage_node -- --port 4222 --name node-1
//! nats sub 'volume.>'                              # watch the node's events
//! nats request scheduler.place 'size=10'           # place a 10 GiB volume
//! nats request jobs.snapshot.vol-1 ''              # run a job on one of the workers
//! nats request node.node-1.status ''
//! ```
//!
//! It runs a short self-demo (placing volumes and running jobs as a scheduler would), then
//! keeps serving until Ctrl-C; `--demo-secs N` exits N seconds after the demo instead.
//! `--seed URL` is accepted for the clustering work to come, and ignored with a note for now.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use starling::{Client, Message, RequestError, Server, StreamExt};
use tokio::task::JoinSet;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What this node can hold.
const CAPACITY_GIB: u64 = 100;

#[derive(Debug, PartialEq)]
struct Args {
    host: String,
    port: u16,
    name: String,
    seeds: Vec<String>,
    workers: usize,
    demo_secs: Option<u64>,
}

const USAGE: &str =
    "usage: storage_node [--host HOST] [--port PORT] [--name NAME] [--seed URL]... \
                     [--workers N] [--demo-secs N]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        host: "127.0.0.1".into(),
        port: 4222,
        name: "node-1".into(),
        seeds: Vec::new(),
        workers: 3,
        demo_secs: None,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--host" => out.host = value()?,
            "--port" | "-p" => out.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--name" | "-n" => out.name = value()?,
            "--seed" => out.seeds.push(value()?),
            "--workers" => out.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?,
            "--demo-secs" => {
                out.demo_secs = Some(value()?.parse().map_err(|e| format!("--demo-secs: {e}"))?)
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if out.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    if out.name.is_empty() || out.name.contains(['.', '*', '>', ' ']) {
        return Err(format!("--name {:?} cannot be used in a subject", out.name));
    }
    Ok(out)
}

#[tokio::main]
async fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("storage_node: {e}");
        std::process::exit(1);
    }
}

/// A volume this node holds.
#[derive(Clone, Debug)]
struct Volume {
    size_gib: u64,
    snapshots: u32,
}

/// The node's state, shared by its services.
struct Node {
    name: String,
    client: Client,
    volumes: Mutex<BTreeMap<String, Volume>>,
    next_id: AtomicU64,
}

impl Node {
    fn volumes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Volume>> {
        self.volumes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Broadcasts `volume.<event>.<id>`.
    async fn announce(&self, event: &str, id: &str, detail: String) {
        let _ = self
            .client
            .publish(
                format!("volume.{event}.{id}"),
                format!("node={} {detail}", self.name),
            )
            .await;
    }

    /// `scheduler.place`: `size=<GiB>` -> `node=<name> volume=<id>`, or `error=...`.
    async fn place(&self, request: &[u8]) -> String {
        let Some(size_gib) = field(request, "size").and_then(|s| s.parse::<u64>().ok()) else {
            return "error=bad request, expected size=<GiB>".into();
        };
        let placed = {
            let mut volumes = self.volumes();
            let used: u64 = volumes.values().map(|v| v.size_gib).sum();
            if used + size_gib > CAPACITY_GIB {
                Err(format!(
                    "error=insufficient capacity: {} GiB free",
                    CAPACITY_GIB - used
                ))
            } else {
                let id = format!("vol-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
                volumes.insert(
                    id.clone(),
                    Volume {
                        size_gib,
                        snapshots: 0,
                    },
                );
                Ok(id)
            }
        };
        match placed {
            Ok(id) => {
                self.announce("created", &id, format!("size={size_gib}"))
                    .await;
                format!("node={} volume={id}", self.name)
            }
            Err(e) => e,
        }
    }

    /// One job from `jobs.<kind>.<volume>`.
    async fn run_job(&self, worker: usize, subject: &str) -> String {
        let mut parts = subject.split('.').skip(1);
        let (Some(kind), Some(id)) = (parts.next(), parts.next()) else {
            return "error=expected jobs.<kind>.<volume>".into();
        };
        // Pretend the disk is busy for a moment.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let outcome = {
            let mut volumes = self.volumes();
            match (kind, volumes.get_mut(id)) {
                (_, None) => Err(format!("error=no volume {id} on {}", self.name)),
                ("snapshot", Some(v)) => {
                    v.snapshots += 1;
                    Ok(("snapshotted", format!("snapshot={}", v.snapshots)))
                }
                ("scrub", Some(v)) => Ok(("scrubbed", format!("checked={}GiB", v.size_gib))),
                ("delete", Some(_)) => {
                    volumes.remove(id);
                    Ok(("deleted", String::new()))
                }
                (other, Some(_)) => Err(format!("error=unknown job kind {other}")),
            }
        };
        match outcome {
            Ok((event, detail)) => {
                self.announce(event, id, format!("worker={worker} {detail}"))
                    .await;
                format!("done job={kind} volume={id} worker={worker}")
            }
            Err(e) => e,
        }
    }

    /// `node.<name>.status`.
    fn status(&self) -> String {
        let volumes = self.volumes();
        let used: u64 = volumes.values().map(|v| v.size_gib).sum();
        format!(
            "node={} volumes={} used={used}GiB capacity={CAPACITY_GIB}GiB",
            self.name,
            volumes.len()
        )
    }
}

/// `key=value` from a space-separated payload.
fn field<'a>(payload: &'a [u8], key: &str) -> Option<&'a str> {
    std::str::from_utf8(payload)
        .ok()?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

async fn reply(client: &Client, msg: &Message, answer: String) {
    if let Some(to) = &msg.reply {
        let _ = client.publish(to.as_str(), answer).await;
    }
}

/// What the self-demo did (the test checks it).
#[derive(Debug, Default)]
struct Report {
    placed: usize,
    rejected: usize,
    jobs_done: usize,
    jobs_by_worker: BTreeMap<String, usize>,
}

async fn run(args: Args) -> Result<Report, Error> {
    for seed in &args.seeds {
        println!(
            "note: --seed {seed} ignored: clustering is not available yet (it is the next step)"
        );
    }
    let server = Server::builder()
        .listen(format!("{}:{}", args.host, args.port))
        .server_name(args.name.clone())
        .start()
        .await?;
    let url = server.client_url().unwrap_or_default();
    println!("{}: broker up, NATS clients connect to {url}", args.name);

    let node = Arc::new(Node {
        name: args.name.clone(),
        client: server.client(),
        volumes: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(1),
    });
    let mut services = JoinSet::new();

    // Audit: everything that happens to volumes, on this node or (later) anywhere in the cluster.
    let events_seen = Arc::new(AtomicUsize::new(0));
    let mut audit = node.client.subscribe("volume.>").await?;
    let seen = events_seen.clone();
    services.spawn(async move {
        while let Some(msg) = audit.next().await {
            seen.fetch_add(1, Ordering::Relaxed);
            println!(
                "  [audit] {} {}",
                msg.subject,
                String::from_utf8_lossy(&msg.payload)
            );
        }
    });

    // Placement requests from schedulers.
    let mut placements = node.client.subscribe("scheduler.place").await?;
    let n = node.clone();
    services.spawn(async move {
        while let Some(msg) = placements.next().await {
            let answer = n.place(&msg.payload).await;
            reply(&n.client, &msg, answer).await;
        }
    });

    // Status requests.
    let mut status = node
        .client
        .subscribe(format!("node.{}.status", node.name))
        .await?;
    let n = node.clone();
    services.spawn(async move {
        while let Some(msg) = status.next().await {
            reply(&n.client, &msg, n.status()).await;
        }
    });

    // Workers: a queue group, so each job goes to exactly one of them. Each worker has its
    // own in-process connection, as separate processes would.
    for worker in 1..=args.workers {
        let client = server.client();
        let mut jobs = client.queue_subscribe("jobs.>", "workers").await?;
        let n = node.clone();
        services.spawn(async move {
            while let Some(msg) = jobs.next().await {
                let answer = n.run_job(worker, &msg.subject).await;
                reply(&client, &msg, answer).await;
            }
        });
    }
    println!(
        "{}: serving scheduler.place, node.{}.status, jobs.> ({} workers); events on volume.>",
        args.name, args.name, args.workers
    );

    let report = demo(&server.client(), &args.name).await?;
    println!(
        "demo: {} volumes placed, {} rejected, {} jobs done {:?}, {} events so far",
        report.placed,
        report.rejected,
        report.jobs_done,
        report.jobs_by_worker,
        events_seen.load(Ordering::Relaxed)
    );

    match args.demo_secs {
        Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
        None => {
            println!("{}: serving until Ctrl-C", args.name);
            tokio::signal::ctrl_c().await?;
        }
    }
    println!("{}: shutting down", args.name);
    services.shutdown().await;
    server.shutdown().await;
    Ok(report)
}

/// Acts as a scheduler: places volumes, runs jobs on them, asks for the node's status.
async fn demo(scheduler: &Client, name: &str) -> Result<Report, Error> {
    let mut report = Report::default();
    let timeout = Duration::from_secs(5);
    println!("demo: a scheduler places three volumes");
    let mut volumes = Vec::new();
    for size in [10, 20, 500] {
        let answer = scheduler
            .request_with_timeout("scheduler.place", format!("size={size}"), timeout)
            .await?;
        println!(
            "  scheduler.place size={size} -> {}",
            String::from_utf8_lossy(&answer.payload)
        );
        match field(&answer.payload, "volume") {
            Some(id) => {
                report.placed += 1;
                volumes.push(id.to_string());
            }
            None => report.rejected += 1,
        }
    }

    println!("demo: snapshot and scrub jobs go to the worker queue group, all at once");
    let jobs = volumes
        .iter()
        .flat_map(|id| [format!("jobs.snapshot.{id}"), format!("jobs.scrub.{id}")]);
    let requests = jobs.map(|subject| async move {
        let answer = scheduler
            .request_with_timeout(subject.as_str(), "", timeout)
            .await;
        (subject, answer)
    });
    for (subject, answer) in futures::future::join_all(requests).await {
        let answer = answer?;
        println!(
            "  {subject} -> {}",
            String::from_utf8_lossy(&answer.payload)
        );
        if let Some(worker) = field(&answer.payload, "worker") {
            report.jobs_done += 1;
            *report
                .jobs_by_worker
                .entry(format!("worker-{worker}"))
                .or_default() += 1;
        }
    }

    let status = scheduler
        .request_with_timeout(format!("node.{name}.status"), "", timeout)
        .await?;
    println!(
        "  node.{name}.status -> {}",
        String::from_utf8_lossy(&status.payload)
    );

    match scheduler.request("billing.charge", "vol-1").await {
        Err(RequestError::NoResponders) => {
            println!("  billing.charge -> no responders (no billing service here)")
        }
        other => println!("  billing.charge -> {other:?}"),
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        let a = args(&[
            "--port",
            "0",
            "--name=n2",
            "--seed",
            "nats://10.0.0.1:6222",
            "--demo-secs",
            "3",
        ])
        .unwrap();
        assert_eq!(a.port, 0);
        assert_eq!(a.name, "n2");
        assert_eq!(a.seeds, ["nats://10.0.0.1:6222"]);
        assert_eq!(a.demo_secs, Some(3));
        assert_eq!(args(&[]).unwrap().port, 4222);
        assert!(args(&["--workers", "0"]).is_err());
        assert!(args(&["--name", "a.b"]).is_err());
        assert!(args(&["--port", "99999"]).is_err());
        assert!(args(&["--what"]).is_err());
    }

    #[test]
    fn fields() {
        assert_eq!(field(b"node=n1 volume=vol-3", "volume"), Some("vol-3"));
        assert_eq!(field(b"size=10", "size"), Some("10"));
        assert_eq!(field(b"sizes=10", "size"), None);
        assert_eq!(field(b"\xff", "size"), None);
    }

    #[tokio::test]
    async fn the_demo_places_volumes_and_spreads_jobs() {
        let report = run(Args {
            host: "127.0.0.1".into(),
            port: 0,
            name: "test-node".into(),
            seeds: vec!["nats://127.0.0.1:6222".into()],
            workers: 3,
            demo_secs: Some(0),
        })
        .await
        .unwrap();
        assert_eq!((report.placed, report.rejected), (2, 1));
        assert_eq!(report.jobs_done, 4);
        assert_eq!(report.jobs_by_worker.values().sum::<usize>(), 4);
    }
}
