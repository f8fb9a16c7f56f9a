//! The same raw protocol scripts sent to Starling and to the reference nats-server must get the
//! same replies (ids aside). Each script runs on a fresh connection; the transcript is what the
//! server sent until it answered a final PING, or until it closed the connection.

mod common;

use std::net::SocketAddr;

use common::{NatsServer, Raw};

const QUIET: &str = r#"CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}"#;

/// Sends `script` (after INFO) plus a PING; returns every line until the PONG, or up to EOF
/// followed by "<EOF>". INFO lines are reduced to "INFO" (ids differ).
async fn transcript(addr: SocketAddr, script: &str) -> Vec<String> {
    let (mut raw, _) = Raw::connect_info(addr).await;
    raw.send(script).await;
    raw.send("PING\r\n").await;
    let mut out = Vec::new();
    loop {
        let Some(line) = raw.line().await else {
            out.push("<EOF>".to_string());
            return out;
        };
        if line == "PONG" {
            return out;
        }
        let payload = common::msg_len(&line);
        out.push(if line.starts_with("INFO ") {
            "INFO".into()
        } else {
            line
        });
        if let Some(n) = payload {
            out.push(String::from_utf8_lossy(&raw.payload(n).await).into_owned());
        }
    }
}

/// Joins each MSG line with its payload and sorts each run of consecutive messages: the order
/// in which one PUB reaches several queue groups of one connection is Go map order in
/// nats-server (random), so only the set is part of the contract.
fn normalize(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut run: Vec<String> = Vec::new();
    let mut it = lines.into_iter();
    while let Some(line) = it.next() {
        if common::msg_len(&line).is_some() {
            let payload = it.next().unwrap_or_default();
            run.push(format!("{line} | {payload:?}"));
        } else {
            run.sort();
            out.append(&mut run);
            out.push(line);
        }
    }
    run.sort();
    out.append(&mut run);
    out
}

/// (name, script). Every script is sent in one write.
fn scripts() -> Vec<(&'static str, String)> {
    let q = QUIET;
    vec![
        ("defaults are verbose and pedantic", "CONNECT {}\r\nSUB foo 1\r\nPUB foo 5\r\nhello\r\nPUB foo.* 1\r\nx\r\nSUB foo..bar 2\r\nUNSUB 1 2\r\n".into()),
        ("verbose headers session", "CONNECT {\"verbose\":true,\"pedantic\":true,\"headers\":true}\r\nSUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n".into()),
        ("unknown op closes", format!("{q}\r\nFOO\r\n")),
        ("bare LF control lines", format!("{q}\nSUB foo 1\nPUB foo 2\nhi\r\nPING\n")),
        ("one MSG per matching subscription", format!("{q}\r\nSUB foo 1\r\nSUB foo.> 2\r\nSUB foo.* 3\r\nSUB foo.bar q 4\r\nPUB foo.bar 0\r\n\r\n")),
        ("tabs and runs of blanks", format!("{q}\r\nSUB\tfoo\t\t7\r\nPUB  foo   3\r\nabc\r\n")),
        ("queue names are not validated", format!("{q}\r\nSUB foo q.x 1\r\nSUB foo q* 2\r\nSUB foo > 3\r\nPUB foo 1\r\nx\r\n")),
        ("unsub with zero max", format!("{q}\r\nSUB foo 1\r\nUNSUB 1 0\r\nPUB foo 1\r\nx\r\n")),
        ("unsub unknown sid", format!("{q}\r\nUNSUB 99\r\n")),
        ("sid reuse is ignored", format!("{q}\r\nSUB foo 1\r\nSUB bar 1\r\nPUB bar 1\r\nb\r\nPUB foo 1\r\nf\r\n")),
        ("auto unsubscribe after max", format!("{q}\r\nSUB foo 1\r\nUNSUB 1 2\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n")),
        ("reply subject never validated", "CONNECT {\"verbose\":false,\"pedantic\":true}\r\nSUB foo 1\r\nPUB foo bar.* 1\r\nx\r\n".into()),
        ("too many PUB args closes silently", format!("{q}\r\nPUB a b c 1\r\nx\r\n")),
        ("non-numeric size closes silently", format!("{q}\r\nPUB a xx\r\n")),
        ("SUB with one arg closes silently", format!("{q}\r\nSUB  1\r\n")),
        ("wrong payload size", format!("{q}\r\nPUB foo 1\r\nxyz\r\n")),
        ("header content is not validated", format!("{q}\r\nSUB foo 1\r\nHPUB foo 11 13\r\nFOO/1.0\r\n\r\nhi\r\n")),
        ("header block delivered byte for byte", format!("{q}\r\nSUB foo 1\r\nHPUB foo 38 40\r\nNATS/1.0 503 Desc\r\nA: 1\r\nA: 2\r\nb:3\r\n\r\nhi\r\n")),
        ("HPUB without headers closes silently", "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n".into()),
        ("second CONNECT re-applies options", format!("{q}\r\nCONNECT {{\"verbose\":true}}\r\nSUB foo 1\r\n")),
        ("unknown CONNECT fields ignored", "CONNECT {\"verbose\":true,\"foo\":1,\"bar\":{\"x\":[1]}}\r\n".into()),
        ("CONNECT type mismatch closes silently", "CONNECT {\"verbose\":\"yes\"}\r\n".into()),
        ("malformed CONNECT closes silently", "CONNECT {nope\r\n".into()),
        ("bad protocol version", "CONNECT {\"verbose\":false,\"protocol\":2}\r\n".into()),
        ("no responders needs headers", "CONNECT {\"verbose\":false,\"no_responders\":true}\r\n".into()),
        ("PING before CONNECT", "PING\r\n".into()),
        ("PUB before CONNECT is OKed", "PUB foo 1\r\nx\r\n".into()),
        ("odd subject bytes", format!("{q}\r\nSUB f\u{e9}e 1\r\nSUB a\x01b 2\r\nPUB f\u{e9}e 1\r\nx\r\nPUB a\x01b 1\r\ny\r\n")),
        ("SUB with misplaced full wildcard", format!("{q}\r\nSUB a.>.b 1\r\nPUB a.x.b 1\r\nx\r\n")),
        ("published wildcard tokens are literal", format!("{q}\r\nSUB foo.* 1\r\nSUB foo.> 2\r\nSUB foo.bar 3\r\nPUB foo.* 1\r\na\r\nPUB foo.> 1\r\nb\r\n")),
        ("client sends MSG", format!("{q}\r\nMSG foo 1 1\r\nx\r\n")),
        ("client sends +OK PONG INFO", format!("{q}\r\n+OK\r\nPONG\r\nINFO {{}}\r\n")),
        ("client sends -ERR", format!("{q}\r\n-ERR 'x'\r\n")),
        ("echo false", "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\"protocol\":1}\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\n".into()),
        ("empty token publish matches nothing", "CONNECT {\"verbose\":false,\"pedantic\":true}\r\nSUB > 1\r\nPUB a..b 1\r\nx\r\nPUB a. 1\r\ny\r\n".into()),
        ("no responders without own reply sub", "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\nPUB nobody reply.1 0\r\n\r\n".into()),
        ("no responders with own reply sub", "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\nSUB reply.1 9\r\nPUB nobody reply.1 0\r\n\r\n".into()),
        ("no responders with echo false self sub", "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"echo\":false,\"protocol\":1}\r\nSUB req 1\r\nSUB reply.1 9\r\nPUB req reply.1 0\r\n\r\n".into()),
        ("maximum control line", format!("{q}\r\nSUB {} 1\r\n", "a".repeat(5000))),
        ("maximum payload", format!("{q}\r\nPUB foo 2000000\r\n")),
        ("lowercase verbs", format!("{q}\r\nsub foo 1\r\npub foo 1\r\nx\r\nping\r\n")),
        ("zero length payload", format!("{q}\r\nSUB foo 1\r\nPUB foo 0\r\n\r\n")),
        ("unsub after delivered max removes now", format!("{q}\r\nSUB foo 1\r\nPUB foo 1\r\na\r\nPING\r\nUNSUB 1 1\r\nPUB foo 1\r\nb\r\n")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_match_nats_server() {
    let Some(reference) = NatsServer::start(&[]) else {
        return;
    };
    let starling = common::start().await;
    let ours = starling.client_addr().unwrap();
    let mut failures = Vec::new();
    for (name, script) in scripts() {
        let theirs = normalize(transcript(reference.addr, &script).await);
        let mine = normalize(transcript(ours, &script).await);
        if theirs != mine {
            failures.push(format!(
                "{name}:\n  nats-server: {theirs:?}\n  starling:    {mine:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} scripts differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A subscriber that did not negotiate headers gets the payload only, as MSG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_stripped_for_old_subscribers() {
    let Some(reference) = NatsServer::start(&[]) else {
        return;
    };
    let starling = common::start().await;
    for addr in [reference.addr, starling.client_addr().unwrap()] {
        let mut sub = Raw::handshake(
            addr,
            r#"{"verbose":false,"pedantic":false,"headers":false}"#,
        )
        .await;
        sub.send("SUB foo 1\r\n").await;
        assert!(sub.until_pong().await.is_empty());
        let mut publ = Raw::quiet(addr).await;
        publ.send("HPUB foo 12 16\r\nNATS/1.0\r\n\r\nbody\r\n")
            .await;
        publ.until_pong().await;
        assert_eq!(
            sub.until_pong().await,
            vec!["MSG foo 1 4", "body"],
            "server at {addr}"
        );
    }
}

/// The same scripts with accounts configured: clients without credentials are `no_auth_user`
/// `a` of account A (so every script runs in a named account), plus scripts that authenticate
/// as users of other accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_match_nats_server_in_a_named_account() {
    let conf = std::env::temp_dir().join(format!("starling-diff-acc-{}.conf", std::process::id()));
    std::fs::write(
        &conf,
        "accounts {\n  A: { users: [{user: a, password: pa}] }\n  B: { users: [{user: b, password: pb}] }\n}\nno_auth_user: a\n",
    )
    .unwrap();
    let Some(reference) = NatsServer::start(&["-c", conf.to_str().unwrap()]) else {
        return;
    };
    let starling = common::start_with(
        starling_server::Server::builder()
            .account(starling_server::Account::new("A").user(starling_server::User::new("a", "pa")))
            .account(starling_server::Account::new("B").user(starling_server::User::new("b", "pb")))
            .no_auth_user("a"),
    )
    .await;
    let ours = starling.client_addr().unwrap();
    let mut all = scripts();
    all.extend([
        ("as a user of B", "CONNECT {\"verbose\":false,\"user\":\"b\",\"pass\":\"pb\"}\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\n".to_string()),
        ("wrong password", "CONNECT {\"verbose\":false,\"user\":\"b\",\"pass\":\"no\"}\r\n".to_string()),
        ("unknown user", "CONNECT {\"verbose\":false,\"user\":\"zed\",\"pass\":\"pb\"}\r\n".to_string()),
        ("explicit user of the no_auth account", "CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"pa\"}\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\n".to_string()),
    ]);
    let mut failures = Vec::new();
    for (name, script) in all {
        let theirs = normalize(transcript(reference.addr, &script).await);
        let mine = normalize(transcript(ours, &script).await);
        if theirs != mine {
            failures.push(format!(
                "{name}:\n  nats-server: {theirs:?}\n  starling:    {mine:?}"
            ));
        }
    }
    let _ = std::fs::remove_file(&conf);
    assert!(
        failures.is_empty(),
        "{} scripts differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// User permissions: every refusal's `-ERR` text, what stays allowed, and delivery-time deny
/// for a wildcard subscription that overlaps a deny entry, against nats-server 2.15.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_scripts_match_nats_server_215() {
    use starling_server::{Permissions, SubjectPermission, User};
    let conf = std::env::temp_dir().join(format!("starling-diff-perm-{}.conf", std::process::id()));
    std::fs::write(
        &conf,
        r#"
authorization {
  users: [
    { user: u, password: p, permissions: {
        publish: { allow: ["foo.>", "_INBOX.>", "q.>"], deny: ["foo.secret"] }
        subscribe: { allow: ["foo.>", "bar v1", "baz v.*", "_INBOX.>", "q.>"], deny: ["foo.hidden", "q.x v1"] }
    } }
    { user: free, password: p }
  ]
}
"#,
    )
    .unwrap();
    let Some(reference) = NatsServer::start_215(&["-c", conf.to_str().unwrap()]) else {
        return;
    };
    let u = Permissions::new()
        .publish(
            SubjectPermission::new()
                .allow(["foo.>", "_INBOX.>", "q.>"])
                .deny(["foo.secret"]),
        )
        .subscribe(
            SubjectPermission::new()
                .allow(["foo.>", "bar v1", "baz v.*", "_INBOX.>", "q.>"])
                .deny(["foo.hidden", "q.x v1"]),
        );
    let starling = common::start_with(
        starling_server::Server::builder()
            .user(User::new("u", "p").permissions(u))
            .user(User::new("free", "p")),
    )
    .await;
    let login = |user: &str| {
        format!(
            "CONNECT {{\"verbose\":false,\"headers\":true,\"user\":\"{user}\",\"pass\":\"p\"}}\r\n"
        )
    };
    let scripts = [
        ("subscribe allowed and refused", format!("{}SUB foo.a 1\r\nSUB other 2\r\nSUB foo.hidden 3\r\nSUB bar 4\r\nSUB bar v1 5\r\nSUB bar v2 6\r\nSUB baz v.7 7\r\nSUB baz w 8\r\nSUB foo.q _sys_ 9\r\nPUB foo.a 1\r\nx\r\n", login("u"))),
        ("publish allowed and refused", format!("{}SUB foo.> 1\r\nPUB foo.a 1\r\na\r\nPUB foo.secret 1\r\nb\r\nPUB other 1\r\nc\r\nPUB foo.b 1\r\nd\r\n", login("u"))),
        ("a wildcard sub never gets denied subjects", format!("{}SUB foo.* 1\r\nPUB foo.hidden 1\r\nh\r\nPUB foo.shown 1\r\ns\r\n", login("u"))),
        ("queue deny entry", format!("{}SUB q.x v1 1\r\nSUB q.x v2 2\r\nSUB q.* v1 3\r\nPUB q.x 1\r\nx\r\nPUB q.y 1\r\ny\r\n", login("u"))),
        ("verbose acks only what passed", "CONNECT {\"verbose\":true,\"user\":\"u\",\"pass\":\"p\"}\r\nSUB nope 1\r\nSUB foo.a 2\r\nPUB nope 1\r\nx\r\nPUB foo.a 1\r\ny\r\n".to_string()),
        ("reserved reply subjects", format!("{}SUB foo.a 1\r\nPUB foo.a _R_.abc.def 1\r\nx\r\nPUB foo.a _GR_.x.y 1\r\ny\r\nPUB foo.a _INBOX.ok 1\r\nz\r\n", login("free"))),
        ("headers", format!("{}SUB foo.h 1\r\nHPUB foo.h 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHPUB foo.secret 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", login("u"))),
    ];
    let ours = starling.client_addr().unwrap();
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for (name, script) in scripts {
        let theirs = normalize(transcript(reference.addr, &script).await);
        let mine = normalize(transcript(ours, &script).await);
        seen.extend(mine.iter().cloned());
        if theirs != mine {
            failures.push(format!(
                "{name}:\n  nats-server: {theirs:?}\n  starling:    {mine:?}"
            ));
        }
    }
    let _ = std::fs::remove_file(&conf);
    // The scripts exercise what they claim (a transcript both servers left empty would
    // match too).
    for expected in [
        r#"-ERR 'Permissions Violation for Subscription to "bar" using queue "v2"'"#,
        r#"-ERR 'Permissions Violation for Publish to "foo.secret"'"#,
        r#"-ERR 'Permissions Violation for Publish with Reply of "_R_.abc.def"'"#,
        r#"MSG foo.shown 1 1 | "s""#,
    ] {
        assert!(
            seen.iter().any(|l| l == expected),
            "no {expected} in {seen:?}"
        );
    }
    assert!(
        !seen.iter().any(|l| l.starts_with("MSG foo.hidden")),
        "{seen:?}"
    );
    assert!(
        failures.is_empty(),
        "{} scripts differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
