//! What a match returns.

use std::sync::Arc;

/// The subscriptions a published subject reaches: every plain subscription, and the members of each
/// queue group (the broker delivers to one member per group).
///
/// One insert is one entry: a subscriber holding both `foo.*` and `foo.>` appears twice for
/// `foo.bar`, because nats-server sends one message per matching subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchResult<T> {
    /// Plain (non-queue) subscriptions, in no particular order.
    pub plain: Vec<T>,
    /// One entry per queue group name that has at least one matching member.
    pub queues: Vec<QueueGroup<T>>,
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
        Self {
            plain: Vec::new(),
            queues: Vec::new(),
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
}

impl<T> Default for MatchResult<T> {
    fn default() -> Self {
        Self::new()
    }
}
