//! The primary real client, async-nats, against a Starling broker on a loopback port.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

async fn connect(server: &starling_server::Server) -> async_nats::Client {
    async_nats::connect(server.client_url().unwrap())
        .await
        .expect("async-nats connects")
}

#[tokio::test]
async fn publish_subscribe_and_flush() {
    let server = common::start().await;
    let client = connect(&server).await;
    let mut sub = client.subscribe("orders.>").await.unwrap();
    client.flush().await.unwrap();
    for i in 0..100u32 {
        client
            .publish(format!("orders.{i}"), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    for i in 0..100u32 {
        let m = tokio::time::timeout(common::WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.subject.as_str(), format!("orders.{i}"));
        assert_eq!(m.payload, Bytes::from(i.to_string()));
    }
}

#[tokio::test]
async fn request_reply_between_two_clients() {
    let server = common::start().await;
    let responder = connect(&server).await;
    let requester = connect(&server).await;
    let mut svc = responder.subscribe("svc.echo").await.unwrap();
    responder.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let reply = m.reply.unwrap();
            responder.publish(reply, m.payload).await.unwrap();
        }
    });
    for i in 0..20 {
        let r = requester
            .request("svc.echo", format!("ping {i}").into())
            .await
            .unwrap();
        assert_eq!(r.payload, Bytes::from(format!("ping {i}")));
    }
}

#[tokio::test]
async fn request_without_responders_fails_fast() {
    let server = common::start().await;
    let client = connect(&server).await;
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        client.request("nobody.home", "x".into()),
    )
    .await
    .expect("no-responders answer, not a timeout")
    .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

#[tokio::test]
async fn queue_group_delivers_each_message_once() {
    let server = common::start().await;
    let client = connect(&server).await;
    let mut members = Vec::new();
    for _ in 0..4 {
        members.push(
            client
                .queue_subscribe("work", "workers".into())
                .await
                .unwrap(),
        );
    }
    let mut plain = client.subscribe("work").await.unwrap();
    client.flush().await.unwrap();
    let total = 400;
    for i in 0..total {
        client
            .publish("work", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // The plain subscriber sees all; the group sees each exactly once in total.
    for _ in 0..total {
        tokio::time::timeout(common::WAIT, plain.next())
            .await
            .unwrap()
            .unwrap();
    }
    let mut seen = HashMap::new();
    let mut per_member = Vec::new();
    for m in members.iter_mut() {
        let mut n = 0;
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(200), m.next()).await {
            *seen.entry(msg.payload.clone()).or_insert(0) += 1;
            n += 1;
        }
        per_member.push(n);
    }
    assert_eq!(seen.len(), total, "every message reached the group");
    assert!(seen.values().all(|&c| c == 1), "no message twice");
    assert!(
        per_member.iter().all(|&n| n > 0),
        "random picks spread: {per_member:?}"
    );
}

#[tokio::test]
async fn headers_round_trip() {
    let server = common::start().await;
    let client = connect(&server).await;
    let mut sub = client.subscribe("h").await.unwrap();
    client.flush().await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Trace-Id", "abc");
    headers.append("X-Multi", "1");
    headers.append("X-Multi", "2");
    client
        .publish_with_headers("h", headers, "body".into())
        .await
        .unwrap();
    let m = tokio::time::timeout(common::WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    let h = m.headers.unwrap();
    assert_eq!(h.get("Trace-Id").unwrap().as_str(), "abc");
    assert_eq!(h.get_all("X-Multi").count(), 2);
    assert_eq!(m.payload, "body");
}

#[tokio::test]
async fn unsubscribe_after_n_messages() {
    let server = common::start().await;
    let before = server.stats().subscriptions; // the system account's own
    let client = connect(&server).await;
    let mut sub = client.subscribe("n").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    client.flush().await.unwrap();
    for _ in 0..10 {
        client.publish("n", "x".into()).await.unwrap();
    }
    client.flush().await.unwrap();
    let got: Vec<_> = tokio::time::timeout(common::WAIT, sub.collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(server.stats().subscriptions, before);
}

#[tokio::test]
async fn no_echo_suppresses_own_messages() {
    let server = common::start().await;
    let client = async_nats::ConnectOptions::new()
        .no_echo()
        .connect(server.client_url().unwrap())
        .await
        .unwrap();
    let other = connect(&server).await;
    let mut own = client.subscribe("e").await.unwrap();
    client.flush().await.unwrap();
    client.publish("e", "mine".into()).await.unwrap();
    other.publish("e", "theirs".into()).await.unwrap();
    other.flush().await.unwrap();
    let m = tokio::time::timeout(common::WAIT, own.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "theirs");
}

#[tokio::test]
async fn large_payload_near_max() {
    let server = common::start_with(starling_server::Server::builder().max_payload(8 << 20)).await;
    let client = connect(&server).await;
    assert_eq!(client.server_info().max_payload, 8 << 20);
    let mut sub = client.subscribe("big").await.unwrap();
    client.flush().await.unwrap();
    let payload: Bytes = (0..(8u32 << 20))
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    client.publish("big", payload.clone()).await.unwrap();
    let m = tokio::time::timeout(common::WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, payload);
}

#[tokio::test]
async fn info_fields_clients_rely_on() {
    let server = common::start_with(starling_server::Server::builder().server_name("alpha")).await;
    let client = connect(&server).await;
    let info = client.server_info();
    assert_eq!(info.server_name, "alpha");
    assert_eq!(info.server_id, server.server_id());
    assert!(info.server_id.starts_with('N') && info.server_id.len() == 56);
    assert!(info.headers);
    assert_eq!(info.proto, 1);
    assert_eq!(info.max_payload, 1024 * 1024);
    assert_eq!(info.port, server.client_addr().unwrap().port());
    assert_eq!(info.version, starling_server::NATS_VERSION);
    assert!(info.client_id > 0);
    assert_eq!(info.client_ip, "127.0.0.1");
}
