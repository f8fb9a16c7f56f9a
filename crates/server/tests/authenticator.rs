//! The pluggable authenticator: an embedder's async code decides who a client is, in a chain
//! in front of the configured users; it sees the credentials, the nonce and the TLS
//! certificate; a slow one holds up only its own client; a grant can expire.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{next, round_trip, Raw, WAIT};
use futures::StreamExt;
use starling_server::{
    Account, AuthRequest, Decision, Event, Grant, Permissions, Server, SubjectPermission, User,
};

fn vault(req: AuthRequest) -> Decision {
    match (req.user.as_deref(), req.password.as_deref()) {
        (Some("svc"), Some("from-the-vault")) => Decision::Allow(
            Grant::new("A")
                .user("svc")
                .permissions(Permissions::new().publish(SubjectPermission::new().allow(["svc.>"]))),
        ),
        (Some("svc"), _) => Decision::Deny("svc: wrong password".into()),
        (Some("ghost"), _) => Decision::Allow(Grant::new("NO_SUCH_ACCOUNT")),
        _ => Decision::Pass,
    }
}

async fn start(builder: starling_server::ServerBuilder) -> Server {
    builder
        .listen("127.0.0.1:0")
        .account(Account::new("A"))
        .account(Account::new("B").user(User::new("static", "pw")))
        .start()
        .await
        .unwrap()
}

async fn connect(server: &Server, user: &str, pass: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into())
        .connect(server.client_addr().unwrap().to_string())
        .await
        .map_err(|e| e.to_string())
}

/// The next event `pick` accepts.
async fn event<T>(
    events: &mut starling_server::EventStream,
    pick: impl Fn(Event) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(t) = events.next().await.and_then(&pick) {
                return t;
            }
        }
    })
    .await
    .expect("the event in time")
}

#[tokio::test]
async fn an_authenticator_allows_denies_and_passes_to_the_configured_users() {
    let server = start(Server::builder().authenticator(|req| async move { vault(req) })).await;
    let mut events = server.events();

    // Allowed into A, with the grant's permissions.
    let svc = connect(&server, "svc", "from-the-vault").await.unwrap();
    let (account, user) = event(&mut events, |e| match e {
        Event::ClientAuthorized { account, user, .. } => Some((account, user)),
        _ => None,
    })
    .await;
    assert_eq!((account.as_str(), user.as_deref()), ("A", Some("svc")));
    let mut sub = svc.subscribe("svc.x").await.unwrap();
    svc.publish("svc.x", "ok".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload.as_ref(), b"ok");

    // Denied, with the reason in the event, never on the wire.
    let err = connect(&server, "svc", "guess").await.unwrap_err();
    assert!(err.contains("authorization violation"), "{err}");
    let reason = event(&mut events, |e| match e {
        Event::AuthorizationFailed { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, "svc: wrong password");

    // A grant into an account the server does not have is a refusal.
    assert!(connect(&server, "ghost", "").await.is_err());

    // Passed on: the configured users decide.
    let fallback = connect(&server, "static", "pw").await.unwrap();
    round_trip(&fallback).await;
    assert!(connect(&server, "static", "nope").await.is_err());
    // And clients that send nothing are not let in: INFO says auth is required.
    let (_raw, info) = Raw::connect_info(server.client_addr().unwrap()).await;
    assert!(info.contains(r#""auth_required":true"#), "{info}");
    assert!(info.contains(r#""nonce":""#), "{info}");
}

#[tokio::test]
async fn the_chain_asks_in_order_until_one_decides() {
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let server = start(
        Server::builder()
            .authenticator(move |_req| {
                count.fetch_add(1, Ordering::SeqCst);
                async { Decision::Pass }
            })
            .authenticator(|req: AuthRequest| async move {
                match req.token.as_deref() {
                    Some("t0k3n") => Decision::Allow(Grant::new("$G")),
                    _ => Decision::Pass,
                }
            }),
    )
    .await;
    let client = async_nats::ConnectOptions::with_token("t0k3n".into())
        .connect(server.client_addr().unwrap().to_string())
        .await
        .unwrap();
    round_trip(&client).await;
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_slow_authenticator_times_out_without_holding_up_others() {
    let server = start(
        Server::builder()
            .auth_timeout(Duration::from_millis(300))
            .authenticator(|req: AuthRequest| async move {
                if req.user.as_deref() == Some("slow") {
                    std::future::pending::<()>().await;
                }
                vault(req)
            }),
    )
    .await;
    let fast = connect(&server, "static", "pw").await.unwrap();
    let mut events = server.events();
    let (mut raw, _) = Raw::connect_info(server.client_addr().unwrap()).await;
    raw.send("CONNECT {\"user\":\"slow\",\"pass\":\"x\"}\r\nPING\r\n")
        .await;
    // While "slow" waits on its authenticator, others are served.
    round_trip(&fast).await;
    assert_eq!(
        raw.line().await.as_deref(),
        Some("-ERR 'Authentication Timeout'")
    );
    let reason = event(&mut events, |e| match e {
        Event::ClientClosed { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(reason, starling_server::ClosedReason::AuthenticationTimeout);
}

#[tokio::test]
async fn a_grant_expires() {
    let server = start(Server::builder().authenticator(|_req| async {
        Decision::Allow(Grant::new("A").expires_at(SystemTime::now() + Duration::from_millis(300)))
    }))
    .await;
    let mut raw = Raw::handshake(server.client_addr().unwrap(), r#"{"verbose":false}"#).await;
    let lines = raw.until_eof().await;
    assert_eq!(lines, ["-ERR 'User Authentication Expired'"], "{lines:?}");
}

#[tokio::test]
async fn an_authenticator_can_check_an_nkey_signature() {
    let key = nkeys::KeyPair::new_user();
    let allowed = key.public_key();
    let server = start(Server::builder().authenticator(move |req: AuthRequest| {
        let allowed = allowed.clone();
        async move {
            if req.nkey.as_deref() == Some(allowed.as_str()) && req.nonce_signed() {
                Decision::Allow(Grant::new("A").user(allowed))
            } else {
                Decision::Deny("unknown key".into())
            }
        }
    }))
    .await;
    let client = async_nats::ConnectOptions::with_nkey(key.seed().unwrap())
        .connect(server.client_addr().unwrap().to_string())
        .await
        .unwrap();
    round_trip(&client).await;
    let stranger = nkeys::KeyPair::new_user();
    assert!(
        async_nats::ConnectOptions::with_nkey(stranger.seed().unwrap())
            .connect(server.client_addr().unwrap().to_string())
            .await
            .is_err()
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn an_authenticator_sees_the_client_certificate() {
    let certs = common::certs::Certs::new("authn");
    let server = start(
        Server::builder()
            .tls(certs.server().verify(true))
            .authenticator(|req: AuthRequest| async move {
                match req.tls_peer_certificates.first() {
                    Some(der) if !der.is_empty() => {
                        Decision::Allow(Grant::new("A").user("cert-holder"))
                    }
                    _ => Decision::Deny("no certificate".into()),
                }
            }),
    )
    .await;
    let client = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(certs.ca())
        .add_client_certificate(certs.path("client-cert.pem"), certs.path("client-key.pem"))
        .connect(format!(
            "tls://localhost:{}",
            server.client_addr().unwrap().port()
        ))
        .await
        .unwrap();
    round_trip(&client).await;
}

#[tokio::test]
async fn a_grant_limits_subscriptions_and_payloads() {
    let server = start(
        Server::builder().authenticator(|_req: AuthRequest| async move {
            Decision::Allow(Grant::new("A").max_subscriptions(1).max_payload(4))
        }),
    )
    .await;
    let mut raw = Raw::handshake(server.client_addr().unwrap(), r#"{"verbose":false}"#).await;
    raw.send("SUB a 1\r\nSUB b 2\r\nPUB a 4\r\nabcd\r\n").await;
    assert_eq!(
        raw.until_pong().await,
        vec!["-ERR 'maximum subscriptions exceeded'", "MSG a 1 4", "abcd"]
    );
    raw.send("PUB a 5\r\nabcde\r\n").await;
    assert_eq!(
        tokio::time::timeout(WAIT, raw.until_eof()).await.unwrap(),
        vec!["-ERR 'Maximum Payload Violation'"]
    );
}

/// An embedder's own JWT scheme: it trusts one account key, and lets its users in with the
/// permissions of their JWTs (`AuthRequest::user_jwt` checks the signatures and the nonce).
#[tokio::test]
async fn an_authenticator_can_check_a_user_jwt() {
    let account = nkeys::KeyPair::new_account();
    let trusted = account.public_key();
    let server = start(Server::builder().authenticator(move |req: AuthRequest| {
        let trusted = trusted.clone();
        async move {
            match req.user_jwt() {
                Ok(claims) if claims.issuer == trusted => Decision::Allow(
                    Grant::new("A")
                        .user(claims.subject.clone())
                        .permissions(claims.nats.limits.permissions.to_permissions().unwrap()),
                ),
                Ok(_) => Decision::Deny("untrusted issuer".into()),
                Err(e) => Decision::Deny(e.to_string()),
            }
        }
    }))
    .await;
    let user = nkeys::KeyPair::new_user();
    let jwt = nats_jwt::Token::new_user(account.public_key(), user.public_key())
        .allow_publish("ok.>")
        .allow_subscribe("ok.>")
        .sign(&account);
    let creds = common::jwt::creds(&jwt, &user.seed().unwrap());
    let client = async_nats::ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(server.client_addr().unwrap().to_string())
        .await
        .unwrap();
    let mut sub = client.subscribe("ok.x").await.unwrap();
    client.publish("ok.x", "hi".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, "hi");
    // The same JWT without its seed (another key signs the nonce) is refused.
    let thief = common::jwt::creds(&jwt, &nkeys::KeyPair::new_user().seed().unwrap());
    assert!(async_nats::ConnectOptions::with_credentials(&thief)
        .unwrap()
        .connect(server.client_addr().unwrap().to_string())
        .await
        .is_err());
}
