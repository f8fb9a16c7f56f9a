//! Argument splitting and number parsing for control lines.
//!
//! Arguments are separated by runs of spaces or tabs (nats-server also accepts tabs).

/// True for the bytes that separate arguments.
#[inline(always)]
pub(crate) fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Longest size nats-server accepts: 9 decimal digits (999,999,999).
const MAX_SIZE_DIGITS: usize = 9;

/// Parses a message size the way nats-server does: 1 to 9 ASCII digits, nothing else.
/// Longer numbers (which could overflow) are refused rather than wrapped.
#[inline]
pub(crate) fn parse_size(d: &[u8]) -> Option<usize> {
    if d.is_empty() || d.len() > MAX_SIZE_DIGITS {
        return None;
    }
    let mut n = 0usize;
    for &b in d {
        let v = b.wrapping_sub(b'0');
        if v > 9 {
            return None;
        }
        n = n * 10 + v as usize;
    }
    Some(n)
}

/// Splits up to `N` arguments into `out` and returns how many there were (which may be more
/// than `N`: the extra ones are counted but not stored).
#[inline]
pub(crate) fn split<'a, const N: usize>(args: &'a [u8], out: &mut [&'a [u8]; N]) -> usize {
    split_in(args, 0, args.len(), out)
}

/// [`split`] of `buf[start..end]`. The bytes of `buf` after `end` (the line end, the body)
/// let the word-at-a-time search run to the end of the arguments without a scalar tail.
#[inline(always)]
pub(crate) fn split_in<'a, const N: usize>(
    buf: &'a [u8],
    start: usize,
    end: usize,
    out: &mut [&'a [u8]; N],
) -> usize {
    let mut n = 0;
    let mut i = start;
    loop {
        while i < end && is_sep(buf[i]) {
            i += 1;
        }
        if i >= end {
            break;
        }
        let tok_end = find_sep(buf, i, end);
        if n < N {
            out[n] = &buf[i..tok_end];
        }
        n += 1;
        i = tok_end;
    }
    n
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A word with every byte equal to `b`.
#[inline(always)]
const fn splat(b: u8) -> u64 {
    LO * b as u64
}

/// Flags (high bit) the zero bytes of `x`. Bytes above a true zero byte may be flagged
/// falsely (borrow), so only the lowest flag is exact: callers use `trailing_zeros`.
#[inline(always)]
const fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

#[inline(always)]
pub(crate) fn word(s: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Offset of the first space or tab in `s[from..end]` (absolute), or `end`. Scans eight
/// bytes at a time (SWAR), reading past `end` within `s`: tokens are short, so this beats a
/// call into a SIMD routine.
#[inline(always)]
pub(crate) fn find_sep(s: &[u8], from: usize, end: usize) -> usize {
    let mut i = from;
    while i < end && i + 8 <= s.len() {
        let x = word(s, i);
        let m = zero_bytes(x ^ splat(b' ')) | zero_bytes(x ^ splat(b'\t'));
        if m != 0 {
            return end.min(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < end && !is_sep(s[i]) {
        i += 1;
    }
    i.min(end)
}

/// Offset of the first `\n` in `s[from..]` (absolute). Short control lines are the common
/// case: the first 32 bytes are scanned eight at a time, the rest with `memchr` (SIMD).
#[inline(always)]
pub(crate) fn find_newline(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    let short = from + 32;
    while i + 8 <= s.len() && i < short {
        let m = zero_bytes(word(s, i) ^ splat(b'\n'));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    memchr::memchr(b'\n', &s[i.min(s.len())..]).map(|p| i + p)
}

/// A double-ended iterator over the arguments of a control line; [`Tokens::rest`] gives the
/// raw bytes not consumed yet from either end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(args: &'a [u8]) -> Self {
        Self { rest: trim(args) }
    }

    /// The unconsumed arguments, trimmed of separators at both ends.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        let end = find_sep(rest, 0, rest.len());
        let mut next = end;
        while next < rest.len() && is_sep(rest[next]) {
            next += 1;
        }
        self.rest = &rest[next..];
        Some(&rest[..end])
    }
}

impl DoubleEndedIterator for Tokens<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        let mut start = rest.len();
        while start > 0 && !is_sep(rest[start - 1]) {
            start -= 1;
        }
        let mut end = start;
        while end > 0 && is_sep(rest[end - 1]) {
            end -= 1;
        }
        self.rest = &rest[..end];
        Some(&rest[start..])
    }
}

/// Strips leading separators.
#[inline]
pub(crate) fn trim_start(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_sep(b)).unwrap_or(s.len());
    &s[start..]
}

/// Strips trailing separators.
#[inline]
pub(crate) fn trim_end(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| !is_sep(b)).map_or(0, |p| p + 1);
    &s[..end]
}

/// Strips separators at both ends.
#[inline]
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    trim_end(trim_start(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"16"), Some(16));
        assert_eq!(parse_size(b"999999999"), Some(999_999_999));
        assert_eq!(parse_size(b"1000000000"), None);
        assert_eq!(parse_size(b"99999999999999999999999"), None);
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"-1"), None);
        assert_eq!(parse_size(b"+1"), None);
        assert_eq!(parse_size(b"1x"), None);
    }

    #[test]
    fn splitting() {
        let mut out = [&b""[..]; 3];
        assert_eq!(split(b"  a\tb  \t c ", &mut out), 3);
        assert_eq!(out, [&b"a"[..], b"b", b"c"]);
        assert_eq!(split(b"a b c d", &mut out), 4);
        assert_eq!(split(b" \t ", &mut out), 0);
    }

    #[test]
    fn split_reads_past_end() {
        let line = b" a  bb\tccc d eeee \t ffffffffffffffffffffff g h i j k l m n o p q r s t u v w x y z 1 2 3 ";
        for start in 0..line.len() {
            for end in start..=line.len() {
                let mut padded = line[..end].to_vec();
                padded.extend_from_slice(&[b'x'; 72]);
                let mut fast = [&b""[..]; 5];
                let mut slow = [&b""[..]; 5];
                let n_fast = split_in(&padded, start, end, &mut fast);
                let n_slow = split_in(&line[..end], start, end, &mut slow);
                let want: Vec<&[u8]> = line[start..end]
                    .split(|&b| is_sep(b))
                    .filter(|t| !t.is_empty())
                    .collect();
                assert_eq!(n_fast, want.len(), "{start}..{end}");
                assert_eq!(n_slow, want.len(), "{start}..{end}");
                assert_eq!(fast[..want.len().min(5)], want[..want.len().min(5)]);
                assert_eq!(slow[..want.len().min(5)], want[..want.len().min(5)]);
            }
        }
    }

    #[test]
    fn swar_search() {
        let s = b"abcdefghijklmnopq rst\tuvwxyz0123456789\n";
        for from in 0..s.len() {
            let want = s[from..]
                .iter()
                .position(|&b| is_sep(b))
                .map_or(s.len(), |p| from + p);
            assert_eq!(find_sep(s, from, s.len()), want, "from {from}");
            for end in from..s.len() {
                assert_eq!(
                    find_sep(s, from, end),
                    want.min(end),
                    "from {from} end {end}"
                );
            }
            let want = s[from..].iter().position(|&b| b == b'\n').map(|p| from + p);
            assert_eq!(find_newline(s, from), want, "from {from}");
        }
        let long = [b'x'; 100];
        assert_eq!(find_newline(&long, 0), None);
        assert_eq!(find_sep(&long, 3, 100), 100);
    }

    #[test]
    fn tokens_both_ends() {
        let mut t = Tokens::new(b" acc  subj + r q1\tq2 5 ");
        assert_eq!(t.next(), Some(&b"acc"[..]));
        assert_eq!(t.next_back(), Some(&b"5"[..]));
        assert_eq!(t.next(), Some(&b"subj"[..]));
        assert_eq!(t.rest(), b"+ r q1\tq2");
        assert_eq!(t.collect::<Vec<_>>(), vec![&b"+"[..], b"r", b"q1", b"q2"]);
    }
}
