//! The per-thread front of the result cache.
//!
//! Each thread that matches keeps a small table of subject → result, private to it, so a repeated
//! match touches no lock and writes no shared memory (the only shared write left is the `Arc`
//! count of the result handed out). Every entry is a result that is also in the shared cache;
//! whenever the shared cache drops a result (an insert or remove that can change it, or a sweep) it
//! marks the result stale, and a thread finding a stale entry treats it as a miss. So a thread never
//! answers from a result the shared cache no longer vouches for.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use thread_local::ThreadLocal;

use crate::result::MatchResult;
use crate::subject::bytes_eq;

/// Slots of one thread's table (a power of two): direct-mapped by hash, so a lookup is one slot and
/// a new subject simply replaces whatever shared its slot (nats-server's per-connection L1 keeps
/// 512 subjects). 128 slots of 32 bytes: 4 KiB per matching thread.
const SLOTS: usize = 128;

struct Entry<T> {
    hash: u64,
    key: Box<[u8]>,
    result: Arc<MatchResult<T>>,
}

struct Table<T> {
    table: RefCell<Box<[Option<Entry<T>>; SLOTS]>>,
    /// Hits of this thread; written only by it, so a plain load and store count exactly.
    hits: Arc<AtomicU64>,
}

#[inline(always)]
fn slot(hash: u64) -> usize {
    (hash >> 57) as usize % SLOTS
}

/// The per-thread tables of one sublist.
pub(crate) struct Local<T: Send + Sync> {
    tables: ThreadLocal<Table<T>>,
    /// Every thread's hit counter, for the statistics.
    counters: Mutex<Vec<Arc<AtomicU64>>>,
}

impl<T: Send + Sync> Local<T> {
    pub(crate) fn new() -> Self {
        Self {
            tables: ThreadLocal::new(),
            counters: Mutex::new(Vec::new()),
        }
    }

    /// Calls `f` with this thread's cached result for `key` if there is one that is not stale, or
    /// gives `f` back.
    #[inline]
    pub(crate) fn with<R, F: FnOnce(&Arc<MatchResult<T>>) -> R>(
        &self,
        hash: u64,
        key: &[u8],
        f: F,
    ) -> Result<R, F> {
        let Some(local) = self.tables.get() else {
            return Err(f);
        };
        // A shared borrow: `f` may match again on this thread (it then may not insert).
        let Ok(table) = local.table.try_borrow() else {
            return Err(f);
        };
        match &table[slot(hash)] {
            Some(e) if e.hash == hash && bytes_eq(&e.key, key) && !e.result.is_stale() => {
                let hits = &local.hits;
                hits.store(hits.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                Ok(f(&e.result))
            }
            _ => Err(f),
        }
    }

    /// Remembers `result` for `key` on this thread.
    pub(crate) fn insert(&self, hash: u64, key: &[u8], result: &Arc<MatchResult<T>>) {
        let local = self.tables.get_or(|| {
            let hits = Arc::new(AtomicU64::new(0));
            self.counters.lock().push(hits.clone());
            Table {
                table: RefCell::new(
                    (0..SLOTS)
                        .map(|_| None)
                        .collect::<Box<[_]>>()
                        .try_into()
                        .unwrap_or_else(|_| unreachable!()),
                ),
                hits,
            }
        });
        let Ok(mut table) = local.table.try_borrow_mut() else {
            return;
        };
        table[slot(hash)] = Some(Entry {
            hash,
            key: key.into(),
            result: result.clone(),
        });
    }

    /// Hits of every thread since creation.
    pub(crate) fn hits(&self) -> u64 {
        self.counters
            .lock()
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}
