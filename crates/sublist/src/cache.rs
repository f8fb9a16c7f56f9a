//! The shared match-result cache: published subject → `Arc<MatchResult>`.
//!
//! Sharded by the subject's hash so that threads matching different subjects touch different locks
//! and cache lines; a hit takes one shard's read lock. Bounded like nats-server's (1024 subjects,
//! swept down to 512), per shard. A result leaving the cache for any reason is marked stale, which
//! is what keeps the per-thread tables (`local`) honest.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::RwLock;

use crate::result::MatchResult;
use crate::subject::{bytes_eq, hash_bytes, subject_matches};

/// Most subjects the cache holds (nats-server's `slCacheMax`).
pub(crate) const CACHE_MAX: usize = 1024;
/// Subjects kept when the cache overflows (nats-server 2.9's `slCacheSweep`).
pub(crate) const CACHE_SWEEP: usize = 512;
const SHARDS: usize = 16;
const SHARD_MAX: usize = CACHE_MAX / SHARDS;
const SHARD_SWEEP: usize = CACHE_SWEEP / SHARDS;

struct Entry<T> {
    hash: u64,
    key: Box<[u8]>,
    result: Arc<MatchResult<T>>,
}

/// One shard: its table and its hit counter share a cache line, which a hit touches anyway.
#[repr(align(128))]
struct Shard<T> {
    table: RwLock<HashTable<Entry<T>>>,
    hits: AtomicU64,
    /// The table's length, kept under its write lock, so that invalidation can pass an empty shard
    /// without taking a lock (see [`Cache::invalidate_literal`]).
    len: AtomicUsize,
}

impl<T> Shard<T> {
    /// Whether the table is empty, without its lock. Exact for a caller holding the trie's write
    /// lock: every change to the table happens under the trie's read lock (or write lock), so
    /// none is concurrent and acquiring the trie lock ordered them all before.
    #[inline]
    fn is_empty_under_trie_write_lock(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }
}

/// The cache of one sublist.
pub(crate) struct Cache<T> {
    shards: Box<[Shard<T>]>,
    /// Random per cache, so subjects that collide cannot be known in advance.
    seed: u64,
}

impl<T> Cache<T> {
    pub(crate) fn new() -> Self {
        let shards = (0..SHARDS)
            .map(|_| Shard {
                table: RwLock::new(HashTable::new()),
                hits: AtomicU64::new(0),
                len: AtomicUsize::new(0),
            })
            .collect();
        Self {
            shards,
            seed: DefaultHashBuilder::default().hash_one(0x5EED_u64),
        }
    }

    /// The hash [`get`](Self::get) and [`insert`](Self::insert) take.
    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        hash_bytes(self.seed, key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<T> {
        // Bits above hashbrown's bucket index and below its 7-bit control tag.
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    /// The cached result for `key`, counting a hit.
    #[inline]
    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<Arc<MatchResult<T>>> {
        let shard = self.shard(hash);
        let found = shard
            .table
            .read()
            .find(hash, |e| bytes_eq(&e.key, key))
            .map(|e| e.result.clone());
        if found.is_some() {
            shard.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Whether the cached result for `key` is non-empty, if it is cached (not counted as a hit).
    pub(crate) fn peek(&self, hash: u64, key: &[u8]) -> Option<bool> {
        self.shard(hash)
            .table
            .read()
            .find(hash, |e| bytes_eq(&e.key, key))
            .map(|e| !e.result.is_empty())
    }

    /// Stores `result` for `key`, sweeping the shard first if it is full.
    pub(crate) fn insert(&self, hash: u64, key: &[u8], result: Arc<MatchResult<T>>) {
        let shard = self.shard(hash);
        let mut table = shard.table.write();
        if let Some(e) = table.find_mut(hash, |e| bytes_eq(&e.key, key)) {
            // Another thread stored the same answer meanwhile; keep one live copy.
            std::mem::replace(&mut e.result, result).mark_stale();
            return;
        }
        if table.len() >= SHARD_MAX {
            let mut excess = table.len() - SHARD_SWEEP;
            // Bucket order follows the hash, so this drops an arbitrary (pseudo-random) half.
            table.retain(|e| {
                if excess > 0 {
                    excess -= 1;
                    e.result.mark_stale();
                    false
                } else {
                    true
                }
            });
        }
        table.insert_unique(
            hash,
            Entry {
                hash,
                key: key.into(),
                result,
            },
            |e| e.hash,
        );
        shard.len.store(table.len(), Ordering::Relaxed);
    }

    /// Drops the entry for the literal subject `key`, if cached. The caller holds the trie's write
    /// lock.
    pub(crate) fn invalidate_literal(&self, key: &[u8]) {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        if shard.is_empty_under_trie_write_lock() {
            return;
        }
        let mut table = shard.table.write();
        if let Ok(entry) = table.find_entry(hash, |e| bytes_eq(&e.key, key)) {
            entry.remove().0.result.mark_stale();
            shard.len.store(table.len(), Ordering::Relaxed);
        }
    }

    /// Drops every entry whose subject the wildcard `pattern` matches. The caller holds the trie's
    /// write lock.
    pub(crate) fn invalidate_matching(&self, pattern: &[u8]) {
        for shard in self.shards.iter() {
            if shard.is_empty_under_trie_write_lock() {
                continue;
            }
            // Look first under the read lock, so readers of unaffected shards are never blocked.
            if shard
                .table
                .read()
                .iter()
                .any(|e| subject_matches(pattern, &e.key))
            {
                let mut table = shard.table.write();
                table.retain(|e| {
                    let affected = subject_matches(pattern, &e.key);
                    if affected {
                        e.result.mark_stale();
                    }
                    !affected
                });
                shard.len.store(table.len(), Ordering::Relaxed);
            }
        }
    }

    /// Subjects cached.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.table.read().len()).sum()
    }

    /// Hits since creation.
    pub(crate) fn hits(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.hits.load(Ordering::Relaxed))
            .sum()
    }

    /// (entries, sum of fan-outs, largest fan-out) over the cached results.
    pub(crate) fn fanout(&self) -> (u64, u64, u32) {
        let (mut n, mut total, mut max) = (0u64, 0u64, 0u32);
        for shard in self.shards.iter() {
            for e in shard.table.read().iter() {
                let f = e.result.fanout();
                n += 1;
                total += f as u64;
                max = max.max(u32::try_from(f).unwrap_or(u32::MAX));
            }
        }
        (n, total, max)
    }
}
