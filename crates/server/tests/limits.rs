//! Limits and keepalive: what a client that breaks them sees on the wire.

mod common;

use std::time::Duration;

use common::Raw;
use futures::StreamExt;
use starling_server::{Auth, ClosedReason, Event, Server};

#[tokio::test]
async fn stale_connection_after_unanswered_pings() {
    let server = common::start_with(
        Server::builder()
            .ping_interval(Duration::from_millis(50))
            .max_pings_out(2),
    )
    .await;
    let mut raw = Raw::quiet(server.client_addr().unwrap()).await;
    // The client never answers: two PINGs, then the error and the close.
    assert_eq!(
        raw.until_eof().await,
        vec!["PING", "PING", "-ERR 'Stale Connection'"]
    );
}

#[tokio::test]
async fn answered_pings_keep_the_connection() {
    let server =
        common::start_with(Server::builder().ping_interval(Duration::from_millis(30))).await;
    let mut raw = Raw::quiet(server.client_addr().unwrap()).await;
    for _ in 0..5 {
        assert_eq!(raw.line().await.as_deref(), Some("PING"));
        raw.send("PONG\r\n").await;
    }
    assert!(raw.until_pong().await.is_empty());
}

#[tokio::test]
async fn maximum_connections() {
    let server = common::start_with(Server::builder().max_connections(1)).await;
    let addr = server.client_addr().unwrap();
    let _first = Raw::quiet(addr).await;
    let (mut second, _) = Raw::connect_info(addr).await;
    assert_eq!(
        second.until_eof().await,
        vec!["-ERR 'maximum connections exceeded'"]
    );
}

#[tokio::test]
async fn maximum_subscriptions_keeps_the_connection() {
    let server = common::start_with(Server::builder().max_subscriptions(2)).await;
    let mut raw = Raw::quiet(server.client_addr().unwrap()).await;
    raw.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPUB c 1\r\nx\r\nPUB a 1\r\ny\r\n")
        .await;
    assert_eq!(
        raw.until_pong().await,
        vec!["-ERR 'maximum subscriptions exceeded'", "MSG a 1 1", "y"]
    );
}

#[tokio::test]
async fn custom_max_payload_is_enforced_before_the_body() {
    let server = common::start_with(Server::builder().max_payload(100)).await;
    let (mut raw, info) = Raw::connect_info(server.client_addr().unwrap()).await;
    assert!(info.contains(r#""max_payload":100"#), "{info}");
    // Only the control line is sent: the error must not wait for the body.
    raw.send("CONNECT {\"verbose\":false}\r\nPUB foo 101\r\n")
        .await;
    assert_eq!(
        raw.until_eof().await,
        vec!["-ERR 'Maximum Payload Violation'"]
    );
}

#[tokio::test]
async fn user_password_auth() {
    let server = common::start_with(Server::builder().auth(Auth::UserPassword {
        user: "bob".into(),
        password: "s3cret".into(),
    }))
    .await;
    let addr = server.client_addr().unwrap();
    let (mut raw, info) = Raw::connect_info(addr).await;
    assert!(info.contains(r#""auth_required":true"#), "{info}");
    raw.send("CONNECT {\"user\":\"bob\",\"pass\":\"wrong\"}\r\n")
        .await;
    assert_eq!(
        raw.until_eof().await,
        vec!["-ERR 'Authorization Violation'"]
    );

    let (mut raw, _) = Raw::connect_info(addr).await;
    raw.send("SUB foo 1\r\n").await;
    assert_eq!(
        raw.until_eof().await,
        vec!["-ERR 'Authorization Violation'"]
    );

    let ok = Raw::handshake(addr, r#"{"verbose":false,"user":"bob","pass":"s3cret"}"#).await;
    drop(ok);
    let client = async_nats::ConnectOptions::with_user_and_password("bob".into(), "s3cret".into())
        .connect(server.client_url().unwrap())
        .await
        .expect("right credentials connect");
    client.flush().await.unwrap();
}

#[tokio::test]
async fn token_auth_and_timeout() {
    let server = common::start_with(
        Server::builder()
            .auth(Auth::Token("t0k".into()))
            .auth_timeout(Duration::from_millis(100)),
    )
    .await;
    let addr = server.client_addr().unwrap();
    Raw::handshake(addr, r#"{"verbose":false,"auth_token":"t0k"}"#).await;
    let (mut silent, _) = Raw::connect_info(addr).await;
    assert_eq!(
        silent.until_eof().await,
        vec!["-ERR 'Authentication Timeout'"]
    );
}

/// A subscriber that never reads is cut off (no -ERR) once its pending bytes pass the limit;
/// the publisher and a healthy subscriber are unaffected, and the server counts and reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_cut_off_and_others_carry_on() {
    let server = common::start_with(
        Server::builder()
            .max_pending(1024 * 1024)
            .max_payload(64 * 1024),
    )
    .await;
    let addr = server.client_addr().unwrap();
    let mut events = server.events();

    let mut stalled = Raw::quiet(addr).await;
    stalled.send("SUB data 1\r\n").await;
    stalled.until_pong().await;
    let healthy = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let mut healthy_sub = healthy.subscribe("data").await.unwrap();
    healthy.flush().await.unwrap();

    let publisher = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let chunk = bytes::Bytes::from(vec![b'x'; 60 * 1024]);
    let n = 200;
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            tokio::time::timeout(common::WAIT, healthy_sub.next())
                .await
                .unwrap()
                .unwrap();
            got += 1;
        }
        got
    });
    // A flush after each message: a subscriber that reads at all is never more than one
    // message behind (however loaded the machine), while the stalled one piles up 12 MB.
    for _ in 0..n {
        publisher.publish("data", chunk.clone()).await.unwrap();
        publisher.flush().await.unwrap();
    }
    assert_eq!(
        reader.await.unwrap(),
        n,
        "healthy subscriber got everything"
    );

    let slow_cid = loop {
        match tokio::time::timeout(common::WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
        {
            Event::SlowConsumer { cid } => break cid,
            _ => continue,
        }
    };
    loop {
        if let Event::ClientClosed { cid, reason } =
            tokio::time::timeout(common::WAIT, events.next())
                .await
                .unwrap()
                .unwrap()
        {
            if cid == slow_cid {
                assert_eq!(reason, ClosedReason::SlowConsumerPendingBytes);
                break;
            }
        }
    }
    assert_eq!(server.stats().slow_consumers, 1);
    // The stalled client now reads: some messages, never an -ERR, then EOF.
    let bytes = stalled.bytes_until_eof().await;
    assert!(bytes.starts_with(b"MSG data 1 61440\r\n"));
    assert!(
        !bytes.windows(5).any(|w| w == b"-ERR "),
        "no -ERR for slow consumers"
    );
}

/// A subscriber whose socket stops draining is cut off once one write stalls longer than the
/// write deadline, even though its pending bytes are still far below max_pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_deadline_cuts_off_a_stalled_socket() {
    let server = common::start_with(
        Server::builder()
            .write_deadline(Duration::from_millis(200))
            .no_fast_producer_stall(true),
    )
    .await;
    let addr = server.client_addr().unwrap();
    let mut events = server.events();
    let mut stalled = Raw::quiet(addr).await;
    stalled.send("SUB big 1\r\n").await;
    stalled.until_pong().await;
    let publisher = server.client();
    let chunk = bytes::Bytes::from(vec![b'y'; 256 * 1024]);
    // 16 MiB: far beyond what loopback socket buffers hold, far below the 64 MiB limit.
    for _ in 0..64 {
        publisher.publish("big", chunk.clone()).await.unwrap();
    }
    let cid = loop {
        match tokio::time::timeout(common::WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
        {
            Event::ClientClosed { cid, reason } if cid != publisher.cid() => {
                assert_eq!(reason, ClosedReason::SlowConsumerWriteDeadline);
                break cid;
            }
            _ => {}
        }
    };
    assert!(cid > 0);
    assert_eq!(server.stats().slow_consumers, 1);
}

/// A control line that takes a connection past max_pending closes it as a slow consumer,
/// counted and reported, exactly as a message would: here PONGs for a client whose byte stream
/// is a 64-byte pipe it never reads. (Before, only the message path handled the limit: the
/// queue refused the PONGs and the connection stayed open, silently dropping output.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_past_max_pending_close_a_slow_consumer() {
    let server = common::start_with(Server::builder().max_pending(4096).max_payload(1024)).await;
    let mut events = server.events();
    let (client_end, server_end) = tokio::io::duplex(64);
    server.serve_connection(server_end, None);
    let (_client_read, mut client_write) = tokio::io::split(client_end);
    use tokio::io::AsyncWriteExt;
    let mut script = String::from("CONNECT {\"verbose\":false}\r\n");
    for _ in 0..2000 {
        script.push_str("PING\r\n"); // 2000 PONGs: 12000 bytes for a 4096-byte budget
    }
    // The server cuts the client off before it has written everything: a broken pipe then.
    let _ = client_write.write_all(script.as_bytes()).await;
    let cid = loop {
        match tokio::time::timeout(common::WAIT, events.next())
            .await
            .expect("the client is cut off")
            .unwrap()
        {
            Event::SlowConsumer { cid } => break cid,
            _ => continue,
        }
    };
    loop {
        match tokio::time::timeout(common::WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
        {
            Event::ClientClosed { cid: c, reason } if c == cid => {
                assert_eq!(reason, ClosedReason::SlowConsumerPendingBytes);
                break;
            }
            _ => continue,
        }
    }
    assert_eq!(server.stats().slow_consumers, 1);
    assert_eq!(server.stats().connections, 0);
}
