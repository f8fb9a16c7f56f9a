//! Fast paths for the hot message ops (`PUB`, `HPUB`, `MSG`, `HMSG`, `RMSG`): the common
//! spelling recognised with a few word-at-a-time scans and no general machinery. Anything else,
//! errors included, returns `None` and goes to the general parser, so both paths always give
//! the same result (unit tests in each parser check this on many near-misses).

use crate::args::{find_newline, find_sep};
use crate::Limits;

/// A message control line found by [`fast_line`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fast<'a> {
    /// The mandatory leading tokens (subject; subject and sid; account and subject).
    pub(crate) front: [&'a [u8]; 2],
    /// The optional reply token.
    pub(crate) reply: Option<&'a [u8]>,
    /// The header size, for headered forms.
    pub(crate) header_len: Option<usize>,
    /// The total size.
    pub(crate) total: usize,
    /// Offset of the body.
    pub(crate) start: usize,
}

impl<'a> Fast<'a> {
    /// The body and the offset after it, when complete and followed by `\r\n`.
    #[inline(always)]
    pub(crate) fn body(&self, buf: &'a [u8]) -> Option<(&'a [u8], usize)> {
        let end = self.start + self.total;
        match buf.get(end..end + 2) {
            Some(b"\r\n") => Some((&buf[self.start..end], end + 2)),
            _ => None,
        }
    }
}

/// The decimal number ending at `end` (exclusive) and preceded by a single space: `(value,
/// offset of that space)`. At most nine digits, as the general parser.
#[inline(always)]
fn trailing_size(buf: &[u8], floor: usize, end: usize) -> Option<(usize, usize)> {
    let mut n = 0usize;
    let mut scale = 1usize;
    let mut k = 0;
    for &b in buf[floor..end].iter().rev() {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        if k == 9 {
            return None;
        }
        n += d as usize * scale;
        scale *= 10;
        k += 1;
    }
    let space = end - k - 1;
    if k == 0 || space <= floor || buf[space] != b' ' {
        return None;
    }
    Some((n, space))
}

/// Recognises `<front tokens>[ <reply>][ <header size>] <size>\r\n` starting at `args` (just
/// after the verb and one space): `fronts` (1 or 2) mandatory tokens, single spaces, a CRLF
/// line end, sizes within the limits.
#[inline(always)]
pub(crate) fn fast_line(
    buf: &[u8],
    args: usize,
    fronts: usize,
    headers: bool,
    limits: Limits,
) -> Option<Fast<'_>> {
    let nl = find_newline(buf, args)?;
    // At least "s 0" + "\r\n" after the verb.
    if nl < args + 4 || buf[nl - 1] != b'\r' || nl - 1 - args > limits.max_control_line {
        return None;
    }
    let (total, mut head_end) = trailing_size(buf, args, nl - 1)?;
    if total > limits.max_payload {
        return None;
    }
    let mut header_len = None;
    if headers {
        let (h, before) = trailing_size(buf, args, head_end)?;
        if h > total {
            return None;
        }
        header_len = Some(h);
        head_end = before;
    }
    let mut front = [&buf[..0]; 2];
    let mut at = args;
    for slot in front.iter_mut().take(fronts) {
        if at >= head_end {
            return None;
        }
        let end = find_sep(buf, at, head_end);
        if end == at {
            return None;
        }
        *slot = &buf[at..end];
        if end == head_end {
            at = end;
            continue;
        }
        if buf[end] != b' ' {
            return None;
        }
        at = end + 1;
    }
    if front[fronts - 1].is_empty() {
        return None;
    }
    let mut reply = None;
    if at < head_end {
        // Exactly one more token, after a single space.
        if find_sep(buf, at, head_end) != head_end || buf[at - 1] != b' ' || at == args {
            return None;
        }
        reply = Some(&buf[at..head_end]);
    }
    Some(Fast {
        front,
        reply,
        header_len,
        total,
        start: nl + 1,
    })
}

/// Where cutting an input starts to matter for the fast paths: before the first line end they
/// decline, and both sides of a comparison run the general parser.
#[cfg(test)]
pub(crate) fn first_line_end(line: &[u8]) -> usize {
    line.iter().position(|&b| b == b'\n').unwrap_or(line.len())
}

/// Inputs around the fast paths' edges, for the tests that check each parser's fast path
/// against its general parser: every combination of verb spelling, token shapes, blanks,
/// sizes, line ends and bodies, followed by a `PING`.
#[cfg(test)]
pub(crate) fn near_misses(verbs: &[&[u8]], fronts: &[&[&[u8]]]) -> Vec<Vec<u8>> {
    let replies: &[Option<&[u8]>] = &[None, Some(b"r"), Some(b"_INBOX.abcdefghijklmnop.1")];
    let seps: &[&[u8]] = &[b" ", b"\t "];
    let sizes: &[&[u8]] = &[b"0", b"5", b"16", b"999999999", b"1000000000", b"x", b"1x"];
    let ends: &[&[u8]] = &[b"\r\n", b"\n", b" \r\n", b"\r\r\n"];
    let bodies: &[&[u8]] = &[
        b"hello\r\n",
        b"",
        b"0123456789abcdef\r\n",
        b"hello\r",
        b"hellox",
    ];
    let mut out = Vec::new();
    for verb in verbs {
        let headered = verb.first().is_some_and(|b| b.eq_ignore_ascii_case(&b'h'));
        for front in fronts {
            for reply in replies {
                for sep in seps {
                    for size in sizes {
                        for end in ends {
                            for body in bodies {
                                let mut line = verb.to_vec();
                                for (i, t) in front.iter().enumerate() {
                                    if i > 0 {
                                        line.extend_from_slice(sep);
                                    }
                                    line.extend_from_slice(t);
                                }
                                if let Some(r) = reply {
                                    line.extend_from_slice(sep);
                                    line.extend_from_slice(r);
                                }
                                line.extend_from_slice(sep);
                                if headered {
                                    // A header size before the total (some larger than it).
                                    line.extend_from_slice(&size[..size.len().min(1)]);
                                    line.extend_from_slice(sep);
                                }
                                line.extend_from_slice(size);
                                line.extend_from_slice(end);
                                line.extend_from_slice(body);
                                line.extend_from_slice(b"PING\r\n");
                                out.push(line);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}
