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
    let mut n = 0;
    let mut i = 0;
    let len = args.len();
    while i < len {
        while i < len && is_sep(args[i]) {
            i += 1;
        }
        if i == len {
            break;
        }
        let start = i;
        while i < len && !is_sep(args[i]) {
            i += 1;
        }
        if n < N {
            out[n] = &args[start..i];
        }
        n += 1;
    }
    n
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
        if self.rest.is_empty() {
            return None;
        }
        let end = self
            .rest
            .iter()
            .position(|&b| is_sep(b))
            .unwrap_or(self.rest.len());
        let tok = &self.rest[..end];
        self.rest = trim_start(&self.rest[end..]);
        Some(tok)
    }
}

impl DoubleEndedIterator for Tokens<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let start = self
            .rest
            .iter()
            .rposition(|&b| is_sep(b))
            .map_or(0, |p| p + 1);
        let tok = &self.rest[start..];
        self.rest = trim_end(&self.rest[..start]);
        Some(tok)
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
    fn tokens_both_ends() {
        let mut t = Tokens::new(b" acc  subj + r q1\tq2 5 ");
        assert_eq!(t.next(), Some(&b"acc"[..]));
        assert_eq!(t.next_back(), Some(&b"5"[..]));
        assert_eq!(t.next(), Some(&b"subj"[..]));
        assert_eq!(t.rest(), b"+ r q1\tq2");
        assert_eq!(t.collect::<Vec<_>>(), vec![&b"+"[..], b"r", b"q1", b"q2"]);
    }
}
