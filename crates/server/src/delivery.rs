//! The hot path: one published message, matched against the sublist and appended to each
//! interested connection's outbound queue (DESIGN.md, "The hot path").

use std::cell::OnceCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;
use starling_proto::encode;

use crate::client::outbound::Appended;
use crate::client::ClientShared;
use crate::message::{Message, Subject};
use crate::server::Shared;
use crate::subscription::Subscription;

/// The 503 "no responders" header block nats-server 2.9 sends.
pub(crate) const NO_RESPONDERS_HDR: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// One message being routed. Every slice lies inside `owner` when the message came from a
/// socket, so payloads can be shared without copying.
pub(crate) struct Msg<'a> {
    pub(crate) subject: &'a [u8],
    pub(crate) reply: Option<&'a [u8]>,
    pub(crate) header_len: Option<usize>,
    /// Headers (if any) followed by the payload.
    pub(crate) data: &'a [u8],
    pub(crate) owner: &'a Bytes,
    /// The message as in-process subscribers get it, built on the first such delivery.
    local: OnceCell<Message>,
}

impl<'a> Msg<'a> {
    pub(crate) fn new(
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        header_len: Option<usize>,
        data: &'a [u8],
        owner: &'a Bytes,
    ) -> Self {
        Self {
            subject,
            reply,
            header_len,
            data,
            owner,
            local: OnceCell::new(),
        }
    }

    fn local(&self) -> &Message {
        self.local.get_or_init(|| {
            let (headers, payload) = match self.header_len {
                Some(h) => (
                    Some(share(self.owner, &self.data[..h])),
                    share(self.owner, &self.data[h..]),
                ),
                None => (None, share(self.owner, self.data)),
            };
            Message {
                subject: Subject::from_bytes(share(self.owner, self.subject)),
                reply: self
                    .reply
                    .map(|r| Subject::from_bytes(share(self.owner, r))),
                headers,
                payload,
            }
        })
    }
}

/// A `Bytes` for `part`: a zero-copy slice of `owner` when it lies inside it, else a copy.
fn share(owner: &Bytes, part: &[u8]) -> Bytes {
    let start = owner.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if part.is_empty() {
        Bytes::new()
    } else if p >= start && p + part.len() <= start + owner.len() {
        owner.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// Connections a producer touched during one read batch: each writer is woken once at the end
/// (flush coalescing), and consumers over half their pending limit may stall the producer.
#[derive(Default)]
pub(crate) struct Touched {
    wake: SmallVec<[Arc<ClientShared>; 8]>,
    stalled: SmallVec<[Arc<ClientShared>; 2]>,
}

impl Touched {
    pub(crate) fn signal(&mut self, conn: &Arc<ClientShared>) {
        self.wake.push(conn.clone());
    }

    fn stalled(&mut self, conn: &Arc<ClientShared>) {
        if !self.stalled.iter().any(|c| Arc::ptr_eq(c, conn)) {
            self.stalled.push(conn.clone());
        }
    }

    /// Wakes every writer touched since the last flush.
    pub(crate) fn flush(&mut self) {
        for conn in self.wake.drain(..) {
            conn.out.wake.notify_one();
        }
    }

    /// Stalls the producer briefly while consumers it fed are over half their limit, as
    /// nats-server does (2–5 ms per consumer, 10 ms at most per batch), so a fast producer
    /// slows down instead of pushing a merely slow consumer over its limit. Ends early when
    /// `cancel` fires (the producer closes or the server shuts down).
    pub(crate) async fn stall(&mut self, cancel: &tokio_util::sync::CancellationToken) {
        const MAX_EACH: Duration = Duration::from_millis(5);
        const MAX_TOTAL: Duration = Duration::from_millis(10);
        if self.stalled.is_empty() {
            return;
        }
        let start = tokio::time::Instant::now();
        for conn in self.stalled.drain(..) {
            let left = MAX_TOTAL.saturating_sub(start.elapsed());
            if left.is_zero() {
                continue;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = conn.closing.cancelled() => {}
                _ = tokio::time::timeout(left.min(MAX_EACH), conn.out.wait_drained()) => {}
            }
        }
    }
}

impl Shared {
    /// Routes one message to every matching subscription. Returns whether anything was
    /// delivered (no-responders needs to know).
    pub(crate) fn publish(
        &self,
        from: &ClientShared,
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> bool {
        let result = self.sublist.matches(msg.subject);
        let no_echo = !from.echo();
        let mut delivered = false;
        for sub in result.plain.iter() {
            if no_echo && sub.conn.cid == from.cid {
                continue;
            }
            delivered |= self.deliver(sub, msg, touched);
        }
        for group in result.queues.iter() {
            delivered |= self.deliver_to_one(from, no_echo, &group.members, msg, touched);
        }
        delivered
    }

    /// Delivers to one member of a queue group: a random start, then the first that accepts.
    fn deliver_to_one(
        &self,
        from: &ClientShared,
        no_echo: bool,
        members: &[Arc<Subscription>],
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> bool {
        let n = members.len();
        if n == 0 {
            return false;
        }
        let start = if n == 1 { 0 } else { fastrand::usize(..n) };
        for i in 0..n {
            let sub = &members[(start + i) % n];
            if no_echo && sub.conn.cid == from.cid {
                continue;
            }
            if self.deliver(sub, msg, touched) {
                return true;
            }
        }
        false
    }

    /// Appends one message to one subscription's connection.
    pub(crate) fn deliver(
        &self,
        sub: &Arc<Subscription>,
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> bool {
        let Some(last) = sub.claim() else {
            return false;
        };
        let conn = &sub.conn;
        let delivered = match &sub.local {
            Some(tx) => self.deliver_local(conn, tx, msg),
            None => {
                let appended = match msg.header_len {
                    Some(h) if conn.wants_headers() => conn.out.push_msg(
                        |b| {
                            encode::write_hmsg(
                                b,
                                msg.subject,
                                &sub.sid,
                                msg.reply,
                                h,
                                msg.data.len(),
                            )
                        },
                        msg.data,
                        msg.owner,
                    ),
                    _ => {
                        let data = &msg.data[msg.header_len.unwrap_or(0)..];
                        conn.out.push_msg(
                            |b| encode::write_msg(b, msg.subject, &sub.sid, msg.reply, data.len()),
                            data,
                            msg.owner,
                        )
                    }
                };
                match appended {
                    Appended::Signal => {
                        touched.signal(conn);
                        true
                    }
                    Appended::Queued => true,
                    Appended::SlowConsumer => {
                        self.slow_consumer(conn);
                        false
                    }
                    Appended::Closed => false,
                }
            }
        };
        if delivered && conn.out.is_stalled() {
            touched.stalled(conn);
        }
        if last {
            self.remove_subscription(sub);
        }
        delivered
    }

    fn deliver_local(
        &self,
        conn: &Arc<ClientShared>,
        tx: &tokio::sync::mpsc::UnboundedSender<Message>,
        msg: &Msg<'_>,
    ) -> bool {
        if conn.is_closed() {
            return false;
        }
        let size = msg.subject.len() + msg.data.len();
        let pending = conn.local_pending.fetch_add(size, Ordering::Relaxed) + size;
        if pending > self.opts.max_pending {
            conn.local_pending.fetch_sub(size, Ordering::Relaxed);
            self.slow_consumer(conn);
            return false;
        }
        if tx.send(msg.local().clone()).is_err() {
            conn.local_pending.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        conn.local_out_msgs.fetch_add(1, Ordering::Relaxed);
        conn.local_out_bytes
            .fetch_add(size as u64, Ordering::Relaxed);
        true
    }

    /// Closes a connection that could not keep up, as nats-server does: no -ERR, counted,
    /// reported as an event.
    pub(crate) fn slow_consumer(&self, conn: &ClientShared) {
        if conn.close(crate::client::ClosedReason::SlowConsumerPendingBytes) {
            self.note_slow_consumer(conn);
        }
    }

    /// Removes a subscription from its owner and the sublist (auto-unsubscribe, UNSUB, close).
    pub(crate) fn remove_subscription(&self, sub: &Arc<Subscription>) {
        let owned = {
            let mut subs = sub.conn.subs.lock();
            match subs.get(&sub.sid) {
                Some(o) if Arc::ptr_eq(&o.sub, sub) => subs.remove(&sub.sid),
                _ => None,
            }
        };
        if let Some(owned) = owned {
            owned.sub.removed.store(true, Ordering::Relaxed);
            self.sublist.remove(&owned.handle);
        }
    }
}
