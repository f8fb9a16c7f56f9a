//! Sequence numbers in payloads, and the checks that make a lost, duplicated or reordered
//! message fail the run.
//!
//! Every payload starts with the publisher's sequence number (u64, little endian, from 0)
//! and the publisher's id (u32). A subscriber that must see every message checks, per
//! publisher, that each sequence is exactly the next one; a queue-group member checks that
//! its sequences only increase and records them in a bitmap, and the group's bitmaps must be
//! disjoint and together cover every message sent.

use crate::error::{BenchError, Result};

/// Bytes of a payload taken by the sequence header.
pub const HEADER_LEN: usize = 12;
/// The publisher id of a probe message (sent while waiting for interest to propagate);
/// subscribers ignore probes.
pub const PROBE_ID: u32 = u32::MAX;

/// Writes `seq` and `publisher` into the front of `payload`.
pub fn stamp(payload: &mut [u8], seq: u64, publisher: u32) {
    payload[..8].copy_from_slice(&seq.to_le_bytes());
    payload[8..12].copy_from_slice(&publisher.to_le_bytes());
}

/// Reads `(seq, publisher)` from the front of `payload`.
pub fn read(payload: &[u8]) -> Result<(u64, u32)> {
    if payload.len() < HEADER_LEN {
        return Err(BenchError::Sequence(format!(
            "payload of {} bytes has no sequence header",
            payload.len()
        )));
    }
    let seq = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    let id = u32::from_le_bytes(payload[8..12].try_into().expect("4 bytes"));
    Ok((seq, id))
}

/// How a subscriber must see the messages of each publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every message, in order, exactly once.
    All,
    /// A share of them (queue group member): increasing, each at most once.
    Share,
}

/// One subscriber's view of the sequences it has received.
#[derive(Debug)]
pub struct Tracker {
    name: String,
    expect: Expect,
    /// Per publisher: the next sequence expected (`All`) or one past the last seen (`Share`).
    next: Vec<u64>,
    /// Per publisher, `Share` only: which sequences were seen.
    seen: Vec<Vec<u64>>,
    /// Per publisher: messages received.
    counts: Vec<u64>,
    /// Messages received (probes excluded).
    pub received: u64,
}

impl Tracker {
    /// A tracker for `publishers` publishers; `name` identifies the subscriber in errors.
    pub fn new(name: impl Into<String>, publishers: usize, expect: Expect) -> Self {
        Self {
            name: name.into(),
            expect,
            next: vec![0; publishers],
            seen: vec![
                Vec::new();
                if expect == Expect::Share {
                    publishers
                } else {
                    0
                }
            ],
            counts: vec![0; publishers],
            received: 0,
        }
    }

    /// Checks one payload. `Ok(Some(publisher))` for a counted message, `Ok(None)` for a probe.
    #[inline]
    pub fn check(&mut self, payload: &[u8]) -> Result<Option<usize>> {
        let (seq, id) = read(payload)?;
        if id == PROBE_ID {
            return Ok(None);
        }
        let p = id as usize;
        let Some(next) = self.next.get_mut(p) else {
            return Err(BenchError::Sequence(format!(
                "{}: message from unknown publisher {id}",
                self.name
            )));
        };
        match self.expect {
            Expect::All if seq != *next => {
                let what = if seq > *next {
                    format!(
                        "lost {} message(s) (expected {}, got {seq})",
                        seq - *next,
                        *next
                    )
                } else {
                    format!(
                        "duplicate or reordered message (expected {}, got {seq})",
                        *next
                    )
                };
                return Err(BenchError::Sequence(format!(
                    "{} from publisher {p}: {what}",
                    self.name
                )));
            }
            Expect::Share if seq < *next => {
                return Err(BenchError::Sequence(format!(
                    "{} from publisher {p}: duplicate or reordered message (got {seq} after {})",
                    self.name,
                    *next - 1
                )));
            }
            Expect::Share => {
                let bits = &mut self.seen[p];
                let word = (seq / 64) as usize;
                if bits.len() <= word {
                    bits.resize((word + 1).max(bits.len() * 2), 0);
                }
                bits[word] |= 1 << (seq % 64);
            }
            Expect::All => {}
        }
        *next = seq + 1;
        self.counts[p] += 1;
        self.received += 1;
        Ok(Some(p))
    }

    /// Messages of `publisher` this subscriber has received.
    pub fn count(&self, publisher: usize) -> u64 {
        self.counts[publisher]
    }

    /// `All`: checks that every message each publisher sent (`sent[p]`) arrived.
    pub fn check_complete(&self, sent: &[u64]) -> Result<()> {
        for (p, (&got, &want)) in self.next.iter().zip(sent).enumerate() {
            if got != want {
                return Err(BenchError::Sequence(format!(
                    "{}: publisher {p} sent {want} message(s), {got} arrived in order",
                    self.name
                )));
            }
        }
        Ok(())
    }
}

/// `Share`: checks that the members of a queue group together received every message
/// exactly once.
pub fn check_group(members: &[Tracker], sent: &[u64]) -> Result<()> {
    for (p, &want) in sent.iter().enumerate() {
        let words = (want as usize).div_ceil(64);
        let mut union = vec![0u64; words];
        for m in members {
            let bits = m.seen.get(p).map(Vec::as_slice).unwrap_or(&[]);
            if bits.len() > words && bits[words..].iter().any(|&w| w != 0) {
                return Err(BenchError::Sequence(format!(
                    "{}: publisher {p}: a sequence beyond the {want} sent arrived",
                    m.name
                )));
            }
            for (u, &b) in union.iter_mut().zip(bits) {
                if *u & b != 0 {
                    return Err(BenchError::Sequence(format!(
                        "queue group: publisher {p}: a message was delivered to two members \
                         (duplicate; second seen by {})",
                        m.name
                    )));
                }
                *u |= b;
            }
        }
        let got: u64 = union.iter().map(|w| u64::from(w.count_ones())).sum();
        if got != want {
            return Err(BenchError::Sequence(format!(
                "queue group: publisher {p} sent {want} message(s), {got} arrived (lost {})",
                want.saturating_sub(got)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seq: u64, id: u32) -> Vec<u8> {
        let mut p = vec![0; 16];
        stamp(&mut p, seq, id);
        p
    }

    #[test]
    fn in_order_passes_and_gaps_fail() {
        let mut t = Tracker::new("s", 1, Expect::All);
        t.check(&payload(0, 0)).unwrap();
        t.check(&payload(1, 0)).unwrap();
        assert!(t.check(&payload(1, 0)).unwrap_err().is_sequence());
        let mut t = Tracker::new("s", 1, Expect::All);
        t.check(&payload(0, 0)).unwrap();
        assert!(t.check(&payload(2, 0)).unwrap_err().is_sequence());
        assert_eq!(t.check(&payload(9, PROBE_ID)).unwrap(), None);
        assert!(t.check_complete(&[2]).is_err());
        assert!(t.check_complete(&[1]).is_ok());
    }

    #[test]
    fn group_must_cover_exactly_once() {
        let mut a = Tracker::new("a", 1, Expect::Share);
        let mut b = Tracker::new("b", 1, Expect::Share);
        for s in [0, 2, 3] {
            a.check(&payload(s, 0)).unwrap();
        }
        b.check(&payload(1, 0)).unwrap();
        check_group(&[a, b], &[4]).unwrap();
        let mut a = Tracker::new("a", 1, Expect::Share);
        let mut b = Tracker::new("b", 1, Expect::Share);
        a.check(&payload(0, 0)).unwrap();
        b.check(&payload(0, 0)).unwrap();
        assert!(check_group(&[a, b], &[1]).unwrap_err().is_sequence());
        let mut a = Tracker::new("a", 1, Expect::Share);
        a.check(&payload(1, 0)).unwrap();
        assert!(check_group(&[a], &[2]).unwrap_err().is_sequence());
    }
}
