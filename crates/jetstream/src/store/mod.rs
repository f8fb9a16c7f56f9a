//! Where a stream's messages live. A [`Store`] knows sequences, subjects, times and bytes, never
//! sockets, consumers or JSON: the stream above it decides what to append and what limits
//! remove, and the store keeps that safely and answers by sequence and by subject.
//!
//! - [`memory`]: in memory (`storage: memory`).
//! - [`file`](mod@file): a segmented append-only log on disk (`storage: file`).
//! - `index`: what both keep per subject (its sequences) and per consumer filter.
//!
//! Writes are grouped: [`Store::append`] may only buffer, [`Store::flush`] hands everything
//! appended to the operating system (one write for the batch), and [`Store::sync`] also makes
//! it durable. The stream acknowledges a publish only after the flush (or the sync, with
//! `sync_interval: always`) that covers it.

pub mod file;
mod index;
pub mod memory;

use bytes::Bytes;

pub use file::FileStore;
pub use memory::MemoryStore;

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMsg {
    /// Its sequence in the stream (from 1).
    pub seq: u64,
    /// When it was stored, nanoseconds since the Unix epoch.
    pub time: i64,
    /// The subject it was published to.
    pub subject: Bytes,
    /// The length of the `NATS/1.0` header block at the start of `data`; 0 without headers.
    pub header_len: usize,
    /// The header block followed by the payload, as on the wire.
    pub data: Bytes,
}

impl StoredMsg {
    /// The subject as text (subjects are checked UTF-8 before they are stored).
    pub fn subject_str(&self) -> &str {
        std::str::from_utf8(&self.subject).unwrap_or_default()
    }

    /// The header block, if any.
    pub fn headers(&self) -> Option<&[u8]> {
        (self.header_len > 0).then(|| &self.data[..self.header_len])
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.data[self.header_len..]
    }

    /// The size JetStream counts for limits: subject, headers, payload, and 16 bytes of
    /// sequence and time (nats-server's `fileStoreMsgSize` less its checksum and framing).
    pub fn stored_size(&self) -> u64 {
        record_size(self.subject.len(), self.data.len())
    }
}

/// The bytes a message counts against `max_bytes` (as nats-server counts them).
pub fn record_size(subject_len: usize, data_len: usize) -> u64 {
    // nats-server: 22 bytes of header, the subject, headers, payload and an 8 byte checksum.
    (22 + subject_len + data_len + 8) as u64
}

/// What a store holds, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreState {
    /// Messages held.
    pub msgs: u64,
    /// Their [`record_size`]s, summed.
    pub bytes: u64,
    /// The lowest sequence held; when empty, `last_seq + 1`.
    pub first_seq: u64,
    /// The time of the first message held (0 when empty).
    pub first_time: i64,
    /// The highest sequence ever appended (0 for a new store). Sequences are never reused,
    /// even after a purge: the next append gets `last_seq + 1`.
    pub last_seq: u64,
    /// The time of the last message appended (0 for a new store).
    pub last_time: i64,
    /// Distinct subjects held.
    pub num_subjects: u64,
    /// Sequences between `first_seq` and `last_seq` that are no longer held.
    pub num_deleted: u64,
}

/// One subject's messages in a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubjectState {
    /// Messages held on the subject.
    pub msgs: u64,
    /// The lowest sequence held on it.
    pub first: u64,
    /// The highest sequence held on it.
    pub last: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk said no.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing, with the file.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// What is on disk is not a store this code wrote (a bad header, an unknown version).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The message is larger than a store record can be.
    #[error("message too large for the store")]
    TooLarge,
}

impl StoreError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// A stream's storage. Implementations: [`MemoryStore`], [`FileStore`].
///
/// Sequences start at 1 and only grow. Removing messages (by sequence, by purge, by compact)
/// leaves the sequences of the others unchanged.
pub trait Store: Send {
    /// Appends a message with the next sequence (`state().last_seq + 1`) and returns it. `data`
    /// is the header block (`header_len` bytes, 0 without headers) followed by the payload.
    /// `time` is nanoseconds since the Unix epoch. May only buffer: see [`Self::flush`].
    fn append(
        &mut self,
        subject: &[u8],
        header_len: usize,
        data: &[u8],
        time: i64,
    ) -> Result<u64, StoreError>;

    /// Hands every appended message and every removal to the operating system: after this a
    /// `kill -9` of the process loses none of them.
    fn flush(&mut self) -> Result<(), StoreError>;

    /// [`Self::flush`], then makes it durable (fsync): after this a power loss loses none of
    /// them.
    fn sync(&mut self) -> Result<(), StoreError>;

    /// The message with sequence `seq`, if held.
    fn load(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError>;

    /// The first message held with a sequence `>= seq` whose subject matches `filter` (a
    /// subject with wildcards; `None` matches all).
    fn load_next(
        &mut self,
        seq: u64,
        filter: Option<&[u8]>,
    ) -> Result<Option<StoredMsg>, StoreError>;

    /// The last message held on a subject matching `filter`.
    fn load_last(&mut self, filter: &[u8]) -> Result<Option<StoredMsg>, StoreError>;

    /// Removes the message with sequence `seq`; false if it was not held.
    fn remove(&mut self, seq: u64) -> Result<bool, StoreError>;

    /// Removes every message with a sequence below `seq` (all of them when `seq` is past the
    /// last); returns how many. Later appends continue after the old last sequence, or at
    /// `seq` if that is higher (a purge to a sequence moves the stream's start there).
    fn compact(&mut self, seq: u64) -> Result<u64, StoreError>;

    /// Moves the next sequence to `seq` when that is past `last_seq + 1`, keeping everything
    /// held: `last_seq` becomes `seq - 1` and the sequences in between are never used (they
    /// count as deleted). A mirror stores each message at its origin's sequence, so the
    /// origin's gaps become gaps here. Persistent stores keep the move across a restart.
    fn skip_to(&mut self, seq: u64) -> Result<(), StoreError>;

    /// Removes messages whose subject matches `filter` (a subject with wildcards): with
    /// `up_to`, only those with a sequence below it; with `keep`, all but the newest `keep`
    /// matching messages. Returns how many were removed (STREAM.PURGE with a filter).
    fn purge_subject(
        &mut self,
        filter: &[u8],
        up_to: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, StoreError>;

    /// What the store holds now.
    fn state(&self) -> StoreState;

    /// The state of one literal subject, if any message on it is held.
    fn subject_state(&self, subject: &[u8]) -> Option<SubjectState>;

    /// Every subject held that matches `filter`, with its state, in no particular order.
    fn subjects(&self, filter: &[u8]) -> Vec<(Bytes, SubjectState)>;

    /// How many messages held with a sequence `>= seq` match any of `filters` (all of them
    /// when `filters` is empty).
    fn num_pending(&mut self, seq: u64, filters: &[&[u8]]) -> u64;

    /// Removes everything for good (the stream is being deleted): files too.
    fn delete(&mut self) -> Result<(), StoreError>;
}

/// Whether `subject` (literal) matches `filter` (with `*` and `>`).
pub fn subject_matches(filter: &[u8], subject: &[u8]) -> bool {
    starling_sublist::subject_matches(filter, subject)
}

#[cfg(test)]
pub(crate) mod conformance;
