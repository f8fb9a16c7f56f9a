//! The client protocol as a server reads it: what clients send.

use bytes::{Bytes, BytesMut};

use crate::args::{parse_size, split_in, trim_end};
use crate::fast::{fast_line, Fast};
use crate::line::{read_line, Line, Verb, VerbTable};
use crate::{Limits, ProtoError};

/// One op sent by a client. Every slice points into the buffer given to
/// [`ClientParser::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// `CONNECT <json>`: the raw JSON text (see [`Connect::from_json`](crate::Connect::from_json)).
    Connect(&'a [u8]),
    /// `PUB` or `HPUB` with its body.
    Pub(Publish<'a>),
    /// `SUB <subject> [queue] <sid>`.
    Sub {
        /// The subject (not validated here).
        subject: &'a [u8],
        /// The queue group, if any.
        queue: Option<&'a [u8]>,
        /// The subscription id, an arbitrary token.
        sid: &'a [u8],
    },
    /// `UNSUB <sid> [max]`.
    Unsub {
        /// The subscription id.
        sid: &'a [u8],
        /// Auto-unsubscribe after this many messages. `None` when absent *or not a number*
        /// (nats-server treats an unparsable max as a plain unsubscribe); `Some(0)` is also a
        /// plain unsubscribe.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK` sent by a client: tolerated by nats-server.
    Ok,
    /// `INFO <json>` sent by a client: tolerated by nats-server. The raw JSON text.
    Info(&'a [u8]),
    /// `-ERR <text>` sent by a client (nats-server closes the connection). The raw text.
    Err(&'a [u8]),
}

/// A `PUB` or `HPUB` and its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// The subject (not validated here).
    pub subject: &'a [u8],
    /// The reply subject, if any.
    pub reply: Option<&'a [u8]>,
    /// `None` for `PUB`; `Some(n)` for `HPUB`, whose headers are `data[..n]`.
    pub header_len: Option<usize>,
    /// Headers (if any) followed by the payload: the announced total size, without the CRLF
    /// that ends the body. Points into the parsed buffer, so a caller holding it as `Bytes` can
    /// take it with `bytes.slice_ref(publish.data)` without copying.
    pub data: &'a [u8],
}

impl Publish<'_> {
    /// The header block (`data[..header_len]`), if this is an `HPUB`.
    pub fn headers(&self) -> Option<&[u8]> {
        self.header_len.map(|h| &self.data[..h])
    }

    /// The payload after the headers.
    pub fn payload(&self) -> &[u8] {
        &self.data[self.header_len.unwrap_or(0)..]
    }
}

/// An owned [`ClientOp`]: every field is a [`Bytes`] cut from the decoded buffer without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedClientOp {
    /// See [`ClientOp::Connect`].
    Connect(Bytes),
    /// See [`ClientOp::Pub`].
    Pub(OwnedPublish),
    /// See [`ClientOp::Sub`].
    Sub {
        /// The subject.
        subject: Bytes,
        /// The queue group, if any.
        queue: Option<Bytes>,
        /// The subscription id.
        sid: Bytes,
    },
    /// See [`ClientOp::Unsub`].
    Unsub {
        /// The subscription id.
        sid: Bytes,
        /// See [`ClientOp::Unsub`].
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// See [`ClientOp::Info`].
    Info(Bytes),
    /// See [`ClientOp::Err`].
    Err(Bytes),
}

/// An owned [`Publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPublish {
    /// The subject.
    pub subject: Bytes,
    /// The reply subject, if any.
    pub reply: Option<Bytes>,
    /// `None` for `PUB`; `Some(n)` for `HPUB`, whose headers are `data[..n]`.
    pub header_len: Option<usize>,
    /// Headers (if any) followed by the payload.
    pub data: Bytes,
}

impl OwnedClientOp {
    /// Converts a borrowed op whose slices all point into `frame`.
    fn from_frame(op: ClientOp<'_>, frame: &Bytes) -> Self {
        let s = |x: &[u8]| frame.slice_ref(x);
        match op {
            ClientOp::Connect(j) => Self::Connect(s(j)),
            ClientOp::Pub(p) => Self::Pub(OwnedPublish {
                subject: s(p.subject),
                reply: p.reply.map(s),
                header_len: p.header_len,
                data: s(p.data),
            }),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => Self::Sub {
                subject: s(subject),
                queue: queue.map(s),
                sid: s(sid),
            },
            ClientOp::Unsub { sid, max } => Self::Unsub { sid: s(sid), max },
            ClientOp::Ping => Self::Ping,
            ClientOp::Pong => Self::Pong,
            ClientOp::Ok => Self::Ok,
            ClientOp::Info(j) => Self::Info(s(j)),
            ClientOp::Err(t) => Self::Err(s(t)),
        }
    }
}

const CLIENT_VERBS: &VerbTable = &[
    (b"PUB", Verb::Pub),
    (b"HPUB", Verb::Hpub),
    (b"SUB", Verb::Sub),
    (b"UNSUB", Verb::Unsub),
    (b"PING", Verb::Ping),
    (b"PONG", Verb::Pong),
    (b"CONNECT", Verb::Connect),
    (b"+OK", Verb::Ok),
    (b"INFO", Verb::Info),
    (b"-ERR", Verb::Err),
];

/// Parses what a client sends, as nats-server does: verbs in any case, arguments separated by
/// spaces or tabs, control lines ending in `\r\n` or `\n`, bodies followed by exactly `\r\n`.
///
/// Stateless between ops: each call re-reads the control line at the front of the buffer, so
/// feeding the same bytes split at any points gives the same ops.
#[derive(Debug, Clone)]
pub struct ClientParser {
    limits: Limits,
    hint: Option<usize>,
}

impl ClientParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self { limits, hint: None }
    }

    /// Changes the limits (e.g. after a config reload); applies from the next call.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Parses the op at the front of `buf`: `Ok(Some((op, consumed)))`, or `Ok(None)` when more
    /// bytes are needed.
    ///
    /// The max control line and the max payload are enforced here, before a body is buffered:
    /// a `PUB` whose size exceeds the max payload is an error as soon as its control line is
    /// complete.
    #[inline]
    pub fn parse<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(ClientOp<'a>, usize)>, ProtoError> {
        self.hint = None;
        if let Some(f) = fast_pub(buf, self.limits) {
            if let Some((data, next)) = f.body(buf) {
                let p = Publish {
                    subject: f.front[0],
                    reply: f.reply,
                    header_len: f.header_len,
                    data,
                };
                return Ok(Some((ClientOp::Pub(p), next)));
            }
        }
        self.parse_general(buf)
    }

    /// The general parser: every op, every spelling. [`parse`](Self::parse) tries a fast path
    /// for the common `PUB` form first and falls back to this; both give the same result.
    #[inline]
    pub(crate) fn parse_general<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(ClientOp<'a>, usize)>, ProtoError> {
        self.hint = None;
        let Some(line) = read_line(buf, CLIENT_VERBS, self.limits.max_control_line)? else {
            return Ok(None);
        };
        let op = match line.verb {
            Verb::Pub => return self.publish(buf, line, false),
            Verb::Hpub => return self.publish(buf, line, true),
            Verb::Sub => {
                let mut a = [&b""[..]; 3];
                match split_in(buf, line.start, line.start + line.args.len(), &mut a) {
                    2 => ClientOp::Sub {
                        subject: a[0],
                        queue: None,
                        sid: a[1],
                    },
                    3 => ClientOp::Sub {
                        subject: a[0],
                        queue: Some(a[1]),
                        sid: a[2],
                    },
                    _ => return Err(ProtoError::InvalidArgs { op: "SUB" }),
                }
            }
            Verb::Unsub => {
                let mut a = [&b""[..]; 2];
                match split_in(buf, line.start, line.start + line.args.len(), &mut a) {
                    1 => ClientOp::Unsub {
                        sid: a[0],
                        max: None,
                    },
                    2 => ClientOp::Unsub {
                        sid: a[0],
                        max: parse_size(a[1]).map(|m| m as u64),
                    },
                    _ => return Err(ProtoError::InvalidArgs { op: "UNSUB" }),
                }
            }
            Verb::Ping => ClientOp::Ping,
            Verb::Pong => ClientOp::Pong,
            Verb::Ok => ClientOp::Ok,
            Verb::Connect => ClientOp::Connect(trim_end(line.args)),
            Verb::Info => ClientOp::Info(trim_end(line.args)),
            Verb::Err => ClientOp::Err(trim_end(line.args)),
            _ => return Err(ProtoError::UnknownOp),
        };
        Ok(Some((op, line.next)))
    }

    #[inline]
    fn publish<'a>(
        &mut self,
        buf: &'a [u8],
        line: Line<'a>,
        headers: bool,
    ) -> Result<Option<(ClientOp<'a>, usize)>, ProtoError> {
        let start = line.next;
        let mut a = [&b""[..]; 4];
        let n = split_in(buf, line.start, line.start + line.args.len(), &mut a);
        let (subject, reply, header_len, total) = if headers {
            const OP: ProtoError = ProtoError::InvalidArgs { op: "HPUB" };
            let (subject, reply, h, t) = match n {
                3 => (a[0], None, a[1], a[2]),
                4 => (a[0], Some(a[1]), a[2], a[3]),
                _ => return Err(OP),
            };
            let h = parse_size(h).ok_or(OP)?;
            let t = parse_size(t).ok_or(OP)?;
            if h > t {
                return Err(ProtoError::HeaderSize);
            }
            (subject, reply, Some(h), t)
        } else {
            const OP: ProtoError = ProtoError::InvalidArgs { op: "PUB" };
            let (subject, reply, t) = match n {
                2 => (a[0], None, a[1]),
                3 => (a[0], Some(a[1]), a[2]),
                _ => return Err(OP),
            };
            (subject, reply, None, parse_size(t).ok_or(OP)?)
        };
        if total > self.limits.max_payload {
            return Err(ProtoError::MaxPayload {
                size: total,
                max: self.limits.max_payload,
            });
        }
        match body(buf, start, total)? {
            Some((data, next)) => Ok(Some((
                ClientOp::Pub(Publish {
                    subject,
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

    /// After [`parse`](Self::parse) returned `Ok(None)`: the total number of bytes the frame at
    /// the front of the buffer needs, when known (control line parsed, body still missing), so
    /// the caller can reserve capacity. `None` when the control line itself is incomplete.
    pub fn frame_len_hint(&self) -> Option<usize> {
        self.hint
    }

    /// Owned convenience API: parses the op at the front of `buf` and splits its bytes off
    /// `buf`. Fields are [`Bytes`] sharing the split-off frame (no copy).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<OwnedClientOp>, ProtoError> {
        let consumed = match self.parse(buf)? {
            Some((_, n)) => n,
            None => return Ok(None),
        };
        let frame = buf.split_to(consumed).freeze();
        // Parsing is a pure function of the bytes: the frame parses the same way again.
        let (op, _) = self.parse(&frame)?.ok_or(ProtoError::UnknownOp)?;
        Ok(Some(OwnedClientOp::from_frame(op, &frame)))
    }
}

impl Default for ClientParser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// The common `PUB`/`HPUB` forms without the general machinery (see [`fast_line`]).
#[inline(always)]
fn fast_pub(buf: &[u8], limits: Limits) -> Option<Fast<'_>> {
    if buf.len() < 8 {
        return None;
    }
    let w = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if w | 0x0020_2020 == u32::from_le_bytes(*b"pub ") {
        fast_line(buf, 4, 1, false, limits)
    } else if w | 0x2020_2020 == u32::from_le_bytes(*b"hpub") && buf[4] == b' ' {
        fast_line(buf, 5, 1, true, limits)
    } else {
        None
    }
}

/// The body of `total` bytes starting at `start`, which must be followed by `\r\n`:
/// `Ok(Some((data, next)))`, `Ok(None)` if incomplete. A wrong terminator byte is reported as
/// soon as it is present, as nats-server does.
#[inline]
pub(crate) fn body(
    buf: &[u8],
    start: usize,
    total: usize,
) -> Result<Option<(&[u8], usize)>, ProtoError> {
    let end = start + total;
    match buf.get(end..end + 2) {
        Some(b"\r\n") => Ok(Some((&buf[start..end], end + 2))),
        Some(_) => Err(ProtoError::MissingCrlf),
        None => {
            if buf.len() > end && buf[end] != b'\r' {
                return Err(ProtoError::MissingCrlf);
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::first_line_end;

    /// The `PUB`/`HPUB` fast path must agree with the general parser on every input,
    /// including the near-misses it hands over.
    #[test]
    fn fast_path_agrees_with_general_parser() {
        let verbs: &[&[u8]] = &[
            b"PUB ", b"pub ", b"pUb ", b"PUB\t", b"PUB  ", b"HPUB ", b"hpub ", b"HPUB\t", b"HPUB  ",
        ];
        let fronts: &[&[&[u8]]] = &[
            &[b"foo"],
            &[b"f"],
            &[b"foo.bar.baz.qux.quux"],
            &[b"a\rb"],
            &[b"x\x00y"],
            &[],
        ];
        let limits = [
            Limits::default(),
            Limits {
                max_control_line: 8,
                max_payload: 5,
            },
        ];
        let mut checked = 0;
        for line in crate::fast::near_misses(verbs, fronts) {
            for l in limits {
                for cut in first_line_end(&line)..=line.len() {
                    let input = &line[..cut];
                    let fast = ClientParser::new(l).parse(input);
                    let general = ClientParser::new(l).parse_general(input);
                    assert_eq!(fast, general, "{:?}", String::from_utf8_lossy(input));
                    checked += 1;
                }
            }
        }
        assert!(checked > 100_000);
    }
}
