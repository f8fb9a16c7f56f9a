//! The subscription trie: one level per token, literal tokens in a hash map, `*` and `>` in slots of
//! their own (the layout nats-server uses), subscriptions stored at the node of their last token.
//!
//! The trie knows nothing of locking or caching; [`Sublist`](crate::Sublist) wraps it.

use std::num::NonZeroU64;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use smallvec::SmallVec;

use crate::members::Members;
use crate::result::{MatchResult, QueueGroup};
use crate::subject::{is_fwc, is_pwc, SEP};
use crate::token_map::TokenMap;

/// One token position: the nodes reachable by the next token.
pub(crate) struct Level<T> {
    literals: TokenMap<Node<T>>,
    pwc: Option<Box<Node<T>>>,
    fwc: Option<Box<Node<T>>>,
}

/// The subscriptions whose subject ends at this token, and the level of the following tokens.
///
/// 24 bytes (on 64-bit, for a pointer-sized `T`): with its 24-byte token a literal child takes a
/// 48-byte slot of its level's table. At a level of many children (inboxes, `bench.subs.<i>`)
/// that slot is most of what a subscription costs the trie, so what most such nodes lack (a
/// next level, a second subscription, queue groups) is behind a pointer. The queue groups share
/// the allocation of the second and later plain subscriptions (see [`ManySubs`]) rather than
/// taking a field of their own in every node.
pub(crate) struct Node<T> {
    next: Option<Box<Level<T>>>,
    plain: Subs<T>,
}

/// The members of one queue group at one node.
struct QueueSubs<T> {
    name: Arc<[u8]>,
    subs: Subs<T>,
}

/// Subscriptions at one node (or of one queue group there), ordered by id.
///
/// A lone subscription (by far the commonest case: most subjects have one subscriber) is held
/// inline with its id; two or more live in [`ManySubs`]. 16 bytes for a pointer-sized `T` (the id
/// is non-zero, which leaves room for the other variant's tag).
pub(crate) enum Subs<T> {
    One {
        id: NonZeroU64,
        value: T,
    },
    /// `None`: no subscriptions (and, for a node's plain list, no queue groups).
    Many(Option<Box<ManySubs<T>>>),
}

/// Two or more subscriptions (or fewer after removes while the node has queue groups).
///
/// Ids only grow, so an insert is a push and a remove is a binary search. A remove in a long list
/// leaves a tombstone (shifting would be linear) and the list is compacted once half of it is dead,
/// which keeps removes amortised O(log n) and matches a plain scan.
///
/// The first [`MANY_INLINE`] slots live in this allocation, so a walk reaching a node with a few
/// subscribers (fan-out to a handful) follows one pointer to them, as it did when the list was
/// inline in the node.
pub(crate) struct ManySubs<T> {
    slots: SmallVec<[Slot<T>; MANY_INLINE]>,
    dead: u32,
    /// For long lists: the live values as one shared slice, built by the first match after a
    /// change and handed to every result that matches only this list (see `Members`).
    shared: Option<Box<OnceLock<Arc<[T]>>>>,
    /// For a node's plain list: the node's queue groups (kept here so that a node without any
    /// pays nothing for them). Always empty in a queue group's own list.
    queues: Vec<QueueSubs<T>>,
}

/// Slots held in a [`ManySubs`] itself.
const MANY_INLINE: usize = 4;

/// Lists at least this long keep a shared snapshot.
const SHARE_MIN: usize = 32;

struct Slot<T> {
    id: NonZeroU64,
    value: Option<T>,
}

/// Lists at most this long are shifted on remove instead of getting a tombstone.
const SHIFT_MAX: usize = 16;

impl<T> Subs<T> {
    const fn new() -> Self {
        Self::Many(None)
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::One { .. } => 1,
            Self::Many(None) => 0,
            Self::Many(Some(m)) => m.len(),
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The node's queue groups (when this is a node's plain list).
    #[inline]
    fn queues(&self) -> &[QueueSubs<T>] {
        match self {
            Self::Many(Some(m)) => &m.queues,
            _ => &[],
        }
    }

    /// The node's queue groups, for adding one (moves a lone subscription into [`ManySubs`]).
    fn queues_mut(&mut self) -> &mut Vec<QueueSubs<T>> {
        if !matches!(self, Self::Many(Some(_))) {
            let mut m = ManySubs::new();
            if let Self::One { id, value } = std::mem::replace(self, Self::Many(None)) {
                m.push(id, value);
            }
            *self = Self::Many(Some(m));
        }
        match self {
            Self::Many(Some(m)) => &mut m.queues,
            _ => unreachable!("made Many above"),
        }
    }

    /// Back to the smallest form after a remove: nothing, or one subscription inline, once no
    /// queue group needs the allocation. So a node's memory returns to what it was.
    fn tidy(&mut self) {
        let Self::Many(Some(m)) = self else { return };
        if !m.queues.is_empty() || m.len() > 1 {
            return;
        }
        let Self::Many(Some(m)) = std::mem::replace(self, Self::Many(None)) else {
            unreachable!("matched Many above")
        };
        if let Some((id, value)) = m.slots.into_iter().find_map(|s| Some((s.id, s.value?))) {
            *self = Self::One { id, value };
        }
    }

    fn push(&mut self, id: NonZeroU64, value: T) {
        match self {
            Self::Many(None) => *self = Self::One { id, value },
            Self::Many(Some(m)) => m.push(id, value),
            Self::One { .. } => {
                let Self::One {
                    id: first,
                    value: first_value,
                } = std::mem::replace(self, Self::Many(None))
                else {
                    unreachable!("matched One above")
                };
                let mut m = ManySubs::new();
                m.push(first, first_value);
                m.push(id, value);
                *self = Self::Many(Some(m));
            }
        }
    }

    fn remove(&mut self, id: NonZeroU64) -> Option<T> {
        match self {
            Self::One { id: own, .. } if *own == id => {
                match std::mem::replace(self, Self::Many(None)) {
                    Self::One { value, .. } => Some(value),
                    Self::Many(_) => unreachable!("matched One above"),
                }
            }
            Self::One { .. } | Self::Many(None) => None,
            Self::Many(Some(m)) => {
                let value = m.remove(id)?;
                self.tidy();
                Some(value)
            }
        }
    }

    /// The shared snapshot of a long list (built on first use after a change).
    #[inline]
    fn snapshot(&self) -> Option<Arc<[T]>>
    where
        T: Clone,
    {
        match self {
            Self::Many(Some(m)) => m.snapshot(),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        let (one, many) = match self {
            Self::One { value, .. } => (Some(value), None),
            Self::Many(m) => (None, m.as_deref()),
        };
        one.into_iter()
            .chain(many.into_iter().flat_map(ManySubs::iter))
    }
}

impl<T: Clone> Subs<T> {
    #[inline]
    fn push_values_into(&self, out: &mut Vec<T>) {
        match self {
            Self::One { value, .. } => out.push(value.clone()),
            Self::Many(None) => {}
            Self::Many(Some(m)) => m.push_values_into(out),
        }
    }
}

impl<T> ManySubs<T> {
    fn new() -> Box<Self> {
        Box::new(Self {
            slots: SmallVec::new(),
            dead: 0,
            shared: None,
            queues: Vec::new(),
        })
    }

    #[inline]
    fn len(&self) -> usize {
        self.slots.len() - self.dead as usize
    }

    fn push(&mut self, id: NonZeroU64, value: T) {
        debug_assert!(self.slots.last().is_none_or(|s| s.id < id));
        self.slots.push(Slot {
            id,
            value: Some(value),
        });
        self.changed();
    }

    fn remove(&mut self, id: NonZeroU64) -> Option<T> {
        let i = self.slots.binary_search_by_key(&id, |s| s.id).ok()?;
        if self.slots.len() <= SHIFT_MAX && self.dead == 0 {
            let value = self.slots.remove(i).value;
            self.changed();
            return value;
        }
        let value = self.slots[i].value.take()?;
        self.dead += 1;
        if self.dead as usize * 2 > self.slots.len() {
            self.slots.retain(|s| s.value.is_some());
            self.dead = 0;
            if self.slots.capacity() > 4 * self.slots.len() + 4 {
                self.slots.shrink_to_fit();
            }
        }
        self.changed();
        Some(value)
    }

    /// Drops the snapshot after a change; starts or stops keeping one as the list crosses
    /// [`SHARE_MIN`].
    fn changed(&mut self) {
        let len = self.len();
        if len >= SHARE_MIN {
            match &mut self.shared {
                Some(s) => drop(s.take()),
                None => self.shared = Some(Box::new(OnceLock::new())),
            }
        } else if len < SHARE_MIN / 2 {
            self.shared = None;
        } else if let Some(s) = &mut self.shared {
            drop(s.take());
        }
    }

    #[inline]
    fn snapshot(&self) -> Option<Arc<[T]>>
    where
        T: Clone,
    {
        let shared = self.shared.as_deref()?;
        Some(
            shared
                .get_or_init(|| self.iter().cloned().collect())
                .clone(),
        )
    }

    #[inline]
    fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.value.as_ref())
    }
}

impl<T: Clone> ManySubs<T> {
    #[inline]
    fn push_values_into(&self, out: &mut Vec<T>) {
        out.reserve(self.len());
        if self.dead == 0 {
            for s in &self.slots {
                if let Some(v) = &s.value {
                    out.push(v.clone());
                }
            }
        } else {
            out.extend(self.iter().cloned());
        }
    }
}

// The sizes the comments above promise (64-bit, pointer-sized values).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<Subs<Arc<u8>>>() == 16);
    assert!(size_of::<Subs<u64>>() == 16);
    assert!(size_of::<Node<Arc<u8>>>() == 24);
    // A level of its own per intermediate node: a 48-byte glibc chunk (see `token_map`).
    assert!(size_of::<Level<Arc<u8>>>() == 40);
};

impl<T> Node<T> {
    fn new() -> Self {
        Self {
            next: None,
            plain: Subs::new(),
        }
    }

    fn has_subs(&self) -> bool {
        !self.plain.is_empty() || !self.plain.queues().is_empty()
    }

    fn is_empty(&self) -> bool {
        !self.has_subs() && self.next.is_none()
    }

    /// The plain subscriptions of this node.
    pub(crate) fn plain(&self) -> &Subs<T> {
        &self.plain
    }

    /// Each queue group of this node with its members.
    pub(crate) fn queues(&self) -> impl Iterator<Item = (&Arc<[u8]>, &Subs<T>)> {
        self.queue_list().iter().map(|q| (&q.name, &q.subs))
    }

    /// The queue groups.
    #[inline]
    fn queue_list(&self) -> &[QueueSubs<T>] {
        self.plain.queues()
    }
}

impl<T> Level<T> {
    fn new() -> Self {
        Self {
            literals: TokenMap::new(),
            pwc: None,
            fwc: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.literals.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }

    #[inline]
    fn child_mut(&mut self, tok: &[u8]) -> Option<&mut Node<T>> {
        if tok.len() == 1 {
            if is_pwc(tok) {
                return self.pwc.as_deref_mut();
            }
            if is_fwc(tok) {
                return self.fwc.as_deref_mut();
            }
        }
        self.literals.get_mut(tok)
    }

    /// The node of the literal token `tok`.
    #[inline]
    fn literal(&self, tok: &[u8]) -> Option<&Node<T>> {
        self.literals.get(tok)
    }

    #[inline]
    fn child_or_insert(&mut self, tok: &[u8]) -> &mut Node<T> {
        if tok.len() == 1 {
            if is_pwc(tok) {
                return self.pwc.get_or_insert_with(|| Box::new(Node::new()));
            }
            if is_fwc(tok) {
                return self.fwc.get_or_insert_with(|| Box::new(Node::new()));
            }
        }
        self.literals.get_or_insert_with(tok, Node::new)
    }

    fn remove_child(&mut self, tok: &[u8]) {
        if tok.len() == 1 {
            if is_pwc(tok) {
                self.pwc = None;
                return;
            }
            if is_fwc(tok) {
                self.fwc = None;
                return;
            }
        }
        self.literals.remove(tok);
    }
}

/// The trie of one sublist.
pub(crate) struct Trie<T> {
    root: Level<T>,
    /// Subscription ids reserved for this trie and not yet given out.
    ids: Range<u64>,
}

/// Subscription ids are unique in the process, so a handle from another sublist never removes
/// anything here. Each trie reserves them in blocks, so an insert does not write this shared
/// counter.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
const ID_BLOCK: u64 = 1024;

impl<T> Trie<T> {
    pub(crate) fn new() -> Self {
        Self {
            root: Level::new(),
            ids: 0..0,
        }
    }

    /// A new subscription id: unique in the process, increasing in this trie.
    pub(crate) fn next_id(&mut self) -> NonZeroU64 {
        if self.ids.is_empty() {
            let start = NEXT_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
            self.ids = start..start + ID_BLOCK;
        }
        let id = self.ids.start;
        self.ids.start += 1;
        NonZeroU64::new(id).expect("ids start at 1 and a u64 does not wrap")
    }

    /// Stores `value` under `tokens` (already validated: non-empty, no empty token, `>` last).
    pub(crate) fn insert(
        &mut self,
        tokens: &[&[u8]],
        queue: Option<&[u8]>,
        id: NonZeroU64,
        value: T,
    ) {
        let (last, init) = tokens.split_last().expect("validated subject has a token");
        let mut level = &mut self.root;
        for tok in init {
            level = level
                .child_or_insert(tok)
                .next
                .get_or_insert_with(|| Box::new(Level::new()));
        }
        let node = level.child_or_insert(last);
        match queue {
            None => node.plain.push(id, value),
            Some(q) => {
                let queues = node.plain.queues_mut();
                let group = match queues.iter().position(|g| &*g.name == q) {
                    Some(i) => &mut queues[i],
                    None => {
                        queues.push(QueueSubs {
                            name: Arc::from(q),
                            subs: Subs::new(),
                        });
                        queues.last_mut().expect("just pushed")
                    }
                };
                group.subs.push(id, value);
            }
        }
    }

    /// Removes the subscription `id` stored under `tokens` and `queue`, pruning emptied nodes.
    pub(crate) fn remove(&mut self, tokens: &[&[u8]], queue: Option<&[u8]>, id: u64) -> Option<T> {
        // Id 0 is never given out.
        remove_in(&mut self.root, tokens, queue, NonZeroU64::new(id)?)
    }

    /// Appends every subscription matching the literal subject `tokens` to `out`.
    pub(crate) fn collect(&self, tokens: &[&[u8]]) -> MatchResult<T>
    where
        T: Clone,
    {
        let mut out = Collector {
            plain: SmallVec::new(),
            queues: Vec::new(),
        };
        match_level(&self.root, tokens, &mut out);
        let plain = match out.plain.as_slice() {
            [] => Members::new(),
            [one] => match one.snapshot() {
                Some(shared) => Members::shared(shared),
                None => {
                    let mut v = Vec::new();
                    one.push_values_into(&mut v);
                    v.into()
                }
            },
            many => {
                let mut v = Vec::with_capacity(many.iter().map(|s| s.len()).sum());
                for s in many {
                    s.push_values_into(&mut v);
                }
                v.into()
            }
        };
        MatchResult::from_parts(plain, out.queues)
    }

    /// Whether any subscription matches the literal subject `tokens`.
    pub(crate) fn has_interest(&self, tokens: &[&[u8]]) -> bool {
        interest_in(&self.root, tokens)
    }

    /// Calls `f` with the subject of every node holding subscriptions.
    pub(crate) fn visit(&self, f: &mut dyn FnMut(&[u8], &Node<T>)) {
        let mut subject = Vec::with_capacity(64);
        visit_level(&self.root, &mut subject, f);
    }
}

fn remove_in<T>(
    level: &mut Level<T>,
    tokens: &[&[u8]],
    queue: Option<&[u8]>,
    id: NonZeroU64,
) -> Option<T> {
    let (tok, rest) = tokens.split_first()?;
    let node = level.child_mut(tok)?;
    let value = if rest.is_empty() {
        match queue {
            None => node.plain.remove(id),
            Some(q) => {
                let Subs::Many(Some(m)) = &mut node.plain else {
                    return None;
                };
                let queues = &mut m.queues;
                let i = queues.iter().position(|g| &*g.name == q)?;
                let value = queues[i].subs.remove(id);
                if queues[i].subs.is_empty() {
                    queues.swap_remove(i);
                    if queues.is_empty() {
                        queues.shrink_to_fit();
                        node.plain.tidy();
                    }
                }
                value
            }
        }
    } else {
        let next = node.next.as_deref_mut()?;
        let value = remove_in(next, rest, queue, id);
        if value.is_some() && next.is_empty() {
            node.next = None;
        }
        value
    };
    if value.is_some() && node.is_empty() {
        level.remove_child(tok);
    }
    value
}

#[inline]
fn add_node<'a, T: Clone>(node: &'a Node<T>, out: &mut Collector<'a, T>) {
    if !node.plain.is_empty() {
        out.plain.push(&node.plain);
    }
    for q in node.queue_list() {
        match out
            .queues
            .iter_mut()
            .find(|g| Arc::ptr_eq(&g.name, &q.name) || g.name == q.name)
        {
            Some(g) => q.subs.push_values_into(&mut g.members),
            None => {
                let mut members = Vec::new();
                q.subs.push_values_into(&mut members);
                out.queues.push(QueueGroup {
                    name: q.name.clone(),
                    members,
                });
            }
        }
    }
}

/// The walk of nats-server's `matchLevel`: at each level the `>` node matches everything from here,
/// the `*` node continues with the next token, and the literal node is followed.
/// What a walk gathers: the plain lists it reached (copied, or shared when there is just one,
/// once the walk is over) and the queue members (copied as found).
struct Collector<'a, T> {
    plain: SmallVec<[&'a Subs<T>; 8]>,
    queues: Vec<QueueGroup<T>>,
}

fn match_level<'a, T: Clone>(
    mut level: &'a Level<T>,
    tokens: &[&[u8]],
    out: &mut Collector<'a, T>,
) {
    let last = tokens.len() - 1;
    for (i, tok) in tokens.iter().enumerate() {
        if let Some(fwc) = level.fwc.as_deref() {
            add_node(fwc, out);
        }
        let pwc = level.pwc.as_deref();
        let node = level.literal(tok);
        if i == last {
            if let Some(n) = node {
                add_node(n, out);
            }
            if let Some(p) = pwc {
                add_node(p, out);
            }
            return;
        }
        if let Some(next) = pwc.and_then(|p| p.next.as_deref()) {
            match_level(next, &tokens[i + 1..], out);
        }
        match node.and_then(|n| n.next.as_deref()) {
            Some(next) => level = next,
            None => return,
        }
    }
}

fn interest_in<T>(mut level: &Level<T>, tokens: &[&[u8]]) -> bool {
    let last = tokens.len() - 1;
    for (i, tok) in tokens.iter().enumerate() {
        if level.fwc.as_deref().is_some_and(Node::has_subs) {
            return true;
        }
        let pwc = level.pwc.as_deref();
        let node = level.literal(tok);
        if i == last {
            return node.is_some_and(Node::has_subs) || pwc.is_some_and(Node::has_subs);
        }
        if let Some(next) = pwc.and_then(|p| p.next.as_deref()) {
            if interest_in(next, &tokens[i + 1..]) {
                return true;
            }
        }
        match node.and_then(|n| n.next.as_deref()) {
            Some(next) => level = next,
            None => return false,
        }
    }
    false
}

fn visit_level<T>(level: &Level<T>, subject: &mut Vec<u8>, f: &mut dyn FnMut(&[u8], &Node<T>)) {
    let children = level
        .literals
        .iter()
        .chain(level.pwc.as_deref().map(|n| (&b"*"[..], n)))
        .chain(level.fwc.as_deref().map(|n| (&b">"[..], n)));
    for (tok, node) in children {
        let len = subject.len();
        if len > 0 {
            subject.push(SEP);
        }
        subject.extend_from_slice(tok);
        if node.has_subs() {
            f(subject, node);
        }
        if let Some(next) = node.next.as_deref() {
            visit_level(next, subject, f);
        }
        subject.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form a node's lists take (one inline, many, with and without queue groups) goes
    /// back to nothing when its subscriptions are removed, in any order.
    #[test]
    fn lists_shrink_back_and_nodes_are_pruned() {
        let subs: &[(&[u8], Option<&[u8]>)] = &[
            (b"a.b", None),
            (b"a.b", Some(b"q")),
            (b"a.b", None),
            (b"a.b", Some(b"r")),
            (b"a.b", Some(b"q")),
            (b"a.b.c", None),
            (b"a.*", None),
            (b"a.>", Some(b"q")),
        ];
        for order in [
            [0, 1, 2, 3, 4, 5, 6, 7],
            [7, 6, 5, 4, 3, 2, 1, 0],
            [1, 3, 4, 0, 6, 2, 7, 5],
        ] {
            let mut trie = Trie::new();
            let mut ids = Vec::new();
            for (i, (subject, queue)) in subs.iter().enumerate() {
                let tokens: Vec<&[u8]> = subject.split(|&b| b == SEP).collect();
                let id = trie.next_id();
                trie.insert(&tokens, *queue, id, i);
                ids.push(id);
            }
            let r = trie.collect(&[b"a", b"b"]);
            assert_eq!(r.plain.len(), 3);
            assert_eq!(r.queues.len(), 2);
            for i in order {
                let (subject, queue) = subs[i];
                let tokens: Vec<&[u8]> = subject.split(|&b| b == SEP).collect();
                assert_eq!(trie.remove(&tokens, queue, ids[i].get()), Some(i));
                assert_eq!(trie.remove(&tokens, queue, ids[i].get()), None);
            }
            assert!(trie.root.is_empty());
        }
    }

    #[test]
    fn a_lone_subscription_is_inline_again_after_removes() {
        let mut subs = Subs::new();
        let ids: Vec<_> = (1..=3).map(|i| NonZeroU64::new(i).unwrap()).collect();
        for &id in &ids {
            subs.push(id, id.get());
        }
        assert!(matches!(subs, Subs::Many(Some(_))));
        assert_eq!(subs.remove(ids[0]), Some(1));
        assert_eq!(subs.remove(ids[2]), Some(3));
        assert!(matches!(subs, Subs::One { value: 2, .. }));
        subs.queues_mut();
        assert!(matches!(subs, Subs::Many(Some(_))));
        assert_eq!(subs.iter().collect::<Vec<_>>(), [&2]);
        subs.tidy();
        assert!(matches!(subs, Subs::One { value: 2, .. }));
        assert_eq!(subs.remove(ids[1]), Some(2));
        assert!(matches!(subs, Subs::Many(None)));
    }
}
