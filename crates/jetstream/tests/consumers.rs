//! Pull consumers through async-nats's JetStream API against an embedded broker.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures::StreamExt;
mod common;

use starling_jetstream::JetStream;
use starling_server::Server;

async fn with_stream(n: u64) -> (Server, jetstream::Context, stream::Stream) {
    let (server, js) = common::broker(JetStream::new()).await;
    let s = js
        .create_stream(common::memory("EVENTS", &["events.>"]))
        .await
        .unwrap();
    for i in 1..=n {
        let subject = format!("events.{}", if i % 2 == 0 { "even" } else { "odd" });
        js.publish(subject, format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    (server, js, s)
}

fn payloads(msgs: &[jetstream::Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

#[tokio::test]
async fn fetch_ack_and_the_ack_floor() {
    let (_server, _js, s) = with_stream(10).await;
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("worker".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = c.fetch().max_messages(4).messages().await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = batch.next().await {
        got.push(m.unwrap());
    }
    assert_eq!(payloads(&got), ["1", "2", "3", "4"]);
    let info = got[3].info().unwrap();
    assert_eq!(
        (info.stream_sequence, info.consumer_sequence, info.pending),
        (4, 4, 6)
    );
    assert_eq!(
        got[0].subject.as_str(),
        "events.odd",
        "the stored subject is shown"
    );
    for m in &got[..2] {
        m.double_ack().await.expect("double ack is answered");
    }
    let mut c2 = c.clone();
    let info = c2.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 2);
    assert_eq!(info.ack_floor.stream_sequence, 2);
    assert_eq!(info.delivered.stream_sequence, 4);
    assert_eq!(info.num_pending, 6);
    // The rest, and then nothing: a fetch of an empty consumer ends at once.
    let rest: Vec<_> = c
        .fetch()
        .max_messages(100)
        .messages()
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(rest.len(), 6);
    let none: Vec<_> = c
        .fetch()
        .max_messages(5)
        .messages()
        .await
        .unwrap()
        .collect()
        .await;
    assert!(none.is_empty());
    // The consumer is listed and can be deleted.
    use futures::TryStreamExt;
    let names: Vec<String> = s.consumer_names().try_collect().await.unwrap();
    assert_eq!(names, vec!["worker".to_string()]);
    assert!(s.delete_consumer("worker").await.unwrap().success);
    assert!(s
        .get_consumer::<consumer::pull::Config>("worker")
        .await
        .is_err());
}

#[tokio::test]
async fn nak_and_ack_wait_redeliver_term_does_not() {
    let (_server, _js, s) = with_stream(3).await;
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("r".into()),
            ack_wait: Duration::from_millis(300),
            max_deliver: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    // One message per request, so that what a NAK redelivers comes next.
    let one = || async {
        c.batch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .unwrap()
            .next()
            .await
            .expect("a message")
            .unwrap()
    };
    let first = one().await;
    first.ack_with(AckKind::Nak(None)).await.unwrap();
    let again = one().await;
    assert_eq!(
        again.info().unwrap().stream_sequence,
        1,
        "a NAK redelivers at once"
    );
    assert_eq!(again.info().unwrap().delivered, 2);
    again.ack().await.unwrap();
    let second = one().await;
    assert_eq!(second.info().unwrap().stream_sequence, 2);
    second.ack_with(AckKind::Term).await.unwrap();
    let third = one().await;
    assert_eq!(third.info().unwrap().stream_sequence, 3);
    // Not acked: back after ack_wait.
    let later = one().await;
    assert_eq!(later.info().unwrap().stream_sequence, 3);
    assert_eq!(later.info().unwrap().delivered, 2);
    later.ack().await.unwrap();
}

#[tokio::test]
async fn deliver_policies_and_filters() {
    let (_server, js, s) = with_stream(6).await;
    let fetch_all = |c: consumer::PullConsumer| async move {
        let msgs: Vec<_> = c
            .fetch()
            .max_messages(50)
            .messages()
            .await
            .unwrap()
            .map(|m| m.unwrap())
            .collect()
            .await;
        payloads(&msgs)
    };
    let make = |config: consumer::pull::Config| {
        let s = s.clone();
        async move { s.create_consumer(config).await.unwrap() }
    };
    let even = make(consumer::pull::Config {
        filter_subject: "events.even".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(fetch_all(even).await, ["2", "4", "6"]);
    let last = make(consumer::pull::Config {
        deliver_policy: consumer::DeliverPolicy::Last,
        ..Default::default()
    })
    .await;
    assert_eq!(fetch_all(last).await, ["6"]);
    let per_subject = make(consumer::pull::Config {
        deliver_policy: consumer::DeliverPolicy::LastPerSubject,
        ..Default::default()
    })
    .await;
    assert_eq!(fetch_all(per_subject).await, ["5", "6"]);
    let from = make(consumer::pull::Config {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: 4 },
        ..Default::default()
    })
    .await;
    assert_eq!(fetch_all(from).await, ["4", "5", "6"]);
    let new = make(consumer::pull::Config {
        deliver_policy: consumer::DeliverPolicy::New,
        ..Default::default()
    })
    .await;
    js.publish("events.odd", "7".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(fetch_all(new).await, ["7"]);
    let info = s.clone().info().await.unwrap().clone();
    assert_eq!(info.state.consumer_count, 5);
}

#[tokio::test]
async fn a_waiting_pull_gets_messages_published_later() {
    let (_server, js, s) = with_stream(0).await;
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("later".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    let publisher = tokio::spawn(async move {
        for i in 0..20 {
            js.publish("events.x", format!("{i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    for i in 0..20 {
        let m = msgs.next().await.unwrap().unwrap();
        assert_eq!(m.payload, format!("{i}"));
        m.ack().await.unwrap();
    }
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_durable_consumer_keeps_its_acks_across_a_restart() {
    let dir = common::scratch_dir("c");
    let start = || async { common::broker(JetStream::new().store_dir(&dir)).await };
    let (server, js) = start().await;
    let s = js
        .create_stream(stream::Config {
            name: "JOBS".into(),
            subjects: vec!["jobs".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 1..=10 {
        js.publish("jobs", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("w".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = c
        .fetch()
        .max_messages(6)
        .messages()
        .await
        .unwrap()
        .map(|m| m.unwrap())
        .collect()
        .await;
    // 1..=4 acknowledged with a reply (the server promised to keep them); 5 and 6 not.
    for m in &got[..4] {
        m.double_ack().await.unwrap();
    }
    server.shutdown().await;
    drop(js);

    let (server, js) = start().await;
    let mut c: consumer::PullConsumer = js
        .get_stream("JOBS")
        .await
        .unwrap()
        .get_consumer("w")
        .await
        .expect("the durable consumer is back");
    let info = c.info().await.unwrap().clone();
    assert_eq!(info.ack_floor.stream_sequence, 4);
    assert_eq!(info.num_ack_pending, 2, "5 and 6 await their acks");
    let next: Vec<_> = c
        .fetch()
        .max_messages(4)
        .messages()
        .await
        .unwrap()
        .map(|m| m.unwrap())
        .collect()
        .await;
    assert_eq!(payloads(&next), ["7", "8", "9", "10"]);
    js.delete_stream("JOBS").await.unwrap();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn interest_and_work_queue_retention_remove_what_is_acknowledged() {
    let (_server, js, _) = with_stream(0).await;
    for (name, retention) in [
        ("INTEREST", stream::RetentionPolicy::Interest),
        ("WORK", stream::RetentionPolicy::WorkQueue),
    ] {
        let s = js
            .create_stream(stream::Config {
                name: name.into(),
                subjects: vec![format!("{name}.>")],
                retention,
                storage: stream::StorageType::Memory,
                ..Default::default()
            })
            .await
            .unwrap();
        if retention == stream::RetentionPolicy::Interest {
            // Nobody interested yet: acknowledged, not kept.
            js.publish(format!("{name}.early"), "x".into())
                .await
                .unwrap()
                .await
                .unwrap();
            assert_eq!(s.clone().info().await.unwrap().state.messages, 0);
        }
        let a: consumer::PullConsumer = s
            .create_consumer(consumer::pull::Config {
                durable_name: Some("a".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let b: Option<consumer::PullConsumer> = if retention == stream::RetentionPolicy::Interest {
            Some(
                s.create_consumer(consumer::pull::Config {
                    durable_name: Some("b".into()),
                    ..Default::default()
                })
                .await
                .unwrap(),
            )
        } else {
            None
        };
        for i in 0..3 {
            js.publish(format!("{name}.x"), format!("{i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let take = |c: consumer::PullConsumer| async move {
            let msgs: Vec<_> = c
                .fetch()
                .max_messages(10)
                .messages()
                .await
                .unwrap()
                .map(|m| m.unwrap())
                .collect()
                .await;
            for m in &msgs {
                m.double_ack().await.unwrap();
            }
            msgs.len()
        };
        assert_eq!(take(a).await, 3);
        let left = s.clone().info().await.unwrap().state.messages;
        if let Some(b) = b {
            assert_eq!(left, 3, "b has not acked yet");
            assert_eq!(take(b).await, 3);
        }
        assert_eq!(s.clone().info().await.unwrap().state.messages, 0, "{name}");
    }
}

#[tokio::test]
async fn advisories_tell_of_streams_consumers_and_deliveries() {
    let (_server, client) = common::broker_and_client(JetStream::new()).await;
    let mut events = client.subscribe("$JS.EVENT.ADVISORY.>").await.unwrap();
    client.flush().await.unwrap();
    let js = jetstream::new(client.clone());
    let s = js
        .create_stream(stream::Config {
            name: "ADV".into(),
            subjects: vec!["adv".into()],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    js.publish("adv", "x".into()).await.unwrap().await.unwrap();
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("c".into()),
            max_deliver: 1,
            ack_wait: Duration::from_millis(200),
            ..Default::default()
        })
        .await
        .unwrap();
    let m = c
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    m.ack_with(AckKind::Nak(None)).await.unwrap();
    js.delete_stream("ADV").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("advisories arrive")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
        assert!(v["id"].is_string() && v["timestamp"].is_string(), "{v}");
        seen.push((
            e.subject.to_string(),
            v["type"].as_str().unwrap().to_string(),
        ));
    }
    let subjects: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "$JS.EVENT.ADVISORY.STREAM.CREATED.ADV",
            "$JS.EVENT.ADVISORY.CONSUMER.CREATED.ADV.c",
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.ADV.c",
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.ADV.c",
            "$JS.EVENT.ADVISORY.STREAM.DELETED.ADV",
        ]
    );
    assert_eq!(seen[2].1, "io.nats.jetstream.advisory.v1.nak");
    assert_eq!(seen[3].1, "io.nats.jetstream.advisory.v1.max_deliver");
}

#[tokio::test]
async fn a_consumer_update_changes_what_may_change_and_refuses_the_rest() {
    let (_server, _js, s) = with_stream(3).await;
    let config = consumer::pull::Config {
        durable_name: Some("u".into()),
        ack_wait: Duration::from_secs(10),
        ..Default::default()
    };
    s.create_consumer(config.clone()).await.unwrap();
    let mut changed = s
        .update_consumer(consumer::pull::Config {
            ack_wait: Duration::from_secs(20),
            description: Some("slower".into()),
            ..config.clone()
        })
        .await
        .expect("ack_wait may change");
    let info = changed.info().await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(20));
    assert_eq!(info.config.description.as_deref(), Some("slower"));
    let err = s
        .update_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::New,
            ..config.clone()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("deliver policy can not be updated"),
        "{err}"
    );
    let err = s
        .create_consumer_strict(consumer::pull::Config {
            ack_wait: Duration::from_secs(30),
            ..config
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("consumer already exists"), "{err}");
}

#[tokio::test]
async fn work_queue_streams_refuse_overlapping_consumers() {
    let (_server, js, _) = with_stream(0).await;
    let s = js
        .create_stream(stream::Config {
            name: "WQ".into(),
            subjects: vec!["wq.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    let pull = |filter: &str| consumer::pull::Config {
        durable_name: Some(filter.replace(['.', '>', '*'], "_")),
        filter_subject: filter.into(),
        ..Default::default()
    };
    s.create_consumer(pull("wq.a")).await.unwrap();
    s.create_consumer(pull("wq.b")).await.unwrap();
    let err = s.create_consumer(pull("wq.>")).await.unwrap_err();
    assert!(err.to_string().contains("not unique"), "{err}");
    let err = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("none".into()),
            filter_subject: "wq.c".into(),
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("explicit ack"), "{err}");
}

#[tokio::test]
async fn replay_original_keeps_the_stored_spacing() {
    let (_server, js, s) = with_stream(0).await;
    js.publish("events.a", "1".into())
        .await
        .unwrap()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    js.publish("events.a", "2".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            replay_policy: consumer::ReplayPolicy::Original,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    let first = msgs.next().await.unwrap().unwrap();
    let at = std::time::Instant::now();
    first.ack().await.unwrap();
    let second = msgs.next().await.unwrap().unwrap();
    assert_eq!(&second.payload[..], b"2");
    assert!(
        at.elapsed() >= Duration::from_millis(250),
        "{:?}",
        at.elapsed()
    );
}

#[tokio::test]
async fn statuses_for_refused_pulls_and_redelivery_at_max_ack_pending() {
    let (server, _js, s) = with_stream(5).await;
    let client = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    // A consumer or stream that does not exist: no responders, as from nats-server.
    let err = client
        .request("$JS.API.CONSUMER.MSG.NEXT.EVENTS.nope", "".into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    let err = client
        .request("$JS.API.DIRECT.GET.NOPE", r#"{"seq":1}"#.into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    // A heartbeat too large for the request's expiry is a 400 status.
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("m".into()),
            max_ack_pending: 2,
            ack_wait: Duration::from_millis(200),
            ..Default::default()
        })
        .await
        .unwrap();
    let reply = client
        .request(
            "$JS.API.CONSUMER.MSG.NEXT.EVENTS.m",
            r#"{"batch":1,"idle_heartbeat":1000000000}"#.into(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status.map(|s| s.as_u16()), Some(400));
    // At max_ack_pending, what is not acked still comes back after ack_wait.
    let first: Vec<_> = c
        .fetch()
        .max_messages(5)
        .messages()
        .await
        .unwrap()
        .map(|m| m.unwrap().info().unwrap().stream_sequence)
        .collect()
        .await;
    assert_eq!(first, [1, 2], "only max_ack_pending go out");
    let again = c
        .batch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.info().unwrap().stream_sequence, 1);
    assert_eq!(again.info().unwrap().delivered, 2);
}

#[tokio::test]
async fn pending_is_exact_for_messages_published_after_the_consumer() {
    let (_server, js, s) = with_stream(0).await;
    let mut c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("early".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..5 {
        js.publish("events.x", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let got: Vec<_> = c
        .fetch()
        .max_messages(2)
        .messages()
        .await
        .unwrap()
        .map(|m| m.unwrap().info().unwrap().pending)
        .collect()
        .await;
    assert_eq!(
        got,
        [4, 3],
        "pending as each delivery's ack subject tells it"
    );
    assert_eq!(c.info().await.unwrap().num_pending, 3);
    // With flow control, a push consumer needs heartbeats (nats-server's rule).
    let err = s
        .create_consumer(consumer::push::Config {
            deliver_subject: "fc.inbox".into(),
            flow_control: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("also needs heartbeats"), "{err}");
}

#[tokio::test]
async fn a_paused_consumer_delivers_nothing_until_it_is_resumed() {
    let (_server, _js, s) = with_stream(3).await;
    let mut c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("p".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!c.info().await.unwrap().paused);
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
    let paused = s.pause_consumer("p", until).await.unwrap();
    assert!(paused.paused);
    assert!(c.info().await.unwrap().paused);
    let none: Vec<_> = c
        .fetch()
        .max_messages(3)
        .expires(Duration::from_millis(300))
        .messages()
        .await
        .unwrap()
        .collect()
        .await;
    assert!(none.is_empty(), "paused: nothing is delivered");
    let resumed = s.resume_consumer("p").await.unwrap();
    assert!(!resumed.paused);
    assert!(!c.info().await.unwrap().paused);
    let some: Vec<_> = c
        .fetch()
        .max_messages(3)
        .messages()
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(some.len(), 3);
}
