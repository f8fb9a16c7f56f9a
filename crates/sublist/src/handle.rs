//! The receipt an insert returns.

use std::fmt;

/// Longest subject + queue kept inside the handle: what fits beside the id in 32 bytes.
const INLINE_MAX: usize = 21;

/// Identifies one inserted subscription; [`Sublist::remove`](crate::Sublist::remove) takes it.
///
/// It holds the subject and queue the subscription was inserted with, so a broker need not keep them
/// twice. Cloning is cheap (a copy, or one small allocation for a long subject).
///
/// A broker keeps one handle per subscription (in a table beside the subscription), so it is kept
/// small: 32 bytes holding the id and, when they fit in 21 bytes, the subject and queue themselves.
/// Only longer ones take an allocation. (An `Arc<[u8]>` of the same bytes, as this used to be,
/// cost a 16-byte pointer plus 16 bytes of counts, a 12-byte header and the subject: for a
/// 16-byte subject a 64-byte glibc chunk, on top of the table slot.)
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubHandle {
    id: u64,
    repr: Repr,
}

/// The subject followed by the queue, and the queue's length + 1 (0: no queue).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// `bytes[..len]`; the rest is zero (so derived equality and hashing see only the content).
    Inline {
        len: u8,
        queue: u8,
        bytes: [u8; INLINE_MAX],
    },
    Boxed {
        queue: u32,
        bytes: Box<[u8]>,
    },
}

impl SubHandle {
    pub(crate) fn new(id: u64, subject: &[u8], queue: Option<&[u8]>) -> Self {
        let queue_len = queue.map_or(0, <[u8]>::len);
        let len = subject.len() + queue_len;
        let repr = if len <= INLINE_MAX {
            let mut bytes = [0; INLINE_MAX];
            bytes[..subject.len()].copy_from_slice(subject);
            bytes[subject.len()..len].copy_from_slice(queue.unwrap_or_default());
            Repr::Inline {
                len: len as u8,
                queue: queue.map_or(0, |q| q.len() as u8 + 1),
                bytes,
            }
        } else {
            let mut bytes = Vec::with_capacity(len);
            bytes.extend_from_slice(subject);
            bytes.extend_from_slice(queue.unwrap_or_default());
            Repr::Boxed {
                // Queue names are bounded by the control line, far below u32::MAX.
                queue: queue.map_or(0, |q| q.len() as u32 + 1),
                bytes: bytes.into_boxed_slice(),
            }
        };
        Self { id, repr }
    }

    /// The subject followed by the queue, and the queue's length (`None`: no queue).
    #[inline]
    fn parts(&self) -> (&[u8], Option<usize>) {
        let (bytes, tag) = match &self.repr {
            Repr::Inline { len, queue, bytes } => (&bytes[..*len as usize], u32::from(*queue)),
            Repr::Boxed { queue, bytes } => (&bytes[..], *queue),
        };
        (bytes, tag.checked_sub(1).map(|n| n as usize))
    }

    /// The subject the subscription was inserted with.
    pub fn subject(&self) -> &[u8] {
        let (bytes, queue) = self.parts();
        &bytes[..bytes.len() - queue.unwrap_or(0)]
    }

    /// The queue group, if it is a queue subscription.
    pub fn queue(&self) -> Option<&[u8]> {
        let (bytes, queue) = self.parts();
        Some(&bytes[bytes.len() - queue?..])
    }

    /// A number unique to this subscription among every sublist of the process (increasing with
    /// insertion order within one sublist).
    pub fn id(&self) -> u64 {
        self.id
    }
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<SubHandle>() == 32);

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
        for n in [0, 1, INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1, 300] {
            let subject: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let subject = [&b"s."[..], &subject].concat();
            for queue in [None, Some(&b"q"[..]), Some(&b"workers"[..])] {
                let h = SubHandle::new(n as u64, &subject, queue);
                assert_eq!(h.subject(), &subject[..]);
                assert_eq!(h.queue(), queue);
                assert_eq!(h.id(), n as u64);
                assert_eq!(h.clone(), h);
            }
        }
    }
}
