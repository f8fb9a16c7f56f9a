//! Per-message TTLs (`Nats-TTL`) and subject delete markers through async-nats, against an
//! embedded broker.

use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MARKER_REASON, NATS_MESSAGE_TTL};
use async_nats::jetstream::context::Publish;
use async_nats::jetstream::{self, kv, stream};
mod common;

use common::broker;
use starling_jetstream::JetStream;

fn config(name: &str, subjects: &[&str]) -> stream::Config {
    stream::Config {
        allow_message_ttl: true,
        ..common::memory(name, subjects)
    }
}

/// Waits (up to `limit`) until the stream holds `n` messages; returns what it holds then.
async fn until_messages(stream: &mut stream::Stream, n: u64, limit: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let held = stream.info().await.unwrap().state.messages;
        if held == n || tokio::time::Instant::now() >= deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish_with(js: &jetstream::Context, subject: &str, ttl: &str) -> Result<u64, String> {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_TTL, ttl);
    let ack = js
        .publish_with_headers(subject.to_string(), headers, "x".into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(ack.sequence)
}

#[tokio::test]
async fn a_message_goes_when_its_ttl_has_passed_and_the_others_stay() {
    let (_server, js) = broker(JetStream::new()).await;
    let mut s = js
        .create_stream(stream::Config {
            allow_direct: true,
            ..config("T", &["t.>"])
        })
        .await
        .unwrap();
    js.send_publish(
        "t.short",
        Publish::build()
            .ttl(Duration::from_secs(1))
            .payload("soon gone".into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    js.publish("t.kept", "stays".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let stored = s.direct_get(1).await.unwrap();
    assert_eq!(stored.headers.get(NATS_MESSAGE_TTL).unwrap().as_str(), "1");
    assert_eq!(until_messages(&mut s, 1, Duration::from_secs(4)).await, 1);
    assert!(
        s.get_raw_message(1).await.is_err(),
        "the TTL'd message went"
    );
    assert_eq!(&s.get_raw_message(2).await.unwrap().payload[..], b"stays");
}

#[tokio::test]
async fn ttl_headers_are_checked_as_nats_server_checks_them() {
    let (_server, js) = broker(JetStream::new()).await;
    js.create_stream(config("T", &["t.>"])).await.unwrap();
    js.create_stream(stream::Config {
        allow_message_ttl: false,
        ..config("PLAIN", &["p.>"])
    })
    .await
    .unwrap();
    let disabled = publish_with(&js, "p.1", "5s").await.unwrap_err();
    assert!(disabled.contains("10166"), "{disabled}");
    for bad in ["500ms", "-3", "tomorrow"] {
        let e = publish_with(&js, "t.1", bad).await.unwrap_err();
        assert!(e.contains("10165"), "{bad}: {e}");
    }
    assert_eq!(publish_with(&js, "t.1", "60").await.unwrap(), 1);
    assert_eq!(publish_with(&js, "t.1", "never").await.unwrap(), 2);

    // TTLs cannot be switched off again, and markers need a TTL of a second at least.
    let e = js
        .update_stream(stream::Config {
            allow_message_ttl: false,
            ..config("T", &["t.>"])
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("can not be disabled"), "{e}");
    let e = js
        .create_stream(stream::Config {
            subject_delete_marker_ttl: Some(Duration::from_millis(300)),
            ..config("M", &["m.>"])
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least 1 second"), "{e}");
    // A plain publish to a TTL stream is untouched.
    let ack = js.publish("t.2", "x".into()).await.unwrap().await.unwrap();
    assert_eq!(ack.sequence, 3);
}

#[tokio::test]
async fn never_outlives_max_age() {
    let (_server, js) = broker(JetStream::new()).await;
    let mut s = js
        .create_stream(stream::Config {
            max_age: Duration::from_millis(500),
            ..config("AGED", &["a.>"])
        })
        .await
        .unwrap();
    publish_with(&js, "a.forever", "never").await.unwrap();
    js.publish("a.brief", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(until_messages(&mut s, 1, Duration::from_secs(4)).await, 1);
    let left = s.get_raw_message(1).await.unwrap();
    assert_eq!(left.subject.as_str(), "a.forever");
}

#[tokio::test]
async fn the_last_message_of_a_subject_leaves_a_marker_that_expires_in_turn() {
    let (_server, js) = broker(JetStream::new()).await;
    let mut s = js
        .create_stream(stream::Config {
            max_age: Duration::from_secs(1),
            subject_delete_marker_ttl: Some(Duration::from_secs(1)),
            allow_direct: true,
            ..config("EVENTS", &["events.>"])
        })
        .await
        .unwrap();
    let info = s.info().await.unwrap();
    assert!(info.config.allow_rollup, "markers turn roll-ups on");
    for _ in 0..3 {
        js.publish("events.a", "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Aged out: the three go, and one marker stands for the subject.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let marker = loop {
        let last = s.direct_get_last_for_subject("events.a").await.unwrap();
        if last.headers.get(NATS_MARKER_REASON).is_some() || tokio::time::Instant::now() > deadline
        {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        marker.headers.get(NATS_MARKER_REASON).unwrap().as_str(),
        "MaxAge"
    );
    assert_eq!(marker.headers.get(NATS_MESSAGE_TTL).unwrap().as_str(), "1s");
    assert_eq!(marker.sequence, 4, "the marker follows the last message");
    assert!(marker.payload.is_empty());
    // Then the marker goes too, without a marker of its own.
    assert_eq!(until_messages(&mut s, 0, Duration::from_secs(4)).await, 0);
    assert_eq!(s.info().await.unwrap().state.last_sequence, 4);
}

#[tokio::test]
async fn kv_keys_with_a_ttl_expire_and_purges_with_a_ttl_go_in_turn() {
    let (_server, js) = broker(JetStream::new()).await;
    let kv = js
        .create_key_value(kv::Config {
            bucket: "ttl".into(),
            history: 5,
            storage: stream::StorageType::Memory,
            limit_markers: Some(Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut watch = kv.watch("gone").await.unwrap();
    kv.create_with_ttl("gone", "v".into(), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(kv.get("gone").await.unwrap().is_some());
    for _ in 0..3 {
        kv.put("purged", "v".into()).await.unwrap();
    }
    kv.purge_with_ttl("purged", Duration::from_secs(1))
        .await
        .unwrap();
    let mut stream = js.get_stream("KV_ttl").await.unwrap();
    // The watcher sees the put, then the key's marker (async-nats 0.42's watcher reads a
    // marker's operation as a put; its `get` knows better).
    use futures::StreamExt;
    let put = watch.next().await.unwrap().unwrap();
    assert_eq!(put.operation, kv::Operation::Put);
    let expired = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the expiry reaches the watcher")
        .unwrap()
        .unwrap();
    assert!(
        expired.revision > put.revision && expired.value.is_empty(),
        "{expired:?}"
    );
    assert!(kv.get("gone").await.unwrap().is_none());
    // Every marker expires: nothing is left.
    assert_eq!(
        until_messages(&mut stream, 0, Duration::from_secs(5)).await,
        0
    );
}

#[tokio::test]
async fn ttls_survive_a_restart() {
    let dir = common::scratch_dir("ttl");
    let file = |name: &str| stream::Config {
        storage: stream::StorageType::File,
        ..config(name, &["r.>"])
    };
    {
        let (server, js) = broker(JetStream::new().store_dir(&dir)).await;
        js.create_stream(file("R")).await.unwrap();
        publish_with(&js, "r.1", "2s").await.unwrap();
        js.publish("r.2", "x".into()).await.unwrap().await.unwrap();
        server.shutdown().await;
    }
    let (_server, js) = broker(JetStream::new().store_dir(&dir)).await;
    let mut s = js.get_stream("R").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 2);
    assert_eq!(until_messages(&mut s, 1, Duration::from_secs(5)).await, 1);
    assert!(s.get_raw_message(1).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_ttl_expires_on_time_not_at_the_next_second() {
    // Expiry sleeps until the earliest deadline, and at most a second: a deadline that falls
    // just after a one-second wake must not wait for the wake after it.
    let (_server, js) = broker(JetStream::new()).await;
    let mut s = js.create_stream(config("ONTIME", &["o.>"])).await.unwrap();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let published = tokio::time::Instant::now();
        publish_with(&js, "o.1", "2").await.unwrap();
        assert_eq!(until_messages(&mut s, 0, Duration::from_secs(4)).await, 0);
        let took = published.elapsed();
        assert!(
            took < Duration::from_millis(2600),
            "round {round}: a 2 s TTL took {took:?}"
        );
    }
}
