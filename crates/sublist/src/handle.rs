//! The receipt an insert returns.

use std::fmt;
use std::sync::Arc;

/// Bytes before the subject in [`SubHandle`]'s packed form: the id, then the queue's length + 1
/// (0: no queue).
const HEADER: usize = 8 + 4;

/// Identifies one inserted subscription; [`Sublist::remove`](crate::Sublist::remove) takes it.
///
/// It holds the subject and queue the subscription was inserted with, so a broker need not keep them
/// twice. Cloning is cheap (one reference count).
///
/// A broker keeps one handle per subscription, so it is kept small: one shared allocation holds
/// the id, the subject and the queue (`[id: u64][queue length + 1: u32][subject][queue]`), and the
/// handle itself is a 16-byte pointer to it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubHandle {
    packed: Arc<[u8]>,
}

impl SubHandle {
    pub(crate) fn new(id: u64, subject: &[u8], queue: Option<&[u8]>) -> Self {
        let queue_len = queue.map_or(0, <[u8]>::len);
        let mut packed = Vec::with_capacity(HEADER + subject.len() + queue_len);
        packed.extend_from_slice(&id.to_le_bytes());
        // Queue names are bounded by the control line, far below u32::MAX.
        let tag = queue.map_or(0, |q| q.len() as u32 + 1);
        packed.extend_from_slice(&tag.to_le_bytes());
        packed.extend_from_slice(subject);
        if let Some(q) = queue {
            packed.extend_from_slice(q);
        }
        Self {
            packed: Arc::from(packed),
        }
    }

    /// The queue's length (`None`: no queue).
    fn queue_len(&self) -> Option<usize> {
        let mut tag = [0u8; 4];
        tag.copy_from_slice(&self.packed[8..HEADER]);
        match u32::from_le_bytes(tag) {
            0 => None,
            n => Some(n as usize - 1),
        }
    }

    /// The subject the subscription was inserted with.
    pub fn subject(&self) -> &[u8] {
        let end = self.packed.len() - self.queue_len().unwrap_or(0);
        &self.packed[HEADER..end]
    }

    /// The queue group, if it is a queue subscription.
    pub fn queue(&self) -> Option<&[u8]> {
        let len = self.queue_len()?;
        Some(&self.packed[self.packed.len() - len..])
    }

    /// A number unique to this subscription among every sublist of the process (increasing with
    /// insertion order within one sublist).
    pub fn id(&self) -> u64 {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.packed[..8]);
        u64::from_le_bytes(id)
    }
}

impl fmt::Debug for SubHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubHandle")
            .field("id", &self.id())
            .field("subject", &String::from_utf8_lossy(self.subject()))
            .field("queue", &self.queue().map(String::from_utf8_lossy))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks() {
        let h = SubHandle::new(7, b"foo.*.bar", Some(b"workers"));
        assert_eq!(h.id(), 7);
        assert_eq!(h.subject(), b"foo.*.bar");
        assert_eq!(h.queue(), Some(&b"workers"[..]));
        let h = SubHandle::new(u64::MAX, b">", None);
        assert_eq!(h.id(), u64::MAX);
        assert_eq!(h.subject(), b">");
        assert_eq!(h.queue(), None);
        assert_eq!(size_of::<SubHandle>(), 16);
    }
}
