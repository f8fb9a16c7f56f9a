//! The NATS byte stream carried in WebSocket frames (RFC 6455), after the HTTP upgrade: a read
//! half that is an [`AsyncRead`] of the payload bytes of the client's data frames, and a write
//! half that is an [`AsyncWrite`] turning each write into one binary message. The connection
//! core (the read loop, the writer task) runs on them unchanged.
//!
//! Frame headers are read and written with tungstenite's codec ([`FrameHeader`]). Its protocol
//! layer is not used: it refuses frames with RSV1 set, so it cannot carry permessage-deflate
//! (RFC 7692), and no version of it implements that extension. The deflate framing is done
//! here over flate2, as nats-server does it: both directions without context takeover (one
//! fresh compression per message), server messages compressed only above 64 bytes.
//!
//! What the read half meets besides data: a PING is answered with a PONG, a CLOSE with the
//! same status (then end of stream), a protocol error with a CLOSE 1002 naming it (then an
//! error). Those control frames reach the write half through [`Control`]; the read half wakes
//! the writer task (which flushes its stream when woken with nothing queued).

use std::io::{self, Cursor, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::{Control as Ctl, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Bytes read from the socket at a time.
const READ_SIZE: usize = 64 * 1024;
/// The largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;
/// Server messages this small or smaller are never compressed (nats-server's threshold).
const COMPRESS_THRESHOLD: usize = 64;
/// The most bytes one server message carries (a write of more is taken in part).
const MAX_MESSAGE: usize = 1024 * 1024;
/// Browsers fare better with frames no larger than this (nats-server's experience).
pub(crate) const BROWSER_FRAME_SIZE: usize = 4096;
/// What a sync flush ends a deflate block with; taken off before sending, put back before
/// inflating (RFC 7692 §7.2.1).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// RFC 6455 close statuses nats-server uses.
pub(crate) mod status {
    /// 1000: the client closed.
    pub(crate) const NORMAL: u16 = 1000;
    /// 1001: going away (shutdown, read or write errors, stale connection).
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// 1002: a protocol error (WebSocket framing or NATS parsing).
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
    /// 1007: a close frame whose reason was not UTF-8.
    pub(crate) const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: a policy violation (authorization, limits, slow consumer).
    pub(crate) const POLICY_VIOLATION: u16 = 1008;
    /// 1009: a message too big.
    pub(crate) const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1011: anything else.
    pub(crate) const INTERNAL_ERROR: u16 = 1011;
    /// 1015: a TLS handshake failure.
    pub(crate) const TLS_HANDSHAKE: u16 = 1015;
}

/// What was negotiated in the upgrade, for both halves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Negotiated {
    /// permessage-deflate is on.
    pub(crate) compress: bool,
    /// The client sends unmasked frames (`Nats-No-Masking: true`).
    pub(crate) no_masking: bool,
    /// A browser: server messages are cut into frames of [`BROWSER_FRAME_SIZE`].
    pub(crate) browser: bool,
    /// Safari: compressed messages are never fragmented.
    pub(crate) no_compressed_fragments: bool,
}

/// Control frames the read half wants sent, and whether a CLOSE has gone out.
#[derive(Default)]
pub(crate) struct Control {
    frames: Mutex<BytesMut>,
    close_queued: AtomicBool,
}

impl Control {
    fn push(&self, opcode: Ctl, payload: &[u8]) {
        if opcode == Ctl::Close && self.close_queued.swap(true, Ordering::AcqRel) {
            return; // one CLOSE per connection
        }
        let mut frames = self.frames.lock();
        put_frame(&mut frames, OpCode::Control(opcode), true, false, payload);
    }

    /// Moves the queued control frames to the end of `out`.
    fn take_into(&self, out: &mut BytesMut) {
        let mut frames = self.frames.lock();
        if !frames.is_empty() {
            out.extend_from_slice(&frames);
            frames.clear();
        }
    }
}

/// A CLOSE frame's payload: the status, then the reason cut to fit (with `...`), as
/// nats-server writes it.
pub(crate) fn close_payload(status: u16, reason: &str) -> Vec<u8> {
    let max = MAX_CONTROL_PAYLOAD as usize - 2;
    let mut body = reason.to_string();
    if body.len() > max {
        let mut cut = max - 3;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push_str("...");
    }
    let mut p = Vec::with_capacity(2 + body.len());
    p.extend_from_slice(&status.to_be_bytes());
    p.extend_from_slice(body.as_bytes());
    p
}

/// Appends one unmasked frame (header and payload) to `out`.
fn put_frame(out: &mut BytesMut, opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) {
    put_header(out, opcode, fin, rsv1, payload.len());
    out.extend_from_slice(payload);
}

fn put_header(out: &mut BytesMut, opcode: OpCode, fin: bool, rsv1: bool, len: usize) {
    let header = FrameHeader {
        is_final: fin,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    };
    let mut w = out.writer();
    // Writing into memory cannot fail.
    let _ = header.format(len as u64, &mut w);
}

/// Splits a fresh connection into its two halves.
pub(crate) fn split<R, W>(
    reader: R,
    writer: W,
    negotiated: Negotiated,
    max_payload: usize,
    wake_writer: Box<dyn Fn() + Send + Sync>,
    close_status: Box<dyn Fn() -> (u16, String) + Send + Sync>,
) -> (WsReader<R>, WsWriter<W>) {
    let control = Arc::new(Control::default());
    let reader = WsReader {
        io: reader,
        buf: BytesMut::with_capacity(READ_SIZE),
        rem: 0,
        mask: None,
        mask_pos: 0,
        in_message: false,
        compressed: false,
        last_fragment: false,
        inflate: negotiated.compress.then(|| Decompress::new(false)),
        cbuf: Vec::new(),
        out: BytesMut::new(),
        eof: false,
        expect_mask: !negotiated.no_masking,
        // A compressed message is gathered whole before it is inflated: nats-server allows
        // eight times max_payload (at most 64 MiB) for that, and its inflated bytes may not
        // exceed max_payload.
        max_message: max_payload.saturating_mul(8).min(64 * 1024 * 1024),
        max_inflated: max_payload,
        control: control.clone(),
        wake_writer,
    };
    let writer = WsWriter {
        io: writer,
        pending: BytesMut::new(),
        accepted: None,
        deflate: negotiated
            .compress
            .then(|| Compress::new(Compression::fast(), false)),
        frame_size: negotiated.browser.then_some(BROWSER_FRAME_SIZE),
        fragment_compressed: !negotiated.no_compressed_fragments,
        control,
        close_status,
        shut: false,
    };
    (reader, writer)
}

/// The read half: the payload bytes of the client's data messages, in order.
pub(crate) struct WsReader<R> {
    io: R,
    /// Bytes read from the socket, not yet decoded.
    buf: BytesMut,
    /// Payload bytes left in the current data frame.
    rem: u64,
    mask: Option<[u8; 4]>,
    /// Where in the mask the next payload byte is.
    mask_pos: usize,
    /// A message was started and its final frame not seen yet.
    in_message: bool,
    /// The current message is compressed.
    compressed: bool,
    /// The current frame is the message's last.
    last_fragment: bool,
    inflate: Option<Decompress>,
    /// A compressed message's payload, gathered until its final frame.
    cbuf: Vec<u8>,
    /// Inflated bytes not yet handed out.
    out: BytesMut,
    /// The client sent CLOSE: end of stream once `out` is empty.
    eof: bool,
    expect_mask: bool,
    /// The most bytes one compressed message may take on the wire.
    max_message: usize,
    /// The most bytes it may inflate to (nats-server: max_payload).
    max_inflated: usize,
    control: Arc<Control>,
    wake_writer: Box<dyn Fn() + Send + Sync>,
}

/// What decoding the buffered bytes came to.
enum Step {
    /// Payload bytes were put in the caller's buffer (or `out`).
    Progress,
    /// More bytes must be read first.
    NeedMore,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// Fails the connection: CLOSE 1002 with `why`, and an error for the read loop.
    fn protocol_error(&mut self, why: &str) -> io::Error {
        self.send_control(Ctl::Close, &close_payload(status::PROTOCOL_ERROR, why));
        io::Error::new(io::ErrorKind::InvalidData, why.to_string())
    }

    fn send_control(&mut self, opcode: Ctl, payload: &[u8]) {
        self.control.push(opcode, payload);
        (self.wake_writer)();
    }

    /// Decodes what `buf` holds into `dst` (or into `out`, for compressed messages).
    fn step(&mut self, dst: &mut ReadBuf<'_>) -> io::Result<Step> {
        if self.rem > 0 {
            if self.buf.is_empty() {
                return Ok(Step::NeedMore);
            }
            let n = (self.rem.min(self.buf.len() as u64)) as usize;
            if self.compressed {
                if self.cbuf.len() + n > self.max_message {
                    return Err(self.too_big());
                }
                let start = self.cbuf.len();
                self.cbuf.extend_from_slice(&self.buf[..n]);
                if let Some(mask) = self.mask {
                    apply_mask(&mut self.cbuf[start..], mask, self.mask_pos);
                    self.mask_pos = (self.mask_pos + n) & 3;
                }
                self.buf.advance(n);
                self.rem -= n as u64;
                if self.rem == 0 && self.last_fragment {
                    self.inflate_message()?;
                }
                return Ok(Step::Progress);
            }
            let n = n.min(dst.remaining());
            let start = dst.filled().len();
            dst.put_slice(&self.buf[..n]);
            self.buf.advance(n);
            self.rem -= n as u64;
            if let Some(mask) = self.mask {
                let filled = &mut dst.filled_mut()[start..];
                apply_mask(filled, mask, self.mask_pos);
                self.mask_pos = (self.mask_pos + n) & 3;
            }
            return Ok(Step::Progress);
        }
        self.header()
    }

    fn too_big(&mut self) -> io::Error {
        self.send_control(
            Ctl::Close,
            &close_payload(status::MESSAGE_TOO_BIG, "Maximum Payload Violation"),
        );
        io::Error::new(io::ErrorKind::InvalidData, "maximum payload exceeded")
    }

    /// Reads the next frame header from `buf` (a control frame with its payload).
    fn header(&mut self) -> io::Result<Step> {
        let mut cursor = Cursor::new(&self.buf[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(Step::NeedMore),
            Err(e) => return Err(self.protocol_error(&e.to_string())),
        };
        let header_len = cursor.position() as usize;
        if header.rsv2 || header.rsv3 {
            return Err(self.protocol_error("RSV2 and RSV3 must be clear"));
        }
        if header.rsv1 && self.inflate.is_none() {
            return Err(self.protocol_error(
                "compressed frame received without negotiated permessage-deflate",
            ));
        }
        if self.expect_mask && header.mask.is_none() {
            return Err(self.protocol_error("mask bit missing"));
        }
        if len & (1 << 63) != 0 {
            return Err(self.protocol_error("invalid 64-bit payload length"));
        }
        match header.opcode {
            OpCode::Control(ctl) => {
                if len > MAX_CONTROL_PAYLOAD {
                    return Err(self.protocol_error(
                        "control frame length bigger than maximum allowed of 125 bytes",
                    ));
                }
                if !header.is_final {
                    return Err(self.protocol_error("control frame does not have final bit set"));
                }
                if header.rsv1 {
                    return Err(self.protocol_error("control frame must not be compressed"));
                }
                let total = header_len + len as usize;
                if self.buf.len() < total {
                    return Ok(Step::NeedMore);
                }
                let mut payload = self.buf[header_len..total].to_vec();
                self.buf.advance(total);
                if let Some(mask) = header.mask {
                    apply_mask(&mut payload, mask, 0);
                }
                self.control_frame(ctl, &payload)?;
                Ok(Step::Progress)
            }
            OpCode::Data(data) => {
                match data {
                    Data::Text | Data::Binary => {
                        if self.in_message {
                            return Err(self.protocol_error(
                                "new message started before final frame for previous message was received",
                            ));
                        }
                        self.compressed = header.rsv1;
                    }
                    Data::Continue => {
                        if !self.in_message || header.rsv1 {
                            return Err(self.protocol_error("invalid continuation frame"));
                        }
                    }
                    Data::Reserved(op) => {
                        return Err(self.protocol_error(&format!("unknown opcode {op}")));
                    }
                }
                self.buf.advance(header_len);
                self.in_message = !header.is_final;
                self.last_fragment = header.is_final;
                self.rem = len;
                self.mask = header.mask;
                self.mask_pos = 0;
                if self.compressed && len == 0 && header.is_final {
                    self.inflate_message()?;
                }
                Ok(Step::Progress)
            }
        }
    }

    fn control_frame(&mut self, ctl: Ctl, payload: &[u8]) -> io::Result<()> {
        match ctl {
            Ctl::Ping => self.send_control(Ctl::Pong, payload),
            Ctl::Pong => {}
            Ctl::Close => {
                if payload.len() == 1 {
                    return Err(self.protocol_error("close frame payload cannot be 1 byte"));
                }
                if payload.len() >= 2 {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    if !valid_close_status(code) {
                        return Err(
                            self.protocol_error(&format!("invalid close status code {code}"))
                        );
                    }
                    let reply = match std::str::from_utf8(&payload[2..]) {
                        Ok(_) => payload.to_vec(),
                        Err(_) => close_payload(
                            status::INVALID_PAYLOAD,
                            "invalid utf8 body in close frame",
                        ),
                    };
                    self.send_control(Ctl::Close, &reply);
                } else {
                    // No status: the reply carries none either.
                    self.send_control(Ctl::Close, &[]);
                }
                self.eof = true;
            }
            Ctl::Reserved(op) => {
                return Err(self.protocol_error(&format!("unknown opcode {op}")));
            }
        }
        Ok(())
    }

    /// Inflates the gathered compressed message into `out` (at most `max_inflated` bytes).
    fn inflate_message(&mut self) -> io::Result<()> {
        self.compressed = false;
        let mut input = std::mem::take(&mut self.cbuf);
        input.extend_from_slice(&DEFLATE_TAIL);
        let Some(inflate) = self.inflate.as_mut() else {
            return Err(io::Error::other("no inflater"));
        };
        let mut out = Vec::with_capacity((input.len() * 4).min(self.max_inflated + 1));
        let mut consumed = 0usize;
        let result = loop {
            if out.len() > self.max_inflated {
                break Err(());
            }
            if out.capacity() - out.len() < 4096 {
                out.reserve(out.capacity().max(4096));
            }
            let before_in = inflate.total_in();
            let before_out = out.len();
            match inflate.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync) {
                Ok(Status::StreamEnd) => break Ok(()),
                Ok(_) => {}
                Err(_) => break Err(()),
            }
            let taken = (inflate.total_in() - before_in) as usize;
            consumed += taken;
            let produced = out.len() - before_out;
            if consumed >= input.len() && produced == 0 {
                break Ok(());
            }
            if taken == 0 && produced == 0 {
                break Err(()); // no progress: the data is not a deflate stream
            }
            if consumed >= input.len() && out.len() < out.capacity() {
                break Ok(());
            }
        };
        // No context takeover: every message starts afresh.
        inflate.reset(false);
        input.clear();
        self.cbuf = input;
        match result {
            Ok(()) if out.len() <= self.max_inflated => {
                self.out.extend_from_slice(&out);
                Ok(())
            }
            Ok(()) => Err(self.too_big()),
            Err(()) => Err(self.protocol_error("invalid compressed data")),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for WsReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if dst.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(dst.remaining());
                dst.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let before = dst.filled().len();
            match this.step(dst)? {
                Step::Progress => {
                    if dst.filled().len() > before {
                        return Poll::Ready(Ok(()));
                    }
                    continue;
                }
                Step::NeedMore => {}
            }
            if this.buf.capacity() - this.buf.len() < READ_SIZE / 4 {
                this.buf.reserve(READ_SIZE);
            }
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.buf
            ))?;
            if n == 0 {
                return Poll::Ready(Ok(())); // the socket's end of stream
            }
        }
    }
}

/// XORs `data` with `mask`, starting `pos` bytes into it.
fn apply_mask(data: &mut [u8], mask: [u8; 4], pos: usize) {
    let key = [
        mask[pos & 3],
        mask[(pos + 1) & 3],
        mask[(pos + 2) & 3],
        mask[(pos + 3) & 3],
    ];
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let v = u64::from_ne_bytes(word) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// RFC 6455's valid close statuses, as nats-server checks them.
fn valid_close_status(code: u16) -> bool {
    !matches!(code, 1004 | 1005 | 1006 | 1015)
        && (1000..5000).contains(&code)
        && !(1016..=2999).contains(&code)
}

/// The write half: each write is one binary message (compressed when negotiated and larger
/// than 64 bytes), returned as written once the whole frame is on the socket.
pub(crate) struct WsWriter<W> {
    io: W,
    /// Framed bytes not yet written.
    pending: BytesMut,
    /// How many of the caller's bytes the frames in `pending` carry.
    accepted: Option<usize>,
    deflate: Option<Compress>,
    /// The largest frame to send (browsers).
    frame_size: Option<usize>,
    /// Compressed messages may be cut into frames of `frame_size`.
    fragment_compressed: bool,
    control: Arc<Control>,
    close_status: Box<dyn Fn() -> (u16, String) + Send + Sync>,
    shut: bool,
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    /// Frames `bufs` as one message at the end of `pending`.
    fn frame(&mut self, bufs: &[IoSlice<'_>], total: usize) {
        if let Some(deflate) = self.deflate.as_mut().filter(|_| total > COMPRESS_THRESHOLD) {
            let compressed = compress(deflate, bufs, total);
            let frame_size = self.frame_size.filter(|_| self.fragment_compressed);
            match frame_size {
                Some(size) if compressed.len() > size => {
                    let mut chunks = compressed.chunks(size).peekable();
                    let mut first = true;
                    while let Some(chunk) = chunks.next() {
                        let op = if first {
                            OpCode::Data(Data::Binary)
                        } else {
                            OpCode::Data(Data::Continue)
                        };
                        put_frame(&mut self.pending, op, chunks.peek().is_none(), first, chunk);
                        first = false;
                    }
                }
                _ => put_frame(
                    &mut self.pending,
                    OpCode::Data(Data::Binary),
                    true,
                    true,
                    &compressed,
                ),
            }
            return;
        }
        match self.frame_size {
            // Each piece its own message, as nats-server sends them to browsers.
            Some(size) if total > size => {
                let mut chunk = Vec::with_capacity(size);
                for b in bufs {
                    let mut b: &[u8] = b;
                    while !b.is_empty() {
                        let n = b.len().min(size - chunk.len());
                        chunk.extend_from_slice(&b[..n]);
                        b = &b[n..];
                        if chunk.len() == size {
                            put_frame(
                                &mut self.pending,
                                OpCode::Data(Data::Binary),
                                true,
                                false,
                                &chunk,
                            );
                            chunk.clear();
                        }
                    }
                }
                if !chunk.is_empty() {
                    put_frame(
                        &mut self.pending,
                        OpCode::Data(Data::Binary),
                        true,
                        false,
                        &chunk,
                    );
                }
            }
            _ => {
                self.pending.reserve(total + 10);
                put_header(
                    &mut self.pending,
                    OpCode::Data(Data::Binary),
                    true,
                    false,
                    total,
                );
                for b in bufs {
                    self.pending.extend_from_slice(b);
                }
            }
        }
    }

    /// Writes `pending` out.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        self.pending.clear();
        Poll::Ready(Ok(()))
    }

    fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.accepted.is_none() {
            // At most MAX_MESSAGE bytes per message (the rest is the next write's): the
            // frame is a copy, and a slow consumer's backlog must not become one buffer.
            let mut taken: SmallVec<[IoSlice<'_>; 8]> = SmallVec::new();
            let mut total = 0;
            for b in bufs {
                let n = b.len().min(MAX_MESSAGE - total);
                if n > 0 {
                    taken.push(IoSlice::new(&b[..n]));
                    total += n;
                }
                if total == MAX_MESSAGE {
                    break;
                }
            }
            if total == 0 {
                return Poll::Ready(Ok(0));
            }
            self.control.take_into(&mut self.pending);
            self.frame(&taken, total);
            self.accepted = Some(total);
        }
        ready!(self.poll_drain(cx))?;
        Poll::Ready(Ok(self.accepted.take().unwrap_or(0)))
    }
}

/// Compresses one message as permessage-deflate sends it: raw deflate, sync-flushed, without
/// the flush's last four bytes; the compressor starts afresh for the next message.
fn compress(deflate: &mut Compress, bufs: &[IoSlice<'_>], total: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total / 2 + 64);
    for b in bufs {
        let mut rest: &[u8] = b;
        while !rest.is_empty() {
            if out.capacity() - out.len() < 1024 {
                out.reserve(rest.len() / 2 + 1024);
            }
            let before = deflate.total_in();
            if deflate
                .compress_vec(rest, &mut out, FlushCompress::None)
                .is_err()
            {
                break;
            }
            rest = &rest[(deflate.total_in() - before) as usize..];
        }
    }
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(1024);
        }
        if deflate
            .compress_vec(&[], &mut out, FlushCompress::Sync)
            .is_err()
        {
            break;
        }
        if out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&DEFLATE_TAIL) {
        out.truncate(out.len() - DEFLATE_TAIL.len());
    }
    deflate.reset();
    out
}

impl<W: AsyncWrite + Unpin> AsyncWrite for WsWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_message(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_message(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.accepted.is_none() {
            this.control.take_into(&mut this.pending);
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shut && this.accepted.is_none() {
            this.shut = true;
            this.control.take_into(&mut this.pending);
            if !this.control.close_queued.swap(true, Ordering::AcqRel) {
                let (code, reason) = (this.close_status)();
                let payload = close_payload(code, &reason);
                put_frame(
                    &mut this.pending,
                    OpCode::Control(Ctl::Close),
                    true,
                    false,
                    &payload,
                );
            }
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_matches_the_byte_by_byte_definition() {
        let mask = [1, 2, 3, 4];
        for pos in 0..4 {
            for len in [0, 1, 7, 8, 9, 33] {
                let data: Vec<u8> = (0..len as u8).collect();
                let mut fast = data.clone();
                apply_mask(&mut fast, mask, pos);
                let slow: Vec<u8> = data
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(pos + i) & 3])
                    .collect();
                assert_eq!(fast, slow, "pos {pos} len {len}");
            }
        }
    }

    #[test]
    fn a_compressed_message_inflates_to_what_was_written() {
        let text = b"MSG a.subject 1 20\r\nsome payload bytes..\r\n".repeat(50);
        let mut deflate = Compress::new(Compression::fast(), false);
        let (a, b) = text.split_at(100);
        let compressed = compress(
            &mut deflate,
            &[IoSlice::new(a), IoSlice::new(b)],
            text.len(),
        );
        assert!(compressed.len() < text.len() / 4);
        assert!(!compressed.ends_with(&DEFLATE_TAIL));
        let mut input = compressed.clone();
        input.extend_from_slice(&DEFLATE_TAIL);
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&input[..])
            .read_to_end(&mut out)
            .ok();
        assert_eq!(out, text);
        // No context takeover: the next message compresses the same on its own.
        let again = compress(&mut deflate, &[IoSlice::new(&text)], text.len());
        assert_eq!(again, compressed);
    }

    #[test]
    fn close_reasons_are_cut_to_fit_a_control_frame() {
        let p = close_payload(status::POLICY_VIOLATION, &"x".repeat(200));
        assert_eq!(p.len(), 125);
        assert!(p.ends_with(b"..."));
        assert_eq!(&p[..2], &1008u16.to_be_bytes());
        assert!(valid_close_status(1000) && valid_close_status(4000));
        assert!(!valid_close_status(1005) && !valid_close_status(1016) && !valid_close_status(999));
    }

    use std::io::Read;

    /// Hands out its bytes in the given chunk sizes, one chunk per read.
    struct Chunked {
        data: Vec<u8>,
        sizes: Vec<usize>,
        at: usize,
        turn: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let size = this
                .sizes
                .get(this.turn % this.sizes.len().max(1))
                .copied()
                .unwrap_or(1);
            this.turn += 1;
            let n = size
                .max(1)
                .min(this.data.len() - this.at)
                .min(buf.remaining());
            buf.put_slice(&this.data[this.at..this.at + n]);
            this.at += n;
            Poll::Ready(Ok(()))
        }
    }

    /// Everything the read half yields from `data` read in `sizes` chunks, and the control
    /// frames it queued.
    fn read_all(
        data: Vec<u8>,
        sizes: Vec<usize>,
        negotiated: Negotiated,
    ) -> (io::Result<Vec<u8>>, BytesMut) {
        use tokio::io::AsyncReadExt;
        let io = Chunked {
            data,
            sizes,
            at: 0,
            turn: 0,
        };
        let (mut r, w) = split(
            io,
            tokio::io::sink(),
            negotiated,
            1024 * 1024,
            Box::new(|| {}),
            Box::new(|| (1000, String::new())),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        let result = rt.block_on(r.read_to_end(&mut out)).map(|_| out);
        let mut control = BytesMut::new();
        w.control.take_into(&mut control);
        (result, control)
    }

    /// A masked client frame.
    fn client_frame(out: &mut Vec<u8>, opcode: u8, fin: bool, mask: [u8; 4], payload: &[u8]) {
        out.push(opcode | if fin { 0x80 } else { 0 });
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    }

    /// A write larger than a message is taken in part; the rest goes in the next.
    #[test]
    fn writes_beyond_a_message_are_taken_in_part() {
        use tokio::io::AsyncWriteExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (_r, mut w) = split(
            tokio::io::empty(),
            Vec::new(),
            Negotiated::default(),
            1024,
            Box::new(|| {}),
            Box::new(|| (1000, String::new())),
        );
        let big = vec![7u8; MAX_MESSAGE + 10];
        let n = rt.block_on(w.write(&big)).unwrap();
        assert_eq!(n, MAX_MESSAGE);
        let n = rt.block_on(w.write(&big[n..])).unwrap();
        assert_eq!(n, 10);
        // Two binary frames: 10-byte and 4-byte headers.
        assert_eq!(w.io.len(), MAX_MESSAGE + 10 + 10 + 2);
        assert_eq!(&w.io[..2], &[0x82, 127]);
    }

    proptest::proptest! {
        /// Messages cut into fragments at any points, with PINGs between fragments, masked
        /// with any keys and read in chunks of any sizes, come out as their bytes in order;
        /// every PING is answered.
        #[test]
        fn fragments_masks_and_reads_of_any_size_give_the_payload(
            messages in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 1..6),
            cuts in proptest::collection::vec(0usize..300, 0..8),
            masks in proptest::collection::vec(proptest::array::uniform4(proptest::num::u8::ANY), 1..4),
            pings in proptest::collection::vec(proptest::bool::ANY, 0..8),
            sizes in proptest::collection::vec(1usize..40, 1..6),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            let mut pings_sent = 0;
            let mut k = 0;
            for m in &messages {
                expected.extend_from_slice(m);
                let mut points: Vec<usize> = cuts.iter().map(|c| c % (m.len() + 1)).collect();
                points.push(0);
                points.push(m.len());
                points.sort_unstable();
                points.dedup();
                let pieces: Vec<&[u8]> = points.windows(2).map(|w| &m[w[0]..w[1]]).collect();
                let pieces = if pieces.is_empty() { vec![&m[..]] } else { pieces };
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = if i == 0 { 2 } else { 0 };
                    let fin = i == pieces.len() - 1;
                    client_frame(&mut wire, opcode, fin, masks[k % masks.len()], piece);
                    if pings.get(k).copied().unwrap_or(false) {
                        client_frame(&mut wire, 9, true, masks[0], b"p");
                        pings_sent += 1;
                    }
                    k += 1;
                }
            }
            let (out, control) = read_all(wire, sizes, Negotiated::default());
            proptest::prop_assert_eq!(out.unwrap(), expected);
            // Each PONG is 3 bytes: header and the one-byte payload.
            proptest::prop_assert_eq!(control.len(), pings_sent * 3);
        }

        /// Whatever bytes arrive, the read half ends (data, end of stream or an error) without
        /// panicking, and never yields more than it was given.
        #[test]
        fn any_bytes_end_without_a_panic(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            sizes in proptest::collection::vec(1usize..64, 1..4),
            compress in proptest::bool::ANY,
        ) {
            let len = data.len();
            let negotiated = Negotiated { compress, ..Negotiated::default() };
            if let (Ok(out), _) = read_all(data, sizes, negotiated) {
                // Inflated data may be larger; uncompressed never is.
                if !compress {
                    proptest::prop_assert!(out.len() <= len);
                }
            }
        }
    }
}
