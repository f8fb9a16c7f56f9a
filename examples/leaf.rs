//! An embedded Starling broker joins a hub as a leafnode: the application's own clients talk
//! to it in-process (and on a local port), and whatever the hub's side is interested in
//! crosses over the one outbound leafnode connection, and the other way round. If the hub goes
//! away, the leaf keeps serving its local clients and rejoins when the hub is back.
//!
//! ```sh
//! echo 'leafnodes { listen: "0.0.0.0:7422" }' > hub.conf && nats-server -c hub.conf &
//! cargo run --example leaf -- nats://127.0.0.1:7422
//! nats req hub.time ''          # on the hub: answered by the leaf's in-process service
//! ```
//!
//! Without a hub URL it starts a Starling hub of its own on a free port and joins that
//! (`cargo run --example leaf`), so it runs anywhere; `--demo-secs N` ends it after N seconds.

use std::time::Duration;

use starling::{Leafnodes, Remote, Server, StreamExt};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, PartialEq, Eq)]
struct Args {
    hub: Option<String>,
    demo_secs: Option<u64>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        hub: None,
        demo_secs: None,
    };
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--demo-secs=") {
            args.demo_secs = Some(v.parse().map_err(|_| format!("bad --demo-secs {v:?}"))?);
        } else if a == "--demo-secs" {
            let v = it.next().ok_or("--demo-secs needs a value")?;
            args.demo_secs = Some(v.parse().map_err(|_| format!("bad --demo-secs {v:?}"))?);
        } else if a.starts_with("--") {
            return Err(format!("unknown option {a}"));
        } else if args.hub.is_none() {
            args.hub = Some(a);
        } else {
            return Err(format!("unexpected argument {a}"));
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("leaf: {e}\nusage: leaf [nats://hub:7422] [--demo-secs N]");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("leaf: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Error> {
    // A hub to join: the one given, or one of our own.
    let (own_hub, hub_url) = match args.hub {
        Some(url) => (None, url),
        None => {
            let hub = Server::builder()
                .server_name("demo-hub")
                .leafnodes(Leafnodes::new().listen("127.0.0.1:0"))
                .start()
                .await?;
            let url = format!(
                "nats://{}",
                hub.leafnode_addr().ok_or("hub has no leaf port")?
            );
            println!("started a hub of our own; leafnodes connect to {url}");
            (Some(hub), url)
        }
    };

    // 1. The leaf: an embedded broker with a local port, joining the hub.
    let leaf = Server::builder()
        .server_name("edge-1")
        .listen("127.0.0.1:0")
        .leafnodes(Leafnodes::new().remote(Remote::new(hub_url.clone())))
        .start()
        .await?;
    println!(
        "leaf edge-1 serves local clients on nats://{} and joins {hub_url}",
        leaf.client_addr().ok_or("no client port")?
    );

    // 2. A service on the leaf that the hub's clients can call: its interest crosses to the
    //    hub as a leafnode subscription.
    let svc = leaf.client();
    let mut requests = svc.subscribe("hub.time").await?;
    let responder = tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            if let Some(reply) = m.reply {
                let now = format!("{:?}", std::time::SystemTime::now());
                let _ = svc.publish(reply.as_str(), now).await;
            }
        }
    });

    // 3. With our own hub, show both directions from the hub's side.
    if let Some(hub) = &own_hub {
        let at_hub = hub.client();
        let mut edge = at_hub.subscribe("edge.>").await?;
        // The hub's interest in edge.> reaches the leaf, then the leaf's messages cross.
        wait_for(|| leaf.has_interest("edge.temperature")).await?;
        leaf.client().publish("edge.temperature", "21.5").await?;
        let m = tokio::time::timeout(Duration::from_secs(10), edge.next())
            .await?
            .ok_or("subscription ended")?;
        println!(
            "hub received {} = {}",
            m.subject,
            String::from_utf8_lossy(&m.payload)
        );
        wait_for(|| hub.has_interest("hub.time")).await?;
        let reply = at_hub.request("hub.time", "").await?;
        println!(
            "hub asked the leaf for the time: {}",
            String::from_utf8_lossy(&reply.payload)
        );
    }

    match args.demo_secs {
        Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
        None => {
            println!("running; Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
        }
    }
    responder.abort();
    leaf.shutdown().await;
    if let Some(hub) = own_hub {
        hub.shutdown().await;
    }
    println!("bye");
    Ok(())
}

/// Polls `ready` until it holds, for at most 10 s.
async fn wait_for(ready: impl Fn() -> bool) -> Result<(), Error> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .map_err(|_| "interest did not cross in time".into())
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
            args(&["nats://h:7422", "--demo-secs=1"]),
            Ok(Args {
                hub: Some("nats://h:7422".into()),
                demo_secs: Some(1)
            })
        );
        assert!(args(&["a", "b"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }

    #[tokio::test]
    async fn the_demo_runs_to_the_end() {
        run(Args {
            hub: None,
            demo_secs: Some(0),
        })
        .await
        .unwrap();
    }
}
