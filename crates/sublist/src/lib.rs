//! NATS subjects and the subscription matcher.
//!
//! Everything a broker needs to answer "who wants this message?", with nats-server 2.9's exact
//! rules and without any I/O, runtime or knowledge of connections.
//!
//! # Layout
//!
//! - `subject`: validation ([`is_valid_subject`], [`is_valid_literal_subject`], ...) and pattern
//!   logic ([`subject_matches`], [`subjects_collide`]) on byte-slice subjects.
//! - `trie`: the token trie (literal tokens in a `token_map`, `*` and `>` in slots of their own).
//! - `token_map`: a level's literal children: a short vector, or a hash map when there are many.
//! - `cache`: the shared, sharded, bounded cache of match results.
//! - `local`: the per-thread front of that cache (no lock, no shared write on a hit).
//! - `sublist`: [`Sublist`], the trie behind a reader-writer lock plus the cache.
//! - `result`: [`MatchResult`] and [`QueueGroup`], what a match returns; `members`: [`Members`],
//!   its list of plain subscriptions (owned, or shared with a large trie node).
//! - `handle`: [`SubHandle`], the receipt an insert returns and a remove takes.
//! - `interest`, `stats`, `error`: [`Interest`], [`SublistStats`], [`SublistError`].
#![warn(missing_docs)]

mod cache;
mod error;
mod handle;
mod interest;
mod local;
mod members;
mod result;
mod stats;
mod subject;
mod sublist;
mod token_map;
mod trie;

pub use error::SublistError;
pub use handle::SubHandle;
pub use interest::Interest;
pub use members::Members;
pub use result::{MatchResult, QueueGroup};
pub use stats::SublistStats;
pub use subject::{
    is_valid_literal_subject, is_valid_publish_subject, is_valid_queue_name, is_valid_subject,
    subject_is_literal, subject_matches, subjects_collide,
};
pub use sublist::Sublist;
