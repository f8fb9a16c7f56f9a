//! A consumer's deliveries awaiting their ack, and when each is due for redelivery.
//!
//! Kept by stream sequence (acks, the ack floor, `ack_policy: all`) and by deadline (what is
//! due now, and when the consumer next has to wake), so that neither question scans every
//! pending delivery. A delivery whose deadline passed is taken off the schedule and waits in
//! the consumer's redelivery queue until it goes out again, which schedules it anew.

use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Instant;

/// One delivery not acknowledged yet.
pub(crate) struct Pending {
    /// Its consumer sequence (of the first delivery).
    pub(crate) consumer_seq: u64,
    /// How many times it has gone out.
    pub(crate) deliveries: u64,
    /// When it is due again; `None` while it waits to be delivered again.
    deadline: Option<Instant>,
}

/// The pending deliveries of one consumer.
#[derive(Default)]
pub(crate) struct Unacked {
    by_seq: BTreeMap<u64, Pending>,
    due: BTreeSet<(Instant, u64)>,
}

impl Unacked {
    /// Stream sequence `seq` went out (`deliveries` times) and is due again at `deadline`.
    pub(crate) fn insert(
        &mut self,
        seq: u64,
        consumer_seq: u64,
        deliveries: u64,
        deadline: Instant,
    ) {
        self.remove(seq);
        self.by_seq.insert(
            seq,
            Pending {
                consumer_seq,
                deliveries,
                deadline: Some(deadline),
            },
        );
        self.due.insert((deadline, seq));
    }

    /// The pending delivery of `seq`.
    pub(crate) fn get(&self, seq: u64) -> Option<&Pending> {
        self.by_seq.get(&seq)
    }

    /// Whether `seq` awaits its ack.
    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.by_seq.contains_key(&seq)
    }

    /// Makes `seq` due at `deadline` instead (`-NAK` with a delay, `+WPI`).
    pub(crate) fn reschedule(&mut self, seq: u64, deadline: Instant) -> Option<&Pending> {
        let p = self.by_seq.get_mut(&seq)?;
        if let Some(old) = p.deadline.replace(deadline) {
            self.due.remove(&(old, seq));
        }
        self.due.insert((deadline, seq));
        Some(p)
    }

    /// `seq` went out again; due at `deadline`. Returns how many times it has gone out.
    pub(crate) fn redelivered(&mut self, seq: u64, deadline: Instant) -> Option<u64> {
        self.reschedule(seq, deadline)?;
        let p = self.by_seq.get_mut(&seq)?;
        p.deliveries += 1;
        Some(p.deliveries)
    }

    /// Acknowledged (or given up): no longer pending.
    pub(crate) fn remove(&mut self, seq: u64) -> Option<Pending> {
        let p = self.by_seq.remove(&seq)?;
        if let Some(d) = p.deadline {
            self.due.remove(&(d, seq));
        }
        Some(p)
    }

    /// Removes every pending delivery at or below `seq` (`ack_policy: all`); returns them.
    pub(crate) fn remove_through(&mut self, seq: u64) -> Vec<u64> {
        let seqs: Vec<u64> = self.by_seq.range(..=seq).map(|(s, _)| *s).collect();
        for s in &seqs {
            self.remove(*s);
        }
        seqs
    }

    /// Takes the deliveries due at `now` off the schedule, earliest first.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(&(deadline, seq)) = self.due.first() {
            if deadline > now {
                break;
            }
            self.due.pop_first();
            if let Some(p) = self.by_seq.get_mut(&seq) {
                p.deadline = None;
            }
            seqs.push(seq);
        }
        seqs
    }

    /// When the next delivery comes due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.due.first().map(|(d, _)| *d)
    }

    /// The lowest pending stream sequence and its delivery.
    pub(crate) fn first(&self) -> Option<(u64, &Pending)> {
        self.by_seq.iter().next().map(|(s, p)| (*s, p))
    }

    /// Every pending delivery, by stream sequence.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Pending)> {
        self.by_seq.iter().map(|(s, p)| (*s, p))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub(crate) fn clear(&mut self) {
        self.by_seq.clear();
        self.due.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_deliveries_come_off_the_schedule_until_they_go_out_again() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut u = Unacked::default();
        u.insert(5, 1, 1, t0 + s);
        u.insert(7, 2, 1, t0 + 3 * s);
        u.insert(9, 3, 1, t0 + 2 * s);
        assert_eq!(u.next_deadline(), Some(t0 + s));
        assert_eq!(u.take_due(t0 + 2 * s), vec![5, 9]);
        assert_eq!(u.next_deadline(), Some(t0 + 3 * s));
        assert!(u.contains(5), "still pending, waiting to go out again");
        assert_eq!(u.take_due(t0 + 2 * s), Vec::<u64>::new(), "not due twice");
        assert_eq!(u.redelivered(5, t0 + 10 * s), Some(2));
        assert_eq!(u.next_deadline(), Some(t0 + 3 * s));
        // A NAK with a delay moves it; an ack takes it off.
        u.reschedule(7, t0 + 20 * s);
        assert_eq!(u.take_due(t0 + 15 * s), vec![5]);
        assert!(u.remove(7).is_some());
        assert_eq!(u.next_deadline(), None);
        assert_eq!(u.remove_through(9), vec![5, 9]);
        assert_eq!(u.len(), 0);
    }
}
