//! What the JetStream tests share: an embedded broker with JetStream and an async-nats client
//! of it, stream configurations, acknowledged publishes, scratch store directories.

// Each test binary includes this module and uses some of it.
#![allow(dead_code)]

use std::path::PathBuf;

use async_nats::jetstream::{self, stream};
use starling_jetstream::{JetStream, ServerBuilderExt};
use starling_server::Server;

/// A broker on a free port with `js`, and a connected async-nats client.
pub(crate) async fn broker_and_client(js: JetStream) -> (Server, async_nats::Client) {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .jetstream(js)
        .start()
        .await
        .expect("broker starts");
    let client = async_nats::connect(server.client_url().unwrap())
        .await
        .expect("connects");
    (server, client)
}

/// A broker on a free port with `js`, and a JetStream context of a client of it.
pub(crate) async fn broker(js: JetStream) -> (Server, jetstream::Context) {
    let (server, client) = broker_and_client(js).await;
    (server, jetstream::new(client))
}

/// A stream `name` on `subjects` in `storage`, otherwise nats-server's defaults.
pub(crate) fn stream_config(
    name: &str,
    subjects: &[&str],
    storage: stream::StorageType,
) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        storage,
        ..Default::default()
    }
}

/// [`stream_config`] in memory.
pub(crate) fn memory(name: &str, subjects: &[&str]) -> stream::Config {
    stream_config(name, subjects, stream::StorageType::Memory)
}

/// Publishes `payload` to `subject` and returns the sequence its PubAck gives.
pub(crate) async fn publish(js: &jetstream::Context, subject: &str, payload: &str) -> u64 {
    js.publish(subject.to_string(), payload.to_string().into())
        .await
        .expect("published")
        .await
        .expect("acknowledged")
        .sequence
}

/// A fresh path under the temp dir for a store directory (`tag` says whose).
pub(crate) fn scratch_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("starling-js-{tag}-{}", fastrand::u64(..)))
}
