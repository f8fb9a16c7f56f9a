//! What streams hold together, against limits: the server's `max_memory_store` and
//! `max_file_store`, and an account's own `max_memory` / `max_store`. A publish that would go past
//! a limit of its storage is refused (nats-server's 10028 / 10047), and so is a stream whose
//! `max_bytes` cannot be reserved. An account's usage counts into the server's (its parent).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::error::ApiError;
use crate::api::types::Storage;

/// Bytes held and reserved, per storage, shared by every stream of the server.
#[derive(Debug)]
pub(crate) struct Usage {
    max_memory: u64,
    max_file: u64,
    memory: AtomicU64,
    file: AtomicU64,
    reserved_memory: AtomicU64,
    reserved_file: AtomicU64,
    /// The server's usage, when this is an account's.
    parent: Option<std::sync::Arc<Self>>,
}

impl Usage {
    pub(crate) fn new(max_memory: u64, max_file: u64) -> Self {
        Self {
            max_memory,
            max_file,
            memory: AtomicU64::new(0),
            file: AtomicU64::new(0),
            reserved_memory: AtomicU64::new(0),
            reserved_file: AtomicU64::new(0),
            parent: None,
        }
    }

    /// An account's usage within the server's `parent`.
    pub(crate) fn within(parent: std::sync::Arc<Self>, max_memory: u64, max_file: u64) -> Self {
        Self {
            parent: Some(parent),
            ..Self::new(max_memory, max_file)
        }
    }

    fn of(&self, storage: Storage) -> (&AtomicU64, &AtomicU64, u64) {
        match storage {
            Storage::Memory => (&self.memory, &self.reserved_memory, self.max_memory),
            Storage::File => (&self.file, &self.reserved_file, self.max_file),
        }
    }

    fn exceeded(storage: Storage) -> ApiError {
        match storage {
            Storage::Memory => ApiError::memory_resources(),
            Storage::File => ApiError::storage_resources(),
        }
    }

    /// Whether `bytes` more fit; `reserved` is what the publishing stream reserved itself (its
    /// `max_bytes`, which bounds it already).
    pub(crate) fn check(
        &self,
        storage: Storage,
        bytes: u64,
        reserved: bool,
    ) -> Result<(), ApiError> {
        if reserved {
            return Ok(());
        }
        let (used, res, max) = self.of(storage);
        let total = used
            .load(Ordering::Relaxed)
            .saturating_add(res.load(Ordering::Relaxed))
            .saturating_add(bytes);
        if total > max {
            return Err(Self::exceeded(storage));
        }
        match &self.parent {
            Some(p) => p.check(storage, bytes, false),
            None => Ok(()),
        }
    }

    /// A stream's held bytes moved from `old` to `new` (streams with `max_bytes` count in their
    /// reservation instead).
    pub(crate) fn moved(&self, storage: Storage, old: u64, new: u64) {
        let (used, _, _) = self.of(storage);
        if new >= old {
            used.fetch_add(new - old, Ordering::Relaxed);
        } else {
            used.fetch_sub(
                (old - new).min(used.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        if let Some(p) = &self.parent {
            p.moved(storage, old, new);
        }
    }

    /// Reserves a stream's `max_bytes`.
    pub(crate) fn reserve(&self, storage: Storage, bytes: u64) -> Result<(), ApiError> {
        let (used, res, max) = self.of(storage);
        if used
            .load(Ordering::Relaxed)
            .saturating_add(res.load(Ordering::Relaxed))
            .saturating_add(bytes)
            > max
        {
            return Err(Self::exceeded(storage));
        }
        if let Some(p) = &self.parent {
            p.reserve(storage, bytes)?;
        }
        res.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Gives a reservation back (the stream is deleted or its `max_bytes` changed).
    pub(crate) fn release(&self, storage: Storage, bytes: u64) {
        let (_, res, _) = self.of(storage);
        res.fetch_sub(bytes.min(res.load(Ordering::Relaxed)), Ordering::Relaxed);
        if let Some(p) = &self.parent {
            p.release(storage, bytes);
        }
    }

    /// The server's usage, for an account's.
    pub(crate) fn server(&self) -> &Self {
        self.parent.as_deref().unwrap_or(self)
    }

    /// Reserved bytes, per storage (`reserved_memory`, `reserved_storage`).
    pub(crate) fn reserved(&self) -> (u64, u64) {
        (
            self.reserved_memory.load(Ordering::Relaxed),
            self.reserved_file.load(Ordering::Relaxed),
        )
    }
}
