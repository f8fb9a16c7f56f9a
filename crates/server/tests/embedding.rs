//! The embedding API: builder, in-process client, events, many brokers in one process, and
//! shutdown in the cases that broke other brokers.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use starling_server::{ClientError, ConnKind, Event, RequestError, Server, StartError};

#[tokio::test]
async fn broker_without_a_listener_serves_in_process_clients() {
    let server = Server::builder().start().await.unwrap();
    assert_eq!(server.client_addr(), None);
    let client = server.client();
    let mut sub = client.subscribe("a.*").await.unwrap();
    let payload = Bytes::from(vec![42u8; 4096]);
    client.publish("a.b", payload.clone()).await.unwrap();
    let m = sub.next().await.unwrap();
    assert_eq!(m.subject, "a.b");
    // Zero copy: the subscriber holds the publisher's very bytes.
    assert_eq!(m.payload.as_ptr(), payload.as_ptr());
    server.shutdown().await;
    assert!(server.is_stopped());
}

#[tokio::test]
async fn in_process_and_socket_clients_talk_both_ways() {
    let server = common::start().await;
    let local = server.client();
    let remote = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();

    let mut local_sub = local.subscribe("to.local").await.unwrap();
    let mut remote_sub = remote.subscribe("to.remote").await.unwrap();
    remote.flush().await.unwrap();

    remote.publish("to.local", "hi local".into()).await.unwrap();
    remote.flush().await.unwrap();
    assert_eq!(local_sub.next().await.unwrap().payload, "hi local");

    local.publish("to.remote", "hi remote").await.unwrap();
    let m = tokio::time::timeout(common::WAIT, remote_sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "hi remote");

    let stats = server.stats();
    assert_eq!(stats.connections, 2);
    assert!(stats.in_msgs >= 2 && stats.out_msgs >= 2);
}

#[tokio::test]
async fn in_process_request_reply_and_no_responders() {
    let server = Server::builder().start().await.unwrap();
    let svc = server.client();
    let mut requests = svc.subscribe("scheduler.place").await.unwrap();
    let responder = svc.clone();
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let reply = m.reply.unwrap();
            responder
                .publish(
                    reply.as_str(),
                    Bytes::from(format!(
                        "placed {}",
                        std::str::from_utf8(&m.payload).unwrap()
                    )),
                )
                .await
                .unwrap();
        }
    });
    let client = server.client();
    let r = client.request("scheduler.place", "vol-1").await.unwrap();
    assert_eq!(r.payload, "placed vol-1");
    assert_eq!(
        client.request("nobody", "x").await.unwrap_err(),
        RequestError::NoResponders
    );

    let _mute = svc.subscribe("mute").await.unwrap();
    let err = client
        .request_with_timeout("mute", "x", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err, RequestError::TimedOut);
}

#[tokio::test]
async fn in_process_queue_groups_and_limits() {
    let server = Server::builder()
        .max_payload(1000)
        .max_subscriptions(3)
        .start()
        .await
        .unwrap();
    let client = server.client();
    let mut a = client.queue_subscribe("jobs.>", "workers").await.unwrap();
    let mut b = client.queue_subscribe("jobs.>", "workers").await.unwrap();
    for i in 0..100 {
        client.publish(format!("jobs.{i}"), "j").await.unwrap();
    }
    let mut total = 0;
    for s in [&mut a, &mut b] {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(20), s.next()).await {
            total += 1;
        }
    }
    assert_eq!(total, 100);
    assert_eq!(
        client.publish("x", vec![0u8; 1001]).await,
        Err(ClientError::MaxPayload)
    );
    assert_eq!(
        client.subscribe("a..b").await.unwrap_err(),
        ClientError::InvalidSubject
    );
    assert_eq!(
        client.publish("a.*", "x").await,
        Err(ClientError::InvalidSubject)
    );
    let _c = client.subscribe("c").await.unwrap();
    assert_eq!(
        client.subscribe("d").await.unwrap_err(),
        ClientError::MaxSubscriptions
    );
    drop(a);
    client
        .subscribe("d")
        .await
        .expect("dropping a subscriber frees its slot");
}

#[tokio::test]
async fn many_brokers_in_one_process_are_independent() {
    let mut servers = Vec::new();
    for _ in 0..5 {
        servers.push(common::start().await);
    }
    let ids: std::collections::HashSet<_> =
        servers.iter().map(|s| s.server_id().to_string()).collect();
    assert_eq!(ids.len(), 5);
    let mut subs = Vec::new();
    for s in &servers {
        subs.push(s.client().subscribe("x").await.unwrap());
    }
    servers[0].client().publish("x", "only zero").await.unwrap();
    assert_eq!(subs[0].next().await.unwrap().payload, "only zero");
    for sub in subs.iter_mut().skip(1) {
        assert!(tokio::time::timeout(Duration::from_millis(50), sub.next())
            .await
            .is_err());
    }
    for s in &servers {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn events_report_connects_and_closes() {
    let server = common::start().await;
    let mut events = server.events();
    let client = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let cid = match events.next().await.unwrap() {
        Event::ClientConnected { cid, kind, addr } => {
            assert_eq!(kind, ConnKind::Client);
            assert!(addr.unwrap().ip().is_loopback());
            cid
        }
        other => panic!("unexpected {other:?}"),
    };
    // Its CONNECT put it in the global account.
    match tokio::time::timeout(common::WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
    {
        Event::ClientAuthorized {
            cid: authorized,
            account,
            user,
        } => {
            assert_eq!((authorized, account.as_str(), user), (cid, "$G", None));
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(client);
    match tokio::time::timeout(common::WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
    {
        Event::ClientClosed { cid: closed, .. } => assert_eq!(closed, cid),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn port_in_use_names_the_listener() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Server::builder()
        .listen(addr.to_string())
        .start()
        .await
        .unwrap_err();
    match &err {
        StartError::Bind {
            listener, addr: a, ..
        } => {
            assert_eq!(*listener, "client");
            assert_eq!(*a, addr);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("client port"), "{err}");
}

#[tokio::test]
async fn already_bound_listener_and_any_stream() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = Server::builder().listener(l).start().await.unwrap();
    assert_eq!(server.client_addr(), Some(addr));
    common::Raw::quiet(addr).await;

    // A connection over an in-memory pipe.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    server.serve_connection(theirs, None);
    let (mut r, mut w) = tokio::io::split(ours);
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    w.write_all(b"CONNECT {\"verbose\":false}\r\nSUB p 1\r\nPUB p 2\r\nok\r\nPING\r\n")
        .await
        .unwrap();
    let mut lines = BufReader::new(&mut r).lines();
    assert!(lines
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .starts_with("INFO "));
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "MSG p 1 2");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "ok");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "PONG");
}

#[tokio::test]
async fn invalid_configuration_is_an_error() {
    let err = Server::builder()
        .max_payload(128 << 20)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StartError::Invalid(e) if e.option() == "max_payload"),
        "{err}"
    );
    let err = Server::builder()
        .listen("not an address")
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StartError::Invalid(e) if e.option() == "listen"),
        "{err}"
    );
    let err = Server::builder()
        .listen("no.such.host.invalid:4222")
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Address {
                listener: "client",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn shutdown_twice_and_right_after_start() {
    let server = common::start().await;
    server.shutdown().await;
    server.shutdown().await;
    assert!(server.is_stopped());
    let addr = server.client_addr().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
    assert_eq!(
        server.client().publish("x", "y").await,
        Err(ClientError::Closed)
    );
}

#[tokio::test]
async fn shutdown_tells_protocol_1_clients_lame_duck_and_closes() {
    let server = common::start().await;
    let mut raw = common::Raw::quiet(server.client_addr().unwrap()).await;
    let s2 = server.clone();
    let done = tokio::spawn(async move { s2.shutdown().await });
    let lines = raw.until_eof().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("INFO ") && lines[0].contains(r#""ldm":true"#),
        "{lines:?}"
    );
    done.await.unwrap();
    assert!(server.is_stopped());
}

/// The case that broke other brokers: a subscriber that never reads holds a publisher back
/// (fast-producer stall); shutdown must release both and return with every task ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_stalled_subscriber_and_a_held_back_publisher() {
    let server =
        common::start_with(Server::builder().drain_timeout(Duration::from_millis(300))).await;
    let addr = server.client_addr().unwrap();
    let mut stalled = common::Raw::quiet(addr).await;
    stalled.send("SUB flood 1\r\n").await;
    stalled.until_pong().await;
    let publisher = server.client();
    let chunk = Bytes::from(vec![0u8; 512 * 1024]);
    let (backed_up, is_backed_up) = tokio::sync::oneshot::channel();
    let pump = tokio::spawn(async move {
        // 40 x 512 KiB is far more than loopback socket buffers hold: by then the subscriber is
        // backed up and the publisher is being stalled. Runs until the server closes it.
        let mut n = 0;
        let mut backed_up = Some(backed_up);
        while publisher.publish("flood", chunk.clone()).await.is_ok() {
            n += 1;
            if n == 40 {
                let _ = backed_up.take().unwrap().send(());
            }
        }
    });
    tokio::time::timeout(common::WAIT, is_backed_up)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown returns while a subscriber is stalled");
    tokio::time::timeout(Duration::from_secs(5), pump)
        .await
        .expect("publisher released")
        .unwrap();
    assert!(server.is_stopped());
    drop(stalled);
}

#[tokio::test]
async fn dropping_the_last_handle_shuts_down() {
    let server = common::start().await;
    let addr = server.client_addr().unwrap();
    let client = server.client();
    let clone = server.clone();
    drop(server);
    common::Raw::quiet(addr).await; // one handle left: still serving
    drop(clone);
    // The in-process client notices the close.
    let closed = async {
        loop {
            if client.is_closed() {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(common::WAIT, closed)
        .await
        .expect("client closed after last handle dropped");
}

/// A subscriber's stream ends once its subscription is gone, after the messages delivered
/// before: unsubscribe-after-N, explicit unsubscribe, and server shutdown.
#[tokio::test]
async fn subscriber_streams_end_when_the_subscription_is_gone() {
    let server = Server::builder().start().await.unwrap();
    let client = server.client();
    let mut limited = client.subscribe("s").await.unwrap();
    limited.unsubscribe_after(2);
    let mut explicit = client.subscribe("s").await.unwrap();
    let mut until_shutdown = client.subscribe("s").await.unwrap();
    for _ in 0..3 {
        client.publish("s", "m").await.unwrap();
    }
    explicit.unsubscribe();
    let limited: Vec<_> = tokio::time::timeout(common::WAIT, limited.collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    let explicit: Vec<_> = tokio::time::timeout(common::WAIT, explicit.collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        explicit.len(),
        3,
        "messages delivered before unsubscribing are still read"
    );
    server.shutdown().await;
    let rest: Vec<_> =
        tokio::time::timeout(common::WAIT, (&mut until_shutdown).collect::<Vec<_>>())
            .await
            .unwrap();
    assert_eq!(rest.len(), 3);
}
