//! JetStream's configuration, as nats-server's `jetstream {}` block has it.

use std::path::PathBuf;
use std::time::Duration;

/// nats-server's default `sync_interval`: two minutes.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(120);

/// When file streams make their writes durable (`sync_interval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every publish is written to the operating system before its acknowledgement (it survives
    /// the process being killed) and fsynced on this interval (a power loss may lose up to one
    /// interval of acknowledged messages).
    Interval(Duration),
    /// Every batch of publishes is fsynced before any of them is acknowledged (`always`): an
    /// acknowledged message survives a power loss. Publishes read together share one fsync.
    Always,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self::Interval(DEFAULT_SYNC_INTERVAL)
    }
}

/// JetStream for a server: give it to `ServerBuilder::extension`, or use
/// [`crate::ServerBuilderExt::jetstream`].
///
/// ```no_run
/// # async fn run() -> Result<(), starling_server::StartError> {
/// use starling_jetstream::{JetStream, ServerBuilderExt};
///
/// let server = starling_server::Server::builder()
///     .jetstream(JetStream::new().store_dir("/var/lib/app/jetstream"))
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct JetStream {
    pub(crate) store_dir: Option<PathBuf>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) max_file: Option<u64>,
    pub(crate) sync: SyncPolicy,
    pub(crate) domain: Option<String>,
    pub(crate) accounts: Vec<String>,
}

impl JetStream {
    /// JetStream with nats-server's defaults and no store directory: memory streams only until
    /// [`Self::store_dir`] is set (a file stream is then refused, and nothing touches the disk).
    pub fn new() -> Self {
        Self::default()
    }

    /// Where file streams live (`store_dir`; streams go under `<dir>/jetstream/<account>`).
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store_dir = Some(dir.into());
        self
    }

    /// The most bytes memory streams may hold together (`max_memory_store`).
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// The most bytes file streams may hold together (`max_file_store`).
    pub fn max_file(mut self, bytes: u64) -> Self {
        self.max_file = Some(bytes);
        self
    }

    /// When writes are made durable (`sync_interval`).
    pub fn sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }

    /// The JetStream domain (`domain`): PubAcks and `$JS.API.INFO` name it, and the API also
    /// answers on `$JS.<domain>.API.>`.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Enables JetStream in `account` (nats-server's account `jetstream: enabled`). Without any,
    /// JetStream serves the global account `$G`.
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.accounts.push(account.into());
        self
    }
}
