//! Embeds a Starling broker in a program: starts it, talks to it in-process (subscribe,
//! publish, request/reply), prints what happens, then serves NATS clients until Ctrl-C.
//!
//! ```sh
//! cargo run --example embedded                    # broker on 127.0.0.1:4222
//! cargo run --example embedded -- --port 0        # any free port
//! nats sub '>' -s nats://127.0.0.1:4222           # meanwhile, from any NATS client
//! ```
//!
//! `--demo-secs N` stops after N seconds instead of waiting for Ctrl-C.

use std::time::Duration;

use starling::{Event, Server, StreamExt};
use tokio::task::JoinSet;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, PartialEq)]
struct Args {
    port: u16,
    demo_secs: Option<u64>,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        port: 4222,
        demo_secs: None,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" | "-p" => out.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--demo-secs" => {
                out.demo_secs = Some(value()?.parse().map_err(|e| format!("--demo-secs: {e}"))?)
            }
            "-h" | "--help" => return Err("usage: embedded [--port PORT] [--demo-secs N]".into()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("embedded: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Error> {
    // 1. Start the broker. start() returns once it accepts connections (or says why not).
    let server = Server::builder()
        .listen(format!("127.0.0.1:{}", args.port))
        .server_name("embedded-example")
        .start()
        .await?;
    let url = server.client_url().unwrap_or_default();
    println!("broker {} listening on {url}", server.server_name());

    let mut tasks = JoinSet::new();

    // 2. Watch the broker's events: socket clients coming and going show up here.
    let mut events = server.events();
    tasks.spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Event::ClientConnected {
                    cid,
                    addr: Some(addr),
                    ..
                } => println!("event: client {cid} connected from {addr}"),
                Event::ClientClosed { cid, reason } => {
                    println!("event: client {cid} closed ({reason})")
                }
                Event::SlowConsumer { cid } => println!("event: client {cid} was a slow consumer"),
                _ => {}
            }
        }
    });

    // 3. Publish and subscribe in-process: no socket, and the payload is never copied.
    let client = server.client();
    let mut greetings = client.subscribe("greetings.>").await?;
    client.publish("greetings.hello", "hello, world").await?;
    if let Some(msg) = greetings.next().await {
        println!(
            "received on {}: {}",
            msg.subject,
            String::from_utf8_lossy(&msg.payload)
        );
    }

    // 4. Request/reply: a responder answers on each request's reply subject.
    let mut requests = client.subscribe("time.uptime").await?;
    let responder = client.clone();
    let started = std::time::Instant::now();
    tasks.spawn(async move {
        while let Some(req) = requests.next().await {
            if let Some(reply) = req.reply {
                let answer = format!("up for {:.3}s", started.elapsed().as_secs_f64());
                let _ = responder.publish(reply.as_str(), answer).await;
            }
        }
    });
    let reply = client
        .request_with_timeout("time.uptime", "", Duration::from_secs(2))
        .await?;
    println!(
        "request time.uptime -> {}",
        String::from_utf8_lossy(&reply.payload)
    );

    // 5. Nobody listening: the request fails fast with "no responders".
    match client.request("nobody.home", "anyone?").await {
        Err(e) => println!("request nobody.home -> {e}"),
        Ok(m) => println!("request nobody.home -> unexpected reply {m:?}"),
    }

    // 6. Serve NATS clients until Ctrl-C (or --demo-secs).
    println!("serving NATS clients on {url}; try `nats sub '>' -s {url}` (Ctrl-C to stop)");
    match args.demo_secs {
        Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
        None => tokio::signal::ctrl_c().await?,
    }

    let stats = server.stats();
    println!(
        "shutting down: {} messages in, {} out, {} connections served",
        stats.in_msgs, stats.out_msgs, stats.total_connections
    );
    tasks.shutdown().await;
    server.shutdown().await;
    println!("bye");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        assert_eq!(
            args(&[]),
            Ok(Args {
                port: 4222,
                demo_secs: None
            })
        );
        assert_eq!(
            args(&["--port", "0", "--demo-secs=1"]),
            Ok(Args {
                port: 0,
                demo_secs: Some(1)
            })
        );
        assert!(args(&["--port"]).is_err());
        assert!(args(&["--port", "x"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }

    #[tokio::test]
    async fn the_demo_runs_to_the_end() {
        run(Args {
            port: 0,
            demo_secs: Some(0),
        })
        .await
        .unwrap();
    }
}
