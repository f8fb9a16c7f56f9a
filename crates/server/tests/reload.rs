//! `Server::reload`: a running server takes a new configuration as nats-server takes a
//! reloaded file: users and permissions with live connections, limits, TLS certificates,
//! cluster routes; an option that needs a restart, or a configuration that is not valid, is
//! refused and the server goes on as it was.

mod common;

use std::time::Duration;

use common::{Raw, WAIT};
use starling_server::{
    Cluster, Config, Monitor, Permissions, ReloadError, Server, SubjectPermission, User,
};

const QUIET: &str = r#""verbose":false,"pedantic":false"#;

fn connect(user: &str) -> String {
    format!(r#"{{{QUIET},"user":"{user}","pass":"p"}}"#)
}

/// A client listener on loopback, with `users` of `$G` (password `p`).
fn with_users(users: &[&str]) -> Config {
    let mut config = Config::default();
    config.listen = Some("127.0.0.1:0".into());
    config.users = users.iter().map(|u| User::new(*u, "p")).collect();
    config
}

async fn start(config: Config) -> Server {
    Server::builder()
        .config(config)
        .start()
        .await
        .expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_removed_by_a_reload_are_closed_and_added_ones_log_in() {
    let server = start(with_users(&["gone", "stays"])).await;
    let addr = server.client_addr().unwrap();
    let mut gone = Raw::handshake(addr, &connect("gone")).await;
    let mut stays = Raw::handshake(addr, &connect("stays")).await;
    Raw::refused(addr, &connect("new")).await;

    let reloaded = server
        .reload(with_users(&["stays", "new"]))
        .await
        .expect("users are reloadable");
    assert_eq!(reloaded.changed, ["authorization users"]);
    assert_eq!(
        gone.until_eof().await,
        ["-ERR 'Authorization Violation'".to_string()]
    );
    stays.send("SUB x 1\r\nPUB x 1\r\ny\r\n").await;
    assert_eq!(stays.until_pong().await, ["MSG x 1 1", "y"]);
    let _new = Raw::handshake(addr, &connect("new")).await;
    Raw::refused(addr, &connect("gone")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_permissions_remove_subscriptions_with_the_err() {
    let wide = Permissions::new().subscribe(SubjectPermission::new().allow(["a.>", "b.>"]));
    let narrow = Permissions::new().subscribe(SubjectPermission::new().allow(["b.>"]));
    let mut config = with_users(&[]);
    config.users = vec![User::new("u", "p").permissions(wide)];
    let server = start(config.clone()).await;
    let addr = server.client_addr().unwrap();
    let mut raw = Raw::handshake(addr, &connect("u")).await;
    raw.send("SUB a.x 1\r\nSUB b.x 2\r\n").await;
    assert!(raw.until_pong().await.is_empty());

    config.users = vec![User::new("u", "p").permissions(narrow)];
    server.reload(config).await.unwrap();
    // The connection stays; the subscription the new permissions refuse is gone.
    raw.send("PUB a.x 1\r\n1\r\nPUB b.x 1\r\n2\r\n").await;
    assert_eq!(
        raw.until_pong().await,
        [
            "-ERR 'Permissions Violation for Subscription to \"a.x\" (sid \"1\")'",
            "MSG b.x 2 1",
            "2"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_max_payload_applies_to_open_connections_and_their_info() {
    let mut config = with_users(&[]);
    config.max_payload = 1024;
    config.monitor = Some(Monitor {
        addr: "127.0.0.1:0".into(),
        https: false,
    });
    let server = start(config.clone()).await;
    let mon = server.monitor_addr().unwrap();
    let before = common::http_get(mon, "/varz").await.json();
    let addr = server.client_addr().unwrap();
    let (mut raw, info) = Raw::connect_info(addr).await;
    assert!(info.contains(r#""max_payload":1024"#), "{info}");
    raw.send(&format!(r#"CONNECT {{{QUIET},"protocol":1}}"#))
        .await;
    raw.send("\r\nPING\r\n").await;
    assert_eq!(raw.line().await.as_deref(), Some("PONG"));

    config.max_payload = 4096;
    let reloaded = server.reload(config).await.unwrap();
    assert_eq!(reloaded.changed, ["max_payload"]);
    // Clients that take async INFOs are told.
    let info = raw.line().await.unwrap();
    assert!(info.contains(r#""max_payload":4096"#), "{info}");
    let big = "x".repeat(2000);
    raw.send(&format!("SUB big 1\r\nPUB big 2000\r\n{big}\r\n"))
        .await;
    assert_eq!(raw.until_pong().await, ["MSG big 1 2000".to_string(), big]);
    // /varz shows the new value, and when it was loaded.
    let after = common::http_get(mon, "/varz").await.json();
    assert_eq!(after["max_payload"], 4096);
    assert_eq!(before["start"], after["start"]);
    assert_ne!(before["config_load_time"], after["config_load_time"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_option_that_needs_a_restart_is_refused_and_nothing_changes() {
    let config = with_users(&["u"]);
    let server = start(config.clone()).await;
    let addr = server.client_addr().unwrap();
    let mut raw = Raw::handshake(addr, &connect("u")).await;

    let mut other_port = config.clone();
    other_port.listen = Some("127.0.0.1:1".into());
    other_port.users.clear(); // would close `u`, if it were applied
    let err = server.reload(other_port).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ReloadError::NotSupported {
                option: "listen",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "config reload not supported for listen: old=Some(\"127.0.0.1:0\"), new=Some(\"127.0.0.1:1\")"
    );
    // A configuration that is not valid is refused as at start.
    let mut invalid = config.clone();
    invalid.max_payload = invalid.max_pending + 1;
    let err = server.reload(invalid).await.unwrap_err();
    assert!(matches!(err, ReloadError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("max_payload"), "{err}");

    // Still the old configuration: `u` is served, the port is the same.
    raw.send("SUB x 1\r\nPUB x 1\r\ny\r\n").await;
    assert_eq!(raw.until_pong().await, ["MSG x 1 1", "y"]);
    assert_eq!(server.client_addr(), Some(addr));
    assert_eq!(server.config().await.users.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_max_connections_closes_the_newest_clients() {
    let mut config = with_users(&[]);
    let server = start(config.clone()).await;
    let addr = server.client_addr().unwrap();
    let mut old = Raw::handshake(addr, &format!("{{{QUIET}}}")).await;
    let mut new = Raw::handshake(addr, &format!("{{{QUIET}}}")).await;
    config.max_connections = 1;
    server.reload(config).await.unwrap();
    assert_eq!(
        new.until_eof().await,
        ["-ERR 'Maximum Connections Exceeded'".to_string()]
    );
    old.send("PING\r\n").await;
    assert_eq!(old.line().await.as_deref(), Some("PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_added_by_a_reload_are_dialled_and_removed_ones_closed() {
    let cluster = |seeds: &[String]| {
        Cluster::new("reload")
            .listen("127.0.0.1:0")
            .seeds(seeds.iter().cloned())
            .discovery_interval(Duration::from_millis(200))
    };
    let peer = common::clustered(Server::builder(), "peer", "reload", &[]).await;
    let peer_url = format!("nats://{}", peer.cluster_addr().unwrap());
    let mut config = with_users(&[]);
    config.cluster = Some(cluster(&[]));
    let server = start(config.clone()).await;
    assert!(server.peers().is_empty());

    config.cluster = Some(cluster(&[peer_url]));
    let reloaded = server.reload(config.clone()).await.unwrap();
    assert_eq!(reloaded.changed, ["cluster routes"]);
    wait_for(|| server.peers().len() == 1).await;
    assert_eq!(server.peers()[0].server_name, "peer");

    config.cluster = Some(cluster(&[]));
    server.reload(config).await.unwrap();
    wait_for(|| server.peers().is_empty() && peer.peers().is_empty()).await;
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_tls_certificate_for_new_handshakes() {
    use common::certs::Certs;
    let first = Certs::new("reload-first");
    let second = Certs::new("reload-second");
    let mut config = with_users(&[]);
    config.tls = Some(first.server());
    let server = start(config.clone()).await;
    let url = format!("tls://localhost:{}", server.client_addr().unwrap().port());
    let trusting = |certs: &Certs| {
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(certs.ca())
    };
    let before = trusting(&first).connect(&url).await.unwrap();

    config.tls = Some(second.server());
    let reloaded = server.reload(config).await.unwrap();
    assert_eq!(reloaded.changed, ["tls"]);
    let err = trusting(&first)
        .connect(&url)
        .await
        .expect_err("the first CA no longer signs the server's certificate");
    // Both test CAs have the same name: the old one's signature no longer checks out.
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    let after = trusting(&second).connect(&url).await.unwrap();
    after.flush().await.unwrap();
    // The connection made before the reload keeps its session.
    before.flush().await.unwrap();
}

/// Polls `done` until it holds, bounded by [`WAIT`] (cluster state has no event to await).
async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "not in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
