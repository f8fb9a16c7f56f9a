//! Three brokers embedded in one process form a cluster on loopback ports, each given a single
//! seed: B seeds A, C seeds B. Gossip completes the mesh (A and C find each other through B),
//! and the example prints it forming from each node's events and `peers()`. Then a message
//! published on A reaches a subscriber on C, a queue group with one member on each node shares
//! the work (each item handled exactly once), and the nodes leave one by one.
//!
//! ```sh
//! cargo run --example cluster
//! ```
//!
//! It ends by itself within seconds; every wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::FutureExt;
use starling::{Cluster, Event, Server, StreamExt};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long any one step may take before the example gives up.
const STEP: Duration = Duration::from_secs(10);
/// Work items published to the queue group.
const ITEMS: usize = 30;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("cluster: {e}");
        std::process::exit(1);
    }
}

/// What happened (the test checks it).
#[derive(Debug, Default)]
struct Report {
    /// Peers each node had once the mesh formed.
    peers: BTreeMap<String, Vec<String>>,
    /// The payload C's subscriber got from A.
    greeting: String,
    /// Work items handled, per node.
    handled: BTreeMap<String, usize>,
}

/// Starts a node: clients on a free loopback port, peers on another, one seed (or none).
async fn start_node(name: &str, seed: Option<&Server>) -> Result<Server, Error> {
    let mut cluster = Cluster::new("demo").listen("127.0.0.1:0");
    if let Some(seed) = seed {
        let addr = seed
            .cluster_addr()
            .ok_or("the seed has no cluster listener")?;
        cluster = cluster.seeds([format!("nats://{addr}")]);
    }
    let server = Server::builder()
        .server_name(name)
        .listen("127.0.0.1:0")
        .cluster(cluster)
        .start()
        .await?;
    println!(
        "{name}: clients on {}, peers on {}{}",
        server.client_url().unwrap_or_default(),
        server
            .cluster_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        match seed {
            Some(s) => format!(", seeded with {}", s.server_name()),
            None => String::new(),
        }
    );
    Ok(server)
}

/// The names of a node's peers, sorted.
fn peer_names(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = server.peers().into_iter().map(|p| p.server_name).collect();
    names.sort();
    names
}

/// Every node's events in one stream, printed as they come, and each node's peers as its
/// events tell them.
#[derive(Default)]
struct Watch {
    events: SelectAll<BoxStream<'static, (String, Event)>>,
    peers: BTreeMap<String, BTreeSet<String>>,
}

impl Watch {
    /// Starts watching a node. Its peers so far come from `peers()`, read after subscribing,
    /// so a peer that joined just before is not missed.
    fn add(&mut self, server: &Server) {
        let name = server.server_name().to_string();
        let tag = name.clone();
        self.events
            .push(server.events().map(move |e| (tag.clone(), e)).boxed());
        let known = self.peers.entry(name.clone()).or_default();
        for peer in server.peers() {
            println!("  [{name}] {} joined", peer.server_name);
            known.insert(peer.server_name);
        }
    }

    fn print(&mut self, (node, event): (String, Event)) {
        let known = self.peers.entry(node.clone()).or_default();
        match event {
            Event::PeerJoined { server_name, .. } => {
                known.insert(server_name.clone());
                println!("  [{node}] {server_name} joined, peers {known:?}");
            }
            Event::PeerLeft { server_name, .. } => {
                known.remove(&server_name);
                println!("  [{node}] {server_name} left, peers {known:?}");
            }
            Event::Shutdown => println!("  [{node}] stopped"),
            _ => {}
        }
    }

    /// Prints events until `done` holds for the peers they tell of (bounded by [`STEP`]),
    /// then prints those already waiting.
    async fn until(
        &mut self,
        what: &str,
        done: impl Fn(&BTreeMap<String, BTreeSet<String>>) -> bool,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + STEP;
        while !done(&self.peers) {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.events.next()).await {
                Ok(Some(event)) => self.print(event),
                Ok(None) | Err(_) => {
                    return Err(format!("gave up waiting for {what}: {:?}", self.peers).into())
                }
            }
        }
        while let Some(Some(event)) = self.events.next().now_or_never() {
            self.print(event);
        }
        Ok(())
    }
}

/// Whether each of `nodes` has exactly the others of `nodes` as peers.
fn meshed(peers: &BTreeMap<String, BTreeSet<String>>, nodes: &[&str]) -> bool {
    nodes.iter().all(|n| {
        peers.get(*n).is_some_and(|p| {
            p.len() == nodes.len() - 1 && nodes.iter().all(|o| o == n || p.contains(*o))
        })
    })
}

/// Waits (bounded) until `server` knows of a subscriber to `subject`, here or on a peer.
async fn wait_interest(server: &Server, subject: &str) -> Result<(), Error> {
    let deadline = Instant::now() + STEP;
    while !server.has_interest(subject) {
        if Instant::now() > deadline {
            return Err(format!("{} never saw interest in {subject}", server.server_name()).into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Waits until `to` has seen every subscription `from` made so far: a node's interest reaches
/// a peer in order, so a fresh subscription made last proves the earlier ones arrived.
async fn sync_interest(from: &Server, to: &Server) -> Result<(), Error> {
    let client = from.client();
    let subject = format!("barrier.{}", from.server_name());
    let _barrier = client.subscribe(subject.as_str()).await?;
    wait_interest(to, &subject).await
}

async fn run() -> Result<Report, Error> {
    let mut report = Report::default();
    let mut watch = Watch::default();

    println!("starting three nodes, each seeded with the one before");
    let a = start_node("A", None).await?;
    watch.add(&a);
    let b = start_node("B", Some(&a)).await?;
    watch.add(&b);
    let c = start_node("C", Some(&b)).await?;
    watch.add(&c);
    watch
        .until("the full mesh", |p| meshed(p, &["A", "B", "C"]))
        .await?;

    let nodes = [&a, &b, &c];
    println!("full mesh:");
    for node in nodes {
        for peer in node.peers() {
            println!(
                "  {} -> {} at {} ({})",
                node.server_name(),
                peer.server_name,
                peer.cluster_addr,
                if peer.solicited {
                    "dialled"
                } else {
                    "accepted"
                }
            );
        }
        report
            .peers
            .insert(node.server_name().to_string(), peer_names(node));
    }

    // Publish on A, subscribe on C: one hop over the A-C route that gossip created.
    let on_c = c.client();
    let mut greetings = on_c.subscribe("greetings.>").await?;
    wait_interest(&a, "greetings.hello").await?;
    a.client()
        .publish("greetings.hello", "hello from A")
        .await?;
    let msg = timeout(STEP, greetings.next())
        .await?
        .ok_or("C's subscription ended")?;
    report.greeting = String::from_utf8_lossy(&msg.payload).into_owned();
    println!(
        "C received {:?} on {} (published on A)",
        report.greeting, msg.subject
    );

    // A queue group with a member on every node: each item goes to exactly one of them, and
    // the publisher's node picks among local members and peers weighted by their members.
    let handled = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let mut workers = JoinSet::new();
    for node in nodes {
        let client = node.client();
        let mut jobs = client.queue_subscribe("work.>", "workers").await?;
        let name = node.server_name().to_string();
        let handled = handled.clone();
        workers.spawn(async move {
            while let Some(job) = jobs.next().await {
                *handled.lock().await.entry(name.clone()).or_default() += 1;
                if let Some(reply) = job.reply {
                    let _ = client.publish(reply.as_str(), name.clone()).await;
                }
            }
        });
    }
    sync_interest(&b, &a).await?;
    sync_interest(&c, &a).await?;
    let publisher = a.client();
    for i in 0..ITEMS {
        publisher
            .request_with_timeout(format!("work.item.{i}"), "", STEP)
            .await?;
    }
    report.handled = handled.lock().await.clone();
    println!(
        "{ITEMS} work items published on A, handled per node: {:?}",
        report.handled
    );

    println!("nodes leave one by one");
    c.shutdown().await;
    watch
        .until("C to leave", |p| meshed(p, &["A", "B"]))
        .await?;
    b.shutdown().await;
    watch
        .until("B to leave", |p| p.get("A").is_some_and(BTreeSet::is_empty))
        .await?;
    a.shutdown().await;
    watch.until("A to stop", |_| true).await?;
    workers.shutdown().await;
    drop(on_c);
    println!("bye");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_form_a_mesh_and_share_work() {
        let report = run().await.unwrap();
        assert_eq!(report.peers["A"], ["B", "C"]);
        assert_eq!(report.peers["B"], ["A", "C"]);
        assert_eq!(report.peers["C"], ["A", "B"]);
        assert_eq!(report.greeting, "hello from A");
        assert_eq!(report.handled.values().sum::<usize>(), ITEMS);
        // Random picks over three nodes: all thirty on one node would be a broken spread.
        assert!(report.handled.len() > 1, "{:?}", report.handled);
    }
}
