//! Criterion benchmarks of the in-process client's delivery, one thread, no sockets: the
//! broker's own CPU per message, without the cross-thread wake-ups and cache traffic that
//! `starling-bench inprocess` includes. Payloads are static, so no allocation or reference
//! count of the payload is measured: what remains is the broker's work.
//!
//! `cargo bench -p starling-benches --bench inprocess`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;
use starling_server::{Client, Message, Server, Subscriber, PUBLISH_MANY_RUN};

const PAYLOAD: &[u8] = b"0123456789abcdef";

fn inprocess(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _runtime = rt.enter(); // clients spawn their bookkeeping task on it
    let server = rt.block_on(Server::builder().start()).expect("broker");
    let publisher = server.client();
    let reader = server.client();
    let mut sub = rt
        .block_on(reader.subscribe("bench.inprocess"))
        .expect("subscribe");
    let n = PUBLISH_MANY_RUN;

    let mut group = c.benchmark_group("inprocess");
    group.throughput(Throughput::Elements(n as u64));
    // `publish` per message, then the subscriber reads them one by one.
    group.bench_function("publish_then_next", |b| {
        b.iter(|| rt.block_on(publish_then_next(&publisher, &mut sub, n)))
    });
    // One `publish_many` run, read with `next_batch`.
    let mut batch: Vec<Message> = Vec::with_capacity(n);
    group.bench_function("publish_many_then_next_batch", |b| {
        b.iter(|| {
            rt.block_on(async {
                let run = std::iter::repeat_n(Bytes::from_static(PAYLOAD), n);
                publisher
                    .publish_many("bench.inprocess", run)
                    .await
                    .expect("publish_many");
                while batch.len() < n {
                    assert!(sub.next_batch(&mut batch).await);
                }
                black_box(&batch);
                batch.clear();
            })
        })
    });
    // The same single publishes while 1,000 requests are pending with their cancellation
    // watched (`Client::cancelled`): watches sit off the publish path, so this should match
    // `publish_then_next` (issue 15: cancellation costs nothing on the publish path).
    let responder = server.client();
    let requester = server.client();
    let (_pending, _watches) = rt.block_on(async {
        let mut work = responder.subscribe("work").await.expect("subscribe");
        let mut pending = Vec::new();
        for _ in 0..1000 {
            let requester = requester.clone();
            pending.push(tokio::spawn(async move {
                let _ = requester.request("work", Bytes::new()).await;
            }));
        }
        let mut watches = Vec::new();
        for _ in 0..1000 {
            let request = work.next().await.expect("a request");
            watches.push(responder.cancelled(&request));
        }
        (pending, watches)
    });
    group.bench_function("publish_then_next_with_1000_watched_requests", |b| {
        b.iter(|| rt.block_on(publish_then_next(&publisher, &mut sub, n)))
    });
    group.finish();
    drop(sub);
    rt.block_on(server.shutdown());
}

/// `n` single publishes, then the subscriber reads them one by one.
async fn publish_then_next(publisher: &Client, sub: &mut Subscriber, n: usize) {
    for _ in 0..n {
        publisher
            .publish("bench.inprocess", Bytes::from_static(PAYLOAD))
            .await
            .expect("publish");
    }
    for _ in 0..n {
        black_box(sub.next().await.expect("message"));
    }
}

criterion_group!(benches, inprocess);
criterion_main!(benches);
