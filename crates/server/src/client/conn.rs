//! One socket client: the INFO/CONNECT handshake, the reader loop, and the protocol ops.
//!
//! The reader reads large chunks, parses every complete op in them, routes each PUB through
//! the sublist into the subscribers' outbound queues, and wakes each touched writer once at the
//! end of the chunk. Errors become exactly the `-ERR` (or silent close) nats-server produces.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use starling_proto::{encode, ClientOp, ClientParser, Connect, Limits, ProtoError, Publish};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, trace};

use super::{ClientShared, ClosedReason, ConnKind, OwnedSub};
use crate::delivery::{Msg, Touched, NO_RESPONDERS_HDR};
use crate::server::Shared;
use crate::subscription::Subscription;

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 64 * 1024;

/// How a protocol error ends the connection: with an `-ERR` text, or silently.
pub(crate) struct Close {
    reason: ClosedReason,
    err: Option<&'static str>,
}

impl Close {
    fn err(text: &'static str, reason: ClosedReason) -> Self {
        Self {
            reason,
            err: Some(text),
        }
    }

    fn silent(reason: ClosedReason) -> Self {
        Self { reason, err: None }
    }
}

/// Serves one client connection over any byte stream until it closes.
pub(crate) async fn serve<R, W>(
    shared: Arc<Shared>,
    reader: R,
    mut writer: W,
    addr: Option<SocketAddr>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    if shared.client_count() >= shared.opts.max_connections {
        // nats-server sends its INFO, then the error, then closes.
        let mut buf = BytesMut::new();
        encode::write_info(&mut buf, &shared.client_info(0, addr));
        encode::write_err(&mut buf, "maximum connections exceeded");
        let _ = writer.write_all(&buf).await;
        let _ = writer.shutdown().await;
        debug!(?addr, "maximum connections exceeded");
        return;
    }
    let conn = shared.register_client(ConnKind::Client, addr);
    conn.urls_seen.store(
        shared.urls_version.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    conn.out
        .push_with(|b| encode::write_info(b, &shared.client_info(conn.cid, addr)));
    conn.out.wake.notify_one();
    shared.tracker.spawn(super::writer::write_loop(
        shared.clone(),
        conn.clone(),
        writer,
    ));

    let mut client = Client::new(shared.clone(), conn.clone());
    client.run(reader).await;
    shared.unregister_client(&conn);
}

/// The reader side of one socket client.
struct Client {
    shared: Arc<Shared>,
    conn: Arc<ClientShared>,
    parser: ClientParser,
    /// CONNECT has been received.
    connected: bool,
    verbose: bool,
    pedantic: bool,
    no_responders: bool,
    pings_out: u32,
    /// Something arrived since the last ping timer tick.
    active: bool,
    /// When our last unanswered PING went out (its PONG measures the round trip).
    ping_sent: Option<std::time::Instant>,
    touched: Touched,
}

impl Client {
    fn new(shared: Arc<Shared>, conn: Arc<ClientShared>) -> Self {
        let limits = Limits {
            max_control_line: shared.opts.max_control_line,
            max_payload: shared.opts.max_payload,
        };
        Self {
            shared,
            conn,
            parser: ClientParser::new(limits),
            connected: false,
            // nats-server's defaults before (and under) CONNECT: verbose and pedantic.
            verbose: true,
            pedantic: true,
            no_responders: false,
            pings_out: 0,
            active: false,
            ping_sent: None,
            touched: Touched::default(),
        }
    }

    async fn run<R: AsyncRead + Unpin>(&mut self, mut reader: R) {
        let opts = &self.shared.opts;
        let ping_every = opts.ping_interval;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let auth_timer = tokio::time::sleep(opts.auth_timeout);
        tokio::pin!(auth_timer);
        let auth_required = opts.auth.is_required();
        let closing = self.conn.closing.clone();
        let mut buf = BytesMut::with_capacity(READ_SIZE);

        loop {
            if buf.capacity() - buf.len() < READ_SIZE / 4 {
                buf.reserve(READ_SIZE);
            }
            tokio::select! {
                biased;
                _ = closing.cancelled() => break,
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) => {
                        self.conn.close(ClosedReason::ClientClosed);
                        break;
                    }
                    Ok(_) => {
                        self.active = true;
                        self.conn.touch();
                        if self.parser.frame_len_hint().is_some_and(|n| buf.len() < n) {
                            continue; // the rest of a large payload is still on its way
                        }
                        let result = self.process(&mut buf);
                        self.touched.flush(&self.shared);
                        if let Err(close) = result {
                            self.close(close);
                            break;
                        }
                        if !self.shared.opts.no_fast_producer_stall {
                            self.touched.stall(&closing).await;
                        }
                    }
                    Err(e) => {
                        trace!(cid = self.conn.cid, error = %e, "read error");
                        self.conn.close(ClosedReason::ReadError);
                        break;
                    }
                },
                _ = ping.tick() => {
                    if let Err(close) = self.ping_timer() {
                        self.close(close);
                        break;
                    }
                }
                _ = &mut auth_timer, if auth_required && !self.connected => {
                    self.close(Close::err("Authentication Timeout", ClosedReason::AuthenticationTimeout));
                    break;
                }
            }
        }
    }

    /// Parses and handles every complete op in `buf`, keeping an incomplete tail.
    fn process(&mut self, buf: &mut BytesMut) -> Result<(), Close> {
        let chunk = buf.split().freeze();
        let mut pos = 0;
        let mut result = Ok(());
        let (mut msgs, mut bytes) = (0u64, 0u64);
        while pos < chunk.len() {
            match self.parser.parse(&chunk[pos..]) {
                Ok(Some((op, n))) => {
                    pos += n;
                    if let ClientOp::Pub(p) = &op {
                        msgs += 1;
                        bytes += p.data.len() as u64;
                    }
                    if let Err(close) = self.handle(op, &chunk) {
                        result = Err(close);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    result = Err(proto_close(&e));
                    break;
                }
            }
        }
        self.conn.count_in(&self.shared, msgs, bytes);
        if result.is_ok() && pos < chunk.len() {
            let rest = &chunk[pos..];
            let need = self.parser.frame_len_hint().unwrap_or(0).max(READ_SIZE);
            buf.reserve(need);
            buf.extend_from_slice(rest);
        }
        result
    }

    fn handle(&mut self, op: ClientOp<'_>, chunk: &Bytes) -> Result<(), Close> {
        if !self.connected
            && self.shared.opts.auth.is_required()
            && !matches!(op, ClientOp::Connect(_))
        {
            return Err(Close::err(
                "Authorization Violation",
                ClosedReason::AuthenticationViolation,
            ));
        }
        match op {
            ClientOp::Pub(p) => self.on_pub(p, chunk),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => {
                self.on_sub(subject, queue, sid);
                Ok(())
            }
            ClientOp::Unsub { sid, max } => {
                self.on_unsub(sid, max);
                Ok(())
            }
            ClientOp::Ping => {
                self.push(|b| b.extend_from_slice(encode::PONG));
                if self.connected && !self.conn.info_ready.swap(true, Ordering::Relaxed) {
                    self.first_pong_sent();
                }
                Ok(())
            }
            ClientOp::Pong => {
                self.pings_out = 0;
                if let Some(sent) = self.ping_sent.take() {
                    self.conn.set_rtt(sent.elapsed());
                }
                Ok(())
            }
            ClientOp::Connect(json) => self.on_connect(json),
            // Tolerated, as nats-server does: its parser shares these states with routes.
            ClientOp::Ok | ClientOp::Info(_) => Ok(()),
            ClientOp::Err(_) => Err(Close::silent(ClosedReason::ProtocolViolation)),
        }
    }

    fn on_connect(&mut self, json: &[u8]) -> Result<(), Close> {
        let connect =
            Connect::from_json(json).map_err(|_| Close::silent(ClosedReason::ParseError))?;
        if !(0..=1).contains(&connect.protocol) {
            return Err(Close::err(
                "invalid client protocol",
                ClosedReason::BadClientProtocolVersion,
            ));
        }
        if !self.shared.authorize(&connect) {
            return Err(Close::err(
                "Authorization Violation",
                ClosedReason::AuthenticationViolation,
            ));
        }
        if connect.no_responders && !connect.headers {
            return Err(Close::err(
                "no responders requires headers support",
                ClosedReason::NoRespondersRequiresHeaders,
            ));
        }
        self.verbose = connect.verbose;
        self.pedantic = connect.pedantic;
        self.no_responders = connect.no_responders;
        self.conn.echo.store(connect.echo, Ordering::Relaxed);
        self.conn.headers.store(connect.headers, Ordering::Relaxed);
        self.conn
            .protocol
            .store(connect.protocol.max(0) as u8, Ordering::Relaxed);
        {
            let mut meta = self.conn.meta.lock();
            meta.name = connect.name.clone();
            meta.lang = connect.lang.clone();
            meta.version = connect.version.clone();
            meta.user = connect.user.clone();
        }
        if self.conn.rtt().is_zero() {
            // As nats-server: the first estimate is the time from our INFO to the CONNECT.
            let since_info = std::time::SystemTime::now().duration_since(self.conn.start);
            self.conn.set_rtt(since_info.unwrap_or_default());
        }
        self.connected = true;
        self.ok();
        Ok(())
    }

    fn on_pub(&mut self, p: Publish<'_>, chunk: &Bytes) -> Result<(), Close> {
        if p.header_len.is_some() && !self.conn.wants_headers() {
            // nats-server: "message headers not supported", a parse error: silent close.
            return Err(Close::silent(ClosedReason::ParseError));
        }
        if self.pedantic && !starling_sublist::is_valid_literal_subject(p.subject) {
            // Reported, but the message is still routed (as nats-server does).
            self.push_err("Invalid Publish Subject");
        }
        // nats-server acknowledges before routing: +OK precedes an echo of the message.
        self.ok();
        let msg = Msg::new(p.subject, p.reply, p.header_len, p.data, chunk);
        let delivered = self.shared.publish(&self.conn, &msg, &mut self.touched);
        if !delivered && self.no_responders {
            if let Some(reply) = p.reply {
                self.no_responders(reply);
            }
        }
        Ok(())
    }

    /// After the PONG that answers a client's handshake PING, nats-server sends an INFO if
    /// the cluster's client URLs changed since the client's first INFO (PONG first: clients
    /// require it as the reply to their handshake).
    fn first_pong_sent(&mut self) {
        let version = self.shared.urls_version.load(Ordering::Relaxed);
        if self.conn.protocol.load(Ordering::Relaxed) >= 1
            && self.conn.urls_seen.swap(version, Ordering::Relaxed) != version
        {
            let info = self
                .shared
                .client_info(self.conn.cid, self.conn.meta.lock().addr);
            self.push(|b| encode::write_info(b, &info));
        }
    }

    /// Tells a requester nobody listens: a 503 status message on its own subscription to the
    /// reply subject, if it has one (nats-server sends nothing otherwise).
    fn no_responders(&mut self, reply: &[u8]) {
        let result = self.shared.sublist.matches(reply);
        let Some(sub) = result.plain.iter().find(|s| s.conn.cid == self.conn.cid) else {
            return;
        };
        let owner = Bytes::from_static(NO_RESPONDERS_HDR);
        let msg = Msg::new(
            reply,
            None,
            Some(NO_RESPONDERS_HDR.len()),
            NO_RESPONDERS_HDR,
            &owner,
        );
        self.shared.deliver(sub, &msg, &mut self.touched);
    }

    fn on_sub(&mut self, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        let max_subs = self.shared.opts.max_subscriptions;
        let mut subs = self.conn.subs.lock();
        if subs.contains(sid) {
            // Re-using a sid is a silent no-op in nats-server.
            drop(subs);
            self.ok();
            return;
        }
        if max_subs > 0 && subs.len() >= max_subs {
            drop(subs);
            self.push_err("maximum subscriptions exceeded");
            return;
        }
        let sub = Arc::new(Subscription::new(self.conn.clone(), sid, None));
        match self.shared.insert_local_sub(&sub, subject, queue) {
            Ok(handle) => {
                subs.insert(OwnedSub { sub, handle });
                drop(subs);
                self.ok();
            }
            Err(_) => {
                drop(subs);
                self.push_err("Invalid Subject");
            }
        }
    }

    fn on_unsub(&mut self, sid: &[u8], max: Option<u64>) {
        let sub = self.conn.subs.lock().get(sid).map(|o| o.sub.clone());
        if let Some(sub) = sub {
            match max {
                Some(max) if max > 0 && sub.delivered.load(Ordering::Relaxed) < max => {
                    sub.max.store(max, Ordering::Relaxed);
                }
                _ => self.shared.remove_subscription(&sub),
            }
        }
        self.ok();
    }

    /// The keepalive timer: PING an idle client, give up after max_pings_out unanswered.
    fn ping_timer(&mut self) -> Result<(), Close> {
        // Clients require PONG as the first reply to their CONNECT+PING handshake: like
        // nats-server, no keepalive PING goes out before that PONG, for up to 2 s.
        const MAX_WAIT_FOR_FIRST_PONG: std::time::Duration = std::time::Duration::from_secs(2);
        if !self.conn.info_ready.load(Ordering::Relaxed)
            && self.conn.start.elapsed().unwrap_or_default() < MAX_WAIT_FOR_FIRST_PONG
        {
            return Ok(());
        }
        if self.pings_out + 1 > self.shared.opts.max_pings_out {
            return Err(Close::err(
                "Stale Connection",
                ClosedReason::StaleConnection,
            ));
        }
        if std::mem::take(&mut self.active) {
            return Ok(());
        }
        self.pings_out += 1;
        self.ping_sent = Some(std::time::Instant::now());
        self.push(|b| b.extend_from_slice(encode::PING));
        self.touched.flush(&self.shared);
        Ok(())
    }

    fn ok(&mut self) {
        if self.verbose {
            self.push(|b| b.extend_from_slice(encode::OK));
        }
    }

    fn push_err(&mut self, text: &str) {
        self.push(|b| encode::write_err(b, text));
    }

    fn push(&mut self, build: impl FnOnce(&mut BytesMut)) {
        // Messages this batch staged for ourselves (echo) go first: a PONG must follow them.
        self.touched.flush_conn(&self.shared, &self.conn);
        if self.conn.out.push_with(build) == crate::client::outbound::Appended::Signal {
            self.touched.signal(&self.conn);
        }
    }

    /// Ends the connection: the `-ERR` (if any) is queued first so the writer flushes it.
    fn close(&mut self, close: Close) {
        if let Some(text) = close.err {
            self.push_err(text);
            self.touched.flush(&self.shared);
        }
        debug!(cid = self.conn.cid, reason = %close.reason, "closing client connection");
        self.conn.close(close.reason);
    }
}

/// The close a codec error calls for, with nats-server's `-ERR` text when it sends one.
fn proto_close(e: &ProtoError) -> Close {
    let reason = match e {
        ProtoError::MaxControlLine => ClosedReason::MaxControlLineExceeded,
        ProtoError::MaxPayload { .. } => ClosedReason::MaxPayloadExceeded,
        ProtoError::UnknownOp | ProtoError::MissingCrlf => ClosedReason::ProtocolViolation,
        _ => ClosedReason::ParseError,
    };
    Close {
        reason,
        err: e.err_text(),
    }
}
