//! How fast a removed user's connections are closed: an embedded broker with user `u`, N
//! plain TCP connections logged in as `u` (each confirmed by PING/PONG), then
//! `Server::remove_user("u")`. Measures, per round, the time from the call until every one of
//! the N clients has read `-ERR 'Authorization Violation'` and seen its connection closed.
//! Prints the median over the rounds.
//!
//! ```sh
//! cargo run --release -p starling-benches --bin starling-kick -- [CONNECTIONS] [ROUNDS]
//! ```
//!
//! Every wait is bounded (10 s); a connection that is not closed fails the run.

use std::time::Duration;

use starling_server::{Server, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let conns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut times = Vec::new();
    let mut calls = Vec::new();
    for round in 1..=rounds {
        match one_round(conns).await {
            Ok((call, t)) => {
                eprintln!(
                    "round {round}/{rounds}: remove_user took {:.2} ms; {conns} connections closed {:.2} ms after it began",
                    ms(call),
                    ms(t)
                );
                calls.push(call);
                times.push(t);
            }
            Err(e) => {
                eprintln!("starling-kick: round {round}: {e}");
                std::process::exit(1);
            }
        }
    }
    times.sort();
    calls.sort();
    let (t, c) = (times[times.len() / 2], calls[calls.len() / 2]);
    println!(
        "| connections | rounds | remove_user call (median) | all clients saw the close (median) |"
    );
    println!("|---|---|---|---|");
    println!("| {conns} | {rounds} | {:.2} ms | {:.2} ms |", ms(c), ms(t));
    println!(
        "{{\"bench\":\"kick\",\"connections\":{conns},\"rounds\":{rounds},\"call_ms\":{:.3},\"closed_ms\":{:.3}}}",
        ms(c),
        ms(t)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (how long `remove_user` took, when the last client saw its connection closed).
async fn one_round(conns: usize) -> Result<(Duration, Duration), Error> {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .max_connections(conns + 16)
        .user(User::new("u", "p"))
        .start()
        .await?;
    let addr = server.client_addr().ok_or("no client listener")?;
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"p\"}\r\nPING\r\n")
            .await?;
        let got = read_until(&mut s, b"PONG\r\n").await?;
        if !got.ends_with(b"PONG\r\n") {
            return Err(format!("no PONG: {:?}", String::from_utf8_lossy(&got)).into());
        }
        clients.push(s);
    }
    // Each client waits for its close on its own task, so they are all watched at once.
    let start = Instant::now();
    let waiters: Vec<_> = clients
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut out = Vec::new();
                timeout(LIMIT, s.read_to_end(&mut out)).await??;
                Ok::<_, Error>((Instant::now(), out))
            })
        })
        .collect();
    let closed = server.remove_user("u")?.ok_or("no user u")?;
    let call = start.elapsed();
    if closed != conns {
        return Err(format!("closed {closed} of {conns}").into());
    }
    let mut last = start;
    for w in waiters {
        let (at, out) = w.await??;
        if !out.starts_with(b"-ERR 'Authorization Violation'") {
            return Err(format!("got {:?}", String::from_utf8_lossy(&out)).into());
        }
        last = last.max(at);
    }
    server.shutdown().await;
    Ok((call, last - start))
}

async fn read_until(s: &mut TcpStream, end: &[u8]) -> Result<Vec<u8>, Error> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end) {
        let n = timeout(LIMIT, s.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(got)
}
