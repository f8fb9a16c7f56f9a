//! Criterion benchmarks of the wire codec (`starling-proto`): parse throughput of client
//! `PUB`/`HPUB` streams and route `RMSG` streams, and encode throughput of `MSG`/`RMSG` lines.
//!
//! Run: `cargo bench -p starling-benches --bench codec`. Figures are ops per second
//! (`Throughput::Elements`), one op per element.
use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use starling_proto::{
    encode, ClientOp, ClientParser, Limits, RouteOp, RouteParser, ServerOp, ServerParser,
};

/// Ops per benchmark iteration (one read buffer's worth).
const OPS: usize = 1000;

fn stream(op: &[u8]) -> Vec<u8> {
    op.repeat(OPS)
}

fn parse_client(c: &mut Criterion, name: &str, buf: &[u8]) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(OPS as u64));
    g.bench_function(name, |b| {
        let mut parser = ClientParser::new(Limits::default());
        b.iter(|| {
            let mut at = 0;
            let mut bytes = 0;
            while let Some((op, n)) = parser.parse(black_box(&buf[at..])).unwrap() {
                if let ClientOp::Pub(p) = op {
                    bytes += p.data.len();
                }
                at += n;
            }
            assert_eq!(at, buf.len());
            black_box(bytes)
        })
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    parse_client(
        c,
        "pub_16",
        &stream(b"PUB foo.bar 16\r\n0123456789abcdef\r\n"),
    );
    parse_client(
        c,
        "pub_reply_16",
        &stream(b"PUB foo.bar _INBOX.abcdef.1 16\r\n0123456789abcdef\r\n"),
    );
    parse_client(
        c,
        "hpub_16",
        &stream(b"HPUB foo.bar 18 34\r\nNATS/1.0\r\nK: v\r\n\r\n0123456789abcdef\r\n"),
    );

    let msgs = stream(b"MSG foo.bar 12345 16\r\n0123456789abcdef\r\n");
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(OPS as u64));
    g.bench_function("msg_16", |b| {
        let mut parser = ServerParser::new(Limits::default());
        b.iter(|| {
            let mut at = 0;
            while let Some((op, n)) = parser.parse(black_box(&msgs[at..])).unwrap() {
                black_box(matches!(op, ServerOp::Msg(_)));
                at += n;
            }
            assert_eq!(at, msgs.len());
        })
    });
    let rmsgs = stream(b"RMSG $G foo.bar + _INBOX.x q1 16\r\n0123456789abcdef\r\n");
    g.bench_function("rmsg_queue_16", |b| {
        let mut parser = RouteParser::new(Limits::default());
        b.iter(|| {
            let mut at = 0;
            while let Some((op, n)) = parser.parse(black_box(&rmsgs[at..])).unwrap() {
                black_box(matches!(op, RouteOp::Msg(_)));
                at += n;
            }
            assert_eq!(at, rmsgs.len());
        })
    });
    g.finish();
}

fn encode_lines(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(OPS as u64));
    let mut buf = BytesMut::with_capacity(64 * OPS);
    g.bench_function("msg", |b| {
        b.iter(|| {
            buf.clear();
            for i in 0..OPS {
                encode::write_msg(
                    &mut buf,
                    black_box(b"foo.bar"),
                    black_box(b"12345"),
                    None,
                    black_box(16 + (i & 1)),
                );
            }
            black_box(buf.len())
        })
    });
    g.bench_function("msg_reply", |b| {
        b.iter(|| {
            buf.clear();
            for _ in 0..OPS {
                encode::write_msg(
                    &mut buf,
                    black_box(b"foo.bar"),
                    black_box(b"12345"),
                    Some(b"_INBOX.abcdef.1"),
                    16,
                );
            }
            black_box(buf.len())
        })
    });
    g.bench_function("hmsg", |b| {
        b.iter(|| {
            buf.clear();
            for _ in 0..OPS {
                encode::write_hmsg(
                    &mut buf,
                    black_box(b"foo.bar"),
                    black_box(b"12345"),
                    None,
                    18,
                    34,
                );
            }
            black_box(buf.len())
        })
    });
    g.bench_function("rmsg_queue", |b| {
        b.iter(|| {
            buf.clear();
            for _ in 0..OPS {
                encode::write_rmsg(
                    &mut buf,
                    b"$G",
                    black_box(b"foo.bar"),
                    Some(b"_INBOX.x"),
                    &[b"q1"],
                    None,
                    16,
                );
            }
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, parse, encode_lines);
criterion_main!(benches);
