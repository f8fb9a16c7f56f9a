//! Per-message TTLs (`Nats-TTL`) and subject delete markers (nats-server 2.11+).
//!
//! A stream with `allow_msg_ttl` takes a `Nats-TTL` header on a publish: the message goes when
//! its TTL has passed (or at `max_age`, whichever is first), and `never` exempts it from
//! `max_age`. With `subject_delete_marker_ttl`, when age or TTL removes the last message of a
//! subject, a marker takes its place: an empty message on that subject with
//! `Nats-Marker-Reason: MaxAge`, a `Nats-TTL` of the marker TTL, and `Nats-Rollup: sub`, so
//! that watchers (a KV watch) learn the key is gone. The TTL lives in the stored headers, so
//! the index of deadlines here is rebuilt from the store on recovery.

use std::collections::BTreeSet;

use crate::api::error::ApiError;

/// `Nats-TTL`.
pub(crate) const TTL_HEADER: &str = "Nats-TTL";
/// `Nats-Marker-Reason`.
pub(crate) const MARKER_REASON: &str = "Nats-Marker-Reason";

/// What a `Nats-TTL` header asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ttl {
    /// Expires this many seconds after it is stored.
    Seconds(i64),
    /// `never`: not even `max_age` removes it.
    Never,
}

/// Parses a `Nats-TTL` value as nats-server does: `never`, a Go duration of at least one
/// second (`30s`, `1h5m`), or a whole number of seconds.
pub(crate) fn parse(value: &str) -> Result<Ttl, ApiError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("never") {
        return Ok(Ttl::Never);
    }
    // A negative Go duration is one too, and under a second like `0`: invalid either way.
    if value.starts_with('-') {
        return Err(ApiError::message_ttl_invalid());
    }
    if let Ok(d) = starling_server::gotime::parse_duration(value) {
        if d < std::time::Duration::from_secs(1) {
            return Err(ApiError::message_ttl_invalid());
        }
        return Ok(Ttl::Seconds(d.as_secs() as i64));
    }
    match value.parse::<i64>() {
        Ok(s) if s >= 0 => Ok(Ttl::Seconds(s)),
        _ => Err(ApiError::message_ttl_invalid()),
    }
}

/// The TTL of a stored header block, if it has a valid one (a stored TTL was checked on the
/// way in, so a bad one here means "none").
pub(crate) fn of_headers(headers: Option<&[u8]>) -> Option<Ttl> {
    let value = header_value(headers?, TTL_HEADER)?;
    parse(value).ok().filter(|t| *t != Ttl::Seconds(0))
}

/// Whether a stored header block is a subject delete marker: a `Nats-Marker-Reason`, or a KV
/// purge (`KV-Operation: PURGE`). Removing a marker leaves no new marker.
pub(crate) fn is_marker(headers: Option<&[u8]>) -> bool {
    let Some(h) = headers else { return false };
    header_value(h, MARKER_REASON).is_some_and(|v| !v.is_empty())
        || header_value(h, "KV-Operation") == Some("PURGE")
}

/// The header block of a marker left by `max_age` or a TTL, `ttl_secs` being the stream's
/// `subject_delete_marker_ttl`.
pub(crate) fn marker_headers(ttl_secs: i64) -> Vec<u8> {
    format!(
        "NATS/1.0\r\n{MARKER_REASON}: MaxAge\r\n{TTL_HEADER}: {}\r\nNats-Rollup: sub\r\n\r\n",
        starling_server::gotime::go_duration(
            std::time::Duration::from_secs(ttl_secs.max(0) as u64)
        )
    )
    .into_bytes()
}

/// `block` with its `Nats-TTL` set to `secs`.
pub(crate) fn with_ttl(block: &[u8], secs: i64) -> Vec<u8> {
    let text = String::from_utf8_lossy(block);
    let mut out = String::with_capacity(block.len() + 8);
    for line in text.split("\r\n") {
        if line.is_empty() {
            continue;
        }
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim() == TTL_HEADER)
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("{TTL_HEADER}: {secs}\r\n\r\n"));
    out.into_bytes()
}

/// The first value of header `name` in a `NATS/1.0` block.
fn header_value<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(block).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// When the messages with a TTL expire: (deadline in ns since the epoch, sequence).
///
/// Entries are not removed when their message goes some other way (a limit, a purge); the
/// expiry finds the message gone and drops the entry then.
#[derive(Default)]
pub(crate) struct Deadlines {
    by_time: BTreeSet<(i64, u64)>,
}

impl Deadlines {
    /// Message `seq`, stored at `time`, expires `ttl` seconds later.
    pub(crate) fn insert(&mut self, seq: u64, time: i64, ttl_secs: i64) {
        let deadline = time.saturating_add(ttl_secs.saturating_mul(1_000_000_000));
        self.by_time.insert((deadline, seq));
    }

    /// Takes the sequences whose deadline is at or before `now`, oldest deadline first.
    pub(crate) fn take_due(&mut self, now: i64) -> Vec<u64> {
        let later = self.by_time.split_off(&(now.saturating_add(1), 0));
        let due = std::mem::replace(&mut self.by_time, later);
        due.into_iter().map(|(_, seq)| seq).collect()
    }

    /// The earliest deadline, if any.
    pub(crate) fn next(&self) -> Option<i64> {
        self.by_time.first().map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_nats_server_parses_them() {
        assert_eq!(parse("never").unwrap(), Ttl::Never);
        assert_eq!(parse("NEVER").unwrap(), Ttl::Never);
        assert_eq!(parse("20").unwrap(), Ttl::Seconds(20));
        assert_eq!(parse("2s").unwrap(), Ttl::Seconds(2));
        assert_eq!(parse("1m30s").unwrap(), Ttl::Seconds(90));
        assert_eq!(parse("1.5h").unwrap(), Ttl::Seconds(5400));
        assert!(
            parse("0").is_err(),
            "Go parses 0 as a duration, under a second"
        );
        assert!(parse("500ms").is_err(), "under a second");
        assert!(parse("-1").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("soon").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn markers_are_recognised() {
        let m = marker_headers(2);
        let text = std::str::from_utf8(&m).unwrap();
        assert!(text.contains("Nats-TTL: 2s\r\n"), "{text}");
        assert!(is_marker(Some(&m)));
        assert_eq!(of_headers(Some(&m)), Some(Ttl::Seconds(2)));
        assert!(is_marker(Some(b"NATS/1.0\r\nKV-Operation: PURGE\r\n\r\n")));
        assert!(!is_marker(Some(b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n")));
        assert!(!is_marker(None));
        assert!(std::str::from_utf8(&marker_headers(3600))
            .unwrap()
            .contains("Nats-TTL: 1h0m0s\r\n"));
        let raised = with_ttl(b"NATS/1.0\r\nA: b\r\nNats-TTL: 1\r\n\r\n", 5);
        assert_eq!(raised, b"NATS/1.0\r\nA: b\r\nNats-TTL: 5\r\n\r\n");
    }

    #[test]
    fn deadlines_come_due_in_order() {
        let mut d = Deadlines::default();
        d.insert(3, 1_000, 2);
        d.insert(1, 1_000, 1);
        d.insert(2, 5_000_000_000, 1);
        assert_eq!(d.next(), Some(1_000_001_000));
        assert_eq!(d.take_due(1_000_001_000), vec![1]);
        assert_eq!(d.take_due(2_000_000_999), Vec::<u64>::new());
        assert_eq!(d.take_due(2_000_001_000), vec![3]);
        assert_eq!(d.next(), Some(6_000_000_000));
    }
}
