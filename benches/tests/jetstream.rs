//! The JetStream scenarios against an embedded Starling broker with JetStream: every check
//! passes on a correct server, and fails when a proxy drops, duplicates or swaps one
//! acknowledgement, delivery or direct-get reply.

#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::proxy::{proxy, Fault};
use starling_benches::js::{self, Storage};
use starling_benches::{run, BenchError, Config, Scenario};
use starling_jetstream::{JetStream, ServerBuilderExt, SyncPolicy};
use starling_server::Server;
use tokio::runtime::Runtime;

/// An embedded broker with JetStream in a fresh store directory (removed on drop).
struct JsBroker {
    _rt: Runtime,
    server: Server,
    dir: PathBuf,
}

impl JsBroker {
    fn start(sync: SyncPolicy) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "starling-bench-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt
            .block_on(
                Server::builder()
                    .listen("127.0.0.1:0")
                    .jetstream(JetStream::new().store_dir(&dir).sync(sync))
                    .start(),
            )
            .expect("broker with JetStream starts");
        Self {
            _rt: rt,
            server,
            dir,
        }
    }

    fn one() -> Self {
        Self::start(SyncPolicy::default())
    }

    fn url(&self) -> String {
        self.server.client_url().expect("client listener")
    }
}

impl Drop for JsBroker {
    fn drop(&mut self) {
        // Stopped first: nothing writes to the directory while it goes.
        self._rt.block_on(self.server.shutdown());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A short run: small counts, quick on a loaded 2-core machine.
fn quick(scenario: Scenario, url: String) -> Config {
    Config {
        scenario,
        url,
        size: 64,
        duration: Duration::from_millis(300),
        drain_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        in_flight: 64,
        msgs: 3000,
        batch: 100,
        replay_batch: 1000,
        keys: 50,
        // The broker runs in this process: its CPU is ours.
        pid: Some(std::process::id()),
        ..Config::default()
    }
}

fn check(scenario: Scenario, tweak: impl FnOnce(&mut Config)) {
    let broker = if scenario == Scenario::JsPubSync {
        JsBroker::start(SyncPolicy::Always)
    } else {
        JsBroker::one()
    };
    let mut cfg = quick(scenario, broker.url());
    tweak(&mut cfg);
    let label = format!("{scenario} ({})", scenario.detail(&cfg));
    // Twice on the same server: the first round's stream is deleted at its end.
    for round in 0..2 {
        let r = run(&cfg).unwrap_or_else(|e| panic!("{label} round {round}: {e}"));
        assert!(r.delivered > 0, "{label}: nothing delivered");
        assert_eq!(r.delivered, r.published, "{label}");
        assert!(r.msgs_per_sec() > 0.0, "{label}");
        assert!(r.server_cpu_ns.is_some(), "{label}");
        match scenario {
            Scenario::JsConsume | Scenario::JsReplay => assert_eq!(r.delivered, cfg.msgs),
            _ => {}
        }
        if let Some(max) = cfg.max_msgs {
            assert_eq!(r.delivered, max, "{label}");
        }
        assert_eq!(r.to_json()["scenario"], scenario.name());
    }
}

#[test]
fn js_pub_file() {
    check(Scenario::JsPub, |_| {});
}

#[test]
fn js_pub_memory() {
    check(Scenario::JsPub, |c| c.storage = Storage::Memory);
}

#[test]
fn js_pub_one_in_flight() {
    check(Scenario::JsPub, |c| c.in_flight = 1);
}

#[test]
fn js_pub_4096_in_flight_128_bytes() {
    check(Scenario::JsPub, |c| {
        c.in_flight = 4096;
        c.size = 128;
        c.max_msgs = Some(20_000);
        c.duration = Duration::from_secs(30);
    });
}

#[test]
fn js_pub_sync_always() {
    check(Scenario::JsPubSync, |c| c.in_flight = 16);
}

#[test]
fn js_consume_file() {
    check(Scenario::JsConsume, |_| {});
}

#[test]
fn js_consume_memory() {
    check(Scenario::JsConsume, |c| c.storage = Storage::Memory);
}

#[test]
fn js_replay() {
    check(Scenario::JsReplay, |_| {});
}

#[test]
fn js_replay_memory() {
    check(Scenario::JsReplay, |c| c.storage = Storage::Memory);
}

#[test]
fn kv_put() {
    check(Scenario::KvPut, |_| {});
}

#[test]
fn kv_put_one_in_flight() {
    check(Scenario::KvPut, |c| c.in_flight = 1);
}

#[test]
fn kv_get() {
    check(Scenario::KvGet, |_| {});
}

#[test]
fn kv_get_memory_one_in_flight() {
    check(Scenario::KvGet, |c| {
        c.storage = Storage::Memory;
        c.in_flight = 1;
    });
}

#[test]
fn js_names_every_jetstream_scenario_and_all_leaves_them_out() {
    let js = Scenario::parse_list("js").unwrap();
    assert_eq!(js, Scenario::JETSTREAM);
    assert_eq!(
        Scenario::parse_list("js-pub,kv-get").unwrap(),
        [Scenario::JsPub, Scenario::KvGet]
    );
    let all = Scenario::parse_list("all").unwrap();
    assert!(js
        .iter()
        .all(|s| !all.contains(s) && s.jetstream().is_some()));
    assert_eq!(
        Scenario::JsPubSync.jetstream(),
        Some(js::JsServer::SyncAlways)
    );
    let block = js::JsServer::SyncAlways.config_block("/tmp/x").unwrap();
    assert!(block.contains("sync_interval: always") && block.contains("\"/tmp/x\""));
    assert_eq!(
        js::JsServer::Enabled.flags("/d"),
        ["-js", "-sd", "/d"].map(String::from)
    );
}

/// A server without JetStream: the stream cannot be created, and the error says why.
#[test]
fn without_jetstream_the_run_fails_clearly() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(Server::builder().listen("127.0.0.1:0").start())
        .unwrap();
    let cfg = quick(Scenario::JsPub, server.client_url().unwrap());
    match run(&cfg) {
        Err(BenchError::Server(m)) => assert!(m.contains("JetStream"), "{m}"),
        other => panic!("expected a server error, got {other:?}"),
    }
}

const PUBACKS: &str = "_INBOX.bench.ack.";
const DELIVERIES: &str = "bench.js.";
const GETS: &str = "_INBOX.bench.get.";

fn expect_sequence_error(scenario: Scenario, fault: Fault, tweak: impl FnOnce(&mut Config)) {
    let broker = JsBroker::one();
    let mut cfg = quick(scenario, proxy(broker.url(), fault));
    cfg.max_msgs = Some(500);
    cfg.msgs = 500;
    cfg.duration = Duration::from_secs(10);
    cfg.drain_timeout = Duration::from_secs(1);
    tweak(&mut cfg);
    match run(&cfg) {
        Err(e @ BenchError::Sequence(_)) => eprintln!("{scenario} {fault:?}: {e}"),
        other => panic!("{scenario} with {fault:?}: expected a sequence error, got {other:?}"),
    }
}

#[test]
fn a_lost_puback_fails_the_run() {
    expect_sequence_error(Scenario::JsPub, Fault::Drop(PUBACKS, 100), |_| {});
}

#[test]
fn a_lost_last_puback_fails_the_run() {
    expect_sequence_error(Scenario::JsPub, Fault::Drop(PUBACKS, 500), |_| {});
}

#[test]
fn a_duplicated_puback_fails_the_run() {
    expect_sequence_error(Scenario::KvPut, Fault::Duplicate(PUBACKS, 100), |_| {});
}

#[test]
fn a_reordered_puback_fails_the_run() {
    expect_sequence_error(Scenario::JsPub, Fault::Swap(PUBACKS, 100), |_| {});
}

#[test]
fn a_lost_delivery_fails_the_consume() {
    expect_sequence_error(Scenario::JsConsume, Fault::Drop(DELIVERIES, 250), |_| {});
}

#[test]
fn a_lost_last_delivery_fails_the_replay() {
    expect_sequence_error(Scenario::JsReplay, Fault::Drop(DELIVERIES, 500), |_| {});
}

#[test]
fn a_duplicated_delivery_fails_the_replay() {
    expect_sequence_error(Scenario::JsReplay, Fault::Duplicate(DELIVERIES, 42), |_| {});
}

#[test]
fn a_reordered_delivery_fails_the_consume() {
    expect_sequence_error(Scenario::JsConsume, Fault::Swap(DELIVERIES, 7), |_| {});
}

#[test]
fn a_lost_direct_get_reply_fails_the_run() {
    expect_sequence_error(Scenario::KvGet, Fault::Drop(GETS, 30), |_| {});
}

#[test]
fn a_duplicated_direct_get_reply_fails_the_run() {
    expect_sequence_error(Scenario::KvGet, Fault::Duplicate(GETS, 30), |_| {});
}

/// Swapped replies of two different keys: each arrives on its own slot, so the value check,
/// not the order, must catch a reply on the wrong slot. A swap alone is fine (replies may
/// come in any order); the proxy passes every other reply through unchanged.
#[test]
fn reordered_direct_get_replies_pass() {
    let broker = JsBroker::one();
    let mut cfg = quick(Scenario::KvGet, proxy(broker.url(), Fault::Swap(GETS, 30)));
    cfg.max_msgs = Some(500);
    let r = run(&cfg).expect("replies in another order are fine");
    assert_eq!(r.delivered, 500);
}

#[test]
fn the_proxy_alone_passes() {
    let broker = JsBroker::one();
    for scenario in [Scenario::JsPub, Scenario::JsConsume, Scenario::KvGet] {
        let mut cfg = quick(
            scenario,
            proxy(broker.url(), Fault::Drop(PUBACKS, u64::MAX)),
        );
        cfg.max_msgs = Some(500);
        cfg.msgs = 500;
        let r = run(&cfg).unwrap_or_else(|e| panic!("{scenario} through the proxy: {e}"));
        assert_eq!(r.delivered, 500, "{scenario}");
    }
}
