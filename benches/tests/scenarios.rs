//! Every scenario against an embedded Starling broker: messages flow, every sequence check
//! passes, and the figures are filled in.

mod common;

use common::{quick, Brokers};
use starling_benches::{run, Scenario, Topology};

fn check(scenario: Scenario) {
    let two = scenario.topology() == Topology::Cluster;
    let brokers = if two {
        Brokers::cluster()
    } else {
        Brokers::one()
    };
    let mut cfg = quick(scenario, brokers.url(0));
    if two {
        cfg.url2 = Some(brokers.url(1));
    }
    // The broker runs in this process: its CPU and RSS are ours.
    cfg.pid = Some(std::process::id());
    let r = run(&cfg).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    assert!(r.delivered > 0, "{scenario}: nothing delivered");
    assert!(r.msgs_per_sec() > 0.0);
    assert!(r.server_cpu_ns.is_some() && r.rss_after.is_some());
    let k = cfg.k as u64;
    match scenario {
        Scenario::Fanout | Scenario::Wildcard => assert_eq!(r.delivered, r.published * k),
        Scenario::Subs => {
            assert_eq!(r.delivered, cfg.subs as u64);
            assert!(r.rss_per_sub.is_some());
        }
        Scenario::ReqRep => {
            let l = r.latency.expect("latency percentiles");
            assert_eq!(l.count, r.delivered);
            assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999);
        }
        _ => assert_eq!(r.delivered, r.published),
    }
    let json = r.to_json();
    assert_eq!(json["scenario"], scenario.name());
}

#[test]
fn pub_only() {
    check(Scenario::Pub);
}

#[test]
fn pubsub() {
    check(Scenario::PubSub);
}

#[test]
fn pubsub_headers() {
    check(Scenario::PubSubHeaders);
}

#[test]
fn fanout() {
    check(Scenario::Fanout);
}

#[test]
fn fanin() {
    check(Scenario::Fanin);
}

#[test]
fn queue() {
    check(Scenario::Queue);
}

#[test]
fn wildcard() {
    check(Scenario::Wildcard);
}

#[test]
fn reqrep() {
    check(Scenario::ReqRep);
}

#[test]
fn reqrep_concurrent() {
    let brokers = Brokers::one();
    let mut cfg = quick(Scenario::ReqRep, brokers.url(0));
    cfg.concurrency = 8;
    let r = run(&cfg).expect("concurrent reqrep");
    assert!(r.delivered >= 8);
}

#[test]
fn subs() {
    check(Scenario::Subs);
}

#[test]
fn route() {
    check(Scenario::Route);
}

#[test]
fn handshake() {
    check(Scenario::Handshake);
}

/// `handshake` runs when named; `all` stays the set earlier figures were measured with.
#[test]
fn handshake_is_named_not_in_all() {
    assert_eq!(Scenario::parse("handshake").unwrap(), Scenario::Handshake);
    assert!(!Scenario::parse_list("all")
        .unwrap()
        .contains(&Scenario::Handshake));
}

/// Many accounts: one client per account logs in, subscribes, and a message stays in its
/// account (the run fails otherwise).
#[test]
fn accounts() {
    let brokers = Brokers::accounts(20);
    let mut cfg = quick(Scenario::Accounts, brokers.url(0));
    cfg.accounts = 20;
    cfg.subs_per_account = 5;
    cfg.pid = Some(std::process::id());
    let r = run(&cfg).expect("accounts scenario");
    assert_eq!(r.delivered, 100);
    assert!(r.rss_per_account.is_some() && r.rss_per_sub.is_some());
    assert_eq!(r.to_json()["scenario"], "accounts");
}

/// The accounts the scenario asks for must exist: a server with another set refuses logins.
#[test]
fn accounts_need_their_config() {
    let brokers = Brokers::accounts(2);
    let mut cfg = quick(Scenario::Accounts, brokers.url(0));
    cfg.accounts = 3;
    assert!(run(&cfg).is_err());
}

#[test]
fn large_messages() {
    let brokers = Brokers::one();
    let mut cfg = quick(Scenario::PubSub, brokers.url(0));
    cfg.size = 64 * 1024;
    cfg.max_msgs = Some(300);
    let r = run(&cfg).expect("64 KiB pubsub");
    assert_eq!(r.delivered, r.published);
}

#[test]
fn sizes_out_of_range_are_refused() {
    let mut cfg = quick(Scenario::PubSub, "nats://127.0.0.1:1".into());
    cfg.size = 8;
    assert!(matches!(
        run(&cfg),
        Err(starling_benches::BenchError::Usage(_))
    ));
}
