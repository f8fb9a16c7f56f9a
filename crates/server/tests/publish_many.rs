//! The in-process client's batch path: `publish_many` runs and `Subscriber::next_batch`, with
//! the semantics of one `publish` per message (order, queue groups, sockets, auto-unsubscribe,
//! limits, slow consumers), and subjects long and short.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use starling_server::{
    Batch, ClientError, ClosedReason, Event, Message, Server, NEXT_BATCH_MAX, PUBLISH_MANY_RUN,
};

fn payloads(n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(i.to_string())).collect()
}

fn numbers(msgs: &[Message]) -> Vec<usize> {
    msgs.iter()
        .map(|m| std::str::from_utf8(&m.payload).unwrap().parse().unwrap())
        .collect()
}

/// Every kind of receiver gets every message once, in order: in-process plain and wildcard
/// subscribers (the payloads themselves, not copies), a socket client, and a queue group whose
/// members share the messages.
#[tokio::test]
async fn a_run_reaches_every_kind_of_subscriber_in_order() {
    let server = common::start().await;
    let publisher = server.client();
    let reader = server.client();
    let mut plain = reader.subscribe("orders.created").await.unwrap();
    let mut wildcard = reader.subscribe("orders.>").await.unwrap();
    let mut q1 = reader
        .queue_subscribe("orders.created", "workers")
        .await
        .unwrap();
    let mut q2 = server
        .client()
        .queue_subscribe("orders.created", "workers")
        .await
        .unwrap();
    let socket = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let mut remote = socket.subscribe("orders.created").await.unwrap();
    common::round_trip(&socket).await;

    // More than one run's worth, so the run boundary is crossed.
    let n = PUBLISH_MANY_RUN + 300;
    let sent = payloads(n);
    let origins: Vec<usize> = sent.iter().map(|p| p.as_ptr() as usize).collect();
    publisher
        .publish_many("orders.created", sent)
        .await
        .unwrap();

    for sub in [&mut plain, &mut wildcard] {
        let mut got = Vec::new();
        while got.len() < n {
            assert!(sub.next_batch(&mut got).await);
        }
        assert_eq!(numbers(&got), (0..n).collect::<Vec<_>>());
        assert!(got.iter().all(|m| m.subject == "orders.created"));
        let addresses: Vec<usize> = got.iter().map(|m| m.payload.as_ptr() as usize).collect();
        assert_eq!(addresses, origins, "zero copy, in order");
    }
    for i in 0..n {
        let m = remote.next().await.unwrap();
        assert_eq!(m.payload, i.to_string().as_bytes(), "socket order");
    }
    // Each message went to exactly one member of the group.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    while a.len() + b.len() < n {
        tokio::select! {
            Some(m) = q1.next() => a.push(m),
            Some(m) = q2.next() => b.push(m),
        }
    }
    let mut all = numbers(&a);
    all.extend(numbers(&b));
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    // Nothing more anywhere: a round trip on the socket, and empty in-process queues.
    common::round_trip(&socket).await;
    for sub in [&mut plain, &mut q1, &mut q2] {
        assert!(
            tokio::time::timeout(Duration::from_millis(20), sub.next())
                .await
                .is_err(),
            "a message was delivered twice"
        );
    }
}

/// Single publishes and runs to one subscriber keep their order, read one by one or in
/// batches; the stream ends after what was delivered once the subscription is gone.
#[tokio::test]
async fn single_publishes_and_runs_interleave_in_order() {
    let server = Server::builder().start().await.unwrap();
    let client = server.client();
    let mut sub = client
        .subscribe("a.long.subject.beyond.the.inline.size")
        .await
        .unwrap();
    let subject = "a.long.subject.beyond.the.inline.size";
    client.publish(subject, "0").await.unwrap();
    client
        .publish_many(subject, ["1", "2", "3"].map(Bytes::from))
        .await
        .unwrap();
    client.publish(subject, "4").await.unwrap();
    client
        .publish_many(subject, ["5", "6"].map(Bytes::from))
        .await
        .unwrap();
    // An empty batch publishes nothing.
    client
        .publish_many(subject, Vec::<Bytes>::new())
        .await
        .unwrap();
    let first = sub.next().await.unwrap();
    assert_eq!(first.payload, "0");
    assert_eq!(first.subject, subject);
    let mut rest = Vec::new();
    assert!(sub.next_batch(&mut rest).await);
    assert_eq!(numbers(&rest), [1, 2, 3, 4, 5, 6]);
    sub.unsubscribe();
    client.publish(subject, "7").await.unwrap();
    let mut after = Vec::new();
    assert!(!sub.next_batch(&mut after).await, "ended");
    assert!(after.is_empty());
    assert!(sub.next().await.is_none());
}

/// `unsubscribe_after(n)` counts the messages of a run one by one: exactly `n` arrive, then
/// the stream ends.
#[tokio::test]
async fn auto_unsubscribe_stops_inside_a_run() {
    let server = Server::builder().start().await.unwrap();
    let client = server.client();
    let mut sub = client.subscribe("a").await.unwrap();
    sub.unsubscribe_after(5);
    client.publish("a", "0").await.unwrap();
    client.publish_many("a", payloads(10)).await.unwrap();
    let got: Vec<Message> = sub.by_ref().collect().await;
    assert_eq!(numbers(&got), [0, 0, 1, 2, 3]);
}

/// However far behind a subscriber is, one `next_batch` adds at most `NEXT_BATCH_MAX`
/// messages (splitting a run, after single messages before it); the rest come, in order, from
/// the next calls.
#[tokio::test]
async fn next_batch_takes_at_most_its_maximum() {
    let server = Server::builder().start().await.unwrap();
    let client = server.client();
    let mut sub = client.subscribe("a").await.unwrap();
    client.publish("a", "already there").await.unwrap();
    client.publish("a", "0").await.unwrap();
    let n = 3 * NEXT_BATCH_MAX;
    client.publish_many("a", payloads(n)).await.unwrap();
    client.publish("a", "0").await.unwrap();
    // One read by `next` first: batches continue from where it stopped.
    let mut got = vec![sub.next().await.unwrap()];
    let mut sizes = Vec::new();
    while got.len() < n + 3 {
        let before = got.len();
        assert!(sub.next_batch(&mut got).await);
        sizes.push(got.len() - before);
    }
    assert_eq!(sizes.iter().sum::<usize>(), n + 2);
    assert!(sizes.iter().all(|&k| k <= NEXT_BATCH_MAX), "{sizes:?}");
    assert_eq!(
        sizes[0], NEXT_BATCH_MAX,
        "everything was queued: a full batch"
    );
    let mut want = vec![0];
    want.extend(0..n);
    want.push(0);
    assert_eq!(got[0].payload, "already there", "appended, not replaced");
    assert_eq!(numbers(&got[1..]), want);
}

/// `next_payloads` hands a whole run over as the publisher's payloads (same addresses, in
/// order), folds in single messages to the same subject, splits where the subject changes,
/// returns a message with a reply or headers whole, and keeps order with `next` and
/// `next_batch` reads in between; `None` once the subscription has ended.
#[tokio::test]
async fn next_payloads_reads_runs_as_payloads_and_keeps_order() {
    let server = Server::builder().start().await.unwrap();
    let client = server.client();
    let mut sub = client.subscribe("t.*").await.unwrap();
    let sent = payloads(PUBLISH_MANY_RUN);
    let origins: Vec<usize> = sent.iter().map(|p| p.as_ptr() as usize).collect();
    client.publish_many("t.a", sent).await.unwrap();
    client.publish("t.a", "after").await.unwrap();
    client.publish("t.b", "other subject").await.unwrap();
    client
        .publish_with_reply("t.b", "inbox", "a request")
        .await
        .unwrap();
    client.publish_many("t.c", payloads(3)).await.unwrap();
    client.publish("t.c", "last").await.unwrap();

    let mut got = vec![Bytes::from_static(b"stale")];
    match sub.next_payloads(&mut got).await {
        Some(Batch::Payloads(subject)) => assert_eq!(subject, "t.a"),
        other => panic!("{other:?}"),
    }
    assert_eq!(got.len(), NEXT_BATCH_MAX.min(PUBLISH_MANY_RUN + 1));
    let addresses: Vec<usize> = got[..PUBLISH_MANY_RUN]
        .iter()
        .map(|p| p.as_ptr() as usize)
        .collect();
    assert_eq!(addresses, origins, "the publisher's payloads, in order");
    let mut rest = Vec::new();
    if got.len() == PUBLISH_MANY_RUN {
        // The run filled the batch: the single message to the same subject comes next.
        assert!(matches!(
            sub.next_payloads(&mut rest).await,
            Some(Batch::Payloads(s)) if s == "t.a"
        ));
        assert_eq!(rest, ["after"]);
    }
    match sub.next_payloads(&mut rest).await {
        Some(Batch::Payloads(subject)) => assert_eq!(subject, "t.b"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rest, ["other subject"], "split where the subject changes");
    match sub.next_payloads(&mut rest).await {
        Some(Batch::Message(m)) => {
            assert_eq!(m.reply.as_ref().map(|r| r.as_str()), Some("inbox"));
            assert_eq!(m.payload, "a request");
        }
        other => panic!("{other:?}"),
    }
    assert!(rest.is_empty());
    // A run partly read one by one, then the rest as payloads with what follows.
    assert_eq!(sub.next().await.unwrap().payload, "0");
    assert!(matches!(
        sub.next_payloads(&mut rest).await,
        Some(Batch::Payloads(s)) if s == "t.c"
    ));
    assert_eq!(rest, ["1", "2", "last"]);
    // A run read to its end one by one leaves nothing behind for the next read.
    client.publish_many("t.d", payloads(1)).await.unwrap();
    client.publish("t.e", "x").await.unwrap();
    assert_eq!(sub.next().await.unwrap().payload, "0");
    assert!(matches!(
        sub.next_payloads(&mut rest).await,
        Some(Batch::Payloads(s)) if s == "t.e"
    ));
    assert_eq!(rest, ["x"]);
    sub.unsubscribe();
    assert!(sub.next_payloads(&mut rest).await.is_none());
}

/// A payload over max_payload fails the call with the limit's error, as `publish` would;
/// nothing of the failing run is delivered, the runs before it are.
#[tokio::test]
async fn an_oversized_payload_fails_the_batch() {
    let server = Server::builder().max_payload(8).start().await.unwrap();
    let client = server.client();
    let mut sub = client.subscribe("a").await.unwrap();
    let mut batch = payloads(PUBLISH_MANY_RUN);
    batch.push(Bytes::from_static(b"far too large"));
    assert_eq!(
        client.publish_many("a", batch).await,
        Err(ClientError::MaxPayload)
    );
    assert_eq!(
        client.publish_many("a.*", payloads(1)).await,
        Err(ClientError::InvalidSubject)
    );
    let mut got = Vec::new();
    assert!(sub.next_batch(&mut got).await);
    assert_eq!(got.len(), PUBLISH_MANY_RUN, "the first run only");
}

/// A subscriber that does not read is closed as a slow consumer once runs pass its
/// max_pending, as with single publishes; the publisher carries on.
#[tokio::test]
async fn runs_past_max_pending_make_a_slow_consumer() {
    let server = Server::builder()
        .max_pending(64 * 1024)
        .max_payload(1024)
        .no_fast_producer_stall(true)
        .start()
        .await
        .unwrap();
    let mut events = server.events();
    let publisher = server.client();
    let idle = server.client();
    let _sub = idle.subscribe("a").await.unwrap();
    let payload = Bytes::from(vec![b'x'; 1000]);
    for _ in 0..100 {
        publisher
            .publish_many("a", std::iter::repeat_n(payload.clone(), 10))
            .await
            .unwrap();
        if idle.is_closed() {
            break;
        }
    }
    assert!(idle.is_closed(), "closed as a slow consumer");
    assert!(!publisher.is_closed());
    loop {
        match events.next().await.unwrap() {
            Event::ClientClosed { cid, reason, .. } if cid == idle.cid() => {
                assert_eq!(reason, ClosedReason::SlowConsumerPendingBytes);
                break;
            }
            _ => {}
        }
    }
}

/// A server that shut down refuses in-process publishes, single or batched.
#[tokio::test]
async fn a_stopped_server_refuses_publishes() {
    let server = Server::builder().start().await.unwrap();
    let client = server.client();
    server.shutdown().await;
    assert!(client.is_closed());
    assert_eq!(client.publish("a", "x").await, Err(ClientError::Closed));
    assert_eq!(
        client.publish_many("a", payloads(3)).await,
        Err(ClientError::Closed)
    );
}
