//! `storage: memory`: messages in a map by sequence, an index of sequences per subject.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

use super::{subject_matches, Store, StoreError, StoreState, StoredMsg, SubjectState};

/// A stream kept in memory. Lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    msgs: BTreeMap<u64, StoredMsg>,
    /// The sequences held per subject.
    subjects: HashMap<Bytes, BTreeSet<u64>>,
    bytes: u64,
    last_seq: u64,
    last_time: i64,
    /// The sequence the stream starts at when empty (moved by a compact past the end).
    start: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            start: 1,
            ..Self::default()
        }
    }

    fn take(&mut self, seq: u64) -> Option<StoredMsg> {
        let msg = self.msgs.remove(&seq)?;
        self.bytes -= msg.stored_size();
        if let Some(seqs) = self.subjects.get_mut(&msg.subject) {
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.subjects.remove(&msg.subject);
            }
        }
        Some(msg)
    }
}

impl Store for MemoryStore {
    fn append(
        &mut self,
        subject: &[u8],
        header_len: usize,
        data: &[u8],
        time: i64,
    ) -> Result<u64, StoreError> {
        let seq = self.last_seq.max(self.start - 1) + 1;
        // Copied: the publisher's buffer (often a whole socket read) must not stay alive.
        let subject = match self.subjects.get_key_value(subject) {
            Some((k, _)) => k.clone(),
            None => Bytes::copy_from_slice(subject),
        };
        let msg = StoredMsg {
            seq,
            time,
            subject: subject.clone(),
            header_len,
            data: Bytes::copy_from_slice(data),
        };
        self.bytes += msg.stored_size();
        self.msgs.insert(seq, msg);
        self.subjects.entry(subject).or_default().insert(seq);
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
        Ok(self.msgs.get(&seq).cloned())
    }

    fn load_next(
        &mut self,
        seq: u64,
        filter: Option<&[u8]>,
    ) -> Result<Option<StoredMsg>, StoreError> {
        Ok(self
            .msgs
            .range(seq..)
            .map(|(_, m)| m)
            .find(|m| filter.is_none_or(|f| subject_matches(f, &m.subject)))
            .cloned())
    }

    fn load_last(&mut self, filter: &[u8]) -> Result<Option<StoredMsg>, StoreError> {
        let last = self
            .subjects
            .iter()
            .filter(|(s, _)| subject_matches(filter, s))
            .filter_map(|(_, seqs)| seqs.last().copied())
            .max();
        Ok(last.and_then(|seq| self.msgs.get(&seq).cloned()))
    }

    fn remove(&mut self, seq: u64) -> Result<bool, StoreError> {
        Ok(self.take(seq).is_some())
    }

    fn compact(&mut self, seq: u64) -> Result<u64, StoreError> {
        let doomed: Vec<u64> = self.msgs.range(..seq).map(|(s, _)| *s).collect();
        for s in &doomed {
            self.take(*s);
        }
        if seq > self.last_seq + 1 {
            self.start = seq;
            self.last_seq = seq - 1;
        }
        Ok(doomed.len() as u64)
    }

    fn purge_subject(
        &mut self,
        filter: &[u8],
        up_to: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut doomed: Vec<u64> = self
            .subjects
            .iter()
            .filter(|(s, _)| subject_matches(filter, s))
            .flat_map(|(_, seqs)| seqs.iter().copied())
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
        let first = self.msgs.first_key_value();
        let msgs = self.msgs.len() as u64;
        let first_seq = first.map_or(self.last_seq.max(self.start - 1) + 1, |(s, _)| *s);
        StoreState {
            msgs,
            bytes: self.bytes,
            first_seq,
            first_time: first.map_or(0, |(_, m)| m.time),
            last_seq: self.last_seq,
            last_time: self.last_time,
            num_subjects: self.subjects.len() as u64,
            num_deleted: if msgs == 0 {
                0
            } else {
                self.last_seq - first_seq + 1 - msgs
            },
        }
    }

    fn subject_state(&self, subject: &[u8]) -> Option<SubjectState> {
        let seqs = self.subjects.get(subject)?;
        Some(SubjectState {
            msgs: seqs.len() as u64,
            first: *seqs.first()?,
            last: *seqs.last()?,
        })
    }

    fn subjects(&self, filter: &[u8]) -> Vec<(Bytes, SubjectState)> {
        self.subjects
            .iter()
            .filter(|(s, _)| subject_matches(filter, s))
            .filter_map(|(s, seqs)| {
                Some((
                    s.clone(),
                    SubjectState {
                        msgs: seqs.len() as u64,
                        first: *seqs.first()?,
                        last: *seqs.last()?,
                    },
                ))
            })
            .collect()
    }

    fn num_pending(&mut self, seq: u64, filters: &[&[u8]]) -> u64 {
        if filters.is_empty() {
            return self.msgs.range(seq..).count() as u64;
        }
        self.subjects
            .iter()
            .filter(|(s, _)| filters.iter().any(|f| subject_matches(f, s)))
            .map(|(_, seqs)| seqs.range(seq..).count() as u64)
            .sum()
    }

    fn delete(&mut self) -> Result<(), StoreError> {
        *self = Self::new();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
