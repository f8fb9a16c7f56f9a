//! bcrypt-hashed passwords and tokens (as nats-server takes them from `mkpasswd`): checked off
//! the async reactor, so connections that are being checked never hold up anyone else.

mod common;

use common::{login, round_trip, Raw};
use starling_server::{Auth, Server, User};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_passwords_and_tokens_authenticate() {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let server = common::start_with(Server::builder().user(User::new("u", hash.clone()))).await;
    let addr = server.client_addr().unwrap();
    let client = login(addr, "u", "s3cret").await;
    round_trip(&client).await;
    for connect in [
        r#"{"verbose":false,"user":"u","pass":"wrong"}"#,
        // The hash itself is not the password.
        &format!(r#"{{"verbose":false,"user":"u","pass":"{hash}"}}"#),
        r#"{"verbose":false,"user":"u"}"#,
    ] {
        Raw::refused(addr, connect).await;
    }

    let token = bcrypt::hash("t0ken", 4).unwrap();
    let server = common::start_with(Server::builder().auth(Auth::Token(token))).await;
    let addr = server.client_addr().unwrap();
    let mut ok = Raw::handshake(addr, r#"{"verbose":false,"auth_token":"t0ken"}"#).await;
    ok.send("SUB t 1\r\nPUB t 1\r\nx\r\n").await;
    assert_eq!(ok.until_pong().await, vec!["MSG t 1 1", "x"]);
    Raw::refused(addr, r#"{"verbose":false,"auth_token":"nope"}"#).await;
}

/// Ops sent right behind the CONNECT wait for its verdict and are then handled in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_behind_a_hashed_connect_wait_for_it() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let server = common::start_with(Server::builder().user(User::new("u", hash))).await;
    let (mut raw, _) = Raw::connect_info(server.client_addr().unwrap()).await;
    raw.send(
        "CONNECT {\"verbose\":true,\"user\":\"u\",\"pass\":\"pw\"}\r\nSUB a 1\r\nPUB a 2\r\nhi\r\n",
    )
    .await;
    assert_eq!(
        raw.until_pong().await,
        vec!["+OK", "+OK", "+OK", "MSG a 1 2", "hi"]
    );
}

/// While slow comparisons run (cost 13: a few hundred milliseconds each), an established
/// client's round trip still completes: the comparisons do not occupy the reactor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_hash_does_not_stall_other_clients() {
    let slow = bcrypt::hash("pw", 13).unwrap();
    let fast = bcrypt::hash("pw", 4).unwrap();
    let server = common::start_with(
        Server::builder()
            .auth_timeout(std::time::Duration::from_secs(60))
            .user(User::new("slow", slow))
            .user(User::new("fast", fast)),
    )
    .await;
    let addr = server.client_addr().unwrap();
    let established = login(addr, "fast", "pw").await;
    let mut pending = Vec::new();
    for _ in 0..4 {
        let (mut raw, _) = Raw::connect_info(addr).await;
        raw.send("CONNECT {\"verbose\":false,\"user\":\"slow\",\"pass\":\"pw\"}\r\nPING\r\n")
            .await;
        pending.push(raw);
    }
    let verdicts = async {
        for raw in &mut pending {
            assert_eq!(raw.line().await.as_deref(), Some("PONG"));
        }
    };
    tokio::pin!(verdicts);
    tokio::select! {
        biased;
        _ = round_trip(&established) => {}
        _ = &mut verdicts => panic!("the slow connects were answered before a round trip"),
    }
    verdicts.await;
}

/// A comparison that outlasts the auth timeout closes the connection as the timer would
/// (cost 14 takes over a second; the CONNECT is read long before the 300 ms are up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_slower_than_the_auth_timeout_times_out() {
    let slow = bcrypt::hash("pw", 14).unwrap();
    let server = common::start_with(
        Server::builder()
            .auth_timeout(std::time::Duration::from_millis(300))
            .user(User::new("slow", slow)),
    )
    .await;
    let (mut raw, _) = Raw::connect_info(server.client_addr().unwrap()).await;
    raw.send("CONNECT {\"verbose\":false,\"user\":\"slow\",\"pass\":\"pw\"}\r\nPING\r\n")
        .await;
    assert_eq!(
        raw.until_eof().await,
        vec!["-ERR 'Authentication Timeout'".to_string()]
    );
}
