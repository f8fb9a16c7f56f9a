//! Priority groups of pull consumers (`overflow`, `pinned_client`, `prioritized`),
//! `CONSUMER.UNPIN` and `CONSUMER.RESET`, through core NATS requests as nats-server answers
//! them (async-nats has no pin ids in its pull requests, so they are written out here).

use std::time::Duration;

use async_nats::{Client, Message, Subscriber};
use futures::StreamExt;
use serde_json::{json, Value};
mod common;

use starling_jetstream::JetStream;
use starling_server::Server;

/// A broker with stream `S` on `s.>`, holding `n` messages, and a client of it.
async fn with_stream(n: u64) -> (Server, Client) {
    let (server, client) = common::broker_and_client(JetStream::new()).await;
    let v = api(
        &client,
        "STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"], "storage": "memory"}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    publish_from(&client, 0, n).await;
    (server, client)
}

/// Publishes messages `from..from + n` (payload: the number) to the stream, each acknowledged.
async fn publish_from(client: &Client, from: u64, n: u64) {
    for i in from..from + n {
        let ack = client
            .request(format!("s.{i}"), format!("{i}").into())
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&ack.payload).contains("seq"));
    }
}

/// One `$JS.API` request, its JSON answer.
async fn api(client: &Client, what: &str, body: Value) -> Value {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let reply = client
        .request(format!("$JS.API.{what}"), body.into())
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// Creates durable consumer `name` of `S` with `config` (plus its name).
async fn consumer(client: &Client, name: &str, mut config: Value) -> Value {
    config["durable_name"] = json!(name);
    api(
        client,
        &format!("CONSUMER.CREATE.S.{name}"),
        json!({"stream_name": "S", "config": config}),
    )
    .await
}

/// Sends a pull request for consumer `name` whose answers come to the returned subscription.
async fn pull(client: &Client, name: &str, request: Value) -> Subscriber {
    let inbox = client.new_inbox();
    let sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.S.{name}"),
            inbox,
            request.to_string().into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    sub
}

/// The next message on `sub`, within 5 s.
async fn next(sub: &mut Subscriber) -> Message {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

fn status(m: &Message) -> Option<u16> {
    m.status.map(|s| s.as_u16())
}

fn pin_id(m: &Message) -> Option<String> {
    m.headers
        .as_ref()
        .and_then(|h| h.get("Nats-Pin-Id"))
        .map(|v| v.as_str().to_string())
}

fn err_code(v: &Value) -> Option<u64> {
    v["error"]["err_code"].as_u64()
}

#[tokio::test]
async fn priority_configs_are_checked_as_nats_server_checks_them() {
    let (_server, client) = with_stream(0).await;
    let push = consumer(
        &client,
        "push",
        json!({"deliver_subject": "out", "priority_policy": "overflow", "priority_groups": ["A"]}),
    )
    .await;
    assert_eq!(err_code(&push), Some(10178), "{push}");
    let no_groups = consumer(&client, "ng", json!({"priority_policy": "pinned_client"})).await;
    assert_eq!(err_code(&no_groups), Some(10159), "{no_groups}");
    let bad_name = consumer(
        &client,
        "bn",
        json!({"priority_policy": "overflow", "priority_groups": ["a.b"]}),
    )
    .await;
    assert_eq!(err_code(&bad_name), Some(10162), "{bad_name}");
    let empty_name = consumer(
        &client,
        "en",
        json!({"priority_policy": "overflow", "priority_groups": [""]}),
    )
    .await;
    assert_eq!(err_code(&empty_name), Some(10161), "{empty_name}");
    let no_policy = consumer(&client, "np", json!({"priority_groups": ["A"]})).await;
    assert_eq!(err_code(&no_policy), Some(10196), "{no_policy}");
    let ttl = consumer(&client, "ttl", json!({"priority_timeout": 1_000_000_000})).await;
    assert_eq!(err_code(&ttl), Some(10197), "{ttl}");

    // A pinned consumer gets nats-server's default pin timeout; info shows its group.
    let ok = consumer(
        &client,
        "p",
        json!({"priority_policy": "pinned_client", "priority_groups": ["A"]}),
    )
    .await;
    assert_eq!(ok["config"]["priority_timeout"], json!(120_000_000_000u64));
    assert_eq!(ok["config"]["priority_policy"], json!("pinned_client"));
    assert_eq!(ok["priority_groups"][0]["group"], json!("A"));
    assert!(ok["priority_groups"][0].get("pinned_client_id").is_none());

    // Pull requests must name one of its groups, and carry only its policy's fields.
    for (request, text) in [
        (json!({"batch": 1}), "Bad Request - Priority Group missing"),
        (
            json!({"batch": 1, "group": "B"}),
            "Bad Request - Invalid Priority Group",
        ),
        (
            json!({"batch": 1, "group": "A", "min_pending": 3}),
            "Bad Request - Not a Overflow Priority consumer",
        ),
        (
            json!({"batch": 1, "group": "A", "priority": 10}),
            "Bad Request - Priority must be between 0 and 9",
        ),
    ] {
        let mut sub = pull(&client, "p", request).await;
        let m = next(&mut sub).await;
        assert_eq!(status(&m), Some(400));
        assert_eq!(m.description.as_deref(), Some(text));
    }
}

#[tokio::test]
async fn overflow_serves_a_request_only_when_the_consumer_is_behind_enough() {
    let (_server, client) = with_stream(5).await;
    let v = consumer(
        &client,
        "o",
        json!({"ack_policy": "explicit", "priority_policy": "overflow", "priority_groups": ["A"]}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    // 5 pending, fewer than 10: the request gets nothing and times out.
    let mut high = pull(
        &client,
        "o",
        json!({"batch": 2, "group": "A", "min_pending": 10, "expires": 300_000_000}),
    )
    .await;
    let m = next(&mut high).await;
    assert_eq!(status(&m), Some(408), "no message before the timeout");
    // Each message goes while at least 4 are left (it counted): two of a batch of three, then
    // the request waits again.
    let mut low = pull(
        &client,
        "o",
        json!({"batch": 3, "group": "A", "min_pending": 4, "expires": 500_000_000u64}),
    )
    .await;
    assert_eq!(next(&mut low).await.payload, "0");
    assert_eq!(next(&mut low).await.payload, "1");
    let m = next(&mut low).await;
    assert_eq!(
        status(&m),
        Some(408),
        "3 left: the third waits until expiry"
    );
    // Two unacknowledged: min_ack_pending 3 waits, and is served once a third is out.
    let mut acks = pull(
        &client,
        "o",
        json!({"batch": 1, "group": "A", "min_ack_pending": 3, "expires": 5_000_000_000u64}),
    )
    .await;
    let mut plain = pull(
        &client,
        "o",
        json!({"batch": 1, "group": "A", "expires": 5_000_000_000u64}),
    )
    .await;
    // The request without minimums is served first, although it came second.
    assert_eq!(next(&mut plain).await.payload, "2");
    assert_eq!(next(&mut acks).await.payload, "3");
    let info = api(&client, "CONSUMER.INFO.S.o", Value::Null).await;
    assert_eq!(info["num_ack_pending"], json!(4));
}

#[tokio::test]
async fn a_pinned_client_gets_everything_until_unpinned_or_timed_out() {
    let (_server, client) = with_stream(0).await;
    let v = consumer(
        &client,
        "p",
        json!({"priority_policy": "pinned_client", "priority_groups": ["A"],
               "priority_timeout": 1_000_000_000}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let mut advisories = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.*.S.p")
        .await
        .unwrap();
    let wait = 10_000_000_000u64;
    let mut first = pull(
        &client,
        "p",
        json!({"batch": 1, "group": "A", "expires": wait}),
    )
    .await;
    publish_from(&client, 0, 1).await;
    let m = next(&mut first).await;
    assert_eq!(m.payload, "0");
    let id = pin_id(&m).expect("the pinned client gets its pin id");
    assert_eq!(id.len(), 22);
    let pinned = next(&mut advisories).await;
    assert_eq!(
        pinned.subject.as_str(),
        "$JS.EVENT.ADVISORY.CONSUMER.PINNED.S.p"
    );
    let info = api(&client, "CONSUMER.INFO.S.p", Value::Null).await;
    assert_eq!(info["priority_groups"][0]["pinned_client_id"], json!(id));

    // Another client without the id waits; the pinned one (with it) is served first.
    let mut other = pull(
        &client,
        "p",
        json!({"batch": 1, "group": "A", "expires": wait}),
    )
    .await;
    let mut again = pull(
        &client,
        "p",
        json!({"batch": 1, "group": "A", "id": id, "expires": wait}),
    )
    .await;
    publish_from(&client, 1, 1).await;
    let m = next(&mut again).await;
    assert_eq!(
        (m.payload.as_ref(), pin_id(&m)),
        (&b"1"[..], Some(id.clone()))
    );
    // A wrong id is refused at once.
    let mut wrong = pull(
        &client,
        "p",
        json!({"batch": 1, "group": "A", "id": "nope", "expires": wait}),
    )
    .await;
    let m = next(&mut wrong).await;
    assert_eq!(status(&m), Some(423));
    assert_eq!(m.description.as_deref(), Some("Nats-Pin-Id mismatch"));

    // Unpinned by the API: the waiting client takes the next message and a new pin.
    let v = api(&client, "CONSUMER.UNPIN.S.p", json!({"group": "A"})).await;
    assert_eq!(
        v,
        json!({"type": "io.nats.jetstream.api.v1.consumer_unpin_response"})
    );
    let unpinned = next(&mut advisories).await;
    assert_eq!(
        unpinned.subject.as_str(),
        "$JS.EVENT.ADVISORY.CONSUMER.UNPINNED.S.p"
    );
    let body: Value = serde_json::from_slice(&unpinned.payload).unwrap();
    assert_eq!(body["reason"], json!("admin"));
    publish_from(&client, 2, 1).await;
    let m = next(&mut other).await;
    assert_eq!(m.payload, "2");
    let second = pin_id(&m).expect("a new pin");
    assert_ne!(second, id);
    next(&mut advisories).await; // pinned again

    // Nobody renews the new pin: it goes after priority_timeout.
    let timeout = next(&mut advisories).await;
    let body: Value = serde_json::from_slice(&timeout.payload).unwrap();
    assert_eq!(body["reason"], json!("timeout"), "{body}");
    let info = api(&client, "CONSUMER.INFO.S.p", Value::Null).await;
    assert!(info["priority_groups"][0].get("pinned_client_id").is_none());
    // A request with an old id, while nobody is pinned: taken, and refused when the next
    // message comes (its pin is gone), before a request without an id is pinned.
    let mut stale = pull(
        &client,
        "p",
        json!({"batch": 1, "group": "A", "id": id, "expires": wait}),
    )
    .await;
    let mut fresh = pull(
        &client,
        "p",
        json!({"batch": 1, "group": "A", "expires": wait}),
    )
    .await;
    publish_from(&client, 3, 1).await;
    let m = next(&mut stale).await;
    assert_eq!(status(&m), Some(423));
    assert_eq!(m.description.as_deref(), Some("Nats-Wrong-Pin-Id"));
    let m = next(&mut fresh).await;
    assert_eq!(m.payload, "3");
    let third = pin_id(&m).expect("pinned anew");
    assert!(third != id && third != second);

    // Unpinning a group the consumer does not have is nats-server's error.
    let v = api(&client, "CONSUMER.UNPIN.S.p", json!({"group": "B"})).await;
    assert_eq!(err_code(&v), Some(10160), "{v}");
    let v = api(&client, "CONSUMER.UNPIN.S.p", json!({})).await;
    assert_eq!(err_code(&v), Some(10025), "{v}");
}

#[tokio::test]
async fn prioritized_serves_lower_numbers_first() {
    let (_server, client) = with_stream(0).await;
    let v = consumer(
        &client,
        "q",
        json!({"priority_policy": "prioritized", "priority_groups": ["A"]}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let wait = 10_000_000_000u64;
    let mut low = pull(
        &client,
        "q",
        json!({"batch": 2, "group": "A", "priority": 5, "expires": wait}),
    )
    .await;
    let mut high = pull(
        &client,
        "q",
        json!({"batch": 2, "group": "A", "priority": 1, "expires": wait}),
    )
    .await;
    publish_from(&client, 0, 3).await;
    assert_eq!(next(&mut high).await.payload, "0");
    assert_eq!(next(&mut high).await.payload, "1");
    // The higher-priority request is filled: the next goes to the other one.
    assert_eq!(next(&mut low).await.payload, "2");
}

#[tokio::test]
async fn reset_starts_a_consumer_again_at_a_sequence() {
    let (_server, client) = with_stream(5).await;
    let v = consumer(&client, "c", json!({"ack_policy": "explicit"})).await;
    assert!(v.get("error").is_none(), "{v}");
    let mut sub = pull(
        &client,
        "c",
        json!({"batch": 5, "expires": 5_000_000_000u64}),
    )
    .await;
    for i in 0..5 {
        let m = next(&mut sub).await;
        assert_eq!(m.payload, format!("{i}"));
        if i < 2 {
            client
                .publish(m.reply.unwrap(), "+ACK".into())
                .await
                .unwrap();
        }
    }
    client.flush().await.unwrap();
    // No sequence: just after the ack floor (2 acked: sequence 3); what was pending is forgotten.
    let mut v = api(&client, "CONSUMER.INFO.S.c", Value::Null).await;
    for _ in 0..50 {
        if v["ack_floor"]["stream_seq"] == json!(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        v = api(&client, "CONSUMER.INFO.S.c", Value::Null).await;
    }
    let v = api(&client, "CONSUMER.RESET.S.c", Value::Null).await;
    assert_eq!(
        v["type"],
        json!("io.nats.jetstream.api.v1.consumer_reset_response")
    );
    assert_eq!(v["reset_seq"], json!(3), "{v}");
    assert_eq!(v["num_ack_pending"], json!(0));
    assert_eq!(v["num_pending"], json!(3));
    assert_eq!(v["delivered"], json!({"consumer_seq": 0, "stream_seq": 2}));
    let mut sub = pull(
        &client,
        "c",
        json!({"batch": 1, "expires": 5_000_000_000u64}),
    )
    .await;
    let m = next(&mut sub).await;
    assert_eq!(m.payload, "2", "stream sequence 3 comes again");

    // Back to sequence 1: everything again.
    let v = api(&client, "CONSUMER.RESET.S.c", json!({"seq": 1})).await;
    assert_eq!(v["reset_seq"], json!(1), "{v}");
    assert_eq!(v["num_pending"], json!(5));
    let mut sub = pull(
        &client,
        "c",
        json!({"batch": 1, "expires": 5_000_000_000u64}),
    )
    .await;
    assert_eq!(next(&mut sub).await.payload, "0");

    // Not below where a by-start-sequence consumer starts; not at all for `last`.
    let v = consumer(
        &client,
        "from3",
        json!({"deliver_policy": "by_start_sequence", "opt_start_seq": 3}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let v = api(&client, "CONSUMER.RESET.S.from3", json!({"seq": 2})).await;
    assert_eq!(err_code(&v), Some(10204), "{v}");
    assert_eq!(
        v["error"]["description"],
        json!("invalid reset: below start seq")
    );
    let v = api(&client, "CONSUMER.RESET.S.from3", json!({"seq": 4})).await;
    assert_eq!(v["reset_seq"], json!(4), "{v}");
    consumer(&client, "last", json!({"deliver_policy": "last"})).await;
    let v = api(&client, "CONSUMER.RESET.S.last", json!({"seq": 2})).await;
    assert_eq!(
        v["error"]["description"],
        json!("invalid reset: not allowed")
    );
    let v = api(&client, "CONSUMER.RESET.S.nope", json!({"seq": 2})).await;
    assert_eq!(err_code(&v), Some(10014), "{v}");
}

#[tokio::test]
async fn priority_settings_survive_a_restart_and_a_reset_is_saved() {
    let dir = common::scratch_dir("prio");
    let start = || async { common::broker_and_client(JetStream::new().store_dir(&dir)).await };
    let (server, client) = start().await;
    let v = api(
        &client,
        "STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"]}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    publish_from(&client, 0, 4).await;
    let v = consumer(
        &client,
        "p",
        json!({"priority_policy": "pinned_client", "priority_groups": ["A", "B"],
               "priority_timeout": 5_000_000_000u64}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let v = api(&client, "CONSUMER.RESET.S.p", json!({"seq": 3})).await;
    assert_eq!(v["reset_seq"], json!(3), "{v}");
    server.shutdown().await;
    drop(client);

    let (server, client) = start().await;
    let v = api(&client, "CONSUMER.INFO.S.p", Value::Null).await;
    assert_eq!(
        v["config"]["priority_policy"],
        json!("pinned_client"),
        "{v}"
    );
    assert_eq!(v["config"]["priority_groups"], json!(["A", "B"]));
    assert_eq!(v["config"]["priority_timeout"], json!(5_000_000_000u64));
    assert_eq!(v["ack_floor"]["stream_seq"], json!(2), "the reset was kept");
    assert_eq!(v["num_pending"], json!(2));
    let mut sub = pull(
        &client,
        "p",
        json!({"batch": 1, "group": "B", "expires": 5_000_000_000u64}),
    )
    .await;
    let m = next(&mut sub).await;
    assert_eq!(m.payload, "2");
    assert!(pin_id(&m).is_some(), "pinned anew after the restart");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
