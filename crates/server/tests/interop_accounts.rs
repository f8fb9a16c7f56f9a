//! Accounts across a mixed cluster: a Starling node and a reference nats-server node (2.9.10 and
//! 2.15.1) with the same accounts, joined either way round. A message in one account crosses to
//! that account's subscribers on the other node and never to another account's; a stream import
//! works whichever node the publisher and the subscriber are on; the system account's PING is
//! answered by both servers.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::{next, round_trip, NatsServer};
use futures::StreamExt;
use serde_json::Value;
use starling_server::{Account, Server, StreamImport, User};

const CLUSTER: &str = "mixacc";

/// The accounts, as nats-server's config file says them.
const CONF: &str = r#"
accounts {
  A: { users: [{user: a, password: pa}] }
  B: { users: [{user: b, password: pb}] }
  ORDERS: { users: [{user: orders, password: po}], exports: [{stream: "events.>"}] }
  SHOP: { users: [{user: shop, password: ps}], imports: [{stream: {account: ORDERS, subject: "events.>"}, prefix: "o"}] }
  SYS: { users: [{user: sys, password: psys}] }
}
system_account: SYS
"#;

/// The same accounts for the Starling node.
async fn starling(seeds: &[String]) -> Server {
    let builder = Server::builder()
        .account(Account::new("A").user(User::new("a", "pa")))
        .account(Account::new("B").user(User::new("b", "pb")))
        .account(
            Account::new("ORDERS")
                .user(User::new("orders", "po"))
                .export_stream("events.>"),
        )
        .account(
            Account::new("SHOP")
                .user(User::new("shop", "ps"))
                .import_stream(StreamImport::new("ORDERS", "events.>").prefix("o")),
        )
        .account(Account::new("SYS").user(User::new("sys", "psys")))
        .system_account("SYS");
    common::clustered(builder, "S", CLUSTER, seeds).await
}

fn conf_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("starling-interop-acc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("accounts-{}.conf", fastrand::u64(..)));
    std::fs::write(&path, CONF).unwrap();
    path
}

fn reference(v215: bool, routes: Option<SocketAddr>) -> Option<NatsServer> {
    let conf = conf_file();
    common::reference_node(v215, CLUSTER, routes, &["-c", conf.to_str().unwrap()])
}

async fn user_on(addr: SocketAddr, user: &str, pass: &str) -> async_nats::Client {
    common::login(addr, user, pass).await
}

/// Polls (bounded) until `cond` holds.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(t.elapsed() < common::WAIT, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next message within 50 ms, if any.
async fn recv_briefly(
    s: &mut starling_server::Subscriber,
) -> Result<Option<starling_server::Message>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_millis(50), s.next()).await
}

/// Publishes on the same subject in two accounts on one node; subscribers of each account on
/// the other node get their own account's message only.
async fn isolation_across(ours: &Server, theirs: SocketAddr) {
    // Subscribers on the reference, publishers on Starling.
    let ra = user_on(theirs, "a", "pa").await;
    let rb = user_on(theirs, "b", "pb").await;
    let mut ra_sub = ra.subscribe("mix.x").await.unwrap();
    let mut rb_sub = rb.subscribe("mix.x").await.unwrap();
    round_trip(&ra).await;
    round_trip(&rb).await;
    wait_for("A's and B's interest reach Starling", || {
        ours.has_interest_in("A", "mix.x") && ours.has_interest_in("B", "mix.x")
    })
    .await;
    assert!(!ours.has_interest("mix.x"), "nothing in $G");
    let sa = ours.client_in("A").unwrap();
    let sb = ours.client_in("B").unwrap();
    sa.publish("mix.x", "for A").await.unwrap();
    sb.publish("mix.x", "for B").await.unwrap();
    sa.publish("mix.x", "end A").await.unwrap();
    sb.publish("mix.x", "end B").await.unwrap();
    assert_eq!(next(&mut ra_sub).await.payload, Bytes::from("for A"));
    assert_eq!(next(&mut ra_sub).await.payload, Bytes::from("end A"));
    assert_eq!(next(&mut rb_sub).await.payload, Bytes::from("for B"));
    assert_eq!(next(&mut rb_sub).await.payload, Bytes::from("end B"));

    // Subscribers on Starling, publishers on the reference.
    let mut oa = sa.subscribe("mix.y").await.unwrap();
    let mut ob = sb.subscribe("mix.y").await.unwrap();
    // The reference learns interest asynchronously: a request-free way to know is to retry
    // until the first message arrives, then check the rest keeps to its account.
    let t = std::time::Instant::now();
    loop {
        ra.publish("mix.y", "probe A".into()).await.unwrap();
        ra.flush().await.unwrap();
        if let Ok(Some(m)) = recv_briefly(&mut oa).await {
            assert_eq!(m.payload, Bytes::from("probe A"));
            break;
        }
        assert!(
            t.elapsed() < common::WAIT,
            "A's interest never reached the reference"
        );
    }
    while let Ok(Some(_)) = recv_briefly(&mut oa).await {} // further probes
    let t = std::time::Instant::now();
    loop {
        rb.publish("mix.y", "probe B".into()).await.unwrap();
        rb.flush().await.unwrap();
        if let Ok(Some(m)) = recv_briefly(&mut ob).await {
            assert_eq!(m.payload, Bytes::from("probe B"));
            break;
        }
        assert!(
            t.elapsed() < common::WAIT,
            "B's interest never reached the reference"
        );
    }
    while let Ok(Some(_)) = recv_briefly(&mut ob).await {}
    ra.publish("mix.y", "A again".into()).await.unwrap();
    round_trip(&ra).await;
    rb.publish("mix.y", "B again".into()).await.unwrap();
    round_trip(&rb).await;
    let m = tokio::time::timeout(common::WAIT, oa.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.payload,
        Bytes::from("A again"),
        "A's subscriber got only A's"
    );
    let m = tokio::time::timeout(common::WAIT, ob.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.payload,
        Bytes::from("B again"),
        "B's subscriber got only B's"
    );
}

/// A stream import with a subscriber on the reference and the publisher on Starling, and the
/// other way round.
async fn import_across(ours: &Server, theirs: SocketAddr) {
    let shop = user_on(theirs, "shop", "ps").await;
    let mut sub = shop.subscribe("o.events.>").await.unwrap();
    round_trip(&shop).await;
    wait_for("the shadow interest reaches Starling in ORDERS", || {
        ours.has_interest_in("ORDERS", "events.placed")
    })
    .await;
    ours.client_in("ORDERS")
        .unwrap()
        .publish("events.placed", "e-1")
        .await
        .unwrap();
    let m = next(&mut sub).await;
    assert_eq!(m.subject.as_str(), "o.events.placed");
    assert_eq!(m.payload, Bytes::from("e-1"));

    let mut ours_sub = ours
        .client_in("SHOP")
        .unwrap()
        .subscribe("o.events.*")
        .await
        .unwrap();
    let orders = user_on(theirs, "orders", "po").await;
    let t = std::time::Instant::now();
    loop {
        orders
            .publish("events.shipped", "e-2".into())
            .await
            .unwrap();
        orders.flush().await.unwrap();
        match tokio::time::timeout(Duration::from_millis(50), ours_sub.next()).await {
            Ok(Some(m)) => {
                assert_eq!(m.subject.as_str(), "o.events.shipped");
                break;
            }
            _ => assert!(t.elapsed() < common::WAIT, "the import never crossed"),
        }
    }
}

/// `$SYS.REQ.SERVER.PING` from a system user on the reference: both servers answer.
async fn ping_across(ours: &Server, theirs: SocketAddr) {
    let sys = user_on(theirs, "sys", "psys").await;
    let t = std::time::Instant::now();
    loop {
        let inbox = sys.new_inbox();
        let mut replies = sys.subscribe(inbox.clone()).await.unwrap();
        sys.publish_with_reply("$SYS.REQ.SERVER.PING", inbox, Bytes::new())
            .await
            .unwrap();
        sys.flush().await.unwrap();
        let mut ids = Vec::new();
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), replies.next()).await
        {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            ids.push(v["server"]["id"].as_str().unwrap().to_string());
        }
        if ids.len() == 2 {
            assert!(ids.contains(&ours.server_id().to_string()), "{ids:?}");
            return;
        }
        assert!(t.elapsed() < common::WAIT, "answers from {ids:?}");
    }
}

async fn exchange(ours: &Server, reference: &NatsServer) {
    wait_for("the route", || ours.peers().len() == 1).await;
    isolation_across(ours, reference.addr).await;
    import_across(ours, reference.addr).await;
    ping_across(ours, reference.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_joins_a_nats_server_2_9_node_with_accounts() {
    let Some(reference) = reference(false, None) else {
        return;
    };
    let ours = starling(&[format!("nats-route://{}", reference.route.unwrap())]).await;
    exchange(&ours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_2_9_joins_a_starling_node_with_accounts() {
    let ours = starling(&[]).await;
    let Some(reference) = reference(false, ours.cluster_addr()) else {
        return;
    };
    exchange(&ours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starling_joins_a_nats_server_2_15_node_with_accounts() {
    let Some(reference) = reference(true, None) else {
        return;
    };
    let ours = starling(&[format!("nats-route://{}", reference.route.unwrap())]).await;
    exchange(&ours, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_2_15_joins_a_starling_node_with_accounts() {
    let ours = starling(&[]).await;
    let Some(reference) = reference(true, ours.cluster_addr()) else {
        return;
    };
    exchange(&ours, &reference).await;
}
