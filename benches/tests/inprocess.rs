//! `starling-bench inprocess`: one embedded broker, the in-process client and TCP loopback
//! side by side; every figure filled in, every in-process payload the publisher's own bytes.

use starling_benches::inprocess::{self, InprocessConfig};

#[test]
fn inprocess_and_tcp_figures_come_from_one_broker() {
    let cfg = InprocessConfig {
        msgs: 2_000,
        size: 16,
        k: 2,
        requests: 200,
        rounds: 1,
        ..InprocessConfig::default()
    };
    let mut progress = Vec::new();
    let rows = inprocess::run(&cfg, |l| progress.push(l)).expect("runs");
    assert_eq!(progress.len(), 3, "{progress:?}");
    let names: Vec<_> = rows.iter().map(|r| r.scenario).collect();
    assert_eq!(
        names,
        [
            "pubsub",
            "pubsub (publish_many)",
            "pubsub (publish_many, next_payloads)",
            "fanout",
            "fanout (publish_many)",
            "fanout (publish_many, next_payloads)",
            "reqrep"
        ]
    );
    for r in &rows {
        assert!(r.inprocess > 0.0 && r.tcp > 0.0, "{r:?}");
    }
    let (rtt_in, rtt_tcp) = rows[6].round_trip_ns.expect("round trips");
    assert!(rtt_in > 0.0 && rtt_tcp > 0.0);
    let table = inprocess::table(&rows);
    assert!(
        table.contains("| pubsub |") && table.contains("round trip"),
        "{table}"
    );
}
