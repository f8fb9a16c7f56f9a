//! What both stores keep beside their messages: per subject, its name and its sequences
//! (`Subject`, `Seqs`), and which subjects match the wildcard filters consumers read with
//! (`FilterMemo`).

use bytes::Bytes;

use super::subject_matches;

/// One subject held: the sequences on it, so `first` stays exact through removals.
#[derive(Debug, Default)]
pub(super) struct Subject {
    pub(super) name: Bytes,
    pub(super) seqs: Seqs,
}

/// Marks a removed entry of [`Seqs`] (sequences stay below 2^63).
pub(super) const GONE: u64 = 1 << 63;

/// One subject's sequences held, ascending. Appends push at the end (O(1), where a `BTreeSet`
/// costs a descent); a removal marks its entry, marked entries leave the ends at once and the
/// middle when they outnumber the live ones (amortised O(1)).
#[derive(Debug, Default)]
pub(super) struct Seqs {
    v: Vec<u64>,
    /// `v[..head]` is all removed.
    head: usize,
    live: usize,
}

impl Seqs {
    /// Adds `seq`, higher than every sequence added before.
    pub(super) fn push(&mut self, seq: u64) {
        self.v.push(seq);
        self.live += 1;
    }

    /// Where `seq` is or would be in `v`.
    fn pos(&self, seq: u64) -> usize {
        let live = &self.v[self.head..];
        self.head
            + live
                .binary_search_by_key(&seq, |&s| s & !GONE)
                .unwrap_or_else(|i| i)
    }

    pub(super) fn remove(&mut self, seq: u64) -> bool {
        let i = self.pos(seq);
        if self.v.get(i) != Some(&seq) {
            return false;
        }
        self.v[i] |= GONE;
        self.live -= 1;
        while self.v.last().is_some_and(|s| s & GONE != 0) {
            self.v.pop();
        }
        while self.v.get(self.head).is_some_and(|s| s & GONE != 0) {
            self.head += 1;
        }
        if self.live == 0 {
            self.v = Vec::new();
            self.head = 0;
        } else if self.v.len() > 2 * self.live + 16 {
            self.v.drain(..self.head);
            self.v.retain(|s| s & GONE == 0);
            self.head = 0;
            if self.v.capacity() > 4 * self.v.len() {
                self.v.shrink_to(2 * self.v.len());
            }
        }
        true
    }

    pub(super) fn len(&self) -> usize {
        self.live
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub(super) fn first(&self) -> Option<u64> {
        (self.live > 0).then(|| self.v[self.head])
    }

    pub(super) fn last(&self) -> Option<u64> {
        (self.live > 0).then(|| self.v[self.v.len() - 1])
    }

    /// The sequences held `>= seq`, ascending.
    pub(super) fn from(&self, seq: u64) -> impl Iterator<Item = u64> + '_ {
        self.v[self.pos(seq)..]
            .iter()
            .copied()
            .filter(|s| s & GONE == 0)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.from(0)
    }

    /// How many sequences held are `>= seq`: O(1) without holes inside, else a count of the
    /// shorter side.
    pub(super) fn count_from(&self, seq: u64) -> usize {
        let i = self.pos(seq);
        let after = self.v.len() - i;
        if self.v.len() - self.head == self.live {
            return after;
        }
        let gone = |s: &[u64]| s.iter().filter(|&&s| s & GONE != 0).count();
        if i - self.head < after {
            self.live - (i - self.head - gone(&self.v[self.head..i]))
        } else {
            after - gone(&self.v[i..])
        }
    }
}

/// Filters remembered by a [`FilterMemo`]: one per consumer reading at a time.
const MEMO_FILTERS: usize = 4;

/// The subjects (by id) that match each of the last few wildcard filters asked for, so that a
/// consumer's `load_next` matches each subject once, not each message, and can ask only the
/// matching subjects' sequences.
#[derive(Debug, Default)]
pub(super) struct FilterMemo {
    memos: Vec<Matching>,
    next: usize,
}

/// One filter's subjects in a [`FilterMemo`].
#[derive(Debug)]
pub(super) struct Matching {
    filter: Vec<u8>,
    /// Per subject id: [`MATCH`] (and in `ids`), [`STALE`] (in `ids`, no longer matching) or 0.
    state: Vec<u8>,
    /// The ids that match, and some that did (some may name no subject held now).
    ids: Vec<u32>,
    stale: usize,
}

const MATCH: u8 = 1;
const STALE: u8 = 2;

impl Matching {
    /// Whether subject `id` matches.
    pub(super) fn matches(&self, id: u32) -> bool {
        self.state.get(id as usize) == Some(&MATCH)
    }

    /// The ids that match (some may name no subject held now).
    pub(super) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids.iter().copied().filter(|&id| self.matches(id))
    }

    /// How many ids match.
    pub(super) fn len(&self) -> usize {
        self.ids.len() - self.stale
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set(&mut self, id: u32, to: bool) {
        let i = id as usize;
        if i >= self.state.len() {
            self.state.resize(i + 1, 0);
        }
        match (self.state[i], to) {
            (0, true) => {
                self.ids.push(id);
                self.state[i] = MATCH;
            }
            (STALE, true) => {
                self.stale -= 1;
                self.state[i] = MATCH;
            }
            (MATCH, false) => {
                self.stale += 1;
                self.state[i] = STALE;
                if self.stale > self.ids.len() / 2 {
                    let state = &mut self.state;
                    self.ids.retain(|&id| {
                        let s = &mut state[id as usize];
                        if *s == STALE {
                            *s = 0;
                        }
                        *s == MATCH
                    });
                    self.stale = 0;
                }
            }
            _ => {}
        }
    }
}

impl FilterMemo {
    /// The subjects matching `filter`, worked out from `names` (every subject held, with its
    /// id) if it is not one of the last few asked for.
    pub(super) fn get<'n>(
        &mut self,
        filter: &[u8],
        names: impl Iterator<Item = (u32, &'n [u8])>,
    ) -> &Matching {
        if let Some(i) = self.memos.iter().position(|m| m.filter == filter) {
            return &self.memos[i];
        }
        let mut m = Matching {
            filter: filter.to_vec(),
            state: Vec::new(),
            ids: Vec::new(),
            stale: 0,
        };
        for (id, name) in names {
            if subject_matches(filter, name) {
                m.set(id, true);
            }
        }
        let i = if self.memos.len() < MEMO_FILTERS {
            self.memos.push(m);
            self.memos.len() - 1
        } else {
            let i = self.next;
            self.next = (i + 1) % MEMO_FILTERS;
            self.memos[i] = m;
            i
        };
        &self.memos[i]
    }

    /// Subject id `id` now names `name`.
    pub(super) fn named(&mut self, id: u32, name: &[u8]) {
        for m in &mut self.memos {
            let to = subject_matches(&m.filter, name);
            m.set(id, to);
        }
    }
}

/// The subjects (by id) matching wildcard `filter` among those of `subjects` still held.
pub(super) fn held_matching<'m>(
    memo: &'m mut FilterMemo,
    subjects: &[Subject],
    filter: &[u8],
) -> &'m Matching {
    let held = subjects
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.seqs.is_empty())
        .map(|(id, s)| (id as u32, &s.name[..]));
    memo.get(filter, held)
}

/// Whether `filter` has no wildcards.
pub(super) fn is_literal(filter: &[u8]) -> bool {
    !filter.iter().any(|&b| b == b'*' || b == b'>')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_filter_memo_follows_renamed_subject_ids() {
        let mut memo = FilterMemo::default();
        let names: Vec<String> = (0..10).map(|i| format!("a.{i}")).collect();
        let held = || {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u32, n.as_bytes()))
        };
        assert_eq!(memo.get(b"a.*", held()).len(), 10);
        assert_eq!(memo.get(b"b.>", held()).len(), 0);
        // Ids given to other subjects, some matching each filter.
        for id in 0..8u32 {
            memo.named(id, if id % 2 == 0 { b"b.x" } else { b"a.y" });
        }
        memo.named(10, b"b.y.z");
        let ids = |memo: &mut FilterMemo, f: &[u8]| {
            let mut v: Vec<u32> = memo.get(f, std::iter::empty()).ids().collect();
            v.sort_unstable();
            v
        };
        assert_eq!(ids(&mut memo, b"a.*"), vec![1, 3, 5, 7, 8, 9]);
        assert_eq!(ids(&mut memo, b"b.>"), vec![0, 2, 4, 6, 10]);
        let m = memo.get(b"a.*", std::iter::empty());
        assert!(m.matches(9) && !m.matches(10) && !m.matches(0) && m.len() == 6);
        memo.named(0, b"a.z");
        assert_eq!(ids(&mut memo, b"a.*"), vec![0, 1, 3, 5, 7, 8, 9]);
        // A fifth filter replaces the oldest.
        for f in [&b"c.*"[..], b"d.*", b"e.*"] {
            memo.get(f, std::iter::empty());
        }
        assert_eq!(memo.get(b"a.*", held()).len(), 10);
    }

    proptest! {
        #[test]
        fn seqs_agree_with_a_btree_set(ops in proptest::collection::vec((any::<bool>(), 0..80u64), 1..400)) {
            let mut s = Seqs::default();
            let mut b = std::collections::BTreeSet::new();
            let mut next = 1;
            for (push, x) in ops {
                if push {
                    s.push(next);
                    b.insert(next);
                    next += 1 + x % 3;
                } else {
                    let q = x * next / 80;
                    prop_assert_eq!(s.remove(q), b.remove(&q));
                }
                prop_assert_eq!(s.len(), b.len());
                prop_assert_eq!(s.first(), b.first().copied());
                prop_assert_eq!(s.last(), b.last().copied());
                let mid = next / 2;
                prop_assert!(s.from(mid).eq(b.range(mid..).copied()));
                for q in [0, mid / 2, mid, mid + mid / 2, next] {
                    prop_assert_eq!(s.count_from(q), b.range(q..).count());
                }
                prop_assert!(s.iter().eq(b.iter().copied()));
            }
        }
    }
}
