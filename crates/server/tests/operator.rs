//! Operator mode: trusted operator JWTs, account JWTs from the MEMORY resolver, and clients
//! that authenticate with user JWTs (async-nats `.creds`, raw CONNECTs with `jwt` and `sig`).
//! Tokens minted by Go's `nsc` (the client suites' fixtures, in tests/data/jwt, from
//! nats-io/nats.rs and nats-io/nats.py, Apache-2.0) in both the v1 and v2 forms, and tokens
//! minted here.

mod common;

use common::jwt::{creds, mint, now, operator, tokens_in};
use common::{round_trip, Raw, WAIT};
use futures::StreamExt;
use nats_jwt::Token;
use nkeys::KeyPair;
use serde_json::json;
use starling_server::{Server, StartError, User};

fn data(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jwt/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

/// A broker trusting the operator and accounts of a nats-server config file.
async fn from_conf(conf: &str) -> Server {
    let tokens = tokens_in(&data(conf));
    let mut b = Server::builder().listen("127.0.0.1:0").operator(&tokens[0]);
    for account in &tokens[1..] {
        b = b.resolver_preload(account);
    }
    b.start().await.unwrap()
}

fn url(server: &Server) -> String {
    format!("nats://{}", server.client_addr().unwrap())
}

async fn connect_creds(server: &Server, creds: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::with_credentials(creds)
        .map_err(|e| e.to_string())?
        .retry_on_initial_connect()
        .max_reconnects(Some(1))
        .connect(url(server))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn go_minted_v2_tokens_and_creds_authenticate() {
    let server = from_conf("jwt.conf").await;
    let addr = server.client_addr().unwrap();
    let (_, info) = Raw::connect_info(addr).await;
    assert!(info.contains("\"auth_required\":true"), "{info}");
    assert!(info.contains("\"nonce\":\""), "{info}");

    let client = connect_creds(&server, &data("TestUser.creds"))
        .await
        .unwrap();
    round_trip(&client).await;
    // No JWT, or a password instead: refused.
    Raw::refused(addr, "{}").await;
    Raw::refused(addr, r#"{"user":"a","pass":"b"}"#).await;
}

#[tokio::test]
async fn go_minted_v1_tokens_authenticate_and_a_wrong_seed_is_refused() {
    let server = from_conf("resolver_preload.conf").await;
    let client = connect_creds(&server, &data("foo-user.creds"))
        .await
        .unwrap();
    round_trip(&client).await;
    // The same JWT with another key's signature of the nonce.
    let addr = server.client_addr().unwrap();
    let (mut raw, info) = Raw::connect_info(addr).await;
    let nonce: serde_json::Value = serde_json::from_str(info.trim_start_matches("INFO ")).unwrap();
    let user_jwt = tokens_in(&data("bad-user.creds"))[0].clone();
    let other = KeyPair::new_user();
    let sig = data_encoding::BASE64URL_NOPAD.encode(
        &other
            .sign(nonce["nonce"].as_str().unwrap().as_bytes())
            .unwrap(),
    );
    raw.send(&format!(
        "CONNECT {{\"verbose\":false,\"jwt\":\"{user_jwt}\",\"sig\":\"{sig}\"}}\r\nPING\r\n"
    ))
    .await;
    assert_eq!(
        raw.line().await.as_deref(),
        Some("-ERR 'Authorization Violation'")
    );
}

/// An operator with a signing key, two accounts (one with a signing key of its own), users
/// signed either way.
struct World {
    op: KeyPair,
    op_signer: KeyPair,
    a: KeyPair,
    a_signer: KeyPair,
    b: KeyPair,
}

impl World {
    fn new() -> Self {
        Self {
            op: KeyPair::new_operator(),
            op_signer: KeyPair::new_operator(),
            a: KeyPair::new_account(),
            a_signer: KeyPair::new_account(),
            b: KeyPair::new_account(),
        }
    }

    fn operator(&self) -> String {
        operator(
            &self.op,
            json!({"signing_keys": [self.op_signer.public_key()]}),
        )
    }

    /// Account A, signed by the operator's signing key; B by the operator itself.
    fn accounts(&self) -> [String; 2] {
        [
            Token::new_account(self.a.public_key())
                .name("A")
                .add_signing_key(self.a_signer.public_key())
                .sign(&self.op_signer),
            Token::new_account(self.b.public_key())
                .name("B")
                .sign(&self.op),
        ]
    }

    /// An account C signed by the operator that refuses bearer tokens and has revoked
    /// `revoked`'s tokens issued up to a minute from now.
    fn strict_account(&self, revoked: &KeyPair) -> (KeyPair, String) {
        let c = KeyPair::new_account();
        let jwt = mint(
            "account",
            &c.public_key(),
            json!({
                "limits": {"disallow_bearer": true, "conn": -1, "subs": -1, "payload": -1},
                "revocations": {revoked.public_key(): now() + 60},
            }),
            json!({}),
            &self.op,
        );
        (c, jwt)
    }

    async fn start(&self, accounts: &[String]) -> Server {
        let mut b = Server::builder()
            .listen("127.0.0.1:0")
            .operator(self.operator());
        for a in accounts {
            b = b.resolver_preload(a);
        }
        b.start().await.unwrap()
    }
}

/// A raw client that authenticates with `user_jwt`, signing the nonce with `key` (or not at
/// all): its first reply.
async fn raw_login(server: &Server, user_jwt: &str, key: Option<&KeyPair>) -> (Raw, String) {
    let (mut raw, info) = Raw::connect_info(server.client_addr().unwrap()).await;
    let info: serde_json::Value = serde_json::from_str(info.trim_start_matches("INFO ")).unwrap();
    let sig = key.map(|k| {
        data_encoding::BASE64URL_NOPAD
            .encode(&k.sign(info["nonce"].as_str().unwrap().as_bytes()).unwrap())
    });
    let sig = sig.map_or(String::new(), |s| format!(",\"sig\":\"{s}\""));
    raw.send(&format!(
        "CONNECT {{\"verbose\":false,\"headers\":true,\"jwt\":\"{user_jwt}\"{sig}}}\r\nPING\r\n"
    ))
    .await;
    let first = raw.line().await.unwrap_or_default();
    (raw, first)
}

#[tokio::test]
async fn minted_accounts_are_isolated_and_user_permissions_apply() {
    let w = World::new();
    let server = w.start(&w.accounts()).await;

    // A user of A signed by A's signing key, allowed to publish only on svc.>.
    let alice = KeyPair::new_user();
    let alice_jwt = Token::new_user(w.a.public_key(), alice.public_key())
        .allow_publish("svc.>")
        .allow_subscribe("svc.>")
        .allow_subscribe("_INBOX.>")
        .sign(&w.a_signer);
    let alice_client = connect_creds(&server, &creds(&alice_jwt, &alice.seed().unwrap()))
        .await
        .unwrap();
    // A user of B, signed by B itself.
    let bob = KeyPair::new_user();
    let bob_jwt = Token::new_user(w.b.public_key(), bob.public_key()).sign(&w.b);
    let (mut bob_raw, first) = raw_login(&server, &bob_jwt, Some(&bob)).await;
    assert_eq!(first, "PONG");
    bob_raw.send("SUB svc.> 1\r\n").await;
    assert_eq!(bob_raw.until_pong().await, Vec::<String>::new());

    let mut sub = alice_client.subscribe("svc.>").await.unwrap();
    alice_client.publish("svc.x", "hi".into()).await.unwrap();
    alice_client.flush().await.unwrap();
    assert_eq!(common::next(&mut sub).await.payload, "hi");
    // Bob is in another account: nothing reached him.
    bob_raw.send("PUB svc.y 2\r\nyo\r\n").await;
    assert_eq!(bob_raw.until_pong().await, vec!["MSG svc.y 1 2", "yo"]);

    // Alice may not publish elsewhere: nats-server's text, and she stays connected.
    let (mut raw, first) = raw_login(&server, &alice_jwt, Some(&alice)).await;
    assert_eq!(first, "PONG");
    raw.send("PUB other 1\r\nx\r\n").await;
    assert_eq!(
        raw.until_pong().await,
        vec!["-ERR 'Permissions Violation for Publish to \"other\"'"]
    );

    // Her account is A's public key, her user name her own.
    let mut events = server.events();
    let (_raw, first) = raw_login(&server, &alice_jwt, Some(&alice)).await;
    assert_eq!(first, "PONG");
    loop {
        let event = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap();
        if let starling_server::Event::ClientAuthorized { account, user, .. } = event {
            assert_eq!(account, w.a.public_key());
            assert_eq!(user, Some(alice.public_key()));
            break;
        }
    }
}

#[tokio::test]
async fn bearer_expired_revoked_unsigned_and_foreign_users_are_told_apart() {
    let w = World::new();
    let revoked = KeyPair::new_user();
    let (c, c_jwt) = w.strict_account(&revoked);
    let [a_jwt, b_jwt] = w.accounts();
    let server = w.start(&[a_jwt, b_jwt, c_jwt]).await;

    // A bearer token needs no signature.
    let bearer = KeyPair::new_user();
    let bearer_jwt = Token::new_user(w.a.public_key(), bearer.public_key())
        .bearer_token(true)
        .sign(&w.a);
    assert_eq!(raw_login(&server, &bearer_jwt, None).await.1, "PONG");
    // Without bearer_token a signature is required, and must be the subject's.
    let plain = KeyPair::new_user();
    let plain_jwt = Token::new_user(w.a.public_key(), plain.public_key()).sign(&w.a);
    let violation = "-ERR 'Authorization Violation'";
    assert_eq!(raw_login(&server, &plain_jwt, None).await.1, violation);
    assert_eq!(
        raw_login(&server, &plain_jwt, Some(&bearer)).await.1,
        violation
    );
    assert_eq!(raw_login(&server, &plain_jwt, Some(&plain)).await.1, "PONG");
    // Expired.
    let expired = Token::new_user(w.a.public_key(), plain.public_key())
        .expires(now() - 10)
        .sign(&w.a);
    assert_eq!(
        raw_login(&server, &expired, Some(&plain)).await.1,
        violation
    );
    // Signed by a key the account does not list.
    let stranger = KeyPair::new_account();
    let foreign = Token::new_user(w.a.public_key(), plain.public_key()).sign(&stranger);
    assert_eq!(
        raw_login(&server, &foreign, Some(&plain)).await.1,
        violation
    );
    // Revoked in C, and C refuses bearer tokens.
    let revoked_jwt = Token::new_user(c.public_key(), revoked.public_key()).sign(&c);
    assert_eq!(
        raw_login(&server, &revoked_jwt, Some(&revoked)).await.1,
        violation
    );
    let c_bearer = Token::new_user(c.public_key(), bearer.public_key())
        .bearer_token(true)
        .sign(&c);
    assert_eq!(raw_login(&server, &c_bearer, None).await.1, violation);
    // A user of C issued after the revocation time of another key is fine.
    let fresh = KeyPair::new_user();
    let fresh_jwt = Token::new_user(c.public_key(), fresh.public_key()).sign(&c);
    assert_eq!(raw_login(&server, &fresh_jwt, Some(&fresh)).await.1, "PONG");
    // Allowed only from another network.
    let elsewhere = mint(
        "user",
        &fresh.public_key(),
        json!({"src": ["10.0.0.0/8"]}),
        json!({}),
        &c,
    );
    assert_eq!(
        raw_login(&server, &elsewhere, Some(&fresh)).await.1,
        violation
    );
    let here = mint(
        "user",
        &fresh.public_key(),
        json!({"src": "127.0.0.0/8"}),
        json!({}),
        &c,
    );
    assert_eq!(raw_login(&server, &here, Some(&fresh)).await.1, "PONG");
}

#[tokio::test]
async fn scoped_signing_keys_impose_their_template() {
    let op = KeyPair::new_operator();
    let acct = KeyPair::new_account();
    let scope = KeyPair::new_account();
    let acct_jwt = mint(
        "account",
        &acct.public_key(),
        json!({
            "signing_keys": [{
                "kind": "user_scope",
                "key": scope.public_key(),
                "template": {"pub": {"allow": ["scoped.>"]}, "sub": {"allow": ["scoped.>"]}},
            }],
        }),
        json!({}),
        &op,
    );
    let server = trusting(&op, &[acct_jwt]).await;
    let user = KeyPair::new_user();
    let user_jwt = mint(
        "user",
        &user.public_key(),
        json!({"issuer_account": acct.public_key()}),
        json!({}),
        &scope,
    );
    let (mut raw, first) = raw_login(&server, &user_jwt, Some(&user)).await;
    assert_eq!(first, "PONG");
    raw.send("PUB free 1\r\nx\r\n").await;
    assert_eq!(
        raw.until_pong().await,
        vec!["-ERR 'Permissions Violation for Publish to \"free\"'"]
    );
    // A scoped user may not carry permissions of its own.
    let greedy = mint(
        "user",
        &user.public_key(),
        json!({"issuer_account": acct.public_key(), "pub": {"allow": [">"]}}),
        json!({}),
        &scope,
    );
    assert_eq!(
        raw_login(&server, &greedy, Some(&user)).await.1,
        "-ERR 'Authorization Violation'"
    );
}

#[tokio::test]
async fn an_expiring_user_jwt_closes_its_connection_with_nats_servers_text() {
    let w = World::new();
    let server = w.start(&w.accounts()).await;
    let user = KeyPair::new_user();
    let user_jwt = Token::new_user(w.a.public_key(), user.public_key())
        .expires(now() + 2)
        .sign(&w.a);
    let (mut raw, first) = raw_login(&server, &user_jwt, Some(&user)).await;
    assert_eq!(first, "PONG");
    let lines = tokio::time::timeout(WAIT, raw.until_eof()).await.unwrap();
    assert_eq!(lines, vec!["-ERR 'User Authentication Expired'"]);
}

#[tokio::test]
async fn operator_mode_refuses_what_nats_server_refuses() {
    let w = World::new();
    let refused = |b: starling_server::ServerBuilder| async move {
        match b.start().await {
            Err(StartError::Config(e)) => e,
            Err(e) => panic!("refused for something else: {e}"),
            Ok(_) => panic!("started"),
        }
    };
    let base = || {
        Server::builder()
            .listen("127.0.0.1:0")
            .operator(w.operator())
    };
    assert_eq!(
        refused(base().user(User::new("u", "p"))).await,
        "operators do not allow users to be configured directly"
    );
    assert_eq!(
        refused(base().account(starling_server::Account::new("X"))).await,
        "operators do not allow Accounts to be configured directly"
    );
    assert!(refused(Server::builder().operator("eyJ.bogus.jwt"))
        .await
        .starts_with("operator JWT not valid"));
    let system = KeyPair::new_account();
    let op = operator(&w.op, json!({"system_account": system.public_key()}));
    assert_eq!(
        refused(Server::builder().operator(op).system_account("OTHER")).await,
        "system_account in config and operator JWT must be identical"
    );

    // An account signed by an operator the server does not trust is not loaded: its users
    // are refused.
    let rogue_op = KeyPair::new_operator();
    let rogue = KeyPair::new_account();
    let rogue_jwt = Token::new_account(rogue.public_key()).sign(&rogue_op);
    let server = w.start(&[rogue_jwt]).await;
    let user = KeyPair::new_user();
    let user_jwt = Token::new_user(rogue.public_key(), user.public_key()).sign(&rogue);
    assert_eq!(
        raw_login(&server, &user_jwt, Some(&user)).await.1,
        "-ERR 'Authorization Violation'"
    );
}

#[tokio::test]
async fn user_and_account_limits_from_the_jwts_apply() {
    let w = World::new();
    let small = KeyPair::new_account();
    let small_jwt = mint(
        "account",
        &small.public_key(),
        json!({"limits": {"payload": 16, "subs": -1, "conn": 1}}),
        json!({}),
        &w.op,
    );
    let [a_jwt, _] = w.accounts();
    let server = w.start(&[a_jwt, small_jwt]).await;

    // The user's own limits: two subscriptions, 8-byte payloads.
    let user = KeyPair::new_user();
    let user_jwt = Token::new_user(w.a.public_key(), user.public_key())
        .max_subscriptions(2)
        .max_payload(8)
        .sign(&w.a);
    let (mut raw, first) = raw_login(&server, &user_jwt, Some(&user)).await;
    assert_eq!(first, "PONG");
    raw.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPUB a 8\r\n12345678\r\n")
        .await;
    assert_eq!(
        raw.until_pong().await,
        vec![
            "-ERR 'maximum subscriptions exceeded'",
            "MSG a 1 8",
            "12345678"
        ]
    );
    raw.send("PUB a 9\r\n123456789\r\n").await;
    assert_eq!(
        tokio::time::timeout(WAIT, raw.until_eof()).await.unwrap(),
        vec!["-ERR 'Maximum Payload Violation'"]
    );

    // The account's: 16-byte payloads, one connection.
    let member = KeyPair::new_user();
    let member_jwt = Token::new_user(small.public_key(), member.public_key()).sign(&small);
    let (mut raw, first) = raw_login(&server, &member_jwt, Some(&member)).await;
    assert_eq!(first, "PONG");
    assert_eq!(
        raw_login(&server, &member_jwt, Some(&member)).await.1,
        "-ERR 'maximum account active connections exceeded'"
    );
    raw.send("PUB a 17\r\n12345678901234567\r\n").await;
    assert_eq!(
        tokio::time::timeout(WAIT, raw.until_eof()).await.unwrap(),
        vec!["-ERR 'Maximum Payload Violation'"]
    );
}

/// A broker trusting the self-signed operator `op`, with these account JWTs preloaded.
async fn trusting(op: &KeyPair, accounts: &[String]) -> Server {
    let mut b = Server::builder()
        .listen("127.0.0.1:0")
        .operator(operator(op, json!({})));
    for a in accounts {
        b = b.resolver_preload(a);
    }
    b.start().await.unwrap()
}

/// What a raw client sees after INFO when it sends `connect(nonce)` and a PING: every line up
/// to the PONG, or to the close.
async fn session(
    addr: std::net::SocketAddr,
    connect: impl Fn(&str) -> String,
) -> (String, Vec<String>) {
    let (mut raw, info) = Raw::connect_info(addr).await;
    let info: serde_json::Value = serde_json::from_str(info.trim_start_matches("INFO ")).unwrap();
    let nonce = info["nonce"].as_str().unwrap_or_default().to_string();
    raw.send(&format!("CONNECT {}\r\nPING\r\n", connect(&nonce)))
        .await;
    let mut lines = Vec::new();
    while let Some(line) = raw.line().await {
        let done = line == "PONG" || line.starts_with("-ERR");
        lines.push(line);
        if done {
            break;
        }
    }
    let shape = format!(
        "auth_required={} nonce_len={}",
        info["auth_required"],
        nonce.len()
    );
    (shape, lines)
}

/// The same operator config (async-nats's jwt.conf) on Starling and on nats-server 2.15.1:
/// the same INFO shape and the same answers to good and bad CONNECTs.
#[tokio::test]
async fn operator_mode_answers_as_nats_server_does() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jwt/jwt.conf");
    let Some(reference) = common::NatsServer::start_215(&["-c", conf]) else {
        return;
    };
    let starling = from_conf("jwt.conf").await;
    let creds = data("TestUser.creds");
    let jwt = tokens_in(&creds)[0].clone();
    let seed = creds
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("SU"))
        .unwrap()
        .to_string();
    let key = KeyPair::from_seed(&seed).unwrap();
    let sign = |k: &KeyPair, nonce: &str| {
        data_encoding::BASE64URL_NOPAD.encode(&k.sign(nonce.as_bytes()).unwrap())
    };
    let other = KeyPair::new_user();
    // A CONNECT with `jwt`, signed (or not) by `key`.
    let with = |verbose: bool, jwt: &str, key: Option<&KeyPair>| {
        let (jwt, key) = (jwt.to_string(), key.cloned());
        move |n: &str| {
            let sig = key
                .as_ref()
                .map_or(String::new(), |k| format!(r#","sig":"{}""#, sign(k, n)));
            format!(r#"{{"verbose":{verbose},"jwt":"{jwt}"{sig}}}"#)
        }
    };
    type ConnectFor<'a> = Box<dyn Fn(&str) -> String + 'a>;
    let cases: Vec<(&str, ConnectFor)> = vec![
        (
            "no credentials",
            Box::new(|_| r#"{"verbose":false}"#.to_string()),
        ),
        ("signed", Box::new(with(false, &jwt, Some(&key)))),
        (
            "signed by another key",
            Box::new(with(false, &jwt, Some(&other))),
        ),
        ("unsigned", Box::new(with(false, &jwt, None))),
        (
            "not a jwt",
            Box::new(with(false, "eyJhbGciOi.x.y", Some(&key))),
        ),
        ("verbose", Box::new(with(true, &jwt, Some(&key)))),
    ];
    for (name, connect) in &cases {
        let ours = session(starling.client_addr().unwrap(), connect).await;
        let theirs = session(reference.addr, connect).await;
        assert_eq!(ours, theirs, "{name}");
    }
}

/// Tokens minted here, trusted by both Starling and nats-server 2.15.1: bearer, expired,
/// revoked and limited users, and a permission violation, answered alike.
#[tokio::test]
async fn minted_tokens_are_judged_as_nats_server_judges_them() {
    let w = World::new();
    let revoked = KeyPair::new_user();
    let (c, c_jwt) = w.strict_account(&revoked);
    let [a_jwt, b_jwt] = w.accounts();
    let dir = std::env::temp_dir().join(format!("starling-op-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("op.conf");
    std::fs::write(
        &conf,
        format!(
            "operator: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {a_jwt}\n  {}: {b_jwt}\n  {}: {c_jwt}\n}}\n",
            w.operator(),
            w.a.public_key(),
            w.b.public_key(),
            c.public_key()
        ),
    )
    .unwrap();
    let Some(reference) = common::NatsServer::start_215(&["-c", conf.to_str().unwrap()]) else {
        return;
    };
    let starling = w.start(&[a_jwt, b_jwt, c_jwt]).await;

    let user = KeyPair::new_user();
    let tokens = [
        (
            "bearer",
            Token::new_user(w.a.public_key(), user.public_key())
                .bearer_token(true)
                .sign(&w.a),
            false,
        ),
        (
            "expired",
            Token::new_user(w.a.public_key(), user.public_key())
                .expires(now() - 10)
                .sign(&w.a),
            true,
        ),
        (
            "signing key",
            Token::new_user(w.a.public_key(), user.public_key())
                .allow_publish("svc.>")
                .sign(&w.a_signer),
            true,
        ),
        (
            "revoked",
            Token::new_user(c.public_key(), revoked.public_key()).sign(&c),
            true,
        ),
        (
            "bearer refused",
            Token::new_user(c.public_key(), user.public_key())
                .bearer_token(true)
                .sign(&c),
            false,
        ),
        (
            "limited",
            Token::new_user(w.b.public_key(), user.public_key())
                .max_payload(4)
                .sign(&w.b),
            true,
        ),
    ];
    for (name, jwt, signed) in &tokens {
        let key = if *name == "revoked" { &revoked } else { &user };
        let connect = |nonce: &str| {
            let sig = data_encoding::BASE64URL_NOPAD.encode(&key.sign(nonce.as_bytes()).unwrap());
            let sig = if *signed {
                format!(r#","sig":"{sig}""#)
            } else {
                String::new()
            };
            format!(r#"{{"verbose":false,"jwt":"{jwt}"{sig}}}"#)
        };
        let ours = session(starling.client_addr().unwrap(), connect).await;
        let theirs = session(reference.addr, connect).await;
        assert_eq!(ours, theirs, "{name}");
    }
    // After login: a publish outside the permissions, and a payload over the user's limit.
    for (name, jwt, ops) in [
        ("permissions", &tokens[2].1, "PUB other 1\r\nx\r\nPING\r\n"),
        ("payload", &tokens[5].1, "PUB a 5\r\n12345\r\nPING\r\n"),
    ] {
        let mut seen = Vec::new();
        for addr in [starling.client_addr().unwrap(), reference.addr] {
            let (mut raw, info) = Raw::connect_info(addr).await;
            let info: serde_json::Value =
                serde_json::from_str(info.trim_start_matches("INFO ")).unwrap();
            let sig = data_encoding::BASE64URL_NOPAD.encode(
                &user
                    .sign(info["nonce"].as_str().unwrap().as_bytes())
                    .unwrap(),
            );
            raw.send(&format!(
                "CONNECT {{\"verbose\":false,\"jwt\":\"{jwt}\",\"sig\":\"{sig}\"}}\r\nPING\r\n"
            ))
            .await;
            assert_eq!(raw.line().await.as_deref(), Some("PONG"), "{name}");
            raw.send(ops).await;
            seen.push(raw.line().await);
        }
        assert_eq!(seen[0], seen[1], "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scoped key's template filled in per user, as nats-server fills it: `{{name()}}`,
/// `{{tag(x)}}` (one subject per value), `{{account-name()}}`; an unknown operation refuses
/// the user.
#[tokio::test]
async fn scoped_templates_are_filled_in_per_user() {
    let op = KeyPair::new_operator();
    let acct = KeyPair::new_account();
    let scope = KeyPair::new_account();
    let bad_scope = KeyPair::new_account();
    let acct_jwt = mint(
        "account",
        &acct.public_key(),
        json!({
            "signing_keys": [
                {
                    "kind": "user_scope",
                    "key": scope.public_key(),
                    "template": {"pub": {"allow": [
                        "user.{{name()}}.>", "team.{{tag(team)}}", "acct.{{account-name()}}"
                    ]}},
                },
                {
                    "kind": "user_scope",
                    "key": bad_scope.public_key(),
                    "template": {"pub": {"allow": ["x.{{bogus()}}"]}},
                },
            ],
        }),
        json!({"name": "shop"}),
        &op,
    );
    let server = trusting(&op, &[acct_jwt]).await;
    let user = KeyPair::new_user();
    let user_jwt = mint(
        "user",
        &user.public_key(),
        json!({"issuer_account": acct.public_key(), "tags": ["team:red", "team:blue"]}),
        json!({"name": "alice"}),
        &scope,
    );
    let (mut raw, first) = raw_login(&server, &user_jwt, Some(&user)).await;
    assert_eq!(first, "PONG");
    raw.send("SUB > 1\r\nPUB user.alice.x 1\r\na\r\nPUB team.red 1\r\nb\r\nPUB team.blue 1\r\nc\r\nPUB acct.shop 1\r\nd\r\nPUB user.bob.x 1\r\ne\r\nPUB team.green 1\r\nf\r\n")
        .await;
    assert_eq!(
        raw.until_pong().await,
        vec![
            "MSG user.alice.x 1 1",
            "a",
            "MSG team.red 1 1",
            "b",
            "MSG team.blue 1 1",
            "c",
            "MSG acct.shop 1 1",
            "d",
            "-ERR 'Permissions Violation for Publish to \"user.bob.x\"'",
            "-ERR 'Permissions Violation for Publish to \"team.green\"'",
        ]
    );
    let bad = mint(
        "user",
        &user.public_key(),
        json!({"issuer_account": acct.public_key()}),
        json!({}),
        &bad_scope,
    );
    assert_eq!(
        raw_login(&server, &bad, Some(&user)).await.1,
        "-ERR 'Authorization Violation'"
    );
}

/// An export with `account_token_position`: each importer may import only the subjects that
/// carry its own account key at that token (how the system account's per-account subjects are
/// shared); an import naming another account's key is ignored.
#[tokio::test]
async fn account_token_position_limits_each_importer_to_its_own_subjects() {
    let op = KeyPair::new_operator();
    let (x, y, z) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let x_jwt = mint(
        "account",
        &x.public_key(),
        json!({"exports": [{"subject": "acct.*.events", "type": "stream", "account_token_position": 2}]}),
        json!({}),
        &op,
    );
    // An import of X's events under `named`'s key.
    let import = |named: &KeyPair| {
        json!({"imports": [{
            "subject": format!("acct.{}.events", named.public_key()),
            "account": x.public_key(),
            "type": "stream",
        }]})
    };
    let y_jwt = mint("account", &y.public_key(), import(&y), json!({}), &op);
    // Z names Y's key: not its own.
    let z_jwt = mint("account", &z.public_key(), import(&y), json!({}), &op);
    let server = trusting(&op, &[x_jwt, y_jwt, z_jwt]).await;
    let login = |account: &KeyPair| {
        let user = KeyPair::new_user();
        let jwt = Token::new_user(account.public_key(), user.public_key()).sign(account);
        (user, jwt)
    };
    let (yu, yj) = login(&y);
    let (zu, zj) = login(&z);
    let (xu, xj) = login(&x);
    let subject = format!("acct.{}.events", y.public_key());
    let (mut ys, _) = raw_login(&server, &yj, Some(&yu)).await;
    let (mut zs, _) = raw_login(&server, &zj, Some(&zu)).await;
    for s in [&mut ys, &mut zs] {
        s.send(&format!("SUB {subject} 1\r\n")).await;
        assert!(s.until_pong().await.is_empty());
    }
    let (mut xs, _) = raw_login(&server, &xj, Some(&xu)).await;
    xs.send(&format!("PUB {subject} 2\r\nhi\r\n")).await;
    assert!(xs.until_pong().await.is_empty());
    assert_eq!(
        ys.until_pong().await,
        vec![format!("MSG {subject} 1 2"), "hi".into()]
    );
    assert!(zs.until_pong().await.is_empty());
}
