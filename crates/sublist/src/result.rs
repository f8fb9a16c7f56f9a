//! What a match returns.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::members::Members;

/// The subscriptions a published subject reaches: every plain subscription, and the members of each
/// queue group (the broker delivers to one member per group).
///
/// One insert is one entry: a subscriber holding both `foo.*` and `foo.>` appears twice for
/// `foo.bar`, because nats-server sends one message per matching subscription.
pub struct MatchResult<T> {
    /// Plain (non-queue) subscriptions, in no particular order.
    pub plain: Members<T>,
    /// One entry per queue group name that has at least one matching member.
    pub queues: Vec<QueueGroup<T>>,
    /// Set when the sublist drops this result from its cache (a change may have outdated it).
    stale: AtomicBool,
}

/// The matching members of one queue group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueGroup<T> {
    /// The queue group name.
    pub name: Arc<[u8]>,
    /// The members whose subject matched (never empty in a result).
    pub members: Vec<T>,
}

impl<T> MatchResult<T> {
    /// An empty result.
    pub const fn new() -> Self {
        Self::from_parts(Members::new(), Vec::new())
    }

    /// A result with these plain subscriptions and queue groups.
    pub const fn from_parts(plain: Members<T>, queues: Vec<QueueGroup<T>>) -> Self {
        Self {
            plain,
            queues,
            stale: AtomicBool::new(false),
        }
    }

    /// Whether nothing matched.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    /// Number of matching subscriptions: plain ones plus every queue member.
    pub fn len(&self) -> usize {
        self.plain.len() + self.queues.iter().map(|q| q.members.len()).sum::<usize>()
    }

    /// nats-server's fan-out figure for `/subsz`: plain subscriptions plus queue groups.
    pub fn fanout(&self) -> usize {
        self.plain.len() + self.queues.len()
    }

    /// The group for `name`, if any member of it matched.
    pub fn queue(&self, name: &[u8]) -> Option<&QueueGroup<T>> {
        self.queues.iter().find(|q| &*q.name == name)
    }

    /// Whether the sublist that produced this result has since dropped it from its cache because
    /// an insert or remove may have changed the answer (or to make room). A caller that keeps
    /// results of its own may drop one when this turns true instead of watching
    /// [`Sublist::generation`](crate::Sublist::generation). Only results of a caching sublist are
    /// ever marked; a result for a subject with an empty token never is (it is always empty).
    #[inline]
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Marks the result outdated; see [`is_stale`](Self::is_stale).
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }
}

impl<T> Default for MatchResult<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> Clone for MatchResult<T> {
    /// A copy that is not stale.
    fn clone(&self) -> Self {
        Self::from_parts(self.plain.clone(), self.queues.clone())
    }
}

impl<T: PartialEq> PartialEq for MatchResult<T> {
    /// Compares the subscriptions, in order; staleness is ignored.
    fn eq(&self, other: &Self) -> bool {
        self.plain == other.plain && self.queues == other.queues
    }
}

impl<T: Eq> Eq for MatchResult<T> {}

impl<T: fmt::Debug> fmt::Debug for MatchResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatchResult")
            .field("plain", &self.plain)
            .field("queues", &self.queues)
            .field("stale", &self.is_stale())
            .finish()
    }
}
