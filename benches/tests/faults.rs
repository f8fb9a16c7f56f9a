//! The checks can fail: a proxy between the tool and a real broker drops, duplicates or
//! swaps one `MSG`, and the run must fail with a sequence error.

#[allow(dead_code)]
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::{quick, Brokers};
use starling_benches::{run, BenchError, Scenario};
use starling_proto::{Limits, ServerOp, ServerParser};

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Drop the n-th MSG (1-based) of each connection.
    Drop(u64),
    /// Send the n-th MSG twice.
    Duplicate(u64),
    /// Send the n-th MSG after the (n+1)-th.
    Swap(u64),
}

/// A proxy in front of `upstream` that injects `fault` into what the server sends; returns
/// its URL. Its threads end when the connections close.
fn proxy(upstream: String, fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", listener.local_addr().unwrap());
    let addr = upstream.trim_start_matches("nats://").to_string();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let server = TcpStream::connect(&addr).unwrap();
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(Shutdown::Write);
            });
            thread::spawn(move || forward(server, client, fault));
        }
    });
    url
}

fn forward(mut from: TcpStream, mut to: TcpStream, fault: Fault) {
    let mut parser = ServerParser::new(Limits {
        max_control_line: 1 << 16,
        max_payload: 1 << 26,
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut msgs = 0u64;
    let mut held: Option<Vec<u8>> = None;
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut start = 0;
        while let Ok(Some((op, used))) = parser.parse(&buf[start..]) {
            let frame = &buf[start..start + used];
            let is_msg = matches!(op, ServerOp::Msg(_));
            start += used;
            if !is_msg {
                out.extend_from_slice(frame);
                continue;
            }
            msgs += 1;
            match fault {
                Fault::Drop(at) if msgs == at => {}
                Fault::Duplicate(at) if msgs == at => {
                    out.extend_from_slice(frame);
                    out.extend_from_slice(frame);
                }
                Fault::Swap(at) if msgs == at => held = Some(frame.to_vec()),
                Fault::Swap(at) if msgs == at + 1 => {
                    out.extend_from_slice(frame);
                    out.extend_from_slice(&held.take().unwrap());
                }
                _ => out.extend_from_slice(frame),
            }
        }
        buf.drain(..start);
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

fn expect_sequence_error(scenario: Scenario, fault: Fault) {
    let brokers = Brokers::one();
    let mut cfg = quick(scenario, proxy(brokers.url(0), fault));
    cfg.max_msgs = Some(500);
    cfg.duration = Duration::from_secs(5);
    cfg.drain_timeout = Duration::from_secs(1);
    match run(&cfg) {
        Err(e @ BenchError::Sequence(_)) => eprintln!("{scenario} {fault:?}: {e}"),
        other => panic!("{scenario} with {fault:?}: expected a sequence error, got {other:?}"),
    }
}

#[test]
fn a_dropped_message_fails_the_run() {
    expect_sequence_error(Scenario::PubSub, Fault::Drop(100));
}

#[test]
fn a_dropped_last_message_fails_the_run() {
    expect_sequence_error(Scenario::PubSub, Fault::Drop(500));
}

#[test]
fn a_duplicated_message_fails_the_run() {
    expect_sequence_error(Scenario::PubSub, Fault::Duplicate(100));
}

#[test]
fn a_reordered_message_fails_the_run() {
    expect_sequence_error(Scenario::Fanout, Fault::Swap(100));
}

#[test]
fn a_duplicate_within_a_queue_member_fails_the_run() {
    expect_sequence_error(Scenario::Queue, Fault::Duplicate(50));
}

#[test]
fn a_lost_reply_fails_the_run() {
    expect_sequence_error(Scenario::ReqRep, Fault::Drop(20));
}

#[test]
fn the_proxy_alone_passes() {
    let brokers = Brokers::one();
    let mut cfg = quick(
        Scenario::PubSub,
        proxy(brokers.url(0), Fault::Drop(u64::MAX)),
    );
    cfg.max_msgs = Some(500);
    let r = run(&cfg).expect("a faithful proxy passes");
    assert_eq!(r.delivered, 500);
}

#[test]
fn the_binary_exits_non_zero_on_a_sequence_error() {
    let brokers = Brokers::one();
    let bin = env!("CARGO_BIN_EXE_starling-bench");
    let run = |url: &str| {
        std::process::Command::new(bin)
            .args([
                "run",
                "--scenario",
                "pubsub",
                "--duration",
                "0.3",
                "--size",
                "32",
            ])
            .args(["--url", url, "--pid", &std::process::id().to_string()])
            .output()
            .expect("runs starling-bench")
    };
    let ok = run(&brokers.url(0));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("pubsub") && stdout.contains("\"msgs_per_sec\""),
        "{stdout}"
    );
    let bad = run(&proxy(brokers.url(0), Fault::Drop(10)));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SEQUENCE ERROR"), "{stderr}");
}
