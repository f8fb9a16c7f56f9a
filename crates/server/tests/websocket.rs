//! NATS clients over WebSocket: async-nats's `websockets` feature end to end, and raw frames
//! where the wire matters (fragmented messages, permessage-deflate, control frames, origin
//! checks, refused upgrades with nats-server's HTTP statuses, `wss://`), `/varz` and `/connz`,
//! and the same refused upgrades against nats-server 2.15.1.

#![cfg(feature = "websocket")]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::{next, WAIT};
use futures::StreamExt;
use starling_server::{Server, StartError, Websocket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A key the tests send (base64 of 16 bytes).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

async fn ws_server(ws: Websocket) -> Server {
    Server::builder()
        .listen("127.0.0.1:0")
        .websocket(ws.listen("127.0.0.1:0"))
        .start()
        .await
        .expect("server starts")
}

fn plain() -> Websocket {
    Websocket::new().no_tls(true)
}

fn ws_url(server: &Server) -> String {
    format!("ws://{}", server.websocket_addr().unwrap())
}

/// An upgrade request with the usual headers, plus `extra` (full lines, CRLF-terminated).
fn request(host: &str, extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A raw WebSocket client: the upgrade by hand, masked frames out, frames in.
struct WsRaw<S> {
    io: S,
    buf: Vec<u8>,
    /// The response's header block.
    response: String,
}

/// One frame as read: opcode, FIN, RSV1, payload.
#[derive(Debug)]
struct Frame {
    opcode: u8,
    fin: bool,
    rsv1: bool,
    payload: Vec<u8>,
}

/// Sends `req` on `io` and reads the response's status line and headers.
async fn upgrade_on<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, req: &str) -> (u16, WsRaw<S>) {
    io.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, io.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let response = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    buf.drain(..end);
    (status, WsRaw { io, buf, response })
}

async fn upgrade(addr: SocketAddr, req: &str) -> (u16, WsRaw<TcpStream>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    upgrade_on(tcp, req).await
}

/// The status nats-server (or we) answer `req` with.
async fn status_of(addr: SocketAddr, req: &str) -> u16 {
    upgrade(addr, req).await.0
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsRaw<S> {
    fn header(&self, name: &str) -> Option<String> {
        self.response.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// Sends one masked frame.
    async fn frame(&mut self, opcode: u8, fin: bool, rsv1: bool, payload: &[u8]) {
        let mut out = vec![opcode | if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 }];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len < 65536 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        self.io.write_all(&out).await.unwrap();
    }

    /// Sends `text` as one binary message.
    async fn send(&mut self, text: &str) {
        self.frame(2, true, false, text.as_bytes()).await;
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 65536];
        let n = tokio::time::timeout(WAIT, self.io.read(&mut chunk))
            .await
            .expect("server answers in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next frame from the server (never masked); `None` at EOF.
    async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                assert_eq!(b1 & 0x80, 0, "server frames are not masked");
                let (len, at) = match b1 & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some(Frame {
                        opcode: b0 & 0x0f,
                        fin: b0 & 0x80 != 0,
                        rsv1: b0 & 0x40 != 0,
                        payload,
                    });
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The NATS bytes of the next data message (inflated if compressed).
    async fn message(&mut self) -> Vec<u8> {
        let mut frame = self.read_frame().await.expect("a message");
        while frame.opcode >= 8 {
            frame = self.read_frame().await.expect("a message");
        }
        assert_eq!(frame.opcode, 2, "binary messages");
        let compressed = frame.rsv1;
        let mut data = frame.payload;
        let mut fin = frame.fin;
        while !fin {
            let f = self.read_frame().await.expect("continuation");
            assert_eq!(f.opcode, 0);
            data.extend_from_slice(&f.payload);
            fin = f.fin;
        }
        if compressed {
            inflate(&data)
        } else {
            data
        }
    }

    /// NATS text until it contains `want`.
    async fn until(&mut self, want: &str) -> String {
        let mut text = String::new();
        while !text.contains(want) {
            text.push_str(&String::from_utf8_lossy(&self.message().await));
        }
        text
    }
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(&input[..])
        .read_to_end(&mut out)
        .ok();
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    let mut out = enc.finish().unwrap();
    // A final empty block is fine for the server: it appends the sync tail and inflates.
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

/// Upgrades and completes the NATS handshake; returns the client and the INFO JSON.
async fn nats_over_ws(addr: SocketAddr, extra: &str) -> (WsRaw<TcpStream>, serde_json::Value) {
    let (status, mut ws) = upgrade(addr, &request(&addr.to_string(), extra)).await;
    assert_eq!(status, 101, "{}", ws.response);
    let info = ws.until("\r\n").await;
    let json = info
        .strip_prefix("INFO ")
        .and_then(|s| s.split("\r\n").next())
        .expect("INFO first");
    let info = serde_json::from_str(json).unwrap();
    ws.send("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\nPING\r\n")
        .await;
    ws.until("PONG\r\n").await;
    (ws, info)
}

#[tokio::test]
async fn async_nats_pub_sub_request_reply_and_headers_over_websocket() {
    let server = ws_server(plain()).await;
    let client = async_nats::connect(ws_url(&server)).await.unwrap();
    let mut sub = client.subscribe("ws.greet").await.unwrap();
    client.publish("ws.greet", "hello".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload.as_ref(), b"hello");

    // Request/reply with a responder on the TCP listener: the two transports meet.
    let tcp = async_nats::connect(server.client_url().unwrap())
        .await
        .unwrap();
    let mut service = tcp.subscribe("ws.service").await.unwrap();
    tcp.flush().await.unwrap();
    let responder = tokio::spawn({
        let tcp = tcp.clone();
        async move {
            let req = next(&mut service).await;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                "X-Seen",
                req.headers
                    .as_ref()
                    .and_then(|h| h.get("X-Trace"))
                    .map_or("none", |v| v.as_str()),
            );
            tcp.publish_with_headers(req.reply.unwrap(), headers, req.payload)
                .await
                .unwrap();
            tcp.flush().await.unwrap();
        }
    });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Trace", "abc");
    let reply = tokio::time::timeout(
        WAIT,
        client.request_with_headers("ws.service", headers, "ping".into()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply.payload.as_ref(), b"ping");
    assert_eq!(
        reply.headers.unwrap().get("X-Seen").map(|v| v.as_str()),
        Some("abc")
    );
    responder.await.unwrap();

    // A large message crosses in many frames.
    let big = vec![b'x'; 200_000];
    client
        .publish("ws.greet", big.clone().into())
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload.len(), big.len());
}

#[tokio::test]
async fn a_pub_split_across_continuation_frames_is_one_message() {
    let server = ws_server(plain()).await;
    let addr = server.websocket_addr().unwrap();
    let (mut ws, _) = nats_over_ws(addr, "").await;
    ws.send("SUB frag.test 1\r\n").await;
    // "PUB frag.test 11\r\nhello world\r\n" in three frames, the cuts inside the control line
    // and inside the payload; a PING between two of them (control frames may interleave).
    ws.frame(2, false, false, b"PUB frag.te").await;
    ws.frame(9, true, false, b"are you there").await;
    ws.frame(0, false, false, b"st 11\r\nhello").await;
    ws.frame(0, true, false, b" world\r\n").await;
    // The PONG comes back as a control frame with the PING's payload.
    let pong = loop {
        let f = ws.read_frame().await.expect("frames");
        if f.opcode == 10 {
            break f;
        }
    };
    assert_eq!(pong.payload, b"are you there");
    ws.send("PING\r\n").await;
    let got = ws.until("PONG\r\n").await;
    assert!(
        got.contains("MSG frag.test 1 11\r\nhello world\r\n"),
        "{got}"
    );
}

#[tokio::test]
async fn permessage_deflate_when_offered_and_configured() {
    let server = ws_server(plain().compression(true)).await;
    let addr = server.websocket_addr().unwrap();
    let (mut ws, _) = nats_over_ws(
        addr,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    assert_eq!(
        ws.header("Sec-WebSocket-Extensions").as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    ws.send("SUB zip 1\r\n").await;
    // A compressed PUB, cut in two frames (RSV1 on the first only).
    let payload = "compress me ".repeat(20);
    let publish = format!("PUB zip {}\r\n{payload}\r\n", payload.len());
    let compressed = deflate(publish.as_bytes());
    let (a, b) = compressed.split_at(compressed.len() / 2);
    ws.frame(2, false, true, a).await;
    ws.frame(0, true, false, b).await;
    // The MSG back is above 64 bytes: compressed by the server.
    let frame = loop {
        let f = ws.read_frame().await.expect("a frame");
        if f.opcode == 2 {
            break f;
        }
    };
    assert!(frame.rsv1, "large server messages are compressed");
    let text = String::from_utf8(inflate(&frame.payload)).unwrap();
    assert_eq!(
        text,
        format!("MSG zip 1 {}\r\n{payload}\r\n", payload.len())
    );
    // Small ones are not.
    ws.send("PING\r\n").await;
    let frame = ws.read_frame().await.unwrap();
    assert!(!frame.rsv1);
    assert_eq!(frame.payload, b"PONG\r\n");
}

#[tokio::test]
async fn no_deflate_unless_configured_and_a_compressed_frame_is_a_protocol_error() {
    let server = ws_server(plain()).await;
    let addr = server.websocket_addr().unwrap();
    let (mut ws, _) = nats_over_ws(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    assert_eq!(ws.header("Sec-WebSocket-Extensions"), None);
    ws.frame(2, true, true, &deflate(b"PING\r\n")).await;
    let close = loop {
        let f = ws.read_frame().await.expect("a close frame");
        if f.opcode == 8 {
            break f;
        }
    };
    assert_eq!(
        u16::from_be_bytes([close.payload[0], close.payload[1]]),
        1002
    );
    assert_eq!(
        String::from_utf8_lossy(&close.payload[2..]),
        "compressed frame received without negotiated permessage-deflate"
    );
}

#[tokio::test]
async fn a_close_frame_is_answered_and_ends_the_connection() {
    let server = ws_server(plain()).await;
    let addr = server.websocket_addr().unwrap();
    let mut events = server.events();
    let (mut ws, _) = nats_over_ws(addr, "").await;
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bye");
    ws.frame(8, true, false, &body).await;
    let close = loop {
        let f = ws.read_frame().await.expect("the close reply");
        if f.opcode == 8 {
            break f;
        }
    };
    assert_eq!(close.payload, body, "the same status and reason back");
    assert!(ws.read_frame().await.is_none(), "then the server closes");
    let reason = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if let starling_server::Event::ClientClosed { reason, .. } = e {
                return reason;
            }
        }
        unreachable!()
    })
    .await
    .unwrap();
    assert_eq!(reason, starling_server::ClosedReason::ClientClosed);
}

#[tokio::test]
async fn info_over_websocket_names_the_websocket_listener() {
    let server = ws_server(plain()).await;
    let addr = server.websocket_addr().unwrap();
    let (_ws, info) = nats_over_ws(addr, "").await;
    assert_eq!(info["port"], addr.port(), "{info}");
    assert_eq!(info["host"], "127.0.0.1");
    assert!(info.get("tls_required").is_none(), "{info}");
    assert!(info["headers"].as_bool().unwrap());
}

#[tokio::test]
async fn unmasked_frames_need_nats_no_masking() {
    let server = ws_server(plain()).await;
    let addr = server.websocket_addr().unwrap();
    let (status, ws) = upgrade(
        addr,
        &request(&addr.to_string(), "Nats-No-Masking: true\r\n"),
    )
    .await;
    assert_eq!(status, 101);
    assert_eq!(ws.header("Nats-No-Masking").as_deref(), Some("true"));
    let mut ws = ws;
    ws.until("\r\n").await; // INFO
                            // An unmasked frame.
    let msg = b"CONNECT {\"verbose\":false}\r\nPING\r\n";
    let mut out = vec![0x82, msg.len() as u8];
    out.extend_from_slice(msg);
    ws.io.write_all(&out).await.unwrap();
    ws.until("PONG\r\n").await;

    // Without the header, a frame without the mask bit fails the connection.
    let (_, mut ws) = upgrade(addr, &request(&addr.to_string(), "")).await;
    ws.until("\r\n").await;
    ws.io.write_all(&out).await.unwrap();
    let close = loop {
        let f = ws.read_frame().await.expect("a close frame");
        if f.opcode == 8 {
            break f;
        }
    };
    assert_eq!(
        String::from_utf8_lossy(&close.payload[2..]),
        "mask bit missing"
    );
}

/// The refused upgrades the tests check, with the status nats-server gives each.
fn bad_upgrades(host: &str) -> Vec<(&'static str, String, u16)> {
    let key = format!("Sec-WebSocket-Key: {KEY}\r\n");
    vec![
        ("POST", request(host, "").replacen("GET", "POST", 1), 405),
        ("MQTT", request(host, "").replacen("GET / ", "GET /mqtt ", 1), 404),
        (
            "no Upgrade",
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"),
            400,
        ),
        (
            "no Connection: Upgrade",
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"),
            400,
        ),
        (
            "no key",
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            400,
        ),
        (
            "a short key",
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            400,
        ),
        (
            "version 8",
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 8\r\n\r\n"),
            400,
        ),
    ]
}

#[tokio::test]
async fn bad_upgrades_get_nats_servers_statuses() {
    let server = ws_server(plain()).await;
    let addr = server.websocket_addr().unwrap();
    for (what, req, want) in bad_upgrades(&addr.to_string()) {
        let (status, ws) = upgrade(addr, &req).await;
        assert_eq!(status, want, "{what}: {}", ws.response);
        assert_eq!(
            ws.header("Sec-Websocket-Version").as_deref(),
            Some("13"),
            "{what}"
        );
    }
}

#[tokio::test]
async fn origins_not_allowed_get_403() {
    let server = ws_server(plain().same_origin(true)).await;
    let addr = server.websocket_addr().unwrap();
    let host = addr.to_string();
    let same = format!("Origin: http://{host}\r\n");
    assert_eq!(status_of(addr, &request(&host, &same)).await, 101);
    assert_eq!(
        status_of(addr, &request(&host, "")).await,
        101,
        "no Origin: accepted"
    );
    let other = "Origin: http://evil.example\r\n";
    assert_eq!(status_of(addr, &request(&host, other)).await, 403);

    let server =
        ws_server(plain().allowed_origins(["https://app.example", "http://localhost:3000"])).await;
    let addr = server.websocket_addr().unwrap();
    let host = addr.to_string();
    for (origin, want) in [
        ("https://app.example", 101),
        ("https://app.example:443", 101),
        ("http://app.example", 403),
        ("http://localhost:3000", 101),
        ("http://localhost:3001", 403),
    ] {
        let status = status_of(addr, &request(&host, &format!("Origin: {origin}\r\n"))).await;
        assert_eq!(status, want, "{origin}");
    }
}

#[tokio::test]
async fn websocket_without_tls_must_say_no_tls() {
    let Err(err) = Server::builder()
        .websocket(Websocket::new().listen("127.0.0.1:0"))
        .start()
        .await
    else {
        panic!("a websocket listener without TLS or no_tls starts");
    };
    assert!(
        matches!(&err, StartError::Config(m) if m == "websocket requires TLS configuration"),
        "{err}"
    );
    let err = Server::builder()
        .websocket(plain().allowed_origins(["ftp://x"]))
        .check()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("allowed origins must be absolute URLs"),
        "{err}"
    );
    let err = Server::builder()
        .websocket(plain().jwt_cookie("jwt"))
        .check()
        .unwrap_err();
    assert!(err.to_string().contains("trusted operators"), "{err}");
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn wss_with_the_test_certificates() {
    let certs = common::certs::Certs::new("wss");
    let server = ws_server(Websocket::new().tls(certs.server())).await;
    let addr = server.websocket_addr().unwrap();

    let tls = wss_connect(addr, &certs.ca()).await.unwrap();
    let (status, mut ws) =
        upgrade_on(tls, &request(&format!("localhost:{}", addr.port()), "")).await;
    assert_eq!(status, 101);
    let info = ws.until("\r\n").await;
    assert!(info.contains("\"tls_required\":true"), "{info}");
    ws.send("CONNECT {\"verbose\":false}\r\nSUB s 1\r\nPUB s 2\r\nhi\r\nPING\r\n")
        .await;
    let got = ws.until("PONG\r\n").await;
    assert!(got.contains("MSG s 1 2\r\nhi\r\n"), "{got}");
}

#[cfg(feature = "tls")]
use rustls_pki_types::pem::PemObject;

/// A TLS connection to `addr` for `localhost`, trusting the CA in `ca`.
#[cfg(feature = "tls")]
async fn wss_connect(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn wss_certificates_reload_without_a_restart() {
    let certs = common::certs::Certs::new("wss-reload");
    let server = ws_server(Websocket::new().tls(certs.server())).await;
    let addr = server.websocket_addr().unwrap();
    let old_ca = certs.dir().join("old-ca.pem");
    std::fs::copy(certs.ca(), &old_ca).unwrap();
    certs.issue("Starling Test CA 2");
    server.reload_certificates().unwrap();
    assert!(
        wss_connect(addr, &old_ca).await.is_err(),
        "the old CA no longer verifies"
    );
    let tls = wss_connect(addr, &certs.ca()).await.unwrap();
    let host = format!("localhost:{}", addr.port());
    assert_eq!(upgrade_on(tls, &request(&host, "")).await.0, 101);
}

#[cfg(feature = "monitor")]
#[tokio::test]
async fn varz_and_connz_show_websocket() {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .monitor("127.0.0.1:0")
        .websocket(
            plain()
                .listen("127.0.0.1:0")
                .compression(true)
                .same_origin(true)
                .handshake_timeout(Duration::from_secs(2)),
        )
        .start()
        .await
        .unwrap();
    let addr = server.websocket_addr().unwrap();
    let (_ws, _) = nats_over_ws(addr, "").await;
    let monitor = server.monitor_addr().unwrap();
    let varz = common::http_get(monitor, "/varz").await.json();
    let ws = &varz["websocket"];
    assert_eq!(ws["host"], "127.0.0.1", "{ws}");
    assert_eq!(ws["port"], addr.port());
    assert_eq!(ws["no_tls"], true);
    assert_eq!(ws["compression"], true);
    assert_eq!(ws["same_origin"], true);
    assert_eq!(ws["handshake_timeout"], 2_000_000_000u64);
    let connz = common::http_get(monitor, "/connz").await.json();
    assert_eq!(connz["connections"][0]["type"], "websocket", "{connz}");
}

/// The same refused upgrades against nats-server 2.15.1 get the statuses we give.
#[tokio::test]
async fn bad_upgrades_match_nats_server_2_15() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("starling-ws-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("ws.conf");
    std::fs::write(
        &conf,
        format!("websocket {{\n  listen: \"127.0.0.1:{port}\"\n  no_tls: true\n  same_origin: true\n}}\n"),
    )
    .unwrap();
    let Some(_reference) = common::NatsServer::start_215(&["-c", conf.to_str().unwrap()]) else {
        return;
    };
    let theirs: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = ws_server(plain().same_origin(true)).await;
    let ours = server.websocket_addr().unwrap();
    let mut cases: Vec<(String, String)> = bad_upgrades("HOST")
        .into_iter()
        .map(|(what, req, _)| (what.to_string(), req))
        .collect();
    cases.push(("good".into(), request("HOST", "")));
    cases.push((
        "MQTT path".into(),
        request("HOST", "").replacen("GET / ", "GET /mqtt ", 1),
    ));
    cases.push((
        "MQTT path, POST".into(),
        request("HOST", "").replacen("GET / ", "POST /mqtt ", 1),
    ));
    cases.push((
        "leafnode path".into(),
        request("HOST", "").replacen("GET / ", "GET /leafnode ", 1),
    ));
    cases.push((
        "foreign origin".into(),
        request("HOST", "Origin: http://evil.example\r\n"),
    ));
    for (what, req) in cases {
        let want = status_of(theirs, &req.replace("HOST", &theirs.to_string())).await;
        let got = status_of(ours, &req.replace("HOST", &ours.to_string())).await;
        assert_eq!(got, want, "{what}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Upgrades with `extra` headers, sends `connect` and a PING: the first NATS reply after INFO.
async fn first_reply(addr: SocketAddr, extra: &str, connect: &str) -> String {
    let (status, mut ws) = upgrade(addr, &request(&addr.to_string(), extra)).await;
    assert_eq!(status, 101);
    ws.until("\r\n").await; // INFO
    ws.send(&format!("CONNECT {connect}\r\nPING\r\n")).await;
    let text = ws.until("\r\n").await;
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_blocks_authorization_replaces_the_servers_for_websocket_clients() {
    use starling_server::Auth;
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .auth(Auth::Token("tcp-secret".into()))
        .websocket(
            plain()
                .listen("127.0.0.1:0")
                .auth(Auth::UserPassword {
                    user: "web".into(),
                    password: "pw".into(),
                })
                .user_cookie("u")
                .pass_cookie("p"),
        )
        .start()
        .await
        .unwrap();
    let addr = server.websocket_addr().unwrap();
    let pong = "PONG";
    let violation = "-ERR 'Authorization Violation'";
    let web = r#"{"verbose":false,"user":"web","pass":"pw"}"#;
    assert_eq!(first_reply(addr, "", web).await, pong);
    // The server's own token does not open the WebSocket listener.
    let token = r#"{"verbose":false,"auth_token":"tcp-secret"}"#;
    assert_eq!(first_reply(addr, "", token).await, violation);
    // Cookies carry what CONNECT leaves out.
    assert_eq!(
        first_reply(
            addr,
            "Cookie: theme=dark; u=web; p=\"pw\"\r\n",
            r#"{"verbose":false}"#
        )
        .await,
        pong
    );
    assert_eq!(
        first_reply(addr, "Cookie: u=web; p=nope\r\n", r#"{"verbose":false}"#).await,
        violation
    );
    // And the TCP listener still wants its token.
    common::Raw::handshake(
        server.client_addr().unwrap(),
        r#"{"verbose":false,"auth_token":"tcp-secret"}"#,
    )
    .await;
}

#[tokio::test]
async fn the_blocks_no_auth_user_and_auth_required_in_info() {
    use starling_server::User;
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .user(User::new("alice", "a-pw"))
        .user(User::new("web", "w-pw"))
        .websocket(plain().listen("127.0.0.1:0").no_auth_user("web"))
        .start()
        .await
        .unwrap();
    let addr = server.websocket_addr().unwrap();
    let mut events = server.events();
    // No credentials: the block's no_auth_user.
    assert_eq!(first_reply(addr, "", r#"{"verbose":false}"#).await, "PONG");
    let user = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if let starling_server::Event::ClientAuthorized { user, .. } = e {
                return user;
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(user.as_deref(), Some("web"));
    // Users still log in as themselves.
    let alice = r#"{"verbose":false,"user":"alice","pass":"a-pw"}"#;
    assert_eq!(first_reply(addr, "", alice).await, "PONG");
    // INFO says auth_required (the block overrides authentication).
    let (status, mut ws) = upgrade(addr, &request(&addr.to_string(), "")).await;
    assert_eq!(status, 101);
    let info = ws.until("\r\n").await;
    assert!(info.contains("\"auth_required\":true"), "{info}");
}

#[tokio::test]
async fn a_jwt_cookie_logs_in_a_bearer_user() {
    use common::jwt::operator;
    use nats_jwt::Token;
    use nkeys::KeyPair;

    let op = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let account_jwt = Token::new_account(account.public_key()).name("A").sign(&op);
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .operator(operator(&op, serde_json::json!({})))
        .resolver_preload(account_jwt)
        .websocket(plain().listen("127.0.0.1:0").jwt_cookie("natsjwt"))
        .start()
        .await
        .unwrap();
    let addr = server.websocket_addr().unwrap();
    let user = KeyPair::new_user();
    let jwt = Token::new_user(account.public_key(), user.public_key())
        .bearer_token(true)
        .sign(&account);
    let cookie = format!("Cookie: natsjwt={jwt}\r\n");
    assert_eq!(
        first_reply(addr, &cookie, r#"{"verbose":false}"#).await,
        "PONG"
    );
    assert_eq!(
        first_reply(addr, "", r#"{"verbose":false}"#).await,
        "-ERR 'Authorization Violation'"
    );
}

#[tokio::test]
async fn browsers_get_frames_of_at_most_4096_bytes() {
    let server = ws_server(plain()).await;
    let addr = server.websocket_addr().unwrap();
    let ua = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n";
    let (mut ws, _) = nats_over_ws(addr, ua).await;
    ws.send("SUB big 1\r\n").await;
    let payload = "y".repeat(10_000);
    ws.send(&format!("PUB big {}\r\n{payload}\r\n", payload.len()))
        .await;
    let mut text = Vec::new();
    while !String::from_utf8_lossy(&text).ends_with(&format!("{payload}\r\n")) {
        let f = ws.read_frame().await.expect("frames");
        assert!(f.payload.len() <= 4096, "frame of {}", f.payload.len());
        assert!(f.fin && f.opcode == 2, "each piece a message of its own");
        text.extend_from_slice(&f.payload);
    }
}

#[tokio::test]
async fn a_compressed_message_may_not_inflate_past_max_payload() {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .max_payload(1024)
        .websocket(plain().listen("127.0.0.1:0").compression(true))
        .start()
        .await
        .unwrap();
    let addr = server.websocket_addr().unwrap();
    let (mut ws, _) = nats_over_ws(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    // Two PUBs of 600 bytes in one compressed message: each within max_payload, together
    // past it (nats-server limits what one message inflates to).
    let body = "z".repeat(600);
    let two = format!("PUB a 600\r\n{body}\r\nPUB a 600\r\n{body}\r\n");
    ws.frame(2, true, true, &deflate(two.as_bytes())).await;
    let close = loop {
        let f = ws.read_frame().await.expect("a close frame");
        if f.opcode == 8 {
            break f;
        }
    };
    assert_eq!(
        u16::from_be_bytes([close.payload[0], close.payload[1]]),
        1009
    );
}

#[tokio::test]
async fn lame_duck_info_over_websocket_names_the_websocket_listener() {
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .lame_duck_grace_period(Duration::from_millis(10))
        .lame_duck_duration(Duration::from_secs(30))
        .websocket(plain().listen("127.0.0.1:0"))
        .start()
        .await
        .unwrap();
    let addr = server.websocket_addr().unwrap();
    let (mut ws, _) = nats_over_ws(addr, "").await;
    let s2 = server.clone();
    tokio::spawn(async move { s2.lame_duck().await });
    let text = ws.until("\"ldm\":true").await;
    let json = text
        .split("INFO ")
        .last()
        .and_then(|s| s.split("\r\n").next())
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(info["port"], addr.port(), "{info}");
}

#[tokio::test]
async fn a_leafnode_upgrade_is_closed_as_nats_server_without_leafnodes_closes_it() {
    let server = ws_server(plain()).await;
    let addr = server.websocket_addr().unwrap();
    let req = request(&addr.to_string(), "").replacen("GET / ", "GET /leafnode ", 1);
    let (status, mut ws) = upgrade(addr, &req).await;
    assert_eq!(status, 101);
    assert!(ws.read_frame().await.is_none(), "closed without an INFO");
}

/// async-nats's own websocket tests (`core`, `tls`), against Starling: ten 1 MiB messages
/// over `ws://`, and `wss://` with the server's user and password.
#[tokio::test]
async fn async_nats_websocket_suite_core_large_messages() {
    let server = ws_server(plain()).await;
    let client = async_nats::connect(ws_url(&server)).await.unwrap();
    let payload = bytes::Bytes::from(vec![22; 1024 * 1024]);
    let mut sub = client.subscribe("foo").await.unwrap().take(10);
    for _ in 0..10 {
        client.publish("foo", payload.clone()).await.unwrap();
    }
    let mut n = 0;
    while let Some(msg) = tokio::time::timeout(WAIT, sub.next()).await.unwrap() {
        assert_eq!(msg.payload, payload);
        n += 1;
    }
    assert_eq!(n, 10);
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn async_nats_over_wss_with_the_servers_user() {
    use starling_server::Auth;
    let certs = common::certs::Certs::new("wss-async-nats");
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .auth(Auth::UserPassword {
            user: "derek".into(),
            password: "porkchop".into(),
        })
        .websocket(Websocket::new().listen("127.0.0.1:0").tls(certs.server()))
        .start()
        .await
        .unwrap();
    let port = server.websocket_addr().unwrap().port();
    let client = async_nats::ConnectOptions::new()
        .user_and_password("derek".into(), "porkchop".into())
        .add_root_certificates(certs.ca())
        .connect(format!("wss://localhost:{port}"))
        .await
        .unwrap();
    let mut sub = client.subscribe("foo").await.unwrap();
    client.publish("foo", "hello".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload.as_ref(), b"hello");
}

#[tokio::test]
async fn a_reload_that_changes_the_websocket_block_is_refused() {
    let server = ws_server(plain()).await;
    let mut config = server.config().await;
    config.websocket = Some(plain().listen("127.0.0.1:0").compression(true));
    let err = server.reload(config).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("config reload not supported for websocket"),
        "{err}"
    );
    // The same block reloads fine.
    let config = server.config().await;
    server.reload(config).await.unwrap();
}
