//! One subscription: what the sublist stores and delivery reads.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use smallvec::SmallVec;
use starling_sublist::SubHandle;

use crate::account::ShadowTarget;
use crate::client::LocalQueue;
use crate::conn::Conn;
use crate::delivery::Handler;

/// A subscription id as the client chose it. Kept inline: clients use short ids (usually a
/// counter), so a subscription costs no allocation for its sid.
pub(crate) type Sid = SmallVec<[u8; 16]>;

/// A subscription of a local client (socket or in-process), or a peer's interest.
///
/// Kept small, as a server may hold millions: the subject and queue live in the sublist's
/// [`SubHandle`](starling_sublist::SubHandle) that the owner keeps beside it, not here.
pub(crate) struct Subscription {
    /// The connection that owns it.
    pub(crate) conn: Arc<Conn>,
    /// The client's subscription id, echoed verbatim in MSG.
    pub(crate) sid: Sid,
    /// Messages delivered so far.
    pub(crate) delivered: AtomicU64,
    /// Auto-unsubscribe after this many messages; 0 = never.
    pub(crate) max: AtomicU64,
    /// Where its messages go.
    pub(crate) target: Target,
    /// Set once it has been removed; delivery skips it from then on.
    pub(crate) removed: AtomicBool,
    /// For a peer's queue subscription: how many members the peer has (queue picks are
    /// weighted by it). 1 for local subscriptions.
    pub(crate) weight: AtomicU32,
}

impl Subscription {
    pub(crate) fn new(conn: Arc<Conn>, sid: &[u8], target: Target) -> Self {
        Self {
            conn,
            sid: Sid::from_slice(sid),
            delivered: AtomicU64::new(0),
            max: AtomicU64::new(0),
            target,
            removed: AtomicBool::new(false),
            weight: AtomicU32::new(1),
        }
    }

    /// Marks it removed: delivery skips it from now on, and an in-process subscriber's stream
    /// ends after what was delivered before.
    pub(crate) fn mark_removed(&self) {
        if !self.removed.swap(true, Ordering::Relaxed) {
            if let Target::Local(queue) = &self.target {
                queue.end();
            }
        }
    }

    /// Messages delivered so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// A peer's queue subscription: its member count there.
    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight.max(1), Ordering::Relaxed);
    }

    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed).max(1)
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// Claims one delivery. `None` if the subscription is gone or its max is used up;
    /// `Some(true)` if this delivery is the last one its max allows.
    #[inline]
    pub(crate) fn claim(&self) -> Option<bool> {
        if self.removed.load(Ordering::Relaxed) {
            return None;
        }
        let max = self.max.load(Ordering::Relaxed);
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if max == 0 {
            Some(false)
        } else if n > max {
            None
        } else {
            Some(n == max)
        }
    }
}

impl Subscription {
    /// Claims up to `n` deliveries at once (a run of messages): how many it may take, and
    /// whether the last of them is the last its max allows. `None` if it takes none.
    pub(crate) fn claim_many(&self, n: usize) -> Option<(usize, bool)> {
        if self.removed.load(Ordering::Relaxed) || n == 0 {
            return None;
        }
        let max = self.max.load(Ordering::Relaxed);
        let before = self.delivered.fetch_add(n as u64, Ordering::Relaxed);
        if max == 0 {
            return Some((n, false));
        }
        let allowed = max.saturating_sub(before).min(n as u64) as usize;
        if allowed == 0 {
            return None;
        }
        Some((allowed, before + allowed as u64 == max))
    }
}

// Every subscription is one of these (plus the `Arc`'s two counts): 72 bytes keeps it in
// the allocator's 96-byte class; a few bytes more costs 16 per subscription.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<Subscription>() <= 72);

/// Where a subscription's messages go.
pub(crate) enum Target {
    /// A socket connection: `MSG` lines on its outbound queue (a route: `RMSG`).
    Wire,
    /// An in-process subscriber's queue.
    Local(Arc<LocalQueue>),
    /// Handled inside the server (service imports, the system account's services). Boxed:
    /// a bare `Arc<dyn Handler>` is two words and would grow every subscription by 16 bytes.
    Internal(Box<Arc<dyn Handler>>),
    /// A stream import's shadow in the exporter's sublist: delivered to the importing
    /// account's subscription it stands for, under that account's subject.
    Shadow(Box<ShadowTarget>),
}

impl PartialEq for Subscription {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

/// A subscription as its owner keeps it: the subscription and the sublist's receipt for it.
pub(crate) struct OwnedSub {
    pub(crate) sub: Arc<Subscription>,
    pub(crate) handle: SubHandle,
}

// One of these per subscription in its connection's `SubsBySid` table: 40 bytes, the handle
// holding a short subject and queue itself (no allocation of its own), so a subscription costs
// this table ~53 bytes at hashbrown's load (7/8 at most, ~3/4 typical) and nothing else.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<OwnedSub>() <= 40);

/// A connection's subscriptions by sid.
///
/// A hash table keyed by the sid the subscription already holds, so the sid is not stored a
/// second time as a key (a server may hold millions of subscriptions).
#[derive(Default)]
pub(crate) struct SubsBySid {
    table: HashTable<OwnedSub>,
    hasher: DefaultHashBuilder,
}

impl SubsBySid {
    fn hash(&self, sid: &[u8]) -> u64 {
        self.hasher.hash_one(sid)
    }

    pub(crate) fn get(&self, sid: &[u8]) -> Option<&OwnedSub> {
        self.table.find(self.hash(sid), |o| o.sub.sid[..] == *sid)
    }

    pub(crate) fn contains(&self, sid: &[u8]) -> bool {
        self.get(sid).is_some()
    }

    /// Adds a subscription whose sid is not in the table yet.
    pub(crate) fn insert(&mut self, owned: OwnedSub) {
        let hash = self.hash(&owned.sub.sid);
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, owned, |o| hasher.hash_one(&o.sub.sid[..]));
    }

    pub(crate) fn remove(&mut self, sid: &[u8]) -> Option<OwnedSub> {
        let hash = self.hash(sid);
        match self.table.find_entry(hash, |o| o.sub.sid[..] == *sid) {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &OwnedSub> {
        self.table.iter()
    }

    /// Empties the table, keeping nothing allocated.
    pub(crate) fn take_all(&mut self) -> Vec<OwnedSub> {
        std::mem::take(&mut self.table).into_iter().collect()
    }
}
