//! In a cluster with nats-server, Starling's JetStream serves only its own clients: its API and
//! its streams' subjects are never offered over the route, so the nats-server node's clients
//! never get an answer from it (two JetStreams would both answer otherwise).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use starling_jetstream::{JetStream, ServerBuilderExt};
use starling_server::{Cluster, Server};

/// nats-server 2.15.1 as a cluster node, without JetStream.
struct Reference {
    child: Child,
    client: SocketAddr,
    route: SocketAddr,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reference() -> Option<Reference> {
    let bin = std::env::var("STARLING_NATS_SERVER_215").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/tools/nats-server-2.15"
        )
        .to_string()
    });
    if Command::new(&bin).arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the reference {bin} is missing in CI (scripts/install-deps.sh installs it)"
        );
        eprintln!("skipping: {bin} not installed (run scripts/install-deps.sh)");
        return None;
    }
    let mut child = Command::new(bin)
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "--cluster",
            "nats://127.0.0.1:-1",
        ])
        .args(["--cluster_name", "mixed"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nats-server");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut client, mut route) = (None, None);
    while client.is_none() || route.is_none() {
        let line = lines.next().expect("nats-server exited early").unwrap();
        if let Some(a) = line.split("Listening for client connections on ").nth(1) {
            client = Some(a.trim().parse().unwrap());
        }
        if let Some(a) = line.split("Listening for route connections on ").nth(1) {
            route = Some(a.trim().parse().unwrap());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Some(Reference {
        child,
        client: client.unwrap(),
        route: route.unwrap(),
    })
}

#[tokio::test]
async fn a_nats_server_peer_never_reaches_starlings_jetstream() {
    let Some(reference) = reference() else { return };
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .cluster(
            Cluster::new("mixed")
                .listen("127.0.0.1:0")
                .seeds([format!("nats://{}", reference.route)]),
        )
        .jetstream(JetStream::new())
        .start()
        .await
        .unwrap();
    let mut events = server.events();
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.peers().is_empty() {
            let _ = tokio::time::timeout(Duration::from_millis(50), events.next()).await;
        }
    })
    .await
    .expect("the route comes up");

    let ours = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let js = jetstream::new(ours.clone());
    js.create_stream(stream::Config {
        name: "LOCAL".into(),
        subjects: vec!["local.>".into()],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    // Ordinary interest still crosses the route: a subscriber on Starling gets what is
    // published on the nats-server node (this proves the route carries interest).
    let mut sub = ours.subscribe("plain.>").await.unwrap();
    ours.flush().await.unwrap();
    let theirs = async_nats::connect(format!("nats://{}", reference.client))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            theirs.publish("plain.x", "hi".into()).await.unwrap();
            theirs.flush().await.unwrap();
            if tokio::time::timeout(Duration::from_millis(100), sub.next())
                .await
                .is_ok()
            {
                break;
            }
        }
    })
    .await
    .expect("ordinary interest crosses the route");

    // Starling's JetStream does not answer the nats-server node's client, and a publish there
    // to a stream subject is not captured.
    let reply = theirs.request("$JS.API.INFO", "".into()).await;
    match reply {
        Err(e) => assert_eq!(e.kind(), async_nats::RequestErrorKind::NoResponders, "{e}"),
        Ok(m) => {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            assert!(
                v.get("error").is_some(),
                "only nats-server itself may answer: {v}"
            );
        }
    }
    theirs.publish("local.1", "x".into()).await.unwrap();
    theirs.flush().await.unwrap();
    // Starling's own clients are served.
    let ack = js
        .publish("local.2", "y".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        ack.sequence, 1,
        "the publish on the other node was not captured"
    );
    let info = js
        .get_stream("LOCAL")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 1);
}
