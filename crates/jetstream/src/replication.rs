//! The seam for replicated streams (not built yet). A stream is led by one server; today that is
//! always this one, and [`Replica`] is [`Local`]: a batch is committed once it is written here.
//! A replicated stream would put its Raft group behind this trait: [`Replica::commit`] would
//! return once a quorum holds the batch, and only then would the stream acknowledge it, so a
//! PubAck keeps meaning "stored where the stream's configuration says".

use crate::store::StoreError;

/// The first and last sequence of a batch the stream has written to its own store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) first: u64,
    pub(crate) last: u64,
}

/// Where a stream's writes must be before they are acknowledged.
pub(crate) trait Replica: Send + Sync {
    /// Whether this server leads the stream (takes its publishes and serves its consumers).
    fn is_leader(&self) -> bool;

    /// Returns once `batch` is committed: written, and held by as many peers as the stream's
    /// replicas require.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;
}

/// A stream with one replica, this server's: written is committed.
pub(crate) struct Local;

impl Replica for Local {
    fn is_leader(&self) -> bool {
        true
    }

    fn commit(&self, _batch: Batch) -> Result<(), StoreError> {
        Ok(())
    }
}
