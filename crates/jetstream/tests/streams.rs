//! Streams through async-nats's JetStream API against an embedded broker.

use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
mod common;

use common::memory;
use starling_jetstream::{JetStream, ServerBuilderExt};
use starling_server::Server;

async fn broker(js: JetStream) -> (Server, jetstream::Context) {
    let (server, js) = common::broker(js).await;
    let info = raw_info(&server).await;
    assert!(
        info.contains(r#""jetstream":true"#),
        "INFO says jetstream: {info}"
    );
    (server, js)
}

/// The INFO line a new connection gets.
async fn raw_info(server: &Server) -> String {
    use tokio::io::AsyncBufReadExt;
    let sock = tokio::net::TcpStream::connect(server.client_addr().unwrap())
        .await
        .unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(sock)
        .read_line(&mut line)
        .await
        .unwrap();
    line
}

#[tokio::test]
async fn publish_is_acknowledged_stored_and_readable() {
    let (_server, js) = broker(JetStream::new()).await;
    let mut s = js
        .create_stream(memory("ORDERS", &["orders.>"]))
        .await
        .unwrap();
    for i in 1..=3u64 {
        let ack = js
            .publish(format!("orders.{i}"), format!("order {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(
            (ack.stream.as_str(), ack.sequence, ack.duplicate),
            ("ORDERS", i, false)
        );
    }
    let info = s.info().await.unwrap();
    assert_eq!(info.state.messages, 3);
    assert_eq!(
        (info.state.first_sequence, info.state.last_sequence),
        (1, 3)
    );
    assert_eq!(info.config.storage, stream::StorageType::Memory);
    let m = s.get_raw_message(2).await.unwrap();
    assert_eq!(m.subject.as_str(), "orders.2");
    assert_eq!(&m.payload[..], b"order 2");
    let last = s.get_last_raw_message_by_subject("orders.3").await.unwrap();
    assert_eq!(last.sequence, 3);
    assert!(s.get_raw_message(9).await.is_err());
    assert!(s.delete_message(2).await.unwrap());
    let info = s.info().await.unwrap();
    assert_eq!(info.state.messages, 2);
    let purged = s.purge().await.unwrap();
    assert_eq!(purged.purged, 2);
    let info = s.info().await.unwrap();
    assert_eq!((info.state.messages, info.state.first_sequence), (0, 4));
    // The next publish continues the sequence.
    let ack = js
        .publish("orders.x", "again".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 4);
}

#[tokio::test]
async fn stream_management_answers_as_nats_server() {
    let (_server, js) = broker(JetStream::new()).await;
    let created = js.create_stream(memory("A", &["a.>"])).await.unwrap();
    // The same config again is fine; a different one is refused.
    js.create_stream(memory("A", &["a.>"])).await.unwrap();
    let err = js.create_stream(memory("A", &["other"])).await.unwrap_err();
    assert!(err.to_string().contains("10058"), "{err}");
    let err = js.create_stream(memory("B", &["a.b"])).await.unwrap_err();
    assert!(err.to_string().contains("10065"), "overlap: {err}");
    js.create_stream(memory("B", &["b"])).await.unwrap();
    use futures::TryStreamExt;
    let mut names: Vec<String> = js.stream_names().try_collect().await.unwrap();
    names.sort();
    assert_eq!(names, vec!["A".to_string(), "B".to_string()]);
    let infos: Vec<_> = js.streams().try_collect().await.unwrap();
    assert_eq!(infos.len(), 2);
    // Update: new limits apply, storage type cannot change.
    let mut config = created.cached_info().config.clone();
    config.max_messages = 2;
    js.update_stream(config.clone()).await.unwrap();
    for i in 0..5 {
        js.publish("a.x", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let info = js
        .get_stream("A")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!((info.state.messages, info.state.first_sequence), (2, 4));
    config.storage = stream::StorageType::File;
    assert!(js.update_stream(config).await.is_err());
    assert!(js.delete_stream("A").await.unwrap().success);
    assert!(js.get_stream("A").await.is_err());
    // A publish to a subject no stream captures: no responders, which async-nats reports.
    let err = js
        .publish("a.x", "x".into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::StreamNotFound);
}

#[tokio::test]
async fn message_ids_deduplicate_and_expectations_are_checked() {
    let (_server, js) = broker(JetStream::new()).await;
    js.create_stream(memory("D", &["d.*"])).await.unwrap();
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", "one");
    let first = js
        .publish_with_headers("d.1", h.clone(), "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let again = js
        .publish_with_headers("d.1", h, "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((first.sequence, first.duplicate), (1, false));
    assert_eq!((again.sequence, again.duplicate), (1, true));
    let mut h = HeaderMap::new();
    h.insert("Nats-Expected-Last-Sequence", "5");
    let err = js
        .publish_with_headers("d.2", h, "x".into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::WrongLastSequence);
    let mut h = HeaderMap::new();
    h.insert("Nats-Expected-Last-Subject-Sequence", "0");
    js.publish_with_headers("d.2", h.clone(), "x".into())
        .await
        .unwrap()
        .await
        .expect("d.2 was empty");
    let err = js
        .publish_with_headers("d.2", h, "x".into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::WrongLastSequence);
    let mut h = HeaderMap::new();
    h.insert("Nats-Expected-Stream", "OTHER");
    let err = js
        .publish_with_headers("d.3", h, "x".into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::Other, "{err}");
    let info = js
        .get_stream("D")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 2);
}

#[tokio::test]
async fn limits_discard_old_or_refuse_new() {
    let (_server, js) = broker(JetStream::new()).await;
    js.create_stream(stream::Config {
        max_messages_per_subject: 2,
        ..memory("KV", &["kv.>"])
    })
    .await
    .unwrap();
    for i in 0..5 {
        js.publish("kv.a", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    js.publish("kv.b", "b".into()).await.unwrap().await.unwrap();
    let mut kv = js.get_stream("KV").await.unwrap();
    let info = kv.info().await.unwrap().clone();
    assert_eq!((info.state.messages, info.state.subjects_count), (3, 2));
    let last = kv.get_last_raw_message_by_subject("kv.a").await.unwrap();
    assert_eq!(&last.payload[..], b"4");

    js.create_stream(stream::Config {
        max_messages: 2,
        discard: stream::DiscardPolicy::New,
        ..memory("NEW", &["new"])
    })
    .await
    .unwrap();
    js.publish("new", "1".into()).await.unwrap().await.unwrap();
    js.publish("new", "2".into()).await.unwrap().await.unwrap();
    let err = js
        .publish("new", "3".into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("maximum messages exceeded"),
        "{err}"
    );

    js.create_stream(stream::Config {
        max_message_size: 4,
        ..memory("SMALL", &["small"])
    })
    .await
    .unwrap();
    let err = js
        .publish("small", "12345".into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10054"), "{err}");
}

#[tokio::test]
async fn file_streams_survive_a_restart() {
    let dir = common::scratch_dir("streams");
    let start = || async { broker(JetStream::new().store_dir(&dir)).await };
    let (server, js) = start().await;
    js.create_stream(stream::Config {
        name: "LOG".into(),
        subjects: vec!["log.>".into()],
        max_messages_per_subject: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 1..=10u64 {
        let ack = js
            .publish(format!("log.{}", i % 2), format!("line {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, i);
    }
    server.shutdown().await;
    drop(js);

    let (server, js) = start().await;
    let mut s = js.get_stream("LOG").await.expect("recovered");
    let info = s.info().await.unwrap().clone();
    assert_eq!(info.config.max_messages_per_subject, 3);
    assert_eq!((info.state.messages, info.state.last_sequence), (6, 10));
    let m = s.get_raw_message(10).await.unwrap();
    assert_eq!(&m.payload[..], b"line 10");
    assert!(
        s.get_raw_message(2).await.is_err(),
        "removed by the per-subject limit"
    );
    let ack = js
        .publish("log.x", "after".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 11);
    js.delete_stream("LOG").await.unwrap();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn jsz_varz_and_metrics_report_jetstream() {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .monitor("127.0.0.1:0")
        .jetstream(JetStream::new().max_memory(1 << 30))
        .start()
        .await
        .unwrap();
    let client = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let js = jetstream::new(client);
    js.create_stream(memory("M", &["m"])).await.unwrap();
    js.publish("m", "x".into()).await.unwrap().await.unwrap();
    let get = |path: &'static str| {
        let addr = server.monitor_addr().unwrap();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).await.unwrap();
            body.split_once("\r\n\r\n").unwrap().1.to_string()
        }
    };
    let jsz: serde_json::Value = serde_json::from_str(&get("/jsz?streams=true").await).unwrap();
    for key in [
        "memory",
        "storage",
        "reserved_memory",
        "reserved_storage",
        "accounts",
        "ha_assets",
        "api",
        "server_id",
        "now",
        "config",
        "limits",
        "streams",
        "consumers",
        "messages",
        "bytes",
        "total",
        "account_details",
    ] {
        assert!(jsz.get(key).is_some(), "/jsz has {key}: {jsz}");
    }
    assert_eq!(jsz["config"]["max_memory"], 1 << 30);
    assert_eq!(
        (jsz["streams"].as_u64(), jsz["messages"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(jsz["account_details"][0]["stream_detail"][0]["name"], "M");
    let varz: serde_json::Value = serde_json::from_str(&get("/varz").await).unwrap();
    assert_eq!(varz["jetstream"]["stats"]["accounts"], 1);
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("starling_jetstream_stream_messages{account=\"$G\",stream=\"M\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_memory_limit_refuses_publishes_and_reservations_past_it() {
    let (_server, js) = broker(JetStream::new().max_memory(4096)).await;
    js.create_stream(memory("FULL", &["full"])).await.unwrap();
    let payload = bytes::Bytes::from(vec![b'x'; 1000]);
    // Each takes 1,034 bytes: three fit in 4,096, a fourth does not.
    for _ in 0..3 {
        js.publish("full", payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let err = js
        .publish("full", payload.clone())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("insufficient memory resources"),
        "{err}"
    );
    // A stream that reserves more than is left is refused.
    let err = js
        .create_stream(stream::Config {
            max_bytes: 1 << 20,
            ..memory("BIG", &["big"])
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10028"), "{err}");
    // Purging gives the room back.
    js.get_stream("FULL").await.unwrap().purge().await.unwrap();
    js.publish("full", payload).await.unwrap().await.unwrap();
}

#[tokio::test]
async fn account_limits_cap_streams_consumers_and_bytes() {
    let mut limits = starling_jetstream::AccountLimits::default();
    limits.max_streams = 1;
    limits.max_consumers = 1;
    limits.max_memory = 2048;
    let (_server, js) = broker(JetStream::new().account_with_limits("$G", limits)).await;
    let info = js.query_account().await.unwrap();
    assert_eq!(
        (info.limits.max_streams, info.limits.max_consumers),
        (Some(1), Some(1))
    );
    let s = js.create_stream(memory("ONE", &["one"])).await.unwrap();
    let err = js.create_stream(memory("TWO", &["two"])).await.unwrap_err();
    assert!(
        err.to_string().contains("maximum number of streams"),
        "{err}"
    );
    s.create_consumer(jetstream::consumer::pull::Config {
        durable_name: Some("a".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = s
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("b".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("maximum consumers"), "{err}");
    let payload = bytes::Bytes::from(vec![b'x'; 1000]);
    js.publish("one", payload.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    let err = js
        .publish("one", payload.clone())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("insufficient memory"), "{err}");
}

#[tokio::test]
async fn a_subject_transform_stores_under_the_new_subject() {
    let (_server, js) = broker(JetStream::new()).await;
    let mut s = js
        .create_stream(stream::Config {
            subject_transform: Some(stream::SubjectTransform {
                source: "in.*.*".into(),
                destination: "out.$2.$1".into(),
            }),
            ..memory("T", &["in.>"])
        })
        .await
        .unwrap();
    js.publish("in.eu.42", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let m = s.get_raw_message(1).await.unwrap();
    assert_eq!(m.subject.as_str(), "out.42.eu");
    let info = s.info().await.unwrap();
    assert_eq!(info.state.messages, 1);
}

#[tokio::test]
async fn keys_of_features_starling_lacks_are_dropped_not_echoed() {
    // Starling speaks 2.11: 2.12's atomic batches, counters, schedules and async persistence
    // are dropped as a 2.11 server drops keys it does not know, so no client believes them on.
    let (server, _js) = broker(JetStream::new()).await;
    let client = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let body = serde_json::json!({
        "name": "NEW",
        "subjects": ["new.>"],
        "storage": "memory",
        "allow_atomic": true,
        "allow_msg_counter": true,
        "allow_msg_schedules": true,
        "persist_mode": "async",
        "metadata": {"kept": "yes"},
    });
    let reply = client
        .request("$JS.API.STREAM.CREATE.NEW", body.to_string().into())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    let config = &info["config"];
    assert_eq!(config["name"], "NEW", "{info}");
    for key in [
        "allow_atomic",
        "allow_msg_counter",
        "allow_msg_schedules",
        "persist_mode",
    ] {
        assert!(config.get(key).is_none(), "{key} echoed: {config}");
    }
    assert_eq!(config["metadata"]["kept"], "yes");
    assert_eq!(config["allow_msg_ttl"], false);
}

#[tokio::test]
async fn a_burst_past_max_pending_never_takes_jetstream_down() {
    // The JetStream client is the server's own: when publishes outrun the store by more than
    // max_pending, the excess is refused (the publisher gets no PubAck and may retry), and
    // JetStream stays up; nothing acknowledged is lost.
    let dir = common::scratch_dir("burst");
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .max_pending(128 * 1024)
        .max_payload(64 * 1024)
        .jetstream(
            JetStream::new()
                .store_dir(&dir)
                .sync(starling_jetstream::SyncPolicy::Always),
        )
        .start()
        .await
        .expect("broker starts");
    let client = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let mut js = jetstream::new(client);
    // A refused publish gets no PubAck: give up on it sooner than async-nats's default.
    js.set_timeout(std::time::Duration::from_secs(2));
    let mut s = js
        .create_stream(stream::Config {
            storage: stream::StorageType::File,
            ..memory("BURST", &["burst.>"])
        })
        .await
        .unwrap();
    let payload = bytes::Bytes::from(vec![7u8; 16 * 1024]);
    let mut pending = Vec::new();
    for i in 0..800u32 {
        let ack = js
            .publish(format!("burst.{i}"), payload.clone())
            .await
            .unwrap();
        pending.push(ack);
    }
    let mut acked = Vec::new();
    for ack in pending {
        if let Ok(a) = ack.await {
            acked.push(a.sequence);
        }
    }
    assert!(!acked.is_empty(), "some of the burst is stored");
    assert!(
        acked.len() < 800,
        "the burst went past max_pending and some of it was refused"
    );
    // Still up: it answers, stores and acknowledges.
    let info = s.info().await.expect("JetStream still answers");
    assert!(
        info.state.messages >= acked.len() as u64,
        "{} acked, {} held",
        acked.len(),
        info.state.messages
    );
    for seq in &acked {
        s.get_raw_message(*seq)
            .await
            .expect("every acked message is held");
    }
    let after = js
        .publish("burst.after", "x".into())
        .await
        .unwrap()
        .await
        .expect("a later publish is acknowledged");
    assert!(after.sequence > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
