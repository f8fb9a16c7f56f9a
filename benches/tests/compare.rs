//! `compare` end to end with the reference nats-server standing in for both servers (the
//! tests build no server binary): child processes on free ports, readiness by PING/PONG,
//! alternating rounds, a two-node cluster for `route`, fresh processes for `subs`, medians,
//! the table and the JSON lines; and the children are gone afterwards.

use std::process::Command;
use std::time::Duration;

use starling_benches::compare::{self, CompareConfig, Deployment};
use starling_benches::{Config, Scenario, Topology};

/// The reference binary, or `None` (outside CI) when it is not installed.
fn reference() -> Option<String> {
    let bin = "nats-server".to_string();
    if Command::new(&bin).arg("--version").output().is_ok() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the reference nats-server is missing in CI (scripts/install-deps.sh installs it)"
    );
    eprintln!("skipping: reference nats-server not installed (run scripts/install-deps.sh)");
    None
}

#[test]
fn compare_runs_rounds_and_reports_ratios() {
    let Some(bin) = reference() else { return };
    let base = Config {
        duration: Duration::from_millis(200),
        size: 32,
        k: 2,
        subs: 1000,
        ..Config::default()
    };
    let scenarios = vec![Scenario::PubSub, Scenario::Subs, Scenario::Route];
    let mut cfg = CompareConfig::new(base, scenarios.clone());
    cfg.rounds = 2;
    cfg.starling_bin = bin.clone().into();
    cfg.nats_bin = bin.into();
    let mut progress = Vec::new();
    let runs = compare::run(&cfg, |line| progress.push(line)).expect("compare runs");
    assert_eq!(progress.len(), scenarios.len() * 2 * 2, "{progress:?}");
    assert_eq!(runs.len(), scenarios.len());
    for r in &runs {
        assert_eq!((r.starling.len(), r.nats.len()), (2, 2));
        for x in r.starling.iter().chain(&r.nats) {
            assert!(x.delivered > 0 && x.server_cpu_ns.is_some());
        }
    }
    assert!(runs[1].starling.iter().all(|x| x.rss_per_sub.is_some()));
    let table = compare::table(&runs);
    assert!(
        table.contains("ratio S/N") && table.contains("rss/sub"),
        "{table}"
    );
    let lines = compare::json_lines(&runs);
    assert_eq!(lines.len(), scenarios.len() * 2);
    assert!(lines
        .iter()
        .all(|l| l["msgs_per_sec"].as_f64().unwrap() > 0.0));
}

/// `leaf`: each side is a hub and a leaf node that solicits it (config blocks, as nats-server
/// has no leafnode flags); messages published on the hub reach the leaf's subscriber.
#[test]
fn leaf_runs_publishers_on_the_hub_and_subscribers_on_the_leaf() {
    let Some(bin) = reference() else { return };
    let base = Config {
        duration: Duration::from_millis(200),
        size: 32,
        ..Config::default()
    };
    let mut cfg = CompareConfig::new(base, vec![Scenario::Leaf]);
    cfg.rounds = 1;
    cfg.starling_bin = bin.clone().into();
    cfg.nats_bin = bin.into();
    let runs = compare::run(&cfg, |_| {}).expect("compare runs");
    for x in runs[0].starling.iter().chain(&runs[0].nats) {
        assert!(x.delivered > 0 && x.server_cpu_ns.is_some(), "{x:?}");
    }
}

#[test]
fn servers_are_killed_when_dropped() {
    let Some(bin) = reference() else { return };
    let d = Deployment::start(&bin.into(), Topology::Cluster, None, None)
        .expect("a two-node cluster starts");
    let pids = [d.a.pid, d.b.as_ref().expect("second node").pid];
    for p in pids {
        assert!(std::path::Path::new(&format!("/proc/{p}")).exists());
    }
    drop(d);
    for p in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "{p} still runs"
        );
    }
}

/// `--account` runs every server with its clients in a named account; `--versus-global` puts
/// the same binary in the account against itself in `$G`; `accounts` starts each round's
/// servers with its generated config (nats-server stands in for Starling here too).
#[test]
fn accounts_modes_run_against_the_config_they_need() {
    let Some(bin) = reference() else { return };
    let base = Config {
        duration: Duration::from_millis(200),
        size: 32,
        accounts: 30,
        subs_per_account: 3,
        ..Config::default()
    };
    let mut cfg = CompareConfig::new(base, vec![Scenario::PubSub, Scenario::Accounts]);
    cfg.rounds = 1;
    cfg.starling_bin = bin.clone().into();
    cfg.nats_bin = bin.into();
    cfg.account = Some("TENANT".into());
    cfg.versus_global = true;
    let runs = compare::run(&cfg, |_| {}).expect("compare runs");
    assert_eq!(runs[0].labels, ["starling-TENANT", "starling-$G"]);
    for r in &runs {
        for x in r.starling.iter().chain(&r.nats) {
            assert!(x.delivered > 0, "{}: nothing delivered", r.scenario);
        }
    }
    assert!(runs[1].starling[0].rss_per_account.is_some());
    let table = compare::table(&runs);
    assert!(
        table.contains("rss/account") && table.contains("starling-$G"),
        "{table}"
    );
}

#[test]
fn permissions_mode_runs_starling_with_and_without_them() {
    let Some(bin) = reference() else { return };
    let base = Config {
        duration: Duration::from_millis(200),
        size: 32,
        ..Config::default()
    };
    let mut cfg = CompareConfig::new(base, vec![Scenario::PubSub, Scenario::Wildcard]);
    cfg.rounds = 1;
    cfg.starling_bin = bin.clone().into();
    cfg.nats_bin = bin.into();
    cfg.versus_unrestricted = true;
    let [with, without] = cfg.contenders(Scenario::PubSub, &cfg.base);
    assert!(with.config.as_deref().unwrap().contains("permissions"));
    assert!(without.config.is_none());
    let runs = compare::run(&cfg, |_| {}).expect("compare runs");
    assert_eq!(runs[0].labels, ["starling-perms", "starling-open"]);
    for r in &runs {
        for x in r.starling.iter().chain(&r.nats) {
            assert!(x.delivered > 0, "{}: nothing delivered", r.scenario);
        }
    }
}

/// `--tls`: both servers get the generated certificate and every client (the readiness
/// check, the scenarios' clients, the accounts' logins, the connector threads) uses TLS;
/// `--versus-plaintext` runs the same binary with TLS against itself without.
#[test]
fn tls_modes_connect_every_client_over_tls() {
    let Some(bin) = reference() else { return };
    let base = Config {
        duration: Duration::from_millis(200),
        size: 32,
        k: 2,
        accounts: 5,
        subs_per_account: 2,
        ..Config::default()
    };
    let scenarios = vec![
        Scenario::PubSub,
        Scenario::Route,
        Scenario::Accounts,
        Scenario::Handshake,
    ];
    let mut cfg = CompareConfig::new(base, scenarios);
    cfg.rounds = 1;
    cfg.starling_bin = bin.clone().into();
    cfg.nats_bin = bin.into();
    cfg.tls = true;
    let runs = compare::run(&cfg, |_| {}).expect("compare --tls runs");
    for r in &runs {
        assert_eq!(r.tls, [true, true]);
        for x in r.starling.iter().chain(&r.nats) {
            assert!(x.delivered > 0, "{}: nothing delivered", r.scenario);
        }
    }
    let table = compare::table(&runs);
    assert!(
        table.contains("connects/s") && table.contains("server cpu/connect"),
        "{table}"
    );

    cfg.tls = false;
    cfg.versus_plaintext = true;
    cfg.scenarios = vec![Scenario::PubSub];
    let runs = compare::run(&cfg, |_| {}).expect("compare --versus-plaintext runs");
    assert_eq!(runs[0].labels, ["starling-tls", "starling-plain"]);
    assert_eq!(runs[0].tls, [true, false]);
    let lines = compare::json_lines(&runs);
    assert_eq!(
        (lines[0]["tls"].clone(), lines[1]["tls"].clone()),
        (true.into(), false.into())
    );
}

/// nats-server 2.15 (`scripts/install-deps.sh` puts it in `target/tools`): the JetStream
/// scenarios need `sync_interval: always`, which 2.9 does not have.
fn reference_2_15() -> Option<std::path::PathBuf> {
    let bin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/nats-server-2.15");
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "nats-server 2.15 is missing in CI (scripts/install-deps.sh installs it)"
    );
    eprintln!(
        "skipping: target/tools/nats-server-2.15 not installed (run scripts/install-deps.sh)"
    );
    None
}

/// Every JetStream scenario through `compare`: each server process gets JetStream in a fresh
/// store directory (`-js -sd`, or a config file with `sync_interval: always`), every check
/// passes against nats-server 2.15, and the directories are gone afterwards.
#[test]
fn compare_runs_the_jetstream_scenarios() {
    let Some(bin) = reference_2_15() else { return };
    let base = Config {
        duration: Duration::from_millis(300),
        size: 32,
        in_flight: 64,
        msgs: 2000,
        batch: 100,
        replay_batch: 1000,
        keys: 20,
        ..Config::default()
    };
    let scenarios = Scenario::parse_list("js").unwrap();
    let mut cfg = CompareConfig::new(base, scenarios.clone());
    cfg.rounds = 2;
    cfg.starling_bin = bin.clone();
    cfg.nats_bin = bin;
    let runs = compare::run(&cfg, |_| {}).expect("compare runs the JetStream scenarios");
    assert_eq!(runs.len(), scenarios.len());
    for r in &runs {
        assert!(!r.detail.is_empty(), "{}", r.scenario);
        for x in r.starling.iter().chain(&r.nats) {
            assert!(
                x.delivered > 0 && x.server_cpu_ns.is_some(),
                "{}",
                r.scenario
            );
            assert_eq!(x.delivered, x.published, "{}", r.scenario);
        }
    }
    let table = compare::table(&runs);
    for figure in [
        "acked pubs/s",
        "puts/s",
        "gets/s",
        "(file, sync always, 64 in flight)",
    ] {
        assert!(table.contains(figure), "{figure}: {table}");
    }
    let prefix = format!("starling-bench-{}-", std::process::id());
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // Other tests of this process start servers too: only store directories count.
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".js"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn recover_measures_disk_and_the_restart_on_both_sides() {
    use starling_benches::recover::{self, RecoverConfig};
    let Some(bin) = reference() else { return };
    let cfg = RecoverConfig {
        base: Config {
            size: 64,
            ..Config::default()
        },
        msgs: 2000,
        rounds: 1,
        bins: [bin.clone().into(), bin.into()],
        cold: false,
    };
    let mut progress = Vec::new();
    let runs = recover::run(&cfg, |line| progress.push(line)).expect("recover runs");
    assert_eq!(progress.len(), 2, "{progress:?}");
    for r in runs.iter().flatten() {
        assert_eq!(
            r.recovered, 2000,
            "every message is back after kill -9: {r:?}"
        );
        assert!(r.disk_bytes > 2000 * 64, "the payloads are on disk: {r:?}");
        assert!(r.recovery > Duration::ZERO);
    }
    let table = recover::table(&runs);
    for row in [
        "disk per msg",
        "kill -9 to STREAM.INFO",
        "messages after restart",
    ] {
        assert!(table.contains(row), "{table}");
    }
    // The store directories go with the run.
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("starling-bench-recover-{}-", std::process::id()))
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
