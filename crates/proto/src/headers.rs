//! The `NATS/1.0` header block of `HPUB`/`HMSG`.
//!
//! ```text
//! NATS/1.0[ <3-digit status>[ <description>]]\r\n
//! Name: value\r\n        (zero or more; names case-preserving, repeats allowed)
//! \r\n
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::HeaderError;

const VERSION: &[u8] = b"NATS/1.0";

/// A parsed or built header block: an optional status line and ordered, case-preserving,
/// possibly repeated `Name: value` pairs.
///
/// Validation follows what async-nats (the strictest client) accepts: the block starts with
/// `NATS/1.0`, a status is three digits, names are non-empty visible ASCII without `:`,
/// values have no CR or LF, everything is UTF-8, and the block ends with an empty line.
/// Values are stored trimmed of surrounding spaces and tabs, as clients read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    status: Option<u16>,
    description: Option<String>,
    entries: Vec<(String, String)>,
}

impl HeaderMap {
    /// The exact block of a no-responders status: `NATS/1.0 503\r\n\r\n`.
    pub const NO_RESPONDERS: &'static [u8] = b"NATS/1.0 503\r\n\r\n";

    /// An empty block (`NATS/1.0\r\n\r\n` when encoded).
    pub fn new() -> Self {
        Self::default()
    }

    /// A block with only a status line: `status_only(503)` encodes as `NATS/1.0 503\r\n\r\n`.
    ///
    /// # Panics
    /// If `status` is not a three-digit code (100..=999).
    pub fn status_only(status: u16) -> Self {
        assert!(
            (100..=999).contains(&status),
            "status must have three digits"
        );
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// A block with a status line and description, e.g. `408 Request Timeout`.
    pub fn with_status(status: u16, description: &str) -> Result<Self, HeaderError> {
        let mut h = Self::new();
        h.set_status(Some(status), Some(description))?;
        Ok(h)
    }

    /// Parses a complete header block (exactly `data[..header_len]` of a message).
    pub fn parse(block: &[u8]) -> Result<Self, HeaderError> {
        let rest = block
            .strip_prefix(VERSION)
            .ok_or(HeaderError::MissingVersion)?;
        let (status_line, mut rest) = split_crlf(rest).ok_or(HeaderError::MissingTerminator)?;
        let mut map = Self::new();
        if !status_line.is_empty() {
            if !matches!(status_line[0], b' ' | b'\t') {
                return Err(HeaderError::MissingVersion);
            }
            let s = trim(status_line);
            if !s.is_empty() {
                let code_end = s
                    .iter()
                    .position(|&b| b == b' ' || b == b'\t')
                    .unwrap_or(s.len());
                let code = &s[..code_end];
                if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
                    return Err(HeaderError::InvalidStatus);
                }
                map.status = Some(code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')));
                let desc = trim(&s[code_end..]);
                if !desc.is_empty() {
                    map.description = Some(utf8(desc)?.to_owned());
                }
            }
        }
        loop {
            let (line, next) = split_crlf(rest).ok_or(HeaderError::MissingTerminator)?;
            rest = next;
            if line.is_empty() {
                break;
            }
            if matches!(line[0], b' ' | b'\t') {
                // A continuation line folds into the previous value.
                let (_, value) = map.entries.last_mut().ok_or(HeaderError::InvalidName)?;
                let more = utf8(trim(line))?;
                check_value(more)?;
                if !more.is_empty() {
                    if !value.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(more);
                }
                continue;
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(HeaderError::MissingColon)?;
            let name = &line[..colon];
            check_name(name)?;
            let value = utf8(trim(&line[colon + 1..]))?;
            check_value(value)?;
            map.entries.push((utf8(name)?.to_owned(), value.to_owned()));
        }
        if !rest.is_empty() {
            return Err(HeaderError::MissingTerminator);
        }
        Ok(map)
    }

    /// The status code, if any.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The status description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Sets (or with `None` clears) the status line. A description needs a status.
    pub fn set_status(
        &mut self,
        status: Option<u16>,
        description: Option<&str>,
    ) -> Result<(), HeaderError> {
        if let Some(s) = status {
            if !(100..=999).contains(&s) {
                return Err(HeaderError::InvalidStatus);
            }
        }
        let description = match description.map(|d| d.trim_matches([' ', '\t'])) {
            Some("") | None => None,
            Some(_) if status.is_none() => return Err(HeaderError::InvalidStatus),
            Some(d) => {
                check_value(d)?;
                Some(d.to_owned())
            }
        };
        self.status = status;
        self.description = description;
        Ok(())
    }

    /// Adds a value for `name` after the existing ones.
    pub fn append(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        check_name(name.as_bytes())?;
        let value = value.trim_matches([' ', '\t']);
        check_value(value)?;
        self.entries.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Sets the value of `name` (exact case), replacing any values it had.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        check_name(name.as_bytes())?;
        check_value(value.trim_matches([' ', '\t']))?;
        self.remove(name);
        self.append(name, value)
    }

    /// Removes every value of `name` (exact case); returns how many there were.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != name);
        before - self.entries.len()
    }

    /// The first value of `name`, matched exactly (case-sensitive, as nats-server does).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, matched ignoring ASCII case.
    pub fn get_ignore_case(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (exact case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of `(name, value)` pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no `(name, value)` pairs (there may still be a status).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The encoded size in bytes (the `header_len` of a message carrying this block).
    pub fn encoded_len(&self) -> usize {
        let mut n = VERSION.len() + 2 + 2;
        if self.status.is_some() {
            n += 4;
            if let Some(d) = &self.description {
                n += 1 + d.len();
            }
        }
        n + self
            .entries
            .iter()
            .map(|(k, v)| k.len() + 2 + v.len() + 2)
            .sum::<usize>()
    }

    /// Writes the block into `buf`.
    pub fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(VERSION);
        if let Some(s) = self.status {
            let mut b = itoa::Buffer::new();
            buf.put_u8(b' ');
            buf.put_slice(b.format(s).as_bytes());
            if let Some(d) = &self.description {
                buf.put_u8(b' ');
                buf.put_slice(d.as_bytes());
            }
        }
        buf.put_slice(b"\r\n");
        for (k, v) in &self.entries {
            buf.put_slice(k.as_bytes());
            buf.put_slice(b": ");
            buf.put_slice(v.as_bytes());
            buf.put_slice(b"\r\n");
        }
        buf.put_slice(b"\r\n");
    }

    /// The encoded block.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.write(&mut b);
        b.freeze()
    }
}

fn split_crlf(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let p = memchr::memmem::find(s, b"\r\n")?;
    Some((&s[..p], &s[p + 2..]))
}

fn trim(s: &[u8]) -> &[u8] {
    crate::args::trim(s)
}

fn utf8(s: &[u8]) -> Result<&str, HeaderError> {
    std::str::from_utf8(s).map_err(|_| HeaderError::NotUtf8)
}

fn check_name(name: &[u8]) -> Result<(), HeaderError> {
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b) && b != b':') {
        return Err(HeaderError::InvalidName);
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), HeaderError> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(HeaderError::InvalidValue);
    }
    Ok(())
}
