//! One cached-match workload of `cpu_time`, in a loop, for instruction counting:
//! `valgrind --tool=callgrind target/release/examples/match_loop NAME N` (NAME: one, two, four,
//! multi, miss; a `with` suffix uses `with_matches`; `insert` inserts
//! cpu_time's population N times; `literal` runs cpu_time's MatchLiteral N times). Compare two values of N to cancel the setup.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use starling_sublist::Sublist;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "miss".into());
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    if name == "literal" {
        // cpu_time's SublistMatchLiteral: 21 patterns against one 10-token subject.
        let literal = b"foo.foo.foo.foo.foo.foo.foo.foo.foo.foo";
        let mut patterns: Vec<String> = (1..=9).rev().map(|k| "foo.".repeat(k) + ">").collect();
        patterns.insert(0, "foo.".repeat(9) + "foo");
        patterns.push(">".into());
        for k in 1..=10 {
            patterns.push([vec!["foo"; 10 - k], vec!["*"; k]].concat().join("."));
        }
        for _ in 0..n {
            for p in black_box(&patterns) {
                assert!(starling_sublist::subject_matches(
                    p.as_bytes(),
                    black_box(literal)
                ));
            }
        }
        return;
    }
    let s = Sublist::new();
    if name == "insert" {
        // cpu_time's insert workload: N rounds of the population into one sublist.
        let subjects = common::workload_subjects();
        let value = Arc::new(0u64);
        for _ in 0..n {
            for subj in &subjects {
                black_box(s.insert(subj.as_bytes(), None, value.clone()).unwrap());
            }
        }
        return;
    }
    if std::env::var_os("FULL").is_some() {
        for subj in common::workload_subjects() {
            s.insert(subj.as_bytes(), None, Arc::new(0u64)).unwrap();
        }
    }
    for subj in [
        "synadia",
        "synadia.nats",
        "synadia.nats.jetstream.nkeys",
        "synadia.nats.jetstream.nkeys.jwt",
        "cloud.>",
        "cloud.nats.component.>",
        "cloud.*.*.nkeys.*",
    ] {
        s.insert(subj.as_bytes(), None, Arc::new(0u64)).unwrap();
    }
    let subj: &[u8] = match name.trim_end_matches("with") {
        "one" => b"synadia",
        "two" => b"synadia.nats",
        "four" => b"synadia.nats.jetstream.nkeys",
        "multi" => b"cloud.nats.component.router",
        _ => b"synadia.nats.jetstream.nkeys.ZZZZ",
    };
    s.matches(subj);
    if name.ends_with("with") {
        for _ in 0..n {
            black_box(s.with_matches(black_box(subj), |r| r.plain.len()));
        }
    } else {
        for _ in 0..n {
            black_box(s.matches(black_box(subj)));
        }
    }
}
