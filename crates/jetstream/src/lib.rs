//! JetStream for Starling: persistent streams on the broker's in-process clients.
//!
//! JetStream runs beside the broker, not inside it: in each account it serves, one in-process
//! client subscribes `$JS.API.>` and answers the API as nats-server does, and each stream
//! captures its subjects with a subscription of that client. Its interest stays on this server
//! ([`starling_server::Server::local_client_in`]), so in a cluster it answers only its own
//! clients.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use starling_jetstream::{JetStream, ServerBuilderExt};
//!
//! let server = starling_server::Server::builder()
//!     .listen("127.0.0.1:4222")
//!     .jetstream(JetStream::new().store_dir("/var/lib/app"))
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `config`: [`JetStream`], the `jetstream {}` block as a builder.
//! - `account`: JetStream in one account: its streams, their directories, recovery.
//! - `stream`: one stream: capture, acknowledgements, limits.
//! - `replication`: the seam for replicated streams (a stream's leader, and what must hold a
//!   batch before it is acknowledged); only the local, single-replica kind exists.
//! - `consumer`: pull consumers: requests, deliveries, acks, redelivery, reset.
//! - `priority`: priority groups of pull consumers (`overflow`, `pinned_client`,
//!   `prioritized`): which waiting request gets the next message.
//! - `api/`: the `$JS.API` requests and their JSON.
//! - `events`: advisories on `$JS.EVENT.ADVISORY.>`.
//! - `monitor`: `/jsz`, the `jetstream` section of `/varz`, `/metrics` families.
//! - [`store`]: where messages live ([`store::Store`], memory and file).
//! - `usage`: bytes held and reserved against `max_memory_store` / `max_file_store`.
//! - `source`: mirrors and sources: pulling another stream's messages through an origin
//!   consumer, resuming, their info.
//! - `transform`: subject transforms (`republish`).
//! - `unacked`: a consumer's deliveries awaiting their ack, by sequence and by deadline.
//! - `ttl`: per-message TTLs (`Nats-TTL`) and subject delete markers.
//! - `time`: nanoseconds and RFC 3339 as JetStream's JSON has them.
#![warn(missing_docs)]

mod account;
pub mod api;
mod config;
mod consumer;
mod events;
mod monitor;
mod priority;
mod replication;
mod source;
pub mod store;
mod stream;
mod time;
mod transform;
mod ttl;
mod unacked;
mod usage;

use std::sync::Arc;

use futures::StreamExt;
use starling_server::{BoxFuture, Extension, ExtensionError, Features, Server, ServerBuilder};
use tracing::{info, warn};

use account::JsAccount;
pub use config::{AccountLimits, JetStream, SyncPolicy, DEFAULT_SYNC_INTERVAL};

/// `.jetstream(..)` on the server builder.
pub trait ServerBuilderExt {
    /// Runs JetStream in the server.
    fn jetstream(self, config: JetStream) -> Self;
}

impl ServerBuilderExt for ServerBuilder {
    fn jetstream(self, config: JetStream) -> Self {
        self.extension(config)
    }
}

impl Extension for JetStream {
    fn name(&self) -> &str {
        "jetstream"
    }

    fn features(&self, features: &mut Features) {
        features.jetstream = true;
    }

    fn start(&self, server: Server) -> BoxFuture<'static, Result<(), ExtensionError>> {
        let config = self.clone();
        Box::pin(async move { start(server, config).await })
    }
}

/// Makes `<store_dir>/jetstream` at start, with nats-server's checks and words
/// (`enableJetStream`): created if missing, else it must be a directory we can write to.
fn prepare_store_dir(root: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(root)
            .map_err(|e| format!("could not create storage directory - {e}")),
        Ok(meta) if meta.is_dir() => {
            let probe = root.join(format!("_test_{}", std::process::id()));
            std::fs::write(&probe, b"")
                .map_err(|_| "storage directory is not writable".to_string())?;
            let _ = std::fs::remove_file(probe);
            Ok(())
        }
        _ => Err("storage directory is not a directory".into()),
    }
}

async fn start(server: Server, config: JetStream) -> Result<(), ExtensionError> {
    info!("Starting JetStream");
    match &config.store_dir {
        Some(dir) => {
            prepare_store_dir(&dir.join("jetstream"))?;
            info!("  Store Directory: \"{}\"", dir.display());
        }
        None => warn!(
            "JetStream has no store directory: file streams are refused (set store_dir); memory streams only"
        ),
    }
    let accounts = if config.accounts.is_empty() {
        vec![(
            starling_server::GLOBAL_ACCOUNT.to_string(),
            AccountLimits::default(),
        )]
    } else {
        config.accounts.clone()
    };
    let (max_memory, max_storage) = (config.memory_limit(), config.file_limit());
    let usage = Arc::new(usage::Usage::new(max_memory, max_storage));
    let mut started = Vec::new();
    for (name, limits) in accounts {
        let js = JsAccount::start(&server, &name, &config, usage.clone(), limits).await?;
        serve_api(&server, js.clone(), config.domain.as_deref()).await?;
        // Recovered mirrors and sources asked before the API was served.
        js.wake_sources();
        started.push(js);
    }
    info!("  Max Memory:      {}", human(max_memory));
    info!("  Max Storage:     {}", human(max_storage));
    server.add_monitoring(Arc::new(monitor::JsMonitor {
        server_id: server.server_id().to_string(),
        config,
        accounts: started,
        max_memory,
        max_storage,
    }));
    info!("JetStream started");
    Ok(())
}

/// Bytes as nats-server logs them (`1.00 GB`).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.2} {}", UNITS[i])
}

/// Subscribes the account's API and answers it, one request at a time.
async fn serve_api(
    server: &Server,
    js: Arc<JsAccount>,
    domain: Option<&str>,
) -> Result<(), ExtensionError> {
    let client = js.client().clone();
    let mut subs = vec![client.subscribe("$JS.API.>").await?];
    let domain_prefix = domain.map(|d| format!("$JS.{d}.API."));
    if let Some(prefix) = &domain_prefix {
        subs.push(client.subscribe(format!("{prefix}>")).await?);
    }
    let mut requests = futures::stream::select_all(subs);
    let at_shutdown = js.clone();
    let server2 = server.clone();
    server.spawn(async move {
        loop {
            let m = tokio::select! {
                m = requests.next() => m,
                () = server2.shutting_down() => None,
            };
            let Some(m) = m else { break };
            let subject = m.subject.as_str();
            let api = subject
                .strip_prefix("$JS.API.")
                .or_else(|| {
                    domain_prefix
                        .as_deref()
                        .and_then(|p| subject.strip_prefix(p))
                })
                .unwrap_or_default()
                .to_string();
            let reply = api::handle(&js, &api, &m).await;
            let Some(to) = m.reply.as_deref() else {
                continue;
            };
            match reply {
                api::Reply::Json(v) => {
                    let body = serde_json::to_vec(&v).unwrap_or_default();
                    let _ = client.publish(to, body).await;
                }
                api::Reply::Frame(header_len, data) => {
                    let _ = client.publish_frame(to, None, Some(header_len), data).await;
                }
                api::Reply::None => {}
            }
        }
        at_shutdown.sync_all();
    });
    Ok(())
}
