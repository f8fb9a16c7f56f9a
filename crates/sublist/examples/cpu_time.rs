//! nats-server's sublist benchmark workloads timed by *CPU time* of the measuring thread (from
//! `/proc/thread-self/schedstat`) rather than wall-clock time, so that figures stay comparable on a
//! busy shared machine. `scripts/go-sublist-bench.sh cpu` measures Go's side the same way (process
//! CPU time of `go test -test.benchtime=Nx`, less a 1x run). Linux only.
//!
//! `cargo run --release -p starling-sublist --example cpu_time`

mod common;

use std::hint::black_box;
use std::sync::Arc;

use starling_sublist::{subject_matches, Sublist};

#[allow(dead_code)]
struct BenchSub {
    sid: u64,
    conn: u64,
}

fn value(sid: u64) -> Arc<BenchSub> {
    Arc::new(BenchSub { sid, conn: 1 })
}

/// On-CPU nanoseconds of this thread so far.
fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("linux schedstat");
    s.split_whitespace().next().unwrap().parse().unwrap()
}

fn report(name: &str, ns: u64, ops: u64) {
    println!("{name:<40} {:>10.2} ns/op (cpu)", ns as f64 / ops as f64);
}

fn main() {
    let scale: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let subjects = common::workload_subjects();
    let values: Vec<_> = (0..subjects.len() as u64).map(value).collect();

    // Insert: as the criterion bench, 4 rounds of the workload per sublist.
    let rounds = 40 * scale;
    let mut ns = 0;
    let mut ops = 0;
    for r in 0..rounds / 4 {
        let s = Sublist::new();
        for _ in 0..4 {
            let t = cpu_ns();
            for (i, subj) in subjects.iter().enumerate() {
                black_box(s.insert(subj.as_bytes(), None, values[i].clone()).unwrap());
            }
            ns += cpu_ns() - t;
            ops += subjects.len() as u64;
        }
        black_box(r);
    }
    report("SublistInsert", ns, ops);

    let s = Sublist::new();
    for (i, subj) in subjects.iter().enumerate() {
        s.insert(subj.as_bytes(), None, values[i].clone()).unwrap();
    }
    for w in ["cloud.>", "cloud.nats.component.>", "cloud.*.*.nkeys.*"] {
        s.insert(w.as_bytes(), None, value(0)).unwrap();
    }
    let n = 20_000_000 * scale;
    for (name, subj) in [
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
        let subj = subj.as_bytes();
        s.matches(subj);
        let t = cpu_ns();
        for _ in 0..n {
            black_box(s.matches(black_box(subj)));
        }
        report(name, cpu_ns() - t, n);
        let t = cpu_ns();
        for _ in 0..n {
            black_box(s.with_matches(black_box(subj), |r| r.plain.len()));
        }
        report(&format!("{name}/with_matches"), cpu_ns() - t, n);
    }

    let literal = b"foo.foo.foo.foo.foo.foo.foo.foo.foo.foo";
    let mut patterns: Vec<String> = Vec::new();
    for k in (1..=10).rev() {
        patterns.push(if k == 10 {
            "foo.".repeat(9) + "foo"
        } else {
            "foo.".repeat(k) + ">"
        });
    }
    patterns.push(">".into());
    for k in 1..=10 {
        let lit = vec!["foo"; 10 - k];
        let wild = vec!["*"; k];
        patterns.push([lit, wild].concat().join("."));
    }
    assert_eq!(patterns.len(), 21);
    let n2 = 1_000_000 * scale;
    let t = cpu_ns();
    for _ in 0..n2 {
        for p in black_box(&patterns) {
            assert!(subject_matches(p.as_bytes(), black_box(literal)));
        }
    }
    report("SublistMatchLiteral", cpu_ns() - t, n2);

    let nc = Sublist::without_cache();
    for i in 0..512 {
        nc.insert(b"foo", None, value(i)).unwrap();
    }
    let n3 = 2_000_000 * scale;
    let t = cpu_ns();
    for _ in 0..n3 {
        let r = nc.matches(black_box(b"foo"));
        assert_eq!(r.plain.len(), 512);
    }
    report("SublistMatch10kSubsWithNoCache", cpu_ns() - t, n3);

    let n4 = 2_000_000 * scale;
    let s = Sublist::new();
    let handles: Vec<_> = (0..n4)
        .map(|i| s.insert(b"foo", None, value(i)).unwrap())
        .collect();
    let t = cpu_ns();
    for h in &handles {
        black_box(s.remove(h));
    }
    report("SublistRemove1TokenSingle", cpu_ns() - t, n4);
}
