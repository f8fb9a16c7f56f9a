//! A connection's outbound queue: what producers append and its writer task drains.
//!
//! Producers (the reader tasks of publishing connections) append pre-formatted protocol lines
//! and payloads under a short lock. Small payloads are copied into one flat buffer, so a batch
//! of small messages goes out in a single write; large payloads are queued as their own `Bytes`
//! (shared with the publisher's read buffer: no copy). The writer swaps the whole queue out under
//! the lock and writes it with vectored writes outside the lock.
//!
//! Flush coalescing: an append returns [`Appended::Signal`] only for the first append after the
//! writer last took the queue; the producer wakes the writer once, at the end of its read batch.
//!
//! Producer-side batching: a producer lays small messages for a consumer out in its own staging
//! buffer during a read batch and appends them with [`Outbound::push_staged`], one lock per batch
//! and consumer instead of one per message (`delivery.rs`, `Touched`).
//!
//! Only [`super::Conn`] appends, so that every append shares one outcome path.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Payloads up to this size are copied into the flat buffer; larger ones are queued by reference.
pub(crate) const INLINE_MAX: usize = 2048;
/// Initial capacity of the flat buffer.
const TAIL_CAPACITY: usize = 32 * 1024;

/// The result of appending to a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Queued; the writer was already signalled for this batch.
    Queued,
    /// Queued; the caller must wake the writer (once, at the end of its batch).
    Signal,
    /// The queue went over its pending-bytes limit: the connection is a slow consumer.
    /// Nothing was queued and the queue is now closed.
    SlowConsumer,
    /// The queue was already closed; nothing was queued.
    Closed,
}

#[derive(Default)]
struct Queue {
    /// Frozen segments, in order, all before `tail`.
    segments: Vec<Bytes>,
    /// The flat buffer that control lines and small payloads are copied into.
    tail: BytesMut,
    /// Bytes queued or being written, not yet confirmed written.
    pending: usize,
    /// The writer has been signalled since it last took the queue.
    signalled: bool,
    closed: bool,
    /// Delivered messages and their payload bytes, headers included (for monitoring, as
    /// nats-server counts them), counted under the lock we hold anyway.
    out_msgs: u64,
    out_bytes: u64,
}

/// One connection's outbound queue.
pub(super) struct Outbound {
    queue: Mutex<Queue>,
    max_pending: usize,
    /// Wakes the writer.
    pub(super) wake: Notify,
    /// Wakes producers that stalled on this consumer.
    drained: Notify,
    /// Pending bytes are above half the limit: producers should stall briefly.
    stalled: AtomicBool,
    /// Mirrors the queue's `closed`, for producers to check without the lock.
    closed: AtomicBool,
}

/// A batch taken by the writer.
pub(crate) struct Batch {
    pub(crate) bufs: Vec<Bytes>,
    pub(crate) len: usize,
}

impl Outbound {
    pub(super) fn new(max_pending: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            max_pending,
            wake: Notify::new(),
            drained: Notify::new(),
            stalled: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// Appends protocol lines built by `build` (PONG, +OK, -ERR, INFO ...).
    pub(super) fn push_with(&self, build: impl FnOnce(&mut BytesMut)) -> Appended {
        let mut q = self.queue.lock();
        if q.closed {
            return Appended::Closed;
        }
        let before = q.tail.len();
        build(&mut q.tail);
        let len = q.tail.len() - before;
        if q.pending + len > self.max_pending {
            q.tail.truncate(before);
            return self.overflow(&mut q);
        }
        self.finish(&mut q, len, 0, 0)
    }

    /// Appends whole messages a producer laid out in `staged` (control lines, payloads and
    /// CRLFs: `msgs` messages carrying `payload` bytes), under one lock for the whole batch.
    /// Empties `staged`, keeping its capacity for the producer's next batch.
    pub(super) fn push_staged(&self, staged: &mut BytesMut, msgs: u64, payload: u64) -> Appended {
        let len = staged.len();
        let mut q = self.queue.lock();
        let appended = if q.closed {
            Appended::Closed
        } else if q.pending + len > self.max_pending {
            self.overflow(&mut q)
        } else {
            q.tail.extend_from_slice(staged);
            self.finish(&mut q, len, msgs, payload)
        };
        drop(q);
        staged.clear();
        appended
    }

    /// Appends a message: a control line built by `ctl`, then `data`, then CRLF. A large `data`
    /// is queued as a slice of `owner` (which must contain it) instead of being copied.
    pub(super) fn push_msg(
        &self,
        ctl: impl FnOnce(&mut BytesMut),
        data: &[u8],
        owner: &Bytes,
    ) -> Appended {
        let mut q = self.queue.lock();
        if q.closed {
            return Appended::Closed;
        }
        if q.tail.capacity() - q.tail.len() < 256 + INLINE_MAX.min(data.len()) {
            q.tail.reserve(TAIL_CAPACITY);
        }
        let before = q.tail.len();
        ctl(&mut q.tail);
        let len = q.tail.len() - before + data.len() + 2;
        if q.pending + len > self.max_pending {
            q.tail.truncate(before);
            return self.overflow(&mut q);
        }
        if data.len() <= INLINE_MAX {
            q.tail.extend_from_slice(data);
        } else {
            let head = q.tail.split().freeze();
            if !head.is_empty() {
                q.segments.push(head);
            }
            q.segments.push(owner.slice_ref(data));
        }
        q.tail.extend_from_slice(b"\r\n");
        self.finish(&mut q, len, 1, data.len() as u64)
    }

    fn overflow(&self, q: &mut Queue) -> Appended {
        q.closed = true;
        self.closed.store(true, Ordering::Relaxed);
        q.segments = Vec::new();
        q.tail = BytesMut::new();
        q.pending = 0;
        self.stalled.store(false, Ordering::Relaxed);
        self.drained.notify_waiters();
        Appended::SlowConsumer
    }

    /// Accounts `len` queued bytes holding `msgs` messages of `payload` bytes in all.
    fn finish(&self, q: &mut Queue, len: usize, msgs: u64, payload: u64) -> Appended {
        q.pending += len;
        q.out_msgs += msgs;
        q.out_bytes += payload;
        if q.pending > self.max_pending / 2 && !self.stalled.load(Ordering::Relaxed) {
            self.stalled.store(true, Ordering::Relaxed);
        }
        if q.signalled {
            Appended::Queued
        } else {
            q.signalled = true;
            Appended::Signal
        }
    }

    /// Takes everything queued (the bytes stay counted as pending until [`Self::written`]).
    pub(super) fn take(&self) -> Batch {
        let mut q = self.queue.lock();
        q.signalled = false;
        let mut bufs = std::mem::take(&mut q.segments);
        if !q.tail.is_empty() {
            bufs.push(q.tail.split().freeze());
        }
        let len = bufs.iter().map(Bytes::len).sum();
        Batch { bufs, len }
    }

    /// The writer wrote `n` bytes of what it took.
    pub(super) fn written(&self, n: usize) {
        let mut q = self.queue.lock();
        q.pending = q.pending.saturating_sub(n);
        if q.pending <= self.max_pending / 2 && self.stalled.load(Ordering::Relaxed) {
            self.stalled.store(false, Ordering::Relaxed);
            self.drained.notify_waiters();
        }
    }

    /// Closes the queue: later appends are refused, queued data is kept for a final flush.
    pub(super) fn close(&self) {
        self.queue.lock().closed = true;
        self.closed.store(true, Ordering::Relaxed);
        self.stalled.store(false, Ordering::Relaxed);
        self.drained.notify_waiters();
    }

    /// Whether the queue refuses appends (a cheap check without the lock; an append that races
    /// a close is refused under the lock anyway).
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Whether producers should stall for this consumer.
    pub(super) fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Waits until this consumer drains below half its limit (or closes).
    pub(super) async fn wait_drained(&self) {
        let notified = self.drained.notified();
        if !self.is_stalled() {
            return;
        }
        notified.await;
    }

    /// The pending-bytes limit.
    pub(super) fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// Pending bytes (monitoring).
    pub(super) fn pending(&self) -> usize {
        self.queue.lock().pending
    }

    /// Messages and bytes delivered through this queue (monitoring).
    pub(super) fn out_counts(&self) -> (u64, u64) {
        let q = self.queue.lock();
        (q.out_msgs, q.out_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_signals_until_taken() {
        let out = Outbound::new(1 << 20);
        let owner = Bytes::from_static(b"hello");
        let ctl = |b: &mut BytesMut| b.extend_from_slice(b"MSG a 1 5\r\n");
        assert_eq!(out.push_msg(ctl, &owner, &owner), Appended::Signal);
        assert_eq!(out.push_msg(ctl, &owner, &owner), Appended::Queued);
        let batch = out.take();
        assert_eq!(batch.len, 36);
        assert_eq!(
            batch.bufs.concat(),
            b"MSG a 1 5\r\nhello\r\nMSG a 1 5\r\nhello\r\n"
        );
        assert_eq!(out.pending(), 36);
        out.written(36);
        assert_eq!(out.pending(), 0);
        assert_eq!(out.push_msg(ctl, &owner, &owner), Appended::Signal);
    }

    #[test]
    fn large_payloads_are_shared_not_copied() {
        let out = Outbound::new(1 << 20);
        let owner = Bytes::from(vec![7u8; 10_000]);
        let data = &owner[100..9_000];
        out.push_msg(|b| b.extend_from_slice(b"MSG"), data, &owner);
        let batch = out.take();
        assert_eq!(batch.bufs.len(), 3);
        assert_eq!(batch.bufs[1].as_ptr(), data.as_ptr());
        assert_eq!(batch.len, 3 + 8_900 + 2);
    }

    #[test]
    fn overflow_closes_and_drops() {
        let out = Outbound::new(100);
        let owner = Bytes::from(vec![1u8; 60]);
        assert_eq!(out.push_msg(|_| {}, &owner, &owner), Appended::Signal);
        assert!(out.is_stalled());
        assert_eq!(out.push_msg(|_| {}, &owner, &owner), Appended::SlowConsumer);
        assert_eq!(out.pending(), 0);
        assert_eq!(out.push_msg(|_| {}, &owner, &owner), Appended::Closed);
    }
}
