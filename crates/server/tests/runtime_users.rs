//! Users added and removed while the server runs (`Server::add_user`, `Server::remove_user`):
//! no restart, and a removed user's live connections are closed as nats-server closes them on
//! a reload that drops the user.

mod common;

use common::{login, next, round_trip, Raw};
use starling_server::{
    Account, AccountError, Permissions, Server, SubjectPermission, User, GLOBAL_ACCOUNT,
};

const QUIET: &str = r#""verbose":false,"pedantic":false"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_added_at_runtime_logs_in_to_its_account() {
    let server = common::start_with(
        Server::builder()
            .account(Account::new("A").user(User::new("a", "pa")))
            .user(User::new("g", "pg")),
    )
    .await;
    let addr = server.client_addr().unwrap();
    let (mut raw, _) = Raw::connect_info(addr).await;
    raw.send(&format!(
        "CONNECT {{{QUIET},\"user\":\"late\",\"pass\":\"pl\"}}\r\n"
    ))
    .await;
    assert_eq!(
        raw.line().await.as_deref(),
        Some("-ERR 'Authorization Violation'")
    );

    server.add_user("A", User::new("late", "pl")).unwrap();
    let late = login(addr, "late", "pl").await;
    let a = login(addr, "a", "pa").await;
    let g = login(addr, "g", "pg").await;
    let mut in_a = a.subscribe("news").await.unwrap();
    let mut in_g = g.subscribe("news").await.unwrap();
    round_trip(&a).await;
    round_trip(&g).await;
    late.publish("news", "from late".into()).await.unwrap();
    late.flush().await.unwrap();
    assert_eq!(&next(&mut in_a).await.payload[..], b"from late");
    // Not in $G: a message there arrives first.
    g.publish("news", "from g".into()).await.unwrap();
    assert_eq!(&next(&mut in_g).await.payload[..], b"from g");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_user_closes_its_connections_only() {
    let server = common::start_with(
        Server::builder()
            .user(User::new("gone", "p"))
            .user(User::new("stays", "p")),
    )
    .await;
    let addr = server.client_addr().unwrap();
    let connect = |user: &str| format!(r#"{{{QUIET},"user":"{user}","pass":"p"}}"#);
    let mut gone1 = Raw::handshake(addr, &connect("gone")).await;
    let mut gone2 = Raw::handshake(addr, &connect("gone")).await;
    let mut stays = Raw::handshake(addr, &connect("stays")).await;

    assert_eq!(server.remove_user("gone").unwrap(), Some(2));
    for raw in [&mut gone1, &mut gone2] {
        assert_eq!(
            raw.until_eof().await,
            vec!["-ERR 'Authorization Violation'".to_string()]
        );
    }
    stays.send("SUB x 1\r\nPUB x 1\r\ny\r\n").await;
    assert_eq!(stays.until_pong().await, vec!["MSG x 1 1", "y"]);
    // The user cannot log in again, and removing it twice finds nobody.
    Raw::refused(addr, &connect("gone")).await;
    assert_eq!(server.remove_user("gone").unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_users_get_permissions_and_errors() {
    let server = common::start_with(
        Server::builder()
            .account(
                Account::new("A")
                    .default_permissions(
                        Permissions::new().publish(SubjectPermission::new().allow(["a.>"])),
                    )
                    .user(User::new("anon", "p")),
            )
            .no_auth_user("anon"),
    )
    .await;
    server.add_user("A", User::new("limited", "p")).unwrap();
    let mut raw = Raw::handshake(
        server.client_addr().unwrap(),
        &format!(r#"{{{QUIET},"user":"limited","pass":"p"}}"#),
    )
    .await;
    raw.send("PUB b.x 1\r\nx\r\n").await;
    assert_eq!(
        raw.until_pong().await,
        vec!["-ERR 'Permissions Violation for Publish to \"b.x\"'"]
    );

    let err = |r: Result<(), AccountError>| r.unwrap_err().to_string();
    assert_eq!(
        err(server.add_user("A", User::new("limited", "q"))),
        "Duplicate user \"limited\" detected"
    );
    assert_eq!(
        err(server.add_user("NOPE", User::new("x", "q"))),
        "\"NOPE\" account not defined"
    );
    let bad = Permissions::new().subscribe(SubjectPermission::new().allow(["a b c"]));
    assert!(
        err(server.add_user(GLOBAL_ACCOUNT, User::new("y", "q").permissions(bad)))
            .contains("not a valid subject")
    );
    assert!(
        server.remove_user("anon").is_err(),
        "the no_auth_user stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_by_connection_user_and_account() {
    use futures::StreamExt;
    use starling_server::{ClosedReason, Event, Kick};

    let server = common::start_with(
        Server::builder()
            .account(
                Account::new("A")
                    .user(User::new("a1", "p"))
                    .user(User::new("a2", "p")),
            )
            .user(User::new("g", "p")),
    )
    .await;
    let addr = server.client_addr().unwrap();
    let connect = |user: &str| format!(r#"{{{QUIET},"user":"{user}","pass":"p"}}"#);
    let mut events = server.events();
    let mut g = Raw::handshake(addr, &connect("g")).await;
    let g_cid = match events.next().await.unwrap() {
        Event::ClientConnected { cid, .. } => cid,
        other => panic!("unexpected {other:?}"),
    };
    let mut a1 = Raw::handshake(addr, &connect("a1")).await;
    let mut a1b = Raw::handshake(addr, &connect("a1")).await;
    let mut a2 = Raw::handshake(addr, &connect("a2")).await;

    assert_eq!(server.kick(Kick::Connection(g_cid)), 1);
    assert!(g.until_eof().await.is_empty(), "a kick sends no -ERR");
    assert_eq!(server.kick(Kick::User("a1".into())), 2);
    assert!(a1.until_eof().await.is_empty());
    assert!(a1b.until_eof().await.is_empty());
    // a2 is still served, then goes with its account.
    a2.send("PING\r\n").await;
    assert_eq!(a2.line().await.as_deref(), Some("PONG"));
    assert_eq!(server.kick(Kick::Account("A".into())), 1);
    assert!(a2.until_eof().await.is_empty());
    assert_eq!(server.kick(Kick::Connection(g_cid)), 0);
    // The closes are reported as kicks, and the user may come back.
    let mut kicked = 0;
    while kicked < 4 {
        if let Some(Event::ClientClosed { reason, .. }) = events.next().await {
            assert_eq!(reason, ClosedReason::Kicked);
            kicked += 1;
        }
    }
    let _back = Raw::handshake(addr, &connect("a1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_change_on_live_connections() {
    let server = common::start_with(Server::builder().user(User::new("w", "p"))).await;
    let addr = server.client_addr().unwrap();
    let mut w = Raw::handshake(addr, &format!(r#"{{{QUIET},"user":"w","pass":"p"}}"#)).await;
    w.send("SUB a.x 1\r\nSUB b.x 2\r\nPUB b.x 1\r\nb\r\n").await;
    assert_eq!(w.until_pong().await, vec!["MSG b.x 2 1", "b"]);

    // Narrowed: the subscription no longer allowed goes, with nats-server's text; the
    // connection stays, and publishing follows the new rules from its next read on.
    let narrowed = Permissions::new()
        .publish(SubjectPermission::new().allow(["a.>"]))
        .subscribe(SubjectPermission::new().allow(["a.>"]));
    assert_eq!(
        server.set_permissions("w", Some(narrowed)).unwrap(),
        Some(1)
    );
    assert_eq!(
        w.line().await.as_deref(),
        Some("-ERR 'Permissions Violation for Subscription to \"b.x\" (sid \"2\")'")
    );
    w.send("PUB b.x 1\r\nb\r\nPUB a.x 1\r\na\r\n").await;
    assert_eq!(
        w.until_pong().await,
        vec![
            "-ERR 'Permissions Violation for Publish to \"b.x\"'",
            "MSG a.x 1 1",
            "a"
        ]
    );

    // Lifted: everything is allowed again (the removed subscription stays removed).
    assert_eq!(server.set_permissions("w", None).unwrap(), Some(1));
    w.send("SUB b.x 3\r\nPUB b.x 1\r\nc\r\n").await;
    assert_eq!(w.until_pong().await, vec!["MSG b.x 3 1", "c"]);
    assert_eq!(server.set_permissions("nobody", None).unwrap(), None);
}

/// `Server::recheck`: an embedder's user store (behind an authenticator) changes, and the live
/// connections are decided about again: a removed user is closed with `Authorization
/// Violation`, a user moved to another account is closed, a user whose permissions narrowed
/// keeps its connection and loses the subscriptions they refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recheck_applies_a_changed_user_store_to_live_connections() {
    use starling_server::{AuthRequest, Decision, Grant, Kick};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    // user → (account, subjects it may subscribe to)
    type Store = Arc<Mutex<HashMap<String, (&'static str, Vec<&'static str>)>>>;
    let store: Store = Arc::new(Mutex::new(HashMap::from([
        ("alice".to_string(), ("A", vec!["foo.>", "bar"])),
        ("bob".to_string(), ("A", vec![">"])),
        ("carol".to_string(), ("A", vec![">"])),
    ])));
    let lookup = store.clone();
    let server = common::start_with(
        Server::builder()
            .account(Account::new("A"))
            .account(Account::new("B"))
            .authenticator(move |req: AuthRequest| {
                let entry = lookup
                    .lock()
                    .unwrap()
                    .get(req.user.as_deref().unwrap_or(""))
                    .cloned();
                async move {
                    match entry {
                        Some((account, subs)) => Decision::Allow(
                            Grant::new(account)
                                .user(req.user.unwrap_or_default())
                                .permissions(
                                    Permissions::new()
                                        .subscribe(SubjectPermission::new().allow(subs)),
                                ),
                        ),
                        None => Decision::Deny("unknown".into()),
                    }
                }
            }),
    )
    .await;
    let addr = server.client_addr().unwrap();
    let connect = |user: &str| format!(r#"{{{QUIET},"user":"{user}","pass":"x"}}"#);
    let mut alice = Raw::handshake(addr, &connect("alice")).await;
    alice.send("SUB foo.> 1\r\nSUB bar 2\r\n").await;
    assert!(alice.until_pong().await.is_empty());
    let mut bob = Raw::handshake(addr, &connect("bob")).await;
    let mut carol = Raw::handshake(addr, &connect("carol")).await;

    // Nothing changed: nothing happens.
    let unchanged = server.recheck(Kick::All).await;
    assert_eq!(
        (unchanged.checked, unchanged.closed, unchanged.updated),
        (3, 0, 0)
    );

    {
        let mut s = store.lock().unwrap();
        s.remove("bob");
        s.insert("alice".into(), ("A", vec!["bar"]));
        s.insert("carol".into(), ("B", vec![">"]));
    }
    let outcome = server.recheck(Kick::All).await;
    assert_eq!(
        (outcome.checked, outcome.closed, outcome.updated),
        (3, 2, 1)
    );
    for raw in [&mut bob, &mut carol] {
        assert_eq!(
            raw.until_eof().await,
            vec!["-ERR 'Authorization Violation'"]
        );
    }
    assert_eq!(
        alice.until_pong().await,
        vec!["-ERR 'Permissions Violation for Subscription to \"foo.>\" (sid \"1\")'"]
    );
    // She still gets what she may subscribe to.
    alice.send("PUB bar 2\r\nok\r\nPUB foo.x 2\r\nno\r\n").await;
    assert_eq!(alice.until_pong().await, vec!["MSG bar 2 2", "ok"]);
}
