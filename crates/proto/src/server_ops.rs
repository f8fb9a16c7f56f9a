//! The client protocol as a client reads it: what servers send. Used by tests, the load tool
//! and the in-repo raw clients.

use bytes::{Bytes, BytesMut};

use crate::args::{parse_size, split, trim, trim_end};
use crate::client::body;
use crate::fast::{fast_line, Fast};
use crate::line::{read_line, Verb, VerbTable};
use crate::{Limits, ProtoError};

/// Control-line cap of a [`ServerParser`] when its limits say less: a server's `INFO` can be
/// long (many `connect_urls`), and a client should not refuse it.
pub(crate) const LENIENT_CONTROL_LINE: usize = 64 * 1024;

/// One op sent by a server. Every slice points into the buffer given to
/// [`ServerParser::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// `INFO <json>`: the raw JSON text (see [`Info::from_json`](crate::Info::from_json)).
    Info(&'a [u8]),
    /// `MSG` or `HMSG` with its body.
    Msg(Message<'a>),
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR '<text>'`: the text inside the single quotes.
    Err(&'a [u8]),
}

/// A `MSG` or `HMSG` and its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The subject.
    pub subject: &'a [u8],
    /// The subscription id.
    pub sid: &'a [u8],
    /// The reply subject, if any.
    pub reply: Option<&'a [u8]>,
    /// `None` for `MSG`; `Some(n)` for `HMSG`, whose headers are `data[..n]`.
    pub header_len: Option<usize>,
    /// Headers (if any) followed by the payload, without the CRLF that ends the body. Points
    /// into the parsed buffer.
    pub data: &'a [u8],
}

impl Message<'_> {
    /// The header block (`data[..header_len]`), if this is an `HMSG`.
    pub fn headers(&self) -> Option<&[u8]> {
        self.header_len.map(|h| &self.data[..h])
    }

    /// The payload after the headers.
    pub fn payload(&self) -> &[u8] {
        &self.data[self.header_len.unwrap_or(0)..]
    }
}

/// An owned [`ServerOp`]: fields are [`Bytes`] cut from the decoded buffer without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedServerOp {
    /// See [`ServerOp::Info`].
    Info(Bytes),
    /// See [`ServerOp::Msg`].
    Msg(OwnedMessage),
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// See [`ServerOp::Err`].
    Err(Bytes),
}

/// An owned [`Message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMessage {
    /// The subject.
    pub subject: Bytes,
    /// The subscription id.
    pub sid: Bytes,
    /// The reply subject, if any.
    pub reply: Option<Bytes>,
    /// `None` for `MSG`; `Some(n)` for `HMSG`, whose headers are `data[..n]`.
    pub header_len: Option<usize>,
    /// Headers (if any) followed by the payload.
    pub data: Bytes,
}

impl OwnedServerOp {
    fn from_frame(op: ServerOp<'_>, frame: &Bytes) -> Self {
        let s = |x: &[u8]| frame.slice_ref(x);
        match op {
            ServerOp::Info(j) => Self::Info(s(j)),
            ServerOp::Msg(m) => Self::Msg(OwnedMessage {
                subject: s(m.subject),
                sid: s(m.sid),
                reply: m.reply.map(s),
                header_len: m.header_len,
                data: s(m.data),
            }),
            ServerOp::Ping => Self::Ping,
            ServerOp::Pong => Self::Pong,
            ServerOp::Ok => Self::Ok,
            ServerOp::Err(t) => Self::Err(s(t)),
        }
    }
}

const SERVER_VERBS: &VerbTable = &[
    (b"MSG", Verb::Msg),
    (b"HMSG", Verb::Hmsg),
    (b"PING", Verb::Ping),
    (b"PONG", Verb::Pong),
    (b"+OK", Verb::Ok),
    (b"-ERR", Verb::Err),
    (b"INFO", Verb::Info),
];

/// Parses what a server sends to a client (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`,
/// `-ERR`), with the same framing rules as [`ClientParser`](crate::ClientParser).
///
/// The max payload is enforced; the control line is capped at the larger of the limit and
/// 64 KiB, since a server's `INFO` may legitimately be long.
#[derive(Debug, Clone)]
pub struct ServerParser {
    limits: Limits,
    hint: Option<usize>,
}

impl ServerParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits, hint: None }
    }

    /// Changes the limits; applies from the next call.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Parses the op at the front of `buf`: `Ok(Some((op, consumed)))`, or `Ok(None)` when more
    /// bytes are needed.
    pub fn parse<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(ServerOp<'a>, usize)>, ProtoError> {
        if let Some(f) = self.fast_msg(buf) {
            if let Some((data, next)) = f.body(buf) {
                self.hint = None;
                let m = Message {
                    subject: f.front[0],
                    sid: f.front[1],
                    reply: f.reply,
                    header_len: f.header_len,
                    data,
                };
                return Ok(Some((ServerOp::Msg(m), next)));
            }
        }
        self.parse_general(buf)
    }

    /// The common `MSG`/`HMSG` forms without the general machinery (see `fast_line`).
    #[inline(always)]
    fn fast_msg<'a>(&self, buf: &'a [u8]) -> Option<Fast<'a>> {
        if buf.len() < 8 {
            return None;
        }
        let limits = Limits {
            max_control_line: self.limits.max_control_line.max(LENIENT_CONTROL_LINE),
            ..self.limits
        };
        let w = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if w | 0x0020_2020 == u32::from_le_bytes(*b"msg ") {
            fast_line(buf, 4, 2, false, limits)
        } else if w | 0x2020_2020 == u32::from_le_bytes(*b"hmsg") && buf[4] == b' ' {
            fast_line(buf, 5, 2, true, limits)
        } else {
            None
        }
    }

    /// The general parser: every op, every spelling.
    pub(crate) fn parse_general<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(ServerOp<'a>, usize)>, ProtoError> {
        self.hint = None;
        let max_line = self.limits.max_control_line.max(LENIENT_CONTROL_LINE);
        let Some(line) = read_line(buf, SERVER_VERBS, max_line)? else {
            return Ok(None);
        };
        let op = match line.verb {
            Verb::Msg | Verb::Hmsg => {
                return self.message(buf, line.args, line.next, line.verb == Verb::Hmsg)
            }
            Verb::Ping => ServerOp::Ping,
            Verb::Pong => ServerOp::Pong,
            Verb::Ok => ServerOp::Ok,
            Verb::Info => ServerOp::Info(trim_end(line.args)),
            Verb::Err => ServerOp::Err(unquote(line.args)),
            _ => return Err(ProtoError::UnknownOp),
        };
        Ok(Some((op, line.next)))
    }

    fn message<'a>(
        &mut self,
        buf: &'a [u8],
        args: &'a [u8],
        start: usize,
        headers: bool,
    ) -> Result<Option<(ServerOp<'a>, usize)>, ProtoError> {
        let mut a = [&b""[..]; 5];
        let n = split(args, &mut a);
        let (subject, sid, reply, header_len, total) = if headers {
            const OP: ProtoError = ProtoError::InvalidArgs { op: "HMSG" };
            let (subject, sid, reply, h, t) = match n {
                4 => (a[0], a[1], None, a[2], a[3]),
                5 => (a[0], a[1], Some(a[2]), a[3], a[4]),
                _ => return Err(OP),
            };
            let h = parse_size(h).ok_or(OP)?;
            let t = parse_size(t).ok_or(OP)?;
            if h > t {
                return Err(ProtoError::HeaderSize);
            }
            (subject, sid, reply, Some(h), t)
        } else {
            const OP: ProtoError = ProtoError::InvalidArgs { op: "MSG" };
            let (subject, sid, reply, t) = match n {
                3 => (a[0], a[1], None, a[2]),
                4 => (a[0], a[1], Some(a[2]), a[3]),
                _ => return Err(OP),
            };
            (subject, sid, reply, None, parse_size(t).ok_or(OP)?)
        };
        if total > self.limits.max_payload {
            return Err(ProtoError::MaxPayload {
                size: total,
                max: self.limits.max_payload,
            });
        }
        match body(buf, start, total)? {
            Some((data, next)) => Ok(Some((
                ServerOp::Msg(Message {
                    subject,
                    sid,
                    reply,
                    header_len,
                    data,
                }),
                next,
            ))),
            None => {
                self.hint = Some(start + total + 2);
                Ok(None)
            }
        }
    }

    /// After [`parse`](Self::parse) returned `Ok(None)`: the total bytes the frame at the front
    /// needs, when its control line is complete.
    pub fn frame_len_hint(&self) -> Option<usize> {
        self.hint
    }

    /// Owned convenience API: parses the op at the front of `buf` and splits its bytes off
    /// `buf`. Fields are [`Bytes`] sharing the split-off frame (no copy).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<OwnedServerOp>, ProtoError> {
        let consumed = match self.parse(buf)? {
            Some((_, n)) => n,
            None => return Ok(None),
        };
        let frame = buf.split_to(consumed).freeze();
        let (op, _) = self.parse(&frame)?.ok_or(ProtoError::UnknownOp)?;
        Ok(Some(OwnedServerOp::from_frame(op, &frame)))
    }
}

impl Default for ServerParser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// The text of an `-ERR`: trimmed, and without the single quotes around it when present.
pub(crate) fn unquote(args: &[u8]) -> &[u8] {
    let t = trim(args);
    match t {
        [b'\'', inner @ .., b'\''] => inner,
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::first_line_end;

    #[test]
    fn fast_path_agrees_with_general_parser() {
        let verbs: &[&[u8]] = &[b"MSG ", b"msg ", b"MSG\t", b"HMSG ", b"hmsg ", b"HMSG  "];
        let fronts: &[&[&[u8]]] = &[
            &[b"foo", b"1"],
            &[b"foo.bar.baz.qux.quux", b"123456789"],
            &[b"a\rb", b"s"],
            &[b"foo"],
            &[],
        ];
        let limits = [
            Limits::default(),
            Limits {
                max_control_line: 8,
                max_payload: 5,
            },
        ];
        for line in crate::fast::near_misses(verbs, fronts) {
            for l in limits {
                for cut in first_line_end(&line)..=line.len() {
                    let input = &line[..cut];
                    let fast = ServerParser::new(l).parse(input);
                    let general = ServerParser::new(l).parse_general(input);
                    assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(input));
                }
            }
        }
    }
}
