//! Services on the in-process client. `Client::request_many` sends one request and gathers
//! every responder's reply, until a count, a time limit, a pause or a sentinel; the responders
//! are in-process and socket clients, on one node and across a cluster. Trace headers pass
//! both ways between socket and in-process clients.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use starling_server::{Client, Gather, RequestError, Server};

/// An in-process responder on `subject` answering each request with `answers` (each after
/// its delay).
async fn responder(client: &Client, subject: &str, answers: Vec<(Duration, &'static str)>) {
    let mut requests = client.subscribe(subject).await.unwrap();
    let client = client.clone();
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let reply = m.reply.unwrap();
            for (delay, answer) in &answers {
                tokio::time::sleep(*delay).await;
                client
                    .publish(reply.as_str(), Bytes::from_static(answer.as_bytes()))
                    .await
                    .unwrap();
            }
        }
    });
}

fn payloads(replies: &[starling_server::Message]) -> Vec<String> {
    let mut v: Vec<String> = replies
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    v.sort();
    v
}

// Multi-threaded, and the socket responder asked until it answers: right after connecting, an
// async-nats `subscribe` + `flush` is not a barrier on a current-thread runtime (the server had
// no interest yet when the next publish came; against nats-server 2.15.1 a socket publisher
// lost the first message 12 times in 20 that way, against Starling 0 in 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_answers_one_request_in_process_and_over_a_socket() {
    let server = common::start().await;
    let svc = server.client();
    for name in ["a", "b", "c"] {
        responder(&svc, "svc.discover", vec![(Duration::ZERO, name)]).await;
    }
    // A socket responder through async-nats.
    let nc = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let mut requests = nc.subscribe("svc.discover").await.unwrap();
    let mut ready = nc.subscribe("svc.ready").await.unwrap();
    nc.flush().await.unwrap();
    let nc2 = nc.clone();
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            nc2.publish(m.reply.unwrap(), "socket".into())
                .await
                .unwrap();
        }
    });
    let nc3 = nc.clone();
    tokio::spawn(async move {
        while let Some(m) = ready.next().await {
            nc3.publish(m.reply.unwrap(), "ready".into()).await.unwrap();
        }
    });
    let client = server.client();
    // The socket responder answers before the gathering starts (asked again if the first
    // question finds no interest yet: see the note above).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while client
        .request_with_timeout("svc.ready", "?", Duration::from_millis(200))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the socket responder never answered"
        );
    }
    let replies = client
        .request_many(
            "svc.discover",
            "who is there",
            Gather::within(common::WAIT).max_replies(4),
        )
        .await
        .unwrap();
    assert_eq!(payloads(&replies), ["a", "b", "c", "socket"]);
}

#[tokio::test]
async fn the_time_limit_returns_what_came() {
    let server = Server::builder().start().await.unwrap();
    let svc = server.client();
    responder(&svc, "q", vec![(Duration::ZERO, "fast")]).await;
    let _silent = svc.subscribe("q").await.unwrap();
    let client = server.client();
    let started = tokio::time::Instant::now();
    let limit = Duration::from_millis(150);
    let replies = client
        .request_many("q", "x", Gather::within(limit))
        .await
        .unwrap();
    assert_eq!(payloads(&replies), ["fast"]);
    assert!(started.elapsed() >= limit, "it waited for the silent one");
}

#[tokio::test]
async fn a_pause_after_the_replies_ends_the_gathering() {
    let server = Server::builder().start().await.unwrap();
    let svc = server.client();
    responder(
        &svc,
        "q",
        vec![(Duration::ZERO, "1"), (Duration::ZERO, "2")],
    )
    .await;
    // This one answers long after the others.
    responder(&svc, "q", vec![(Duration::from_millis(500), "late")]).await;
    let client = server.client();
    let replies = client
        .request_many(
            "q",
            "x",
            Gather::within(common::WAIT).stall(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    assert_eq!(payloads(&replies), ["1", "2"]);
}

#[tokio::test]
async fn a_sentinel_ends_the_gathering_and_is_not_returned() {
    let server = Server::builder().start().await.unwrap();
    let svc = server.client();
    responder(
        &svc,
        "q",
        vec![
            (Duration::ZERO, "part 1"),
            (Duration::ZERO, "part 2"),
            (Duration::ZERO, ""),
        ],
    )
    .await;
    let client = server.client();
    let replies = client
        .request_many("q", "x", Gather::within(common::WAIT).until_empty())
        .await
        .unwrap();
    assert_eq!(payloads(&replies), ["part 1", "part 2"]);
    // A sentinel of the caller's own.
    let replies = client
        .request_many(
            "q",
            "x",
            Gather::within(common::WAIT).sentinel(|m| m.payload == "part 2"),
        )
        .await
        .unwrap();
    assert_eq!(payloads(&replies), ["part 1"]);
}

#[tokio::test]
async fn nobody_listening_is_no_responders() {
    let server = Server::builder().start().await.unwrap();
    let err = server
        .client()
        .request_many("nobody", "x", Gather::default())
        .await
        .unwrap_err();
    assert_eq!(err, RequestError::NoResponders);
}

#[tokio::test]
async fn responders_on_other_nodes_of_a_cluster_answer_too() {
    let a = common::clustered(Server::builder(), "a", "c", &[]).await;
    let seed = vec![format!("nats://{}", a.cluster_addr().unwrap())];
    let b = common::clustered(Server::builder(), "b", "c", &seed).await;
    let local = a.client();
    responder(&local, "svc.where", vec![(Duration::ZERO, "on a")]).await;
    let remote = b.client();
    responder(&remote, "svc.where", vec![(Duration::ZERO, "on b")]).await;
    // Until b's interest reaches a, a request from a finds one responder.
    let client = a.client();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let replies = client
            .request_many(
                "svc.where",
                "?",
                Gather::within(Duration::from_millis(500)).max_replies(2),
            )
            .await
            .unwrap();
        if replies.len() == 2 {
            assert_eq!(payloads(&replies), ["on a", "on b"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's responder never answered: {:?}",
            payloads(&replies)
        );
    }
}

// Headers both ways through the in-process API: trace context from a socket requester reaches
// an in-process responder, and its reply carries it back untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_headers_pass_between_a_socket_requester_and_an_in_process_responder() {
    let server = common::start().await;
    let svc = server.client();
    let mut requests = svc.subscribe("svc.traced").await.unwrap();
    let responder = svc.clone();
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let trace = m.header("traceparent").unwrap_or("missing").to_string();
            let state = m.header("tracestate").unwrap_or("missing").to_string();
            responder
                .publish_with_headers(
                    m.reply.unwrap().as_str(),
                    &[("traceparent", &trace), ("tracestate", &state)],
                    m.payload,
                )
                .await
                .unwrap();
        }
    });
    let nc = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", traceparent);
    headers.insert("tracestate", "congo=t61rcWkgMzE");
    let reply = nc
        .request_with_headers("svc.traced", headers, "payload".into())
        .await
        .unwrap();
    let got = reply.headers.expect("the reply has headers");
    assert_eq!(got.get("traceparent").unwrap().as_str(), traceparent);
    assert_eq!(got.get("tracestate").unwrap().as_str(), "congo=t61rcWkgMzE");
    assert_eq!(reply.payload, "payload");
}
