//! The receipt an insert returns.

use std::sync::Arc;

/// Identifies one inserted subscription; [`Sublist::remove`](crate::Sublist::remove) takes it.
///
/// It holds the subject and queue the subscription was inserted with, so a broker need not keep them
/// twice. Cloning is cheap (two reference counts).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubHandle {
    pub(crate) id: u64,
    pub(crate) subject: Arc<[u8]>,
    pub(crate) queue: Option<Arc<[u8]>>,
}

impl SubHandle {
    /// The subject the subscription was inserted with.
    pub fn subject(&self) -> &[u8] {
        &self.subject
    }

    /// The queue group, if it is a queue subscription.
    pub fn queue(&self) -> Option<&[u8]> {
        self.queue.as_deref()
    }

    /// A number unique to this subscription among every sublist of the process (increasing with
    /// insertion order within one sublist).
    pub fn id(&self) -> u64 {
        self.id
    }
}
