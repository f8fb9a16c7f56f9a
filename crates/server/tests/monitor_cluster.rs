//! The route parts of monitoring, with two clustered Starling nodes: `/routez` (with and
//! without subscription lists), the cluster fields of `/varz`, the per-route `/metrics`
//! families and `server.stats().route_stats`, checked against the traffic the test sent
//! across the route; and a differential test of the `/routez` and `/varz` key sets against a
//! cluster of two reference nats-servers.
#![cfg(feature = "monitor")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{http_get, key_paths, keys_in_order, NatsServer, Raw, WAIT};
use futures::StreamExt;
use serde_json::Value;
use starling_server::{Server, ServerBuilder};

const CLUSTER: &str = "mon";

/// A clustered node with client, cluster and monitoring ports chosen by the system.
async fn node_with(builder: ServerBuilder, name: &str, seeds: &[String]) -> (Server, SocketAddr) {
    let server = common::clustered(builder.monitor("127.0.0.1:0"), name, CLUSTER, seeds).await;
    let mon = server.monitor_addr().expect("monitor bound");
    (server, mon)
}

/// Two nodes, B seeded with A, once their route is up.
/// Two nodes; without system accounts (`system: false`) figures are exact, with no `$SYS`
/// interest or traffic of the servers' own.
async fn pair(system: bool) -> ((Server, SocketAddr), (Server, SocketAddr)) {
    let builder = || {
        let b = Server::builder();
        if system {
            b
        } else {
            b.no_system_account()
        }
    };
    let a = node_with(builder(), "A", &[]).await;
    let seed = format!("nats-route://{}", a.0.cluster_addr().unwrap());
    let b = node_with(builder(), "B", &[seed]).await;
    wait_for(|| a.0.peers().len() == 1 && b.0.peers().len() == 1).await;
    (a, b)
}

/// Polls (bounded) until `cond` holds.
async fn wait_for(mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < WAIT, "condition never held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `GET path` expecting 200 JSON.
async fn json(mon: SocketAddr, path: &str) -> Value {
    let reply = http_get(mon, path).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.json()
}

/// Polls `/routez?subs=1` (bounded) until the one route lists every subject in `subjects`:
/// the peer's interest has arrived. Works the same on Starling and nats-server.
async fn wait_route_interest(mon: SocketAddr, subjects: &[&str]) {
    let t = Instant::now();
    loop {
        let v = json(mon, "/routez?subs=1").await;
        let listed: Vec<&str> = v["routes"][0]["subscriptions_list"]
            .as_array()
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if subjects.iter().all(|s| listed.contains(s)) {
            return;
        }
        assert!(t.elapsed() < WAIT, "interest never listed: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, remote_id: &str) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("remote_id") == Some(remote_id))
        .unwrap_or_else(|| panic!("{name}{{remote_id={remote_id}}} missing"));
    match s.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
        _ => panic!("{name}: unexpected type"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routez_varz_metrics_and_stats_report_the_route() {
    let ((a, mon_a), (b, mon_b)) = pair(false).await;
    let (a_id, b_id) = (a.server_id().to_string(), b.server_id().to_string());

    // Interest on A (a plain and a queue subscription), traffic published on B.
    let on_a = a.client();
    let mut sub = on_a.subscribe("r.>").await.unwrap();
    let _worker = on_a.queue_subscribe("w.job", "workers").await.unwrap();
    wait_for(|| b.has_interest("r.x") && b.has_interest("w.job")).await;
    let on_b = b.client();
    for _ in 0..5 {
        on_b.publish("r.x", "abcd").await.unwrap();
    }
    for _ in 0..5 {
        tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("routed message")
            .expect("subscription open");
    }

    // B dialled A (its seed); A accepted.
    let v = json(mon_b, "/routez").await;
    assert_eq!(v["server_id"], b_id.as_str());
    assert_eq!(v["num_routes"], 1);
    let r = &v["routes"][0];
    assert_eq!(r["remote_id"], a_id.as_str());
    assert_eq!(r["did_solicit"], true);
    assert_eq!(r["is_configured"], true);
    assert_eq!(r["ip"], "127.0.0.1");
    assert_eq!(r["port"], a.cluster_addr().unwrap().port());
    assert_eq!((&r["out_msgs"], &r["out_bytes"]), (&5.into(), &20.into()));
    assert_eq!(r["subscriptions"], 2, "A's r.> and w.job workers");
    assert!(r["pending_size"].is_u64());
    assert!(r.get("subscriptions_list").is_none(), "only with subs=1");
    assert!(r.get("remote_name").is_none(), "2.9.10 has no remote_name");

    let v = json(mon_a, "/routez").await;
    let r = &v["routes"][0];
    assert_eq!(v["num_routes"], 1);
    assert_eq!(r["remote_id"], b_id.as_str());
    assert_eq!(r["did_solicit"], false);
    assert_eq!(r["is_configured"], false);
    assert_eq!((&r["in_msgs"], &r["in_bytes"]), (&5.into(), &20.into()));
    assert_ne!(
        r["port"],
        b.cluster_addr().unwrap().port(),
        "an accepted route shows the peer's ephemeral port"
    );
    assert_eq!(r["rid"].as_u64().unwrap(), a.stats().route_stats[0].rid);

    // Subscription lists: subjects, or nats-server's route sub details.
    let v = json(mon_b, "/routez?subs=1").await;
    let mut list: Vec<&str> = v["routes"][0]["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    list.sort_unstable();
    assert_eq!(list, ["r.>", "w.job"]);
    let v = json(mon_b, "/routez?subs=detail").await;
    let rid = v["routes"][0]["rid"].clone();
    let detail = &v["routes"][0]["subscriptions_list_detail"];
    assert_eq!(
        *detail,
        serde_json::json!([
            {"subject": "r.>", "sid": "$G r.>", "msgs": 0, "cid": rid},
            {"subject": "w.job", "qgroup": "workers", "sid": "$G w.job workers", "msgs": 0, "cid": rid},
        ])
    );
    assert_eq!(http_get(mon_b, "/routez?subs=nope").await.status, 400);

    // Nothing stays pending on an idle route (bounded wait: a PONG may be on its way out).
    let t = Instant::now();
    while json(mon_b, "/routez").await["routes"][0]["pending_size"] != 0 {
        assert!(t.elapsed() < WAIT, "output stays pending on an idle route");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // RTT: the first route PING goes out after a second, as nats-server's does.
    let t = Instant::now();
    while json(mon_b, "/routez").await["routes"][0]["rtt"] == "0s" {
        assert!(t.elapsed() < WAIT, "the route RTT was never measured");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!b.stats().route_stats[0].rtt.is_zero());

    // /varz: the cluster block, route counts, the cluster's client URLs.
    let v = json(mon_b, "/varz").await;
    let cluster = &v["cluster"];
    assert_eq!(cluster["name"], CLUSTER);
    assert_eq!(cluster["addr"], "127.0.0.1");
    assert_eq!(cluster["cluster_port"], b.cluster_addr().unwrap().port());
    assert_eq!(cluster["auth_timeout"], 2);
    assert_eq!(cluster["tls_timeout"], 2);
    assert_eq!(
        cluster["urls"],
        serde_json::json!([a.cluster_addr().unwrap().to_string()])
    );
    assert_eq!((&v["routes"], &v["remotes"]), (&1.into(), &1.into()));
    let urls: Vec<&str> = v["connect_urls"]
        .as_array()
        .expect("connect_urls")
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    let (ca, cb) = (
        a.client_addr().unwrap().to_string(),
        b.client_addr().unwrap().to_string(),
    );
    assert_eq!(urls, [cb.as_str(), ca.as_str()], "own URL first");
    let body = http_get(mon_b, "/varz").await.body;
    let at = body.find("\"cluster\": {").unwrap();
    assert_eq!(
        keys_in_order(&body[at..], 4),
        [
            "name",
            "addr",
            "cluster_port",
            "auth_timeout",
            "urls",
            "tls_timeout"
        ]
    );
    let v = json(mon_a, "/varz").await;
    assert!(v["cluster"].get("urls").is_none(), "A has no seeds");
    assert_eq!(v["routes"], 1);
    // As nats-server counts: what came over the route is part of A's in_msgs.
    assert_eq!((&v["in_msgs"], &v["in_bytes"]), (&5.into(), &20.into()));
    assert!(v["out_msgs"].as_u64().unwrap() >= 5);

    // /metrics: per-route families labelled by the peer.
    let reply = http_get(mon_a, "/metrics").await;
    let lines = reply.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    let route = |name: &str| value(&scrape, name, &b_id);
    assert_eq!(route("starling_route_in_msgs_total"), 5.0);
    assert_eq!(route("starling_route_in_bytes_total"), 20.0);
    assert_eq!(route("starling_route_pending_bytes"), 0.0);
    assert_eq!(
        route("starling_route_subscriptions"),
        0.0,
        "B has no interest"
    );
    assert!(route("starling_route_rtt_seconds") >= 0.0);
    let in_msgs = scrape
        .samples
        .iter()
        .find(|s| s.metric == "starling_route_in_msgs_total")
        .unwrap();
    assert_eq!(in_msgs.labels.get("remote_name"), Some("B"));
    assert!(matches!(in_msgs.value, prometheus_parse::Value::Counter(_)));
    assert!(scrape.samples.iter().any(|s| s.metric == "starling_routes"
        && matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0)));
    let reply = http_get(mon_b, "/metrics").await;
    let lines = reply.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    assert_eq!(value(&scrape, "starling_route_out_msgs_total", &a_id), 5.0);
    assert_eq!(
        value(&scrape, "starling_route_out_bytes_total", &a_id),
        20.0
    );
    assert_eq!(value(&scrape, "starling_route_subscriptions", &a_id), 2.0);

    // The typed snapshot.
    let stats = b.stats();
    assert_eq!(stats.routes, 1);
    let r = &stats.route_stats[0];
    assert_eq!(
        (r.remote_id.as_str(), r.remote_name.as_str()),
        (a_id.as_str(), "A")
    );
    assert!(r.did_solicit && r.is_configured);
    assert_eq!(r.addr, a.cluster_addr());
    assert_eq!((r.out_msgs, r.out_bytes, r.subscriptions), (5, 20, 2));
    assert!(r.start <= r.last_activity);
    let r = &a.stats().route_stats[0];
    assert_eq!((r.in_msgs, r.in_bytes), (5, 20));
    assert!(!r.did_solicit && !r.is_configured);

    // A route that goes away leaves the lists; what it carried stays in the totals.
    let before = b.stats().out_msgs;
    a.shutdown().await;
    wait_for(|| b.peers().is_empty()).await;
    let v = json(mon_b, "/routez").await;
    assert_eq!(
        (&v["num_routes"], &v["routes"]),
        (&0.into(), &serde_json::json!([]))
    );
    assert!(b.stats().out_msgs >= before, "out_msgs never goes back");
    assert_eq!(json(mon_b, "/varz").await["routes"], 0);
    b.shutdown().await;
}

/// A loopback port nothing listens on right now (for the reference's `--cluster` URL).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The same scenario on two clustered Starling nodes and on two clustered nats-server
/// 2.9.10s: the key sets of `/routez` (with a route present, with and without subscription
/// lists) and `/varz` (with a cluster block) must match, node for node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_key_sets_match_the_reference_nats_server() {
    let port = free_port();
    let listen = format!("nats://127.0.0.1:{port}");
    let Some(ref1) =
        NatsServer::start_monitored(&["--cluster", &listen, "--cluster_name", CLUSTER])
    else {
        return;
    };
    let listen2 = format!("nats://127.0.0.1:{}", free_port());
    let ref2 = NatsServer::start_monitored(&[
        "--cluster",
        &listen2,
        "--cluster_name",
        CLUSTER,
        "--routes",
        &listen,
    ])
    .expect("second reference");
    let ((s1, smon1), (s2, smon2)) = pair(true).await;

    let ours = [
        (s1.client_addr().unwrap(), smon1),
        (s2.client_addr().unwrap(), smon2),
    ];
    let theirs = [
        (ref1.addr, ref1.monitor.unwrap()),
        (ref2.addr, ref2.monitor.unwrap()),
    ];
    let mut kept = Vec::new();
    for [(c1, m1), (c2, m2)] in [ours, theirs] {
        // Interest on both nodes (plain and queue: nats-server's own `$SYS` interest has no
        // queues), and a message from node 2 to node 1.
        let mut sub = Raw::quiet(c1).await;
        sub.send("SUB foo 1\r\nSUB bar q 2\r\n").await;
        sub.until_pong().await;
        let mut publisher = Raw::quiet(c2).await;
        publisher.send("SUB baz 1\r\nSUB qux g 2\r\n").await;
        publisher.until_pong().await;
        wait_route_interest(m2, &["foo", "bar"]).await;
        wait_route_interest(m1, &["baz", "qux"]).await;
        publisher.send("PUB foo 5\r\nhello\r\n").await;
        publisher.until_pong().await;
        assert_eq!(sub.line().await.as_deref(), Some("MSG foo 1 5"));
        kept.push((sub, publisher));
    }

    let mut mismatches = Vec::new();
    for node in 0..2 {
        for path in ["/routez", "/routez?subs=1", "/routez?subs=detail", "/varz"] {
            let a = http_get(ours[node].1, path).await;
            let b = http_get(theirs[node].1, path).await;
            assert_eq!(a.status, b.status, "{path}");
            let (ka, kb) = (key_paths(&a.json()), key_paths(&b.json()));
            if ka != kb {
                mismatches.push(format!(
                    "node {} {path}: only Starling {:?}, only nats-server {:?}",
                    node + 1,
                    ka.difference(&kb).collect::<Vec<_>>(),
                    kb.difference(&ka).collect::<Vec<_>>()
                ));
            }
            assert_eq!(
                keys_in_order(&a.body, 2),
                keys_in_order(&b.body, 2),
                "node {} {path} order",
                node + 1
            );
            if path.starts_with("/routez") {
                assert_eq!(
                    keys_in_order(&a.body, 6),
                    keys_in_order(&b.body, 6),
                    "node {} {path} route order",
                    node + 1
                );
            } else {
                let cluster = |body: &str| {
                    let at = body.find("\"cluster\": {").expect("cluster block");
                    keys_in_order(&body[at..], 4)
                };
                assert_eq!(
                    cluster(&a.body),
                    cluster(&b.body),
                    "node {} cluster",
                    node + 1
                );
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "key sets differ:\n{}",
        mismatches.join("\n")
    );
    drop(kept);
    s1.shutdown().await;
    s2.shutdown().await;
}
