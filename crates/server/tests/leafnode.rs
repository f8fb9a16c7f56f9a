//! Leafnodes: a Starling leaf joins a Starling hub or a nats-server hub (2.9.10, 2.15.1), and
//! a nats-server leaf joins a Starling hub. In each pairing: pub/sub both ways, request/reply
//! across, a queue group with members on both sides (each message once), and the leaf keeps
//! serving its local clients while its hub is gone, then rejoins.
//!
//! Interest crossing is never waited for with a sleep: a request to a responder subscribed
//! after the subjects under test is retried until it is answered (interest crosses in order
//! on the leaf connection), or `has_interest` is polled, with a deadline.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::NatsServer;
use futures::StreamExt;
use starling_server::{Leafnodes, Remote, Server};

/// One side of a leafnode connection.
enum Node {
    Starling(Server),
    Nats(NatsServer),
}

impl Node {
    fn client_addr(&self) -> SocketAddr {
        match self {
            Self::Starling(s) => s.client_addr().unwrap(),
            Self::Nats(n) => n.addr,
        }
    }

    async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.client_addr().to_string())
            .await
            .expect("client connects")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A reference server run with config file text `conf`.
fn nats_with_conf(v215: bool, conf: &str) -> Option<NatsServer> {
    let path = std::env::temp_dir().join(format!(
        "starling-leaf-{}-{}.conf",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&path, conf).unwrap();
    let path = path.to_str().unwrap().to_string();
    if v215 {
        NatsServer::start_215(&["-c", &path])
    } else {
        NatsServer::start(&["-c", &path])
    }
}

/// A reference hub accepting leafnodes on `leaf_port`.
fn nats_hub(v215: bool, leaf_port: u16) -> Option<NatsServer> {
    nats_with_conf(
        v215,
        &format!("server_name: HUB\nleafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}\n"),
    )
}

/// A reference leaf joining the hub at `hub_leaf`.
fn nats_leaf(v215: bool, hub_leaf: SocketAddr) -> Option<NatsServer> {
    nats_with_conf(
        v215,
        &format!(
            "server_name: LEAF\nleafnodes {{ remotes [ {{ url: \"nats://{hub_leaf}\" }} ] }}\n"
        ),
    )
}

/// A Starling hub accepting leafnodes on `leaf_port` (0: any).
async fn starling_hub(leaf_port: u16) -> Server {
    Server::builder()
        .server_name("SHUB")
        .listen("127.0.0.1:0")
        .leafnodes(Leafnodes::new().listen(format!("127.0.0.1:{leaf_port}")))
        .start()
        .await
        .expect("hub starts")
}

/// A Starling leaf joining the hub at `hub_leaf`.
async fn starling_leaf(hub_leaf: SocketAddr) -> Server {
    Server::builder()
        .server_name("SLEAF")
        .listen("127.0.0.1:0")
        .leafnodes(
            Leafnodes::new()
                .reconnect(Duration::from_millis(100))
                .remote(Remote::new(format!("nats://{hub_leaf}"))),
        )
        .start()
        .await
        .expect("leaf starts")
}

/// Answers every request on `subject` with `answer`.
async fn respond(client: &async_nats::Client, subject: &str, answer: &'static str) {
    let mut sub = client.subscribe(subject.to_string()).await.unwrap();
    let c = client.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = c
                    .publish(reply, Bytes::from_static(answer.as_bytes()))
                    .await;
            }
        }
    });
    client.flush().await.unwrap();
}

/// Requests `subject` until it is answered (no responders means the interest has not
/// crossed yet), bounded by the test deadline.
async fn request_until_answered(client: &async_nats::Client, subject: &str) -> Bytes {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(subject.to_string(), "ping".into()),
        )
        .await;
        match attempt {
            Ok(Ok(m)) => return m.payload,
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("request to {subject} never answered: {other:?}"),
        }
    }
}

/// Interest of `far`'s earlier subscriptions has reached the other side: a responder
/// subscribed after them answers `near`.
async fn synced(near: &async_nats::Client, far: &async_nats::Client) {
    let subject = format!("sync.{}", fastrand::u64(..));
    respond(far, &subject, "synced").await;
    assert_eq!(request_until_answered(near, &subject).await, "synced");
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(common::WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// Pub/sub both ways, request/reply both ways, and a queue group across.
async fn exchange(hub: &Node, leaf: &Node) {
    let h = hub.client().await;
    let l = leaf.client().await;

    // Leaf -> hub.
    let mut at_hub = h.subscribe("leaf.to.hub").await.unwrap();
    synced(&l, &h).await;
    l.publish("leaf.to.hub", "from the leaf".into())
        .await
        .unwrap();
    assert_eq!(next(&mut at_hub).await.payload, "from the leaf");
    // Headers cross too.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Leaf", "yes");
    l.publish_with_headers("leaf.to.hub", headers, "h".into())
        .await
        .unwrap();
    let m = next(&mut at_hub).await;
    assert_eq!(m.headers.unwrap().get("X-Leaf").unwrap().as_str(), "yes");

    // Hub -> leaf.
    let mut at_leaf = l.subscribe("hub.to.leaf").await.unwrap();
    synced(&h, &l).await;
    h.publish("hub.to.leaf", "from the hub".into())
        .await
        .unwrap();
    assert_eq!(next(&mut at_leaf).await.payload, "from the hub");

    // Request/reply across, both ways.
    respond(&h, "svc.hub", "hub answers").await;
    assert_eq!(request_until_answered(&l, "svc.hub").await, "hub answers");
    respond(&l, "svc.leaf", "leaf answers").await;
    assert_eq!(request_until_answered(&h, "svc.leaf").await, "leaf answers");

    queue_group(hub, leaf).await;
}

/// A queue group with a member on each side: every message is delivered once; with the
/// hub's member gone, the hub's messages all reach the leaf's member.
async fn queue_group(hub: &Node, leaf: &Node) {
    let h = hub.client().await;
    let l = leaf.client().await;
    let mut hq = h.queue_subscribe("work", "g".into()).await.unwrap();
    let mut lq = l.queue_subscribe("work", "g".into()).await.unwrap();
    synced(&l, &h).await;
    synced(&h, &l).await;
    const N: usize = 40;
    for i in 0..N {
        h.publish("work", format!("h{i}").into()).await.unwrap();
        l.publish("work", format!("l{i}").into()).await.unwrap();
    }
    h.flush().await.unwrap();
    l.flush().await.unwrap();
    let mut seen = HashSet::new();
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while total < 2 * N {
        let m = tokio::select! {
            Some(m) = hq.next() => m,
            Some(m) = lq.next() => m,
            _ = tokio::time::sleep_until(deadline) => panic!("only {total} of {} queue messages", 2 * N),
        };
        total += 1;
        assert!(
            seen.insert(m.payload.clone()),
            "{:?} delivered twice",
            m.payload
        );
    }
    // Nothing more arrives: round trips through both sides, then nothing is pending.
    synced(&l, &h).await;
    synced(&h, &l).await;
    let extra = tokio::time::timeout(Duration::from_millis(100), async {
        tokio::select! {
            Some(m) = hq.next() => m,
            Some(m) = lq.next() => m,
        }
    })
    .await;
    assert!(
        extra.is_err(),
        "a queue message was delivered twice: {extra:?}"
    );

    // Only the leaf's member is left: the hub's messages cross to it.
    hq.unsubscribe().await.unwrap();
    h.flush().await.unwrap();
    let probe = format!("probe.{}", fastrand::u64(..));
    respond(&h, &probe, "ok").await;
    request_until_answered(&l, &probe).await;
    for i in 0..10 {
        h.publish("work", format!("only{i}").into()).await.unwrap();
    }
    for _ in 0..10 {
        let m = next(&mut lq).await;
        assert!(m.payload.starts_with(b"only"), "{:?}", m.payload);
    }
}

/// The leaf's own clients still talk to each other.
async fn leaf_serves_locally(leaf: &Node) {
    let a = leaf.client().await;
    let b = leaf.client().await;
    let mut sub = a.subscribe("local.only").await.unwrap();
    // (A flush right after connecting is no barrier in async-nats: a round trip is.)
    synced(&b, &a).await;
    b.publish("local.only", "still here".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, "still here");
    respond(&a, "local.svc", "local answer").await;
    assert_eq!(
        request_until_answered(&b, "local.svc").await,
        "local answer"
    );
}

/// After the hub came back, both directions work again.
async fn rejoined(hub: &Node, leaf: &Node) {
    let h = hub.client().await;
    let l = leaf.client().await;
    let mut at_hub = h.subscribe("again.to.hub").await.unwrap();
    synced(&l, &h).await;
    l.publish("again.to.hub", "back".into()).await.unwrap();
    assert_eq!(next(&mut at_hub).await.payload, "back");
    let mut at_leaf = l.subscribe("again.to.leaf").await.unwrap();
    synced(&h, &l).await;
    h.publish("again.to.leaf", "welcome back".into())
        .await
        .unwrap();
    assert_eq!(next(&mut at_leaf).await.payload, "welcome back");
}

// --- Starling hub, Starling leaf. ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_leaf_joins_a_starling_hub() {
    let hub = Node::Starling(starling_hub(0).await);
    let Node::Starling(h) = &hub else {
        unreachable!()
    };
    let leaf = Node::Starling(starling_leaf(h.leafnode_addr().unwrap()).await);
    exchange(&hub, &leaf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_leaf_outlives_its_starling_hub_and_rejoins() {
    let port = free_port();
    let hub = Node::Starling(starling_hub(port).await);
    let leaf = Node::Starling(starling_leaf(format!("127.0.0.1:{port}").parse().unwrap()).await);
    synced(&leaf.client().await, &hub.client().await).await;
    if let Node::Starling(h) = hub {
        h.shutdown().await;
    }
    leaf_serves_locally(&leaf).await;
    let hub = Node::Starling(starling_hub(port).await);
    rejoined(&hub, &leaf).await;
}

// --- Starling leaf, nats-server hub. ---

async fn starling_leaf_with_reference_hub(v215: bool) {
    let port = free_port();
    let Some(reference) = nats_hub(v215, port) else {
        return;
    };
    let hub = Node::Nats(reference);
    let leaf = Node::Starling(starling_leaf(format!("127.0.0.1:{port}").parse().unwrap()).await);
    exchange(&hub, &leaf).await;
    drop(hub); // the reference hub is killed
    leaf_serves_locally(&leaf).await;
    let hub = Node::Nats(nats_hub(v215, port).unwrap());
    rejoined(&hub, &leaf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_leaf_joins_a_nats_server_2_9_hub() {
    starling_leaf_with_reference_hub(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_leaf_joins_a_nats_server_2_15_hub() {
    starling_leaf_with_reference_hub(true).await;
}

// --- nats-server leaf, Starling hub. ---

async fn reference_leaf_with_starling_hub(v215: bool) {
    let port = free_port();
    let hub = Node::Starling(starling_hub(port).await);
    let Some(reference) = nats_leaf(v215, format!("127.0.0.1:{port}").parse().unwrap()) else {
        return;
    };
    let leaf = Node::Nats(reference);
    exchange(&hub, &leaf).await;
    if let Node::Starling(h) = hub {
        h.shutdown().await;
    }
    leaf_serves_locally(&leaf).await;
    let hub = Node::Starling(starling_hub(port).await);
    rejoined(&hub, &leaf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_2_9_leaf_joins_a_starling_hub() {
    reference_leaf_with_starling_hub(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_2_15_leaf_joins_a_starling_hub() {
    reference_leaf_with_starling_hub(true).await;
}

// --- The wire, against nats-server (a raw socket on the hub's leafnode port). ---

/// A leaf hub to probe: Starling, or a reference version.
enum Hub {
    Starling,
    V29,
    V215,
}

/// Starts `which` with a leafnode port; returns it (kept alive), its client address and its
/// leafnode address. `None` when the reference is not installed.
async fn probe_hub(which: Hub) -> Option<(Node, SocketAddr, SocketAddr)> {
    let port = free_port();
    let leaf_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let node = match which {
        Hub::Starling => Node::Starling(starling_hub(port).await),
        Hub::V29 => Node::Nats(nats_hub(false, port)?),
        Hub::V215 => Node::Nats(nats_hub(true, port)?),
    };
    let client = node.client_addr();
    Some((node, client, leaf_addr))
}

/// A raw leaf: reads the hub's INFO, sends a 2.9-style CONNECT, and reads until the hub's
/// `$LDS.` subject. Returns the socket, the first INFO, and the lines after CONNECT.
async fn raw_leaf(
    leaf_addr: SocketAddr,
    connect: &str,
) -> (common::Raw, serde_json::Value, Vec<String>) {
    let (mut raw, info) = common::Raw::connect_info(leaf_addr).await;
    let info: serde_json::Value = serde_json::from_str(info["INFO ".len()..].trim()).unwrap();
    raw.send(&format!("CONNECT {connect}\r\n")).await;
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.starts_with("LS+ $LDS.")) {
        lines.push(raw.line().await.expect("hub keeps the leaf"));
    }
    (raw, info, lines)
}

const LEAF_CONNECT: &str =
    r#"{"version":"2.9.10","server_id":"NRAWLEAF","name":"RAW","cluster":"RAW","headers":true}"#;

/// What every hub must say for real leafs to accept it, and what it answers a CONNECT with.
async fn hub_handshake(which: Hub) -> Option<(serde_json::Value, serde_json::Value)> {
    let (_node, _, leaf_addr) = probe_hub(which).await?;
    let (_raw, info, lines) = raw_leaf(leaf_addr, LEAF_CONNECT).await;
    let second = lines
        .iter()
        .find(|l| l.starts_with("INFO "))
        .expect("an INFO answers the CONNECT");
    let second: serde_json::Value = serde_json::from_str(second["INFO ".len()..].trim()).unwrap();
    Some((info, second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_handshake_matches_nats_server() {
    let mut seen = Vec::new();
    for which in [Hub::Starling, Hub::V29, Hub::V215] {
        let Some((info, second)) = hub_handshake(which).await else {
            continue;
        };
        // A 2.10+ leaf refuses a hub INFO without client_id and leafnode_urls ("wrong port").
        assert!(info["client_id"].as_u64().unwrap() > 0, "{info}");
        assert!(
            !info["leafnode_urls"].as_array().unwrap().is_empty(),
            "{info}"
        );
        assert_eq!(info["auth_required"], true, "{info}");
        assert_eq!(info["info_on_connect"], true, "{info}");
        assert!(info["nonce"].is_string(), "{info}");
        assert_eq!(second["connect_info"], true, "{second}");
        assert_eq!(second["remote_account"], "$G", "{second}");
        assert!(second.get("nonce").is_none(), "{second}");
        seen.push(info["version"].clone());
    }
    assert!(!seen.is_empty());
}

/// A leaf that sends the hub its own `$LDS.` subject back closes a loop: the hub says so with
/// nats-server's exact text (the peer matches "Loop detected") and closes.
async fn loop_error(which: Hub) -> Option<String> {
    let (_node, _, leaf_addr) = probe_hub(which).await?;
    let (mut raw, _, lines) = raw_leaf(leaf_addr, LEAF_CONNECT).await;
    let lds = lines.iter().find(|l| l.starts_with("LS+ $LDS.")).unwrap();
    raw.send(&format!("{lds}\r\n")).await;
    let rest = raw.until_eof().await;
    Some(
        rest.into_iter()
            .find(|l| l.starts_with("-ERR"))
            .expect("an -ERR before the close"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_detection_error_matches_nats_server() {
    let ours = loop_error(Hub::Starling).await.unwrap();
    assert_eq!(
        ours,
        r#"-ERR 'Loop detected for leafnode account="$G". Delaying attempt to reconnect for 30s'"#
    );
    for which in [Hub::V29, Hub::V215] {
        if let Some(theirs) = loop_error(which).await {
            assert_eq!(ours, theirs);
        }
    }
}

/// A queue group's weight is re-announced on every change (`LS+ q g 1`, `LS+ q g 2`,
/// `LS+ q g 1`), a plain subject once (`LS+`) and withdrawn once (`LS-`), as nats-server does.
async fn interest_updates(which: Hub) -> Option<Vec<String>> {
    let (_node, client, leaf_addr) = probe_hub(which).await?;
    let (mut raw, _, _) = raw_leaf(leaf_addr, LEAF_CONNECT).await;
    let mut c = common::Raw::quiet(client).await;
    c.send(
        "SUB q g 1\r\nSUB q g 2\r\nSUB plain 3\r\nSUB plain 4\r\nUNSUB 1\r\nUNSUB 3\r\nUNSUB 4\r\n",
    )
    .await;
    c.until_pong().await;
    let mut got = Vec::new();
    while got.len() < 5 {
        let line = raw.line().await.expect("hub keeps the leaf");
        // (The rest of the hub's snapshot may still be coming, in any order.)
        if line.starts_with("LS+ q ") || line.starts_with("LS+ plain") || line.starts_with("LS- ") {
            got.push(line);
        } else if line == "PING" {
            raw.send("PONG\r\n").await;
        }
    }
    Some(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interest_updates_match_nats_server() {
    let ours = interest_updates(Hub::Starling).await.unwrap();
    assert_eq!(
        ours,
        [
            "LS+ q g 1",
            "LS+ q g 2",
            "LS+ plain",
            "LS+ q g 1",
            "LS- plain"
        ]
    );
    for which in [Hub::V29, Hub::V215] {
        if let Some(theirs) = interest_updates(which).await {
            assert_eq!(ours, theirs);
        }
    }
}

/// With leafnode authorization, a leaf must present it; without credentials it is refused
/// with `Authorization Violation`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leafnode_authorization_is_enforced() {
    let hub = Server::builder()
        .listen("127.0.0.1:0")
        .leafnodes(
            Leafnodes::new()
                .listen("127.0.0.1:0")
                .authorization("leaf", "s3cret"),
        )
        .start()
        .await
        .unwrap();
    let addr = hub.leafnode_addr().unwrap();
    let (mut raw, _) = common::Raw::connect_info(addr).await;
    raw.send(&format!("CONNECT {LEAF_CONNECT}\r\n")).await;
    assert_eq!(
        raw.line().await.as_deref(),
        Some("-ERR 'Authorization Violation'")
    );
    // The right credentials in the remote's URL.
    let leaf = starling_leaf_url(&format!("nats://leaf:s3cret@{addr}")).await;
    let (hub, leaf) = (Node::Starling(hub), Node::Starling(leaf));
    synced(&leaf.client().await, &hub.client().await).await;
}

async fn starling_leaf_url(url: &str) -> Server {
    Server::builder()
        .listen("127.0.0.1:0")
        .leafnodes(
            Leafnodes::new()
                .reconnect(Duration::from_millis(100))
                .remote(Remote::new(url)),
        )
        .start()
        .await
        .expect("leaf starts")
}

// --- Accounts: each side binds one account. ---

/// A Starling hub with accounts A and B; leafnode user `la` is bound to A.
async fn hub_with_accounts() -> Server {
    use starling_server::{Account, LeafUser, User};
    Server::builder()
        .listen("127.0.0.1:0")
        .account(Account::new("A").user(User::new("a", "pa")))
        .account(Account::new("B").user(User::new("b", "pb")))
        .leafnodes(
            Leafnodes::new()
                .listen("127.0.0.1:0")
                .user(LeafUser::new("la", "pla").account("A")),
        )
        .start()
        .await
        .unwrap()
}

/// Messages cross between the leaf's account `leaf_account` (user `leaf_user`) and the hub's
/// account A only: the hub's account B sees nothing.
async fn accounts_bound(hub: &Server, leaf: SocketAddr, leaf_user: (&str, &str)) {
    let hub_a = common::login(hub.client_addr().unwrap(), "a", "pa").await;
    let hub_b = common::login(hub.client_addr().unwrap(), "b", "pb").await;
    let l = common::login(leaf, leaf_user.0, leaf_user.1).await;
    let mut in_a = hub_a.subscribe("acc.x").await.unwrap();
    let mut in_b = hub_b.subscribe("acc.x").await.unwrap();
    synced(&l, &hub_a).await;
    l.publish("acc.x", "to A".into()).await.unwrap();
    assert_eq!(next(&mut in_a).await.payload, "to A");
    let mut at_leaf = l.subscribe("acc.y").await.unwrap();
    synced(&hub_a, &l).await;
    hub_b.publish("acc.y", "from B".into()).await.unwrap();
    hub_a.publish("acc.y", "from A".into()).await.unwrap();
    assert_eq!(next(&mut at_leaf).await.payload, "from A");
    synced(&l, &hub_a).await;
    let stray = tokio::time::timeout(Duration::from_millis(50), in_b.next()).await;
    assert!(stray.is_err(), "account B got {stray:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_binds_one_account_on_each_side() {
    use starling_server::{Account, User};
    let hub = hub_with_accounts().await;
    let url = format!("nats://la:pla@{}", hub.leafnode_addr().unwrap());
    let leaf = Server::builder()
        .listen("127.0.0.1:0")
        .account(Account::new("L").user(User::new("l", "pl")))
        .leafnodes(
            Leafnodes::new()
                .reconnect(Duration::from_millis(100))
                .remote(Remote::new(url).account("L")),
        )
        .start()
        .await
        .unwrap();
    accounts_bound(&hub, leaf.client_addr().unwrap(), ("l", "pl")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_leaf_binds_its_account_to_a_starling_hub_account() {
    let hub = hub_with_accounts().await;
    let conf = format!(
        "server_name: LEAF\naccounts {{ LA {{ users [ {{ user: lu, password: lp }} ] }} }}\n\
         leafnodes {{ remotes [ {{ url: \"nats://la:pla@{}\", account: LA }} ] }}\n",
        hub.leafnode_addr().unwrap()
    );
    let Some(leaf) = nats_with_conf(true, &conf) else {
        return;
    };
    accounts_bound(&hub, leaf.addr, ("lu", "lp")).await;
}

// --- Monitoring. ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leafz_lists_the_connection_on_both_sides() {
    let hub = Server::builder()
        .server_name("SHUB")
        .listen("127.0.0.1:0")
        .monitor("127.0.0.1:0")
        .leafnodes(Leafnodes::new().listen("127.0.0.1:0"))
        .start()
        .await
        .unwrap();
    let leaf = Server::builder()
        .server_name("SLEAF")
        .listen("127.0.0.1:0")
        .monitor("127.0.0.1:0")
        .leafnodes(Leafnodes::new().remote(Remote::new(format!(
            "nats://{}",
            hub.leafnode_addr().unwrap()
        ))))
        .start()
        .await
        .unwrap();
    let (hub, leaf) = (Node::Starling(hub), Node::Starling(leaf));
    let at_leaf = leaf.client().await;
    let _sub = at_leaf.subscribe("leafz.subject").await.unwrap();
    synced(&hub.client().await, &at_leaf).await;
    let (Node::Starling(hub), Node::Starling(leaf)) = (&hub, &leaf) else {
        unreachable!()
    };
    let hub_leafz = common::http_get(hub.monitor_addr().unwrap(), "/leafz?subs=1")
        .await
        .json();
    assert_eq!(hub_leafz["leafnodes"], 1, "{hub_leafz}");
    let l = &hub_leafz["leafs"][0];
    assert_eq!(l["name"], "SLEAF");
    assert_eq!(l["is_spoke"], false);
    assert_eq!(l["account"], "$G");
    assert_eq!(l["ip"], "127.0.0.1");
    let subs: Vec<&str> = l["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(subs.contains(&"leafz.subject"), "{subs:?}");
    assert!(subs.iter().any(|s| s.starts_with("$LDS.")), "{subs:?}");
    let leaf_leafz = common::http_get(leaf.monitor_addr().unwrap(), "/leafz")
        .await
        .json();
    let h = &leaf_leafz["leafs"][0];
    assert_eq!(h["name"], "SHUB");
    assert_eq!(h["is_spoke"], true);
    assert_eq!(h["port"], hub.leafnode_addr().unwrap().port());
    assert!(h.get("subscriptions_list").is_none());
    let varz = common::http_get(hub.monitor_addr().unwrap(), "/varz")
        .await
        .json();
    assert_eq!(varz["leafnodes"], 1);
    assert_eq!(varz["leaf"]["port"], hub.leafnode_addr().unwrap().port());
    assert_eq!(hub.stats().leafnodes, 1);
    let accountz = common::http_get(hub.monitor_addr().unwrap(), "/accountz?acc=$G")
        .await
        .json();
    assert_eq!(
        accountz["account_detail"]["leafnode_connections"], 1,
        "{accountz}"
    );
    let accstatz = common::http_get(hub.monitor_addr().unwrap(), "/accstatz?accs=$G")
        .await
        .json();
    assert_eq!(accstatz["account_statz"][0]["leafnodes"], 1, "{accstatz}");
}

// --- Topologies: a clustered hub, a daisy chain. ---

/// A leaf joined to one node of a two-node Starling hub cluster reaches clients of the other
/// node: the hub tells the leaf its routes' interest, a leaf's message goes on to routes
/// (unlike a route's), and a routed message reaches the leaf. A queue group with members on
/// the leaf and on the far node gets each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_of_a_clustered_hub_reaches_the_whole_cluster() {
    let h1 = common::clustered(
        Server::builder().leafnodes(Leafnodes::new().listen("127.0.0.1:0")),
        "H1",
        "hubs",
        &[],
    )
    .await;
    let seed = format!("nats-route://{}", h1.cluster_addr().unwrap());
    let h2 = common::clustered(Server::builder(), "H2", "hubs", &[seed]).await;
    let leaf = starling_leaf(h1.leafnode_addr().unwrap()).await;
    let (h1, h2, leaf) = (Node::Starling(h1), Node::Starling(h2), Node::Starling(leaf));
    let far = h2.client().await;
    let l = leaf.client().await;

    let mut at_far = far.subscribe("far.x").await.unwrap();
    synced(&l, &far).await;
    l.publish("far.x", "leaf to far node".into()).await.unwrap();
    assert_eq!(next(&mut at_far).await.payload, "leaf to far node");

    let mut at_leaf = l.subscribe("leaf.x").await.unwrap();
    synced(&far, &l).await;
    far.publish("leaf.x", "far node to leaf".into())
        .await
        .unwrap();
    assert_eq!(next(&mut at_leaf).await.payload, "far node to leaf");

    // Queue members on the leaf and the far node; published on the middle node.
    let mid = h1.client().await;
    let mut fq = far.queue_subscribe("jobs", "w".into()).await.unwrap();
    let mut lq = l.queue_subscribe("jobs", "w".into()).await.unwrap();
    synced(&mid, &far).await;
    synced(&mid, &l).await;
    const N: usize = 30;
    for i in 0..N {
        mid.publish("jobs", format!("{i}").into()).await.unwrap();
    }
    let mut seen = HashSet::new();
    while seen.len() < N {
        let m = tokio::select! {
            Some(m) = fq.next() => m,
            Some(m) = lq.next() => m,
            _ = tokio::time::sleep(common::WAIT) => panic!("only {} of {N} jobs", seen.len()),
        };
        assert!(seen.insert(m.payload.clone()), "{:?} twice", m.payload);
    }
    synced(&mid, &far).await;
    synced(&mid, &l).await;
    let extra = tokio::time::timeout(Duration::from_millis(100), async {
        tokio::select! {
            Some(m) = fq.next() => m,
            Some(m) = lq.next() => m,
        }
    })
    .await;
    assert!(extra.is_err(), "a job was delivered twice: {extra:?}");
}

/// A -> B -> C: B is a leaf of A and the hub of C. C's clients reach A's and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leafnodes_chain_over_two_hops() {
    let a = starling_hub(0).await;
    let b = Server::builder()
        .listen("127.0.0.1:0")
        .leafnodes(
            Leafnodes::new()
                .listen("127.0.0.1:0")
                .reconnect(Duration::from_millis(100))
                .remote(Remote::new(format!(
                    "nats://{}",
                    a.leafnode_addr().unwrap()
                ))),
        )
        .start()
        .await
        .unwrap();
    let c = starling_leaf(b.leafnode_addr().unwrap()).await;
    let (a, _b, c) = (Node::Starling(a), Node::Starling(b), Node::Starling(c));
    let (ca, cc) = (a.client().await, c.client().await);
    let mut at_a = ca.subscribe("chain.a").await.unwrap();
    synced(&cc, &ca).await;
    cc.publish("chain.a", "from C".into()).await.unwrap();
    assert_eq!(next(&mut at_a).await.payload, "from C");
    let mut at_c = cc.subscribe("chain.c").await.unwrap();
    synced(&ca, &cc).await;
    ca.publish("chain.c", "from A".into()).await.unwrap();
    assert_eq!(next(&mut at_c).await.payload, "from A");
}

/// Two servers that each join the other close a loop: the `$LDS.` subjects tell, one side
/// says `Loop detected` and the connection closes (its dialer then waits 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_of_leafnodes_is_detected_and_broken() {
    let (pa, pb) = (free_port(), free_port());
    let node = |listen: u16, remote: u16| {
        Server::builder()
            .listen("127.0.0.1:0")
            .leafnodes(
                Leafnodes::new()
                    .listen(format!("127.0.0.1:{listen}"))
                    .reconnect(Duration::from_millis(50))
                    .remote(Remote::new(format!("nats://127.0.0.1:{remote}"))),
            )
            .start()
    };
    let a = node(pa, pb).await.unwrap();
    let mut events = a.events();
    let b = node(pb, pa).await.unwrap();
    let mut b_events = b.events();
    // One side finds the loop and closes the link that closes it.
    let found = tokio::time::timeout(common::WAIT, async {
        loop {
            let e = tokio::select! {
                Some(e) = events.next() => e,
                Some(e) = b_events.next() => e,
            };
            if let starling_server::Event::LeafnodeClosed {
                loop_detected: true,
                ..
            } = e
            {
                return e;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no loop detected");
    // The loop stays broken: its dialler waits 30 s (observed for a moment).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let links = a.stats().leafnodes + b.stats().leafnodes;
    assert!(links <= 2, "{links} link ends after the loop was broken");
}

// --- TLS. ---

#[cfg(feature = "tls")]
fn leaf_tls(certs: &common::certs::Certs) -> starling_server::TlsConfig {
    // The leaf presents the test server certificate (it is also a client certificate).
    starling_server::TlsConfig::new(certs.path("server-cert.pem"), certs.path("server-key.pem"))
        .ca_file(certs.ca())
}

#[cfg(feature = "tls")]
fn nats_tls_block(certs: &common::certs::Certs) -> String {
    format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\" }}",
        certs.path("server-cert.pem").display(),
        certs.path("server-key.pem").display(),
        certs.ca().display()
    )
}

/// A hub with leafnode TLS sends INFO in plaintext with `tls_required`, then the leaf starts
/// the handshake; messages flow over TLS, Starling to Starling and with nats-server 2.15.1
/// in both roles.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leafnodes_over_tls() {
    let certs = common::certs::Certs::new("leaf");
    let hub = Server::builder()
        .listen("127.0.0.1:0")
        .leafnodes(Leafnodes::new().listen("127.0.0.1:0").tls(certs.server()))
        .start()
        .await
        .unwrap();
    let hub_leaf = hub.leafnode_addr().unwrap();
    let (_, info) = common::Raw::connect_info(hub_leaf).await;
    assert!(info.contains("\"tls_required\":true"), "{info}");
    let leaf = Server::builder()
        .listen("127.0.0.1:0")
        .leafnodes(
            Leafnodes::new()
                .reconnect(Duration::from_millis(100))
                .remote(Remote::new(format!("nats://{hub_leaf}")).tls(leaf_tls(&certs))),
        )
        .start()
        .await
        .unwrap();
    let hub = Node::Starling(hub);
    let leaf = Node::Starling(leaf);
    synced(&leaf.client().await, &hub.client().await).await;
    synced(&hub.client().await, &leaf.client().await).await;

    // A nats-server 2.15.1 leaf over TLS to the Starling hub.
    let conf = format!(
        "server_name: NLEAF\nleafnodes {{ remotes [ {{ url: \"tls://{hub_leaf}\", {} }} ] }}\n",
        nats_tls_block(&certs)
    );
    if let Some(reference) = nats_with_conf(true, &conf) {
        let reference = Node::Nats(reference);
        synced(&reference.client().await, &hub.client().await).await;
        synced(&hub.client().await, &reference.client().await).await;
    }

    // A Starling leaf over TLS to a nats-server 2.15.1 hub.
    let port = free_port();
    let conf = format!(
        "server_name: NHUB\nleafnodes {{ listen: \"127.0.0.1:{port}\", {} }}\n",
        nats_tls_block(&certs)
    );
    if let Some(reference) = nats_with_conf(true, &conf) {
        let reference = Node::Nats(reference);
        let leaf = Server::builder()
            .listen("127.0.0.1:0")
            .leafnodes(
                Leafnodes::new()
                    .reconnect(Duration::from_millis(100))
                    .remote(Remote::new(format!("nats://127.0.0.1:{port}")).tls(leaf_tls(&certs))),
            )
            .start()
            .await
            .unwrap();
        let leaf = Node::Starling(leaf);
        synced(&leaf.client().await, &reference.client().await).await;
        synced(&reference.client().await, &leaf.client().await).await;
    }
}

// --- Credentials (operator mode). ---

/// A leaf authenticates with a `.creds` file: the hub (in operator mode) checks the user JWT
/// and the nonce signature, and binds the leaf to the user's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_authenticates_with_a_credentials_file() {
    use nats_jwt::Token;
    use nkeys::KeyPair;
    let op = KeyPair::new_operator();
    let acc = KeyPair::new_account();
    let account_jwt = Token::new_account(acc.public_key()).name("A").sign(&op);
    let leaf_user = KeyPair::new_user();
    let leaf_jwt = Token::new_user(acc.public_key(), leaf_user.public_key()).sign(&acc);
    let client_user = KeyPair::new_user();
    let client_jwt = Token::new_user(acc.public_key(), client_user.public_key()).sign(&acc);
    let hub = Server::builder()
        .listen("127.0.0.1:0")
        .operator(common::jwt::operator(&op, serde_json::json!({})))
        .resolver_preload(&account_jwt)
        .leafnodes(Leafnodes::new().listen("127.0.0.1:0"))
        .start()
        .await
        .unwrap();
    let path = std::env::temp_dir().join(format!(
        "starling-leaf-{}-{}.creds",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(
        &path,
        common::jwt::creds(&leaf_jwt, &leaf_user.seed().unwrap()),
    )
    .unwrap();
    let leaf = Server::builder()
        .listen("127.0.0.1:0")
        .leafnodes(
            Leafnodes::new()
                .reconnect(Duration::from_millis(100))
                .remote(
                    Remote::new(format!("nats://{}", hub.leafnode_addr().unwrap()))
                        .credentials(&path),
                ),
        )
        .start()
        .await
        .unwrap();
    let at_hub = async_nats::ConnectOptions::with_credentials(&common::jwt::creds(
        &client_jwt,
        &client_user.seed().unwrap(),
    ))
    .unwrap()
    .connect(hub.client_addr().unwrap().to_string())
    .await
    .unwrap();
    let leaf = Node::Starling(leaf);
    let l = leaf.client().await;
    let mut sub = at_hub.subscribe("creds.x").await.unwrap();
    synced(&l, &at_hub).await;
    l.publish("creds.x", "signed in".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, "signed in");
    let _ = std::fs::remove_file(&path);
}

/// A leaf *cluster* (two routed nodes, each with its own connection to the hub): a message
/// between two of its nodes crosses their route once and never comes back through the hub
/// (the hub skips interest and messages of the leaf's own cluster, as nats-server does by
/// cluster name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_cluster_gets_each_message_once() {
    let hub = starling_hub(0).await;
    let hub_leaf = hub.leafnode_addr().unwrap();
    let leafs = || {
        Leafnodes::new()
            .reconnect(Duration::from_millis(100))
            .remote(Remote::new(format!("nats://{hub_leaf}")))
    };
    let l1 = common::clustered(Server::builder().leafnodes(leafs()), "L1", "edge", &[]).await;
    let seed = format!("nats-route://{}", l1.cluster_addr().unwrap());
    let l2 = common::clustered(Server::builder().leafnodes(leafs()), "L2", "edge", &[seed]).await;
    let (hub, l1, l2) = (Node::Starling(hub), Node::Starling(l1), Node::Starling(l2));
    let (h, c1, c2) = (hub.client().await, l1.client().await, l2.client().await);
    let mut at_l2 = c2.subscribe("edge.x").await.unwrap();
    let mut at_hub = h.subscribe("edge.x").await.unwrap();
    synced(&c1, &c2).await; // over the route
    synced(&c1, &h).await; // over L1's hub
    synced(&h, &c2).await; // the hub knows L2's interest
    c1.publish("edge.x", "once".into()).await.unwrap();
    h.publish("edge.x", "from hub".into()).await.unwrap();
    let mut got = vec![
        next(&mut at_l2).await.payload,
        next(&mut at_l2).await.payload,
    ];
    got.sort();
    assert_eq!(got, ["from hub", "once"]);
    // (The hub's client hears its own message too.)
    let mut got = vec![
        next(&mut at_hub).await.payload,
        next(&mut at_hub).await.payload,
    ];
    got.sort();
    assert_eq!(got, ["from hub", "once"]);
    synced(&c1, &c2).await;
    synced(&h, &c2).await;
    let extra = tokio::time::timeout(Duration::from_millis(100), at_l2.next()).await;
    assert!(extra.is_err(), "a duplicate reached L2: {extra:?}");
}

/// A hub cluster gossips its nodes' leafnode URLs (route INFO `leafnode_urls`), the hub tells
/// its leafs (`leafnode_urls` in the leaf INFO): a leaf configured with one hub node fails
/// over to another when that node goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_fails_over_to_another_node_of_the_hub_cluster() {
    let listen = || Leafnodes::new().listen("127.0.0.1:0");
    let h1 = common::clustered(Server::builder().leafnodes(listen()), "H1", "hubs", &[]).await;
    let seed = format!("nats-route://{}", h1.cluster_addr().unwrap());
    let h2 = common::clustered(Server::builder().leafnodes(listen()), "H2", "hubs", &[seed]).await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while h1.peers().is_empty() || h2.peers().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hub cluster never formed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The leaf is told both nodes' leafnode URLs.
    let (mut raw, info) = common::Raw::connect_info(h1.leafnode_addr().unwrap()).await;
    let h2_leaf = h2.leafnode_addr().unwrap().to_string();
    assert!(info.contains(&h2_leaf), "{info}");
    raw.send("PING\r\n").await;
    let leaf = Node::Starling(starling_leaf(h1.leafnode_addr().unwrap()).await);
    let l = leaf.client().await;
    synced(&l, &Node::Starling(h1.clone()).client().await).await;
    h1.shutdown().await;
    // Rejoined through H2.
    let h2 = Node::Starling(h2);
    let at_h2 = h2.client().await;
    let mut sub = at_h2.subscribe("failover.x").await.unwrap();
    synced(&l, &at_h2).await;
    l.publish("failover.x", "via H2".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, "via H2");
}

/// A hub with more interest than a connection may have pending sends it to a new leaf in
/// chunks paced by the writer: the leaf gets all of it and is not cut off as a slow consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_interest_set_reaches_a_new_leaf_in_chunks() {
    let hub = Server::builder()
        .listen("127.0.0.1:0")
        .max_payload(16 * 1024)
        .max_pending(128 * 1024)
        .leafnodes(Leafnodes::new().listen("127.0.0.1:0"))
        .start()
        .await
        .unwrap();
    let c = hub.client();
    const N: usize = 20_000; // ~600 KiB of LS+ lines
    let mut subs = Vec::with_capacity(N);
    for i in 0..N {
        subs.push(
            c.subscribe(format!("bulk.interest.subject.{i:06}"))
                .await
                .unwrap(),
        );
    }
    let leaf = starling_leaf(hub.leafnode_addr().unwrap()).await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    // (The snapshot comes in no particular order.)
    while !(0..N).all(|i| leaf.has_interest(&format!("bulk.interest.subject.{i:06}"))) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the snapshot never arrived whole"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hub.stats().leafnodes, 1);
    assert_eq!(hub.stats().slow_consumers, 0);
}

// --- Permissions. ---

/// Nothing more arrives on `sub` within a short window after a round trip.
async fn nothing_more(
    sub: &mut async_nats::Subscriber,
    near: &async_nats::Client,
    far: &async_nats::Client,
) {
    synced(near, far).await;
    let extra = tokio::time::timeout(Duration::from_millis(100), sub.next()).await;
    assert!(extra.is_err(), "unexpected {extra:?}");
}

/// A remote's `deny_exports` keeps local messages on those subjects from the hub, its
/// `deny_imports` keeps the hub's from us (Starling and nats-server 2.15.1 hubs).
async fn deny_lists(hub: &Node, hub_leaf: SocketAddr) {
    let leaf = Server::builder()
        .listen("127.0.0.1:0")
        .leafnodes(
            Leafnodes::new()
                .reconnect(Duration::from_millis(100))
                .remote(
                    Remote::new(format!("nats://{hub_leaf}"))
                        .deny_exports(["private.>"])
                        .deny_imports(["secret.>"]),
                ),
        )
        .start()
        .await
        .unwrap();
    let leaf = Node::Starling(leaf);
    let (h, l) = (hub.client().await, leaf.client().await);
    let mut at_hub = h.subscribe("*.x").await.unwrap(); // overlaps the deny entry
    let mut private_at_hub = h.subscribe("private.y").await.unwrap();
    synced(&l, &h).await;
    l.publish("private.x", "no".into()).await.unwrap();
    l.publish("private.y", "no".into()).await.unwrap();
    l.publish("public.x", "yes".into()).await.unwrap();
    assert_eq!(next(&mut at_hub).await.payload, "yes");
    nothing_more(&mut at_hub, &l, &h).await;
    nothing_more(&mut private_at_hub, &l, &h).await;

    let mut at_leaf = l.subscribe("*.z").await.unwrap();
    let mut secret_at_leaf = l.subscribe("secret.w").await.unwrap();
    synced(&h, &l).await;
    h.publish("secret.z", "no".into()).await.unwrap();
    h.publish("secret.w", "no".into()).await.unwrap();
    h.publish("open.z", "yes".into()).await.unwrap();
    assert_eq!(next(&mut at_leaf).await.payload, "yes");
    nothing_more(&mut at_leaf, &h, &l).await;
    nothing_more(&mut secret_at_leaf, &h, &l).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remotes_deny_lists_filter_both_ways() {
    let hub = starling_hub(0).await;
    let addr = hub.leafnode_addr().unwrap();
    deny_lists(&Node::Starling(hub), addr).await;
    let port = free_port();
    if let Some(reference) = nats_hub(true, port) {
        deny_lists(
            &Node::Nats(reference),
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
        .await;
    }
}

/// On a hub, a leafnode authenticated as a user with permissions may publish (send us) and
/// subscribe (be sent) only what they allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_users_permissions_apply_on_the_hub() {
    use starling_server::{Permissions, SubjectPermission, User};
    let perms = Permissions::new()
        .publish(SubjectPermission::new().allow(["up.>", "_INBOX.>", "sync.>"]))
        .subscribe(SubjectPermission::new().allow(["down.>", "_INBOX.>", "sync.>"]));
    let hub = Server::builder()
        .listen("127.0.0.1:0")
        .user(User::new("leaf", "pw").permissions(perms))
        .user(User::new("app", "pw"))
        .leafnodes(Leafnodes::new().listen("127.0.0.1:0"))
        .start()
        .await
        .unwrap();
    let leaf = starling_leaf_url(&format!("nats://leaf:pw@{}", hub.leafnode_addr().unwrap())).await;
    let h = common::login(hub.client_addr().unwrap(), "app", "pw").await;
    let leaf = Node::Starling(leaf);
    let l = leaf.client().await;
    // (A wildcard beyond what the leaf may publish is not even announced to it, as in
    // nats-server: each subject on its own.)
    let mut up_at_hub = h.subscribe("up.a").await.unwrap();
    let mut other_at_hub = h.subscribe("other.a").await.unwrap();
    synced(&l, &h).await;
    l.publish("other.a", "no".into()).await.unwrap();
    l.publish("up.a", "yes".into()).await.unwrap();
    assert_eq!(next(&mut up_at_hub).await.payload, "yes");
    nothing_more(&mut other_at_hub, &l, &h).await;
    let mut at_leaf = l.subscribe("*.b").await.unwrap();
    synced(&h, &l).await;
    h.publish("other.b", "no".into()).await.unwrap();
    h.publish("down.b", "yes".into()).await.unwrap();
    assert_eq!(next(&mut at_leaf).await.payload, "yes");
    nothing_more(&mut at_leaf, &h, &l).await;
}

/// What a hub (in cluster `C1`, with leafnode authorization when `auth`) answers a CONNECT
/// it refuses: its first line, then EOF.
async fn refusal(which: Hub, auth: bool, connect: &str) -> Option<String> {
    let port = free_port();
    let node = match which {
        Hub::Starling => {
            let mut l = Leafnodes::new().listen(format!("127.0.0.1:{port}"));
            if auth {
                l = l.authorization("lu", "lp");
            }
            Node::Starling(
                common::clustered(Server::builder().leafnodes(l), "HUBX", "C1", &[]).await,
            )
        }
        Hub::V29 | Hub::V215 => {
            let auth = if auth {
                ", authorization { user: lu, password: lp }"
            } else {
                ""
            };
            let conf = format!(
                "cluster {{ name: C1, listen: \"127.0.0.1:{}\" }}\nleafnodes {{ listen: \"127.0.0.1:{port}\"{auth} }}\n",
                free_port()
            );
            Node::Nats(nats_with_conf(matches!(which, Hub::V215), &conf)?)
        }
    };
    let (mut raw, _) =
        common::Raw::connect_info(format!("127.0.0.1:{port}").parse().unwrap()).await;
    raw.send(&format!("CONNECT {connect}\r\n")).await;
    let lines = raw.until_eof().await;
    drop(node);
    Some(lines.join("|"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_leaf_connects_match_nats_server() {
    let cases: &[(bool, &str, &str)] = &[
        (
            false,
            r#"{"lang":"go","verbose":false}"#,
            "-ERR 'attempted to connect to leaf node port'",
        ),
        (
            true,
            r#"{"lang":"go","verbose":false}"#,
            "-ERR 'Authorization Violation'",
        ),
        (
            false,
            r#"{"name":"x","cluster":"C1"}"#,
            "-ERR 'remote leafnode has same cluster name'",
        ),
        (
            false,
            r#"{"name":"x","gateway":"G"}"#,
            r#"-ERR 'Rejecting connection from gateway "G" on the leafnode port'"#,
        ),
        (
            true,
            r#"{"name":"x","user":"lu","pass":"bad"}"#,
            "-ERR 'Authorization Violation'",
        ),
        (false, "{bad", ""),
    ];
    for &(auth, connect, want) in cases {
        for which in [Hub::Starling, Hub::V29, Hub::V215] {
            if let Some(got) = refusal(which, auth, connect).await {
                assert_eq!(got, want, "{connect} (auth: {auth})");
            }
        }
    }
}

/// A leaf that connects again while its old connection is still open replaces it: the hub
/// tells the old one `Duplicate Remote LeafNode Connection` and closes it, as nats-server.
async fn old_connection_after_duplicate(which: Hub) -> Option<Vec<String>> {
    let (_node, _, leaf_addr) = probe_hub(which).await?;
    let connect = r#"{"version":"2.15.1","server_id":"NDUP","name":"DUP","cluster":"DUP","headers":true,"remote_account":"$G"}"#;
    let (mut old, _, _) = raw_leaf(leaf_addr, connect).await;
    let (_new, _, _) = raw_leaf(leaf_addr, connect).await;
    let rest = old.until_eof().await;
    Some(
        rest.into_iter()
            .filter(|l| !l.starts_with("LS+") && l != "PING")
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_leaf_replaces_its_stale_connection_as_nats_server_does() {
    for which in [Hub::Starling, Hub::V29, Hub::V215] {
        if let Some(rest) = old_connection_after_duplicate(which).await {
            assert_eq!(rest, ["-ERR 'Duplicate Remote LeafNode Connection'"]);
        }
    }
}

/// A Starling leaf of a nats-server 2.15.1 hub cluster learns the other node's leafnode URL
/// from the hub's INFO and fails over to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starling_leaf_fails_over_within_a_nats_server_hub_cluster() {
    let (c1, c2, l1, l2) = (free_port(), free_port(), free_port(), free_port());
    let node = |name: &str, cluster: u16, leaf: u16, routes: &str| {
        format!(
            "server_name: {name}\ncluster {{ name: H, listen: \"127.0.0.1:{cluster}\"{routes} }}\n\
             leafnodes {{ listen: \"127.0.0.1:{leaf}\" }}\n"
        )
    };
    let Some(n1) = nats_with_conf(true, &node("N1", c1, l1, "")) else {
        return;
    };
    let routes = format!(", routes: [\"nats-route://127.0.0.1:{c1}\"]");
    let n2 = Node::Nats(nats_with_conf(true, &node("N2", c2, l2, &routes)).unwrap());
    let n1 = Node::Nats(n1);
    synced(&n2.client().await, &n1.client().await).await; // the hub cluster formed
    let leaf = Node::Starling(starling_leaf(format!("127.0.0.1:{l1}").parse().unwrap()).await);
    let l = leaf.client().await;
    synced(&l, &n1.client().await).await;
    drop(n1);
    let at_n2 = n2.client().await;
    let mut sub = at_n2.subscribe("failover.y").await.unwrap();
    synced(&l, &at_n2).await;
    l.publish("failover.y", "via N2".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, "via N2");
}

/// A server whose hub accepts the TCP connection but never says INFO still shuts down at
/// once: the dialer's wait for the INFO ends with the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_silent_hub() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // never accepts
    let leaf = starling_leaf(silent.local_addr().unwrap()).await;
    // Let the dial reach the INFO wait (observed via the kernel's accept queue).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    silent.set_nonblocking(true).unwrap();
    loop {
        if let Ok((s, _)) = silent.accept() {
            std::mem::forget(s); // keep it open and silent
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leaf never dialled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), leaf.shutdown())
        .await
        .expect("shutdown ends");
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "shutdown took {:?}",
        start.elapsed()
    );
}
