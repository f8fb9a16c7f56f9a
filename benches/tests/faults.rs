//! The checks can fail: a proxy between the tool and a real broker drops, duplicates or
//! swaps one `MSG`, and the run must fail with a sequence error.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use common::proxy::{proxy, Fault, ANY};
use common::{quick, Brokers};
use starling_benches::{run, BenchError, Scenario};

fn expect_sequence_error(scenario: Scenario, fault: Fault) {
    let brokers = Brokers::one();
    let mut cfg = quick(scenario, proxy(brokers.url(0), fault));
    cfg.max_msgs = Some(500);
    cfg.duration = Duration::from_secs(5);
    cfg.drain_timeout = Duration::from_secs(1);
    match run(&cfg) {
        Err(e @ BenchError::Sequence(_)) => eprintln!("{scenario} {fault:?}: {e}"),
        other => panic!("{scenario} with {fault:?}: expected a sequence error, got {other:?}"),
    }
}

#[test]
fn a_dropped_message_fails_the_run() {
    expect_sequence_error(Scenario::PubSub, Fault::Drop(ANY, 100));
}

#[test]
fn a_dropped_last_message_fails_the_run() {
    expect_sequence_error(Scenario::PubSub, Fault::Drop(ANY, 500));
}

#[test]
fn a_duplicated_message_fails_the_run() {
    expect_sequence_error(Scenario::PubSub, Fault::Duplicate(ANY, 100));
}

#[test]
fn a_reordered_message_fails_the_run() {
    expect_sequence_error(Scenario::Fanout, Fault::Swap(ANY, 100));
}

#[test]
fn a_duplicate_within_a_queue_member_fails_the_run() {
    expect_sequence_error(Scenario::Queue, Fault::Duplicate(ANY, 50));
}

#[test]
fn a_lost_reply_fails_the_run() {
    expect_sequence_error(Scenario::ReqRep, Fault::Drop(ANY, 20));
}

#[test]
fn the_proxy_alone_passes() {
    let brokers = Brokers::one();
    let mut cfg = quick(
        Scenario::PubSub,
        proxy(brokers.url(0), Fault::Drop(ANY, u64::MAX)),
    );
    cfg.max_msgs = Some(500);
    let r = run(&cfg).expect("a faithful proxy passes");
    assert_eq!(r.delivered, 500);
}

#[test]
fn the_binary_exits_non_zero_on_a_sequence_error() {
    let brokers = Brokers::one();
    let bin = env!("CARGO_BIN_EXE_starling-bench");
    let run = |url: &str| {
        std::process::Command::new(bin)
            .args([
                "run",
                "--scenario",
                "pubsub",
                "--duration",
                "0.3",
                "--size",
                "32",
            ])
            .args(["--url", url, "--pid", &std::process::id().to_string()])
            .output()
            .expect("runs starling-bench")
    };
    let ok = run(&brokers.url(0));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("pubsub") && stdout.contains("\"msgs_per_sec\""),
        "{stdout}"
    );
    let bad = run(&proxy(brokers.url(0), Fault::Drop(ANY, 10)));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SEQUENCE ERROR"), "{stderr}");
}
