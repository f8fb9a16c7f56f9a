//! User permissions with async-nats: violations arrive as asynchronous errors on a connection
//! that stays usable, `allow_responses` lets a responder answer exactly what it was asked,
//! and default permissions fill in for users without their own.

mod common;

use std::time::Duration;

use common::{login, next, round_trip, Raw};
use starling_server::{Account, Permissions, ResponsePermission, Server, SubjectPermission, User};
use tokio::sync::mpsc;

/// Logs in as `user` and returns the client with a channel of the server errors it reports.
async fn login_with_errors(
    server: &Server,
    user: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), "p".into())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(server.client_addr().unwrap().to_string())
        .await
        .unwrap();
    (client, rx)
}

async fn next_error(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an error in time")
        .expect("client alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_are_async_errors_and_the_connection_stays_open() {
    let limited = Permissions::new()
        .publish(SubjectPermission::new().allow(["orders.>", "_INBOX.>"]))
        .subscribe(
            SubjectPermission::new()
                .allow(["orders.*", "_INBOX.>"])
                .deny(["orders.secret"]),
        );
    let server = common::start_with(
        Server::builder()
            .user(User::new("u", "p").permissions(limited))
            .user(User::new("admin", "p")),
    )
    .await;
    let (u, mut errors) = login_with_errors(&server, "u").await;
    let admin = login(server.client_addr().unwrap(), "admin", "p").await;

    let _denied = u.subscribe("payments").await.unwrap();
    assert!(next_error(&mut errors)
        .await
        .to_lowercase()
        .contains(r#"permissions violation for subscription to "payments""#),);
    u.publish("payments.1", "x".into()).await.unwrap();
    assert!(next_error(&mut errors)
        .await
        .to_lowercase()
        .contains(r#"permissions violation for publish to "payments.1""#));

    // Still connected, and what is allowed works; the wildcard never sees the denied subject.
    let mut orders = u.subscribe("orders.*").await.unwrap();
    round_trip(&u).await;
    admin
        .publish("orders.secret", "hidden".into())
        .await
        .unwrap();
    admin.publish("orders.open", "shown".into()).await.unwrap();
    admin.flush().await.unwrap();
    let m = next(&mut orders).await;
    assert_eq!(m.subject.as_str(), "orders.open");
    u.publish("orders.new", "ok".into()).await.unwrap();
    let m = next(&mut orders).await;
    assert_eq!(m.subject.as_str(), "orders.new");
    assert!(errors.try_recv().is_err(), "no further errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_responses_lets_a_responder_answer_once() {
    let responder = Permissions::new()
        .subscribe(SubjectPermission::new().allow(["svc"]))
        .allow_responses(ResponsePermission::new());
    let server = common::start_with(
        Server::builder()
            .user(User::new("svc", "p").permissions(responder))
            .user(User::new("cli", "p")),
    )
    .await;
    let addr = server.client_addr().unwrap();
    let cli = login(addr, "cli", "p").await;
    // The responder over raw TCP: exact control of what it publishes and when.
    let mut svc = Raw::handshake(
        addr,
        r#"{"verbose":false,"user":"svc","pass":"p","headers":true,"protocol":1}"#,
    )
    .await;
    svc.send("SUB svc 1\r\n").await;
    assert_eq!(svc.until_pong().await, Vec::<String>::new());

    let request = tokio::spawn({
        let cli = cli.clone();
        async move { cli.request("svc", "ping".into()).await }
    });
    let line = svc.line().await.unwrap();
    let reply = line
        .split(' ')
        .nth(3)
        .unwrap_or_else(|| panic!("MSG with a reply: {line}"))
        .to_string();
    assert!(reply.starts_with("_INBOX."), "{line}");
    let _ = svc.payload(4).await;
    // Its reply subject may be answered once; anything else may not be published.
    svc.send(&format!(
        "PUB {reply} 4\r\npong\r\nPUB {reply} 5\r\nagain\r\nPUB elsewhere 1\r\nx\r\n"
    ))
    .await;
    assert_eq!(
        svc.until_pong().await,
        vec![
            format!("-ERR 'Permissions Violation for Publish to \"{reply}\"'"),
            "-ERR 'Permissions Violation for Publish to \"elsewhere\"'".to_string(),
        ]
    );
    let answer = request.await.unwrap().unwrap();
    assert_eq!(&answer.payload[..], b"pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_permissions_apply_to_users_without_their_own() {
    let read_only = Permissions::new().publish(SubjectPermission::new().deny([">"]));
    let server = common::start_with(
        Server::builder()
            .default_permissions(read_only.clone())
            .user(User::new("g", "p"))
            .user(User::new("g-own", "p").permissions(Permissions::new()))
            .account(
                Account::new("A")
                    .default_permissions(read_only)
                    .user(User::new("a", "p")),
            ),
    )
    .await;
    for (user, allowed) in [("g", false), ("g-own", true), ("a", false)] {
        let (client, mut errors) = login_with_errors(&server, user).await;
        // SUB and PUB on one connection are handled in order: no round trip needed (and a
        // read-only user could not make one).
        let mut sub = client.subscribe("t").await.unwrap();
        client.publish("t", "x".into()).await.unwrap();
        if allowed {
            assert_eq!(next(&mut sub).await.subject.as_str(), "t", "{user}");
        } else {
            assert!(
                next_error(&mut errors)
                    .await
                    .to_lowercase()
                    .contains("permissions violation for publish"),
                "{user}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_no_auth_user_brings_its_permissions() {
    let server = common::start_with(
        Server::builder()
            .account(Account::new("A").user(User::new("anon", "p").permissions(
                Permissions::new().subscribe(SubjectPermission::new().deny(["private.>"])),
            )))
            .no_auth_user("anon"),
    )
    .await;
    let mut raw = Raw::quiet(server.client_addr().unwrap()).await;
    raw.send("SUB private.x 1\r\nSUB public 2\r\n").await;
    assert_eq!(
        raw.until_pong().await,
        vec!["-ERR 'Permissions Violation for Subscription to \"private.x\"'".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_permission_subjects_refuse_to_start() {
    let bad = Permissions::new().subscribe(SubjectPermission::new().allow(["a b c"]));
    let err = Server::builder()
        .user(User::new("u", "p").permissions(bad))
        .check()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"subject "a b c" is not a valid subject"#),
        "{err}"
    );
}
