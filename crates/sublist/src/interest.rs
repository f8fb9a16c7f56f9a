//! Interest summaries for cluster peers.

/// One distinct (subject, queue) pair held by a sublist and how many subscriptions share it; what a
/// broker announces to a new cluster peer (`RS+ account subject [queue weight]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interest {
    /// The subscription subject (may hold wildcards).
    pub subject: Box<[u8]>,
    /// The queue group, for queue subscriptions.
    pub queue: Option<Box<[u8]>>,
    /// Number of subscriptions with exactly this subject and queue (at least 1).
    pub count: usize,
}
