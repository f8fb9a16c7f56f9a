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
    pub(crate) accounts: Vec<(String, AccountLimits)>,
}

/// An account's JetStream limits (nats-server's account `jetstream { ... }`); -1 = unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountLimits {
    /// The bytes the account's memory streams may hold.
    pub max_memory: i64,
    /// The bytes the account's file streams may hold.
    pub max_storage: i64,
    /// Most streams.
    pub max_streams: i64,
    /// Most consumers.
    pub max_consumers: i64,
    /// Most `max_ack_pending` a consumer may ask for.
    pub max_ack_pending: i64,
    /// Most `max_bytes` a memory stream may ask for.
    pub memory_max_stream_bytes: i64,
    /// Most `max_bytes` a file stream may ask for.
    pub storage_max_stream_bytes: i64,
    /// Every stream must set `max_bytes`.
    pub max_bytes_required: bool,
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self {
            max_memory: -1,
            max_storage: -1,
            max_streams: -1,
            max_consumers: -1,
            max_ack_pending: -1,
            memory_max_stream_bytes: -1,
            storage_max_stream_bytes: -1,
            max_bytes_required: false,
        }
    }
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
    pub fn account(self, account: impl Into<String>) -> Self {
        self.account_with_limits(account, AccountLimits::default())
    }

    /// Enables JetStream in `account` within `limits` (nats-server's account
    /// `jetstream { max_memory max_store max_streams max_consumers ... }`).
    pub fn account_with_limits(
        mut self,
        account: impl Into<String>,
        limits: AccountLimits,
    ) -> Self {
        self.accounts.push((account.into(), limits));
        self
    }
}

impl JetStream {
    /// The bytes memory streams may hold: `max_memory`, else 75 % of the machine's memory (as
    /// nats-server; 256 MiB when it cannot be read).
    pub(crate) fn memory_limit(&self) -> u64 {
        self.max_memory.unwrap_or_else(|| {
            let total = std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| {
                    let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
                    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                    Some(kb * 1024)
                })
                .unwrap_or(256 << 20 << 2);
            total / 4 * 3
        })
    }

    /// The bytes file streams may hold: `max_file`, else 75 % of the disk space free at the
    /// store directory (as nats-server; 1 TiB when it cannot be read); 0 without a store.
    pub(crate) fn file_limit(&self) -> u64 {
        if let Some(max) = self.max_file {
            return max;
        }
        let Some(dir) = &self.store_dir else { return 0 };
        free_space(dir).map_or(1 << 40, |free| free / 4 * 3)
    }
}

/// The bytes free for an unprivileged user on the file system holding `dir`.
fn free_space(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}
