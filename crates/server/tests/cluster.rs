//! Clusters of Starling brokers in one process on loopback ports: discovery from one seed,
//! interest propagation, one-hop delivery, cluster-wide queue groups, node loss and rejoin,
//! client failover.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use starling_server::{Cluster, Event, Server};

const CLUSTER: &str = "test";

/// A node with a client port and a cluster port, seeded with `seeds`.
async fn node(name: &str, seeds: &[String]) -> Server {
    common::clustered(Server::builder(), name, CLUSTER, seeds).await
}

fn seed(of: &Server) -> String {
    format!("nats-route://{}", of.cluster_addr().unwrap())
}

/// Waits (on events, bounded) until every server has a route to every other.
async fn wait_full_mesh(servers: &[&Server]) {
    let n = servers.len() - 1;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    for s in servers {
        let mut events = s.events();
        while s.peers().len() != n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // A join may land between the check and the wait: re-check at least every 50 ms.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), events.next()).await;
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} has {} peers, wants {n}",
                s.server_name(),
                s.peers().len()
            );
        }
    }
}

/// Waits until every server in `to` has seen all interest `from` had so far: a peer's RS+
/// lines arrive in order, so a barrier subscription made last proves the earlier ones arrived.
async fn sync_interest(from: &Server, to: &[&Server]) {
    let subject = format!("barrier.{}", from.client().new_inbox().replace('.', "_"));
    let _barrier = from.client().subscribe(&subject).await.unwrap();
    for s in to {
        wait_interest(s, &subject).await;
    }
}

/// Waits until `server` sees interest in `subject` (a peer's RS+ arrived).
async fn wait_interest(server: &Server, subject: &str) {
    tokio::time::timeout(common::WAIT, async {
        while !server.has_interest(subject) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} never saw interest in {subject}", server.server_name()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_seeded_three_nodes_form_a_full_mesh_and_route_messages() {
    let a = node("A", &[]).await;
    let b = node("B", &[seed(&a)]).await;
    let c = node("C", &[seed(&b)]).await;
    wait_full_mesh(&[&a, &b, &c]).await;
    let names: Vec<_> = a.peers().into_iter().map(|p| p.server_name).collect();
    assert!(
        names.contains(&"B".to_string()) && names.contains(&"C".to_string()),
        "{names:?}"
    );

    // A subscriber on C gets what is published on A (one hop) and on B.
    let on_c = c.client();
    let mut sub = on_c.subscribe("orders.*").await.unwrap();
    wait_interest(&a, "orders.x").await;
    wait_interest(&b, "orders.x").await;
    a.client().publish("orders.a", "from a").await.unwrap();
    b.client().publish("orders.b", "from b").await.unwrap();
    let mut got = [
        tokio::time::timeout(common::WAIT, sub.next())
            .await
            .unwrap()
            .unwrap(),
        tokio::time::timeout(common::WAIT, sub.next())
            .await
            .unwrap()
            .unwrap(),
    ];
    got.sort_by(|x, y| x.subject.cmp(&y.subject));
    assert_eq!(got[0].payload, "from a");
    assert_eq!(got[1].payload, "from b");
    // Nothing more: each message crossed exactly one route once.
    assert!(tokio::time::timeout(Duration::from_millis(100), sub.next())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_and_request_reply_crosses_routes() {
    let n1 = node("n1", &[]).await;
    let mut nodes = vec![n1];
    for i in 2..=5 {
        let prev = seed(nodes.last().unwrap());
        nodes.push(node(&format!("n{i}"), &[prev]).await);
    }
    let started = std::time::Instant::now();
    let refs: Vec<&Server> = nodes.iter().collect();
    wait_full_mesh(&refs).await;
    eprintln!("5 chain-seeded nodes converged in {:?}", started.elapsed());

    let svc = nodes[4].client();
    let mut reqs = svc.subscribe("svc.time").await.unwrap();
    tokio::spawn(async move {
        while let Some(m) = reqs.next().await {
            svc.publish(m.reply.unwrap().as_str(), "noon")
                .await
                .unwrap();
        }
    });
    for n in &nodes {
        wait_interest(n, "svc.time").await;
        let r = n.client().request("svc.time", "?").await.unwrap();
        assert_eq!(r.payload, "noon");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_across_nodes_delivers_each_message_exactly_once() {
    let a = node("A", &[]).await;
    let b = node("B", &[seed(&a)]).await;
    let c = node("C", &[seed(&a)]).await;
    wait_full_mesh(&[&a, &b, &c]).await;
    let mut members = Vec::new();
    for s in [&a, &b, &c] {
        let client = s.client();
        members.push((
            client.queue_subscribe("jobs.>", "workers").await.unwrap(),
            client,
        ));
    }
    // Plain subscribers on two nodes too: they must see every message exactly once.
    let mut plain_b = b.client().subscribe("jobs.>").await.unwrap();
    let mut plain_c = c.client().subscribe("jobs.*").await.unwrap();
    for s in [&a, &b, &c] {
        sync_interest(s, &[&a]).await;
    }
    // Queue weights reached A from both peers before publishing.
    let publisher = a.client();
    let total = 300;
    for i in 0..total {
        publisher
            .publish(format!("jobs.{i}"), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let mut seen: HashMap<Bytes, usize> = HashMap::new();
    let mut per_node = Vec::new();
    for (sub, _) in members.iter_mut() {
        let mut n = 0;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            *seen.entry(m.payload).or_default() += 1;
            n += 1;
        }
        per_node.push(n);
    }
    assert_eq!(
        seen.len(),
        total,
        "every message reached the group: {per_node:?}"
    );
    assert!(seen.values().all(|&c| c == 1), "no message twice");
    assert!(
        per_node.iter().all(|&n| n > 0),
        "spread across nodes: {per_node:?}"
    );
    for plain in [&mut plain_b, &mut plain_c] {
        let mut n = 0;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), plain.next()).await
        {
            n += 1;
        }
        assert_eq!(n, total, "plain subscriber saw each message once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_wildcards_on_several_nodes_get_no_duplicates() {
    let a = node("A", &[]).await;
    let b = node("B", &[seed(&a)]).await;
    wait_full_mesh(&[&a, &b]).await;
    let cb = b.client();
    let mut s1 = cb.subscribe("x.>").await.unwrap();
    let mut s2 = cb.subscribe("x.*").await.unwrap();
    let mut s3 = cb.subscribe("x.y").await.unwrap();
    let ca = a.client();
    let mut local = ca.subscribe("x.>").await.unwrap();
    sync_interest(&b, &[&a]).await;
    ca.publish("x.y", "once").await.unwrap();
    for s in [&mut s1, &mut s2, &mut s3, &mut local] {
        assert_eq!(
            tokio::time::timeout(common::WAIT, s.next())
                .await
                .unwrap()
                .unwrap()
                .payload,
            "once"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(100), s.next())
                .await
                .is_err(),
            "a duplicate arrived"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_goes_away_is_dropped_and_a_new_one_rejoins() {
    let a = node("A", &[]).await;
    let b = node("B", &[seed(&a)]).await;
    let c = node("C", &[seed(&a)]).await;
    wait_full_mesh(&[&a, &b, &c]).await;
    let mut events_a = a.events();
    let mut sub_c = c.client().subscribe("gone").await.unwrap();
    wait_interest(&a, "gone").await;
    c.shutdown().await;
    drop(sub_c.next().await); // stream ends
                              // A and B both drop C, and its interest.
    loop {
        match tokio::time::timeout(common::WAIT, events_a.next())
            .await
            .unwrap()
            .unwrap()
        {
            Event::PeerLeft { server_name, .. } if server_name == "C" => break,
            _ => {}
        }
    }
    wait_full_mesh(&[&a, &b]).await;
    assert!(b.peers().iter().all(|p| p.server_name != "C"));
    assert!(!a.has_interest("gone"));

    let d = node("D", &[seed(&b)]).await;
    wait_full_mesh(&[&a, &b, &d]).await;
    let mut sub_d = d.client().subscribe("back").await.unwrap();
    wait_interest(&a, "back").await;
    a.client().publish("back", "welcome").await.unwrap();
    assert_eq!(
        tokio::time::timeout(common::WAIT, sub_d.next())
            .await
            .unwrap()
            .unwrap()
            .payload,
        "welcome"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_work_without_any_client_listener() {
    let a = Server::builder()
        .cluster(Cluster::new(CLUSTER).listen("127.0.0.1:0"))
        .start()
        .await
        .unwrap();
    let b = Server::builder()
        .cluster(
            Cluster::new(CLUSTER)
                .listen("127.0.0.1:0")
                .seeds([seed(&a)]),
        )
        .start()
        .await
        .unwrap();
    assert!(a.client_addr().is_none() && b.client_addr().is_none());
    wait_full_mesh(&[&a, &b]).await;
    let mut sub = b.client().subscribe("embedded").await.unwrap();
    wait_interest(&a, "embedded").await;
    a.client()
        .publish("embedded", "no sockets needed")
        .await
        .unwrap();
    assert_eq!(sub.next().await.unwrap().payload, "no sockets needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_name_mismatch_is_refused() {
    let a = node("A", &[]).await;
    let other = Server::builder()
        .cluster(
            Cluster::new("other")
                .listen("127.0.0.1:0")
                .seeds([seed(&a)]),
        )
        .start()
        .await
        .unwrap();
    // A raw route CONNECT with the wrong name gets nats-server's error.
    let mut raw = common::Raw::connect(a.cluster_addr().unwrap()).await;
    assert!(raw.line().await.unwrap().starts_with("INFO "));
    raw.send("CONNECT {\"name\":\"NXXX\",\"cluster\":\"other\",\"headers\":true}\r\n")
        .await;
    assert_eq!(
        raw.until_eof().await,
        vec![r#"-ERR 'Rejecting connection, cluster name "other" does not match "test"'"#]
    );
    assert!(a.peers().is_empty() && other.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_learn_cluster_urls_and_fail_over() {
    let a = node("A", &[]).await;
    let b = node("B", &[seed(&a)]).await;
    wait_full_mesh(&[&a, &b]).await;
    // A raw client of B sees both client URLs in INFO, its own first.
    let (_, info) = common::Raw::connect_info(b.client_addr().unwrap()).await;
    let b_url = b.client_addr().unwrap().to_string();
    let a_url = a.client_addr().unwrap().to_string();
    assert!(
        info.contains(&format!(r#""connect_urls":["{b_url}","{a_url}"]"#)),
        "{info}"
    );

    // async-nats connected to B only; when B goes away it reconnects to A (from connect_urls).
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(b.client_url().unwrap())
        .await
        .unwrap();
    let mut sub = client.subscribe("ticks").await.unwrap();
    client.flush().await.unwrap();
    wait_interest(&a, "ticks").await;
    a.client().publish("ticks", "1").await.unwrap();
    assert_eq!(
        tokio::time::timeout(common::WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
            .payload,
        "1"
    );

    b.shutdown().await;
    // A drops B (and B's interest); after the reconnect the subscription is re-established
    // on A by the client itself.
    let mut events = a.events();
    while !a.peers().is_empty() {
        let _ = tokio::time::timeout(Duration::from_millis(50), events.next()).await;
    }
    wait_interest(&a, "ticks").await;
    a.client().publish("ticks", "2").await.unwrap();
    assert_eq!(
        tokio::time::timeout(common::WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
            .payload,
        "2"
    );
}

/// An embedder's own membership source, polled periodically: B finds A through it, with no
/// seeds configured at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_discovery_source_finds_peers() {
    use std::sync::{Arc, Mutex};
    struct Members(Arc<Mutex<Vec<String>>>);
    impl starling_server::Discovery for Members {
        fn peers(
            &self,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send + '_>> {
            let list = self.0.lock().unwrap().clone();
            Box::pin(async move { list })
        }
    }
    let a = node("A", &[]).await;
    let members = Arc::new(Mutex::new(Vec::new()));
    let b = Server::builder()
        .server_name("B")
        .cluster(
            Cluster::new(CLUSTER)
                .listen("127.0.0.1:0")
                .discovery(Members(members.clone()))
                .discovery_interval(Duration::from_millis(50)),
        )
        .start()
        .await
        .unwrap();
    // The membership service learns about A only now; B picks it up on its next poll.
    members
        .lock()
        .unwrap()
        .push(a.cluster_addr().unwrap().to_string());
    wait_full_mesh(&[&a, &b]).await;
    assert_eq!(b.peers()[0].server_name, "A");
    assert!(b.peers()[0].solicited);
}

/// A seed given as a DNS name is resolved (and re-resolved on every poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_may_be_a_dns_name() {
    let a = node("A", &[]).await;
    let port = a.cluster_addr().unwrap().port();
    let b = node("B", &[format!("nats-route://localhost:{port}")]).await;
    wait_full_mesh(&[&a, &b]).await;
}

/// A new route is sent the whole interest of a node, however large: in chunks paced by the
/// route's writer, so that a set far bigger than max_pending neither overflows the route (it
/// would be cut off as a slow consumer) nor loses interest. 20,000 subjects are ~600 KB of
/// `RS+` lines against a 256 KiB max_pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_interest_set_reaches_a_new_route_in_chunks() {
    const SUBJECTS: usize = 20_000;
    let small = || {
        Server::builder()
            .no_system_account() // count only the interest made here
            .max_pending(256 * 1024)
            .max_payload(64 * 1024)
    };
    let a = common::clustered(small(), "A", CLUSTER, &[]).await;
    let client = a.client();
    let mut subs = Vec::with_capacity(SUBJECTS);
    for i in 0..SUBJECTS {
        subs.push(
            client
                .subscribe(format!("interest.{i:05}.x"))
                .await
                .unwrap(),
        );
    }
    let b = common::clustered(small(), "B", CLUSTER, &[seed(&a)]).await;
    wait_full_mesh(&[&a, &b]).await;
    // A change made now is held back until the snapshot is out: seeing it proves the rest.
    sync_interest(&a, &[&b]).await;
    for i in (0..SUBJECTS).step_by(997) {
        assert!(b.has_interest(&format!("interest.{i:05}.x")), "subject {i}");
    }
    // The snapshot (and the barrier, unless its client already went).
    let remote = b.stats().route_stats[0].subscriptions;
    assert!((SUBJECTS..=SUBJECTS + 1).contains(&remote), "{remote}");
    assert_eq!(a.stats().slow_consumers, 0);
    assert_eq!(b.stats().slow_consumers, 0);
    assert_eq!(a.peers().len(), 1, "the route stayed up");
}
