//! A raw NATS client connection on blocking std sockets: cheap enough that the server, not the
//! client, is the bottleneck.
//!
//! [`connect`] does the handshake (INFO, CONNECT, PING/PONG) and returns a [`Conn`] whose
//! [`Reader`] and [`Writer`] halves can live on different threads. The writer appends
//! control lines and payloads to one flat buffer and writes it in large writes; the reader
//! reads large chunks and parses every complete op with `starling-proto`'s [`ServerParser`].
//!
//! A `tls://` URL upgrades the connection after INFO, as nats-server expects: the TLS
//! handshake runs on the same socket, then CONNECT goes inside TLS. Both halves then share one
//! rustls session behind a mutex (`TlsShared`); without TLS they touch no lock and copy
//! nothing more than before.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::ClientConnection;
use rustls_pki_types::ServerName;
use starling_proto::{encode, Limits, ServerOp, ServerParser};

use crate::error::{BenchError, Result};

/// The writer flushes once its buffer holds this many bytes.
pub const FLUSH_AT: usize = 64 * 1024;
/// How long one [`Reader::poll`] waits for bytes before it returns to its caller.
pub const POLL_WAIT: Duration = Duration::from_millis(50);
/// A write that makes no progress for this long fails the run instead of hanging it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
const READ_BUF: usize = 256 * 1024;
/// Ciphertext read from the socket at once under TLS (several 16 KiB records).
const CIPHER_BUF: usize = 64 * 1024;

/// The `CONNECT` a bench client sends: headers on, no echo of its own messages not needed
/// (echo stays on: request/reply responders may share a connection with requesters), and the
/// user and password of a URL's `user:pass@`.
fn connect_line(url: &str) -> Vec<u8> {
    let tls = is_tls(url);
    let creds = credentials(url).map_or(String::new(), |(u, p)| {
        format!(
            ",\"user\":{},\"pass\":{}",
            serde_json::json!(u),
            serde_json::json!(p)
        )
    });
    format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"tls_required\":{tls},\
         \"name\":\"starling-bench\",\"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1,\
         \"headers\":true,\"no_responders\":true{creds}}}\r\nPING\r\n"
    )
    .into_bytes()
}

/// `(user, password)` of `nats://user:pass@host:port`, if the URL has them.
fn credentials(url: &str) -> Option<(&str, &str)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (userinfo, _) = rest.rsplit_once('@')?;
    Some(userinfo.split_once(':').unwrap_or((userinfo, "")))
}

/// `host:port` of `nats://`, `tls://` or `tcp://` `[user:pass@]host[:port][/]` (port 4222
/// when absent).
fn host_port(url: &str) -> String {
    let hostport = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let hostport = hostport.trim_end_matches('/');
    if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:4222")
    }
}

/// True for a `ws://` URL: [`connect`] upgrades the socket to WebSocket first, and the NATS
/// protocol then travels in binary frames.
pub fn is_ws(url: &str) -> bool {
    url.starts_with("ws://")
}

/// True for a `tls://` URL: [`connect`] upgrades to TLS after INFO.
pub fn is_tls(url: &str) -> bool {
    url.starts_with("tls://")
}

/// `url` with `tls://` for its scheme when `tls`, else as given.
pub fn with_tls(url: &str, tls: bool) -> String {
    match url.split_once("://") {
        _ if !tls => url.to_string(),
        Some((_, rest)) => format!("tls://{rest}"),
        None => format!("tls://{url}"),
    }
}

/// The name a `tls://` server's certificate must hold: the URL's host (an IP address or a
/// DNS name).
fn server_name(url: &str) -> Result<ServerName<'static>> {
    let hostport = host_port(url);
    let host = hostport
        .rsplit_once(':')
        .map_or(hostport.as_str(), |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| BenchError::Usage(format!("{url}: no TLS server name: {e}")))
}

/// Resolves `nats://host:port` (or `tls://host:port`, `host:port`) to a socket address.
pub fn resolve(url: &str) -> Result<SocketAddr> {
    host_port(url)
        .to_socket_addrs()
        .map_err(|e| BenchError::io(format!("resolving {url}"), e))?
        .next()
        .ok_or_else(|| BenchError::Usage(format!("{url} resolves to no address")))
}

/// One connected, handshaken NATS client connection.
#[derive(Debug)]
pub struct Conn {
    /// The reading half.
    pub reader: Reader,
    /// The writing half.
    pub writer: Writer,
}

/// Connects to `url` and completes the handshake, all within `timeout`: INFO, then for a
/// `tls://` URL the TLS handshake, then CONNECT and PING/PONG.
pub fn connect(url: &str, timeout: Duration) -> Result<Conn> {
    let deadline = Instant::now() + timeout;
    let addr = resolve(url)?;
    // Before connecting: a tls:// URL without certificates to trust is a usage error.
    let tls = is_tls(url)
        .then(|| Ok::<_, BenchError>((crate::tls::client()?, server_name(url)?)))
        .transpose()?;
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| BenchError::io(format!("connecting to {url}"), e))?;
    let ctx = |e| BenchError::io(format!("setting up the socket to {url}"), e);
    stream.set_nodelay(true).map_err(ctx)?;
    stream.set_read_timeout(Some(POLL_WAIT)).map_err(ctx)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(ctx)?;
    let write_half = stream.try_clone().map_err(ctx)?;
    let mut conn = Conn {
        reader: Reader::new(stream),
        writer: Writer::new(write_half),
    };
    if is_ws(url) {
        conn.ws_upgrade(url, deadline)?;
    }
    let mut got_info = false;
    let (mut offers_tls, mut requires_tls) = (false, false);
    while !got_info {
        conn.reader
            .poll_until(deadline, "the server's INFO", |op| {
                if let ServerOp::Info(json) = op {
                    got_info = true;
                    let info = serde_json::from_slice(json).unwrap_or(serde_json::Value::Null);
                    requires_tls = info_flag(&info, "tls_required");
                    offers_tls = requires_tls || info_flag(&info, "tls_available");
                }
                Ok(got_info)
            })?;
    }
    if tls.is_none() && requires_tls {
        return Err(BenchError::Usage(format!(
            "{url}: the server requires TLS: connect with a tls:// URL (compare --tls, run \
             --tlscacert)"
        )));
    }
    if let Some((config, name)) = tls {
        if !offers_tls {
            return Err(BenchError::Protocol(format!(
                "{url}: the server's INFO offers no TLS"
            )));
        }
        conn.upgrade(config, name, deadline)
            .map_err(|e| e.context(&format!("TLS handshake with {url}")))?;
    }
    conn.writer.raw(&connect_line(url));
    conn.writer.flush()?;
    conn.reader.wait_pongs(1, deadline)?;
    Ok(conn)
}

/// True when an INFO's JSON has `key` set to `true`.
fn info_flag(info: &serde_json::Value, key: &str) -> bool {
    info[key].as_bool() == Some(true)
}

/// Connects to `url`, retrying refused connections until `timeout` has passed: waits for a
/// server that is starting up to be ready (a PING/PONG round trip), never by sleeping blindly.
pub fn connect_retry(url: &str, timeout: Duration) -> Result<Conn> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match connect(url, left.max(Duration::from_millis(100))) {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => {
                return Err(BenchError::Timeout(format!(
                    "server at {url} not ready within {timeout:?}: {e}"
                )))
            }
            // Connection refused while the server binds: back off a little and retry.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Conn {
    /// The WebSocket upgrade (a GET with the headers RFC 6455 asks for, answered 101); from
    /// then on the reader takes the payloads out of the server's frames and the writer sends
    /// each flush as one binary frame.
    fn ws_upgrade(&mut self, url: &str, deadline: Instant) -> Result<()> {
        let host = host_port(url);
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: c3RhcmxpbmctYmVuY2gtMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        self.writer
            .stream
            .write_all(request.as_bytes())
            .map_err(|e| BenchError::io("sending the WebSocket upgrade", e))?;
        let mut raw = Vec::new();
        let end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(
                    "waiting for the WebSocket upgrade".into(),
                ));
            }
            let mut chunk = [0u8; 4096];
            if let Some(n) = read_outcome(self.reader.stream.read(&mut chunk))? {
                raw.extend_from_slice(&chunk[..n]);
            }
        };
        let status = String::from_utf8_lossy(&raw[..end]);
        if !status.starts_with("HTTP/1.1 101") {
            return Err(BenchError::Protocol(format!(
                "{url}: WebSocket upgrade refused: {}",
                status.lines().next().unwrap_or_default()
            )));
        }
        raw.drain(..end);
        let end = raw.len();
        raw.resize(READ_BUF, 0);
        self.reader.ws = Some(WsRead {
            raw,
            start: 0,
            end,
            rem: 0,
        });
        self.writer.ws = Some(Vec::with_capacity(FLUSH_AT * 2 + 14));
        Ok(())
    }

    /// Sends a PING and waits for its PONG: every op sent before it has been processed.
    /// Every PING of a connection must go through here or be counted by the caller.
    pub fn round_trip(&mut self, timeout: Duration) -> Result<()> {
        let want = self.reader.pongs() + 1;
        self.writer.ping();
        self.writer.flush()?;
        self.reader.wait_pongs(want, Instant::now() + timeout)
    }

    /// Runs the TLS handshake on the socket (after INFO, before anything else is sent) and
    /// switches both halves to the shared session.
    fn upgrade(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        deadline: Instant,
    ) -> Result<()> {
        if self.reader.start != self.reader.end || !self.writer.buf.is_empty() {
            return Err(BenchError::Protocol(
                "bytes after INFO before the TLS handshake".into(),
            ));
        }
        let mut session = ClientConnection::new(config, name)
            .map_err(|e| BenchError::Protocol(format!("TLS: {e}")))?;
        // The writer encrypts a whole flush at once (it is bounded by FLUSH_AT and a frame).
        session.set_buffer_limit(None);
        let stream = &mut self.reader.stream;
        while session.is_handshaking() || session.wants_write() {
            match session.complete_io(stream) {
                Ok(_) => {}
                // The socket's read timeout (POLL_WAIT): keep going until the deadline.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if Instant::now() >= deadline {
                        return Err(BenchError::Timeout("waiting for the server".into()));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    return Err(BenchError::Closed("during the handshake".into()))
                }
                Err(e) => return Err(BenchError::io("the handshake failed", e)),
            }
        }
        // Anything that came with the handshake's last records (nothing, usually).
        let pending = session
            .process_new_packets()
            .map_err(|e| BenchError::Protocol(format!("TLS: {e}")))?
            .plaintext_bytes_to_read();
        let r = &mut self.reader;
        take_plaintext(&mut session, pending, &mut r.buf, &mut r.start, &mut r.end)?;
        let shared = Arc::new(TlsShared {
            session: Mutex::new(session),
            send: Mutex::new(()),
        });
        r.tls = Some(TlsRead {
            shared: shared.clone(),
            cipher: vec![0; CIPHER_BUF],
        });
        self.writer.tls = Some(TlsWrite {
            shared,
            out: Vec::new(),
        });
        Ok(())
    }
}

/// One TLS session shared by the two halves of a connection, which may run on different
/// threads. A half locks `session` only to feed it ciphertext or plaintext and to take what
/// it produced, never across a blocking read. TLS records must reach the socket in the order
/// the session made them: a half takes `send` before it releases `session` and writes while
/// it holds `send`, so the other half can still decrypt meanwhile.
#[derive(Debug)]
struct TlsShared {
    session: Mutex<ClientConnection>,
    send: Mutex<()>,
}

impl TlsShared {
    fn lock(&self) -> Result<MutexGuard<'_, ClientConnection>> {
        self.session
            .lock()
            .map_err(|_| BenchError::Protocol("TLS session lock poisoned".into()))
    }

    /// Takes every TLS record `session` has to send and writes them to `stream` (a clone of
    /// the connection's socket), in order with the other half's writes.
    fn send(
        &self,
        mut session: MutexGuard<'_, ClientConnection>,
        out: &mut Vec<u8>,
        stream: &mut TcpStream,
    ) -> Result<()> {
        out.clear();
        while session.wants_write() {
            // Writing to a Vec cannot fail.
            session
                .write_tls(out)
                .map_err(|e| BenchError::io("encrypting", e))?;
        }
        let _turn = self
            .send
            .lock()
            .map_err(|_| BenchError::Protocol("TLS send lock poisoned".into()))?;
        drop(session);
        stream
            .write_all(out)
            .map_err(|e| BenchError::io("writing to the server", e))
    }
}

/// Moves `n` bytes of decrypted plaintext from `session` to the end of a reader's buffer
/// (`buf[start..end]` holds what is not parsed yet), compacting or growing it as needed.
fn take_plaintext(
    session: &mut ClientConnection,
    n: usize,
    buf: &mut Vec<u8>,
    start: &mut usize,
    end: &mut usize,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    if buf.len() - *end < n {
        buf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
        if buf.len() - *end < n {
            buf.resize((*end + n).max(buf.len() * 2), 0);
        }
    }
    session
        .reader()
        .read_exact(&mut buf[*end..*end + n])
        .map_err(|e| BenchError::io("decrypting", e))?;
    *end += n;
    Ok(())
}

/// The reading half's TLS state.
#[derive(Debug)]
struct TlsRead {
    shared: Arc<TlsShared>,
    /// Ciphertext as read from the socket.
    cipher: Vec<u8>,
}

/// The writing half's TLS state.
#[derive(Debug)]
struct TlsWrite {
    shared: Arc<TlsShared>,
    /// TLS records of one flush, on their way to the socket.
    out: Vec<u8>,
}

/// A socket read's outcome: `Some(n)` bytes, `None` when the wait ([`POLL_WAIT`]) passed.
fn read_outcome(r: io::Result<usize>) -> Result<Option<usize>> {
    match r {
        Ok(0) => Err(BenchError::Closed("end of stream".into())),
        Ok(n) => Ok(Some(n)),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(BenchError::io("reading from the server", e)),
    }
}

/// The reading half's WebSocket state: bytes as read, and how much of the current frame's
/// payload is still to come.
#[derive(Debug)]
struct WsRead {
    raw: Vec<u8>,
    start: usize,
    end: usize,
    rem: usize,
}

impl WsRead {
    /// Moves the payload bytes of the frames in `raw` to `buf[end..]` (growing it).
    fn deframe(&mut self, buf: &mut Vec<u8>, start: &mut usize, end: &mut usize) -> Result<()> {
        loop {
            if self.rem > 0 {
                let n = self.rem.min(self.end - self.start);
                if n == 0 {
                    break;
                }
                if buf.len() - *end < n {
                    buf.copy_within(*start..*end, 0);
                    *end -= *start;
                    *start = 0;
                    if buf.len() - *end < n {
                        buf.resize((*end + n).max(buf.len() * 2), 0);
                    }
                }
                buf[*end..*end + n].copy_from_slice(&self.raw[self.start..self.start + n]);
                *end += n;
                self.start += n;
                self.rem -= n;
                continue;
            }
            let have = &self.raw[self.start..self.end];
            if have.len() < 2 {
                break;
            }
            let (len, at) = match have[1] & 0x7f {
                126 if have.len() >= 4 => (u16::from_be_bytes([have[2], have[3]]) as usize, 4),
                127 if have.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&have[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            match have[0] & 0x0f {
                // Data (continuations included): the payload is NATS protocol.
                0..=2 => {
                    self.start += at;
                    self.rem = len;
                }
                8 => return Err(BenchError::Closed("WebSocket close frame".into())),
                // PING, PONG: the server sends none unprompted; skip whole frames.
                _ => {
                    if have.len() < at + len {
                        break;
                    }
                    self.start += at + len;
                }
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.raw.len() {
            self.raw.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        Ok(())
    }
}

/// The reading half of a [`Conn`].
#[derive(Debug)]
pub struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    parser: ServerParser,
    pongs: u64,
    /// Set once a `tls://` connection's handshake is done.
    tls: Option<TlsRead>,
    /// Set once a `ws://` connection's upgrade is done.
    ws: Option<WsRead>,
}

impl Reader {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            pongs: 0,
            tls: None,
            ws: None,
            parser: ServerParser::new(Limits {
                max_control_line: 64 * 1024,
                max_payload: 64 * 1024 * 1024,
            }),
        }
    }

    /// Reads once (waiting at most [`POLL_WAIT`]) and calls `f` for every complete op now
    /// buffered. Returns the number of bytes read (0 when the wait timed out). `-ERR` from the
    /// server is an error; `f`'s errors are passed through.
    pub fn poll(&mut self, mut f: impl FnMut(ServerOp<'_>) -> Result<()>) -> Result<usize> {
        if self.end == self.buf.len() {
            self.make_room();
        }
        let n = if let Some(ws) = &mut self.ws {
            // Bytes left from the upgrade's read come first; read when they give nothing.
            loop {
                let before = self.end - self.start;
                ws.deframe(&mut self.buf, &mut self.start, &mut self.end)?;
                let got = (self.end - self.start).saturating_sub(before);
                if got > 0 {
                    break got;
                }
                let Some(n) = read_outcome(self.stream.read(&mut ws.raw[ws.end..]))? else {
                    return Ok(0);
                };
                ws.end += n;
            }
        } else if self.tls.is_none() {
            let Some(n) = read_outcome(self.stream.read(&mut self.buf[self.end..]))? else {
                return Ok(0);
            };
            self.end += n;
            n
        } else {
            match self.read_tls()? {
                Some(n) => n,
                None => return Ok(0),
            }
        };
        let Self {
            buf,
            start,
            end,
            parser,
            pongs,
            ..
        } = self;
        while *start < *end {
            match parser.parse(&buf[*start..*end]) {
                Ok(Some((op, used))) => {
                    *start += used;
                    match op {
                        ServerOp::Err(text) => {
                            return Err(BenchError::Server(format!(
                                "-ERR '{}'",
                                String::from_utf8_lossy(text)
                            )))
                        }
                        ServerOp::Pong => *pongs += 1,
                        _ => {}
                    }
                    f(op)?;
                }
                Ok(None) => break,
                Err(e) => return Err(BenchError::Protocol(e.to_string())),
            }
        }
        if *start == *end {
            *start = 0;
            *end = 0;
        }
        Ok(n)
    }

    /// Under TLS: reads ciphertext (without holding the session), decrypts it and appends the
    /// plaintext to the buffer. Returns the ciphertext bytes read, `None` when the wait
    /// passed.
    fn read_tls(&mut self) -> Result<Option<usize>> {
        let Self {
            stream,
            buf,
            start,
            end,
            tls: Some(tls),
            ..
        } = self
        else {
            return Ok(None);
        };
        let Some(n) = read_outcome(stream.read(&mut tls.cipher))? else {
            return Ok(None);
        };
        let mut session = tls.shared.lock()?;
        let mut rest = &tls.cipher[..n];
        while !rest.is_empty() {
            session
                .read_tls(&mut rest)
                .map_err(|e| BenchError::io("reading TLS records", e))?;
            let state = session
                .process_new_packets()
                .map_err(|e| BenchError::Protocol(format!("TLS: {e}")))?;
            // Drained after every chunk: rustls refuses more once its plaintext buffer fills.
            take_plaintext(
                &mut session,
                state.plaintext_bytes_to_read(),
                buf,
                start,
                end,
            )?;
            if state.peer_has_closed() {
                return Err(BenchError::Closed("TLS close_notify".into()));
            }
        }
        if session.wants_write() {
            // A reply the session owes the server (a key update, an alert).
            let mut out = Vec::new();
            tls.shared.send(session, &mut out, stream)?;
        }
        Ok(Some(n))
    }

    /// Compacts the buffer, and grows it when the frame at its front does not fit.
    fn make_room(&mut self) {
        let pending = self.end - self.start;
        self.buf.copy_within(self.start..self.end, 0);
        self.start = 0;
        self.end = pending;
        let need = self.parser.frame_len_hint().unwrap_or(0).max(pending + 1);
        if need > self.buf.len() || self.end == self.buf.len() {
            let len = need.max(self.buf.len() * 2);
            self.buf.resize(len, 0);
        }
    }

    /// Polls until `f` returns `true` for an op, failing once `deadline` passes.
    pub fn poll_until(
        &mut self,
        deadline: Instant,
        what: &str,
        mut f: impl FnMut(ServerOp<'_>) -> Result<bool>,
    ) -> Result<()> {
        let mut done = false;
        loop {
            self.poll(|op| {
                if !done && f(op)? {
                    done = true;
                }
                Ok(())
            })?;
            if done {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(format!("waiting for {what}")));
            }
        }
    }

    /// `PONG`s received so far.
    pub fn pongs(&self) -> u64 {
        self.pongs
    }

    /// Waits until `n` `PONG`s in all have been received, ignoring anything else.
    pub fn wait_pongs(&mut self, n: u64, deadline: Instant) -> Result<()> {
        while self.pongs < n {
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout("waiting for PONG".into()));
            }
            self.poll(|_| Ok(()))?;
        }
        Ok(())
    }
}

/// The writing half of a [`Conn`]: ops are appended to a flat buffer and written in large
/// writes.
#[derive(Debug)]
pub struct Writer {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Set once a `tls://` connection's handshake is done.
    tls: Option<TlsWrite>,
    /// Set once a `ws://` connection's upgrade is done: the frame being written.
    ws: Option<Vec<u8>>,
}

impl Writer {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(FLUSH_AT * 2),
            tls: None,
            ws: None,
        }
    }

    /// Appends raw protocol bytes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends `PUB subject [reply] len` and the payload; flushes when the buffer is full.
    pub fn publish(&mut self, subject: &[u8], reply: Option<&[u8]>, payload: &[u8]) -> Result<()> {
        encode::write_pub(&mut self.buf, subject, reply, payload.len());
        self.buf.extend_from_slice(payload);
        self.buf.extend_from_slice(b"\r\n");
        self.maybe_flush()
    }

    /// Appends `HPUB subject hdr_len total_len`, the header block and the payload.
    pub fn hpublish(&mut self, subject: &[u8], headers: &[u8], payload: &[u8]) -> Result<()> {
        encode::write_hpub(
            &mut self.buf,
            subject,
            None,
            headers.len(),
            headers.len() + payload.len(),
        );
        self.buf.extend_from_slice(headers);
        self.buf.extend_from_slice(payload);
        self.buf.extend_from_slice(b"\r\n");
        self.maybe_flush()
    }

    /// Appends `SUB subject [queue] sid`.
    pub fn subscribe(&mut self, subject: &[u8], queue: Option<&[u8]>, sid: u64) {
        let mut num = itoa::Buffer::new();
        encode::write_sub(&mut self.buf, subject, queue, num.format(sid).as_bytes());
    }

    /// Appends `PING`.
    pub fn ping(&mut self) {
        self.buf.extend_from_slice(b"PING\r\n");
    }

    /// Bytes buffered and not yet written.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Flushes once the buffer holds at least [`FLUSH_AT`] bytes.
    pub fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Writes everything buffered.
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Some(frame) = &mut self.ws {
            // One binary frame per flush, masked (clients must) with the all-zero key: the
            // server unmasks as for any key, and the client spends nothing on XOR.
            frame.clear();
            frame.push(0x82);
            let len = self.buf.len();
            if len < 126 {
                frame.push(0x80 | len as u8);
            } else if len < 65536 {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
            frame.extend_from_slice(&[0, 0, 0, 0]);
            frame.extend_from_slice(&self.buf);
            self.stream
                .write_all(frame)
                .map_err(|e| BenchError::io("writing to the server", e))?;
            self.buf.clear();
            return Ok(());
        }
        match &mut self.tls {
            None => self
                .stream
                .write_all(&self.buf)
                .map_err(|e| BenchError::io("writing to the server", e))?,
            Some(tls) => {
                let mut session = tls.shared.lock()?;
                // No buffer limit (set in the handshake): the session takes it all.
                session
                    .writer()
                    .write_all(&self.buf)
                    .map_err(|e| BenchError::io("encrypting", e))?;
                tls.shared.send(session, &mut tls.out, &mut self.stream)?;
            }
        }
        self.buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(host_port("tls://u:p@127.0.0.1:4333/"), "127.0.0.1:4333");
        assert_eq!(host_port("nats://localhost"), "localhost:4222");
        assert_eq!(host_port("127.0.0.1:5"), "127.0.0.1:5");
        assert_eq!(
            with_tls("nats://u:p@1.2.3.4:5", true),
            "tls://u:p@1.2.3.4:5"
        );
        assert_eq!(with_tls("1.2.3.4:5", true), "tls://1.2.3.4:5");
        assert_eq!(with_tls("nats://1.2.3.4:5", false), "nats://1.2.3.4:5");
        assert!(is_tls("tls://x") && !is_tls("nats://x"));
        assert!(matches!(
            server_name("tls://127.0.0.1:4222").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("tls://localhost:4222").unwrap(),
            ServerName::DnsName(_)
        ));
        let info = serde_json::json!({"tls_required": true, "port": 4222});
        assert!(info_flag(&info, "tls_required"));
        assert!(!info_flag(&info, "tls_available") && !info_flag(&info, "port"));
    }

    /// A tls:// URL without certificates to trust fails before connecting.
    #[test]
    fn tls_url_needs_trust_or_fails_cleanly() {
        let e = connect("tls://127.0.0.1:1", Duration::from_millis(100));
        assert!(e.is_err());
    }
}
