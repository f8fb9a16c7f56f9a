//! The monitoring endpoints over real HTTP: every endpoint's fields checked against what the
//! test did, a differential test of the JSON key sets against the reference nats-server,
//! `/metrics` read with a Prometheus text-format parser, and the port's responsiveness while
//! the broker is saturated.
#![cfg(feature = "monitor")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use common::{http_get, http_request, key_paths, keys_in_order, HttpReply, NatsServer, Raw, WAIT};
use futures::StreamExt;
use serde_json::Value;
use starling_server::{Event, Server, ServerBuilder, StartError, NATS_VERSION, STARLING_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A broker with a client port and a monitoring port, both chosen by the system.
async fn start(builder: ServerBuilder) -> (Server, SocketAddr) {
    let server = builder
        .listen("127.0.0.1:0")
        .monitor("127.0.0.1:0")
        .start()
        .await
        .expect("server starts");
    let mon = server.monitor_addr().expect("monitor bound");
    (server, mon)
}

/// `GET path` expecting 200 JSON.
async fn json(mon: SocketAddr, path: &str) -> Value {
    let reply = http_get(mon, path).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    assert_eq!(reply.content_type, "application/json", "GET {path}");
    reply.json()
}

/// Whether `s` looks like Go's RFC 3339 (UTC, optional fraction): `2026-11-23T11:13:22.5Z`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s.ends_with('Z')
        && (b.len() == 20 || (b[19] == b'.' && b.len() <= 30))
}

/// Whether `s` is a nats-server uptime string such as `7s`, `1m2s`.
fn is_uptime(s: &str) -> bool {
    s.ends_with('s') && s.chars().all(|c| c.is_ascii_digit() || "ydhms".contains(c))
}

/// Waits (bounded) for `n` ClientClosed events on `events`.
async fn closed_events(events: &mut starling_server::EventStream, n: usize) {
    let mut seen = 0;
    tokio::time::timeout(WAIT, async {
        while seen < n {
            if let Some(Event::ClientClosed { .. }) = events.next().await {
                seen += 1;
            }
        }
    })
    .await
    .expect("connections closed");
}

#[tokio::test]
async fn varz_reports_identity_options_and_traffic() {
    let (server, mon) = start(
        Server::builder()
            .server_name("varz-test")
            .ping_interval(Duration::from_secs(30))
            .max_payload(512 * 1024),
    )
    .await;
    let addr = server.client_addr().unwrap();
    // The system account's own subscriptions count too, as in nats-server.
    let own = server.stats().subscriptions;
    assert!(own > 0);
    let mut sub = Raw::quiet(addr).await;
    sub.send("SUB foo 1\r\n").await;
    sub.until_pong().await;
    let mut publisher = Raw::quiet(addr).await;
    publisher
        .send("PUB foo 5\r\nhello\r\nPUB foo 5\r\nworld\r\nPUB nobody 3\r\nabc\r\n")
        .await;
    publisher.until_pong().await;
    let got = sub.until_pong().await;
    assert_eq!(got.len(), 4, "two MSGs with payloads: {got:?}");

    let reply = http_get(mon, "/varz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "application/json");
    assert!(
        reply.body.starts_with("{\n  \"server_id\": \""),
        "pretty-printed with two-space indents: {}",
        reply.body
    );
    let v = reply.json();
    assert_eq!(v["server_id"], server.server_id());
    assert_eq!(v["server_name"], "varz-test");
    assert_eq!(v["version"], NATS_VERSION);
    assert_eq!(v["proto"], 1);
    assert_eq!(v["go"], format!("starling {STARLING_VERSION}"));
    assert_eq!(v["host"], "127.0.0.1");
    assert_eq!(v["port"], addr.port());
    assert_eq!(v["max_connections"], 65536);
    assert_eq!(v["ping_interval"], 30_000_000_000u64);
    assert_eq!(v["ping_max"], 2);
    assert_eq!(v["http_host"], "127.0.0.1");
    assert_eq!(v["http_port"], mon.port());
    assert_eq!(v["http_base_path"], "");
    assert_eq!(v["https_port"], 0);
    assert!(reply.body.contains("\"auth_timeout\": 2,"), "Go float form");
    assert_eq!(v["max_control_line"], 4096);
    assert_eq!(v["max_payload"], 512 * 1024);
    assert_eq!(v["max_pending"], 64 * 1024 * 1024);
    for empty in [
        "cluster",
        "gateway",
        "leaf",
        "mqtt",
        "websocket",
        "jetstream",
    ] {
        assert_eq!(v[empty], serde_json::json!({}), "{empty}");
    }
    assert!(reply.body.contains("\"tls_timeout\": 2,"));
    assert_eq!(v["write_deadline"], 10_000_000_000u64);
    assert!(is_rfc3339(v["start"].as_str().unwrap()), "{}", v["start"]);
    assert!(is_rfc3339(v["now"].as_str().unwrap()), "{}", v["now"]);
    assert_eq!(v["config_load_time"], v["start"]);
    assert!(is_uptime(v["uptime"].as_str().unwrap()), "{}", v["uptime"]);
    assert!(v["mem"].as_u64().unwrap() > 1024 * 1024, "RSS in bytes");
    assert!(v["cores"].as_u64().unwrap() >= 1);
    assert_eq!(v["gomaxprocs"], v["cores"]);
    assert!(v["cpu"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["connections"], 2);
    assert_eq!(v["total_connections"], 2);
    assert_eq!(v["routes"], 0);
    assert_eq!(v["remotes"], 0);
    assert_eq!(v["leafnodes"], 0);
    assert_eq!(v["in_msgs"], 3);
    assert_eq!(v["in_bytes"], 13);
    assert_eq!(v["out_msgs"], 2);
    assert_eq!(v["out_bytes"], 10, "payload bytes, as nats-server counts");
    assert_eq!(v["slow_consumers"], 0);
    assert_eq!(v["subscriptions"], own + 1);
    assert_eq!(v["http_req_stats"], serde_json::json!({"/varz": 1}));
    assert_eq!(v["system_account"], "$SYS");

    // nats-server 2.9.10's key order.
    let order = [
        "server_id",
        "server_name",
        "version",
        "proto",
        "go",
        "host",
        "port",
        "max_connections",
        "ping_interval",
        "ping_max",
        "http_host",
        "http_port",
        "http_base_path",
        "https_port",
        "auth_timeout",
        "max_control_line",
        "max_payload",
        "max_pending",
        "cluster",
        "gateway",
        "leaf",
        "mqtt",
        "websocket",
        "jetstream",
        "tls_timeout",
        "write_deadline",
        "start",
        "now",
        "uptime",
        "mem",
        "cores",
        "gomaxprocs",
        "cpu",
        "connections",
        "total_connections",
        "routes",
        "remotes",
        "leafnodes",
        "in_msgs",
        "out_msgs",
        "in_bytes",
        "out_bytes",
        "slow_consumers",
        "subscriptions",
        "http_req_stats",
        "config_load_time",
        "system_account",
    ];
    assert_eq!(keys_in_order(&reply.body, 2), order);

    // Requests are counted per endpoint, the current one included.
    http_get(mon, "/healthz").await;
    let v = json(mon, "/varz").await;
    assert_eq!(
        v["http_req_stats"],
        serde_json::json!({"/healthz": 1, "/varz": 2})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn varz_shows_auth_and_subscription_limits_when_set() {
    let (server, mon) = start(
        Server::builder()
            .auth(starling_server::Auth::Token("s3cret".into()))
            .max_subscriptions(10),
    )
    .await;
    let reply = http_get(mon, "/varz").await;
    let v = reply.json();
    assert_eq!(v["auth_required"], true);
    assert_eq!(v["max_subscriptions"], 10);
    let keys = keys_in_order(&reply.body, 2);
    let pos = |k: &str| keys.iter().position(|x| x == k).unwrap();
    assert_eq!(pos("auth_required"), pos("port") + 1);
    assert_eq!(pos("max_subscriptions"), pos("max_connections") + 1);
    server.shutdown().await;
}

#[tokio::test]
async fn connz_lists_sorts_pages_and_filters_open_connections() {
    let (server, mon) = start(Server::builder()).await;
    let addr = server.client_addr().unwrap();
    let mut a = Raw::handshake(
        addr,
        r#"{"verbose":false,"pedantic":false,"name":"alice","lang":"rust","version":"1.2.3","user":"u1"}"#,
    )
    .await;
    a.send("SUB foo 1\r\nSUB bar workers 2\r\nSUB baz 3\r\nUNSUB 3 10\r\n")
        .await;
    a.until_pong().await;
    let mut b = Raw::handshake(addr, r#"{"verbose":false,"pedantic":false,"name":"bob"}"#).await;
    b.send("SUB foo 7\r\n").await;
    b.until_pong().await;
    let mut c = Raw::quiet(addr).await;
    c.send("PUB foo 3\r\nabc\r\nPUB foo 3\r\nabc\r\nPUB bar 4\r\nabcd\r\n")
        .await;
    c.until_pong().await;
    assert_eq!(a.until_pong().await.len(), 6, "a got 3 messages");
    assert_eq!(b.until_pong().await.len(), 4, "b got 2 messages");

    let reply = http_get(mon, "/connz").await;
    let v = reply.json();
    assert_eq!(v["server_id"], server.server_id());
    assert!(is_rfc3339(v["now"].as_str().unwrap()));
    assert_eq!(v["num_connections"], 3);
    assert_eq!(v["total"], 3);
    assert_eq!(v["offset"], 0);
    assert_eq!(v["limit"], 1024);
    assert_eq!(
        keys_in_order(&reply.body, 2),
        [
            "server_id",
            "now",
            "num_connections",
            "total",
            "offset",
            "limit",
            "connections"
        ]
    );
    let conns = v["connections"].as_array().unwrap();
    let cids: Vec<u64> = conns.iter().map(|c| c["cid"].as_u64().unwrap()).collect();
    assert!(
        cids.windows(2).all(|w| w[0] < w[1]),
        "sorted by cid: {cids:?}"
    );
    let ca = &conns[0];
    assert_eq!(ca["kind"], "Client");
    assert_eq!(ca["type"], "nats");
    assert_eq!(ca["ip"], "127.0.0.1");
    assert_eq!(ca["port"], a.local_addr().port());
    assert_eq!(ca["name"], "alice");
    assert_eq!(ca["lang"], "rust");
    assert_eq!(ca["version"], "1.2.3");
    assert_eq!(ca["subscriptions"], 3);
    assert_eq!(ca["in_msgs"], 0);
    assert_eq!(ca["out_msgs"], 3);
    assert_eq!(ca["out_bytes"], 10);
    assert_eq!(ca["pending_bytes"], 0);
    assert!(is_rfc3339(ca["start"].as_str().unwrap()));
    assert!(is_rfc3339(ca["last_activity"].as_str().unwrap()));
    assert!(ca["last_activity"].as_str() >= ca["start"].as_str());
    assert!(is_uptime(ca["uptime"].as_str().unwrap()));
    assert!(is_uptime(ca["idle"].as_str().unwrap()));
    let rtt = ca["rtt"].as_str().unwrap();
    assert!(
        rtt.ends_with('s') && rtt != "0s",
        "measured at CONNECT: {rtt}"
    );
    assert!(ca.get("authorized_user").is_none(), "only with auth=1");
    assert!(ca.get("subscriptions_list").is_none(), "only with subs=1");
    assert!(ca.get("stop").is_none() && ca.get("reason").is_none());
    let cc = &conns[2];
    assert_eq!(cc["in_msgs"], 3);
    assert_eq!(cc["in_bytes"], 10);
    assert!(cc.get("name").is_none(), "omitted when not sent");
    assert_eq!(
        keys_in_order(&reply.body, 6),
        [
            "cid",
            "kind",
            "type",
            "ip",
            "port",
            "start",
            "last_activity",
            "rtt",
            "uptime",
            "idle",
            "pending_bytes",
            "in_msgs",
            "out_msgs",
            "in_bytes",
            "out_bytes",
            "subscriptions",
            "name",
            "lang",
            "version"
        ]
    );

    // subs=1: subjects; subs=detail: objects; auth=1: the user.
    let v = json(mon, "/connz?subs=1&auth=1").await;
    let ca = &v["connections"][0];
    assert_eq!(
        ca["subscriptions_list"],
        serde_json::json!(["foo", "bar", "baz"])
    );
    assert_eq!(ca["authorized_user"], "u1");
    let v = json(mon, "/connz?subs=detail").await;
    assert_eq!(
        v["connections"][0]["subscriptions_list_detail"],
        serde_json::json!([
            {"subject": "foo", "sid": "1", "msgs": 2, "cid": cids[0]},
            {"subject": "bar", "qgroup": "workers", "sid": "2", "msgs": 1, "cid": cids[0]},
            {"subject": "baz", "sid": "3", "msgs": 0, "max": 10, "cid": cids[0]},
        ])
    );

    // Sorting.
    let order = |v: Value| -> Vec<u64> {
        v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cid"].as_u64().unwrap())
            .collect()
    };
    let [ia, ib, ic] = [cids[0], cids[1], cids[2]];
    assert_eq!(order(json(mon, "/connz?sort=subs").await), [ia, ib, ic]);
    assert_eq!(order(json(mon, "/connz?sort=msgs_from").await)[0], ic);
    assert_eq!(order(json(mon, "/connz?sort=bytes_from").await)[0], ic);
    assert_eq!(order(json(mon, "/connz?sort=msgs_to").await), [ia, ib, ic]);
    assert_eq!(order(json(mon, "/connz?sort=bytes_to").await), [ia, ib, ic]);
    assert_eq!(order(json(mon, "/connz?sort=start").await), [ia, ib, ic]);
    for opt in ["cid", "pending", "last", "idle", "uptime", "rtt"] {
        let got = order(json(mon, &format!("/connz?sort={opt}")).await);
        assert_eq!(got.len(), 3, "sort={opt}");
    }
    let bad = http_get(mon, "/connz?sort=bogus").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body, "invalid sorting option: bogus");
    assert!(bad.content_type.starts_with("text/plain"));
    let bad = http_get(mon, "/connz?sort=stop").await;
    assert_eq!(
        (bad.status, bad.body.as_str()),
        (400, "sort by stop only valid on closed connections")
    );
    let bad = http_get(mon, "/connz?state=any&sort=reason").await;
    assert_eq!(
        (bad.status, bad.body.as_str()),
        (400, "sort by reason only valid on closed connections")
    );
    let bad = http_get(mon, "/connz?state=bogus").await;
    assert_eq!(
        (bad.status, bad.body.as_str()),
        (400, "Error decoding state for bogus")
    );
    let bad = http_get(mon, "/connz?limit=abc").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.starts_with("Error decoding int for 'limit'"));

    // Paging and cid.
    let v = json(mon, "/connz?offset=1&limit=1").await;
    assert_eq!(order(v.clone()), [ib]);
    assert_eq!(
        (v["offset"].clone(), v["limit"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(
        (v["num_connections"].clone(), v["total"].clone()),
        (1.into(), 3.into())
    );
    let v = json(mon, "/connz?offset=5").await;
    assert_eq!(v["connections"], serde_json::json!([]));
    let v = json(mon, &format!("/connz?cid={ic}")).await;
    assert_eq!(order(v.clone()), [ic]);
    assert_eq!(v["limit"], 1);
    let v = json(mon, "/connz?cid=999").await;
    assert_eq!(v["num_connections"], 0);
    assert_eq!(v["connections"], serde_json::json!([]));
    let v = json(mon, "/connz?user=u1").await;
    assert_eq!(order(v), [ia]);

    // In-process clients are connections too.
    let client = server.client();
    let _sub = client.subscribe("inproc").await.unwrap();
    let v = json(mon, "/connz?sort=cid").await;
    let last = v["connections"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "inprocess");
    assert_eq!(last["ip"], "");
    assert_eq!(last["port"], 0);
    assert_eq!(last["subscriptions"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn connz_keeps_closed_connections_with_their_reasons() {
    let (server, mon) = start(Server::builder()).await;
    let addr = server.client_addr().unwrap();
    let mut events = server.events();
    let mut keep = Raw::quiet(addr).await;
    keep.send("SUB keep 1\r\n").await;
    keep.until_pong().await;

    let mut bob = Raw::handshake(addr, r#"{"verbose":false,"pedantic":false,"name":"bob"}"#).await;
    bob.send("SUB x.y 9\r\nSUB z q 10\r\nPUB x.y 2\r\nhi\r\n")
        .await;
    assert_eq!(bob.until_pong().await, ["MSG x.y 9 2", "hi"]);
    let bob_port = bob.local_addr().port();
    drop(bob); // EOF: "Client Closed"
    closed_events(&mut events, 1).await;

    let mut bad = Raw::quiet(addr).await;
    bad.send("BOGUS\r\n").await; // "Protocol Violation"
    bad.until_eof().await;
    closed_events(&mut events, 1).await;

    let v = json(mon, "/connz?state=closed&subs=1").await;
    assert_eq!(v["num_connections"], 2);
    assert_eq!(v["total"], 2);
    let conns = v["connections"].as_array().unwrap();
    let b = &conns[0];
    assert_eq!(b["name"], "bob");
    assert_eq!(b["port"], bob_port);
    assert_eq!(b["reason"], "Client Closed");
    assert!(is_rfc3339(b["stop"].as_str().unwrap()));
    assert!(b["stop"].as_str() >= b["start"].as_str());
    assert_eq!(b["in_msgs"], 1);
    assert_eq!(b["in_bytes"], 2);
    assert_eq!(b["out_msgs"], 1);
    assert_eq!(b["out_bytes"], 2);
    assert_eq!(b["subscriptions"], 2);
    assert_eq!(b["subscriptions_list"], serde_json::json!(["x.y", "z"]));
    assert_eq!(conns[1]["reason"], "Protocol Violation");
    let reply = http_get(mon, "/connz?state=closed").await;
    let keys = keys_in_order(&reply.body, 6);
    assert_eq!(
        keys[..10],
        [
            "cid",
            "kind",
            "type",
            "ip",
            "port",
            "start",
            "last_activity",
            "stop",
            "reason",
            "rtt"
        ]
    );

    // Closed details carry the account, as nats-server's do.
    let v = json(mon, "/connz?state=closed&subs=detail&sort=reason").await;
    let first = &v["connections"][0];
    assert_eq!(first["reason"], "Client Closed", "alphabetical by reason");
    assert_eq!(
        first["subscriptions_list_detail"],
        serde_json::json!([
            {"account": "$G", "subject": "x.y", "sid": "9", "msgs": 1, "cid": first["cid"]},
            {"account": "$G", "subject": "z", "qgroup": "q", "sid": "10", "msgs": 0, "cid": first["cid"]},
        ])
    );
    let v = json(mon, "/connz?state=closed&sort=stop").await;
    assert_eq!(
        v["connections"][0]["reason"], "Protocol Violation",
        "latest first"
    );

    // state=any: open and closed; cid finds a closed one only when asked for closed ones.
    let v = json(mon, "/connz?state=any").await;
    assert_eq!(
        (v["num_connections"].clone(), v["total"].clone()),
        (3.into(), 3.into())
    );
    let bob_cid = b["cid"].as_u64().unwrap();
    let v = json(mon, &format!("/connz?cid={bob_cid}")).await;
    assert_eq!(v["num_connections"], 0);
    let v = json(mon, &format!("/connz?cid={bob_cid}&state=closed")).await;
    assert_eq!(v["connections"][0]["name"], "bob");

    let stats = server.stats();
    assert_eq!(stats.closed_connections, 2);
    assert_eq!(stats.total_connections, 3);
    assert_eq!(stats.connections, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn closed_connection_ring_is_bounded() {
    let (server, mon) = start(Server::builder().max_closed_clients(2)).await;
    let addr = server.client_addr().unwrap();
    let mut events = server.events();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let raw = Raw::quiet(addr).await;
        ports.push(raw.local_addr().port());
        drop(raw);
        closed_events(&mut events, 1).await;
    }
    let v = json(mon, "/connz?state=closed").await;
    assert_eq!(v["total"], 2);
    let kept: Vec<u64> = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["port"].as_u64().unwrap())
        .collect();
    assert_eq!(
        kept,
        [u64::from(ports[1]), u64::from(ports[2])],
        "the oldest fell out"
    );
    assert_eq!(server.stats().closed_connections, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn subsz_reports_figures_lists_and_tests_subjects() {
    let (server, mon) = start(Server::builder().no_system_account()).await;
    let addr = server.client_addr().unwrap();
    let mut a = Raw::quiet(addr).await;
    a.send("SUB foo.* 1\r\nSUB foo.bar q 2\r\nSUB baz 3\r\nSUB gone 4\r\nUNSUB 4\r\n")
        .await;
    a.until_pong().await;
    a.send("PUB foo.bar 1\r\nx\r\nPUB foo.bar 1\r\nx\r\n").await;
    a.until_pong().await;
    let acid = json(mon, "/connz").await["connections"][0]["cid"].clone();

    // Without subs=1 (or with nothing to list) nats-server 2.9.10 serves only the figures.
    let reply = http_get(mon, "/subsz").await;
    let v = reply.json();
    assert_eq!(
        keys_in_order(&reply.body, 2),
        [
            "num_subscriptions",
            "num_cache",
            "num_inserts",
            "num_removes",
            "num_matches",
            "cache_hit_rate",
            "max_fanout",
            "avg_fanout"
        ]
    );
    assert_eq!(v["num_subscriptions"], 3);
    assert_eq!(v["num_inserts"], 4);
    assert_eq!(v["num_removes"], 1);
    assert_eq!(v["num_matches"], 2);
    assert_eq!(v["num_cache"], 1);
    assert_eq!(v["cache_hit_rate"], 0.5);
    assert_eq!(v["max_fanout"], 2);
    assert_eq!(v["avg_fanout"], 2);

    let reply = http_get(mon, "/subsz?subs=1").await;
    let v = reply.json();
    assert_eq!(
        keys_in_order(&reply.body, 2),
        [
            "server_id",
            "now",
            "num_subscriptions",
            "num_cache",
            "num_inserts",
            "num_removes",
            "num_matches",
            "cache_hit_rate",
            "max_fanout",
            "avg_fanout",
            "total",
            "offset",
            "limit",
            "subscriptions_list"
        ]
    );
    assert_eq!(v["server_id"], server.server_id());
    assert_eq!(
        (v["total"].clone(), v["limit"].clone()),
        (3.into(), 1024.into())
    );
    let mut subjects: Vec<String> = v["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["baz", "foo.*", "foo.bar"]);
    let list = v["subscriptions_list"].as_array().unwrap();
    let queued = list.iter().find(|s| s["subject"] == "foo.bar").unwrap();
    assert_eq!(
        *queued,
        serde_json::json!({"account": "$G", "subject": "foo.bar", "qgroup": "q", "sid": "2", "msgs": 2, "cid": acid})
    );

    let v = json(mon, "/subsz?subs=1&test=foo.bar").await;
    assert_eq!(v["total"], 2);
    let v = json(mon, "/subscriptionsz?subs=1&test=baz").await;
    assert_eq!(v["total"], 1);
    assert_eq!(v["subscriptions_list"][0]["sid"], "3");
    let v = json(mon, "/subsz?subs=1&test=nothing.here").await;
    assert!(v.get("subscriptions_list").is_none() && v.get("total").is_none());
    let v = json(mon, "/subsz?subs=1&offset=1&limit=1").await;
    assert_eq!(v["total"], 3);
    assert_eq!(v["subscriptions_list"].as_array().unwrap().len(), 1);
    let bad = http_get(mon, "/subsz?subs=1&test=foo.*").await;
    assert_eq!(bad.status, 400, "the test subject must be literal");
    server.shutdown().await;
}

#[tokio::test]
async fn routez_leafz_gatewayz_accountz_are_well_formed() {
    let (server, mon) = start(Server::builder()).await;
    let _client = Raw::quiet(server.client_addr().unwrap()).await;
    let id = server.server_id();

    let reply = http_get(mon, "/routez").await;
    let v = reply.json();
    assert_eq!(
        keys_in_order(&reply.body, 2),
        ["server_id", "now", "num_routes", "routes"]
    );
    assert_eq!(v["server_id"], id);
    assert_eq!(v["num_routes"], 0);
    assert_eq!(v["routes"], serde_json::json!([]));
    assert_eq!(json(mon, "/routez?subs=1").await["num_routes"], 0);

    let v = json(mon, "/leafz").await;
    assert_eq!(
        v,
        serde_json::json!({"server_id": id, "now": v["now"], "leafnodes": 0, "leafs": null})
    );
    let v = json(mon, "/gatewayz").await;
    assert_eq!(
        v,
        serde_json::json!({"server_id": id, "now": v["now"], "outbound_gateways": {}, "inbound_gateways": {}})
    );
    let v = json(mon, "/accountz").await;
    assert_eq!(v["system_account"], "$SYS");
    assert_eq!(v["accounts"], serde_json::json!(["$G", "$SYS"]));
    let v = json(mon, "/accountz?acc=$G").await;
    let detail = &v["account_detail"];
    assert_eq!(detail["account_name"], "$G");
    assert_eq!(detail["client_connections"], 1);
    assert_eq!(detail["complete"], true);
    assert_eq!(detail["sublist_stats"]["num_subscriptions"], 0);
    assert_eq!(http_get(mon, "/accountz?acc=nope").await.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_is_ok_until_lame_duck() {
    let (server, mon) = start(
        Server::builder()
            .lame_duck_grace_period(Duration::from_secs(30))
            .lame_duck_duration(Duration::from_secs(60)),
    )
    .await;
    let reply = http_get(mon, "/healthz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(reply.body, r#"{"status":"ok"}"#);

    let mut events = server.events();
    let ldm = {
        let server = server.clone();
        tokio::spawn(async move { server.lame_duck().await })
    };
    tokio::time::timeout(WAIT, async {
        while events.next().await != Some(Event::LameDuck) {}
    })
    .await
    .expect("lame duck announced");
    let reply = http_get(mon, "/healthz").await;
    assert_eq!(reply.status, 503);
    let v = reply.json();
    assert_eq!(v["status"], "error");
    assert!(v["error"].as_str().unwrap().contains("lame duck"));
    // Monitoring still answers while the server winds down.
    assert_eq!(json(mon, "/varz").await["connections"], 0);

    server.shutdown().await;
    ldm.await.unwrap();
}

#[tokio::test]
async fn index_404_jsonp_and_methods() {
    let (server, mon) = start(Server::builder()).await;
    let reply = http_get(mon, "/").await;
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.starts_with("text/html"));
    for link in [
        "varz", "connz", "routez", "subsz", "healthz", "leafz", "accountz", "metrics",
    ] {
        assert!(reply.body.contains(&format!("href=./{link}>")), "{link}");
    }
    let reply = http_get(mon, "/nope").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.content_type, "text/plain; charset=utf-8");
    assert_eq!(reply.body, "404 page not found\n");

    let reply = http_get(mon, "/varz?callback=cb").await;
    assert_eq!(reply.content_type, "application/javascript");
    assert!(reply.body.starts_with("cb({\n") && reply.body.ends_with("})"));
    let inner = &reply.body[3..reply.body.len() - 1];
    assert_eq!(
        serde_json::from_str::<Value>(inner).unwrap()["server_id"],
        server.server_id()
    );

    let reply = http_request(mon, "POST", "/varz", WAIT).await.unwrap();
    assert_eq!(reply.status, 200, "nats-server does not check the method");
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let (server, mon) = start(Server::builder().no_system_account()).await;
    let addr = server.client_addr().unwrap();
    let mut sub = Raw::quiet(addr).await;
    sub.send("SUB m.> 1\r\nSUB m.a q 2\r\n").await;
    sub.until_pong().await;
    let mut publisher = Raw::quiet(addr).await;
    for _ in 0..5 {
        publisher.send("PUB m.a 4\r\nabcd\r\n").await;
    }
    publisher.until_pong().await;
    assert_eq!(
        sub.until_pong().await.len(),
        20,
        "10 messages with payloads"
    );
    http_get(mon, "/varz").await;

    let reply = http_get(mon, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let lines = reply.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    let value = |name: &str| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name}: unexpected type"),
        }
    };
    let is_counter = |name: &str| {
        matches!(
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .unwrap()
                .value,
            prometheus_parse::Value::Counter(_)
        )
    };
    assert_eq!(value("starling_connections"), 2.0);
    assert_eq!(value("starling_connections_total"), 2.0);
    assert_eq!(value("starling_subscriptions"), 2.0);
    assert_eq!(value("starling_in_msgs_total"), 5.0);
    assert_eq!(value("starling_in_bytes_total"), 20.0);
    assert_eq!(value("starling_out_msgs_total"), 10.0);
    assert_eq!(value("starling_out_bytes_total"), 40.0);
    assert_eq!(value("starling_slow_consumers_total"), 0.0);
    assert_eq!(value("starling_closed_connections_total"), 0.0);
    assert_eq!(value("starling_routes"), 0.0);
    assert_eq!(value("starling_leafnodes"), 0.0);
    assert_eq!(value("starling_max_connections"), 65536.0);
    assert_eq!(value("starling_sublist_matches_total"), 5.0);
    assert_eq!(value("starling_sublist_cache_hits_total"), 4.0);
    assert_eq!(value("starling_sublist_cache_hit_ratio"), 0.8);
    assert_eq!(value("starling_sublist_inserts_total"), 2.0);
    assert!(value("starling_uptime_seconds") >= 0.0);
    let start = value("starling_start_time_seconds");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(start <= now && start > now - 60.0);
    assert!(value("starling_process_resident_memory_bytes") > 1e6);
    for counter in [
        "starling_in_msgs_total",
        "starling_out_bytes_total",
        "starling_connections_total",
        "starling_slow_consumers_total",
    ] {
        assert!(is_counter(counter), "{counter} is a counter");
    }
    let info = scrape
        .samples
        .iter()
        .find(|s| s.metric == "starling_info")
        .unwrap();
    assert_eq!(info.labels.get("server_id"), Some(server.server_id()));
    assert_eq!(info.labels.get("nats_version"), Some(NATS_VERSION));
    let varz_hits = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "starling_http_requests_total" && s.labels.get("path") == Some("/varz")
        })
        .expect("per-endpoint request counter");
    assert!(matches!(varz_hits.value, prometheus_parse::Value::Counter(v) if v == 1.0));
    // No routes yet: the per-route families are declared but empty.
    assert!(reply
        .body
        .contains("# TYPE starling_route_in_msgs_total counter"));
    assert!(!scrape
        .samples
        .iter()
        .any(|s| s.metric.starts_with("starling_route_")));
    server.shutdown().await;
}

#[tokio::test]
async fn stats_snapshot_has_what_an_exporter_needs() {
    let before = SystemTime::now();
    let (server, _mon) = start(Server::builder().no_system_account()).await;
    let addr = server.client_addr().unwrap();
    let mut a = Raw::quiet(addr).await;
    a.send("SUB s 1\r\nPUB s 2\r\nhi\r\nPUB s 2\r\nhi\r\n")
        .await;
    a.until_pong().await;
    let stats = server.stats();
    assert!(stats.start >= before - Duration::from_secs(1) && stats.start <= SystemTime::now());
    assert!(stats.uptime < Duration::from_secs(60));
    assert_eq!(stats.routes, 0);
    assert!(stats.route_stats.is_empty());
    assert_eq!(stats.leafnodes, 0);
    assert_eq!(stats.closed_connections, 0);
    assert_eq!((stats.in_msgs, stats.out_msgs, stats.out_bytes), (2, 2, 4));
    assert_eq!(stats.sublist.num_inserts, 1);
    assert_eq!(stats.sublist.num_matches, 2);
    assert_eq!(stats.sublist.cache_hits, 1);
    assert_eq!(stats.sublist.cache_hit_rate(), 0.5);
    server.shutdown().await;
}

#[tokio::test]
async fn monitor_port_binding_and_shutdown() {
    // No monitor unless asked for.
    let plain = common::start().await;
    assert_eq!(plain.monitor_addr(), None);
    plain.shutdown().await;

    // A port in use is a bind error naming the monitor listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let err = Server::builder()
        .monitor(taken_addr.to_string())
        .start()
        .await
        .unwrap_err();
    match err {
        StartError::Bind { listener, addr, .. } => {
            assert_eq!(listener, "monitor");
            assert_eq!(addr, taken_addr);
        }
        other => panic!("expected a bind error, got {other:?}"),
    }

    // A monitor without a client port works (in-process clients only).
    let server = Server::builder()
        .monitor("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let mon = server.monitor_addr().unwrap();
    assert_ne!(mon.port(), 0);
    let v = json(mon, "/varz").await;
    assert_eq!(v["port"], 0);

    // An idle keep-alive HTTP connection does not hold shutdown up.
    let stream = TcpStream::connect(mon).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn_task = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/healthz")
        .header("host", mon.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown returns");
    assert!(server.is_stopped());
    assert!(
        TcpStream::connect(mon).await.is_err(),
        "the monitor port is closed"
    );
    let _ = tokio::time::timeout(WAIT, conn_task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_stays_responsive_while_the_broker_is_saturated() {
    const PUBLISHERS: usize = 4;
    const LOAD: Duration = Duration::from_secs(2);
    const PER_REQUEST: Duration = Duration::from_secs(2);
    let (server, mon) = start(Server::builder()).await;
    let addr = server.client_addr().unwrap();
    let deadline = Instant::now() + LOAD;

    // A subscriber that drains everything, and publishers flooding it.
    let mut sub = TcpStream::connect(addr).await.unwrap();
    sub.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB load.> 1\r\nPING\r\n")
        .await
        .unwrap();
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        while Instant::now() < deadline + Duration::from_millis(500) {
            match tokio::time::timeout(Duration::from_millis(500), sub.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => total += n,
                Err(_) => {}
            }
        }
        total
    });
    let batch: Vec<u8> = "PUB load.x 16\r\n0123456789abcdef\r\n"
        .repeat(2000)
        .into_bytes();
    let mut publishers = Vec::new();
    for _ in 0..PUBLISHERS {
        let batch = batch.clone();
        let mut conn = TcpStream::connect(addr).await.unwrap();
        publishers.push(tokio::spawn(async move {
            conn.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
                .await
                .unwrap();
            let mut sent = 0u64;
            while Instant::now() < deadline {
                if conn.write_all(&batch).await.is_err() {
                    break;
                }
                sent += 2000;
            }
            sent
        }));
    }

    // Meanwhile /varz is fetched again and again, each answer within the per-request bound.
    let mut fetched = 0;
    let mut slowest = Duration::ZERO;
    let mut in_msgs = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        let reply: HttpReply = http_request(mon, "GET", "/varz", PER_REQUEST)
            .await
            .expect("monitor answers under load");
        slowest = slowest.max(t.elapsed());
        assert_eq!(reply.status, 200);
        in_msgs.push(reply.json()["in_msgs"].as_u64().unwrap());
        fetched += 1;
    }
    let mut sent = 0;
    for p in publishers {
        sent += p.await.unwrap();
    }
    let drained = drain.await.unwrap();
    assert!(fetched >= 5, "only {fetched} /varz answers in {LOAD:?}");
    assert!(
        in_msgs.windows(2).all(|w| w[0] <= w[1]) && in_msgs.last() > in_msgs.first(),
        "the broker was busy while monitored: {in_msgs:?}"
    );
    assert!(sent > 0 && drained > 0);
    eprintln!("{fetched} /varz answers while {sent} messages were published (slowest {slowest:?})");
    server.shutdown().await;
}

/// Runs the same scenario on Starling and on nats-server 2.9.10 and compares the JSON key sets
/// (values differ: ids, times, counts of nats-server's internal subscriptions).
#[tokio::test]
async fn key_sets_match_the_reference_nats_server() {
    let Some(reference) = NatsServer::start_monitored(&[]) else {
        return;
    };
    let (server, mon) = start(Server::builder()).await;
    let ours = (server.client_addr().unwrap(), mon);
    let theirs = (
        reference.addr,
        reference.monitor.expect("reference monitor port"),
    );

    let mut kept = Vec::new();
    for (client, mon) in [ours, theirs] {
        let mut alice = Raw::handshake(
            client,
            r#"{"verbose":false,"pedantic":false,"name":"alice","lang":"rust","version":"1.0","headers":true,"protocol":1}"#,
        )
        .await;
        alice
            .send("SUB foo 1\r\nSUB bar q 2\r\nPUB foo 5\r\nhello\r\n")
            .await;
        alice.until_pong().await;
        let mut bob =
            Raw::handshake(client, r#"{"verbose":false,"pedantic":false,"name":"bob"}"#).await;
        bob.send("SUB x 1\r\n").await;
        bob.until_pong().await;
        drop(bob);
        // Wait (bounded) until the server has noticed bob is gone.
        let t = Instant::now();
        while json(mon, "/connz?state=closed").await["num_connections"] != 1 {
            assert!(t.elapsed() < WAIT, "bob's close was never seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kept.push(alice);
    }

    let mut mismatches = Vec::new();
    for path in [
        "/varz",
        "/connz",
        "/connz?subs=1",
        "/connz?subs=detail",
        "/connz?state=closed&subs=1",
        "/connz?state=closed&subs=detail",
        "/routez",
        "/routez?subs=1",
        "/subsz",
        "/subsz?subs=1",
        "/subsz?subs=1&test=foo",
        "/leafz",
        "/gatewayz",
        "/accountz",
        "/healthz",
    ] {
        let a = http_get(ours.1, path).await;
        let b = http_get(theirs.1, path).await;
        assert_eq!(a.status, b.status, "{path}");
        assert_eq!(a.content_type, b.content_type, "{path}");
        let (ka, kb) = (key_paths(&a.json()), key_paths(&b.json()));
        if ka != kb {
            mismatches.push(format!(
                "{path}: only Starling {:?}, only nats-server {:?}",
                ka.difference(&kb).collect::<Vec<_>>(),
                kb.difference(&ka).collect::<Vec<_>>()
            ));
        }
        // Top-level order too.
        assert_eq!(
            keys_in_order(&a.body, 2),
            keys_in_order(&b.body, 2),
            "{path} order"
        );
    }
    assert!(
        mismatches.is_empty(),
        "key sets differ:\n{}",
        mismatches.join("\n")
    );

    // Per-connection key order, open and closed.
    for path in ["/connz?subs=1", "/connz?state=closed&subs=detail"] {
        let a = http_get(ours.1, path).await.body;
        let b = http_get(theirs.1, path).await.body;
        assert_eq!(
            keys_in_order(&a, 6),
            keys_in_order(&b, 6),
            "{path} connection order"
        );
    }
    // Error replies are the same too.
    for path in [
        "/connz?sort=bogus",
        "/connz?sort=stop",
        "/connz?state=nope",
        "/nope",
    ] {
        let a = http_get(ours.1, path).await;
        let b = http_get(theirs.1, path).await;
        assert_eq!((a.status, a.body), (b.status, b.body), "{path}");
    }
    drop(kept);
    server.shutdown().await;
}
