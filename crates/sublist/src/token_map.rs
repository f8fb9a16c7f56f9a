//! The literal children of one trie level: token → node.
//!
//! Most levels have few children (a subject hierarchy fans out near the root and narrows towards the
//! leaves), so up to [`SMALL_MAX`] children live in a vector searched linearly (no hashing, one
//! allocation sized exactly); larger levels use a hash map.

use std::hash::BuildHasher;

use hashbrown::hash_map::RawEntryMut;
use hashbrown::HashMap;

use crate::subject::bytes_eq;

/// Most children kept in the vector form.
const SMALL_MAX: usize = 8;

pub(crate) enum TokenMap<V> {
    Small(Vec<(Box<[u8]>, V)>),
    Map(HashMap<Box<[u8]>, V>),
}

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
            Self::Small(v) => v.iter().find(|(k, _)| bytes_eq(k, tok)).map(|(_, n)| n),
            Self::Map(m) => {
                let hash = m.hasher().hash_one(tok);
                m.raw_entry()
                    .from_hash(hash, |k| bytes_eq(k, tok))
                    .map(|(_, n)| n)
            }
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, tok: &[u8]) -> Option<&mut V> {
        match self {
            Self::Small(v) => v.iter_mut().find(|(k, _)| bytes_eq(k, tok)).map(|(_, n)| n),
            Self::Map(m) => {
                let hash = m.hasher().hash_one(tok);
                match m.raw_entry_mut().from_hash(hash, |k| bytes_eq(k, tok)) {
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
            let found = v.iter().position(|(k, _)| bytes_eq(k, tok));
            if found.is_none() && v.len() >= SMALL_MAX {
                let mut map = HashMap::with_capacity(2 * SMALL_MAX);
                map.extend(v.drain(..));
                *self = Self::Map(map);
            } else if let Self::Small(v) = self {
                let i = match found {
                    Some(i) => i,
                    None => {
                        v.reserve_exact(1);
                        v.push((tok.into(), make()));
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
                    .from_hash(hash, |k| bytes_eq(k, tok))
                    .or_insert_with(|| (tok.into(), make()))
                    .1
            }
        }
    }

    pub(crate) fn remove(&mut self, tok: &[u8]) {
        match self {
            Self::Small(v) => {
                if let Some(i) = v.iter().position(|(k, _)| bytes_eq(k, tok)) {
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
            Self::Small(v) => Box::new(v.iter().map(|(k, n)| (&**k, n))),
            Self::Map(m) => Box::new(m.iter().map(|(k, n)| (&**k, n))),
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
}
