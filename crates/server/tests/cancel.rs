//! Cancellable requests: a responder learns that its requester gave up (the request future
//! dropped or timed out, the reply subject unsubscribed, the connection closed), in-process
//! with `Client::cancelled` and over a socket by subscribing to `$CANCEL.<reply>`; on one
//! node and across a three-node cluster.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{recv, Raw, WAIT};
use futures::FutureExt;
use starling_server::{Client, Message, RequestError, Server};

/// Waits for `cancelled`, bounded by [`WAIT`].
async fn cancelled_in_time(client: &Client, request: &Message) {
    tokio::time::timeout(WAIT, client.cancelled(request))
        .await
        .expect("the responder is told the requester gave up");
}

/// A responder on `server` for `subject`, and the first request it gets.
async fn first_request(server: &Server, subject: &str) -> (Client, starling_server::Subscriber) {
    let responder = server.client();
    let requests = responder.subscribe(subject).await.unwrap();
    (responder, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_request_that_times_out_or_is_dropped_cancels() {
    let server = common::start().await;
    let (responder, mut requests) = first_request(&server, "work").await;
    let requester = server.client();

    // Timed out.
    let asked = requester.request_with_timeout("work", "a", Duration::from_millis(50));
    let (answer, request) = tokio::join!(asked, recv(&mut requests));
    assert!(matches!(answer, Err(RequestError::TimedOut)));
    cancelled_in_time(&responder, &request).await;

    // Dropped while waiting: the task is aborted.
    let r = requester.clone();
    let task = tokio::spawn(async move { r.request("work", "b").await });
    let request = recv(&mut requests).await;
    let cancelled = responder.cancelled(&request);
    tokio::pin!(cancelled);
    assert!(
        (&mut cancelled).now_or_never().is_none(),
        "still waited for"
    );
    task.abort();
    tokio::time::timeout(WAIT, cancelled).await.expect("told");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_still_waiting_is_not_cancelled_and_gets_its_answer() {
    let server = common::start().await;
    let (responder, mut requests) = first_request(&server, "work").await;
    let requester = server.client();
    let asked = tokio::spawn(async move { requester.request("work", "x").await });
    let request = recv(&mut requests).await;
    let cancelled = responder.cancelled(&request);
    tokio::pin!(cancelled);
    responder.flush().await.unwrap();
    assert!((&mut cancelled).now_or_never().is_none());
    responder
        .publish(request.reply.as_ref().unwrap().as_str(), "done")
        .await
        .unwrap();
    let answer = asked.await.unwrap().unwrap();
    assert_eq!(answer.payload, "done");
    // A message without a reply subject is never cancelled.
    let plain = Message {
        subject: request.subject.clone(),
        reply: None,
        headers: None,
        payload: Bytes::new(),
    };
    assert!(responder.cancelled(&plain).now_or_never().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_requester_that_unsubscribes_or_disconnects_cancels() {
    let server = common::start().await;
    let (responder, mut requests) = first_request(&server, "work").await;
    let addr = server.client_addr().unwrap();

    // A requester with its own reply subscription gives up by unsubscribing it.
    let mut raw = Raw::quiet(addr).await;
    raw.send("SUB reply.1 1\r\nPUB work reply.1 1\r\nx\r\n")
        .await;
    raw.until_pong().await;
    let request = recv(&mut requests).await;
    let cancelled = responder.cancelled(&request);
    tokio::pin!(cancelled);
    assert!((&mut cancelled).now_or_never().is_none());
    raw.send("UNSUB 1\r\n").await;
    raw.until_pong().await;
    tokio::time::timeout(WAIT, cancelled).await.expect("told");

    // async-nats's requests share one reply subscription: closing the connection gives up.
    let client = async_nats::connect(addr.to_string()).await.unwrap();
    common::round_trip(&client).await;
    let asking = tokio::spawn({
        let client = client.clone();
        async move { client.request("work", "y".into()).await }
    });
    let request = recv(&mut requests).await;
    let cancelled = responder.cancelled(&request);
    tokio::pin!(cancelled);
    assert!((&mut cancelled).now_or_never().is_none());
    asking.abort();
    drop(client);
    tokio::time::timeout(WAIT, cancelled).await.expect("told");
    // Asked after the requester left: at once.
    cancelled_in_time(&responder, &request).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_responder_subscribed_to_cancel_gets_one_empty_message() {
    let server = common::start().await;
    let addr = server.client_addr().unwrap();
    let mut responder = Raw::quiet(addr).await;
    responder.send("SUB work 1\r\n").await;
    responder.until_pong().await;

    let requester = server.client();
    let asked = tokio::spawn(async move {
        requester
            .request_with_timeout("work", "x", Duration::from_millis(300))
            .await
    });
    let msg = responder.line().await.unwrap();
    let reply = msg
        .split(' ')
        .nth(3)
        .unwrap_or_else(|| panic!("MSG work 1 <reply> 1: {msg}"))
        .to_string();
    assert_eq!(responder.line().await.as_deref(), Some("x"));
    responder
        .send(&format!("SUB $CANCEL.{reply} 2\r\nPING\r\n"))
        .await;
    assert_eq!(responder.line().await.as_deref(), Some("PONG"), "not yet");
    assert!(matches!(asked.await.unwrap(), Err(RequestError::TimedOut)));
    assert_eq!(
        responder.line().await.as_deref(),
        Some(format!("MSG $CANCEL.{reply} 2 0").as_str())
    );
    assert_eq!(responder.line().await.as_deref(), Some(""));

    // A watch taken after the requester left fires at once.
    responder.send("SUB $CANCEL.gone.long.ago 3\r\n").await;
    assert_eq!(
        responder.line().await.as_deref(),
        Some("MSG $CANCEL.gone.long.ago 3 0")
    );
    assert_eq!(responder.line().await.as_deref(), Some(""));
    // Requesters may also cancel explicitly: a plain publish to the same subject.
    let mut requester = Raw::quiet(addr).await;
    requester.send("SUB r.9 1\r\nPUB work r.9 1\r\nz\r\n").await;
    requester.until_pong().await;
    assert_eq!(responder.line().await.as_deref(), Some("MSG work 1 r.9 1"));
    assert_eq!(responder.line().await.as_deref(), Some("z"));
    responder.send("SUB $CANCEL.r.9 4\r\nPING\r\n").await;
    assert_eq!(responder.line().await.as_deref(), Some("PONG"));
    requester.send("PUB $CANCEL.r.9 0\r\n\r\n").await;
    requester.until_pong().await;
    assert_eq!(
        responder.line().await.as_deref(),
        Some("MSG $CANCEL.r.9 4 0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_on_another_node_giving_up_reaches_the_responder() {
    let a = common::clustered(Server::builder(), "a", "cancel", &[]).await;
    let seed = [format!("nats://{}", a.cluster_addr().unwrap())];
    let b = common::clustered(Server::builder(), "b", "cancel", &seed).await;
    let c = common::clustered(Server::builder(), "c", "cancel", &seed).await;
    for s in [&a, &b, &c] {
        wait_for(|| s.peers().len() == 2).await;
    }
    let (responder, mut requests) = first_request(&c, "work").await;
    wait_for(|| a.has_interest("work")).await;

    let requester = a.client();
    let asked = requester.request_with_timeout("work", "x", Duration::from_millis(200));
    let (answer, request) = tokio::join!(asked, recv(&mut requests));
    assert!(matches!(answer, Err(RequestError::TimedOut)));
    cancelled_in_time(&responder, &request).await;

    // A socket responder on node B, a socket requester on node A that disconnects.
    let mut watcher = Raw::quiet(b.client_addr().unwrap()).await;
    let mut asker = Raw::quiet(a.client_addr().unwrap()).await;
    asker.send("SUB inbox.7 1\r\n").await;
    asker.until_pong().await;
    wait_for(|| b.has_interest("inbox.7")).await;
    watcher.send("SUB $CANCEL.inbox.7 1\r\nPING\r\n").await;
    assert_eq!(watcher.line().await.as_deref(), Some("PONG"));
    drop(asker);
    assert_eq!(
        watcher.line().await.as_deref(),
        Some("MSG $CANCEL.inbox.7 1 0")
    );
}

/// Polls `done` until it holds, bounded by [`WAIT`] (cluster state has no event to await).
async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "not in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
