//! A raw NATS client connection on blocking std sockets: cheap enough that the server, not the
//! client, is the bottleneck.
//!
//! [`connect`] does the handshake (INFO, CONNECT, PING/PONG) and returns a [`Conn`] whose
//! [`Reader`] and [`Writer`] halves can live on different threads. The writer appends
//! control lines and payloads to one flat buffer and writes it in large writes; the reader
//! reads large chunks and parses every complete op with `starling-proto`'s [`ServerParser`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use starling_proto::{encode, Limits, ServerOp, ServerParser};

use crate::error::{BenchError, Result};

/// The writer flushes once its buffer holds this many bytes.
pub const FLUSH_AT: usize = 64 * 1024;
/// How long one [`Reader::poll`] waits for bytes before it returns to its caller.
pub const POLL_WAIT: Duration = Duration::from_millis(50);
/// A write that makes no progress for this long fails the run instead of hanging it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
const READ_BUF: usize = 256 * 1024;

/// The `CONNECT` a bench client sends: headers on, no echo of its own messages not needed
/// (echo stays on: request/reply responders may share a connection with requesters), and the
/// user and password of a URL's `user:pass@`.
fn connect_line(url: &str) -> Vec<u8> {
    let creds = credentials(url).map_or(String::new(), |(u, p)| {
        format!(
            ",\"user\":{},\"pass\":{}",
            serde_json::json!(u),
            serde_json::json!(p)
        )
    });
    format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\
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

/// Resolves `nats://host:port` (or `host:port`) to a socket address.
pub fn resolve(url: &str) -> Result<SocketAddr> {
    let hostport = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tcp://"))
        .unwrap_or(url);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let hostport = hostport.trim_end_matches('/');
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:4222")
    };
    hostport
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

/// Connects to `url` and completes the handshake, all within `timeout`.
pub fn connect(url: &str, timeout: Duration) -> Result<Conn> {
    let deadline = Instant::now() + timeout;
    let addr = resolve(url)?;
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
    let mut got_info = false;
    while !got_info {
        conn.reader
            .poll_until(deadline, "the server's INFO", |op| {
                if let ServerOp::Info(_) = op {
                    got_info = true;
                }
                Ok(got_info)
            })?;
    }
    conn.writer.raw(&connect_line(url));
    conn.writer.flush()?;
    conn.reader.wait_pongs(1, deadline)?;
    Ok(conn)
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
    /// Sends a PING and waits for its PONG: every op sent before it has been processed.
    /// Every PING of a connection must go through here or be counted by the caller.
    pub fn round_trip(&mut self, timeout: Duration) -> Result<()> {
        let want = self.reader.pongs() + 1;
        self.writer.ping();
        self.writer.flush()?;
        self.reader.wait_pongs(want, Instant::now() + timeout)
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
}

impl Reader {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            pongs: 0,
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
        let n = match self.stream.read(&mut self.buf[self.end..]) {
            Ok(0) => return Err(BenchError::Closed("end of stream".into())),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(0)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(BenchError::io("reading from the server", e)),
        };
        self.end += n;
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
}

impl Writer {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(FLUSH_AT * 2),
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
        self.stream
            .write_all(&self.buf)
            .map_err(|e| BenchError::io("writing to the server", e))?;
        self.buf.clear();
        Ok(())
    }
}
