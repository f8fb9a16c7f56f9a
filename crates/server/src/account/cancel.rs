//! Cancellable requests (no NATS server has them): a responder learns that the requester of a
//! request it works on has given up, so it can stop.
//!
//! A requester gives up by dropping the interest in its reply subject: it unsubscribes the
//! reply subscription (an in-process request's future dropped or timed out does that), or
//! its connection closes. A watch on a reply subject fires when the account's sublist has no
//! interest in it any more, local or remote: a route's interest leaves with the peer's `RS-`,
//! so a responder on one node learns of a requester giving up on another.
//!
//! How a responder watches:
//! - in-process, [`crate::Client::cancelled`] on the request it received;
//! - over a socket (any NATS client), by subscribing to `$CANCEL.<reply subject>` once it has
//!   the request: the server sends that subscription one empty message when the requester
//!   gives up (at once if it already has). Requesters can also cancel explicitly by
//!   publishing to `$CANCEL.<reply subject>`, which reaches those subscriptions as any
//!   message does (a client using one shared reply subscription for all its requests, as
//!   async-nats does by default, keeps its interest while it lives).
//!
//! Cost: nothing on the publish path. A `$CANCEL.` subscription costs a prefix check on SUB;
//! while watches exist, every removal of a subscription in the account checks them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use starling_proto::encode;
use starling_sublist::Sublist;

use crate::message::{Message, Subject};
use crate::subscription::{Subscription, Target};

/// The prefix of the subjects responders subscribe to to learn of cancellations.
pub const CANCEL_PREFIX: &str = "$CANCEL.";

/// What a watch does when its reply subject loses its interest.
pub(crate) enum Fire {
    /// An in-process responder's future.
    Wake(tokio::sync::oneshot::Sender<()>),
    /// A `$CANCEL.<reply>` subscription: one empty message.
    Notify(Arc<Subscription>),
}

/// An account's watches on reply subjects.
#[derive(Default)]
pub(crate) struct Watches {
    /// How many reply subjects are watched: removals read it, and look no further while it
    /// is 0.
    count: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The watchers, by reply subject.
    by_reply: HashMap<Bytes, Vec<Fire>>,
    /// Past this many subjects, a new watch first drops the watchers that went away
    /// (responders that finished and dropped their futures, while the requester keeps its
    /// interest: a client whose one wildcard reply subscription serves all its requests).
    prune_at: usize,
}

/// Watched subjects kept before the first pruning.
const PRUNE_FLOOR: usize = 1024;

impl Watches {
    /// Watches `reply`: fires at once when `sublist` has no interest in it now, else when a
    /// removal leaves none.
    pub(crate) fn watch(&self, sublist: &Sublist<Arc<Subscription>>, reply: Bytes, fire: Fire) {
        let mut inner = self.inner.lock();
        // Under the lock: a removal that ran just before this saw no watch, so this check
        // must see its effect (the sublist changes before the removal looks at watches).
        if !sublist.has_interest(&reply) {
            drop(inner);
            fire.fire(&reply);
            return;
        }
        if inner.by_reply.len() >= inner.prune_at.max(PRUNE_FLOOR) {
            inner.by_reply.retain(|_, fires| {
                fires.retain(|f| !f.is_done());
                !fires.is_empty()
            });
            inner.prune_at = inner.by_reply.len() * 2;
        }
        inner.by_reply.entry(reply).or_default().push(fire);
        self.count.store(inner.by_reply.len(), Ordering::Release);
    }

    /// After a subscription on `removed` left `sublist`: fires the watches whose reply
    /// subject has no interest left. One atomic load while there are none; a literal
    /// subject can only have been the interest of watches on itself, a wildcard one is
    /// checked against every watch.
    pub(crate) fn after_removal(&self, sublist: &Sublist<Arc<Subscription>>, removed: &[u8]) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut fired: Vec<(Bytes, Vec<Fire>)> = Vec::new();
        {
            let mut inner = self.inner.lock();
            if is_literal(removed) {
                if !sublist.has_interest(removed) {
                    if let Some(entry) = inner.by_reply.remove_entry(removed) {
                        fired.push(entry);
                    }
                }
            } else {
                let gone: Vec<Bytes> = inner
                    .by_reply
                    .keys()
                    .filter(|r| !sublist.has_interest(r))
                    .cloned()
                    .collect();
                for r in gone {
                    if let Some(entry) = inner.by_reply.remove_entry(&r) {
                        fired.push(entry);
                    }
                }
            }
            self.count.store(inner.by_reply.len(), Ordering::Release);
        }
        for (reply, fires) in fired {
            for f in fires {
                f.fire(&reply);
            }
        }
    }
}

impl Fire {
    /// The watcher went away (its future dropped, its subscription removed).
    fn is_done(&self) -> bool {
        match self {
            Self::Wake(tx) => tx.is_closed(),
            Self::Notify(sub) => sub.is_removed(),
        }
    }

    fn fire(self, reply: &[u8]) {
        match self {
            Self::Wake(tx) => {
                let _ = tx.send(());
            }
            Self::Notify(sub) => notify(&sub, reply),
        }
    }
}

/// Sends a `$CANCEL.<reply>` subscription its empty message: straight to it, not published
/// (other subscribers of the subject did not ask to be told).
fn notify(sub: &Arc<Subscription>, reply: &[u8]) {
    if sub.is_removed() {
        return;
    }
    let subject = [CANCEL_PREFIX.as_bytes(), reply].concat();
    match &sub.target {
        Target::Wire => {
            sub.conn.send(|b| {
                encode::write_msg(b, &subject, &sub.sid, None, 0);
                b.extend_from_slice(b"\r\n");
            });
        }
        Target::Local(queue) => {
            // Not counted against max_pending: one empty message per watch.
            let notice = Message {
                subject: Subject::from_bytes(Bytes::from(subject)),
                reply: None,
                headers: None,
                payload: Bytes::new(),
            };
            queue.push_one(notice, 0);
        }
        Target::Internal(_) | Target::Shadow(_) => {}
    }
}

/// The reply subject a `$CANCEL.` subscription watches, if `subject` is one (a literal
/// subject after the prefix; a wildcard one only gets what requesters publish).
pub(crate) fn watched_reply(subject: &[u8]) -> Option<&[u8]> {
    let reply = subject.strip_prefix(CANCEL_PREFIX.as_bytes())?;
    is_literal(reply).then_some(reply)
}

/// A subject without wildcards.
fn is_literal(subject: &[u8]) -> bool {
    !subject.is_empty()
        && subject
            .split(|&b| b == b'.')
            .all(|t| !t.is_empty() && t != b"*" && t != b">")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_literal_subjects_after_the_prefix_are_watched() {
        assert_eq!(
            watched_reply(b"$CANCEL._INBOX.a.1"),
            Some(&b"_INBOX.a.1"[..])
        );
        for not in [
            &b"$CANCEL.>"[..],
            b"$CANCEL._INBOX.*",
            b"$CANCEL.",
            b"CANCEL.x",
            b"$CANCEL.a..b",
        ] {
            assert_eq!(watched_reply(not), None, "{}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn a_watch_on_a_subject_nobody_wants_fires_at_once() {
        let sublist: Sublist<Arc<Subscription>> = Sublist::new();
        let watches = Watches::default();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        watches.watch(&sublist, Bytes::from_static(b"nobody"), Fire::Wake(tx));
        assert!(rx.try_recv().is_ok(), "fired at once");
        assert_eq!(watches.count.load(Ordering::Relaxed), 0);
    }
}
