//! An in-process subscription's queue: where delivery leaves messages and a
//! [`Subscriber`](super::Subscriber) takes them.
//!
//! Built for batches on both sides. A producer hands over what one publish (or one batch of
//! them) delivered to the subscription under one lock, and wakes the subscriber only when it
//! waits. The subscriber takes everything queued under one lock too, by swapping buffers, and
//! then reads from its own buffer without touching shared state. The tokio mpsc channel this
//! replaces paid an atomic handshake, a wake attempt and a permit per message on each side
//! (and a block allocation every 32): more than the rest of in-process delivery together.
//!
//! Written by hand because what it adds over a channel is the point: the batch hand-over in
//! both directions, and the `max_pending` bytes that travel with the messages, released by
//! the subscriber once per batch instead of once per message.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use bytes::Bytes;

use crate::message::{Message, Subject};

/// The shared half of an in-process subscription.
#[derive(Default)]
pub(crate) struct LocalQueue {
    state: Mutex<State>,
}

/// What waits in a queue: a message, or a run of them.
pub(crate) enum Item {
    One(Message),
    Run(Run),
}

/// Messages published together to one subject, without reply or headers
/// ([`Client::publish_many`](super::Client::publish_many)): handed over as their payloads,
/// with the subject once. The subscriber makes each message as it reads it, from its own copy
/// of the subject, so the publisher does no per-message work for it beyond moving the payload.
pub(crate) struct Run {
    subject: Subject,
    payloads: std::vec::IntoIter<Bytes>,
}

impl Run {
    pub(crate) fn new(subject: Subject, payloads: Vec<Bytes>) -> Self {
        Self {
            subject,
            payloads: payloads.into_iter(),
        }
    }

    /// The run's next message; `None` once it is spent.
    pub(crate) fn next_message(&mut self) -> Option<Message> {
        let payload = self.payloads.next()?;
        Some(message(&self.subject, payload))
    }

    /// Appends up to `max` of the run's next messages to `out`; returns how many.
    pub(crate) fn take_into(&mut self, out: &mut Vec<Message>, max: usize) -> usize {
        let n = self.payloads.len().min(max);
        let subject = &self.subject;
        out.extend(self.payloads.by_ref().take(n).map(|p| message(subject, p)));
        n
    }

    /// The run's subject.
    pub(crate) fn subject(&self) -> &Subject {
        &self.subject
    }

    /// Appends up to `max` of the run's next payloads to `out`; returns how many. Into an
    /// empty `out`, a whole run is handed over as its buffer (no copy); `out`'s own buffer
    /// is returned to be reused.
    pub(crate) fn take_payloads_into(
        &mut self,
        out: &mut Vec<Bytes>,
        max: usize,
    ) -> (usize, Option<Vec<Bytes>>) {
        let n = self.payloads.len().min(max);
        if out.is_empty() && n == self.payloads.len() {
            let rest = std::mem::replace(&mut self.payloads, Vec::new().into_iter());
            // A `vec::IntoIter` collected into a `Vec` reuses its allocation, moving what is
            // left to the front if the run was partly read (std copies into a new one only
            // when less than half is left).
            let mut whole: Vec<Bytes> = rest.collect();
            std::mem::swap(out, &mut whole);
            return (n, Some(whole));
        }
        out.extend(self.payloads.by_ref().take(n));
        (n, None)
    }

    /// Whether every message of the run was taken.
    pub(crate) fn is_spent(&self) -> bool {
        self.payloads.len() == 0
    }

    /// The run's buffer, emptied (what is left of the run is dropped), for [`RunBuffers`].
    pub(crate) fn into_buffer(self) -> Vec<Bytes> {
        // Collecting a `vec::IntoIter` through an adapter into a `Vec` of the same type reuses its
        // allocation in place (std's in-place collection). Were it ever to allocate instead,
        // this would only cost what the pool saves.
        self.payloads.filter(|_| false).collect()
    }
}

/// One message of a run: its own copy of the subject, no reply, no headers.
fn message(subject: &Subject, payload: Bytes) -> Message {
    Message {
        subject: subject.clone(),
        reply: None,
        headers: None,
        payload,
    }
}

/// Spent runs' buffers, kept for the next [`Client::publish_many`](super::Client::publish_many)
/// runs. Without it each run's buffer is allocated on the publisher's thread and freed on the
/// subscriber's: the allocator hands the memory back to the kernel and takes it again, a page
/// fault per 4 KiB (a tenth of the time per message of a publish_many run, by perf). Bounded:
/// at most [`Self::KEEP`] buffers of one run each.
#[derive(Default)]
pub(crate) struct RunBuffers(Mutex<Vec<Vec<Bytes>>>);

impl RunBuffers {
    /// Buffers kept at most (a run's buffer is 32 KiB).
    const KEEP: usize = 16;

    /// An empty buffer for a run of up to `n` payloads.
    pub(crate) fn take(&self, n: usize) -> Vec<Bytes> {
        let n = n.clamp(1, super::inprocess::PUBLISH_MANY_RUN);
        match self.0.lock().pop() {
            Some(buf) => buf,
            None => Vec::with_capacity(n),
        }
    }

    /// Keeps `buf` for a later run if it is a whole run's buffer and there is room.
    pub(crate) fn give(&self, mut buf: Vec<Bytes>) {
        if buf.capacity() != super::inprocess::PUBLISH_MANY_RUN {
            return;
        }
        buf.clear();
        let mut kept = self.0.lock();
        if kept.len() < Self::KEEP {
            kept.push(buf);
        }
    }
}

#[derive(Default)]
struct State {
    msgs: VecDeque<Item>,
    /// The `max_pending` bytes the queued messages hold on the subscriber's connection; the
    /// subscriber releases them when it takes the messages.
    reserved: usize,
    /// The subscriber's task, while it waits for messages.
    waker: Option<Waker>,
    /// The subscription was removed: nothing more comes once the queue is empty.
    ended: bool,
    /// The subscriber is gone: deliveries are refused.
    dropped: bool,
}

/// What a subscriber took from its queue.
pub(crate) enum Taken {
    /// Messages were moved into its buffer; it releases this many reserved bytes.
    Msgs { reserved: usize },
    /// The subscription ended and everything delivered before has been taken.
    Ended,
}

impl LocalQueue {
    /// Appends `msgs` (emptying it), which hold `reserved` bytes of the subscriber's budget,
    /// and wakes the subscriber if it waits. False, with `msgs` left as it was, once the
    /// subscriber is gone: the caller releases what it reserved.
    pub(crate) fn push(&self, msgs: &mut Vec<Message>, reserved: usize) -> bool {
        let waker = {
            let mut s = self.state.lock();
            if s.dropped {
                return false;
            }
            s.msgs.extend(msgs.drain(..).map(Item::One));
            s.reserved += reserved;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Appends one message; as [`Self::push`].
    pub(crate) fn push_one(&self, msg: Message, reserved: usize) -> bool {
        self.push_item(Item::One(msg), reserved)
    }

    /// Appends a run of messages; as [`Self::push`].
    pub(crate) fn push_run(&self, run: Run, reserved: usize) -> bool {
        self.push_item(Item::Run(run), reserved)
    }

    fn push_item(&self, item: Item, reserved: usize) -> bool {
        let waker = {
            let mut s = self.state.lock();
            if s.dropped {
                return false;
            }
            s.msgs.push_back(item);
            s.reserved += reserved;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Marks the end of the subscription: the subscriber reads what was delivered, then sees
    /// the end.
    pub(crate) fn end(&self) {
        let waker = {
            let mut s = self.state.lock();
            s.ended = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Moves everything queued into `buf` (which the caller has emptied), or registers the
    /// task to be woken when something comes.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>, buf: &mut VecDeque<Item>) -> Poll<Taken> {
        let mut s = self.state.lock();
        if !s.msgs.is_empty() {
            // A swap, not a copy: the subscriber's emptied buffer becomes the next one filled.
            std::mem::swap(buf, &mut s.msgs);
            let reserved = std::mem::take(&mut s.reserved);
            return Poll::Ready(Taken::Msgs { reserved });
        }
        if s.ended {
            return Poll::Ready(Taken::Ended);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The subscriber is gone: refuses further deliveries and drops what is queued. Returns
    /// the bytes it held, for the caller to release.
    pub(crate) fn close(&self) -> usize {
        let (msgs, reserved) = {
            let mut s = self.state.lock();
            s.dropped = true;
            s.waker = None;
            (std::mem::take(&mut s.msgs), std::mem::take(&mut s.reserved))
        };
        drop(msgs); // outside the lock
        reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    fn msg(n: u8) -> Message {
        Message {
            subject: Subject::from("a"),
            reply: None,
            headers: None,
            payload: Bytes::from(vec![n]),
        }
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn batches_are_taken_whole_and_in_order_then_the_end() {
        let q = LocalQueue::default();
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = VecDeque::new();
        assert!(q.poll_take(&mut cx, &mut buf).is_pending());
        assert!(q.push(&mut vec![msg(1), msg(2)], 2));
        assert!(q.push_one(msg(3), 1));
        let run = Run::new(
            Subject::from("r"),
            vec![Bytes::from_static(b"\x04"), Bytes::from_static(b"\x05")],
        );
        assert!(q.push_run(run, 2));
        // One wake for the waiting subscriber, none for what came while it had not looked.
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        q.end();
        match q.poll_take(&mut cx, &mut buf) {
            Poll::Ready(Taken::Msgs { reserved }) => assert_eq!(reserved, 5),
            _ => panic!("messages expected"),
        }
        let mut got = Vec::new();
        for item in buf.drain(..) {
            match item {
                Item::One(m) => got.push(m),
                Item::Run(mut run) => {
                    // A run can be taken in parts.
                    assert_eq!(run.take_into(&mut got, 1), 1);
                    assert!(!run.is_spent());
                    assert_eq!(run.take_into(&mut got, 10), 1);
                    assert!(run.is_spent());
                }
            }
        }
        let got: Vec<u8> = got.iter().map(|m| m.payload[0]).collect();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert!(matches!(
            q.poll_take(&mut cx, &mut buf),
            Poll::Ready(Taken::Ended)
        ));
    }

    /// A spent run's buffer goes back to the pool whole (its allocation, not a new one) and
    /// comes out for the next run; the pool keeps at most `KEEP` and only whole runs' buffers.
    #[test]
    fn spent_run_buffers_are_reused_and_bounded() {
        use crate::client::inprocess::PUBLISH_MANY_RUN;
        let pool = RunBuffers::default();
        let mut buf = pool.take(3);
        assert_eq!(buf.capacity(), 3, "nothing kept yet: sized to the run");
        pool.give(buf);
        buf = Vec::with_capacity(PUBLISH_MANY_RUN);
        buf.extend((0..PUBLISH_MANY_RUN).map(|_| Bytes::from_static(b"x")));
        let at = buf.as_ptr();
        let mut run = Run::new(Subject::from("s"), buf);
        let mut out = Vec::new();
        run.take_into(&mut out, 10);
        let back = run.into_buffer();
        assert!(back.is_empty(), "the rest of the run was dropped");
        assert_eq!((back.as_ptr(), back.capacity()), (at, PUBLISH_MANY_RUN));
        pool.give(back);
        let again = pool.take(1);
        assert_eq!(again.as_ptr(), at, "the same allocation, for any run");
        for _ in 0..RunBuffers::KEEP + 5 {
            pool.give(Vec::with_capacity(PUBLISH_MANY_RUN));
        }
        assert_eq!(pool.0.lock().len(), RunBuffers::KEEP);
    }

    #[test]
    fn a_closed_queue_refuses_and_returns_what_it_held() {
        let q = LocalQueue::default();
        assert!(q.push_one(msg(1), 10));
        assert_eq!(q.close(), 10);
        let mut batch = vec![msg(2)];
        assert!(!q.push(&mut batch, 1));
        assert_eq!(batch.len(), 1, "left for the caller");
        assert!(!q.push_one(msg(3), 1));
    }
}
