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

use hashbrown::HashTable;
use parking_lot::Mutex;
use thread_local::ThreadLocal;

use crate::result::MatchResult;
use crate::subject::bytes_eq;

/// Most subjects one thread keeps (nats-server's per-connection L1 keeps 512).
const LOCAL_MAX: usize = 256;

struct Entry<T> {
    hash: u64,
    key: Box<[u8]>,
    result: Arc<MatchResult<T>>,
}

struct Table<T> {
    table: RefCell<HashTable<Entry<T>>>,
    /// Hits of this thread; written only by it, so a plain load and store count exactly.
    hits: Arc<AtomicU64>,
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
        match table.find(hash, |e| bytes_eq(&e.key, key)) {
            Some(e) if !e.result.is_stale() => {
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
                table: RefCell::new(HashTable::new()),
                hits,
            }
        });
        let Ok(mut table) = local.table.try_borrow_mut() else {
            return;
        };
        if let Some(e) = table.find_mut(hash, |e| bytes_eq(&e.key, key)) {
            e.result = result.clone();
            return;
        }
        if table.len() >= LOCAL_MAX {
            table.retain(|e| !e.result.is_stale());
            if table.len() >= LOCAL_MAX {
                let mut excess = table.len() - LOCAL_MAX / 2;
                table.retain(|_| {
                    if excess > 0 {
                        excess -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
        }
        table.insert_unique(
            hash,
            Entry {
                hash,
                key: key.into(),
                result: result.clone(),
            },
            |e| e.hash,
        );
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
