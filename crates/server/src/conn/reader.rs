//! The read side every connection kind shares: one read loop (read into a buffer, parse every
//! complete op, hand it to the protocol, keep the incomplete tail), the keepalive (PING when
//! idle, `Stale Connection` after too many unanswered), deadlines that close a connection, and
//! one way a reader stops ([`Close`]). The client, route and leafnode protocols are
//! [`Protocol`]s on it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use starling_proto::{ClientOp, ClientParser, LeafParser, ProtoError, RouteOp, RouteParser};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::{ClosedReason, Conn};

/// Bytes read at a time (and the least room kept free in the read buffer).
pub(crate) const READ_SIZE: usize = 64 * 1024;

/// Why a reader stops: the close reason, and the `-ERR` to send before closing, if any.
/// Kept as small as it was before it was shared (24 bytes): every op handler returns it, and
/// a larger `Result` costs the parse loop instructions per message; the text is boxed only
/// on the (rare) error path.
#[derive(Debug)]
pub(crate) struct Close {
    pub(crate) reason: ClosedReason,
    pub(crate) err: Option<Box<str>>,
}

impl Close {
    pub(crate) fn err(text: impl Into<Box<str>>, reason: ClosedReason) -> Self {
        Self {
            reason,
            err: Some(text.into()),
        }
    }

    pub(crate) fn silent(reason: ClosedReason) -> Self {
        Self { reason, err: None }
    }
}

/// A protocol's parser, as the read loop drives it.
pub(crate) trait Parse {
    type Op<'a>;
    fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Self::Op<'a>, usize)>, ProtoError>;
    /// How long the frame being parsed is, once its control line is known.
    fn frame_len_hint(&self) -> Option<usize>;
    /// The payload length of a message op (for the inbound counters).
    fn payload_len(op: &Self::Op<'_>) -> Option<usize>;
}

impl Parse for ClientParser {
    type Op<'a> = ClientOp<'a>;
    #[inline]
    fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(ClientOp<'a>, usize)>, ProtoError> {
        Self::parse(self, buf) // the inherent method
    }
    fn frame_len_hint(&self) -> Option<usize> {
        Self::frame_len_hint(self)
    }
    #[inline]
    fn payload_len(op: &ClientOp<'_>) -> Option<usize> {
        match op {
            ClientOp::Pub(p) => Some(p.data.len()),
            _ => None,
        }
    }
}

impl Parse for RouteParser {
    type Op<'a> = RouteOp<'a>;
    #[inline]
    fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(RouteOp<'a>, usize)>, ProtoError> {
        Self::parse(self, buf) // the inherent method
    }
    fn frame_len_hint(&self) -> Option<usize> {
        Self::frame_len_hint(self)
    }
    #[inline]
    fn payload_len(op: &RouteOp<'_>) -> Option<usize> {
        match op {
            RouteOp::Msg(m) => Some(m.data.len()),
            _ => None,
        }
    }
}

impl Parse for LeafParser {
    type Op<'a> = RouteOp<'a>;
    #[inline]
    fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(RouteOp<'a>, usize)>, ProtoError> {
        Self::parse(self, buf) // the inherent method
    }
    fn frame_len_hint(&self) -> Option<usize> {
        Self::frame_len_hint(self)
    }
    #[inline]
    fn payload_len(op: &RouteOp<'_>) -> Option<usize> {
        match op {
            RouteOp::Msg(m) => Some(m.data.len()),
            _ => None,
        }
    }
}

/// What a protocol handler gives the shared read loop.
pub(crate) trait Protocol {
    type Parser: Parse;

    fn conn(&self) -> &Arc<Conn>;
    fn parser(&mut self) -> &mut Self::Parser;
    fn keepalive(&mut self) -> &mut Keepalive;

    /// Handles one op (`chunk` holds it, for zero-copy payloads). `Ok(false)`: parse no more
    /// of this read for now (the client's CONNECT awaits its verdict).
    fn handle(&mut self, op: <Self::Parser as Parse>::Op<'_>, chunk: &Bytes)
        -> Result<bool, Close>;

    /// The close a codec error calls for.
    fn parse_error(&self, e: &ProtoError) -> Close;

    /// Counts what one read brought in.
    fn count_in(&mut self, msgs: u64, bytes: u64);

    /// Before a read's ops are handled.
    fn before_read(&mut self) {}

    /// After a read's ops were handled (`handled`: how that went): finish what they started
    /// (the client's pending CONNECT, which parses the rest of `buf` once decided), flush what
    /// they queued.
    fn after_read(
        &mut self,
        buf: &mut BytesMut,
        handled: Result<(), Close>,
    ) -> impl Future<Output = Result<(), Close>> + Send;

    /// The keepalive timer ticked.
    fn ping_timer(&mut self) -> Result<(), Close>;

    /// A time at which the connection is closed, and how (the client's auth timeout, the
    /// expiry of its authorization).
    fn deadline(&self) -> Option<(Instant, Close)> {
        None
    }

    /// Ends the connection: sends `close`'s `-ERR` first, if any, then closes it.
    fn close(&mut self, close: Close);
}

/// Reads `reader` until the connection closes: every read's complete ops go to `p`; the
/// keepalive timer first fires after `first_ping`, then every `every`.
pub(crate) async fn read_loop<P, R>(p: &mut P, mut reader: R, first_ping: Duration, every: Duration)
where
    P: Protocol + Send,
    R: AsyncRead + Unpin,
{
    let conn = p.conn().clone();
    let closing = conn.closing().clone();
    let mut ping = tokio::time::interval_at(Instant::now() + first_ping, every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Re-armed only when the protocol's deadline moves.
    let far = Instant::now() + Duration::from_secs(365 * 86_400);
    let timer = tokio::time::sleep_until(far);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    loop {
        if buf.capacity() - buf.len() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        let deadline = p.deadline().map(|(at, _)| at);
        if deadline != armed {
            armed = deadline;
            timer.as_mut().reset(deadline.unwrap_or(far));
        }
        let stop = tokio::select! {
            biased;
            _ = closing.cancelled() => return,
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => Some(Close::silent(ClosedReason::ClientClosed)),
                Err(e) => {
                    tracing::trace!(cid = conn.cid, error = %e, "read error");
                    Some(Close::silent(ClosedReason::ReadError))
                }
                Ok(_) => {
                    p.keepalive().activity();
                    conn.touch();
                    if p.parser().frame_len_hint().is_some_and(|n| buf.len() < n) {
                        continue; // the rest of a large payload is still on its way
                    }
                    p.before_read();
                    let handled = process(p, &mut buf);
                    p.after_read(&mut buf, handled).await.err()
                }
            },
            _ = ping.tick() => p.ping_timer().err(),
            _ = &mut timer, if armed.is_some() => p.deadline().map(|(_, close)| close),
        };
        if let Some(close) = stop {
            p.close(close);
            return;
        }
    }
}

/// Parses and handles every complete op in `buf`, keeping an incomplete tail. Inlined into
/// each caller: under callgrind (pubsub, 16 B) the client path costs 905 instructions per
/// message this way, 920 as a call, 880 when the loop was the client's own.
#[inline(always)]
pub(crate) fn process<P: Protocol>(p: &mut P, buf: &mut BytesMut) -> Result<(), Close> {
    let chunk = buf.split().freeze();
    let mut pos = 0;
    let mut result = Ok(());
    let (mut msgs, mut bytes) = (0u64, 0u64);
    while pos < chunk.len() {
        match p.parser().parse(&chunk[pos..]) {
            Ok(Some((op, n))) => {
                pos += n;
                if let Some(len) = P::Parser::payload_len(&op) {
                    (msgs, bytes) = (msgs + 1, bytes + len as u64);
                }
                match p.handle(op, &chunk) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(close) => {
                        result = Err(close);
                        break;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                result = Err(p.parse_error(&e));
                break;
            }
        }
    }
    if msgs > 0 {
        p.count_in(msgs, bytes);
    }
    if result.is_ok() && pos < chunk.len() {
        let need = p.parser().frame_len_hint().unwrap_or(0).max(READ_SIZE);
        buf.reserve(need);
        buf.extend_from_slice(&chunk[pos..]);
    }
    result
}

/// The keepalive every connection kind runs: PINGs out unanswered, activity since the last
/// tick, and when the last PING went out (its PONG measures the round trip).
#[derive(Debug, Default)]
pub(crate) struct Keepalive {
    pings_out: u32,
    active: bool,
    ping_sent: Option<std::time::Instant>,
}

impl Keepalive {
    /// Something arrived.
    #[inline]
    pub(crate) fn activity(&mut self) {
        self.active = true;
    }

    /// A PONG arrived: nothing is outstanding, and the round trip is measured.
    pub(crate) fn pong(&mut self, conn: &Conn) {
        self.pings_out = 0;
        if let Some(sent) = self.ping_sent.take() {
            conn.set_rtt(sent.elapsed());
        }
    }

    /// The timer ticked: `Err` (`Stale Connection`) after `max_pings_out` unanswered PINGs,
    /// `Ok(true)` when a PING should go out now (none is needed while the peer is active,
    /// unless `measure_rtt` and no round trip is known yet).
    pub(crate) fn tick(
        &mut self,
        conn: &Conn,
        max_pings_out: u32,
        measure_rtt: bool,
    ) -> Result<bool, Close> {
        if self.pings_out + 1 > max_pings_out {
            return Err(Close::err(
                "Stale Connection",
                ClosedReason::StaleConnection,
            ));
        }
        let rtt_unknown = measure_rtt && conn.rtt().is_zero();
        if std::mem::take(&mut self.active) && !rtt_unknown {
            return Ok(false);
        }
        self.pings_out += 1;
        self.ping_sent = Some(std::time::Instant::now());
        Ok(true)
    }
}
