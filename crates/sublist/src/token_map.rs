//! The literal children of one trie level: token → node.
//!
//! Most levels have few children (a subject hierarchy fans out near the root and narrows towards the
//! leaves), so up to [`SMALL_MAX`] children live in a vector searched linearly (no hashing, one
//! allocation sized exactly); larger levels use a hash map.
//!
//! A level with many children is usually the last one (inboxes, per-device subjects), where each
//! child holds one subscription, so the bytes per child are bytes per subscription. Tokens are
//! therefore kept inline in the entry when short ([`Token`]), not in an allocation of their own.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::hash_map::RawEntryMut;
use hashbrown::HashMap;

use crate::subject::bytes_eq;

/// Most children kept in the vector form.
const SMALL_MAX: usize = 8;

/// Longest token stored inline: 22 bytes, so that a whole token fits in 24 bytes (the size of
/// the boxed form with its tag) and a NUID (22 characters, the unique part of an inbox) fits.
const INLINE_MAX: usize = 22;

/// A token as a key: inline up to [`INLINE_MAX`] bytes, else boxed.
///
/// A boxed `[u8]` costs its 16-byte pointer plus an allocation of at least 32 bytes (glibc's
/// smallest chunk; jemalloc's 8- or 16-byte class plus its own overhead), which for a short token
/// is more than the token. Inline, the key is 24 bytes and nothing else. Hashes and compares as
/// the `[u8]` it holds, so maps keyed by it are looked up with plain byte slices.
#[derive(Clone)]
pub(crate) enum Token {
    Inline { len: u8, bytes: [u8; INLINE_MAX] },
    Boxed(Box<[u8]>),
}

impl Token {
    fn new(tok: &[u8]) -> Self {
        if tok.len() <= INLINE_MAX {
            let mut bytes = [0; INLINE_MAX];
            bytes[..tok.len()].copy_from_slice(tok);
            Self::Inline {
                len: tok.len() as u8,
                bytes,
            }
        } else {
            Self::Boxed(tok.into())
        }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..*len as usize],
            Self::Boxed(b) => b,
        }
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        bytes_eq(self.as_bytes(), other.as_bytes())
    }
}

impl Eq for Token {}

impl Hash for Token {
    // As `[u8]` hashes, which `Borrow<[u8]>` requires (and the raw-entry lookups rely on).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for Token {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<Token>() == 24);

/// 24 bytes: every trie level holds one, and most levels are small, so the map form (a 40-byte
/// table header) is boxed. That keeps a `Level` at 40 bytes (a 48-byte glibc chunk instead of
/// 80), and costs a level with many children one pointer more on a walk.
pub(crate) enum TokenMap<V> {
    Small(Vec<(Token, V)>),
    Map(Box<HashMap<Token, V>>),
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<TokenMap<u64>>() == 24);

impl<V> TokenMap<V> {
    pub(crate) const fn new() -> Self {
        Self::Small(Vec::new())
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Self::Small(v) => v.is_empty(),
            Self::Map(m) => m.is_empty(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, tok: &[u8]) -> Option<&V> {
        match self {
            Self::Small(v) => v
                .iter()
                .find(|(k, _)| bytes_eq(k.as_bytes(), tok))
                .map(|(_, n)| n),
            Self::Map(m) => {
                let hash = m.hasher().hash_one(tok);
                m.raw_entry()
                    .from_hash(hash, |k| bytes_eq(k.as_bytes(), tok))
                    .map(|(_, n)| n)
            }
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, tok: &[u8]) -> Option<&mut V> {
        match self {
            Self::Small(v) => v
                .iter_mut()
                .find(|(k, _)| bytes_eq(k.as_bytes(), tok))
                .map(|(_, n)| n),
            Self::Map(m) => {
                let hash = m.hasher().hash_one(tok);
                match m
                    .raw_entry_mut()
                    .from_hash(hash, |k| bytes_eq(k.as_bytes(), tok))
                {
                    RawEntryMut::Occupied(e) => Some(e.into_mut()),
                    RawEntryMut::Vacant(_) => None,
                }
            }
        }
    }

    #[inline]
    pub(crate) fn get_or_insert_with(&mut self, tok: &[u8], make: impl FnOnce() -> V) -> &mut V {
        if let Self::Small(v) = self {
            // One scan: an existing child (the common case on insert) is found without a second.
            let found = v.iter().position(|(k, _)| bytes_eq(k.as_bytes(), tok));
            if found.is_none() && v.len() >= SMALL_MAX {
                let mut map = HashMap::with_capacity(2 * SMALL_MAX);
                map.extend(v.drain(..));
                *self = Self::Map(Box::new(map));
            } else if let Self::Small(v) = self {
                let i = match found {
                    Some(i) => i,
                    None => {
                        v.reserve_exact(1);
                        v.push((Token::new(tok), make()));
                        v.len() - 1
                    }
                };
                return &mut v[i].1;
            }
        }
        match self {
            Self::Small(_) => unreachable!("a small map was handled above"),
            Self::Map(m) => {
                let hash = m.hasher().hash_one(tok);
                m.raw_entry_mut()
                    .from_hash(hash, |k| bytes_eq(k.as_bytes(), tok))
                    .or_insert_with(|| (Token::new(tok), make()))
                    .1
            }
        }
    }

    pub(crate) fn remove(&mut self, tok: &[u8]) {
        match self {
            Self::Small(v) => {
                if let Some(i) = v.iter().position(|(k, _)| bytes_eq(k.as_bytes(), tok)) {
                    v.swap_remove(i);
                    v.shrink_to_fit();
                }
            }
            Self::Map(m) => {
                m.remove(tok);
                if m.len() <= SMALL_MAX / 2 {
                    let mut v = Vec::with_capacity(m.len());
                    v.extend(m.drain());
                    *self = Self::Small(v);
                } else if m.capacity() > 4 * m.len() + 16 {
                    m.shrink_to_fit();
                }
            }
        }
    }

    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &V)> + '_> {
        match self {
            Self::Small(v) => Box::new(v.iter().map(|(k, n)| (k.as_bytes(), n))),
            Self::Map(m) => Box::new(m.iter().map(|(k, n)| (k.as_bytes(), n))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_between_forms() {
        let mut m = TokenMap::new();
        let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("k{i}").into_bytes()).collect();
        for (i, k) in keys.iter().enumerate() {
            *m.get_or_insert_with(k, || 0) += i;
            assert!(matches!(m, TokenMap::Small(_)) == (i < SMALL_MAX));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(m.get(k), Some(&i));
            *m.get_mut(k).unwrap() += 1;
        }
        assert_eq!(m.iter().count(), 100);
        for k in &keys[..97] {
            m.remove(k);
        }
        assert!(matches!(m, TokenMap::Small(_)));
        assert_eq!(m.get(&keys[99]), Some(&100));
        assert_eq!(m.get(&keys[0]), None);
        for k in &keys[97..] {
            m.remove(k);
        }
        assert!(m.is_empty());
    }

    #[test]
    fn tokens_inline_and_boxed() {
        for n in [0, 1, INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1, 100] {
            let tok: Vec<u8> = (0..n as u8).collect();
            let t = Token::new(&tok);
            assert_eq!(t.as_bytes(), &tok[..]);
            assert_eq!(matches!(t, Token::Inline { .. }), n <= INLINE_MAX);
            let hasher = hashbrown::DefaultHashBuilder::default();
            assert_eq!(hasher.hash_one(&t), hasher.hash_one(&tok[..]));
        }
    }
}
