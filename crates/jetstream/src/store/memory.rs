//! `storage: memory`: messages in a deque by sequence, an index of sequences per subject.
//!
//! Appends push at the back of a `VecDeque` (slot `seq - base`); a removal leaves a hole,
//! holes leave the front at once. When holes come to outnumber the messages (a key-value
//! bucket keeping one old key at the front while the rest churn), the front's messages move
//! to a `BTreeMap` so that memory stays proportional to what is held. Each subject is interned
//! once and keeps its sequences in a sorted `Vec` (`Seqs`): an append is one allocation (the
//! data copy) and a few pushes.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

use super::index::{held_matching, is_literal, FilterMemo, Seqs, Subject, GONE};
use super::{record_size, subject_matches, Store, StoreError, StoreState, StoredMsg, SubjectState};

/// Holes the deque may hold beyond one per message before its front moves to the map (few
/// in tests, so that they move often).
const SLACK: usize = if cfg!(test) { 8 } else { 1024 };
/// Capacity the deque keeps however little it holds.
const KEEP_CAP: usize = 256;

/// One message held (its sequence is where it is kept).
#[derive(Debug)]
struct Entry {
    time: i64,
    data: Bytes,
    header_len: u32,
    /// Index into [`MemoryStore::subjects`].
    subj: u32,
}

/// A stream kept in memory. Lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// The messages from `base` on: `dense[i]` is sequence `base + i`. Its front is held;
    /// when not empty, `base + dense.len()` is the next sequence.
    dense: VecDeque<Option<Entry>>,
    base: u64,
    /// `Some` entries in `dense`.
    dense_live: usize,
    /// Messages below `base`, moved out of a `dense` that was mostly holes.
    sparse: BTreeMap<u64, Entry>,
    /// By id; ids of subjects no longer held are reused (`free`).
    subjects: Vec<Subject>,
    by_name: HashMap<Bytes, u32>,
    free: Vec<u32>,
    /// The subject appended last: a run on one subject skips hashing it.
    last_subj: u32,
    bytes: u64,
    last_seq: u64,
    last_time: i64,
    /// The sequence the stream starts at when empty (moved by a compact past the end).
    start: u64,
    /// Which subjects match the filters `load_next` was asked for lately.
    memo: FilterMemo,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            start: 1,
            ..Self::default()
        }
    }

    fn msgs(&self) -> u64 {
        (self.sparse.len() + self.dense_live) as u64
    }

    fn entry(&self, seq: u64) -> Option<&Entry> {
        if seq < self.base {
            self.sparse.get(&seq)
        } else {
            let i = usize::try_from(seq - self.base).ok()?;
            self.dense.get(i)?.as_ref()
        }
    }

    fn msg(&self, seq: u64, e: &Entry) -> StoredMsg {
        StoredMsg {
            seq,
            time: e.time,
            subject: self.subjects[e.subj as usize].name.clone(),
            header_len: e.header_len as usize,
            data: e.data.clone(),
        }
    }

    fn load_at(&self, seq: u64) -> Option<StoredMsg> {
        self.entry(seq).map(|e| self.msg(seq, e))
    }

    /// The messages held from `seq` on, ascending.
    fn iter_from(&self, seq: u64) -> impl Iterator<Item = (u64, &Entry)> + '_ {
        iter_from(&self.sparse, &self.dense, self.base, seq)
    }

    /// The ids of the subjects held that match `filter`.
    fn matching<'a>(&'a self, filter: &'a [u8]) -> impl Iterator<Item = &'a Subject> + 'a {
        let literal = is_literal(filter).then(|| self.by_name.get(filter));
        let one = literal
            .flatten()
            .map(|&id| &self.subjects[id as usize])
            .into_iter();
        let all = literal
            .is_none()
            .then(|| {
                self.subjects
                    .iter()
                    .filter(move |s| !s.seqs.is_empty() && subject_matches(filter, &s.name))
            })
            .into_iter()
            .flatten();
        one.chain(all)
    }

    /// The lowest sequence held `>= seq` on a subject matching `filter`: from the subject's
    /// sequences for a literal; for wildcards by a scan while that is cheaper than asking each
    /// matching subject, then from them.
    fn next_match(&mut self, seq: u64, filter: &[u8]) -> Option<u64> {
        if is_literal(filter) {
            let id = *self.by_name.get(filter)?;
            return self.subjects[id as usize].seqs.from(seq).next();
        }
        let subjects = &self.subjects;
        let m = held_matching(&mut self.memo, subjects, filter);
        if m.is_empty() {
            return None;
        }
        let mut from = seq;
        let mut left = (m.len() * 8).max(16);
        for (s, e) in iter_from(&self.sparse, &self.dense, self.base, seq) {
            if left == 0 {
                break;
            }
            left -= 1;
            if m.matches(e.subj) {
                return Some(s);
            }
            from = s + 1;
        }
        if left > 0 {
            return None;
        }
        m.ids()
            .filter_map(|id| subjects[id as usize].seqs.from(from).next())
            .min()
    }

    /// Takes message `seq` out of the messages and the index.
    fn take(&mut self, seq: u64) -> bool {
        let e = if seq < self.base {
            self.sparse.remove(&seq)
        } else {
            let e = usize::try_from(seq - self.base)
                .ok()
                .and_then(|i| self.dense.get_mut(i))
                .and_then(Option::take);
            if e.is_some() {
                self.dense_live -= 1;
                self.tidy();
            }
            e
        };
        match e {
            Some(e) => {
                self.release(seq, e);
                true
            }
            None => false,
        }
    }

    /// Drops removed message `seq` from the subject index and the byte count.
    fn release(&mut self, seq: u64, e: Entry) {
        let s = &mut self.subjects[e.subj as usize];
        self.bytes -= record_size(s.name.len(), e.data.len());
        s.seqs.remove(seq);
        if s.seqs.is_empty() {
            let name = std::mem::take(&mut s.name);
            self.by_name.remove(&name);
            self.free.push(e.subj);
        }
    }

    /// After removals from `dense`: holes leave its front; a front that is mostly holes moves
    /// its messages to `sparse`; unused capacity goes back.
    fn tidy(&mut self) {
        loop {
            match self.dense.front() {
                Some(None) => {
                    self.dense.pop_front();
                    self.base += 1;
                }
                Some(Some(_)) if self.dense.len() > 2 * self.dense_live + SLACK => {
                    if let Some(Some(e)) = self.dense.pop_front() {
                        self.sparse.insert(self.base, e);
                        self.dense_live -= 1;
                    }
                    self.base += 1;
                }
                _ => break,
            }
        }
        if self.dense_live == 0 {
            self.dense.clear();
        }
        let cap = self.dense.capacity();
        if cap > KEEP_CAP && cap > 4 * self.dense.len() {
            self.dense.shrink_to((2 * self.dense.len()).max(KEEP_CAP));
        }
    }

    fn first(&self) -> Option<(u64, &Entry)> {
        match self.sparse.first_key_value() {
            Some((&s, e)) => Some((s, e)),
            None => self.dense.front()?.as_ref().map(|e| (self.base, e)),
        }
    }
}

/// The messages held from `seq` on, ascending, of `sparse` and `dense` (from `base`).
fn iter_from<'a>(
    sparse: &'a BTreeMap<u64, Entry>,
    dense: &'a VecDeque<Option<Entry>>,
    base: u64,
    seq: u64,
) -> impl Iterator<Item = (u64, &'a Entry)> + 'a {
    let skip = usize::try_from(seq.saturating_sub(base))
        .unwrap_or(usize::MAX)
        .min(dense.len());
    let base = base + skip as u64;
    sparse.range(seq..).map(|(&s, e)| (s, e)).chain(
        dense
            .range(skip..)
            .enumerate()
            .filter_map(move |(k, e)| e.as_ref().map(|e| (base + k as u64, e))),
    )
}

impl Store for MemoryStore {
    fn append(
        &mut self,
        subject: &[u8],
        header_len: usize,
        data: &[u8],
        time: i64,
    ) -> Result<u64, StoreError> {
        if header_len > data.len() || u32::try_from(header_len).is_err() {
            return Err(StoreError::TooLarge);
        }
        let seq = self.last_seq.max(self.start - 1) + 1;
        if seq >= GONE {
            // Only a compact that far gets here; the index marks removals with the top bit.
            return Err(StoreError::io(
                "appending",
                std::io::Error::new(std::io::ErrorKind::Unsupported, "sequences past 2^63"),
            ));
        }
        let cached = self
            .subjects
            .get(self.last_subj as usize)
            .is_some_and(|s| !s.seqs.is_empty() && s.name == subject);
        let subj = if cached {
            self.last_subj
        } else if let Some(&id) = self.by_name.get(subject) {
            id
        } else {
            // Copied: the publisher's buffer (often a whole socket read) must not stay alive.
            let name = Bytes::copy_from_slice(subject);
            let id = match self.free.pop() {
                Some(id) => {
                    self.subjects[id as usize].name = name.clone();
                    id
                }
                None => {
                    self.subjects.push(Subject {
                        name: name.clone(),
                        seqs: Seqs::default(),
                    });
                    (self.subjects.len() - 1) as u32
                }
            };
            self.memo.named(id, subject);
            self.by_name.insert(name, id);
            id
        };
        if self.dense.is_empty() {
            self.base = seq;
        }
        debug_assert_eq!(self.base + self.dense.len() as u64, seq);
        self.dense.push_back(Some(Entry {
            time,
            data: Bytes::copy_from_slice(data),
            header_len: header_len as u32,
            subj,
        }));
        self.dense_live += 1;
        self.subjects[subj as usize].seqs.push(seq);
        self.last_subj = subj;
        self.bytes += record_size(subject.len(), data.len());
        self.last_seq = seq;
        self.last_time = time;
        Ok(seq)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn load(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        Ok(self.load_at(seq))
    }

    fn load_next(
        &mut self,
        seq: u64,
        filter: Option<&[u8]>,
    ) -> Result<Option<StoredMsg>, StoreError> {
        Ok(match filter {
            None => self.iter_from(seq).next().map(|(s, e)| self.msg(s, e)),
            Some(f) => self.next_match(seq, f).and_then(|s| self.load_at(s)),
        })
    }

    fn load_last(&mut self, filter: &[u8]) -> Result<Option<StoredMsg>, StoreError> {
        let last = self.matching(filter).filter_map(|s| s.seqs.last()).max();
        Ok(last.and_then(|seq| self.load_at(seq)))
    }

    fn remove(&mut self, seq: u64) -> Result<bool, StoreError> {
        Ok(self.take(seq))
    }

    fn compact(&mut self, seq: u64) -> Result<u64, StoreError> {
        let mut n = 0;
        while let Some(entry) = self.sparse.first_entry() {
            if *entry.key() >= seq {
                break;
            }
            let (s, e) = entry.remove_entry();
            self.release(s, e);
            n += 1;
        }
        while self.base < seq {
            let Some(e) = self.dense.pop_front() else {
                break;
            };
            if let Some(e) = e {
                self.dense_live -= 1;
                self.release(self.base, e);
                n += 1;
            }
            self.base += 1;
        }
        self.tidy();
        if seq > self.last_seq + 1 {
            self.start = seq;
            self.last_seq = seq - 1;
        }
        Ok(n)
    }

    fn skip_to(&mut self, seq: u64) -> Result<(), StoreError> {
        let next = self.last_seq.max(self.start - 1) + 1;
        if seq <= next {
            return Ok(());
        }
        if seq >= GONE {
            return Err(StoreError::io(
                "skipping",
                std::io::Error::new(std::io::ErrorKind::Unsupported, "sequences past 2^63"),
            ));
        }
        let gap = seq - next;
        if !self.dense.is_empty() {
            if gap <= (self.dense.len() + SLACK) as u64 {
                // A short gap: holes in the deque, as removals leave (amortised by `tidy`).
                self.dense.extend((0..gap).map(|_| None));
                self.tidy();
            } else {
                // A long one would cost a hole per sequence: what is held moves to the map,
                // and the deque starts again at `seq`.
                let base = self.base;
                for (i, e) in std::mem::take(&mut self.dense).into_iter().enumerate() {
                    if let Some(e) = e {
                        self.sparse.insert(base + i as u64, e);
                    }
                }
                self.dense_live = 0;
            }
        }
        if self.dense.is_empty() {
            self.base = seq;
        }
        self.start = self.start.max(seq);
        self.last_seq = seq - 1;
        Ok(())
    }

    fn purge_subject(
        &mut self,
        filter: &[u8],
        up_to: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut doomed: Vec<u64> = self
            .matching(filter)
            .flat_map(|s| s.seqs.iter())
            .filter(|s| up_to.is_none_or(|u| *s < u))
            .collect();
        doomed.sort_unstable();
        if let Some(keep) = keep {
            let n = doomed.len().saturating_sub(keep as usize);
            doomed.truncate(n);
        }
        for s in &doomed {
            self.take(*s);
        }
        Ok(doomed.len() as u64)
    }

    fn state(&self) -> StoreState {
        let first = self.first();
        let msgs = self.msgs();
        let first_seq = first.map_or(self.last_seq.max(self.start - 1) + 1, |(s, _)| s);
        StoreState {
            msgs,
            bytes: self.bytes,
            first_seq,
            first_time: first.map_or(0, |(_, e)| e.time),
            last_seq: self.last_seq,
            last_time: self.last_time,
            num_subjects: self.by_name.len() as u64,
            num_deleted: if msgs == 0 {
                0
            } else {
                self.last_seq - first_seq + 1 - msgs
            },
        }
    }

    fn subject_state(&self, subject: &[u8]) -> Option<SubjectState> {
        let seqs = &self.subjects[*self.by_name.get(subject)? as usize].seqs;
        Some(SubjectState {
            msgs: seqs.len() as u64,
            first: seqs.first()?,
            last: seqs.last()?,
        })
    }

    fn subjects(&self, filter: &[u8]) -> Vec<(Bytes, SubjectState)> {
        self.matching(filter)
            .filter_map(|s| {
                Some((
                    s.name.clone(),
                    SubjectState {
                        msgs: s.seqs.len() as u64,
                        first: s.seqs.first()?,
                        last: s.seqs.last()?,
                    },
                ))
            })
            .collect()
    }

    fn num_pending(&mut self, seq: u64, filters: &[&[u8]]) -> u64 {
        if !filters.is_empty() {
            if filters.iter().all(|f| is_literal(f)) {
                let mut ids: Vec<u32> = filters
                    .iter()
                    .filter_map(|f| self.by_name.get(*f).copied())
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                return ids
                    .iter()
                    .map(|&id| self.subjects[id as usize].seqs.count_from(seq) as u64)
                    .sum();
            }
            return self
                .subjects
                .iter()
                .filter(|s| {
                    !s.seqs.is_empty() && filters.iter().any(|f| subject_matches(f, &s.name))
                })
                .map(|s| s.seqs.count_from(seq) as u64)
                .sum();
        }
        if self.first().is_none_or(|(first, _)| seq <= first) {
            return self.msgs();
        }
        if seq < self.base {
            return (self.sparse.range(seq..).count() + self.dense_live) as u64;
        }
        // Count the shorter side of `seq` in the deque.
        let i = usize::try_from(seq - self.base)
            .unwrap_or(usize::MAX)
            .min(self.dense.len());
        let n = if i < self.dense.len() / 2 {
            self.dense_live - self.dense.range(..i).filter(|e| e.is_some()).count()
        } else {
            self.dense.range(i..).filter(|e| e.is_some()).count()
        };
        n as u64
    }

    fn delete(&mut self) -> Result<(), StoreError> {
        *self = Self::new();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Memory;

    impl crate::store::conformance::Opener for Memory {
        fn fresh(&mut self) -> Box<dyn Store> {
            Box::new(MemoryStore::new())
        }
        fn reopen(&mut self, store: Box<dyn Store>) -> Box<dyn Store> {
            store
        }
    }

    #[test]
    fn the_memory_store_conforms() {
        crate::store::conformance::run(&mut Memory);
    }

    #[test]
    fn a_front_kept_by_one_old_message_moves_to_the_map() {
        let mut s = MemoryStore::new();
        s.append(b"kv.old", 0, b"x", 1).unwrap();
        // Key "kv.new" is rewritten 10,000 times, keeping one revision.
        let mut prev = None;
        for i in 2..=10_001u64 {
            let q = s.append(b"kv.new", 0, b"y", i as i64).unwrap();
            if let Some(p) = prev {
                assert!(s.remove(p).unwrap());
            }
            prev = Some(q);
        }
        assert!(
            s.dense.len() <= 2 * s.dense_live + SLACK,
            "{}",
            s.dense.len()
        );
        assert_eq!(s.sparse.len(), 1);
        let st = s.state();
        assert_eq!((st.msgs, st.first_seq, st.last_seq), (2, 1, 10_001));
        assert_eq!(st.num_deleted, 9_999);
        assert_eq!(s.load(1).unwrap().unwrap().payload(), b"x");
        assert_eq!(s.load_next(2, None).unwrap().unwrap().seq, 10_001);
        assert_eq!(s.load_next(0, Some(b"kv.*")).unwrap().unwrap().seq, 1);
        assert_eq!(s.load_next(2, Some(b"kv.*")).unwrap().unwrap().seq, 10_001);
        assert_eq!(s.num_pending(0, &[]), 2);
        assert_eq!(s.num_pending(2, &[]), 1);
        assert_eq!(s.num_pending(0, &[b"kv.>"]), 2);
        assert_eq!(s.num_pending(2, &[b"kv.old", b"kv.new"]), 1);
        assert_eq!(s.compact(2).unwrap(), 1);
        assert!(s.sparse.is_empty());
        assert_eq!(s.state().first_seq, 10_001);
        assert!(s.remove(10_001).unwrap());
        assert!(s.dense.is_empty() && s.dense.capacity() <= KEEP_CAP);
        assert_eq!(s.append(b"a", 0, b"z", 1).unwrap(), 10_002);
        assert_eq!(s.state().first_seq, 10_002);
    }

    #[test]
    fn wildcard_loads_past_many_non_matching_messages() {
        let mut s = MemoryStore::new();
        for i in 0..10_000u64 {
            let subj = format!("t.{}", i % 500);
            s.append(subj.as_bytes(), 0, b"x", i as i64).unwrap();
        }
        let mut got = Vec::new();
        let mut q = 0;
        while let Some(m) = s.load_next(q, Some(b"t.7.>")).unwrap() {
            got.push(m.seq);
            q = m.seq + 1;
        }
        assert!(got.is_empty());
        while let Some(m) = s.load_next(q, Some(b"t.*")).unwrap() {
            got.push(m.seq);
            q = m.seq + 1;
            if got.len() == 3 {
                break;
            }
        }
        assert_eq!(got, vec![1, 2, 3]);
        got.clear();
        q = 0;
        while let Some(m) = s.load_next(q, Some(b"t.7")).unwrap() {
            got.push(m.seq);
            q = m.seq + 1;
        }
        assert_eq!(got, (0..20).map(|k| 8 + 500 * k).collect::<Vec<u64>>());
    }

    /// What a memory store must answer, kept the simple way.
    #[derive(Default)]
    struct Model {
        msgs: BTreeMap<u64, StoredMsg>,
        next: u64,
        last_time: i64,
    }

    impl Model {
        fn matching(&self, filter: &[u8]) -> impl Iterator<Item = &StoredMsg> + '_ {
            let filter = filter.to_vec();
            self.msgs
                .values()
                .filter(move |m| subject_matches(&filter, &m.subject))
        }
    }

    const SUBJECTS: [&str; 5] = ["a", "b.x", "b.y", "c.x", "c.y.z"];
    const FILTERS: [&str; 6] = ["a", "b.*", "b.>", ">", "c.x", "*.y"];

    #[derive(Clone, Debug)]
    enum Op {
        Append(usize),
        Remove(u16),
        Compact(u16),
        Purge(usize, Option<u16>, Option<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            10 => (0..SUBJECTS.len()).prop_map(Op::Append),
            8 => any::<u16>().prop_map(Op::Remove),
            1 => any::<u16>().prop_map(Op::Compact),
            1 => (0..FILTERS.len(), proptest::option::of(any::<u16>()), proptest::option::of(0..4u8))
                .prop_map(|(f, u, k)| Op::Purge(f, u, k)),
        ]
    }

    fn agree(s: &mut MemoryStore, m: &Model) -> Result<(), TestCaseError> {
        let st = s.state();
        let first = m.msgs.first_key_value();
        prop_assert_eq!(st.msgs, m.msgs.len() as u64);
        prop_assert_eq!(st.first_seq, first.map_or(m.next, |(q, _)| *q));
        prop_assert_eq!(st.first_time, first.map_or(0, |(_, x)| x.time));
        prop_assert_eq!((st.last_seq, st.last_time), (m.next - 1, m.last_time));
        let bytes: u64 = m.msgs.values().map(StoredMsg::stored_size).sum();
        prop_assert_eq!(st.bytes, bytes);
        prop_assert!(s.dense.len() <= 2 * s.dense_live + SLACK + 1);
        let hi = m.next + 1;
        for q in 0..=hi {
            prop_assert_eq!(s.load(q).unwrap(), m.msgs.get(&q).cloned());
        }
        for q in [
            0,
            st.first_seq,
            (st.first_seq + hi) / 2,
            hi.saturating_sub(3),
            hi,
        ] {
            prop_assert_eq!(
                s.load_next(q, None).unwrap(),
                m.msgs.range(q..).next().map(|(_, x)| x.clone())
            );
            prop_assert_eq!(s.num_pending(q, &[]), m.msgs.range(q..).count() as u64);
            for f in FILTERS {
                let fl = f.as_bytes();
                let want = m.matching(fl).find(|x| x.seq >= q).cloned();
                prop_assert_eq!(s.load_next(q, Some(fl)).unwrap(), want, "{} {}", f, q);
                let n = m.matching(fl).filter(|x| x.seq >= q).count() as u64;
                prop_assert_eq!(s.num_pending(q, &[fl]), n);
            }
            let two: [&[u8]; 2] = [b"a", b"c.x"];
            let n = m
                .msgs
                .range(q..)
                .filter(|(_, x)| two.contains(&&x.subject[..]))
                .count() as u64;
            prop_assert_eq!(s.num_pending(q, &two), n);
        }
        for f in FILTERS {
            let fl = f.as_bytes();
            prop_assert_eq!(s.load_last(fl).unwrap(), m.matching(fl).last().cloned());
        }
        for subj in SUBJECTS {
            let on: Vec<u64> = m.matching(subj.as_bytes()).map(|x| x.seq).collect();
            let want = (!on.is_empty()).then(|| SubjectState {
                msgs: on.len() as u64,
                first: on[0],
                last: on[on.len() - 1],
            });
            prop_assert_eq!(s.subject_state(subj.as_bytes()), want);
        }
        prop_assert_eq!(st.num_subjects, s.subjects(b">").len() as u64);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn the_memory_store_agrees_with_a_simple_model(ops in proptest::collection::vec(op(), 1..300)) {
            let mut s = MemoryStore::new();
            let mut m = Model { next: 1, ..Model::default() };
            for (i, op) in ops.into_iter().enumerate() {
                let span = m.next + 1;
                match op {
                    Op::Append(k) => {
                        let subj = SUBJECTS[k].as_bytes();
                        let data = format!("d{i}").into_bytes();
                        let q = s.append(subj, 1, &data, i as i64).unwrap();
                        prop_assert_eq!(q, m.next);
                        m.msgs.insert(q, StoredMsg {
                            seq: q,
                            time: i as i64,
                            subject: Bytes::copy_from_slice(subj),
                            header_len: 1,
                            data: data.into(),
                        });
                        m.next += 1;
                        m.last_time = i as i64;
                    }
                    Op::Remove(q) => {
                        // Mostly near the end, so holes pile up behind an old front.
                        let q = m.next.saturating_sub(1 + u64::from(q) % 8.min(span));
                        let q = if i % 5 == 0 { u64::from(q as u16) % span } else { q };
                        prop_assert_eq!(s.remove(q).unwrap(), m.msgs.remove(&q).is_some());
                    }
                    Op::Compact(q) => {
                        let q = u64::from(q) % (span + 5);
                        let n = m.msgs.range(..q).count() as u64;
                        m.msgs.retain(|&k, _| k >= q);
                        m.next = m.next.max(q);
                        prop_assert_eq!(s.compact(q).unwrap(), n);
                    }
                    Op::Purge(f, up_to, keep) => {
                        let fl = FILTERS[f].as_bytes();
                        let up_to = up_to.map(|u| u64::from(u) % (span + 1));
                        let mut doomed: Vec<u64> = m
                            .matching(fl)
                            .map(|x| x.seq)
                            .filter(|q| up_to.is_none_or(|u| *q < u))
                            .collect();
                        if let Some(k) = keep {
                            doomed.truncate(doomed.len().saturating_sub(k as usize));
                        }
                        for q in &doomed {
                            m.msgs.remove(q);
                        }
                        prop_assert_eq!(s.purge_subject(fl, up_to, keep.map(u64::from)).unwrap(), doomed.len() as u64);
                    }
                }
                agree(&mut s, &m)?;
            }
        }
    }
}
