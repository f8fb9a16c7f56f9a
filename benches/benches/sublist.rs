//! Criterion benchmarks of `starling-sublist` on nats-server's own sublist benchmark workload
//! (`server/sublist_test.go` in nats-server 2.9.10), benchmark by benchmark, so the figures can be
//! set beside `go test -run XXX -bench Sublist` (see `scripts/go-sublist-bench.sh`).
//!
//! The stored value is an `Arc` of a small struct, as the broker stores `Arc<Subscription>`: every
//! uncached match pays a reference count per subscriber, which Go's pointer copy does not.

#[path = "../../crates/sublist/examples/common/mod.rs"]
mod workload;

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use starling_sublist::{is_valid_literal_subject, subject_is_literal, subject_matches, Sublist};

/// What a subscription carries in these benches (the broker's is larger; only the pointer moves).
#[allow(dead_code)]
struct BenchSub {
    sid: u64,
    conn: u64,
}

type Value = Arc<BenchSub>;

fn value(sid: u64) -> Value {
    Arc::new(BenchSub { sid, conn: 1 })
}

/// The workload's subjects, built once.
fn workload_subjects() -> &'static [String] {
    static SUBJECTS: OnceLock<Vec<String>> = OnceLock::new();
    SUBJECTS.get_or_init(workload::workload_subjects)
}

/// The shared benchmark sublist: the workload plus Go's three wildcards (`addWildcards`).
fn workload_sublist() -> &'static Sublist<Value> {
    static SUBLIST: OnceLock<Sublist<Value>> = OnceLock::new();
    SUBLIST.get_or_init(|| {
        let s = Sublist::new();
        for (i, subject) in workload_subjects().iter().enumerate() {
            s.insert(subject.as_bytes(), None, value(i as u64)).unwrap();
        }
        for w in ["cloud.>", "cloud.nats.component.>", "cloud.*.*.nkeys.*"] {
            s.insert(w.as_bytes(), None, value(0)).unwrap();
        }
        s
    })
}

fn insert(c: &mut Criterion) {
    let subjects = workload_subjects();
    let values: Vec<Value> = (0..subjects.len() as u64).map(value).collect();
    // Go's `SublistInsert` keeps inserting the workload, round after round, into one sublist (its
    // later rounds re-insert into existing nodes). Here every insert is a new subscription, so
    // each sublist takes four rounds (150k subscriptions) and is then replaced, outside the timing.
    c.bench_function("SublistInsert", |b| {
        b.iter_custom(|iters| {
            let mut sublist = Sublist::new();
            let mut in_sublist = 0usize;
            let mut elapsed = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                if in_sublist == 4 * subjects.len() {
                    sublist = Sublist::new();
                    in_sublist = 0;
                }
                let start_index = in_sublist % subjects.len();
                let n = (iters - done).min((subjects.len() - start_index) as u64) as usize;
                let start = Instant::now();
                for i in start_index..start_index + n {
                    black_box(
                        sublist
                            .insert(subjects[i].as_bytes(), None, values[i].clone())
                            .unwrap(),
                    );
                }
                elapsed += start.elapsed();
                in_sublist += n;
                done += n as u64;
            }
            elapsed
        })
    });
}

fn cached_matches(c: &mut Criterion) {
    let s = workload_sublist();
    for (name, subject) in [
        ("SublistMatchSingleToken", "synadia"),
        ("SublistMatchTwoTokens", "synadia.nats"),
        ("SublistMatchFourTokens", "synadia.nats.jetstream.nkeys"),
        (
            "SublistMatchFourTokensMultiResults",
            "cloud.nats.component.router",
        ),
        (
            "SublistMissOnLastTokenOfFive",
            "synadia.nats.jetstream.nkeys.ZZZZ",
        ),
    ] {
        let subject = subject.as_bytes();
        s.matches(subject);
        c.bench_function(name, |b| b.iter(|| s.matches(black_box(subject))));
        // The same lookup, looking at the result in place instead of taking an `Arc` to it.
        c.bench_function(&format!("{name}/with_matches"), |b| {
            b.iter(|| s.with_matches(black_box(subject), |r| r.plain.len()))
        });
    }
}

fn match_literal(c: &mut Criterion) {
    let literal = b"foo.foo.foo.foo.foo.foo.foo.foo.foo.foo";
    let patterns: [&[u8]; 21] = [
        b"foo.foo.foo.foo.foo.foo.foo.foo.foo.foo",
        b"foo.foo.foo.foo.foo.foo.foo.foo.foo.>",
        b"foo.foo.foo.foo.foo.foo.foo.foo.>",
        b"foo.foo.foo.foo.foo.foo.foo.>",
        b"foo.foo.foo.foo.foo.foo.>",
        b"foo.foo.foo.foo.foo.>",
        b"foo.foo.foo.foo.>",
        b"foo.foo.foo.>",
        b"foo.foo.>",
        b"foo.>",
        b">",
        b"foo.foo.foo.foo.foo.foo.foo.foo.foo.*",
        b"foo.foo.foo.foo.foo.foo.foo.foo.*.*",
        b"foo.foo.foo.foo.foo.foo.foo.*.*.*",
        b"foo.foo.foo.foo.foo.foo.*.*.*.*",
        b"foo.foo.foo.foo.foo.*.*.*.*.*",
        b"foo.foo.foo.foo.*.*.*.*.*.*",
        b"foo.foo.foo.*.*.*.*.*.*.*",
        b"foo.foo.*.*.*.*.*.*.*.*",
        b"foo.*.*.*.*.*.*.*.*.*",
        b"*.*.*.*.*.*.*.*.*.*",
    ];
    c.bench_function("SublistMatchLiteral", |b| {
        b.iter(|| {
            for p in black_box(&patterns) {
                assert!(subject_matches(p, black_box(literal)));
            }
        })
    });
}

fn uncached_fanout(c: &mut Criterion) {
    let s = Sublist::without_cache();
    for i in 0..512 {
        s.insert(b"foo", None, value(i)).unwrap();
    }
    c.bench_function("SublistMatch10kSubsWithNoCache", |b| {
        b.iter(|| {
            let r = s.matches(black_box(b"foo"));
            assert_eq!(r.plain.len(), 512);
            r
        })
    });
    // The same walk with a plain integer as the value (no reference counts to bump).
    let s = Sublist::without_cache();
    for i in 0..512u64 {
        s.insert(b"foo", None, i).unwrap();
    }
    c.bench_function("SublistMatch10kSubsWithNoCache/u64", |b| {
        b.iter(|| {
            let r = s.matches(black_box(b"foo"));
            assert_eq!(r.plain.len(), 512);
            r
        })
    });
}

fn remove(c: &mut Criterion) {
    // Go's `SublistRemove1TokenSingle`: b.N subscriptions on `foo` in a cached sublist, then remove
    // them all, in insertion order; only the removes are timed.
    c.bench_function("SublistRemove1TokenSingle", |b| {
        b.iter_custom(|iters| {
            let s = Sublist::new();
            let handles: Vec<_> = (0..iters)
                .map(|i| s.insert(b"foo", None, value(i)).unwrap())
                .collect();
            let start = Instant::now();
            for h in &handles {
                black_box(s.remove(h));
            }
            start.elapsed()
        })
    });
}

fn validation(c: &mut Criterion) {
    c.bench_function("IsValidLiteralSubject", |b| {
        b.iter(|| is_valid_literal_subject(black_box(b"foo.bar.baz.22")))
    });
    c.bench_function("subjectIsLiteral", |b| {
        b.iter(|| subject_is_literal(black_box(b"foo.bar.baz.22")))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = insert, cached_matches, match_literal, uncached_fanout, remove, validation
}
criterion_main!(benches);
