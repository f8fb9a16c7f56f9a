//! The route (cluster) protocol: `RS+`, `RS-`, `RMSG`, route `HMSG`, and the leaf-origin
//! variants `LS+`, `LS-`, `LMSG`, plus `INFO`/`CONNECT`/`PING`/`PONG`/`+OK`/`-ERR`.

use crate::args::{parse_size, trim_end, Tokens};
use crate::client::body;
use crate::fast::{fast_line, Fast};
use crate::line::{read_line, Verb, VerbTable};
use crate::server_ops::unquote;
use crate::{Limits, ProtoError};

/// Control-line cap for routes and leafnodes, which nats-server exempts from
/// `max_control_line` (queue lists can be long); the cap keeps memory bounded.
pub(crate) const ROUTE_CONTROL_LINE: usize = 64 * 1024;

/// One op received on a route (or, from [`LeafParser`](crate::LeafParser), on a leafnode
/// connection). Every slice points into the parsed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp<'a> {
    /// `INFO <json>`: the raw JSON text.
    Info(&'a [u8]),
    /// `CONNECT <json>`: the raw JSON text.
    Connect(&'a [u8]),
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR '<text>'`: the text inside the single quotes.
    Err(&'a [u8]),
    /// `RS+` (and `LS+`, with `origin` set on routes): interest appeared or a queue weight changed.
    Sub(RemoteSub<'a>),
    /// `RS-` (and `LS-`): interest went away. `weight` is always 1.
    Unsub(RemoteSub<'a>),
    /// `RMSG`, route `HMSG` (a routed message with headers) or `LMSG`.
    Msg(RoutedMessage<'a>),
}

/// The arguments of `RS+`/`RS-`/`LS+`/`LS-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSub<'a> {
    /// Origin cluster of a leaf-originated sub (`LS+` on routes; `LS-` when `lnocu` is on).
    pub origin: Option<&'a [u8]>,
    /// The account (`b""` on leafnode connections, which carry no account).
    pub account: &'a [u8],
    /// The subject.
    pub subject: &'a [u8],
    /// The queue group, if any.
    pub queue: Option<&'a [u8]>,
    /// The number of members of the queue group on the sender (1 if absent, and for plain subs).
    pub weight: u32,
}

/// A message received on a route or leafnode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedMessage<'a> {
    /// Origin cluster (`LMSG` on routes).
    pub origin: Option<&'a [u8]>,
    /// The account (`b""` on leafnode connections).
    pub account: &'a [u8],
    /// The subject.
    pub subject: &'a [u8],
    /// The reply subject, if any.
    pub reply: Option<&'a [u8]>,
    /// The queue groups the sender picked this server for (`+ reply q..` / `| q..` forms).
    pub queues: QueueNames<'a>,
    /// `None` without headers; `Some(n)` when `data[..n]` is a header block.
    pub header_len: Option<usize>,
    /// Headers (if any) followed by the payload, without the CRLF that ends the body.
    pub data: &'a [u8],
}

impl RoutedMessage<'_> {
    /// The header block, if any.
    pub fn headers(&self) -> Option<&[u8]> {
        self.header_len.map(|h| &self.data[..h])
    }

    /// The payload after the headers.
    pub fn payload(&self) -> &[u8] {
        &self.data[self.header_len.unwrap_or(0)..]
    }
}

/// The queue names of a routed message: a view of the raw space-separated list. Two lists
/// are equal when they name the same queues in the same order, whatever the blanks between.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueNames<'a> {
    raw: &'a [u8],
}

impl<'a> QueueNames<'a> {
    /// Wraps a raw list of queue names separated by spaces or tabs.
    pub fn new(raw: &'a [u8]) -> Self {
        Self {
            raw: crate::args::trim(raw),
        }
    }

    /// True when no queue names are listed.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The raw list (trimmed).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The names, in order.
    pub fn iter(&self) -> QueueIter<'a> {
        QueueIter {
            tokens: Tokens::new(self.raw),
        }
    }
}

impl PartialEq for QueueNames<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for QueueNames<'_> {}

impl<'a> IntoIterator for QueueNames<'a> {
    type Item = &'a [u8];
    type IntoIter = QueueIter<'a>;

    fn into_iter(self) -> QueueIter<'a> {
        self.iter()
    }
}

/// Iterator over [`QueueNames`].
#[derive(Debug, Clone)]
pub struct QueueIter<'a> {
    tokens: Tokens<'a>,
}

impl<'a> Iterator for QueueIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.tokens.next()
    }
}

/// Which leading tokens a message or sub line carries before the subject.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prefix {
    pub(crate) origin: bool,
    pub(crate) account: bool,
}

/// Parses `[origin] [account] subject [queue [weight]]`.
pub(crate) fn sub_args<'a>(
    args: &'a [u8],
    op: &'static str,
    prefix: Prefix,
) -> Result<RemoteSub<'a>, ProtoError> {
    let bad = || ProtoError::InvalidArgs { op };
    let mut t = Tokens::new(args);
    let origin = if prefix.origin {
        Some(t.next().ok_or_else(bad)?)
    } else {
        None
    };
    let account = if prefix.account {
        t.next().ok_or_else(bad)?
    } else {
        b""
    };
    let subject = t.next().ok_or_else(bad)?;
    let queue = t.next();
    let weight = match t.next() {
        Some(w) => u32::try_from(parse_size(w).ok_or_else(bad)?).map_err(|_| bad())?,
        None => 1,
    };
    if t.next().is_some() {
        return Err(bad());
    }
    Ok(RemoteSub {
        origin,
        account,
        subject,
        queue,
        weight,
    })
}

/// The control-line part of a routed message.
pub(crate) struct MsgArgs<'a> {
    origin: Option<&'a [u8]>,
    account: &'a [u8],
    subject: &'a [u8],
    reply: Option<&'a [u8]>,
    queues: QueueNames<'a>,
    header_len: Option<usize>,
    total: usize,
}

/// Parses `[origin] [account] subject [reply | + reply q.. | '|' q..] [hdr] size`.
/// With `zero_hdr_is_none`, a header size of 0 means "no headers" (route `LMSG`).
pub(crate) fn msg_args<'a>(
    args: &'a [u8],
    op: &'static str,
    prefix: Prefix,
    headered: bool,
    zero_hdr_is_none: bool,
) -> Result<MsgArgs<'a>, ProtoError> {
    let bad = || ProtoError::InvalidArgs { op };
    let mut t = Tokens::new(args);
    let origin = if prefix.origin {
        Some(t.next().ok_or_else(bad)?)
    } else {
        None
    };
    let account = if prefix.account {
        t.next().ok_or_else(bad)?
    } else {
        b""
    };
    let subject = t.next().ok_or_else(bad)?;
    let total = parse_size(t.next_back().ok_or_else(bad)?).ok_or_else(bad)?;
    let mut header_len = None;
    if headered {
        let h = parse_size(t.next_back().ok_or_else(bad)?).ok_or_else(bad)?;
        if h > total {
            return Err(ProtoError::HeaderSize);
        }
        if !(zero_hdr_is_none && h == 0) {
            header_len = Some(h);
        }
    }
    let (reply, queues) = match t.next() {
        None => (None, QueueNames::default()),
        Some(first) => {
            let after_first = t;
            match t.next() {
                None => (Some(first), QueueNames::default()),
                Some(second) if first == b"+" => (Some(second), QueueNames::new(t.rest())),
                Some(_) if first == b"|" => (None, QueueNames::new(after_first.rest())),
                Some(_) => return Err(bad()),
            }
        }
    };
    Ok(MsgArgs {
        origin,
        account,
        subject,
        reply,
        queues,
        header_len,
        total,
    })
}

/// Splits the body of a routed message once its control line is parsed.
pub(crate) fn routed_body<'a>(
    buf: &'a [u8],
    start: usize,
    m: MsgArgs<'a>,
    max_payload: usize,
    hint: &mut Option<usize>,
) -> Result<Option<(RouteOp<'a>, usize)>, ProtoError> {
    if m.total > max_payload {
        return Err(ProtoError::MaxPayload {
            size: m.total,
            max: max_payload,
        });
    }
    match body(buf, start, m.total)? {
        Some((data, next)) => Ok(Some((
            RouteOp::Msg(RoutedMessage {
                origin: m.origin,
                account: m.account,
                subject: m.subject,
                reply: m.reply,
                queues: m.queues,
                header_len: m.header_len,
                data,
            }),
            next,
        ))),
        None => {
            *hint = Some(start + m.total + 2);
            Ok(None)
        }
    }
}

const ROUTE_VERBS: &VerbTable = &[
    (b"RMSG", Verb::Rmsg),
    (b"HMSG", Verb::Hmsg),
    (b"RS+", Verb::RsPlus),
    (b"RS-", Verb::RsMinus),
    (b"LMSG", Verb::Lmsg),
    (b"LS+", Verb::LsPlus),
    (b"LS-", Verb::LsMinus),
    (b"PING", Verb::Ping),
    (b"PONG", Verb::Pong),
    (b"INFO", Verb::Info),
    (b"CONNECT", Verb::Connect),
    (b"+OK", Verb::Ok),
    (b"-ERR", Verb::Err),
];

/// Parses the route protocol (account-aware, 2.9 style: every op carries the account).
///
/// Routes are exempt from the max control line (a 64 KiB cap keeps memory bounded); the max
/// payload of the limits is enforced, so give a route parser a limit at least as large as any
/// peer's max payload.
#[derive(Debug, Clone)]
pub struct RouteParser {
    limits: Limits,
    lnocu: bool,
    hint: Option<usize>,
}

impl RouteParser {
    /// A parser enforcing `limits.max_payload`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            lnocu: false,
            hint: None,
        }
    }

    /// Changes the limits; applies from the next call.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Whether `LS-` carries the origin cluster (`LS- <origin> <acc> <subject> [queue]`),
    /// which a 2.10+ peer does when both sides advertised `lnocu`. Off by default (2.9 form
    /// `LS- <acc> <subject> [queue]`).
    pub fn set_lnocu(&mut self, on: bool) {
        self.lnocu = on;
    }

    /// Parses the op at the front of `buf`: `Ok(Some((op, consumed)))`, or `Ok(None)` when more
    /// bytes are needed.
    pub fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(RouteOp<'a>, usize)>, ProtoError> {
        if let Some(f) = self.fast_rmsg(buf) {
            if let Some((data, next)) = f.body(buf) {
                self.hint = None;
                let m = RoutedMessage {
                    origin: None,
                    account: f.front[0],
                    subject: f.front[1],
                    reply: f.reply,
                    queues: QueueNames::default(),
                    header_len: f.header_len,
                    data,
                };
                return Ok(Some((RouteOp::Msg(m), next)));
            }
        }
        self.parse_general(buf)
    }

    /// The common `RMSG`/`HMSG` forms (no queue list) without the general machinery.
    #[inline(always)]
    fn fast_rmsg<'a>(&self, buf: &'a [u8]) -> Option<Fast<'a>> {
        if buf.len() < 8 || buf[4] != b' ' {
            return None;
        }
        let limits = Limits {
            max_control_line: ROUTE_CONTROL_LINE,
            ..self.limits
        };
        let w = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) | 0x2020_2020;
        if w == u32::from_le_bytes(*b"rmsg") {
            fast_line(buf, 5, 2, false, limits)
        } else if w == u32::from_le_bytes(*b"hmsg") {
            fast_line(buf, 5, 2, true, limits)
        } else {
            None
        }
    }

    /// [`parse`](Self::parse) without its fast path: lets the fuzz targets check that both
    /// agree.
    #[cfg(fuzzing)]
    #[doc(hidden)]
    pub fn parse_general_for_fuzzing<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(RouteOp<'a>, usize)>, ProtoError> {
        self.parse_general(buf)
    }

    /// The general parser: every op, every spelling.
    pub(crate) fn parse_general<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(RouteOp<'a>, usize)>, ProtoError> {
        self.hint = None;
        let Some(line) = read_line(buf, ROUTE_VERBS, ROUTE_CONTROL_LINE)? else {
            return Ok(None);
        };
        let plain = Prefix {
            origin: false,
            account: true,
        };
        let leaf = Prefix {
            origin: true,
            account: true,
        };
        let op = match line.verb {
            Verb::Rmsg | Verb::Hmsg | Verb::Lmsg => {
                let m = match line.verb {
                    Verb::Rmsg => msg_args(line.args, "RMSG", plain, false, false)?,
                    Verb::Hmsg => msg_args(line.args, "HMSG", plain, true, false)?,
                    _ => msg_args(line.args, "LMSG", leaf, true, true)?,
                };
                return routed_body(buf, line.next, m, self.limits.max_payload, &mut self.hint);
            }
            Verb::RsPlus => RouteOp::Sub(sub_args(line.args, "RS+", plain)?),
            Verb::RsMinus => RouteOp::Unsub(unsub(sub_args(line.args, "RS-", plain)?)),
            Verb::LsPlus => RouteOp::Sub(sub_args(line.args, "LS+", leaf)?),
            Verb::LsMinus => {
                let prefix = Prefix {
                    origin: self.lnocu,
                    account: true,
                };
                RouteOp::Unsub(unsub(sub_args(line.args, "LS-", prefix)?))
            }
            other => control(other, line.args)?,
        };
        Ok(Some((op, line.next)))
    }

    /// After [`parse`](Self::parse) returned `Ok(None)`: the total bytes the frame at the front
    /// needs, when its control line is complete.
    pub fn frame_len_hint(&self) -> Option<usize> {
        self.hint
    }
}

/// An unsub ignores the weight.
pub(crate) fn unsub(mut s: RemoteSub<'_>) -> RemoteSub<'_> {
    s.weight = 1;
    s
}

/// The ops every route-like protocol shares.
pub(crate) fn control(verb: Verb, args: &[u8]) -> Result<RouteOp<'_>, ProtoError> {
    Ok(match verb {
        Verb::Ping => RouteOp::Ping,
        Verb::Pong => RouteOp::Pong,
        Verb::Ok => RouteOp::Ok,
        Verb::Info => RouteOp::Info(trim_end(args)),
        Verb::Connect => RouteOp::Connect(trim_end(args)),
        Verb::Err => RouteOp::Err(unquote(args)),
        _ => return Err(ProtoError::UnknownOp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::first_line_end;

    #[test]
    fn fast_path_agrees_with_general_parser() {
        let verbs: &[&[u8]] = &[b"RMSG ", b"rmsg ", b"RMSG\t", b"HMSG ", b"hmsg ", b"HMSG  "];
        let fronts: &[&[&[u8]]] = &[
            &[b"$G", b"foo"],
            &[b"$G", b"foo.bar.baz.qux.quux"],
            &[b"acc", b"|"],
            &[b"$G"],
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
                for lnocu in [false, true] {
                    for cut in first_line_end(&line)..=line.len() {
                        let input = &line[..cut];
                        let mut fast = RouteParser::new(l);
                        fast.set_lnocu(lnocu);
                        let mut general = fast.clone();
                        assert_eq!(
                            fast.parse(input),
                            general.parse_general(input),
                            "{:?}",
                            String::from_utf8_lossy(input)
                        );
                    }
                }
            }
        }
        // Queue lists go to the general parser.
        let mut p = RouteParser::new(Limits::default());
        let (op, _) = p
            .parse(b"RMSG $G foo + r q1 q2 1\r\nx\r\n")
            .unwrap()
            .unwrap();
        let RouteOp::Msg(m) = op else { panic!() };
        assert_eq!(m.queues.iter().count(), 2);
    }
}
