//! Control-line framing shared by every parser: find the verb, find the line end (SIMD search
//! with `memchr`), enforce the control-line limit, and hand back the raw arguments.

use crate::args::{find_newline, is_sep};
use crate::ProtoError;

/// Every verb of every NATS protocol this crate parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Pub,
    Hpub,
    Sub,
    Unsub,
    Msg,
    Hmsg,
    Ping,
    Pong,
    Ok,
    Err,
    Info,
    Connect,
    RsPlus,
    RsMinus,
    LsPlus,
    LsMinus,
    Rmsg,
    Lmsg,
}

impl Verb {
    /// Verbs nats-server recognises by their first bytes alone: `PING`, `PONG` and `+OK`
    /// ignore whatever follows on their line (`PINGX` is a `PING`), and `CONNECT`/`INFO` take
    /// whatever follows as their argument, blank or not (`CONNECT\r\n` is a `CONNECT` with
    /// empty JSON, which then fails to parse). Every other verb must be followed by a blank.
    fn by_prefix(self) -> bool {
        matches!(
            self,
            Self::Ping | Self::Pong | Self::Ok | Self::Connect | Self::Info
        )
    }
}

/// The verbs one protocol accepts, spelled in upper case (matching is case-insensitive).
pub(crate) type VerbTable = [(&'static [u8], Verb)];

/// Longest verb of any protocol (`CONNECT`).
const MAX_VERB: usize = 7;

/// Bytes a control line may have beyond its arguments (verb, separators, line end) before it
/// is refused as too long even though its arguments fit. Keeps memory bounded when a peer
/// sends an endless run of separators.
const LINE_SLACK: usize = 64;

/// A complete control line at the front of a buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    pub(crate) verb: Verb,
    /// The arguments: from the first non-separator after the verb up to the line end
    /// (`\r\n` or a bare `\n`), not including it. May have trailing separators.
    pub(crate) args: &'a [u8],
    /// Offset of the first byte after the line end.
    pub(crate) next: usize,
    /// Offset of `args` in the buffer.
    pub(crate) start: usize,
}

#[inline]
fn is_verb_end(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r' || b == b'\n'
}

#[inline]
fn lookup(table: &VerbTable, token: &[u8]) -> Option<Verb> {
    table
        .iter()
        .find(|(name, _)| name.len() == token.len() && name.eq_ignore_ascii_case(token))
        .map(|&(_, v)| v)
}

#[inline]
fn is_prefix(table: &VerbTable, partial: &[u8]) -> bool {
    table.iter().any(|(name, _)| {
        name.len() >= partial.len() && name[..partial.len()].eq_ignore_ascii_case(partial)
    })
}

/// Fast path for the protocol's hottest verb (the table's first entry, e.g. `PUB`): a
/// case-insensitive compare of the first bytes and a separator after them.
#[inline(always)]
fn hot_verb(buf: &[u8], table: &VerbTable) -> Option<(Verb, usize)> {
    let (name, verb) = table[0];
    // `| 0x20` folds case exactly only for letters.
    debug_assert!(name.iter().all(u8::is_ascii_uppercase));
    let n = name.len();
    if buf.len() > n
        && is_sep(buf[n])
        && buf[..n]
            .iter()
            .zip(name)
            .all(|(&b, &c)| b | 0x20 == c | 0x20)
    {
        return Some((verb, n));
    }
    None
}

/// A verb matched by its first bytes (see [`Verb::by_prefix`]).
#[inline]
fn prefix_verb(buf: &[u8], table: &VerbTable) -> Option<(Verb, usize)> {
    table
        .iter()
        .find(|(name, v)| {
            v.by_prefix() && buf.len() >= name.len() && buf[..name.len()].eq_ignore_ascii_case(name)
        })
        .map(|&(name, v)| (v, name.len()))
}

/// Reads the control line at the front of `buf`.
///
/// `Ok(None)` means the line is not complete yet. `max_args` is the control-line limit applied
/// to the arguments. Errors are reported as soon as the bytes present prove them, so the
/// result for a given stream does not depend on how it was split.
#[inline]
pub(crate) fn read_line<'a>(
    buf: &'a [u8],
    table: &VerbTable,
    max_args: usize,
) -> Result<Option<Line<'a>>, ProtoError> {
    let (verb, verb_end) = match hot_verb(buf, table).or_else(|| prefix_verb(buf, table)) {
        Some(v) => v,
        None => {
            // The verb: bytes up to the first separator or line end.
            let head = &buf[..buf.len().min(MAX_VERB + 1)];
            let verb_end = match head.iter().position(|&b| is_verb_end(b)) {
                Some(p) => p,
                None if head.len() > MAX_VERB || !is_prefix(table, head) => {
                    return Err(ProtoError::UnknownOp)
                }
                None => return Ok(None),
            };
            let verb = lookup(table, &buf[..verb_end]).ok_or(ProtoError::UnknownOp)?;
            if !verb.by_prefix() && !is_sep(buf[verb_end]) {
                return Err(ProtoError::UnknownOp);
            }
            (verb, verb_end)
        }
    };
    let mut args_start = verb_end;
    while args_start < buf.len() && is_sep(buf[args_start]) {
        args_start += 1;
    }

    // The line end, searched for only as far as a line may reach.
    let cap = max_args.saturating_add(LINE_SLACK);
    let window = &buf[..buf.len().min(cap)];
    match find_newline(window, args_start.min(window.len())) {
        Some(nl) => {
            let mut end = nl;
            if end > args_start && buf[end - 1] == b'\r' {
                end -= 1;
            }
            // nl >= args_start, and end only steps back over a '\r' after args_start.
            let args = &buf[args_start..end];
            if args.len() > max_args {
                return Err(ProtoError::MaxControlLine);
            }
            Ok(Some(Line {
                verb,
                args,
                next: nl + 1,
                start: args_start,
            }))
        }
        None if buf.len() >= cap => Err(ProtoError::MaxControlLine),
        None => {
            let mut partial = &buf[args_start.min(buf.len())..];
            if let [rest @ .., b'\r'] = partial {
                partial = rest;
            }
            if partial.len() > max_args {
                return Err(ProtoError::MaxControlLine);
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &VerbTable = &[
        (b"PUB", Verb::Pub),
        (b"PING", Verb::Ping),
        (b"CONNECT", Verb::Connect),
    ];

    type Parsed<'a> = Option<(Verb, &'a [u8], usize)>;

    fn line(buf: &[u8]) -> Result<Parsed<'_>, ProtoError> {
        read_line(buf, TABLE, 16).map(|o| o.map(|l| (l.verb, l.args, l.next)))
    }

    #[test]
    fn verbs_and_line_ends() {
        assert_eq!(line(b"PUB a 1\r\n"), Ok(Some((Verb::Pub, &b"a 1"[..], 9))));
        assert_eq!(line(b"pUb\t\ta 1\n"), Ok(Some((Verb::Pub, &b"a 1"[..], 9))));
        assert_eq!(line(b"PING\r\n"), Ok(Some((Verb::Ping, &b""[..], 6))));
        assert_eq!(line(b"PING\n"), Ok(Some((Verb::Ping, &b""[..], 5))));
        assert_eq!(line(b"PING\r"), Ok(None));
        assert_eq!(line(b"PI"), Ok(None));
        assert_eq!(line(b"PX"), Err(ProtoError::UnknownOp));
        assert_eq!(line(b"PUB\r\n"), Err(ProtoError::UnknownOp));
        assert_eq!(line(b"PUBX a\r\n"), Err(ProtoError::UnknownOp));
        assert_eq!(line(b"\r\n"), Err(ProtoError::UnknownOp));
        // PING, PONG, +OK, CONNECT and INFO are recognised by their first bytes.
        assert_eq!(line(b"PINGX\r\n"), Ok(Some((Verb::Ping, &b"X"[..], 7))));
        assert_eq!(
            line(b"CONNECTX {}\r\n"),
            Ok(Some((Verb::Connect, &b"X {}"[..], 13)))
        );
        assert_eq!(line(b"CONNECT\r\n"), Ok(Some((Verb::Connect, &b""[..], 9))));
        assert_eq!(line(b"CONNECTX"), Ok(None));
    }

    #[test]
    fn control_line_limit() {
        assert!(line(b"PUB 0123456789abcdef\r\n").unwrap().is_some());
        assert_eq!(
            line(b"PUB 0123456789abcdefg\r\n"),
            Err(ProtoError::MaxControlLine)
        );
        assert_eq!(line(b"PUB 0123456789abcdef\r"), Ok(None));
        assert_eq!(
            line(b"PUB 0123456789abcdefg"),
            Err(ProtoError::MaxControlLine)
        );
        let spaces = [b' '; 200];
        let mut long = b"PUB".to_vec();
        long.extend_from_slice(&spaces);
        assert_eq!(line(&long), Err(ProtoError::MaxControlLine));
    }
}
