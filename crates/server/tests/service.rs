//! In-process NATS services (`Client::service`) as the micro service protocol's clients see
//! them: async-nats over TCP discovers them with `$SRV.PING`/`$SRV.INFO`/`$SRV.STATS` and
//! reads the answers into its own `service` types, calls their endpoints, and gets errors
//! in the `Nats-Service-Error` headers; and an async-nats service is found from in-process.

mod common;

use async_nats::service::{Info, PingResponse, ServiceExt, Stats};
use bytes::Bytes;
use common::WAIT;
use futures::StreamExt;
use starling_server::{Gather, Server, ServiceError};
use std::collections::HashSet;

async fn socket_client(server: &Server) -> async_nats::Client {
    let client = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    client.flush().await.unwrap();
    client
}

/// Serves `place` (echoes) and `fail` (answers 503) on an in-process service.
async fn placement(server: &Server) -> starling_server::Service {
    let service = server
        .client()
        .service("placement", "1.2.0")
        .description("places volumes")
        .metadata("zone", "eu-1")
        .start()
        .await
        .unwrap();
    let mut place = service.endpoint("place").await.unwrap();
    let mut fail = service
        .endpoint_on("fail", "placement.fail", Some("failers"))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(req) = place.next().await {
            let answer = [b"placed ", &req.message.payload[..]].concat();
            req.respond(Ok(Bytes::from(answer))).await.unwrap();
        }
    });
    tokio::spawn(async move {
        while let Some(req) = fail.next().await {
            let e = ServiceError {
                code: 503,
                description: "no capacity".into(),
            };
            req.respond(Err(e)).await.unwrap();
        }
    });
    service
}

async fn ask(client: &async_nats::Client, subject: &str) -> Bytes {
    tokio::time::timeout(WAIT, client.request(subject.to_string(), Bytes::new()))
        .await
        .expect("answered in time")
        .unwrap_or_else(|e| panic!("{subject}: {e}"))
        .payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_reads_ping_info_and_stats_and_calls_the_endpoints() {
    let server = common::start().await;
    let service = placement(&server).await;
    let client = socket_client(&server).await;

    let ping: PingResponse =
        serde_json::from_slice(&ask(&client, "$SRV.PING.placement").await).unwrap();
    assert_eq!(ping.kind, "io.nats.micro.v1.ping_response");
    assert_eq!(
        (ping.name.as_str(), ping.version.as_str()),
        ("placement", "1.2.0")
    );
    assert_eq!(ping.id, service.id());
    assert_eq!(ping.metadata["zone"], "eu-1");

    let subject = format!("$SRV.INFO.placement.{}", service.id());
    let info: Info = serde_json::from_slice(&ask(&client, &subject).await).unwrap();
    assert_eq!(info.kind, "io.nats.micro.v1.info_response");
    assert_eq!(info.description, "places volumes");
    let endpoints: Vec<_> = info
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.subject.as_str(), e.queue_group.as_str()))
        .collect();
    assert_eq!(
        endpoints,
        [
            ("place", "place", "q"),
            ("fail", "placement.fail", "failers")
        ]
    );

    let reply = client.request("place", "vol-1".into()).await.unwrap();
    assert_eq!(reply.payload, "placed vol-1");
    let reply = client
        .request("placement.fail", "vol-2".into())
        .await
        .unwrap();
    let headers = reply.headers.expect("an error carries headers");
    assert_eq!(
        headers.get("Nats-Service-Error").unwrap().as_str(),
        "no capacity"
    );
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "503"
    );
    assert!(reply.payload.is_empty());

    let stats: Stats = serde_json::from_slice(&ask(&client, "$SRV.STATS").await).unwrap();
    assert_eq!(stats.kind, "io.nats.micro.v1.stats_response");
    let by_name = |n: &str| stats.endpoints.iter().find(|e| e.name == n).unwrap();
    assert_eq!((by_name("place").requests, by_name("place").errors), (1, 0));
    assert!(by_name("place").last_error.is_none());
    let fail = by_name("fail");
    assert_eq!((fail.requests, fail.errors), (1, 1));
    let last = fail.last_error.as_ref().expect("the last error");
    assert_eq!((last.code, last.status.as_str()), (503, "no capacity"));
    assert!(fail.average_processing_time <= fail.processing_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_answers_a_broadcast_ping_and_requests_are_spread() {
    let server = common::start().await;
    let (one, two) = (placement(&server).await, placement(&server).await);
    let ids: HashSet<String> = [one.id().to_string(), two.id().to_string()].into();
    assert_eq!(ids.len(), 2, "each instance has its own id");

    // Discovery by broadcast: one PING, an answer from every instance.
    let replies = server
        .client()
        .request_many(
            "$SRV.PING.placement",
            Bytes::new(),
            Gather::within(WAIT).max_replies(2),
        )
        .await
        .unwrap();
    let seen: HashSet<String> = replies
        .iter()
        .map(|m| {
            serde_json::from_slice::<PingResponse>(&m.payload)
                .unwrap()
                .id
        })
        .collect();
    assert_eq!(seen, ids);

    // The endpoints are one queue group: each request is answered by one instance (the
    // two instances' counts add up to the requests made).
    let client = socket_client(&server).await;
    for i in 0..20 {
        let reply = client
            .request("place", format!("v{i}").into())
            .await
            .unwrap();
        assert_eq!(reply.payload, format!("placed v{i}"));
    }
    let mut total = 0;
    for s in [&one, &two] {
        let subject = format!("$SRV.STATS.placement.{}", s.id());
        let stats: Stats = serde_json::from_slice(&ask(&client, &subject).await).unwrap();
        total += stats
            .endpoints
            .iter()
            .find(|e| e.name == "place")
            .unwrap()
            .requests;
    }
    assert_eq!(total, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_nats_service_is_found_from_in_process_and_a_bad_name_refused() {
    let server = common::start().await;
    let client = socket_client(&server).await;
    let theirs = client
        .service_builder()
        .description("from async-nats")
        .start("inventory", "0.1.0")
        .await
        .unwrap();
    let _endpoint = theirs.endpoint("count").await.unwrap();
    // The service's SUBs processed (async-nats's flush only empties its write buffer).
    common::round_trip(&client).await;

    let reply = server
        .client()
        .request("$SRV.INFO.inventory", Bytes::new())
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(info["type"], "io.nats.micro.v1.info_response");
    assert_eq!(info["endpoints"][0]["subject"], "count");

    let local = server.client();
    for (name, version) in [("bad.name", "1.0.0"), ("good", "1.0"), ("good", "01.0.0")] {
        assert_eq!(
            local.service(name, version).start().await.unwrap_err(),
            starling_server::ClientError::InvalidService,
            "{name} {version}"
        );
    }
}
