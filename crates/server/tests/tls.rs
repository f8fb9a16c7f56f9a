//! TLS on the client listener, with async-nats: INFO then upgrade (the default), mutual TLS,
//! handshake first (and its fallback), `allow_non_tls`, refusals, `/connz` and certificate
//! reload. Raw TCP where the wire matters: what a plaintext client sees.

#![cfg(feature = "tls")]

mod common;

use std::time::Duration;

use common::certs::Certs;
use common::{next, round_trip, Raw, WAIT};
use futures::StreamExt;
use starling_server::{
    ClosedReason, Event, HandshakeFirst, Server, StartError, TlsConfig, TlsError,
};

async fn tls_server(tls: TlsConfig) -> Server {
    Server::builder()
        .listen("127.0.0.1:0")
        .tls(tls)
        .start()
        .await
        .expect("server starts")
}

/// A client that reads the plaintext INFO and never starts its handshake is closed (after the
/// TLS timeout) with `TLS Handshake Failure`.
async fn stalled_client_fails_its_handshake(server: &Server) {
    let mut events = server.events();
    let (mut raw, _) = Raw::connect_info(server.client_addr().unwrap()).await;
    assert!(raw.until_eof().await.is_empty());
    assert_eq!(
        closed_reason(&mut events).await,
        ClosedReason::TlsHandshakeError
    );
}

fn url(server: &Server) -> String {
    format!("tls://localhost:{}", server.client_addr().unwrap().port())
}

fn client_options(certs: &Certs) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(certs.ca())
}

/// Publishes and receives one message on `client`.
async fn pub_sub(client: &async_nats::Client) {
    let mut sub = client.subscribe("tls.check").await.unwrap();
    client
        .publish("tls.check", "over tls".into())
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload.as_ref(), b"over tls");
}

/// The next `ClientClosed` event's reason.
async fn closed_reason(events: &mut starling_server::EventStream) -> ClosedReason {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Event::ClientClosed { reason, .. }) = events.next().await {
                return reason;
            }
        }
    })
    .await
    .expect("a close in time")
}

#[tokio::test]
async fn clients_upgrade_after_a_plaintext_info() {
    let certs = Certs::new("upgrade");
    let server = tls_server(certs.server()).await;
    let addr = server.client_addr().unwrap();

    // The INFO is plaintext and says TLS is required.
    let (_raw, info) = Raw::connect_info(addr).await;
    assert!(info.contains(r#""tls_required":true"#), "{info}");
    assert!(!info.contains("tls_verify"), "{info}");

    let client = client_options(&certs).connect(url(&server)).await.unwrap();
    pub_sub(&client).await;
    round_trip(&client).await;
}

#[tokio::test]
async fn a_plaintext_client_is_closed_as_a_tls_handshake_failure() {
    let certs = Certs::new("plaintext");
    let server = tls_server(certs.server()).await;
    let mut events = server.events();
    let (mut raw, _) = Raw::connect_info(server.client_addr().unwrap()).await;
    raw.send("CONNECT {}\r\nPING\r\n").await;
    // No PONG: the bytes are not a TLS record, so the server closes.
    assert!(raw.until_eof().await.iter().all(|l| l != "PONG"));
    assert_eq!(
        closed_reason(&mut events).await,
        ClosedReason::TlsHandshakeError
    );
    assert_eq!(
        ClosedReason::TlsHandshakeError.to_string(),
        "TLS Handshake Failure"
    );

    // A client that never starts its handshake is closed after the TLS timeout.
    let server = tls_server(certs.server().timeout(Duration::from_millis(200))).await;
    stalled_client_fails_its_handshake(&server).await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_server_fails() {
    let certs = Certs::new("untrusted");
    let other = Certs::new("other-ca");
    let server = tls_server(certs.server()).await;
    let err = client_options(&other)
        .connect(url(&server))
        .await
        .expect_err("an unknown CA");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn verify_requires_a_client_certificate_from_the_ca() {
    let certs = Certs::new("mtls");
    let server = tls_server(certs.server().verify(true)).await;
    let (_raw, info) = Raw::connect_info(server.client_addr().unwrap()).await;
    assert!(info.contains(r#""tls_verify":true"#), "{info}");

    // Without a certificate the server refuses the handshake (TLS 1.3 reports it on the first
    // read after the handshake, so the failure may surface as an I/O error).
    let mut events = server.events();
    let without = client_options(&certs).connect(url(&server)).await;
    assert!(without.is_err(), "connected without a client certificate");
    assert_eq!(
        closed_reason(&mut events).await,
        ClosedReason::TlsHandshakeError
    );

    // With one from another CA, the same.
    let other = Certs::new("mtls-other");
    let foreign = client_options(&certs)
        .add_client_certificate(other.path("client-cert.pem"), other.path("client-key.pem"))
        .connect(url(&server))
        .await;
    assert!(foreign.is_err(), "connected with a foreign certificate");

    let client = client_options(&certs)
        .add_client_certificate(certs.path("client-cert.pem"), certs.path("client-key.pem"))
        .connect(url(&server))
        .await
        .unwrap();
    pub_sub(&client).await;
}

#[tokio::test]
async fn handshake_first_sends_info_inside_tls() {
    let certs = Certs::new("first");
    let server = tls_server(certs.server().handshake_first(HandshakeFirst::On)).await;

    let client = client_options(&certs)
        .tls_first()
        .connect(url(&server))
        .await
        .unwrap();
    pub_sub(&client).await;
    assert!(client.server_info().tls_required);

    // A client that waits for a plaintext INFO gets nothing, then the close.
    let mut raw = Raw::connect(server.client_addr().unwrap()).await;
    assert!(raw.until_eof().await.is_empty());
}

#[tokio::test]
async fn handshake_first_with_fallback_serves_both_kinds_of_client() {
    let certs = Certs::new("auto");
    let server = tls_server(
        certs
            .server()
            .handshake_first(HandshakeFirst::Fallback(Duration::from_millis(50))),
    )
    .await;
    let first = client_options(&certs)
        .tls_first()
        .connect(url(&server))
        .await
        .unwrap();
    let upgrading = client_options(&certs).connect(url(&server)).await.unwrap();
    pub_sub(&first).await;
    pub_sub(&upgrading).await;
    let (_raw, info) = Raw::connect_info(server.client_addr().unwrap()).await;
    assert!(info.contains(r#""tls_required":true"#), "{info}");
}

#[tokio::test]
async fn allow_non_tls_takes_tls_and_plaintext_clients() {
    let certs = Certs::new("mixed");
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .tls(certs.server())
        .allow_non_tls(true)
        .start()
        .await
        .unwrap();
    let addr = server.client_addr().unwrap();
    let (_raw, info) = Raw::connect_info(addr).await;
    assert!(info.contains(r#""tls_available":true"#), "{info}");
    assert!(!info.contains("tls_required"), "{info}");

    let plain = async_nats::connect(addr.to_string()).await.unwrap();
    let secure = client_options(&certs).connect(url(&server)).await.unwrap();
    let mut sub = plain.subscribe("mixed").await.unwrap();
    round_trip(&plain).await;
    secure.publish("mixed", "from tls".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload.as_ref(), b"from tls");
}

#[tokio::test]
async fn the_auth_timer_starts_after_the_handshake() {
    let certs = Certs::new("auth");
    // The handshake may take up to 1 s; the client then has 300 ms to authenticate.
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .tls(certs.server().timeout(Duration::from_secs(1)))
        .auth(starling_server::Auth::UserPassword {
            user: "u".into(),
            password: "p".into(),
        })
        .auth_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    // A client that stalls in the handshake runs into the TLS timeout, not the auth timeout:
    // the auth timer is not running yet.
    stalled_client_fails_its_handshake(&server).await;
    let client = client_options(&certs)
        .user_and_password("u".into(), "p".into())
        .connect(url(&server))
        .await
        .unwrap();
    pub_sub(&client).await;
    let err = client_options(&certs)
        .user_and_password("u".into(), "wrong".into())
        .connect(url(&server))
        .await
        .expect_err("a wrong password");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
}

#[cfg(feature = "monitor")]
#[tokio::test]
async fn connz_and_varz_show_tls() {
    let certs = Certs::new("connz");
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .monitor("127.0.0.1:0")
        .tls(certs.server().verify(true).timeout(Duration::from_secs(3)))
        .start()
        .await
        .unwrap();
    let client = client_options(&certs)
        .add_client_certificate(certs.path("client-cert.pem"), certs.path("client-key.pem"))
        .connect(url(&server))
        .await
        .unwrap();
    round_trip(&client).await;
    let monitor = server.monitor_addr().unwrap();
    let connz = common::http_get(monitor, "/connz").await.json();
    let conn = &connz["connections"][0];
    assert_eq!(conn["tls_version"], "1.3", "{connz}");
    assert!(
        conn["tls_cipher_suite"]
            .as_str()
            .is_some_and(|s| s.starts_with("TLS_AES_") || s.starts_with("TLS_CHACHA20")),
        "{connz}"
    );
    assert!(conn.get("tls_first").is_none(), "{connz}");
    let varz = common::http_get(monitor, "/varz").await.json();
    assert_eq!(varz["tls_required"], true);
    assert_eq!(varz["tls_verify"], true);
    assert_eq!(varz["tls_timeout"], 3.0);
    // With TLS, the auth timeout defaults to the TLS timeout plus a second (nats-server).
    assert_eq!(varz["auth_timeout"], 4.0);
}

#[tokio::test]
async fn certificates_reload_without_a_restart() {
    let certs = Certs::new("reload");
    let server = tls_server(certs.server()).await;
    let old = Certs::new("reload-old-ca");
    std::fs::copy(certs.ca(), old.ca()).unwrap();
    let before = client_options(&old).connect(url(&server)).await.unwrap();

    // New files from a new CA: nothing changes until the reload.
    certs.issue("Second CA");
    assert!(client_options(&old).connect(url(&server)).await.is_ok());
    server.reload_certificates().unwrap();
    let err = client_options(&old)
        .connect(url(&server))
        .await
        .expect_err("the old CA no longer signs the server's certificate");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    let after = client_options(&certs).connect(url(&server)).await.unwrap();
    pub_sub(&after).await;
    // The connection made before the reload is still served.
    round_trip(&before).await;

    // A broken file is refused and the current certificates stay.
    std::fs::write(certs.path("server-key.pem"), "not a key").unwrap();
    assert!(server.reload_certificates().is_err());
    assert!(client_options(&certs).connect(url(&server)).await.is_ok());
}

#[tokio::test]
async fn bad_tls_settings_are_refused_at_start() {
    let certs = Certs::new("bad");
    // What the server refused the settings for.
    let refused = |tls: TlsConfig| async move {
        match Server::builder()
            .listen("127.0.0.1:0")
            .tls(tls)
            .start()
            .await
        {
            Err(StartError::Tls(e)) => e,
            Err(e) => panic!("refused for something else: {e}"),
            Ok(_) => panic!("started"),
        }
    };
    let err = refused(
        certs
            .server()
            .cipher_suites(["TLS_RSA_WITH_AES_128_CBC_SHA"]),
    )
    .await;
    assert!(matches!(err, TlsError::UnsupportedCipher(_)), "{err}");
    let err = refused(certs.server().curve_preferences(["CurveP521"])).await;
    assert!(matches!(err, TlsError::UnsupportedCurve(_)), "{err}");
    let err = refused(TlsConfig::new(
        certs.path("missing.pem"),
        certs.path("server-key.pem"),
    ))
    .await;
    assert!(matches!(err, TlsError::Read { .. }), "{err}");
    let err = refused(TlsConfig::new(
        certs.path("server-cert.pem"),
        certs.path("client-key.pem"),
    ))
    .await;
    assert!(matches!(err, TlsError::KeyPair(_)), "{err}");
    let err = refused(
        TlsConfig::new(certs.path("server-cert.pem"), certs.path("server-key.pem")).verify(true),
    )
    .await;
    assert!(matches!(err, TlsError::VerifyWithoutCa), "{err}");

    // TLS 1.3 only, with a narrowed curve list: still serves.
    let server = tls_server(
        certs
            .server()
            .min_version(starling_server::TlsVersion::V1_3)
            .curve_preferences(["CurveP256", "X25519"])
            .cipher_suites(["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]),
    )
    .await;
    let client = client_options(&certs).connect(url(&server)).await.unwrap();
    round_trip(&client).await;
}

/// Two nodes whose routes use TLS, each verifying the other: the cluster forms and messages
/// cross it; a node whose certificate another CA signed cannot join.
#[tokio::test]
async fn routes_over_tls_verify_both_sides() {
    let certs = Certs::new("routes");
    let node = |name: &'static str, seeds: Vec<String>, certs: &Certs| {
        let tls = certs.server();
        async move {
            Server::builder()
                .server_name(name)
                .listen("127.0.0.1:0")
                .cluster(
                    starling_server::Cluster::new("secure")
                        .listen("127.0.0.1:0")
                        .seeds(seeds)
                        .discovery_interval(Duration::from_millis(100))
                        .tls(tls),
                )
                .start()
                .await
                .unwrap()
        }
    };
    let a = node("a", vec![], &certs).await;
    let seed = format!(
        "nats-route://localhost:{}",
        a.cluster_addr().unwrap().port()
    );
    let b = node("b", vec![seed.clone()], &certs).await;
    for s in [&a, &b] {
        let mut events = s.events();
        tokio::time::timeout(WAIT, async {
            while s.peers().is_empty() {
                // A join may land between the check and the wait: re-check every 50 ms.
                let _ = tokio::time::timeout(Duration::from_millis(50), events.next()).await;
            }
        })
        .await
        .expect("the TLS route forms");
    }

    let sub_client = async_nats::connect(b.client_addr().unwrap().to_string())
        .await
        .unwrap();
    let mut sub = sub_client.subscribe("across").await.unwrap();
    round_trip(&sub_client).await;
    let pub_client = async_nats::connect(a.client_addr().unwrap().to_string())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        // Interest arrives as an RS+ on the route; there is no event for it.
        while !a.has_interest("across") {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("interest crosses the route");
    pub_client.publish("across", "secret".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload.as_ref(), b"secret");

    // A node with a certificate from another CA is refused by the TLS handshake.
    let other = Certs::new("routes-other");
    let intruder = node("c", vec![seed], &other).await;
    let mut events = intruder.events();
    let waited = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Some(Event::PeerJoined { .. }) = events.next().await {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_err(), "an intruder joined");
    assert!(intruder.peers().is_empty());
}

/// `verify_and_map`: the client certificate is the credential. Its DNS name, or its subject
/// as a distinguished name, names a configured user (no password asked); a certificate that
/// names no user is refused.
#[tokio::test]
async fn verify_and_map_turns_the_certificate_into_the_user() {
    let certs = Certs::new("map");
    let mtls = || {
        client_options(&certs)
            .add_client_certificate(certs.path("client-cert.pem"), certs.path("client-key.pem"))
    };
    for (user, maps) in [
        ("client.starling.test", true), // the DNS name
        ("CN=client", true),            // the subject
        ("someone-else", false),
    ] {
        let server = Server::builder()
            .listen("127.0.0.1:0")
            .tls(certs.server().verify_and_map(true))
            .account(starling_server::Account::new("A").user(starling_server::User::new(user, "")))
            .start()
            .await
            .unwrap();
        let mut events = server.events();
        let connected = mtls().connect(url(&server)).await;
        assert_eq!(connected.is_ok(), maps, "{user}");
        if maps {
            pub_sub(&connected.unwrap()).await;
            loop {
                match tokio::time::timeout(WAIT, events.next())
                    .await
                    .unwrap()
                    .unwrap()
                {
                    Event::ClientAuthorized {
                        account, user: u, ..
                    } => {
                        assert_eq!((account.as_str(), u.as_deref()), ("A", Some(user)));
                        break;
                    }
                    _ => continue,
                }
            }
        }
        // Without a certificate the handshake itself fails (verification is on).
        assert!(client_options(&certs).connect(url(&server)).await.is_err());
    }
}

/// `pinned_certs`: only a client whose certificate's key is pinned completes the handshake.
#[tokio::test]
async fn pinned_certificates_admit_only_their_keys() {
    let certs = Certs::new("pinned");
    let pin = TlsConfig::pin_of(certs.path("client-cert.pem")).unwrap();
    assert_eq!(pin.len(), 64);
    let mtls = |c: &Certs| {
        client_options(c)
            .add_client_certificate(c.path("client-cert.pem"), c.path("client-key.pem"))
    };
    let server = tls_server(certs.server().verify(true).pinned_certs([pin])).await;
    let client = mtls(&certs).connect(url(&server)).await.unwrap();
    pub_sub(&client).await;

    // Pinning another key (the server's): the client's certificate is verified, but not
    // pinned.
    let server = tls_server(
        certs
            .server()
            .verify(true)
            .pinned_certs([TlsConfig::pin_of(certs.path("server-cert.pem")).unwrap()]),
    )
    .await;
    assert!(mtls(&certs).connect(url(&server)).await.is_err());
}

/// The monitor over HTTPS (`-ms`/`https_port`): the client listener's certificate, no client
/// certificate asked for even when clients must present one; `/varz` says `https_port`.
#[cfg(feature = "monitor")]
#[tokio::test]
async fn the_monitor_serves_https_with_the_client_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = Certs::new("https");
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .tls(certs.server().verify(true))
        .monitor_https("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let addr = server.monitor_addr().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(certs.ca()).unwrap();
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("no client certificate needed");
    tls.write_all(b"GET /varz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(&format!("\"https_port\": {}", addr.port())),
        "{text}"
    );
    assert!(text.contains("\"http_port\": 0"), "{text}");

    // Plain HTTP on that port gets no answer.
    assert!(common::http_request(addr, "GET", "/varz", WAIT)
        .await
        .is_err());

    // HTTPS without a certificate to serve is refused at start.
    let err = Server::builder()
        .monitor_https("127.0.0.1:0")
        .start()
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid configuration: TLS cert and key required for HTTPS"
    );
}
