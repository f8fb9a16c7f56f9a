//! Exports and imports between accounts with real clients: streams (prefix, mapping, restricted
//! exports), services (reply mapping, response types, expiry, no responders), service latency,
//! and both across a cluster.

mod common;

use common::{next, recv, round_trip};

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use starling_server::{
    Account, AccountError, Latency, ResponseType, Sampling, Server, ServerBuilder, ServiceExport,
    ServiceImport, StartError, StreamExport, StreamImport, User,
};

/// ORDERS exports a stream and services; SHOP imports them; SYS is the system account.
fn shop(orders: Account, shop: Account) -> ServerBuilder {
    Server::builder()
        .account(orders.user(User::new("orders", "po")))
        .account(shop.user(User::new("shop", "ps")))
        .account(Account::new("SYS").user(User::new("sys", "psys")))
        .system_account("SYS")
}

async fn as_user(server: &Server, user: &str, pass: &str) -> async_nats::Client {
    common::login(server.client_addr().unwrap(), user, pass).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_import_delivers_under_its_prefix_and_nowhere_else() {
    let server = common::start_with(shop(
        Account::new("ORDERS").export_stream("events.>"),
        Account::new("SHOP")
            .import_stream(StreamImport::new("ORDERS", "events.>").prefix("orders")),
    ))
    .await;
    let orders = as_user(&server, "orders", "po").await;
    let shop_c = as_user(&server, "shop", "ps").await;
    let mut prefixed = shop_c.subscribe("orders.events.*").await.unwrap();
    let mut everything = shop_c.subscribe(">").await.unwrap();
    let mut unprefixed = shop_c.subscribe("events.>").await.unwrap();
    round_trip(&shop_c).await;
    next(&mut everything).await; // the round trip's own message
    assert!(
        server.has_interest_in("ORDERS", "events.created"),
        "the shadow is interest in the exporter"
    );

    orders
        .publish("events.created", "o-1".into())
        .await
        .unwrap();
    orders.publish("private.thing", "no".into()).await.unwrap();
    round_trip(&orders).await;
    let m = next(&mut prefixed).await;
    assert_eq!(m.subject.as_str(), "orders.events.created");
    assert_eq!(m.payload, Bytes::from("o-1"));
    let m = next(&mut everything).await;
    assert_eq!(
        m.subject.as_str(),
        "orders.events.created",
        "a wider subscription too"
    );
    // Nothing else: SHOP's own `events.x` is its own subject space.
    shop_c.publish("events.local", "mine".into()).await.unwrap();
    shop_c.flush().await.unwrap();
    assert_eq!(next(&mut unprefixed).await.payload, Bytes::from("mine"));
    assert_eq!(next(&mut everything).await.subject.as_str(), "events.local");

    // Unsubscribing removes the shadows: no interest is left in the exporter.
    for mut sub in [prefixed, everything, unprefixed] {
        sub.unsubscribe().await.unwrap();
    }
    round_trip(&shop_c).await;
    assert!(!server.has_interest_in("ORDERS", "events.created"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_stream_import_and_queue_groups() {
    let server = common::start_with(shop(
        Account::new("ORDERS").export_stream("orders.*.created"),
        Account::new("SHOP")
            .import_stream(StreamImport::new("ORDERS", "orders.*.created").to("new.$1")),
    ))
    .await;
    let orders = as_user(&server, "orders", "po").await;
    let shop_c = as_user(&server, "shop", "ps").await;
    let mut w1 = shop_c
        .queue_subscribe("new.*", "workers".into())
        .await
        .unwrap();
    let mut w2 = shop_c
        .queue_subscribe("new.*", "workers".into())
        .await
        .unwrap();
    round_trip(&shop_c).await;
    for i in 0..20 {
        orders
            .publish(format!("orders.{i}.created"), "x".into())
            .await
            .unwrap();
    }
    round_trip(&orders).await;
    let mut got = Vec::new();
    for _ in 0..20 {
        let m = tokio::select! {
            m = w1.next() => m.unwrap(),
            m = w2.next() => m.unwrap(),
            _ = tokio::time::sleep(common::WAIT) => panic!("only {} of 20", got.len()),
        };
        got.push(m.subject.to_string());
    }
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("new.{i}")).collect();
    want.sort();
    assert_eq!(got, want, "each message once, to one member, mapped");
}

#[tokio::test]
async fn imports_need_a_matching_export() {
    let err = |b: ServerBuilder| async move {
        match b.start().await {
            Err(StartError::Account(e)) => e,
            other => panic!("expected an account error, got {other:?}"),
        }
    };
    let e = err(shop(
        Account::new("ORDERS").export_stream(StreamExport::new("events.>").accounts(["SYS"])),
        Account::new("SHOP").import_stream(StreamImport::new("ORDERS", "events.>")),
    ))
    .await;
    assert!(matches!(e, AccountError::NotAuthorized { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "Error adding stream import \"events.>\": stream import not authorized"
    );
    let e = err(shop(
        Account::new("ORDERS"),
        Account::new("SHOP").import_service(ServiceImport::new("ORDERS", "place")),
    ))
    .await;
    assert_eq!(
        e.to_string(),
        "Error adding service import \"place\": service import not authorized"
    );
    let e = err(shop(
        Account::new("ORDERS"),
        Account::new("SHOP").import_stream(StreamImport::new("NOPE", "x")),
    ))
    .await;
    assert_eq!(
        e.to_string(),
        "\"NOPE\" account not defined for stream import"
    );
    let e = err(shop(
        Account::new("ORDERS").export_stream("a.>"),
        Account::new("SHOP").import_stream(StreamImport::new("ORDERS", "a.>").prefix("p.*")),
    ))
    .await;
    assert!(matches!(e, AccountError::BadPrefix(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_import_maps_the_reply_and_brings_the_response_back() {
    let server = common::start_with(shop(
        Account::new("ORDERS").export_service("orders.place"),
        Account::new("SHOP")
            .import_service(ServiceImport::new("ORDERS", "orders.place").to("place")),
    ))
    .await;
    let orders = as_user(&server, "orders", "po").await;
    let shop_c = as_user(&server, "shop", "ps").await;
    let mut service = orders.subscribe("orders.place").await.unwrap();
    round_trip(&orders).await;
    let responder = tokio::spawn(async move {
        let req = next(&mut service).await;
        let reply = req.reply.clone().expect("a reply subject");
        assert!(reply.starts_with("_R_."), "mapped reply {reply}");
        assert_eq!(reply.len(), "_R_.".len() + 6 + 1 + 6, "{reply}");
        orders
            .publish(
                reply,
                format!("placed {}", String::from_utf8_lossy(&req.payload)).into(),
            )
            .await
            .unwrap();
        orders.flush().await.unwrap();
        // A second response to a singleton service goes nowhere.
        (orders, req.reply.unwrap())
    });
    let resp = tokio::time::timeout(common::WAIT, shop_c.request("place", "book".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.payload, Bytes::from("placed book"));
    let (orders, mapped) = responder.await.unwrap();
    let mut spy = shop_c.subscribe("_INBOX.>").await.unwrap();
    round_trip(&shop_c).await;
    next(&mut spy).await; // the round trip's own message
    orders.publish(mapped, "late".into()).await.unwrap();
    round_trip(&orders).await;
    shop_c
        .publish(shop_c.new_inbox(), "sentinel".into())
        .await
        .unwrap();
    shop_c.flush().await.unwrap();
    assert_eq!(
        next(&mut spy).await.payload,
        Bytes::from("sentinel"),
        "no second response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_through_an_import() {
    let server = common::start_with(shop(
        Account::new("ORDERS").export_service("orders.place"),
        Account::new("SHOP").import_service(ServiceImport::new("ORDERS", "orders.place")),
    ))
    .await;
    let shop_c = as_user(&server, "shop", "ps").await;
    let err = tokio::time::timeout(common::WAIT, shop_c.request("orders.place", "x".into()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::client::RequestErrorKind::NoResponders
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_chunked_responses() {
    let server = common::start_with(shop(
        Account::new("ORDERS")
            .export_service(ServiceExport::new("list").response(ResponseType::Stream))
            .export_service(ServiceExport::new("file").response(ResponseType::Chunked)),
        Account::new("SHOP")
            .import_service(ServiceImport::new("ORDERS", "list"))
            .import_service(ServiceImport::new("ORDERS", "file")),
    ))
    .await;
    let orders = server.client_in("ORDERS").unwrap();
    let mut list = orders.subscribe("list").await.unwrap();
    let mut file = orders.subscribe("file").await.unwrap();
    let shop_c = server.client_in("SHOP").unwrap();
    let inbox = shop_c.new_inbox();
    let mut replies = shop_c.subscribe(&inbox).await.unwrap();

    shop_c
        .publish_with_reply("list", &inbox, "all")
        .await
        .unwrap();
    let req = recv(&mut list).await;
    let reply = req.reply.unwrap().to_string();
    for i in 0..3 {
        orders.publish(&reply, format!("item {i}")).await.unwrap();
    }
    for i in 0..3 {
        assert_eq!(
            recv(&mut replies).await.payload,
            Bytes::from(format!("item {i}"))
        );
    }

    shop_c
        .publish_with_reply("file", &inbox, "get")
        .await
        .unwrap();
    let req = recv(&mut file).await;
    let reply = req.reply.unwrap().to_string();
    orders.publish(&reply, "chunk 1").await.unwrap();
    orders.publish(&reply, Bytes::new()).await.unwrap(); // the end
    orders.publish(&reply, "after the end").await.unwrap();
    assert_eq!(recv(&mut replies).await.payload, Bytes::from("chunk 1"));
    assert_eq!(recv(&mut replies).await.payload, Bytes::new());
    shop_c.publish(&inbox, "sentinel").await.unwrap();
    assert_eq!(recv(&mut replies).await.payload, Bytes::from("sentinel"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_mappings_expire_after_the_response_threshold() {
    let server = common::start_with(
        shop(
            Account::new("ORDERS")
                .export_service(ServiceExport::new("slow").threshold(Duration::from_millis(100))),
            Account::new("SHOP").import_service(ServiceImport::new("ORDERS", "slow")),
        )
        .monitor("127.0.0.1:0"),
    )
    .await;
    let mon = server.monitor_addr().unwrap();
    let orders = server.client_in("ORDERS").unwrap();
    let mut slow = orders.subscribe("slow").await.unwrap();
    let shop_c = server.client_in("SHOP").unwrap();
    let inbox = shop_c.new_inbox();
    let mut replies = shop_c.subscribe(&inbox).await.unwrap();
    shop_c
        .publish_with_reply("slow", &inbox, "x")
        .await
        .unwrap();
    let req = tokio::time::timeout(common::WAIT, slow.next())
        .await
        .unwrap()
        .unwrap();
    let responses = || async {
        let v = common::http_get(mon, "/accountz?acc=ORDERS").await.json();
        v["account_detail"]["responses"]
            .as_object()
            .map_or(0, |m| m.len())
    };
    assert_eq!(responses().await, 1, "the mapping waits for the response");
    // Bounded wait for the expiry (the threshold is 100 ms, the sweep every 50 ms).
    let start = std::time::Instant::now();
    while responses().await != 0 {
        assert!(start.elapsed() < common::WAIT, "the mapping never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    orders
        .publish(req.reply.unwrap().as_str(), "too late")
        .await
        .unwrap();
    shop_c.publish(&inbox, "sentinel").await.unwrap();
    let m = tokio::time::timeout(common::WAIT, replies.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.payload,
        Bytes::from("sentinel"),
        "the late response was dropped"
    );
}

async fn latency_server(sampling: Sampling) -> Server {
    common::start_with(shop(
        Account::new("ORDERS").export_service(
            ServiceExport::new("place").latency(Latency::new("latency.place").sampling(sampling)),
        ),
        Account::new("SHOP").import_service(ServiceImport::new("ORDERS", "place")),
    ))
    .await
}

/// Serves `place` in ORDERS with an echo.
async fn echo_service(server: &Server) -> async_nats::Client {
    let orders = as_user(server, "orders", "po").await;
    let mut service = orders.subscribe("place").await.unwrap();
    round_trip(&orders).await;
    let responder = orders.clone();
    tokio::spawn(async move {
        while let Some(req) = service.next().await {
            if let Some(reply) = req.reply {
                responder.publish(reply, req.payload).await.unwrap();
                responder.flush().await.unwrap();
            }
        }
    });
    orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_latency_is_published_with_nats_servers_keys() {
    let server = latency_server(Sampling::Percent(100)).await;
    let orders = echo_service(&server).await;
    let mut latency = orders.subscribe("latency.place").await.unwrap();
    round_trip(&orders).await;
    let shop_c = as_user(&server, "shop", "ps").await;
    let resp = tokio::time::timeout(common::WAIT, shop_c.request("place", "hi".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.payload, Bytes::from("hi"));
    let m = next(&mut latency).await;
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["type"], "io.nats.server.metric.v1.service_latency");
    assert_eq!(v["status"], 200);
    assert_eq!(v["requestor"]["acc"], "SHOP");
    assert_eq!(v["responder"]["acc"], "ORDERS");
    assert_eq!(v["responder"]["user"], "orders");
    for key in ["id", "timestamp", "start", "service", "system", "total"] {
        assert!(!v[key].is_null(), "{key}: {v}");
    }
    assert!(v["total"].as_u64().unwrap() >= v["service"].as_u64().unwrap());
    assert!(v.get("header").is_none(), "not sampled by header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_sampling_measures_only_traced_requests() {
    let server = latency_server(Sampling::Headers).await;
    let orders = echo_service(&server).await;
    let mut latency = orders.subscribe("latency.place").await.unwrap();
    round_trip(&orders).await;
    let shop_c = as_user(&server, "shop", "ps").await;
    // Untraced: answered, not measured.
    shop_c.request("place", "plain".into()).await.unwrap();
    // Traced (W3C traceparent, sampled flag set).
    let mut headers = async_nats::HeaderMap::new();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    headers.insert("traceparent", tp);
    shop_c
        .request_with_headers("place", headers, "traced".into())
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&next(&mut latency).await.payload).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["header"]["Traceparent"][0], tp, "{v}");
    // The untraced request produced nothing: the next measurement is the traced one again.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    );
    shop_c
        .request_with_headers("place", headers, "not sampled".into())
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-B3-Sampled", "1");
    headers.insert("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7");
    shop_c
        .request_with_headers("place", headers, "b3".into())
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&next(&mut latency).await.payload).unwrap();
    assert_eq!(v["header"]["X-B3-Sampled"][0], "1", "{v}");
}

/// Three nodes with the same accounts: a subscriber on one node gets a stream published on
/// another, and a request on one node is served on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_work_across_a_cluster() {
    let config = || {
        shop(
            Account::new("ORDERS")
                .export_stream("events.>")
                .export_service("orders.place"),
            Account::new("SHOP")
                .import_stream(StreamImport::new("ORDERS", "events.>").prefix("o"))
                .import_service(ServiceImport::new("ORDERS", "orders.place").to("place")),
        )
    };
    let a = common::clustered(config(), "A", "acc", &[]).await;
    let seed = format!("nats-route://{}", a.cluster_addr().unwrap());
    let b = common::clustered(config(), "B", "acc", std::slice::from_ref(&seed)).await;
    let c = common::clustered(config(), "C", "acc", &[seed]).await;
    let shop_on_a = as_user(&a, "shop", "ps").await;
    let mut events = shop_on_a.subscribe("o.events.>").await.unwrap();
    round_trip(&shop_on_a).await;
    let orders_on_b = as_user(&b, "orders", "po").await;
    let mut service = orders_on_b.subscribe("orders.place").await.unwrap();
    round_trip(&orders_on_b).await;
    for s in [&b, &c] {
        let t = std::time::Instant::now();
        while !(s.has_interest_in("ORDERS", "events.x") && s.peers().len() == 2) {
            assert!(
                t.elapsed() < common::WAIT,
                "interest never reached {}",
                s.server_name()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let t = std::time::Instant::now();
    while !a.has_interest_in("ORDERS", "orders.place") {
        assert!(t.elapsed() < common::WAIT);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let orders_on_c = as_user(&c, "orders", "po").await;
    orders_on_c
        .publish("events.shipped", "s-1".into())
        .await
        .unwrap();
    orders_on_c.flush().await.unwrap();
    let m = next(&mut events).await;
    assert_eq!(m.subject.as_str(), "o.events.shipped");

    let responder = tokio::spawn(async move {
        let req = next(&mut service).await;
        orders_on_b
            .publish(req.reply.unwrap(), "placed".into())
            .await
            .unwrap();
        orders_on_b.flush().await.unwrap();
    });
    let resp = tokio::time::timeout(common::WAIT, shop_on_a.request("place", "x".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.payload, Bytes::from("placed"));
    responder.await.unwrap();
}
