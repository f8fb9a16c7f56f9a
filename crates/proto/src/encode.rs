//! Writers for every op, into a caller's [`BufMut`].
//!
//! The hot ones (`MSG`, `HMSG`, `RMSG` control lines) allocate nothing beyond the buffer's own
//! growth and format numbers with `itoa`. Verbs are upper case, arguments separated by single
//! spaces, lines end in `\r\n`: what nats-server emits and what async-nats requires. The
//! control-line writers write only the line; the caller appends the body and [`CRLF`].
//!
//! Nothing here validates: subjects, sids and queue names must not contain whitespace.

use bytes::BufMut;

use crate::{Connect, Info, RouteConnect};

/// `PING\r\n`.
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`.
pub const PONG: &[u8] = b"PONG\r\n";
/// `+OK\r\n`.
pub const OK: &[u8] = b"+OK\r\n";
/// The line end, also written after every body.
pub const CRLF: &[u8] = b"\r\n";

#[inline(always)]
fn num(buf: &mut impl BufMut, n: usize) {
    // One or two digits by hand (the sizes of small messages and small headers), else itoa.
    if n < 10 {
        buf.put_u8(b'0' + n as u8);
    } else if n < 100 {
        buf.put_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    } else {
        let mut b = itoa::Buffer::new();
        buf.put_slice(b.format(n).as_bytes());
    }
}

#[inline(always)]
fn arg(buf: &mut impl BufMut, a: &[u8]) {
    buf.put_u8(b' ');
    buf.put_slice(a);
}

#[inline(always)]
fn sizes(buf: &mut impl BufMut, header_len: Option<usize>, total_len: usize) {
    if let Some(h) = header_len {
        buf.put_u8(b' ');
        num(buf, h);
    }
    buf.put_u8(b' ');
    num(buf, total_len);
    buf.put_slice(CRLF);
}

/// `MSG <subject> <sid> [reply] <payload_len>\r\n` (control line only).
#[inline]
pub fn write_msg(
    buf: &mut impl BufMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    payload_len: usize,
) {
    buf.put_slice(b"MSG ");
    buf.put_slice(subject);
    arg(buf, sid);
    if let Some(r) = reply {
        arg(buf, r);
    }
    sizes(buf, None, payload_len);
}

/// `HMSG <subject> <sid> [reply] <header_len> <total_len>\r\n` (control line only).
#[inline]
pub fn write_hmsg(
    buf: &mut impl BufMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    header_len: usize,
    total_len: usize,
) {
    buf.put_slice(b"HMSG ");
    buf.put_slice(subject);
    arg(buf, sid);
    if let Some(r) = reply {
        arg(buf, r);
    }
    sizes(buf, Some(header_len), total_len);
}

/// `PUB <subject> [reply] <payload_len>\r\n` (control line only).
#[inline]
pub fn write_pub(buf: &mut impl BufMut, subject: &[u8], reply: Option<&[u8]>, payload_len: usize) {
    buf.put_slice(b"PUB ");
    buf.put_slice(subject);
    if let Some(r) = reply {
        arg(buf, r);
    }
    sizes(buf, None, payload_len);
}

/// `HPUB <subject> [reply] <header_len> <total_len>\r\n` (control line only).
#[inline]
pub fn write_hpub(
    buf: &mut impl BufMut,
    subject: &[u8],
    reply: Option<&[u8]>,
    header_len: usize,
    total_len: usize,
) {
    buf.put_slice(b"HPUB ");
    buf.put_slice(subject);
    if let Some(r) = reply {
        arg(buf, r);
    }
    sizes(buf, Some(header_len), total_len);
}

/// `SUB <subject> [queue] <sid>\r\n`.
pub fn write_sub(buf: &mut impl BufMut, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
    buf.put_slice(b"SUB ");
    buf.put_slice(subject);
    if let Some(q) = queue {
        arg(buf, q);
    }
    arg(buf, sid);
    buf.put_slice(CRLF);
}

/// `UNSUB <sid> [max]\r\n`.
pub fn write_unsub(buf: &mut impl BufMut, sid: &[u8], max: Option<u64>) {
    buf.put_slice(b"UNSUB ");
    buf.put_slice(sid);
    if let Some(m) = max {
        buf.put_u8(b' ');
        let mut b = itoa::Buffer::new();
        buf.put_slice(b.format(m).as_bytes());
    }
    buf.put_slice(CRLF);
}

/// `-ERR '<text>'\r\n`.
pub fn write_err(buf: &mut impl BufMut, text: impl AsRef<[u8]>) {
    buf.put_slice(b"-ERR '");
    buf.put_slice(text.as_ref());
    buf.put_slice(b"'\r\n");
}

/// `INFO <json> \r\n`, with the space before the line end that nats-server writes.
pub fn write_info(buf: &mut impl BufMut, info: &Info) {
    buf.put_slice(b"INFO ");
    json(buf, info);
    buf.put_slice(b" \r\n");
}

/// `CONNECT <json>\r\n` for a client connection.
pub fn write_connect(buf: &mut impl BufMut, connect: &Connect) {
    buf.put_slice(b"CONNECT ");
    json(buf, connect);
    buf.put_slice(CRLF);
}

/// `CONNECT <json>\r\n` for a route connection.
pub fn write_route_connect(buf: &mut impl BufMut, connect: &RouteConnect) {
    buf.put_slice(b"CONNECT ");
    json(buf, connect);
    buf.put_slice(CRLF);
}

fn json(buf: &mut impl BufMut, value: &impl serde::Serialize) {
    // These documents are structs of strings, numbers, bools and lists: serializing them
    // cannot fail, and a BufMut writer never returns an I/O error.
    serde_json::to_writer(buf.writer(), value).expect("INFO/CONNECT serialization cannot fail");
}

/// The `[reply | + reply q.. | '|' q..]` part of routed messages.
#[inline(always)]
fn reply_and_queues(buf: &mut impl BufMut, reply: Option<&[u8]>, queues: &[&[u8]]) {
    if queues.is_empty() {
        if let Some(r) = reply {
            arg(buf, r);
        }
    } else {
        match reply {
            Some(r) => {
                buf.put_slice(b" + ");
                buf.put_slice(r);
            }
            None => buf.put_slice(b" |"),
        }
        for q in queues {
            arg(buf, q);
        }
    }
}

/// A routed message's control line: `RMSG <account> <subject> [reply | + reply q.. | '|' q..]
/// <total_len>\r\n`, or the `HMSG` form with `<header_len>` before the total when
/// `header_len` is `Some`.
#[inline]
pub fn write_rmsg(
    buf: &mut impl BufMut,
    account: &[u8],
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    header_len: Option<usize>,
    total_len: usize,
) {
    buf.put_slice(if header_len.is_some() {
        b"HMSG "
    } else {
        b"RMSG "
    });
    buf.put_slice(account);
    arg(buf, subject);
    reply_and_queues(buf, reply, queues);
    sizes(buf, header_len, total_len);
}

/// `RS+ <account> <subject>\r\n`, or `RS+ <account> <subject> <queue> <weight>\r\n`.
pub fn write_rs_plus(
    buf: &mut impl BufMut,
    account: &[u8],
    subject: &[u8],
    queue: Option<(&[u8], u32)>,
) {
    buf.put_slice(b"RS+ ");
    buf.put_slice(account);
    arg(buf, subject);
    queue_weight(buf, queue);
}

/// `RS- <account> <subject> [queue]\r\n`.
pub fn write_rs_minus(buf: &mut impl BufMut, account: &[u8], subject: &[u8], queue: Option<&[u8]>) {
    buf.put_slice(b"RS- ");
    buf.put_slice(account);
    arg(buf, subject);
    if let Some(q) = queue {
        arg(buf, q);
    }
    buf.put_slice(CRLF);
}

fn queue_weight(buf: &mut impl BufMut, queue: Option<(&[u8], u32)>) {
    if let Some((q, w)) = queue {
        arg(buf, q);
        buf.put_u8(b' ');
        num(buf, w as usize);
    }
    buf.put_slice(CRLF);
}

/// On a route, a leaf-originated sub: `LS+ <origin> <account> <subject> [<queue> <weight>]\r\n`.
pub fn write_route_ls_plus(
    buf: &mut impl BufMut,
    origin: &[u8],
    account: &[u8],
    subject: &[u8],
    queue: Option<(&[u8], u32)>,
) {
    buf.put_slice(b"LS+ ");
    buf.put_slice(origin);
    arg(buf, account);
    arg(buf, subject);
    queue_weight(buf, queue);
}

/// On a route, a leaf-originated unsub: `LS- [origin] <account> <subject> [queue]\r\n` (the
/// origin only when the peer advertised `lnocu`).
pub fn write_route_ls_minus(
    buf: &mut impl BufMut,
    origin: Option<&[u8]>,
    account: &[u8],
    subject: &[u8],
    queue: Option<&[u8]>,
) {
    buf.put_slice(b"LS-");
    if let Some(o) = origin {
        arg(buf, o);
    }
    arg(buf, account);
    arg(buf, subject);
    if let Some(q) = queue {
        arg(buf, q);
    }
    buf.put_slice(CRLF);
}

/// On a route, a leaf-originated message: `LMSG <origin> <account> <subject> [reply | + reply
/// q.. | '|' q..] <header_len or 0> <total_len>\r\n` (the header size is always present).
#[allow(clippy::too_many_arguments)]
pub fn write_route_lmsg(
    buf: &mut impl BufMut,
    origin: &[u8],
    account: &[u8],
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    header_len: Option<usize>,
    total_len: usize,
) {
    buf.put_slice(b"LMSG ");
    buf.put_slice(origin);
    arg(buf, account);
    arg(buf, subject);
    reply_and_queues(buf, reply, queues);
    sizes(buf, Some(header_len.unwrap_or(0)), total_len);
}

/// On a leafnode connection: `LS+ <subject> [<queue> <weight>]\r\n`.
pub fn write_ls_plus(buf: &mut impl BufMut, subject: &[u8], queue: Option<(&[u8], u32)>) {
    buf.put_slice(b"LS+ ");
    buf.put_slice(subject);
    queue_weight(buf, queue);
}

/// On a leafnode connection: `LS- <subject> [queue]\r\n`.
pub fn write_ls_minus(buf: &mut impl BufMut, subject: &[u8], queue: Option<&[u8]>) {
    buf.put_slice(b"LS- ");
    buf.put_slice(subject);
    if let Some(q) = queue {
        arg(buf, q);
    }
    buf.put_slice(CRLF);
}

/// On a leafnode connection: `LMSG <subject> [reply | + reply q.. | '|' q..] <total_len>\r\n`,
/// or the `HMSG` form with `<header_len>` when `header_len` is `Some`.
#[inline]
pub fn write_lmsg(
    buf: &mut impl BufMut,
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    header_len: Option<usize>,
    total_len: usize,
) {
    buf.put_slice(if header_len.is_some() {
        b"HMSG "
    } else {
        b"LMSG "
    });
    buf.put_slice(subject);
    reply_and_queues(buf, reply, queues);
    sizes(buf, header_len, total_len);
}
