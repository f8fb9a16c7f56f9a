//! Mirrors and sources through async-nats's JetStream API against an embedded broker.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use serde_json::Value;
mod common;

use common::{broker, publish};
use starling_jetstream::JetStream;

fn config(name: &str, subjects: &[&str], storage: stream::StorageType) -> stream::Config {
    common::stream_config(name, subjects, storage)
}

fn mirror_of(name: &str, origin: &str, storage: stream::StorageType) -> stream::Config {
    stream::Config {
        name: name.into(),
        storage,
        mirror: Some(stream::Source {
            name: origin.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// STREAM.INFO as raw JSON (the `error` of a mirror's info is not in async-nats's type).
async fn raw_info(js: &jetstream::Context, stream: &str) -> Value {
    js.request(format!("STREAM.INFO.{stream}"), &serde_json::json!({}))
        .await
        .unwrap()
}

/// Polls STREAM.INFO until `done` holds (a deadline, not a sleep, is the synchronisation).
async fn until(js: &jetstream::Context, stream: &str, what: &str, done: impl Fn(&Value) -> bool) {
    // Past the 5 s a mirror waits for a silent origin consumer before replacing it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let info = raw_info(js, stream).await;
        if done(&info) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stream}: {what} not reached: {info}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state(info: &Value, key: &str) -> u64 {
    info["state"][key].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn a_mirror_holds_every_message_at_the_origins_sequence() {
    let (server, js) = broker(JetStream::new()).await;
    let client = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let mut origin = js
        .create_stream(config("ORIGIN", &["orders.>"], stream::StorageType::Memory))
        .await
        .unwrap();
    for i in 1..=5 {
        publish(&js, &format!("orders.{i}"), &format!("order {i}")).await;
    }
    // A gap in the origin becomes a skipped sequence in the mirror.
    assert!(origin.delete_message(3).await.unwrap());
    let mut mirror = js
        .create_stream(mirror_of("MIRROR", "ORIGIN", stream::StorageType::Memory))
        .await
        .unwrap();
    until(&js, "MIRROR", "5 sequences, 4 messages", |i| {
        state(i, "last_seq") == 5 && state(i, "messages") == 4
    })
    .await;
    for seq in [1, 2, 4, 5] {
        let ours = mirror.get_raw_message(seq).await.unwrap();
        let theirs = origin.get_raw_message(seq).await.unwrap();
        assert_eq!(ours.subject, theirs.subject);
        assert_eq!(ours.payload, theirs.payload);
        assert_eq!(ours.time, theirs.time, "a mirror keeps the origin's time");
    }
    assert!(mirror.get_raw_message(3).await.is_err());
    let info = mirror.info().await.unwrap().clone();
    assert_eq!(info.state.first_sequence, 1);
    let m = info.mirror.expect("mirror info");
    assert_eq!((m.name.as_str(), m.lag), ("ORIGIN", 0));
    assert!(m.active.is_some(), "heard from the origin");

    // It keeps following, gaps included.
    publish(&js, "orders.6", "order 6").await;
    publish(&js, "orders.7", "order 7").await;
    assert!(origin.delete_message(6).await.unwrap());
    publish(&js, "orders.8", "order 8").await;
    until(&js, "MIRROR", "last_seq 8", |i| state(i, "last_seq") == 8).await;
    assert_eq!(
        &mirror.get_raw_message(8).await.unwrap().payload[..],
        b"order 8"
    );
    assert_eq!(
        &mirror.get_raw_message(7).await.unwrap().payload[..],
        b"order 7"
    );

    // A mirror cannot be changed into another mirror, nor have subjects.
    let err = js
        .update_stream(mirror_of("MIRROR", "OTHER", stream::StorageType::Memory))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10055"), "{err}");
    let mut bad = mirror_of("BAD", "ORIGIN", stream::StorageType::Memory);
    bad.subjects = vec!["bad".into()];
    let err = js.create_stream(bad).await.unwrap_err();
    assert!(err.to_string().contains("10034"), "{err}");
    let mut bad = mirror_of("BAD", "ORIGIN", stream::StorageType::Memory);
    bad.sources = Some(vec![stream::Source {
        name: "ORIGIN".into(),
        ..Default::default()
    }]);
    let err = js.create_stream(bad).await.unwrap_err();
    assert!(err.to_string().contains("10031"), "{err}");

    // A mirror must take the origin's largest message.
    js.create_stream(stream::Config {
        max_message_size: 1000,
        ..config("BIGMSG", &["big"], stream::StorageType::Memory)
    })
    .await
    .unwrap();
    let err = js
        .create_stream(stream::Config {
            max_message_size: 10,
            ..mirror_of("SMALL", "BIGMSG", stream::StorageType::Memory)
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10030"), "{err}");

    // The mirror's consumer on the origin is not one users see (nats-server's `direct`)...
    assert_eq!(origin.info().await.unwrap().state.consumer_count, 0);
    // ... and deleting the mirror deletes it.
    let mut deleted = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.DELETED.ORIGIN.*")
        .await
        .unwrap();
    client.flush().await.unwrap();
    js.delete_stream("MIRROR").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), deleted.next())
        .await
        .expect("the origin consumer is deleted")
        .unwrap();
}

#[tokio::test]
async fn a_file_mirror_resumes_after_a_restart_without_duplicates() {
    let dir = common::scratch_dir("src");
    let start = || async { broker(JetStream::new().store_dir(&dir)).await };
    let (server, js) = start().await;
    let origin = js
        .create_stream(config("LOG", &["log.>"], stream::StorageType::File))
        .await
        .unwrap();
    for i in 1..=4 {
        publish(&js, &format!("log.{i}"), &format!("line {i}")).await;
    }
    assert!(origin.delete_message(3).await.unwrap());
    js.create_stream(mirror_of("BACKUP", "LOG", stream::StorageType::File))
        .await
        .unwrap();
    until(&js, "BACKUP", "last_seq 4", |i| {
        state(i, "last_seq") == 4 && state(i, "messages") == 3
    })
    .await;
    server.shutdown().await;
    drop(js);

    let (server, js) = start().await;
    let info = raw_info(&js, "BACKUP").await;
    assert_eq!(
        (state(&info, "messages"), state(&info, "last_seq")),
        (3, 4),
        "{info}"
    );
    for i in 5..=6 {
        assert_eq!(
            publish(&js, &format!("log.{i}"), &format!("line {i}")).await,
            i
        );
    }
    until(&js, "BACKUP", "last_seq 6", |i| state(i, "last_seq") == 6).await;
    let backup = js.get_stream("BACKUP").await.unwrap();
    let info = raw_info(&js, "BACKUP").await;
    assert_eq!(state(&info, "messages"), 5, "no duplicates: {info}");
    assert!(backup.get_raw_message(3).await.is_err());
    for i in [1, 2, 4, 5, 6] {
        let m = backup.get_raw_message(i).await.unwrap();
        assert_eq!(m.payload, format!("line {i}").into_bytes());
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_mirror_made_before_its_origin_catches_up() {
    let (_server, js) = broker(JetStream::new()).await;
    js.create_stream(mirror_of("EARLY", "LATER", stream::StorageType::Memory))
        .await
        .unwrap();
    until(&js, "EARLY", "an error for the missing origin", |i| {
        i["mirror"]["error"]["err_code"].as_u64() == Some(10059)
    })
    .await;
    js.create_stream(config("LATER", &["later"], stream::StorageType::Memory))
        .await
        .unwrap();
    for i in 1..=3 {
        publish(&js, "later", &format!("m{i}")).await;
    }
    until(&js, "EARLY", "3 messages, no error", |i| {
        state(i, "messages") == 3 && i["mirror"].get("error").is_none()
    })
    .await;
}

#[tokio::test]
async fn sources_from_two_streams_with_filters_and_transforms() {
    let (_server, js) = broker(JetStream::new()).await;
    for (name, subject) in [("A", "a.>"), ("B", "b.>")] {
        js.create_stream(config(name, &[subject], stream::StorageType::Memory))
            .await
            .unwrap();
    }
    publish(&js, "a.keep", "a1").await;
    publish(&js, "a.drop", "a2").await;
    publish(&js, "a.keep", "a3").await;
    publish(&js, "b.1", "b1").await;
    publish(&js, "b.2", "b2").await;
    let mut all = js
        .create_stream(stream::Config {
            name: "ALL".into(),
            subjects: vec!["local".into()],
            storage: stream::StorageType::Memory,
            sources: Some(vec![
                stream::Source {
                    name: "A".into(),
                    filter_subject: Some("a.keep".into()),
                    ..Default::default()
                },
                stream::Source {
                    name: "B".into(),
                    start_sequence: Some(2),
                    subject_transforms: vec![stream::SubjectTransform {
                        source: "b.>".into(),
                        destination: "c.>".into(),
                    }],
                    ..Default::default()
                },
            ]),
            ..Default::default()
        })
        .await
        .unwrap();
    until(&js, "ALL", "3 messages", |i| state(i, "messages") == 3).await;
    // Its own subjects are captured beside.
    publish(&js, "local", "mine").await;
    let mut seen = Vec::new();
    for seq in 1..=4 {
        let m = all.get_raw_message(seq).await.unwrap();
        let source = m
            .headers
            .get("Nats-Stream-Source")
            .map(|v| v.as_str().to_string());
        seen.push((
            m.subject.to_string(),
            String::from_utf8(m.payload.to_vec()).unwrap(),
            source,
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                "a.keep".into(),
                "a1".into(),
                Some("A 1 a.keep > a.keep".into())
            ),
            (
                "a.keep".into(),
                "a3".into(),
                Some("A 3 a.keep > a.keep".into())
            ),
            ("c.2".into(), "b2".into(), Some("B 2 b.> c.> b.2".into())),
            ("local".into(), "mine".into(), None),
        ]
    );
    let info = all.info().await.unwrap().clone();
    let sources = info.sources;
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0].name, "A");
    assert_eq!(sources[0].filter_subject.as_deref(), Some("a.keep"));
    assert_eq!(sources[1].name, "B");
    assert_eq!(sources[1].subject_transforms.len(), 1);
    assert!(sources.iter().all(|s| s.lag == 0 && s.active.is_some()));

    // Later messages follow, filtered.
    publish(&js, "a.drop", "a4").await;
    publish(&js, "a.keep", "a5").await;
    until(&js, "ALL", "5 messages", |i| state(i, "messages") == 5).await;
    let last = all.get_raw_message(5).await.unwrap();
    assert_eq!(&last.payload[..], b"a5");

    // Only sourcing writes Nats-Stream-Source.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Stream-Source", "A 9 > > a.keep");
    let err = js
        .publish_with_headers("local", headers, "forged".into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10227"), "{err}");

    // Duplicate sources are refused.
    let dup = stream::Source {
        name: "A".into(),
        ..Default::default()
    };
    let err = js
        .create_stream(stream::Config {
            name: "DUP".into(),
            storage: stream::StorageType::Memory,
            sources: Some(vec![dup.clone(), dup]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10140"), "{err}");
}

#[tokio::test]
async fn a_file_source_resumes_from_its_headers_after_a_restart() {
    let dir = common::scratch_dir("src");
    let start = || async { broker(JetStream::new().store_dir(&dir)).await };
    let (server, js) = start().await;
    js.create_stream(config("IN", &["in.>"], stream::StorageType::File))
        .await
        .unwrap();
    for i in 1..=3 {
        publish(&js, &format!("in.{i}"), &format!("m{i}")).await;
    }
    js.create_stream(stream::Config {
        name: "AGG".into(),
        sources: Some(vec![stream::Source {
            name: "IN".into(),
            ..Default::default()
        }]),
        ..Default::default()
    })
    .await
    .unwrap();
    until(&js, "AGG", "3 messages", |i| state(i, "messages") == 3).await;
    server.shutdown().await;
    drop(js);

    let (server, js) = start().await;
    publish(&js, "in.4", "m4").await;
    until(&js, "AGG", "4 messages", |i| state(i, "messages") == 4).await;
    let agg = js.get_stream("AGG").await.unwrap();
    let m = agg.get_raw_message(4).await.unwrap();
    assert_eq!(&m.payload[..], b"m4");
    assert_eq!(
        m.headers.get("Nats-Stream-Source").unwrap().as_str(),
        "IN 4 > > in.4"
    );
    // Nothing more arrives: what was sourced before the restart is not sourced again.
    let info = raw_info(&js, "AGG").await;
    assert_eq!(state(&info, "last_seq"), 4, "{info}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_mirror_reaches_its_origin_through_an_external_api_prefix() {
    let (server, js) = broker(JetStream::new().domain("HUB")).await;
    js.create_stream(stream::Config {
        allow_direct: true,
        ..config("KV_TEST", &["$KV.TEST.>"], stream::StorageType::Memory)
    })
    .await
    .unwrap();
    publish(&js, "$KV.TEST.name", "derek").await;
    publish(&js, "$KV.TEST.age", "22").await;
    let mut mirror = mirror_of("KV_MIRROR", "KV_TEST", stream::StorageType::Memory);
    if let Some(m) = mirror.mirror.as_mut() {
        m.external = Some(stream::External {
            api_prefix: "$JS.HUB.API".into(),
            delivery_prefix: None,
        });
    }
    mirror.mirror_direct = true;
    mirror.allow_direct = true;
    let mirror = js.create_stream(mirror).await.unwrap();
    until(&js, "KV_MIRROR", "2 messages", |i| {
        state(i, "messages") == 2
    })
    .await;
    let info = raw_info(&js, "KV_MIRROR").await;
    assert_eq!(info["mirror"]["external"]["api"], "$JS.HUB.API", "{info}");
    assert_eq!(info["config"]["mirror_direct"], true, "{info}");
    let m = mirror
        .direct_get_last_for_subject("$KV.TEST.name")
        .await
        .unwrap();
    assert_eq!(&m.payload[..], b"derek");
    // With its origin gone from here, the mirror answers the origin's DIRECT.GET.
    js.delete_stream("KV_TEST").await.unwrap();
    let client = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let m = client
        .request("$JS.API.DIRECT.GET.KV_TEST.$KV.TEST.age", "".into())
        .await
        .unwrap();
    assert_eq!(&m.payload[..], b"22");
    let headers = m.headers.expect("direct get headers");
    assert_eq!(
        headers
            .get(async_nats::header::NATS_STREAM)
            .unwrap()
            .as_str(),
        "KV_MIRROR"
    );
    // An external API prefix nobody answers: the mirror reports why it is not pulling.
    let mut lost = mirror_of("LOST", "KV_TEST", stream::StorageType::Memory);
    if let Some(m) = lost.mirror.as_mut() {
        m.external = Some(stream::External {
            api_prefix: "$JS.NOWHERE.API".into(),
            delivery_prefix: None,
        });
    }
    js.create_stream(lost).await.unwrap();
    until(&js, "LOST", "a setup error", |i| {
        i["mirror"]["error"]["err_code"].as_u64() == Some(10029)
    })
    .await;
}

#[tokio::test]
async fn a_kv_bucket_mirrored_through_an_external_prefix_reads_the_origins_keys() {
    use async_nats::jetstream::kv;
    let (_server, js) = broker(JetStream::new().domain("HUB")).await;
    let origin = js
        .create_key_value(kv::Config {
            bucket: "TEST".into(),
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    origin.put("name", "derek".into()).await.unwrap();
    origin.put("age", "22".into()).await.unwrap();
    origin.put("name", "ivan".into()).await.unwrap();
    js.create_key_value(kv::Config {
        bucket: "MIRROR".into(),
        storage: stream::StorageType::Memory,
        mirror: Some(stream::Source {
            name: "TEST".into(),
            external: Some(stream::External {
                api_prefix: "$JS.HUB.API".into(),
                delivery_prefix: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let stream = js.get_stream("KV_MIRROR").await.unwrap();
    assert!(stream.cached_info().config.mirror_direct);
    until(&js, "KV_MIRROR", "3 revisions", |i| {
        state(i, "last_seq") == 3
    })
    .await;
    let local = js.get_key_value("MIRROR").await.unwrap();
    assert_eq!(
        local.get("name").await.unwrap().as_deref(),
        Some(&b"ivan"[..])
    );
    assert_eq!(local.get("age").await.unwrap().as_deref(), Some(&b"22"[..]));
    let e = local.entry("name").await.unwrap().unwrap();
    assert_eq!(e.revision, 3);
}

#[tokio::test]
async fn a_mirror_and_a_source_keep_up_through_flow_control() {
    let (_server, js) = broker(JetStream::new()).await;
    js.create_stream(config("BULK", &["bulk.>"], stream::StorageType::Memory))
        .await
        .unwrap();
    js.create_stream(mirror_of("BULK_M", "BULK", stream::StorageType::Memory))
        .await
        .unwrap();
    js.create_stream(stream::Config {
        name: "BULK_S".into(),
        storage: stream::StorageType::Memory,
        sources: Some(vec![stream::Source {
            name: "BULK".into(),
            ..Default::default()
        }]),
        ..Default::default()
    })
    .await
    .unwrap();
    // 2 MB: many times the origin consumer's flow control window.
    let payload = bytes::Bytes::from(vec![b'x'; 1024]);
    let mut acks = Vec::new();
    for i in 0..2000 {
        acks.push(
            js.publish(format!("bulk.{}", i % 10), payload.clone())
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    for name in ["BULK_M", "BULK_S"] {
        until(&js, name, "2000 messages", |i| {
            state(i, "messages") == 2000 && state(i, "last_seq") == 2000
        })
        .await;
    }
    let info = raw_info(&js, "BULK_M").await;
    assert_eq!(info["mirror"]["lag"], 0, "{info}");
}

#[tokio::test]
async fn a_mirror_replaces_a_lost_origin_consumer_and_resumes() {
    let (_server, js) = broker(JetStream::new()).await;
    js.create_stream(config("GONE", &["gone"], stream::StorageType::Memory))
        .await
        .unwrap();
    for i in 1..=3 {
        publish(&js, "gone", &format!("m{i}")).await;
    }
    js.create_stream(mirror_of("KEEP", "GONE", stream::StorageType::Memory))
        .await
        .unwrap();
    until(&js, "KEEP", "3 messages", |i| state(i, "messages") == 3).await;
    // The origin goes, and its consumer with it: the mirror hears nothing more, gives up on
    // the consumer, and makes a new one on the origin that took its place.
    js.delete_stream("GONE").await.unwrap();
    js.create_stream(stream::Config {
        first_sequence: Some(4),
        ..config("GONE", &["gone"], stream::StorageType::Memory)
    })
    .await
    .unwrap();
    assert_eq!(publish(&js, "gone", "m4").await, 4);
    assert_eq!(publish(&js, "gone", "m5").await, 5);
    until(&js, "KEEP", "5 messages", |i| {
        state(i, "messages") == 5 && state(i, "last_seq") == 5
    })
    .await;
    let keep = js.get_stream("KEEP").await.unwrap();
    assert_eq!(&keep.get_raw_message(5).await.unwrap().payload[..], b"m5");
}
