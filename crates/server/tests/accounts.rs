//! Accounts with real clients: isolation, users mapped to accounts, `no_auth_user`, in-process
//! clients in an account, and the system account's advisories and services.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{next, round_trip, Raw};
use futures::StreamExt;
use serde_json::Value;
use starling_server::{Account, ClientError, Server, ServerBuilder, StartError, User};

/// Accounts A and B with a user each, and a system account user.
fn tenants() -> ServerBuilder {
    Server::builder()
        .account(Account::new("A").user(User::new("a", "pa")))
        .account(Account::new("B").user(User::new("b", "pb")))
        .account(Account::new("SYS").user(User::new("sys", "psys")))
        .system_account("SYS")
}

async fn as_user(server: &Server, user: &str, pass: &str) -> async_nats::Client {
    common::login(server.client_addr().unwrap(), user, pass).await
}

/// Proves `sub` got nothing so far: a message published after everything else on a subject it
/// also listens on arrives first (the publisher flushed, messages keep their order).
async fn assert_nothing_before_barrier(
    client: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    barrier: &str,
) {
    client
        .publish(barrier.to_string(), "barrier".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let m = next(sub).await;
    assert_eq!(m.subject.as_str(), barrier, "got {m:?} before the barrier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_isolated_both_ways() {
    let server = common::start_with(tenants()).await;
    let a = as_user(&server, "a", "pa").await;
    let b = as_user(&server, "b", "pb").await;
    let mut a_sub = a.subscribe("orders.>").await.unwrap();
    let mut b_sub = b.subscribe("orders.>").await.unwrap();
    round_trip(&a).await;
    round_trip(&b).await;
    // Each publishes on the same subject; a round trip makes sure B's message was routed
    // before A's, and A's before the final markers.
    b.publish("orders.1", "from b".into()).await.unwrap();
    round_trip(&b).await;
    a.publish("orders.1", "from a".into()).await.unwrap();
    round_trip(&a).await;
    a.publish("orders.end", "end a".into()).await.unwrap();
    b.publish("orders.end", "end b".into()).await.unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(next(&mut a_sub).await.payload, Bytes::from("from a"));
    assert_eq!(
        next(&mut a_sub).await.payload,
        Bytes::from("end a"),
        "nothing from B"
    );
    assert_eq!(next(&mut b_sub).await.payload, Bytes::from("from b"));
    assert_eq!(
        next(&mut b_sub).await.payload,
        Bytes::from("end b"),
        "nothing from A"
    );

    // Interest is per account.
    assert!(server.has_interest_in("A", "orders.x"));
    assert!(server.has_interest_in("B", "orders.x"));
    assert!(!server.has_interest("orders.x"), "nothing in $G");
}

#[tokio::test]
async fn in_process_clients_live_in_their_account() {
    let server = Server::builder()
        .account(Account::new("A"))
        .start()
        .await
        .unwrap();
    let a = server.client_in("A").unwrap();
    let g = server.client();
    let mut a_sub = a.subscribe("x").await.unwrap();
    let mut g_sub = g.subscribe("x").await.unwrap();
    g.publish("x", "global").await.unwrap();
    a.publish("x", "in A").await.unwrap();
    let m = tokio::time::timeout(common::WAIT, a_sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, Bytes::from("in A"));
    let m = tokio::time::timeout(common::WAIT, g_sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, Bytes::from("global"));
    assert!(matches!(
        server.client_in("NOPE"),
        Err(ClientError::UnknownAccount)
    ));
    let mut names = server.accounts();
    names.sort();
    assert_eq!(names, ["$G", "$SYS", "A"]);
}

#[tokio::test]
async fn users_map_to_their_accounts_and_bad_credentials_are_refused() {
    let server = common::start_with(tenants().user(User::new("g", "pg"))).await;
    let addr = server.client_addr().unwrap();
    let (mut raw, info) = Raw::connect_info(addr).await;
    assert!(info.contains("\"auth_required\":true"), "{info}");
    raw.send("CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"wrong\"}\r\n")
        .await;
    assert_eq!(
        raw.line().await.as_deref(),
        Some("-ERR 'Authorization Violation'")
    );
    let (mut raw, _) = Raw::connect_info(addr).await;
    raw.send("SUB x 1\r\n").await;
    assert_eq!(
        raw.line().await.as_deref(),
        Some("-ERR 'Authorization Violation'")
    );

    let g = as_user(&server, "g", "pg").await;
    let mut g_sub = g.subscribe("hello").await.unwrap();
    round_trip(&g).await;
    assert!(server.has_interest("hello"), "g's subscription is in $G");
    server.client().publish("hello", "to $G").await.unwrap();
    assert_eq!(next(&mut g_sub).await.payload, Bytes::from("to $G"));
    assert_eq!(server.stats().connections, 1, "the refused ones are gone");
}

#[tokio::test]
async fn no_auth_user_lets_clients_without_credentials_in_as_that_user() {
    let server = common::start_with(tenants().no_auth_user("a")).await;
    let addr = server.client_addr().unwrap();
    let (_, info) = Raw::connect_info(addr).await;
    assert!(!info.contains("\"auth_required\":true"), "{info}");
    let anon = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let a = as_user(&server, "a", "pa").await;
    let mut sub = a.subscribe("in.a").await.unwrap();
    round_trip(&a).await;
    anon.publish("in.a", "anonymous".into()).await.unwrap();
    anon.flush().await.unwrap();
    assert_eq!(next(&mut sub).await.payload, Bytes::from("anonymous"));
    // Credentials still count: a wrong password is refused.
    let wrong = async_nats::ConnectOptions::with_user_and_password("b".into(), "nope".into())
        .max_reconnects(1)
        .connect(server.client_url().unwrap())
        .await;
    assert!(wrong.is_err());
}

#[tokio::test]
async fn account_errors_stop_the_start() {
    let err = |b: ServerBuilder| async move {
        match b.start().await {
            Err(StartError::Account(e)) => e.to_string(),
            other => panic!("expected an account error, got {other:?}"),
        }
    };
    assert_eq!(
        err(Server::builder().account(Account::new("$G"))).await,
        "\"$G\" is a Reserved Account"
    );
    assert_eq!(
        err(Server::builder()
            .account(Account::new("A").user(User::new("u", "1")))
            .account(Account::new("B").user(User::new("u", "2"))))
        .await,
        "Duplicate user \"u\" detected"
    );
    assert_eq!(
        err(Server::builder()
            .account(Account::new("A"))
            .account(Account::new("A")))
        .await,
        "Duplicate Account Entry: A"
    );
    assert!(err(Server::builder().no_auth_user("ghost"))
        .await
        .starts_with("no_auth_user: \"ghost\" not present"));
}

/// The system account hears of every connection, in any account; nobody else sees `$SYS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_disconnect_advisories_reach_only_the_system_account() {
    let server = common::start_with(tenants()).await;
    let sys = as_user(&server, "sys", "psys").await;
    let mut events = sys.subscribe("$SYS.ACCOUNT.*.*").await.unwrap();
    round_trip(&sys).await;
    let b = as_user(&server, "b", "pb").await;
    let mut b_sys = b.subscribe("$SYS.>").await.unwrap();
    let mut b_barrier = b.subscribe("barrier").await.unwrap();
    round_trip(&b).await;

    let m = next(&mut events).await;
    assert_eq!(m.subject.as_str(), "$SYS.ACCOUNT.B.CONNECT");
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["type"], "io.nats.server.advisory.v1.client_connect");
    assert_eq!(v["client"]["acc"], "B");
    assert_eq!(v["client"]["user"], "b");
    assert_eq!(v["client"]["kind"], "Client");
    assert_eq!(v["server"]["id"], server.server_id());
    assert_eq!(v["id"].as_str().unwrap().len(), 22);

    let a = as_user(&server, "a", "pa").await;
    a.publish("x", "12345".into()).await.unwrap();
    a.flush().await.unwrap();
    drop(a);
    let m = next(&mut events).await;
    assert_eq!(m.subject.as_str(), "$SYS.ACCOUNT.A.CONNECT");
    let m = next(&mut events).await;
    assert_eq!(m.subject.as_str(), "$SYS.ACCOUNT.A.DISCONNECT");
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["type"], "io.nats.server.advisory.v1.client_disconnect");
    assert_eq!(v["reason"], "Client Closed");
    assert_eq!(v["sent"]["msgs"], 1, "what the client sent");
    assert_eq!(v["sent"]["bytes"], 5);
    assert!(v["client"]["stop"].is_string());
    // B, subscribed to $SYS.> in its own account, saw none of it.
    assert_nothing_before_barrier(&b, &mut b_barrier, "barrier").await;
    b.publish("$SYS.fake", "x".into()).await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(next(&mut b_sys).await.subject.as_str(), "$SYS.fake");
}

/// Sends `subject` with `body` from `client` and gathers replies until `n` arrived.
async fn gather(client: &async_nats::Client, subject: &str, body: &str, n: usize) -> Vec<Value> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(subject.to_string(), inbox, body.to_string().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let m = next(&mut replies).await;
        out.push(serde_json::from_slice(&m.payload).expect("JSON reply"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_services_answer_with_nats_servers_json() {
    let server = common::start_with(tenants()).await;
    let sys = as_user(&server, "sys", "psys").await;
    let _a = as_user(&server, "a", "pa").await;
    let id = server.server_id().to_string();

    let v = &gather(&sys, "$SYS.REQ.SERVER.PING", "", 1).await[0];
    assert_eq!(v["server"]["id"], id.as_str());
    assert_eq!(v["statsz"]["connections"], 2);
    for key in [
        "start",
        "mem",
        "cores",
        "cpu",
        "total_connections",
        "subscriptions",
        "sent",
        "received",
        "slow_consumers",
    ] {
        assert!(!v["statsz"][key].is_null(), "statsz.{key}: {v}");
    }
    let v = &gather(&sys, "$SYS.REQ.SERVER.PING.VARZ", "", 1).await[0];
    assert_eq!(v["data"]["server_id"], id.as_str());
    assert_eq!(v["data"]["system_account"], "SYS");
    let v = &gather(&sys, &format!("$SYS.REQ.SERVER.{id}.HEALTHZ"), "", 1).await[0];
    assert_eq!(v["data"]["status"], "ok");
    let v = &gather(
        &sys,
        "$SYS.REQ.SERVER.PING.CONNZ",
        r#"{"acc":"A","auth":true}"#,
        1,
    )
    .await[0];
    assert_eq!(v["data"]["num_connections"], 1);
    assert_eq!(v["data"]["connections"][0]["account"], "A");
    assert_eq!(v["data"]["connections"][0]["authorized_user"], "a");
    let v = &gather(
        &sys,
        "$SYS.REQ.SERVER.PING.SUBSZ",
        r#"{"subscriptions":true,"account":"SYS"}"#,
        1,
    )
    .await[0];
    assert!(v["data"]["num_subscriptions"].as_u64().unwrap() > 0);
    let v = &gather(&sys, "$SYS.REQ.SERVER.PING.IDZ", "", 1).await[0];
    assert_eq!(v["data"]["id"], id.as_str());
    let v = &gather(&sys, "$SYS.REQ.SERVER.PING.CONNZ", "not json", 1).await[0];
    assert_eq!(v["error"]["code"], 400);
    // A filter that excludes this server: no answer (the request still reached it).
    let inbox = sys.new_inbox();
    let mut replies = sys.subscribe(inbox.clone()).await.unwrap();
    sys.publish_with_reply(
        "$SYS.REQ.SERVER.PING.VARZ",
        inbox.clone(),
        r#"{"server_name":"elsewhere"}"#.into(),
    )
    .await
    .unwrap();
    sys.publish(inbox, "sentinel".into()).await.unwrap();
    sys.flush().await.unwrap();
    assert_eq!(next(&mut replies).await.payload, Bytes::from("sentinel"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsz_and_lame_duck_advisories() {
    let server = common::start_with(
        tenants()
            .lame_duck_grace_period(Duration::from_millis(10))
            .lame_duck_duration(Duration::from_secs(30)),
    )
    .await;
    let sys = as_user(&server, "sys", "psys").await;
    let id = server.server_id().to_string();
    let mut statsz = sys
        .subscribe(format!("$SYS.SERVER.{id}.STATSZ"))
        .await
        .unwrap();
    let mut ldm = sys
        .subscribe(format!("$SYS.SERVER.{id}.LAMEDUCK"))
        .await
        .unwrap();
    sys.flush().await.unwrap();
    let v: Value = serde_json::from_slice(&next(&mut statsz).await.payload).unwrap();
    assert_eq!(v["server"]["id"], id.as_str());
    assert!(v["statsz"]["connections"].as_u64().unwrap() >= 1);
    let s2 = server.clone();
    tokio::spawn(async move { s2.lame_duck().await });
    let v: Value = serde_json::from_slice(&next(&mut ldm).await.payload).unwrap();
    assert_eq!(v["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_reports_per_account() {
    let server = common::start_with(tenants().monitor("127.0.0.1:0")).await;
    let mon = server.monitor_addr().unwrap();
    let a = as_user(&server, "a", "pa").await;
    let _a_sub = a.subscribe("a.thing").await.unwrap();
    a.publish("a.thing", "hello".into()).await.unwrap();
    round_trip(&a).await;
    let b = as_user(&server, "b", "pb").await;
    round_trip(&b).await;

    let v = common::http_get(mon, "/accstatz").await.json();
    let stat = |name: &str| {
        v["account_statz"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["acc"] == name)
            .cloned()
    };
    let sa = stat("A").expect("A has connections");
    assert_eq!(sa["conns"], 1);
    assert_eq!(sa["total_conns"], 1);
    assert_eq!(sa["received"]["msgs"], 2, "the publish and the round trip");
    assert!(sa["sent"]["msgs"].as_u64().unwrap() >= 2);
    assert!(stat("$G").is_none(), "unused accounts only with unused=1");
    let v = common::http_get(mon, "/accstatz?unused=1").await.json();
    assert_eq!(v["account_statz"].as_array().unwrap().len(), 4);

    let v = common::http_get(mon, "/connz?acc=A&auth=1").await.json();
    assert_eq!(v["num_connections"], 1);
    assert_eq!(v["connections"][0]["account"], "A");
    let v = common::http_get(mon, "/connz?acc=NOPE").await.json();
    assert_eq!(v["num_connections"], 0);
    let v = common::http_get(mon, "/subsz?subs=1&acc=A").await.json();
    let subjects: Vec<&str> = v["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"a.thing"), "{subjects:?}");
    assert!(v["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["account"] == "A"));
    let v = common::http_get(mon, "/accountz?acc=SYS").await.json();
    assert_eq!(v["account_detail"]["is_system"], true);

    let text = common::http_get(mon, "/metrics").await.body;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |name: &str, account: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("account") == Some(account))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(sample("starling_account_connections", "A"), Some(1.0));
    assert_eq!(sample("starling_account_connections", "B"), Some(1.0));
    assert_eq!(sample("starling_account_in_msgs_total", "A"), Some(2.0));
    assert_eq!(sample("starling_account_connections", "$G"), Some(0.0));
}

/// A 3-node cluster: `$SYS.REQ.SERVER.PING` (and `.PING.VARZ`) from a system user on one node
/// is answered by every node; a CONNECT advisory of a client on another node reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_ping_is_answered_by_every_node_of_a_cluster() {
    let a = common::clustered(tenants(), "A", "sys", &[]).await;
    let seed = format!("nats-route://{}", a.cluster_addr().unwrap());
    let b = common::clustered(tenants(), "B", "sys", std::slice::from_ref(&seed)).await;
    let c = common::clustered(tenants(), "C", "sys", &[seed]).await;
    for s in [&a, &b, &c] {
        let t = std::time::Instant::now();
        while s.peers().len() != 2 {
            assert!(t.elapsed() < common::WAIT, "{} meshes", s.server_name());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let sys = as_user(&a, "sys", "psys").await;
    let mut connects = sys.subscribe("$SYS.ACCOUNT.B.CONNECT").await.unwrap();
    round_trip(&sys).await;
    // The request reaches B and C once their PING interest reached A, and the replies come
    // back once A's inbox interest reached them: retried (bounded) until all three answer.
    let want: std::collections::BTreeSet<String> = [&a, &b, &c]
        .iter()
        .map(|s| s.server_id().to_string())
        .collect();
    for subject in ["$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.VARZ"] {
        let t = std::time::Instant::now();
        loop {
            let inbox = sys.new_inbox();
            let mut replies = sys.subscribe(inbox.clone()).await.unwrap();
            round_trip(&sys).await;
            sys.publish_with_reply(subject, inbox, Bytes::new())
                .await
                .unwrap();
            sys.flush().await.unwrap();
            let mut got = std::collections::BTreeSet::new();
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(300), replies.next()).await
            {
                let v: Value = serde_json::from_slice(&m.payload).unwrap();
                got.insert(v["server"]["id"].as_str().unwrap().to_string());
            }
            if got == want {
                break;
            }
            assert!(
                t.elapsed() < common::WAIT,
                "{subject}: answers from {got:?}"
            );
        }
    }
    // A client of account B on node C: its CONNECT advisory reaches the system user on A.
    let t = std::time::Instant::now();
    while !c.has_interest_in("SYS", "$SYS.ACCOUNT.B.CONNECT") {
        assert!(t.elapsed() < common::WAIT);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _b_on_c = as_user(&c, "b", "pb").await;
    let m = next(&mut connects).await;
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["server"]["id"], c.server_id());
    assert_eq!(v["client"]["user"], "b");
}

/// A peer's interest and messages in an account this server does not have are dropped (and
/// logged once); the accounts both have keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_unknown_to_a_peer_are_dropped_there() {
    let both = || {
        Server::builder()
            .account(Account::new("A").user(User::new("a", "pa")))
            .account(Account::new("B").user(User::new("b", "pb")))
    };
    let only_a = Server::builder().account(Account::new("A").user(User::new("a", "pa")));
    let n1 = common::clustered(both(), "N1", "unk", &[]).await;
    let seed = format!("nats-route://{}", n1.cluster_addr().unwrap());
    let n2 = common::clustered(only_a, "N2", "unk", &[seed]).await;
    let b_on_1 = as_user(&n1, "b", "pb").await;
    let mut b_sub = b_on_1.subscribe("shared").await.unwrap();
    let a_on_1 = as_user(&n1, "a", "pa").await;
    let mut a_sub = a_on_1.subscribe("shared").await.unwrap();
    round_trip(&b_on_1).await;
    round_trip(&a_on_1).await;
    let t = std::time::Instant::now();
    while !n2.has_interest_in("A", "shared") {
        assert!(t.elapsed() < common::WAIT, "A's interest crosses");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!n2.accounts().contains(&"B".to_string()));
    n2.client_in("A")
        .unwrap()
        .publish("shared", "for A")
        .await
        .unwrap();
    assert_eq!(next(&mut a_sub).await.payload, Bytes::from("for A"));
    // B's subscriber on N1 hears nothing from N2 (which has no B), and N1 still serves B.
    b_on_1.publish("shared", "local B".into()).await.unwrap();
    b_on_1.flush().await.unwrap();
    assert_eq!(next(&mut b_sub).await.payload, Bytes::from("local B"));
    assert_eq!(n1.peers().len(), 1, "the route stayed up");
}
