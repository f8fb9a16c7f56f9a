//! Push and ordered consumers, key-value and the object store through async-nats.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use futures::{StreamExt, TryStreamExt};
mod common;

use starling_jetstream::JetStream;
use starling_server::Server;
use tokio::io::AsyncReadExt;

async fn broker() -> (Server, async_nats::Client, jetstream::Context) {
    let (server, client) = common::broker_and_client(JetStream::new()).await;
    let js = jetstream::new(client.clone());
    (server, client, js)
}

async fn memory_stream(js: &jetstream::Context, n: u64) -> stream::Stream {
    let s = js
        .create_stream(common::memory("P", &["p.>"]))
        .await
        .unwrap();
    for i in 1..=n {
        js.publish(format!("p.{i}"), format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    s
}

#[tokio::test]
async fn a_push_consumer_delivers_to_its_subject_and_redelivers_unacked() {
    let (_server, client, js) = broker().await;
    let s = memory_stream(&js, 5).await;
    let inbox = client.new_inbox();
    let c: consumer::PushConsumer = s
        .create_consumer(consumer::push::Config {
            durable_name: Some("pusher".into()),
            deliver_subject: inbox.clone(),
            ack_wait: Duration::from_millis(500),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let m = msgs.next().await.unwrap().unwrap();
        seen.push(m.info().unwrap().stream_sequence);
        if m.info().unwrap().stream_sequence != 3 {
            m.ack().await.unwrap();
        }
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    let again = tokio::time::timeout(Duration::from_secs(5), msgs.next())
        .await
        .expect("unacked 3 comes back")
        .unwrap()
        .unwrap();
    assert_eq!(again.info().unwrap().stream_sequence, 3);
    assert_eq!(again.info().unwrap().delivered, 2);
    again.ack().await.unwrap();
}

#[tokio::test]
async fn an_ordered_consumer_reads_the_stream_in_order() {
    let (_server, _client, js) = broker().await;
    let s = memory_stream(&js, 300).await;
    let c = s
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: "ordered.inbox".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    for i in 1..=300u64 {
        let m = msgs.next().await.unwrap().unwrap();
        assert_eq!(m.info().unwrap().stream_sequence, i);
    }
    // Flow control and heartbeats keep it alive while more arrive.
    js.publish("p.x", "301".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let m = msgs.next().await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"301");
}

#[tokio::test]
async fn key_value_put_get_update_delete_watch_and_history() {
    let (_server, _client, js) = broker().await;
    let kv = js
        .create_key_value(kv::Config {
            bucket: "config".into(),
            history: 3,
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    let r1 = kv.put("mode", "fast".into()).await.unwrap();
    assert_eq!(kv.get("mode").await.unwrap().unwrap(), "fast");
    let r2 = kv.update("mode", "safe".into(), r1).await.unwrap();
    assert!(
        kv.update("mode", "x".into(), r1).await.is_err(),
        "stale revision"
    );
    assert!(kv.create("mode", "y".into()).await.is_err(), "exists");
    kv.create("other", "1".into()).await.unwrap();
    let entry = kv.entry("mode").await.unwrap().unwrap();
    assert_eq!(entry.revision, r2);
    let mut keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
    keys.sort();
    assert_eq!(keys, ["mode", "other"]);
    let history: Vec<_> = kv
        .history("mode")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    let mut watch = kv.watch("mode").await.unwrap();
    kv.put("mode", "turbo".into()).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("watch sees the put")
        .unwrap()
        .unwrap();
    assert_eq!(seen.value, "turbo");
    kv.delete("other").await.unwrap();
    assert!(kv.get("other").await.unwrap().is_none());
    kv.purge("mode").await.unwrap();
    assert!(kv.get("mode").await.unwrap().is_none());
}

#[tokio::test]
async fn objects_are_put_and_read_back() {
    let (_server, _client, js) = broker().await;
    let store = js
        .create_object_store(object_store::Config {
            bucket: "files".into(),
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    store.put("blob.bin", &mut data.as_slice()).await.unwrap();
    let mut obj = store.get("blob.bin").await.unwrap();
    let mut back = Vec::new();
    obj.read_to_end(&mut back).await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data);
    let info = store.info("blob.bin").await.unwrap();
    assert_eq!(info.size, data.len());
    store.delete("blob.bin").await.unwrap();
    assert!(store.get("blob.bin").await.is_err());
}

#[tokio::test]
async fn republish_sends_a_copy_with_the_stream_headers() {
    let (_server, client, js) = broker().await;
    let mut copies = client.subscribe("repub.>").await.unwrap();
    client.flush().await.unwrap();
    js.create_stream(stream::Config {
        name: "R".into(),
        subjects: vec!["r.>".into()],
        storage: stream::StorageType::Memory,
        republish: Some(stream::Republish {
            source: "r.>".into(),
            destination: "repub.>".into(),
            headers_only: false,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    for i in 1..=2 {
        js.publish("r.a", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for (seq, last) in [("1", "0"), ("2", "1")] {
        let m = tokio::time::timeout(Duration::from_secs(5), copies.next())
            .await
            .expect("a copy arrives")
            .unwrap();
        assert_eq!(m.subject.as_str(), "repub.a", "what the source's > matched");
        let h = m.headers.expect("headers");
        assert_eq!(
            h.get(async_nats::header::NATS_STREAM).map(|v| v.as_str()),
            Some("R")
        );
        assert_eq!(
            h.get(async_nats::header::NATS_SUBJECT).map(|v| v.as_str()),
            Some("r.a")
        );
        assert_eq!(
            h.get(async_nats::header::NATS_SEQUENCE).map(|v| v.as_str()),
            Some(seq)
        );
        assert_eq!(
            h.get(async_nats::header::NATS_LAST_SEQUENCE)
                .map(|v| v.as_str()),
            Some(last)
        );
        assert_eq!(m.payload, seq);
    }
    // A destination the stream itself captures would loop: refused.
    let err = js
        .create_stream(stream::Config {
            name: "LOOP".into(),
            subjects: vec!["loop.>".into()],
            storage: stream::StorageType::Memory,
            republish: Some(stream::Republish {
                source: ">".into(),
                destination: "loop.x.>".into(),
                headers_only: false,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forms a cycle"), "{err}");
}
