//! Embedded Starling brokers for the load tool's tests, and a fault-injecting proxy.

// Not every test binary that includes `common` uses the proxy.
#[allow(dead_code)]
pub(crate) mod proxy;

use std::time::Duration;

use starling_benches::{Config, Scenario};
use starling_server::{Account, Cluster, Server, User};
use tokio::runtime::Runtime;

/// A runtime driving embedded brokers while the test's thread runs the (blocking) tool.
pub(crate) struct Brokers {
    _rt: Runtime,
    servers: Vec<Server>,
}

impl Brokers {
    /// One broker on a free port.
    pub(crate) fn one() -> Self {
        let rt = runtime();
        let server = rt
            .block_on(Server::builder().listen("127.0.0.1:0").start())
            .expect("broker starts");
        Self {
            _rt: rt,
            servers: vec![server],
        }
    }

    /// One broker with `n` accounts `bench<i>` (user `u<i>`, password `p<i>`), as the
    /// `accounts` scenario's config file describes them.
    pub(crate) fn accounts(n: usize) -> Self {
        let rt = runtime();
        let mut builder = Server::builder().listen("127.0.0.1:0");
        for i in 0..n {
            builder = builder.account(
                Account::new(format!("bench{i}")).user(User::new(format!("u{i}"), format!("p{i}"))),
            );
        }
        let server = rt.block_on(builder.start()).expect("broker starts");
        Self {
            _rt: rt,
            servers: vec![server],
        }
    }

    /// Two brokers forming a cluster (B is seeded with A).
    pub(crate) fn cluster() -> Self {
        let rt = runtime();
        let a = rt
            .block_on(
                Server::builder()
                    .listen("127.0.0.1:0")
                    .cluster(Cluster::new("bench").listen("127.0.0.1:0"))
                    .start(),
            )
            .expect("broker A starts");
        let seed = format!("nats://{}", a.cluster_addr().expect("cluster listener"));
        let b = rt
            .block_on(
                Server::builder()
                    .listen("127.0.0.1:0")
                    .cluster(Cluster::new("bench").listen("127.0.0.1:0").seeds([seed]))
                    .start(),
            )
            .expect("broker B starts");
        Self {
            _rt: rt,
            servers: vec![a, b],
        }
    }

    pub(crate) fn url(&self, i: usize) -> String {
        self.servers[i].client_url().expect("client listener")
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A short run of `scenario` against `url`: quick enough for a loaded 2-core machine.
pub(crate) fn quick(scenario: Scenario, url: String) -> Config {
    Config {
        scenario,
        url,
        size: 64,
        duration: Duration::from_millis(300),
        drain_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        k: 3,
        subs: 2000,
        subjects: 50,
        ..Config::default()
    }
}
