//! Parser limits.

/// Limits a parser enforces while it reads, before it buffers a body.
///
/// The defaults are nats-server's: a 4096-byte control line and a 1 MiB payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum length of a control line's arguments (the bytes after the verb and its
    /// separators, without the line end). Client connections only: route and leafnode
    /// parsers use a generous internal cap instead.
    pub max_control_line: usize,
    /// Maximum message size (`PUB`'s size, `HPUB`'s total size).
    pub max_payload: usize,
}

impl Limits {
    /// nats-server's default max control line (`MAX_CONTROL_LINE_SIZE`).
    pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
    /// nats-server's default max payload (`MAX_PAYLOAD_SIZE`, 1 MiB).
    pub const DEFAULT_MAX_PAYLOAD: usize = 1_048_576;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_control_line: Self::DEFAULT_MAX_CONTROL_LINE,
            max_payload: Self::DEFAULT_MAX_PAYLOAD,
        }
    }
}
