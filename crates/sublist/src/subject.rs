//! Subject and queue-name rules, exactly as nats-server 2.9 applies them.
//!
//! A subject is a sequence of bytes split into tokens by `.`. Any byte other than `.` may appear in a
//! token (UTF-8, control bytes such as `0x01`); whitespace is rejected by [`is_valid_subject`]. A
//! token that is exactly `*` matches one token; a token that is exactly `>` matches one or more
//! trailing tokens and must be the last. `foo*` or `>a` are ordinary literal tokens.
//!
//! A *published* subject is always literal: a `*` or `>` token in it is matched as a literal token by
//! the trie, which in practice means it is matched only by wildcard subscriptions (`foo.*` published
//! reaches `foo.*` and `foo.>` subscribers but not `foo.bar`), exactly as nats-server behaves.

use smallvec::SmallVec;

/// The token separator.
pub(crate) const SEP: u8 = b'.';
/// The one-token wildcard.
pub(crate) const PWC: u8 = b'*';
/// The trailing wildcard.
pub(crate) const FWC: u8 = b'>';

/// Tokens of one subject; 16 inline covers virtually every real subject without allocating.
pub(crate) type Tokens<'a> = SmallVec<[&'a [u8]; 16]>;

/// The whitespace bytes nats-server refuses in a subscription subject.
#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// Whether `tok` is the single-token wildcard `*`.
#[inline]
pub(crate) fn is_pwc(tok: &[u8]) -> bool {
    tok == [PWC]
}

/// Whether `tok` is the trailing wildcard `>`.
#[inline]
pub(crate) fn is_fwc(tok: &[u8]) -> bool {
    tok == [FWC]
}

/// Byte-slice equality without a call into libc's `memcmp`, whose fixed cost dominates for the
/// short keys (tokens, subjects) compared on every lookup: word-sized loads, the last one
/// overlapping, and up to 64 bytes without a loop or a branch per word (the differences are OR-ed).
#[inline(always)]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 16 {
        if n <= 32 {
            let d = (load8(a, 0) ^ load8(b, 0))
                | (load8(a, 8) ^ load8(b, 8))
                | (load8(a, n - 16) ^ load8(b, n - 16))
                | (load8(a, n - 8) ^ load8(b, n - 8));
            return d == 0;
        }
        if n <= 48 {
            let d = (load16(a, 0) ^ load16(b, 0))
                | (load16(a, 16) ^ load16(b, 16))
                | (load16(a, n - 16) ^ load16(b, n - 16));
            return d == 0;
        }
        if n <= 64 {
            let d = (load16(a, 0) ^ load16(b, 0))
                | (load16(a, 16) ^ load16(b, 16))
                | (load16(a, n - 32) ^ load16(b, n - 32))
                | (load16(a, n - 16) ^ load16(b, n - 16));
            return d == 0;
        }
        let mut i = 0;
        while i + 16 < n {
            if load16(a, i) != load16(b, i) {
                return false;
            }
            i += 16;
        }
        return load16(a, n - 16) == load16(b, n - 16);
    }
    if n >= 8 {
        return ((load8(a, 0) ^ load8(b, 0)) | (load8(a, n - 8) ^ load8(b, n - 8))) == 0;
    }
    if n >= 4 {
        return ((load4(a, 0) ^ load4(b, 0)) | (load4(a, n - 4) ^ load4(b, n - 4))) == 0;
    }
    n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1])
}

/// A seeded hash of a short byte string for the match caches, in the style of wyhash and
/// rapidhash: 16-byte blocks are folded with 64×64→128-bit multiplies that do not depend on each
/// other up to 64 bytes (each block with a secret of its own, the results XOR-ed), so any subject
/// of up to 64 bytes costs two multiplies of latency and no loop (the general-purpose hasher needs
/// several times the instructions). The tables it serves are bounded, so even crafted collisions
/// only lengthen a probe within a few dozen entries.
#[inline(always)]
pub(crate) fn hash_bytes(seed: u64, b: &[u8]) -> u64 {
    const S1: u64 = 0xA076_1D64_78BD_642F;
    const S2: u64 = 0xE703_7ED1_A0B4_28DB;
    const S3: u64 = 0x8EBC_6AF0_9C88_C6E3;
    const S4: u64 = 0x5899_65CC_7537_4CC3;
    const S5: u64 = 0x1D8E_4E27_C47D_124F;
    #[inline(always)]
    fn fold(a: u64, b: u64) -> u64 {
        let m = u128::from(a) * u128::from(b);
        (m as u64) ^ ((m >> 64) as u64)
    }
    let n = b.len();
    // The length goes into every fold's multiplier, so strings whose blocks overlap differently
    // differ there too.
    let s = seed ^ n as u64;
    if n > 16 {
        // Each block already went through a multiply with the seed: one round is enough here.
        return if n <= 32 {
            fold(load8(b, 0) ^ S1, load8(b, 8) ^ s)
                ^ fold(load8(b, n - 16) ^ S3, load8(b, n - 8) ^ s)
        } else if n <= 48 {
            fold(load8(b, 0) ^ S1, load8(b, 8) ^ s)
                ^ fold(load8(b, 16) ^ S3, load8(b, 24) ^ s)
                ^ fold(load8(b, n - 16) ^ S5, load8(b, n - 8) ^ s)
        } else if n <= 64 {
            fold(load8(b, 0) ^ S1, load8(b, 8) ^ s)
                ^ fold(load8(b, 16) ^ S3, load8(b, 24) ^ s)
                ^ fold(load8(b, n - 32) ^ S4, load8(b, n - 24) ^ s)
                ^ fold(load8(b, n - 16) ^ S5, load8(b, n - 8) ^ s)
        } else {
            let mut h = s;
            let mut i = 0;
            while i + 16 < n {
                h = fold(load8(b, i) ^ S1, load8(b, i + 8) ^ h);
                i += 16;
            }
            fold(load8(b, n - 16) ^ S3, load8(b, n - 8) ^ h)
        };
    }
    let h = if n >= 8 {
        fold(load8(b, 0) ^ S1, load8(b, n - 8) ^ s)
    } else if n >= 4 {
        fold(u64::from(load4(b, 0)) ^ S1, u64::from(load4(b, n - 4)) ^ s)
    } else if n > 0 {
        let w = u64::from(b[0]) << 16 | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]);
        fold(w ^ S1, s ^ S2)
    } else {
        s
    };
    // Short keys fill few bits of one block: a second round spreads them.
    fold(h ^ S2, (n as u64) ^ S1)
}

#[inline(always)]
fn load8(s: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn load16(s: &[u8], i: usize) -> u128 {
    let mut w = [0u8; 16];
    w.copy_from_slice(&s[i..i + 16]);
    u128::from_le_bytes(w)
}

#[inline(always)]
fn load4(s: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&s[i..i + 4]);
    u32::from_le_bytes(w)
}

/// Splits `subject` into tokens; returns `false` (leaving `out` in an unspecified state) if any token
/// is empty, which includes the empty subject and a leading or trailing `.`.
#[inline]
pub(crate) fn tokenize<'a>(subject: &'a [u8], out: &mut Tokens<'a>) -> bool {
    out.clear();
    let n = subject.len();
    let mut start = 0;
    let mut i = 0;
    // Eight bytes at a time: the separators of a word are found with a few arithmetic operations.
    while i + 8 <= n {
        let mut seps = separators(load8(subject, i));
        while seps != 0 {
            let at = i + (seps.trailing_zeros() / 8) as usize;
            if at == start {
                return false;
            }
            out.push(&subject[start..at]);
            start = at + 1;
            seps &= seps - 1;
        }
        i += 8;
    }
    for (at, &b) in subject.iter().enumerate().skip(i) {
        if b == SEP {
            if at == start {
                return false;
            }
            out.push(&subject[start..at]);
            start = at + 1;
        }
    }
    if start >= n {
        return false;
    }
    out.push(&subject[start..]);
    true
}

/// The high bit of each byte of the little-endian word `w` that is a `.`, and no other bit (the
/// exact form of the "has zero byte" trick: no borrow crosses bytes).
#[inline(always)]
fn separators(w: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = w ^ (u64::from(SEP) * 0x0101_0101_0101_0101);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Whether `subject` is acceptable as a subscription subject (nats-server's `IsValidSubject`): not
/// empty, no empty token, no whitespace, `>` only as the last token.
///
/// ```
/// use starling_sublist::is_valid_subject;
/// assert!(is_valid_subject(b"foo.*.bar.>"));
/// assert!(is_valid_subject(b"foo*.b>r"));
/// assert!(!is_valid_subject(b"foo.>.bar"));
/// assert!(!is_valid_subject(b"foo..bar"));
/// assert!(!is_valid_subject(b"foo bar"));
/// ```
pub fn is_valid_subject(subject: &[u8]) -> bool {
    let mut token_len = 0usize;
    let mut first = 0u8;
    for &b in subject {
        if b == SEP {
            // An empty token, or a `>` token followed by another token.
            if token_len == 0 || (token_len == 1 && first == FWC) {
                return false;
            }
            token_len = 0;
        } else {
            if is_space(b) {
                return false;
            }
            if token_len == 0 {
                first = b;
            }
            token_len += 1;
        }
    }
    token_len != 0
}

/// Whether `subject` is a valid *literal* subject (nats-server's `IsValidLiteralSubject`, which the
/// server applies to a pedantic client's `PUB`): no empty token and no `*` or `>` token.
///
/// Like nats-server it does not look for whitespace (the protocol parser already split on it). This
/// runs once per published message, so it is a single pass over the bytes.
///
/// ```
/// use starling_sublist::is_valid_literal_subject;
/// assert!(is_valid_literal_subject(b"foo.bar*.>baz"));
/// assert!(!is_valid_literal_subject(b"foo.*"));
/// assert!(!is_valid_literal_subject(b"foo."));
/// ```
#[inline]
pub fn is_valid_literal_subject(subject: &[u8]) -> bool {
    let mut start = 0usize;
    let len = subject.len();
    let mut i = 0usize;
    while i < len {
        if subject[i] == SEP {
            if !literal_token_ok(subject, start, i) {
                return false;
            }
            start = i + 1;
        }
        i += 1;
    }
    literal_token_ok(subject, start, len)
}

/// Whether `subject[start..end]` is a non-empty, non-wildcard token.
#[inline(always)]
fn literal_token_ok(subject: &[u8], start: usize, end: usize) -> bool {
    match end - start {
        0 => false,
        1 => !matches!(subject[start], PWC | FWC),
        _ => true,
    }
}

/// Whether a subject is both a valid subscription subject and literal (nats-server's
/// `IsValidPublishSubject`): [`is_valid_subject`] and [`subject_is_literal`].
pub fn is_valid_publish_subject(subject: &[u8]) -> bool {
    is_valid_subject(subject) && subject_is_literal(subject)
}

/// Whether `queue` is acceptable as a queue group name: not empty and no whitespace. nats-server 2.9
/// does not check anything else (`q.x`, `q*` and `>` are accepted and work).
pub fn is_valid_queue_name(queue: &[u8]) -> bool {
    !queue.is_empty() && !queue.iter().any(|&b| is_space(b))
}

/// Whether `subject` contains no wildcard token (nats-server's `subjectIsLiteral`). It does not check
/// validity: `foo..bar` is "literal".
#[inline]
pub fn subject_is_literal(subject: &[u8]) -> bool {
    let len = subject.len();
    for (i, &b) in subject.iter().enumerate() {
        if (b == PWC || b == FWC)
            && (i == 0 || subject[i - 1] == SEP)
            && (i + 1 == len || subject[i + 1] == SEP)
        {
            return false;
        }
    }
    true
}

/// Whether the subscription `pattern` matches the published `subject`, with exactly the outcome of
/// [`Sublist::matches`](crate::Sublist::matches) holding one subscription on `pattern`.
///
/// Pattern tokens `*` and `>` are wildcards (`>` only as the last token). Subject tokens are all
/// literal, so a published `*` token is matched by a `*` or `>` pattern token and by nothing else.
/// A subject with an empty token (including a leading or trailing `.`) matches nothing.
///
/// ```
/// use starling_sublist::subject_matches;
/// assert!(subject_matches(b"foo.*", b"foo.bar"));
/// assert!(subject_matches(b"foo.>", b"foo.bar.baz"));
/// assert!(!subject_matches(b"foo.>", b"foo"));
/// assert!(subject_matches(b"foo.*", b"foo.*"));
/// assert!(!subject_matches(b"foo.bar", b"foo.*"));
/// ```
pub fn subject_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let (plen, slen) = (pattern.len(), subject.len());
    // Whole tokens both share byte for byte match whatever they are (a `*` or non-final `>`
    // pattern token meets the same token in the subject), provided none is empty: skip them a
    // word at a time.
    let same = common_prefix(pattern, subject);
    if same == plen && same == slen {
        return subject_tail_ok(subject);
    }
    let skip = match pattern[..same].iter().rposition(|&b| b == SEP) {
        Some(sep) if subject_tail_ok(&pattern[..sep]) => sep + 1,
        Some(_) => return false,
        None => 0,
    };
    let (mut p, mut s) = (skip, skip);
    // One pass over both, a token at a time; `p` and `s` are at the start of a token.
    loop {
        let wildcard = p < plen && (p + 1 == plen || pattern[p + 1] == SEP);
        if wildcard && pattern[p] == FWC && p + 1 == plen {
            // `>` as the last pattern token: one or more non-empty subject tokens must be left.
            return subject_tail_ok(&subject[s..]);
        }
        let start = s;
        if wildcard && pattern[p] == PWC {
            while s < slen && subject[s] != SEP {
                s += 1;
            }
            p += 1;
        } else {
            while p < plen && pattern[p] != SEP {
                if s >= slen || subject[s] != pattern[p] {
                    return false;
                }
                p += 1;
                s += 1;
            }
            if s < slen && subject[s] != SEP {
                return false;
            }
        }
        if s == start {
            // An empty token.
            return false;
        }
        match (p == plen, s == slen) {
            (true, true) => return true,
            (false, false) => {
                p += 1;
                s += 1;
            }
            _ => return false,
        }
    }
}

/// The length of the longest common prefix of `a` and `b`, found a word at a time.
#[inline]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let diff = load8(a, i) ^ load8(b, i);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Whether `tail` is one or more tokens, none of them empty.
#[inline]
fn subject_tail_ok(tail: &[u8]) -> bool {
    let n = tail.len();
    if n == 0 || tail[0] == SEP || tail[n - 1] == SEP {
        return false;
    }
    // Two adjacent separators, looked for a word at a time (words overlapping by a byte).
    let mut i = 0;
    while i + 8 <= n {
        let seps = separators(load8(tail, i));
        if seps & (seps >> 8) != 0 {
            return false;
        }
        i += 7;
    }
    !tail[i..].windows(2).any(|w| w == [SEP, SEP])
}

/// Whether two subscription patterns could both match one published subject (nats-server's
/// `SubjectsCollide`). Useful to find which cached subjects or permissions a wildcard affects.
///
/// ```
/// use starling_sublist::subjects_collide;
/// assert!(subjects_collide(b"foo.*", b"*.bar"));
/// assert!(subjects_collide(b"foo.>", b"foo.bar.baz"));
/// assert!(!subjects_collide(b"foo.*", b"foo.bar.>"));
/// assert!(!subjects_collide(b"foo.>", b"foo"));
/// ```
pub fn subjects_collide(a: &[u8], b: &[u8]) -> bool {
    let mut ta = Tokens::new();
    let mut tb = Tokens::new();
    if !tokenize(a, &mut ta) || !tokenize(b, &mut tb) {
        return false;
    }
    for (x, y) in ta.iter().zip(tb.iter()) {
        if is_fwc(x) || is_fwc(y) {
            // One side matches any one-or-more tokens from here; the other has at least one token
            // left, and any valid pattern tail matches some non-empty token sequence.
            return true;
        }
        if !is_pwc(x) && !is_pwc(y) && x != y {
            return false;
        }
    }
    ta.len() == tb.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_subjects() {
        for s in [
            &b"foo"[..],
            b"foo.bar",
            b"*",
            b">",
            b"*.>",
            b"foo.*.bar",
            b"foo.>",
            b"foo*",
            b"foo>",
            b">foo",
            b"*foo.>bar",
            b"f\xc3\xa9e",
            b"a\x01b.c",
            b"$SYS.>",
            b"_INBOX.abc123",
        ] {
            assert!(is_valid_subject(s), "{:?}", String::from_utf8_lossy(s));
        }
        for s in [
            &b""[..],
            b".",
            b"..",
            b"foo.",
            b".foo",
            b"foo..bar",
            b">.foo",
            b"foo.>.bar",
            b"foo.>.>",
            b"foo bar",
            b"foo\tbar",
            b"foo\r",
            b"\n",
            b"a.\x0c",
            b" ",
        ] {
            assert!(!is_valid_subject(s), "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn valid_literal_subjects() {
        for s in [
            &b"foo"[..],
            b"foo.bar",
            b"foo*.>a",
            b"a.b.c.d.e.f",
            b"a\x01b",
            b"**",
        ] {
            assert!(is_valid_literal_subject(s));
            assert!(subject_is_literal(s));
        }
        for s in [
            &b""[..],
            b".",
            b"foo.",
            b".foo",
            b"a..b",
            b"*",
            b">",
            b"a.*",
            b"*.a",
            b"a.>",
            b"a.*.b",
        ] {
            assert!(
                !is_valid_literal_subject(s),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
        assert!(!subject_is_literal(b"a.*.b"));
        assert!(!subject_is_literal(b">"));
        assert!(subject_is_literal(b"a..b"));
        assert!(is_valid_publish_subject(b"a.b"));
        assert!(!is_valid_publish_subject(b"a.*"));
        assert!(!is_valid_publish_subject(b"a b"));
    }

    #[test]
    fn queue_names() {
        assert!(is_valid_queue_name(b"workers"));
        assert!(is_valid_queue_name(b"q.x"));
        assert!(is_valid_queue_name(b">"));
        assert!(!is_valid_queue_name(b""));
        assert!(!is_valid_queue_name(b"a b"));
    }

    #[test]
    fn matching() {
        let yes: &[(&[u8], &[u8])] = &[
            (b"foo", b"foo"),
            (b">", b"foo"),
            (b">", b"foo.bar.baz"),
            (b"*", b"foo"),
            (b"*.bar", b"foo.bar"),
            (b"foo.*", b"foo.bar"),
            (b"foo.*.baz", b"foo.bar.baz"),
            (b"*.*.*", b"a.b.c"),
            (b"foo.>", b"foo.bar"),
            (b"foo.>", b"foo.bar.baz"),
            (b"foo.*", b"foo.*"),
            (b"foo.>", b"foo.*"),
            (b"foo.*", b"foo.>"),
            (b">", b">"),
            (b"*", b"*"),
        ];
        for (p, s) in yes {
            assert!(
                subject_matches(p, s),
                "{:?} {:?}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(s)
            );
        }
        let no: &[(&[u8], &[u8])] = &[
            (b"foo", b"bar"),
            (b"foo.>", b"foo"),
            (b"*", b"foo.bar"),
            (b"foo.*", b"foo"),
            (b"foo.*", b"foo.bar.baz"),
            (b"foo.bar", b"foo.*"),
            (b"foo.bar", b"foo.>"),
            (b"foo", b"foo."),
            (b">", b"foo..bar"),
            (b">", b""),
            (b"foo.>", b"foo.bar."),
            (b"foo.>", b"foo.bar..baz"),
            (b"*", b""),
            (b"foo.*", b"foo."),
            (b"foobar", b"foo"),
            (b"foo", b"foobar"),
        ];
        for (p, s) in no {
            assert!(
                !subject_matches(p, s),
                "{:?} {:?}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn collisions() {
        let yes: &[(&[u8], &[u8])] = &[
            (b"foo.bar", b"foo.bar"),
            (b"foo.*", b"foo.bar"),
            (b"foo.*", b"*.bar"),
            (b">", b"a.b.c"),
            (b"*.>", b">"),
            (b"foo.>", b"foo.*.baz"),
            (b"a.*.c", b"a.b.*"),
        ];
        for (a, b) in yes {
            assert!(subjects_collide(a, b));
            assert!(subjects_collide(b, a));
        }
        let no: &[(&[u8], &[u8])] = &[
            (b"foo.bar", b"foo.baz"),
            (b"foo.*", b"foo.bar.>"),
            (b"foo.>", b"foo"),
            (b"*", b"a.b"),
            (b"a.*.c", b"a.b.d"),
            (b"foo..bar", b"foo..bar"),
        ];
        for (a, b) in no {
            assert!(!subjects_collide(a, b));
            assert!(!subjects_collide(b, a));
        }
    }

    #[test]
    fn byte_equality() {
        let data: Vec<u8> = (0..100u8).collect();
        for n in 0..99 {
            let a = &data[..n];
            let copy = a.to_vec();
            assert!(bytes_eq(a, &copy));
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 0x80;
                assert!(!bytes_eq(a, &b), "{n} {i}");
            }
            assert!(!bytes_eq(a, &data[..n + 1]));
        }
    }

    #[test]
    fn hash_spreads() {
        let mut seen = std::collections::HashSet::new();
        let mut buckets = [0u32; 64];
        for n in 0..90usize {
            for i in 0..500u32 {
                let mut key = vec![b'a'; n];
                for (j, b) in i.to_le_bytes().iter().enumerate() {
                    if j < n {
                        key[n - 1 - j] = *b;
                    }
                }
                let h = hash_bytes(7, &key);
                if seen.insert(key) {
                    buckets[(h & 63) as usize] += 1;
                    buckets[(h >> 58) as usize] += 1;
                }
            }
        }
        let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(*max < 2 * *min, "{min} {max}");
        let hashes: std::collections::HashSet<u64> =
            seen.iter().map(|k| hash_bytes(7, k)).collect();
        assert_eq!(hashes.len(), seen.len());
        assert_ne!(hash_bytes(1, b"foo"), hash_bytes(2, b"foo"));
        assert_ne!(hash_bytes(1, b"foo.bar"), hash_bytes(1, b"foo.baz"));
    }

    /// The straightforward definition: split both into tokens and compare them.
    fn matches_model(pattern: &[u8], subject: &[u8]) -> bool {
        let p: Vec<&[u8]> = pattern.split(|&b| b == SEP).collect();
        let s: Vec<&[u8]> = subject.split(|&b| b == SEP).collect();
        if p.iter().chain(&s).any(|t| t.is_empty()) {
            return false;
        }
        for (i, pt) in p.iter().enumerate() {
            if *pt == [FWC] && i + 1 == p.len() {
                return s.len() > i;
            }
            match s.get(i) {
                Some(st) if *pt == [PWC] || pt == st => {}
                _ => return false,
            }
        }
        p.len() == s.len()
    }

    #[test]
    fn matching_agrees_with_model() {
        let words: [&[u8]; 8] = [b"a", b"ab", b"*", b">", b"", b"abcdefghij", b"*a", b"a>"];
        let mut state = 0x9E37_79B9_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for _ in 0..200_000 {
            let gen = |next: &mut dyn FnMut() -> usize| {
                let k = 1 + next() % 5;
                let toks: Vec<&[u8]> = (0..k).map(|_| words[next() % words.len()]).collect();
                toks.join(&b'.')
            };
            let pattern = gen(&mut next);
            let subject = if next() % 3 == 0 {
                pattern.clone()
            } else {
                gen(&mut next)
            };
            assert_eq!(
                subject_matches(&pattern, &subject),
                matches_model(&pattern, &subject),
                "{:?} {:?}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&subject)
            );
        }
    }

    #[test]
    fn tokenizing_agrees_with_split() {
        let alphabet = [b'a', b'.', b'\xae', b'\x2e' ^ 0x80, b'-', b'/'];
        let mut state = 0x1234_5678_u64;
        for len in 0..40 {
            for _ in 0..200 {
                let subject: Vec<u8> = (0..len)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        alphabet[(state >> 60) as usize % alphabet.len()]
                    })
                    .collect();
                let parts: Vec<&[u8]> = subject.split(|&b| b == SEP).collect();
                let mut t = Tokens::new();
                let valid = parts.iter().all(|p| !p.is_empty());
                assert_eq!(tokenize(&subject, &mut t), valid, "{subject:?}");
                if valid {
                    assert_eq!(&t[..], &parts[..], "{subject:?}");
                }
            }
        }
    }

    #[test]
    fn tokenizing() {
        let mut t = Tokens::new();
        assert!(tokenize(b"a.bb.ccc", &mut t));
        assert_eq!(&t[..], &[&b"a"[..], b"bb", b"ccc"]);
        assert!(!tokenize(b"", &mut t));
        assert!(!tokenize(b"a.", &mut t));
        assert!(!tokenize(b".a", &mut t));
        assert!(!tokenize(b"a..b", &mut t));
    }
}
