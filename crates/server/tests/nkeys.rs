//! nkey users: INFO carries a fresh nonce per connection, the client signs it with its seed,
//! and only a signature by the user's key over this connection's nonce gets in. With
//! async-nats, and raw TCP for what a client library would not let us send.

mod common;

use common::{next, round_trip, Raw};
use starling_server::{
    Account, AccountError, Permissions, Server, StartError, SubjectPermission, User,
};

async fn nkey_server(users: Vec<User>) -> Server {
    let mut b = Server::builder().listen("127.0.0.1:0");
    for u in users {
        b = b.user(u);
    }
    b.start().await.expect("server starts")
}

fn nonce_of(info: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(info.strip_prefix("INFO ").unwrap()).unwrap();
    json["nonce"].as_str().expect("a nonce").to_string()
}

#[tokio::test]
async fn an_nkey_user_signs_the_nonce_and_gets_in() {
    let key = nkeys::KeyPair::new_user();
    let server = nkey_server(vec![User::nkey(key.public_key())]).await;
    let addr = server.client_addr().unwrap();

    // Every connection gets its own 15-character nonce.
    let (_a, info_a) = Raw::connect_info(addr).await;
    let (_b, info_b) = Raw::connect_info(addr).await;
    let (na, nb) = (nonce_of(&info_a), nonce_of(&info_b));
    assert_eq!(na.len(), 15, "{info_a}");
    assert_ne!(na, nb);
    assert!(info_a.contains(r#""auth_required":true"#), "{info_a}");

    let client = async_nats::ConnectOptions::with_nkey(key.seed().unwrap())
        .connect(addr.to_string())
        .await
        .unwrap();
    let mut sub = client.subscribe("n.k").await.unwrap();
    client.publish("n.k", "signed".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload.as_ref(), b"signed");

    // Another key is refused.
    let other = nkeys::KeyPair::new_user();
    let err = async_nats::ConnectOptions::with_nkey(other.seed().unwrap())
        .connect(addr.to_string())
        .await
        .expect_err("an unknown key");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
    );
}

#[tokio::test]
async fn a_signature_over_another_nonce_is_refused() {
    let key = nkeys::KeyPair::new_user();
    let server = nkey_server(vec![User::nkey(key.public_key())]).await;
    let addr = server.client_addr().unwrap();
    let sign =
        |nonce: &str| data_encoding::BASE64URL_NOPAD.encode(&key.sign(nonce.as_bytes()).unwrap());

    // A signature recorded on one connection does not open another (a replay).
    let (_first, info) = Raw::connect_info(addr).await;
    let recorded = sign(&nonce_of(&info));
    let (mut replay, _) = Raw::connect_info(addr).await;
    replay
        .send(&format!(
            "CONNECT {{\"verbose\":false,\"nkey\":\"{}\",\"sig\":\"{recorded}\"}}\r\nPING\r\n",
            key.public_key()
        ))
        .await;
    assert_eq!(
        replay.line().await.as_deref(),
        Some("-ERR 'Authorization Violation'")
    );

    // The right signature, in standard base64 as older clients send it, is accepted.
    let (mut raw, info) = Raw::connect_info(addr).await;
    let sig = data_encoding::BASE64.encode(&key.sign(nonce_of(&info).as_bytes()).unwrap());
    raw.send(&format!(
        "CONNECT {{\"verbose\":false,\"nkey\":\"{}\",\"sig\":\"{sig}\"}}\r\nPING\r\n",
        key.public_key()
    ))
    .await;
    assert_eq!(raw.line().await.as_deref(), Some("PONG"));

    // No signature at all, or a password instead of one: refused.
    for connect in [
        format!("{{\"nkey\":\"{}\"}}", key.public_key()),
        format!("{{\"user\":\"{}\",\"pass\":\"\"}}", key.public_key()),
    ] {
        Raw::refused(addr, &connect).await;
    }
}

#[tokio::test]
async fn nkey_users_have_accounts_and_permissions() {
    let alice = nkeys::KeyPair::new_user();
    let server =
        Server::builder()
            .listen("127.0.0.1:0")
            .account(Account::new("A").user(
                User::nkey(alice.public_key()).permissions(
                    Permissions::new().publish(SubjectPermission::new().allow(["a.>"])),
                ),
            ))
            .account(Account::new("B").user(User::new("bob", "pw")))
            .start()
            .await
            .unwrap();
    let url = server.client_addr().unwrap().to_string();
    let a = async_nats::ConnectOptions::with_nkey(alice.seed().unwrap())
        .connect(&url)
        .await
        .unwrap();
    let mut sub = a.subscribe("a.x").await.unwrap();
    a.publish("a.x", "mine".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload.as_ref(), b"mine");
    // A password user of another account is unaffected by the nonce.
    let b = async_nats::ConnectOptions::with_user_and_password("bob".into(), "pw".into())
        .connect(&url)
        .await
        .unwrap();
    round_trip(&b).await;
}

#[tokio::test]
async fn nkey_users_added_at_runtime() {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .account(Account::new("A"))
        .start()
        .await
        .unwrap();
    let addr = server.client_addr().unwrap();
    let (_raw, info) = Raw::connect_info(addr).await;
    assert!(!info.contains("nonce"), "no nkey users, no nonce: {info}");

    let key = nkeys::KeyPair::new_user();
    server.add_user("A", User::nkey(key.public_key())).unwrap();
    let client = async_nats::ConnectOptions::with_nkey(key.seed().unwrap())
        .connect(addr.to_string())
        .await
        .unwrap();
    round_trip(&client).await;
    assert_eq!(server.remove_user(&key.public_key()).unwrap(), Some(1));
    let (_raw, info) = Raw::connect_info(addr).await;
    assert!(!info.contains("nonce"), "{info}");

    let err = server.add_user("A", User::nkey("UNOTAKEY")).unwrap_err();
    assert!(matches!(err, AccountError::InvalidNkey(_)), "{err}");
}

#[tokio::test]
async fn a_key_that_is_not_a_user_key_is_refused_at_start() {
    let account_key = nkeys::KeyPair::new_account().public_key();
    let err = Server::builder()
        .user(User::nkey(account_key))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartError::Account(AccountError::InvalidNkey(_))),
        "{err}"
    );
}
