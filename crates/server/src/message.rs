//! Messages as in-process subscribers receive them.

use bytes::Bytes;

/// A message delivered to an in-process subscriber.
///
/// The payload is the publisher's `Bytes` (or a slice of the socket read buffer it arrived in):
/// delivering it copies nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The subject it was published to.
    pub subject: Subject,
    /// Where a reply should go, for requests.
    pub reply: Option<Subject>,
    /// The raw `NATS/1.0` header block, if the message has headers.
    pub headers: Option<Bytes>,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// The status code of the header block (`503` for "no responders"), if any.
    pub fn status(&self) -> Option<u16> {
        let h = self.headers.as_ref()?;
        let line = h.split(|&b| b == b'\r').next()?;
        let rest = line.strip_prefix(b"NATS/1.0")?;
        let code = rest.trim_ascii_start().get(..3)?;
        std::str::from_utf8(code).ok()?.parse().ok()
    }

    /// The value of header `name` (case-sensitive first match), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        let h = std::str::from_utf8(self.headers.as_ref()?).ok()?;
        h.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k == name).then(|| v.trim())
        })
    }
}

/// A subject: UTF-8 text, cheap to clone. A short subject (up to 23 bytes, most of them) is
/// kept inline, so cloning or dropping it is a copy of 32 bytes with no reference count to
/// write; a longer one shares `Bytes` (usually a slice of the publisher's buffer).
///
/// Why inline: every message an in-process subscriber reads carries its subject. Shared, each
/// copy is an atomic increment and decrement on one count that the publisher, every
/// subscriber and every message write, from different cores: a third of the in-process cost
/// per message.
#[derive(Clone)]
pub struct Subject(Repr);

/// Subjects up to this long are kept inline (what fits beside the length in `Bytes`'s size).
pub(crate) const INLINE: usize = 23;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Bytes),
}

// As small as `Bytes` itself: the inline form fits in the bytes `Bytes` leaves beside the
// pointer the enum's tag hides in.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<Subject>() == size_of::<Bytes>());

impl Subject {
    /// A subject from bytes; invalid UTF-8 is replaced (NATS subjects are UTF-8 in practice).
    pub fn from_bytes(b: Bytes) -> Self {
        match std::str::from_utf8(&b) {
            Ok(_) => Self::from_checked(b),
            Err(_) => Self::from(String::from_utf8_lossy(&b).into_owned()),
        }
    }

    /// Wraps bytes known to be UTF-8 (they came from a `&str`).
    pub(crate) fn from_checked(b: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&b).is_ok());
        Self::inline(&b).unwrap_or(Self(Repr::Shared(b)))
    }

    /// The inline form of `b`, if it is short enough.
    fn inline(b: &[u8]) -> Option<Self> {
        if b.len() > INLINE {
            return None;
        }
        let mut bytes = [0; INLINE];
        bytes[..b.len()].copy_from_slice(b);
        Some(Self(Repr::Inline {
            len: b.len() as u8,
            bytes,
        }))
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        // Checked at construction; `from_utf8` again keeps this safe code and costs a scan of a
        // short string.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The subject's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Shared(b) => b,
        }
    }

    /// The subject's bytes as `Bytes` (a copy for a short subject).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self.as_bytes()),
            Repr::Shared(b) => b.clone(),
        }
    }
}

impl PartialEq for Subject {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Subject {}

impl std::hash::Hash for Subject {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for Subject {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Subject {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::ops::Deref for Subject {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Subject {
    fn from(s: &str) -> Self {
        Self::inline(s.as_bytes())
            .unwrap_or_else(|| Self(Repr::Shared(Bytes::copy_from_slice(s.as_bytes()))))
    }
}

impl From<String> for Subject {
    fn from(s: String) -> Self {
        Self::inline(s.as_bytes()).unwrap_or_else(|| Self(Repr::Shared(Bytes::from(s))))
    }
}

impl PartialEq<str> for Subject {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Subject {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn short_subjects_are_inline_and_long_ones_shared_with_the_same_meaning() {
        let short = "a".repeat(INLINE);
        let long = "a".repeat(INLINE + 1);
        assert!(matches!(
            Subject::from(short.as_str()).0,
            Repr::Inline { .. }
        ));
        assert!(matches!(Subject::from(long.as_str()).0, Repr::Shared(_)));
        // A short subject from shared bytes is inline too, and equal to its other forms.
        let from_bytes = Subject::from_bytes(Bytes::from(short.clone()));
        assert!(matches!(from_bytes.0, Repr::Inline { .. }));
        assert_eq!(from_bytes, Subject::from(short.clone()));
        assert_eq!(from_bytes, short.as_str());
        assert_eq!(from_bytes.to_bytes(), short.as_bytes());
        // A long one keeps the very bytes it was given.
        let bytes = Bytes::from(long.clone());
        let shared = Subject::from_bytes(bytes.clone());
        assert_eq!(shared.to_bytes().as_ptr(), bytes.as_ptr());
        // Order and hashing follow the text, whatever the form.
        let mut set = HashSet::new();
        set.insert(Subject::from(short.as_str()));
        assert!(set.contains(&Subject::from_bytes(Bytes::from(short.clone()))));
        let (shorter, longer) = (Subject::from("a.b"), Subject::from(long.as_str()));
        assert!(shorter < longer);
        assert_eq!(Subject::from("").as_str(), "");
        // Invalid UTF-8 is replaced, not kept.
        assert_eq!(
            Subject::from_bytes(Bytes::from_static(b"a\xff")).as_str(),
            "a\u{fffd}"
        );
    }
}
