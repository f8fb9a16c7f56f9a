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
//! With `--nats-bin PATH`, the same clients against nats-server, where the user is removed the
//! way nats-server allows: its config file rewritten without the user, then `SIGHUP` (a
//! reload); the time runs from the signal. Starling's rounds and nats-server's alternate, and
//! the ratio of the medians is printed.
//!
//! Every wait is bounded (10 s); a connection that is not closed fails the run.

use std::time::Duration;

use futures::StreamExt;
use starling_server::{Event, Server, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let nats_bin = match args.iter().position(|a| a == "--nats-bin") {
        Some(i) if i + 1 < args.len() => {
            let bin = args.remove(i + 1);
            args.remove(i);
            Some(bin)
        }
        _ => None,
    };
    let mut args = args.into_iter();
    let conns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    if let Some(bin) = nats_bin {
        return versus_nats(&bin, conns, rounds).await;
    }
    let mut times = Vec::new();
    let mut calls = Vec::new();
    let mut retired = Vec::new();
    for round in 1..=rounds {
        match one_round(conns).await {
            Ok((call, r, t)) => {
                eprintln!(
                    "round {round}/{rounds}: remove_user took {:.2} ms; the server retired {conns} connections after {:.2} ms; clients saw every close after {:.2} ms",
                    ms(call),
                    ms(r),
                    ms(t)
                );
                calls.push(call);
                retired.push(r);
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
    retired.sort();
    let mid = times.len() / 2;
    let (t, c, r) = (times[mid], calls[mid], retired[mid]);
    println!(
        "| connections | rounds | remove_user call | server retired all | clients saw all closes |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {conns} | {rounds} | {:.2} ms | {:.2} ms | {:.2} ms |",
        ms(c),
        ms(r),
        ms(t)
    );
    println!(
        "{{\"bench\":\"kick\",\"connections\":{conns},\"rounds\":{rounds},\"call_ms\":{:.3},\"retired_ms\":{:.3},\"closed_ms\":{:.3}}}",
        ms(c),
        ms(r),
        ms(t)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (how long `remove_user` took, when the server had retired every connection, when the
/// last client saw its connection closed).
async fn one_round(conns: usize) -> Result<(Duration, Duration, Duration), Error> {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .max_connections(conns + 16)
        .user(User::new("u", "p"))
        .start()
        .await?;
    let addr = server.client_addr().ok_or("no client listener")?;
    let clients = log_in(addr, conns).await?;
    let mut events = server.events();
    let start = Instant::now();
    let waiters = watch_closes(clients);
    let closed = server.remove_user("u")?.ok_or("no user u")?;
    let call = start.elapsed();
    if closed != conns {
        return Err(format!("closed {closed} of {conns}").into());
    }
    // The server's side: every connection retired (flushed, socket shut, unregistered), as
    // its `ClientClosed` events tell.
    let mut left = conns;
    while left > 0 {
        match timeout(LIMIT, events.next()).await? {
            Some(Event::ClientClosed { .. }) => left -= 1,
            Some(_) => {}
            None => return Err("event stream ended".into()),
        }
    }
    let retired = start.elapsed();
    let mut last = start;
    for w in waiters {
        let (at, out) = w.await??;
        if !out.starts_with(b"-ERR 'Authorization Violation'") {
            return Err(format!("got {:?}", String::from_utf8_lossy(&out)).into());
        }
        last = last.max(at);
    }
    server.shutdown().await;
    Ok((call, retired, last - start))
}

/// Starling's `remove_user` and nats-server's reload, alternating, each timed until every
/// client saw its close.
async fn versus_nats(bin: &str, conns: usize, rounds: usize) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let s = match one_round(conns).await {
            Ok((_, _, t)) => t,
            Err(e) => fail(round, e),
        };
        let n = match nats_round(bin, conns).await {
            Ok(t) => t,
            Err(e) => fail(round, e),
        };
        eprintln!(
            "round {round}/{rounds}: starling {:.2} ms, nats-server {:.2} ms",
            ms(s),
            ms(n)
        );
        ours.push(s);
        theirs.push(n);
    }
    ours.sort();
    theirs.sort();
    let (s, n) = (ours[ours.len() / 2], theirs[theirs.len() / 2]);
    println!("| connections | rounds | starling: all closed | nats-server: all closed | ratio |");
    println!("|---|---|---|---|---|");
    println!(
        "| {conns} | {rounds} | {:.2} ms | {:.2} ms | {:.2}× |",
        ms(s),
        ms(n),
        s.as_secs_f64() / n.as_secs_f64()
    );
}

fn fail(round: usize, e: Error) -> ! {
    eprintln!("starling-kick: round {round}: {e}");
    std::process::exit(1)
}

/// nats-server with user `u` in a config file; N clients; the file rewritten without `u`
/// and `SIGHUP`: the time from the signal until every client saw its close.
async fn nats_round(bin: &str, conns: usize) -> Result<Duration, Error> {
    let dir = std::env::temp_dir().join(format!("starling-kick-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("kick.conf");
    let users = |with_u: bool| {
        let u = if with_u {
            "{user: u, password: p}, "
        } else {
            ""
        };
        format!(
            "max_connections: {}\nauthorization {{ users: [{u}{{user: other, password: o}}] }}\n",
            conns + 16
        )
    };
    std::fs::write(&conf, users(true))?;
    let mut child = std::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", "-1", "-c"])
        .arg(&conf)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let addr: std::net::SocketAddr = loop {
        let line = lines.next().ok_or("nats-server exited")??;
        if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
            break rest.trim().parse()?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let result = async {
        let clients = log_in(addr, conns).await?;
        std::fs::write(&conf, users(false))?;
        let start = Instant::now();
        let waiters = watch_closes(clients);
        // SAFETY: kill(2) with a child's pid and SIGHUP has no memory effects.
        if unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) } != 0 {
            return Err("kill(SIGHUP) failed".into());
        }
        // nats-server 2.9 and 2.15 close such clients as "Client Closed", saying nothing.
        let mut last = start;
        for w in waiters {
            let (at, out) = w.await??;
            if !out.is_empty() && !out.starts_with(b"-ERR 'Authorization Violation'") {
                return Err(format!("got {:?}", String::from_utf8_lossy(&out)).into());
            }
            last = last.max(at);
        }
        Ok(last - start)
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// N connections logged in as user `u` (each confirmed by PING/PONG).
async fn log_in(addr: std::net::SocketAddr, n: usize) -> Result<Vec<TcpStream>, Error> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"p\"}\r\nPING\r\n")
            .await?;
        let got = read_until(&mut s, b"PONG\r\n").await?;
        if !got.ends_with(b"PONG\r\n") {
            return Err(format!("no PONG: {:?}", String::from_utf8_lossy(&got)).into());
        }
        clients.push(s);
    }
    Ok(clients)
}

/// A client's wait for its close: when it saw it, and what it read before.
type Watcher = tokio::task::JoinHandle<Result<(Instant, Vec<u8>), Error>>;

/// Each client waits for its close on its own task, so they are all watched at once: when
/// it saw the close, and what it read before.
fn watch_closes(clients: Vec<TcpStream>) -> Vec<Watcher> {
    clients
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut out = Vec::new();
                timeout(LIMIT, s.read_to_end(&mut out)).await??;
                Ok::<_, Error>((Instant::now(), out))
            })
        })
        .collect()
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
