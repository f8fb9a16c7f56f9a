//! [`Sublist`]: the trie behind a reader-writer lock, plus the shared result cache.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::cache::Cache;
use crate::error::SublistError;
use crate::handle::SubHandle;
use crate::interest::Interest;
use crate::local::Local;
use crate::result::MatchResult;
use crate::stats::SublistStats;
use crate::subject::{is_fwc, is_pwc, tokenize, Tokens};
use crate::trie::Trie;

/// Adds one to a counter that only holders of the trie's write lock change: a load and a store,
/// not a locked read-modify-write.
#[inline]
fn bump(counter: &AtomicU64, order: Ordering) {
    counter.store(counter.load(Ordering::Relaxed) + 1, order);
}

/// The subscription matcher: who is interested in a published subject.
///
/// Generic over what a subscription carries (`T`; a broker typically stores an
/// `Arc<Subscription>`). Shared between threads by reference (`Sync`): many threads may match at
/// once; inserts and removes take a writer lock on the trie.
///
/// ```
/// use starling_sublist::Sublist;
/// let subs = Sublist::new();
/// let h = subs.insert(b"orders.*", None, "audit").unwrap();
/// subs.insert(b"orders.eu", Some(b"workers"), "worker-1").unwrap();
/// let r = subs.matches(b"orders.eu");
/// assert_eq!(r.plain, ["audit"]);
/// assert_eq!(r.queues[0].members, ["worker-1"]);
/// assert_eq!(subs.remove(&h), Some("audit"));
/// ```
pub struct Sublist<T: Send + Sync> {
    trie: RwLock<Trie<T>>,
    cache: Option<Cache<T>>,
    /// Per-thread front of `cache` (unused without a cache).
    local: Local<T>,
    // Written only under the trie's write lock; read without it.
    generation: AtomicU64,
    count: AtomicUsize,
    inserts: AtomicU64,
    removes: AtomicU64,
    /// Matches the cache did not answer (all of them without a cache).
    misses: AtomicU64,
    /// Shared by every empty result, so a miss with no interest allocates nothing.
    empty: Arc<MatchResult<T>>,
}

impl<T: Clone + Send + Sync + 'static> Sublist<T> {
    /// A sublist with the shared result cache (bounded as nats-server's: 1024 subjects, swept down
    /// to 512 when full).
    pub fn new() -> Self {
        Self::build(Some(Cache::new()))
    }

    /// A sublist without the result cache: every match walks the trie.
    pub fn without_cache() -> Self {
        Self::build(None)
    }

    fn build(cache: Option<Cache<T>>) -> Self {
        Self {
            trie: RwLock::new(Trie::new()),
            cache,
            local: Local::new(),
            generation: AtomicU64::new(0),
            count: AtomicUsize::new(0),
            inserts: AtomicU64::new(0),
            removes: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            empty: Arc::new(MatchResult::new()),
        }
    }

    /// Whether this sublist caches match results.
    pub fn cache_enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// Adds a subscription on `subject` (wildcards allowed), in queue group `queue` if given.
    ///
    /// The subject is checked as nats-server's sublist checks it: `InvalidSubject` for an empty
    /// subject, an empty token or a `>` that is not the last token (whitespace is the protocol
    /// parser's business; [`is_valid_subject`](crate::is_valid_subject) checks it too).
    /// `InvalidQueue` for an empty queue name. Every insert is a distinct entry, even with the same
    /// subject, queue and value.
    pub fn insert(
        &self,
        subject: &[u8],
        queue: Option<&[u8]>,
        value: T,
    ) -> Result<SubHandle, SublistError> {
        let mut tokens = Tokens::new();
        if !tokenize(subject, &mut tokens) || tokens[..tokens.len() - 1].iter().any(|t| is_fwc(t)) {
            return Err(SublistError::InvalidSubject);
        }
        if queue.is_some_and(<[u8]>::is_empty) {
            return Err(SublistError::InvalidQueue);
        }
        let literal = !tokens.iter().any(|t| is_pwc(t) || is_fwc(t));

        let mut trie = self.trie.write();
        let id = trie.next_id();
        trie.insert(&tokens, queue, id, value);
        let count = &self.count;
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        bump(&self.inserts, Ordering::Relaxed);
        self.invalidate(subject, literal);
        // After the cache is fixed: whoever sees the new generation sees the new results.
        bump(&self.generation, Ordering::Release);
        drop(trie);

        Ok(SubHandle::new(id.get(), subject, queue))
    }

    /// Removes the subscription `handle` stands for and returns its value; `None` if it was already
    /// removed (or the handle is from another sublist).
    pub fn remove(&self, handle: &SubHandle) -> Option<T> {
        let mut tokens = Tokens::new();
        if !tokenize(handle.subject(), &mut tokens) {
            return None;
        }
        let literal = !tokens.iter().any(|t| is_pwc(t) || is_fwc(t));

        let mut trie = self.trie.write();
        let value = trie.remove(&tokens, handle.queue(), handle.id())?;
        let count = &self.count;
        count.store(count.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        bump(&self.removes, Ordering::Relaxed);
        self.invalidate(handle.subject(), literal);
        bump(&self.generation, Ordering::Release);
        drop(trie);
        Some(value)
    }

    /// [`remove`](Self::remove), with `NotFound` instead of `None`.
    pub fn try_remove(&self, handle: &SubHandle) -> Result<T, SublistError> {
        self.remove(handle).ok_or(SublistError::NotFound)
    }

    /// Drops the cached results a change to `subject` can affect. Called with the trie write-locked.
    fn invalidate(&self, subject: &[u8], literal: bool) {
        if let Some(cache) = &self.cache {
            if literal {
                cache.invalidate_literal(subject);
            } else {
                cache.invalidate_matching(subject);
            }
        }
    }

    /// Every subscription the published `subject` reaches.
    ///
    /// The subject is taken as literal: a `*` or `>` token in it is matched only by wildcard
    /// subscriptions, as nats-server does. A subject with an empty token (or a leading or trailing
    /// `.`) matches nothing. With the cache, a repeated subject is answered from a table private to
    /// the calling thread (no lock, no shared write but the `Arc` count) or else from the shared
    /// cache, and the same shared result is returned until a change can affect it.
    #[inline]
    pub fn matches(&self, subject: &[u8]) -> Arc<MatchResult<T>> {
        let Some(cache) = &self.cache else {
            return self.uncached(subject);
        };
        let hash = cache.hash(subject);
        match self.local.with(hash, subject, Arc::clone) {
            Ok(result) => result,
            Err(_) => self.shared(cache, hash, subject),
        }
    }

    /// Calls `f` with the result [`matches`](Self::matches) would return, without taking a
    /// reference count when the calling thread has it cached: the cheapest way to look at a result
    /// once. `f` may call into this sublist again.
    #[inline]
    pub fn with_matches<R>(&self, subject: &[u8], f: impl FnOnce(&MatchResult<T>) -> R) -> R {
        let Some(cache) = &self.cache else {
            return f(&self.uncached(subject));
        };
        let hash = cache.hash(subject);
        let f = move |r: &Arc<MatchResult<T>>| f(r);
        match self.local.with(hash, subject, f) {
            Ok(value) => value,
            Err(f) => f(&self.shared(cache, hash, subject)),
        }
    }

    fn uncached(&self, subject: &[u8]) -> Arc<MatchResult<T>> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut tokens = Tokens::new();
        if !tokenize(subject, &mut tokens) {
            return self.empty.clone();
        }
        let result = self.walk(&self.trie.read(), &tokens);
        if result.is_empty() {
            self.empty.clone()
        } else {
            Arc::new(result)
        }
    }

    /// The shared cache, then the trie; remembers the answer in this thread's table.
    #[inline(never)]
    fn shared(&self, cache: &Cache<T>, hash: u64, subject: &[u8]) -> Arc<MatchResult<T>> {
        let result = match cache.get(hash, subject) {
            Some(result) => result,
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let mut tokens = Tokens::new();
                if !tokenize(subject, &mut tokens) {
                    // Always empty whatever is inserted: not worth a cache entry.
                    return self.empty.clone();
                }
                // Store while still holding the read lock: a writer changes the trie and
                // invalidates the cache under the write lock, so no result computed before a
                // change lands in the cache after it.
                let trie = self.trie.read();
                let result = Arc::new(self.walk(&trie, &tokens));
                cache.insert(hash, subject, result.clone());
                drop(trie);
                result
            }
        };
        self.local.insert(hash, subject, &result);
        result
    }

    fn walk(&self, trie: &Trie<T>, tokens: &[&[u8]]) -> MatchResult<T> {
        trie.collect(tokens)
    }

    /// Whether any subscription matches the published `subject`, without building a result.
    pub fn has_interest(&self, subject: &[u8]) -> bool {
        if let Some(cache) = &self.cache {
            let hash = cache.hash(subject);
            if let Ok(nonempty) = self.local.with(hash, subject, |r| !r.is_empty()) {
                return nonempty;
            }
            if let Some(nonempty) = cache.peek(hash, subject) {
                return nonempty;
            }
        }
        let mut tokens = Tokens::new();
        tokenize(subject, &mut tokens) && self.trie.read().has_interest(&tokens)
    }

    /// A number that changes on every insert and remove.
    ///
    /// A caller keeping its own cache of results (a connection's L1, as nats-server keeps) reads the
    /// generation *before* calling [`matches`](Self::matches) and drops its cache when the
    /// generation has moved.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether no subscription is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The figures nats-server reports in `/subsz`.
    pub fn stats(&self) -> SublistStats {
        let hits = self.cache.as_ref().map_or(0, Cache::hits) + self.local.hits();
        let (cached, total_fanout, max_fanout) =
            self.cache.as_ref().map_or((0, 0, 0), Cache::fanout);
        let mut stats = SublistStats {
            num_subscriptions: u32::try_from(self.len()).unwrap_or(u32::MAX),
            num_cache: u32::try_from(cached).unwrap_or(u32::MAX),
            num_inserts: self.inserts.load(Ordering::Relaxed),
            num_removes: self.removes.load(Ordering::Relaxed),
            num_matches: hits + self.misses.load(Ordering::Relaxed),
            max_fanout,
            cache_hits: hits,
            total_fanout,
            cached_results: cached,
            ..SublistStats::default()
        };
        stats.finish();
        stats
    }

    /// Number of subjects in the result cache.
    pub fn cache_len(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }

    /// Every distinct (subject, queue) pair with the number of subscriptions on it: the interest to
    /// announce to a new cluster peer. Order unspecified.
    pub fn interest(&self) -> Vec<Interest> {
        let mut out = Vec::new();
        self.trie.read().visit(&mut |subject, node| {
            if !node.plain().is_empty() {
                out.push(Interest {
                    subject: subject.into(),
                    queue: None,
                    count: node.plain().len(),
                });
            }
            for (name, subs) in node.queues() {
                out.push(Interest {
                    subject: subject.into(),
                    queue: Some((**name).into()),
                    count: subs.len(),
                });
            }
        });
        out
    }

    /// Calls `f(subject, queue, value)` for every subscription held (for monitoring lists).
    ///
    /// `f` runs under the read lock: it must not insert into or remove from this sublist.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], Option<&[u8]>, &T)) {
        self.trie.read().visit(&mut |subject, node| {
            for value in node.plain().iter() {
                f(subject, None, value);
            }
            for (name, subs) in node.queues() {
                for value in subs.iter() {
                    f(subject, Some(name), value);
                }
            }
        });
    }
}

impl<T: Clone + Send + Sync + 'static> Default for Sublist<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + Sync> fmt::Debug for Sublist<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sublist")
            .field("len", &self.count.load(Ordering::Relaxed))
            .field("cache", &self.cache.is_some())
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
