//! JetStream in one account: its streams, where they live on disk, and the in-process client
//! everything of the account's JetStream goes through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use starling_server::{Client, Server};
use tracing::{info, warn};

use crate::api::error::ApiError;
use crate::api::types::{Storage, StreamConfig};
use crate::config::{AccountLimits, JetStream, SyncPolicy};
use crate::store::file::{FileStore, FileStoreConfig};
use crate::store::{MemoryStore, Store};
use crate::stream::Stream;
use crate::time::now_ns;
use crate::usage::Usage;

/// What a file stream keeps beside its messages: `meta.json`.
#[derive(Serialize, Deserialize)]
struct Meta {
    config: StreamConfig,
    created: i64,
}

/// JetStream in one account.
pub(crate) struct JsAccount {
    name: String,
    server: Server,
    /// The account's JetStream client: API replies, capture, deliveries. Its interest stays on
    /// this server.
    client: Client,
    /// `<store_dir>/jetstream/<account>/streams`, when file streams are possible.
    dir: Option<PathBuf>,
    streams: Mutex<BTreeMap<String, Arc<Stream>>>,
    config: JetStream,
    /// The account's usage (within the server's).
    usage: Arc<Usage>,
    limits: AccountLimits,
    /// API requests served and refused (`$JS.API.INFO`'s `api`).
    pub(crate) api_total: std::sync::atomic::AtomicU64,
    pub(crate) api_errors: std::sync::atomic::AtomicU64,
    /// Notified when a stream is created: mirrors and sources waiting for it try again.
    created: Arc<tokio::sync::Notify>,
}

impl JsAccount {
    /// JetStream in `account`, with the streams found on disk recovered.
    pub(crate) async fn start(
        server: &Server,
        account: &str,
        config: &JetStream,
        server_usage: Arc<Usage>,
        limits: AccountLimits,
    ) -> Result<Arc<Self>, starling_server::ExtensionError> {
        let cap = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
        let usage = Arc::new(Usage::within(
            server_usage,
            cap(limits.max_memory),
            cap(limits.max_storage),
        ));
        let client = server
            .local_client_in(account)
            .map_err(|e| format!("account {account:?}: {e}"))?;
        let dir = config
            .store_dir
            .as_ref()
            .map(|d| d.join("jetstream").join(account).join("streams"));
        let me = Arc::new(Self {
            name: account.to_string(),
            server: server.clone(),
            client,
            dir,
            streams: Mutex::new(BTreeMap::new()),
            config: config.clone(),
            usage,
            limits,
            api_total: Default::default(),
            api_errors: Default::default(),
            created: Default::default(),
        });
        me.recover().await?;
        Ok(me)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn usage(&self) -> &Usage {
        &self.usage
    }

    pub(crate) fn limits(&self) -> &AccountLimits {
        &self.limits
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn server(&self) -> &Server {
        &self.server
    }

    pub(crate) fn domain(&self) -> Option<&str> {
        self.config.domain.as_deref()
    }

    pub(crate) fn stream(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams.lock().get(name).cloned()
    }

    pub(crate) fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams.lock().values().cloned().collect()
    }

    /// Opens every stream found under the account's directory.
    async fn recover(&self) -> Result<(), starling_server::ExtensionError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("reading {}: {e}", dir.display()).into()),
        };
        for entry in entries {
            let path = entry?.path();
            let meta_path = path.join("meta.json");
            let meta: Meta = match std::fs::read(&meta_path) {
                Ok(b) => serde_json::from_slice(&b)
                    .map_err(|e| format!("{}: {e}", meta_path.display()))?,
                // A stream whose creation did not finish: nothing was acknowledged in it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: {e}", meta_path.display()).into()),
            };
            let started = std::time::Instant::now();
            let (store, recovery) = FileStore::open(FileStoreConfig::new(path.join("msgs")))?;
            info!(
                account = %self.name,
                stream = %meta.config.name,
                msgs = recovery.msgs,
                last_seq = recovery.last_seq,
                "  Restored {} messages for stream '{} > {}' in {:?}",
                recovery.msgs,
                self.name,
                meta.config.name,
                started.elapsed()
            );
            if recovery.truncated_bytes > 0 || !recovery.lost.is_empty() {
                warn!(
                    stream = %meta.config.name,
                    "stream store was damaged: {} bytes truncated, sequences lost: {:?}",
                    recovery.truncated_bytes,
                    recovery.lost
                );
            }
            let stream = Stream::new(
                meta.config,
                meta.created,
                Box::new(store),
                Some(path.clone()),
                self.config.sync,
                self.config.domain.clone(),
                self.usage.clone(),
            );
            if stream.config().max_bytes > 0 {
                // What was reserved before the restart is reserved again, even past the limit.
                let c = stream.config();
                let _ = self.usage.reserve(c.storage, c.max_bytes as u64);
            }
            stream.expire()?;
            self.run(&stream).await.map_err(|e| e.description)?;
            self.recover_consumers(&stream, &path).await?;
            crate::source::start(&stream, &self.server, &self.client, &self.created);
            self.created.notify_waiters();
        }
        Ok(())
    }

    /// Opens the durable consumers a stream kept on disk.
    async fn recover_consumers(
        &self,
        stream: &Arc<Stream>,
        dir: &Path,
    ) -> Result<(), starling_server::ExtensionError> {
        let entries = match std::fs::read_dir(dir.join("obs")) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", dir.display()).into()),
        };
        for entry in entries {
            let path = entry?.path();
            let meta: ConsumerMeta = match std::fs::read(path.join("meta.json")) {
                Ok(b) => {
                    serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: {e}", path.display()).into()),
            };
            let name = meta.config.durable_name.clone().unwrap_or_default();
            let consumer = crate::consumer::Consumer::new(
                stream,
                name,
                meta.config,
                self.server.clone(),
                self.name.clone(),
                meta.created,
            )
            .map_err(|e| e.description)?;
            match std::fs::read(path.join("state.json")) {
                Ok(b) => consumer.restore(
                    serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?,
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display()).into()),
            }
            consumer
                .start(&self.server, &self.client)
                .await
                .map_err(|e| e.description)?;
            stream.add_consumer(consumer);
        }
        Ok(())
    }

    /// Creates a stream, or returns the existing one when its configuration is the same.
    /// `Ok((stream, created))`.
    pub(crate) async fn create_stream(
        &self,
        config: StreamConfig,
    ) -> Result<(Arc<Stream>, bool), ApiError> {
        config.validate()?;
        self.check_origins(&config)?;
        let mut config = config;
        self.inherit_mirror_direct(&mut config);
        if let Some(existing) = self.stream(&config.name) {
            if existing.config() == config {
                return Ok((existing, false));
            }
            return Err(ApiError::stream_name_exists());
        }
        self.check_overlap(&config, None)?;
        self.check_limits(&config)?;
        if config.max_bytes > 0 {
            self.usage
                .reserve(config.storage, config.max_bytes as u64)?;
        }
        let created = now_ns();
        let (store, dir): (Box<dyn Store>, _) = match config.storage {
            Storage::Memory => (Box::new(MemoryStore::new()), None),
            Storage::File => {
                let Some(root) = &self.dir else {
                    return Err(ApiError::storage_resources());
                };
                let dir = root.join(&config.name);
                write_meta(
                    &dir,
                    &Meta {
                        config: config.clone(),
                        created,
                    },
                )
                .map_err(ApiError::internal)?;
                let (store, _) = FileStore::open(FileStoreConfig::new(dir.join("msgs")))
                    .map_err(ApiError::internal)?;
                (Box::new(store), Some(dir))
            }
        };
        let mut store = store;
        // `first_seq`: the stream starts there.
        if let Some(first) = config
            .extra
            .get("first_seq")
            .and_then(serde_json::Value::as_u64)
        {
            if first > 1 {
                store.compact(first).map_err(ApiError::internal)?;
            }
        }
        let stream = Stream::new(
            config,
            created,
            store,
            dir,
            self.config.sync,
            self.config.domain.clone(),
            self.usage.clone(),
        );
        self.run(&stream).await?;
        crate::source::start(&stream, &self.server, &self.client, &self.created);
        self.created.notify_waiters();
        Ok((stream, true))
    }

    /// A mirror or source must take the largest message its origin (when in this account)
    /// may hold (nats-server's 10030 and 10046).
    fn check_origins(&self, config: &StreamConfig) -> Result<(), ApiError> {
        if config.max_msg_size <= 0 {
            return Ok(());
        }
        let too_small = |spec: &crate::source::SourceSpec| {
            spec.external.is_none()
                && self.stream(&spec.name).is_some_and(|o| {
                    let theirs = o.config().max_msg_size;
                    theirs > 0 && config.max_msg_size < theirs
                })
        };
        if crate::source::mirror_of(config).is_some_and(|m| too_small(&m)) {
            return Err(ApiError::new(
                400,
                10030,
                "stream mirror must have max message size >= source",
            ));
        }
        if crate::source::sources_of(config).iter().any(too_small) {
            return Err(ApiError::new(
                400,
                10046,
                "stream source must have max message size >= target",
            ));
        }
        Ok(())
    }

    /// A mirror of a stream in this account serves DIRECT.GET as its origin does (nats-server
    /// sets `mirror_direct` from the origin's `allow_direct`).
    fn inherit_mirror_direct(&self, config: &mut StreamConfig) {
        let Some(m) = crate::source::mirror_of(config) else {
            return;
        };
        if m.external.is_some() {
            return;
        }
        if let Some(origin) = self.stream(&m.name) {
            config.extra.insert(
                "mirror_direct".into(),
                serde_json::Value::Bool(origin.config().allow_direct),
            );
        }
    }

    /// Registers a stream and starts its capture and timers.
    async fn run(&self, stream: &Arc<Stream>) -> Result<(), ApiError> {
        stream.start_capture(&self.server, &self.client).await?;
        self.streams
            .lock()
            .insert(stream.name().to_string(), stream.clone());
        let weak = Arc::downgrade(stream);
        let server = self.server.clone();
        let sync = self.config.sync;
        self.server.spawn(async move {
            maintain(weak, server, sync).await;
        });
        Ok(())
    }

    /// Applies a new configuration to a stream (STREAM.UPDATE).
    pub(crate) async fn update_stream(
        &self,
        config: StreamConfig,
    ) -> Result<Arc<Stream>, ApiError> {
        config.validate()?;
        let stream = self
            .stream(&config.name)
            .ok_or_else(ApiError::stream_not_found)?;
        self.check_origins(&config)?;
        let old = stream.config();
        // A mirror stays what it is; removing it (promoting the mirror) is allowed.
        let mirror = crate::source::mirror_of(&config);
        if mirror.is_some() && mirror != crate::source::mirror_of(&old) {
            return Err(ApiError::new(
                400,
                10055,
                "stream mirror configuration can not be updated",
            ));
        }
        let resource_links = mirror.is_some() != crate::source::mirror_of(&old).is_some()
            || crate::source::sources_of(&config) != crate::source::sources_of(&old);
        if old.storage != config.storage {
            return Err(ApiError::update_failed(
                "stream configuration update can not change storage type",
            ));
        }
        if old.retention != config.retention {
            return Err(ApiError::update_failed(
                "stream configuration update can not change retention policy",
            ));
        }
        if old.allow_msg_ttl && !config.allow_msg_ttl {
            return Err(ApiError::invalid_config(
                "message TTL status can not be disabled",
            ));
        }
        if old.sealed && !config.sealed {
            return Err(ApiError::update_failed(
                "stream configuration update can not unseal a sealed stream",
            ));
        }
        if old.deny_delete && !config.deny_delete {
            return Err(ApiError::update_failed(
                "stream configuration update can not cancel deny message deletes",
            ));
        }
        if old.deny_purge && !config.deny_purge {
            return Err(ApiError::update_failed(
                "stream configuration update can not cancel deny purge",
            ));
        }
        self.check_overlap(&config, Some(&config.name))?;
        // New consumer limits may not be below what an existing consumer has.
        let limit = config
            .extra
            .get("consumer_limits")
            .and_then(|l| l.get("max_ack_pending"))
            .and_then(serde_json::Value::as_i64)
            .filter(|l| *l > 0);
        if let Some(limit) = limit {
            let over: Vec<String> = stream
                .consumers()
                .iter()
                .filter(|c| c.config().config.max_ack_pending > limit)
                .map(|c| c.name().to_string())
                .collect();
            if !over.is_empty() {
                return Err(ApiError::new(
                    500,
                    10069,
                    format!("change to limits violates consumers: {}", over.join(", ")),
                ));
            }
        }
        if old.max_bytes != config.max_bytes {
            if old.max_bytes > 0 {
                self.usage.release(old.storage, old.max_bytes as u64);
            }
            if config.max_bytes > 0 {
                if let Err(e) = self.usage.reserve(config.storage, config.max_bytes as u64) {
                    if old.max_bytes > 0 {
                        let _ = self.usage.reserve(old.storage, old.max_bytes as u64);
                    }
                    return Err(e);
                }
            }
        }
        if let Some(dir) = stream.dir() {
            write_meta(
                dir,
                &Meta {
                    config: config.clone(),
                    created: stream.created(),
                },
            )
            .map_err(ApiError::internal)?;
        }
        let resubscribe = old.subjects != config.subjects;
        stream.set_config(config);
        if resubscribe {
            stream.stop_capture();
            stream.start_capture(&self.server, &self.client).await?;
        }
        if resource_links {
            crate::source::start(&stream, &self.server, &self.client, &self.created);
        }
        stream.expire().map_err(ApiError::internal)?;
        stream.recount();
        Ok(stream)
    }

    /// Deletes a stream and everything it holds.
    pub(crate) fn delete_stream(&self, name: &str) -> Result<(), ApiError> {
        let stream = self
            .streams
            .lock()
            .remove(name)
            .ok_or_else(ApiError::stream_not_found)?;
        stream.stop_capture();
        crate::source::stop(&stream);
        for c in stream.consumers() {
            stream.remove_consumer(c.name());
        }
        if let Some(dir) = stream.dir() {
            // The metadata first: a crash midway leaves no half-deleted stream to recover.
            let _ = std::fs::remove_file(dir.join("meta.json"));
        }
        stream.store().delete().map_err(ApiError::internal)?;
        stream.recount();
        let c = stream.config();
        if c.max_bytes > 0 {
            self.usage.release(c.storage, c.max_bytes as u64);
        }
        if let Some(dir) = stream.dir() {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    /// The account's limits on a new stream (nats-server's codes).
    fn check_limits(&self, config: &StreamConfig) -> Result<(), ApiError> {
        let l = &self.limits;
        if l.max_streams >= 0 && self.streams.lock().len() as i64 >= l.max_streams {
            return Err(ApiError::new(
                400,
                10027,
                "maximum number of streams reached",
            ));
        }
        if l.max_bytes_required && config.max_bytes <= 0 {
            return Err(ApiError::new(
                400,
                10113,
                "account requires a stream config to have max bytes set",
            ));
        }
        let per_stream = match config.storage {
            Storage::Memory => l.memory_max_stream_bytes,
            Storage::File => l.storage_max_stream_bytes,
        };
        if per_stream > 0 && config.max_bytes > per_stream {
            return Err(ApiError::new(
                400,
                10122,
                "stream max bytes exceeds account limit max stream bytes",
            ));
        }
        Ok(())
    }

    fn check_overlap(&self, config: &StreamConfig, except: Option<&str>) -> Result<(), ApiError> {
        for other in self.streams() {
            if Some(other.name()) == except {
                continue;
            }
            let theirs = other.config().subjects;
            for a in &config.subjects {
                for b in &theirs {
                    if starling_sublist::subjects_collide(a.as_bytes(), b.as_bytes()) {
                        return Err(ApiError::subjects_overlap());
                    }
                }
            }
        }
        Ok(())
    }

    /// Has waiting mirrors and sources try again now (the API they ask through is up).
    pub(crate) fn wake_sources(&self) {
        self.created.notify_waiters();
    }

    /// Makes every stream's writes durable (shutdown).
    pub(crate) fn sync_all(&self) {
        for s in self.streams() {
            if let Err(e) = s.sync() {
                warn!(stream = %s.name(), "sync at shutdown failed: {e}");
            }
        }
    }
}

/// A stream's timers: `max_age` expiry once a second, and the `sync_interval` fsync.
async fn maintain(stream: std::sync::Weak<Stream>, server: Server, sync: SyncPolicy) {
    let sync_every = match sync {
        SyncPolicy::Interval(d) => d.max(Duration::from_millis(10)),
        SyncPolicy::Always => Duration::from_secs(3600),
    };
    let mut fsync = tokio::time::interval(sync_every);
    fsync.tick().await;
    // The deadline the next expiry is for, and the one the last expiry was for.
    let mut expired_at = None;
    loop {
        // Expiry runs when the oldest message's `max_age` or the earliest TTL comes due, and
        // at least every second (a TTL published meanwhile may be due sooner).
        // A deadline that expiry left where it was (a `Nats-TTL: never` message is the oldest)
        // waits the second too, rather than spinning.
        let wake = {
            let Some(s) = stream.upgrade() else { return };
            let soon = tokio::time::Instant::now() + Duration::from_secs(1);
            let planned = s.next_expiry();
            let wake = planned
                .filter(|t| Some(*t) != expired_at)
                .map(|t| {
                    let wait = t.saturating_sub(now_ns()).max(0) as u64;
                    tokio::time::Instant::now() + Duration::from_nanos(wait)
                })
                .map_or(soon, |t| t.min(soon));
            (wake, planned)
        };
        let (wake, planned) = wake;
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {
                // Woken by the one-second cap before the deadline: not stuck on it.
                expired_at = planned.filter(|t| *t <= now_ns());
                let Some(s) = stream.upgrade() else { return };
                if let Err(e) = s.expire() {
                    warn!(stream = %s.name(), "expiry failed: {e}");
                }
            }
            _ = fsync.tick() => {
                let Some(s) = stream.upgrade() else { return };
                let s2 = s.clone();
                let _ = tokio::task::spawn_blocking(move || s2.sync()).await;
            }
            () = server.shutting_down() => {
                if let Some(s) = stream.upgrade() {
                    let _ = tokio::task::spawn_blocking(move || s.sync()).await;
                }
                return;
            }
        }
    }
}

/// Writes a stream's `meta.json` durably.
fn write_meta(dir: &Path, meta: &Meta) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    write_durably(dir, "meta.json", &body, true)
}

/// Replaces `dir/name` with `body` all at once: written to a temporary file, renamed over the
/// old one, so a crash leaves the old or the new, never half of either. With `fsync`, also
/// durable against a power loss.
pub(crate) fn write_durably(
    dir: &Path,
    name: &str,
    body: &[u8],
    fsync: bool,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        if fsync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if fsync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What a durable consumer keeps beside its state: `obs/<name>/meta.json`.
#[derive(Serialize, Deserialize)]
pub(crate) struct ConsumerMeta {
    pub(crate) config: crate::consumer::ConsumerConfig,
    pub(crate) created: i64,
}
