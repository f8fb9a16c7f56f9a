//! [`Members`]: the subscriptions of a result, owned or shared with the trie.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A list of matching subscriptions; dereferences to `[T]` (iterate it, index it, take its length).
///
/// When every plain match of a subject sits at one trie node with many subscriptions, the result
/// shares that node's list (one reference count) instead of copying it; otherwise the list is
/// built for the result.
pub struct Members<T>(Repr<T>);

enum Repr<T> {
    Owned(Vec<T>),
    Shared(Arc<[T]>),
}

impl<T> Members<T> {
    /// An empty list.
    pub const fn new() -> Self {
        Self(Repr::Owned(Vec::new()))
    }

    pub(crate) fn shared(list: Arc<[T]>) -> Self {
        Self(Repr::Shared(list))
    }

    /// The subscriptions as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[T] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Shared(a) => a,
        }
    }
}

impl<T: Clone> Members<T> {
    /// The subscriptions as a vector (a copy when shared).
    pub fn into_vec(self) -> Vec<T> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Shared(a) => a.to_vec(),
        }
    }
}

impl<T> Deref for Members<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> Default for Members<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> From<Vec<T>> for Members<T> {
    fn from(v: Vec<T>) -> Self {
        Self(Repr::Owned(v))
    }
}

impl<'a, T> IntoIterator for &'a Members<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<T: Clone> Clone for Members<T> {
    fn clone(&self) -> Self {
        match &self.0 {
            Repr::Owned(v) => Self(Repr::Owned(v.clone())),
            Repr::Shared(a) => Self(Repr::Shared(a.clone())),
        }
    }
}

impl<T: PartialEq> PartialEq for Members<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq> Eq for Members<T> {}

impl<T: PartialEq, const N: usize> PartialEq<[T; N]> for Members<T> {
    fn eq(&self, other: &[T; N]) -> bool {
        self.as_slice() == other
    }
}

impl<T: PartialEq> PartialEq<[T]> for Members<T> {
    fn eq(&self, other: &[T]) -> bool {
        self.as_slice() == other
    }
}

impl<T: PartialEq> PartialEq<Vec<T>> for Members<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: fmt::Debug> fmt::Debug for Members<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}
