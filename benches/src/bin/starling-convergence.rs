//! How fast a cluster forms: N embedded brokers in one process, each seeded with the previous
//! one only (a chain), started one after another. Measures, per round, the time from the first
//! start until every node sees every other as a peer (full mesh through gossip), and then how
//! long a new subscription on the last node takes to become visible on the first (interest
//! propagation by `RS+`, median of 5; a message then must cross). Prints medians over the
//! rounds.
//!
//! ```sh
//! cargo run --release -p starling-benches --bin starling-convergence -- [NODES] [ROUNDS]
//! ```
//!
//! Every wait is bounded (10 s); a round that does not converge fails the run.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use starling_server::{Cluster, Server};
use tokio::time::{timeout, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

const LIMIT: Duration = Duration::from_secs(10);
/// Subscriptions timed per round (the median is kept: the first may race the mesh settling).
const PROBES: usize = 5;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    if nodes < 2 {
        eprintln!("starling-convergence: need at least 2 nodes");
        std::process::exit(2);
    }
    let mut mesh = Vec::new();
    let mut interest = Vec::new();
    for round in 1..=rounds {
        match one_round(nodes).await {
            Ok((m, i)) => {
                eprintln!(
                    "round {round}/{rounds}: full mesh of {nodes} after {:.1} ms, interest across in {:.2} ms",
                    ms(m),
                    ms(i)
                );
                mesh.push(m);
                interest.push(i);
            }
            Err(e) => {
                eprintln!("starling-convergence: round {round}: {e}");
                std::process::exit(1);
            }
        }
    }
    mesh.sort();
    interest.sort();
    let (m, i) = (mesh[mesh.len() / 2], interest[interest.len() / 2]);
    println!("| nodes | rounds | full mesh from first start (median) | subscription visible across a route (median) |");
    println!("|---|---|---|---|");
    println!("| {nodes} | {rounds} | {:.1} ms | {:.2} ms |", ms(m), ms(i));
    println!(
        "{{\"bench\":\"convergence\",\"nodes\":{nodes},\"rounds\":{rounds},\"mesh_ms\":{:.3},\"interest_ms\":{:.3}}}",
        ms(m),
        ms(i)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts a chain of `nodes` brokers; returns (time to full mesh, time for interest to cross).
async fn one_round(nodes: usize) -> Result<(Duration, Duration), Error> {
    let start = Instant::now();
    let mut servers: Vec<Server> = Vec::with_capacity(nodes);
    for n in 0..nodes {
        let mut cluster = Cluster::new("convergence").listen("127.0.0.1:0");
        if let Some(prev) = servers.last() {
            let addr = prev.cluster_addr().ok_or("no cluster listener")?;
            cluster = cluster.seeds([format!("nats://{addr}")]);
        }
        let server = Server::builder()
            .server_name(format!("n{n}"))
            .cluster(cluster)
            .start()
            .await?;
        servers.push(server);
    }
    // Full mesh: every node knows every other. Polled every 200 µs (a bench, not a test).
    timeout(LIMIT, async {
        while !servers.iter().all(|s| s.peers().len() == nodes - 1) {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await
    .map_err(|_| "the mesh did not form within 10 s")?;
    let mesh = start.elapsed();

    // Interest propagation: subscribe on the last node; the first node learns of it by RS+
    // (polled, yielding between polls); then one message must actually cross.
    let first = servers[0].client();
    let last = servers[nodes - 1].client();
    let deadline = Instant::now() + LIMIT;
    let mut times = Vec::with_capacity(PROBES);
    let mut subs = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let subject = format!("convergence.probe.{i}");
        let t = Instant::now();
        subs.push(last.subscribe(&subject).await?);
        while !servers[0].has_interest(&subject) {
            if Instant::now() > deadline {
                return Err("interest did not cross the route within 10 s".into());
            }
            tokio::task::yield_now().await;
        }
        times.push(t.elapsed());
    }
    times.sort();
    let interest = times[PROBES / 2];
    let mut sub = subs.pop().ok_or("no probe subscription")?;
    first
        .publish(
            format!("convergence.probe.{}", PROBES - 1),
            Bytes::from_static(b"p"),
        )
        .await?;
    timeout(LIMIT, sub.next())
        .await
        .map_err(|_| "the probe did not cross the route within 10 s")?
        .ok_or("the subscription ended")?;
    for s in &servers {
        s.shutdown().await;
    }
    Ok((mesh, interest))
}
