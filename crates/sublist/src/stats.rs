//! Counters for monitoring (`/subsz`).

/// A snapshot of a sublist's figures, with the fields and meaning of nats-server's `/subsz`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SublistStats {
    /// Subscriptions currently held (`num_subscriptions`).
    pub num_subscriptions: u32,
    /// Subjects currently in the match cache (`num_cache`).
    pub num_cache: u32,
    /// Inserts since creation (`num_inserts`).
    pub num_inserts: u64,
    /// Removes since creation (`num_removes`).
    pub num_removes: u64,
    /// Calls to `matches` since creation (`num_matches`).
    pub num_matches: u64,
    /// Share of `num_matches` answered from the cache, 0.0 to 1.0 (`cache_hit_rate`).
    pub cache_hit_rate: f64,
    /// Largest fan-out (plain subscriptions plus queue groups) among cached results (`max_fanout`).
    pub max_fanout: u32,
    /// Mean fan-out among cached results (`avg_fanout`).
    pub avg_fanout: f64,
    pub(crate) cache_hits: u64,
    pub(crate) total_fanout: u64,
    pub(crate) cached_results: u64,
}

impl SublistStats {
    /// Calls to `matches` answered from the cache (the numerator of `cache_hit_rate`).
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits
    }

    /// Adds another sublist's figures to these (for a server-wide view over several accounts),
    /// recomputing the rates and means from the underlying totals as nats-server does.
    pub fn merge(&mut self, other: &Self) {
        self.num_subscriptions += other.num_subscriptions;
        self.num_cache += other.num_cache;
        self.num_inserts += other.num_inserts;
        self.num_removes += other.num_removes;
        self.num_matches += other.num_matches;
        self.cache_hits += other.cache_hits;
        self.max_fanout = self.max_fanout.max(other.max_fanout);
        self.total_fanout += other.total_fanout;
        self.cached_results += other.cached_results;
        self.finish();
    }

    /// Computes the derived figures from the totals.
    pub(crate) fn finish(&mut self) {
        self.cache_hit_rate = if self.num_matches > 0 {
            self.cache_hits as f64 / self.num_matches as f64
        } else {
            0.0
        };
        self.avg_fanout = if self.total_fanout > 0 {
            self.total_fanout as f64 / self.cached_results as f64
        } else {
            0.0
        };
    }
}
