//! A storage platform's node with the broker embedded in it: the node's services talk over the
//! in-process client, and schedulers, other nodes and tools reach the same subjects over TCP.
//!
//! | subject                      | pattern                     | who                          |
//! |------------------------------|-----------------------------|------------------------------|
//! | `volume.<event>.<id>`        | broadcast events            | a node publishes; anyone watches `volume.>` |
//! | `scheduler.place`            | queue group `placement`     | a scheduler asks, one node places a volume |
//! | `jobs.<node>.<kind>.<id>`    | queue group `workers`       | one of that node's workers runs each job |
//! | `node.<name>.status`         | request/reply               | health checks                |
//!
//! Several copies form a cluster, as a storage platform's nodes do: each listens for peers
//! (`--cluster-port`, default 6222; 0 picks a free port) and is given one or more `--seed`s;
//! the rest of the cluster is discovered. Each node prints peers joining and leaving.
//!
//! ```sh
//! cargo run --example storage_node -- --port 4222 --name node-1
//! cargo run --example storage_node -- --port 4223 --name node-2 \
//!     --cluster-port 6223 --seed nats://127.0.0.1:6222
//! nats sub 'volume.>'                              # watch every node's events
//! nats request scheduler.place 'size=10'           # one node places a 10 GiB volume
//! nats request jobs.node-1.snapshot.vol-1 ''       # run a job on one of node-1's workers
//! nats request node.node-2.status ''
//! ```
//!
//! It runs a short self-demo (placing volumes and running jobs as a scheduler would), then
//! keeps serving until Ctrl-C; `--demo-secs N` exits N seconds after the demo instead.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use starling::{Client, Cluster, Event, Message, RequestError, Server, StreamExt};
use tokio::task::JoinSet;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What this node can hold.
const CAPACITY_GIB: u64 = 100;

#[derive(Debug, PartialEq)]
struct Args {
    host: String,
    port: u16,
    name: String,
    cluster_port: u16,
    cluster_name: String,
    seeds: Vec<String>,
    workers: usize,
    demo_secs: Option<u64>,
}

const USAGE: &str = "usage: storage_node [--host HOST] [--port PORT] [--name NAME] \
                     [--cluster-port PORT] [--cluster-name NAME] [--seed URL]... \
                     [--workers N] [--demo-secs N]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        host: "127.0.0.1".into(),
        port: 4222,
        name: "node-1".into(),
        cluster_port: 6222,
        cluster_name: "storage".into(),
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
            "--cluster-port" => {
                out.cluster_port = value()?
                    .parse()
                    .map_err(|e| format!("--cluster-port: {e}"))?
            }
            "--cluster-name" => out.cluster_name = value()?,
            "--seed" => {
                let seed = value()?;
                if !is_route_url(&seed) {
                    return Err(format!(
                        "--seed {seed:?}: expected [nats://][user:pass@]host:port"
                    ));
                }
                out.seeds.push(seed)
            }
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
    if out.cluster_name.is_empty() || out.cluster_name.contains(char::is_whitespace) {
        return Err(format!(
            "--cluster-name {:?} must be a word without spaces",
            out.cluster_name
        ));
    }
    Ok(out)
}

/// Whether a seed looks like `[scheme://][user:pass@]host:port`.
fn is_route_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.trim_end_matches('/');
    matches!(rest.rsplit_once(':'), Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
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

    /// One job from `jobs.<node>.<kind>.<volume>`.
    async fn run_job(&self, worker: usize, subject: &str) -> String {
        let mut parts = subject.split('.').skip(2);
        let (Some(kind), Some(id)) = (parts.next(), parts.next()) else {
            return "error=expected jobs.<node>.<kind>.<volume>".into();
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

/// A node that is up: its broker, its state and its services.
struct Running {
    server: Server,
    node: Arc<Node>,
    services: JoinSet<()>,
    events_seen: Arc<AtomicUsize>,
}

impl Running {
    async fn stop(mut self) {
        println!("{}: shutting down", self.node.name);
        self.services.shutdown().await;
        self.server.shutdown().await;
    }
}

/// Starts the broker (joining the cluster through the seeds) and the node's services.
async fn start(args: &Args) -> Result<Running, Error> {
    let cluster = Cluster::new(args.cluster_name.clone())
        .listen(format!("{}:{}", args.host, args.cluster_port))
        .seeds(args.seeds.iter().cloned());
    let server = Server::builder()
        .listen(format!("{}:{}", args.host, args.port))
        .server_name(args.name.clone())
        .cluster(cluster)
        .start()
        .await?;
    let url = server.client_url().unwrap_or_default();
    println!("{}: broker up, NATS clients connect to {url}", args.name);
    println!(
        "{}: cluster {:?}, peers connect to {}{}",
        args.name,
        args.cluster_name,
        server
            .cluster_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        if args.seeds.is_empty() {
            String::new()
        } else {
            format!(", seeds {:?}", args.seeds)
        }
    );

    let node = Arc::new(Node {
        name: args.name.clone(),
        client: server.client(),
        volumes: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(1),
    });
    let mut services = JoinSet::new();

    // Peers joining and leaving the cluster (those that joined before this point are listed
    // from `peers()`, read after subscribing so none is missed).
    let mut events = server.events();
    for peer in server.peers() {
        println!("{}: peer {} is here", args.name, peer.server_name);
    }
    let watched = server.clone();
    services.spawn(async move {
        let me = watched.server_name().to_string();
        while let Some(event) = events.next().await {
            let (what, peer) = match event {
                Event::PeerJoined { server_name, .. } => ("joined", server_name),
                Event::PeerLeft { server_name, .. } => ("left", server_name),
                _ => continue,
            };
            let mut peers: Vec<String> =
                watched.peers().into_iter().map(|p| p.server_name).collect();
            peers.sort();
            println!("{me}: peer {peer} {what}; peers now {peers:?}");
        }
    });

    // Audit: everything that happens to volumes, on this node or anywhere in the cluster.
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

    // Placement requests from schedulers: a queue group, so in a cluster exactly one node
    // places each volume.
    let mut placements = node
        .client
        .queue_subscribe("scheduler.place", "placement")
        .await?;
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
    // own in-process connection, as separate processes would. Jobs name the node that holds
    // the volume.
    for worker in 1..=args.workers {
        let client = server.client();
        let mut jobs = client
            .queue_subscribe(format!("jobs.{}.>", node.name), "workers")
            .await?;
        let n = node.clone();
        services.spawn(async move {
            while let Some(msg) = jobs.next().await {
                let answer = n.run_job(worker, &msg.subject).await;
                reply(&client, &msg, answer).await;
            }
        });
    }
    println!(
        "{}: serving scheduler.place, node.{}.status, jobs.{}.> ({} workers); events on volume.>",
        args.name, args.name, args.name, args.workers
    );
    Ok(Running {
        server,
        node,
        services,
        events_seen,
    })
}

async fn run(args: Args) -> Result<Report, Error> {
    let running = start(&args).await?;
    let report = demo(&running.server.client(), &args.name).await?;
    println!(
        "demo: {} volumes placed, {} rejected, {} jobs done {:?}, {} events so far",
        report.placed,
        report.rejected,
        report.jobs_done,
        report.jobs_by_worker,
        running.events_seen.load(Ordering::Relaxed)
    );

    match args.demo_secs {
        Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
        None => {
            println!("{}: serving until Ctrl-C", args.name);
            tokio::signal::ctrl_c().await?;
        }
    }
    running.stop().await;
    Ok(report)
}

/// Acts as a scheduler: places volumes, runs jobs on them, asks for the node's status.
async fn demo(scheduler: &Client, name: &str) -> Result<Report, Error> {
    let mut report = Report::default();
    let timeout = Duration::from_secs(5);
    println!("demo: a scheduler places three volumes (in a cluster, on any node)");
    let mut volumes = Vec::new();
    for size in [10, 20, 500] {
        let answer = scheduler
            .request_with_timeout("scheduler.place", format!("size={size}"), timeout)
            .await?;
        println!(
            "  scheduler.place size={size} -> {}",
            String::from_utf8_lossy(&answer.payload)
        );
        match (
            field(&answer.payload, "node"),
            field(&answer.payload, "volume"),
        ) {
            (Some(node), Some(id)) => {
                report.placed += 1;
                volumes.push((node.to_string(), id.to_string()));
            }
            _ => report.rejected += 1,
        }
    }

    println!("demo: snapshot and scrub jobs go to the volume's node's workers, all at once");
    let jobs = volumes.iter().flat_map(|(node, id)| {
        ["snapshot", "scrub"].map(|kind| (node.clone(), format!("jobs.{node}.{kind}.{id}")))
    });
    let requests = jobs.map(|(node, subject)| async move {
        let answer = scheduler
            .request_with_timeout(subject.as_str(), "", timeout)
            .await;
        (node, subject, answer)
    });
    for (node, subject, answer) in futures::future::join_all(requests).await {
        let answer = answer?;
        println!(
            "  {subject} -> {}",
            String::from_utf8_lossy(&answer.payload)
        );
        if let Some(worker) = field(&answer.payload, "worker") {
            report.jobs_done += 1;
            *report
                .jobs_by_worker
                .entry(format!("{node}/worker-{worker}"))
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

    /// A node on free ports, seeded with `seeds`.
    fn test_args(name: &str, seeds: Vec<String>) -> Args {
        Args {
            host: "127.0.0.1".into(),
            port: 0,
            name: name.into(),
            cluster_port: 0,
            cluster_name: "storage-test".into(),
            seeds,
            workers: 3,
            demo_secs: Some(0),
        }
    }

    #[test]
    fn arguments() {
        let a = args(&[
            "--port",
            "0",
            "--name=n2",
            "--seed",
            "nats://10.0.0.1:6222",
            "--seed=nats-route://u:p@10.0.0.2:6222",
            "--cluster-port",
            "0",
            "--cluster-name",
            "blue",
            "--demo-secs",
            "3",
        ])
        .unwrap();
        assert_eq!(a.port, 0);
        assert_eq!(a.name, "n2");
        assert_eq!(
            a.seeds,
            ["nats://10.0.0.1:6222", "nats-route://u:p@10.0.0.2:6222"]
        );
        assert_eq!((a.cluster_port, a.cluster_name.as_str()), (0, "blue"));
        assert_eq!(a.demo_secs, Some(3));
        let d = args(&[]).unwrap();
        assert_eq!((d.port, d.cluster_port), (4222, 6222));
        assert_eq!(d.cluster_name, "storage");
        assert!(args(&["--workers", "0"]).is_err());
        assert!(args(&["--name", "a.b"]).is_err());
        assert!(args(&["--port", "99999"]).is_err());
        assert!(args(&["--cluster-port", "-1"]).is_err());
        assert!(args(&["--cluster-name", "a b"]).is_err());
        assert!(args(&["--seed", "nats://10.0.0.1"]).is_err());
        assert!(args(&["--seed", "nats://:6222"]).is_err());
        assert!(args(&["--seed"]).is_err());
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
        let report = run(test_args("test-node", Vec::new())).await.unwrap();
        assert_eq!((report.placed, report.rejected), (2, 1));
        assert_eq!(report.jobs_done, 4);
        assert_eq!(report.jobs_by_worker.values().sum::<usize>(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_form_a_cluster_and_serve_each_other() {
        let one = start(&test_args("n1", Vec::new())).await.unwrap();
        let seed = format!("nats://{}", one.server.cluster_addr().unwrap());
        let two = start(&test_args("n2", vec![seed])).await.unwrap();

        // n2 learns of n1's services through the route (bounded wait).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for subject in ["node.n1.status", "jobs.n1.scrub.vol-1"] {
            while !two.server.has_interest(subject) {
                assert!(tokio::time::Instant::now() < deadline, "no route to n1");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let answer = two
            .server
            .client()
            .request_with_timeout("node.n1.status", "", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(answer.payload.starts_with(b"node=n1 "), "{answer:?}");
        assert_eq!(one.server.peers()[0].server_name, "n2");
        assert_eq!(two.server.peers()[0].server_name, "n1");

        // A scheduler on n2 places volumes on either node and runs jobs where they live.
        let report = demo(&two.server.client(), "n2").await.unwrap();
        assert_eq!((report.placed, report.rejected), (2, 1));
        assert_eq!(report.jobs_done, 4, "{report:?}");

        two.stop().await;
        one.stop().await;
    }
}
