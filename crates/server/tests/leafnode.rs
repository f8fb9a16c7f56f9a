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
