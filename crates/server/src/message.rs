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

/// A subject: UTF-8 text backed by `Bytes` (cheap to clone, usually a slice of the
/// publisher's buffer).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(Bytes);

impl Subject {
    /// A subject from bytes; invalid UTF-8 is replaced (NATS subjects are UTF-8 in practice).
    pub fn from_bytes(b: Bytes) -> Self {
        match std::str::from_utf8(&b) {
            Ok(_) => Self(b),
            Err(_) => Self(Bytes::from(String::from_utf8_lossy(&b).into_owned())),
        }
    }

    /// Wraps bytes known to be UTF-8 (they came from a `&str`).
    pub(crate) fn from_checked(b: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&b).is_ok());
        Self(b)
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        // Checked at construction; `from_utf8` again keeps this safe code and costs a scan of a
        // short string.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The subject's bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
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
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Subject {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
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
