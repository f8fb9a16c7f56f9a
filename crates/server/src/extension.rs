//! Extensions: services built on the broker's public API (its in-process clients) that start with
//! it. JetStream (`starling-jetstream`) is one: it subscribes its API in each account it serves
//! and keeps its streams, all through [`crate::Client`].
//!
//! An extension starts after the broker's accounts and system services exist but before the
//! client listener accepts anyone, so what it recovers (a store on disk) is in place before the
//! first client can ask, and "Server is ready" is logged only after it.

use std::error::Error;
use std::sync::Arc;

use crate::authenticator::BoxFuture;
use crate::server::Server;

/// Why an extension could not start: its own error, boxed.
pub type ExtensionError = Box<dyn Error + Send + Sync>;

/// What a server's INFO and monitoring say it offers, filled in by its extensions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Features {
    /// JetStream is available (`"jetstream": true` in INFO).
    pub jetstream: bool,
}

/// A service that starts and stops with a [`Server`]. Given to
/// [`crate::ServerBuilder::extension`].
pub trait Extension: Send + Sync + 'static {
    /// A short name for logs and errors (`"jetstream"`).
    fn name(&self) -> &str;

    /// What the extension offers, for INFO.
    fn features(&self, features: &mut Features) {
        let _ = features;
    }

    /// Starts the extension on a server whose accounts exist and whose client listener does not
    /// accept yet. Long-running work goes to [`Server::spawn`], so shutdown waits for it.
    fn start(&self, server: Server) -> BoxFuture<'static, Result<(), ExtensionError>>;
}

/// What an extension shows in monitoring: endpoints of its own (JetStream's `/jsz`), a section
/// of `/varz`, and families in `/metrics`. Registered with [`Server::add_monitoring`]; served
/// over HTTP and to the system account's `$SYS.REQ.SERVER.PING.<X>` requests alike.
pub trait Monitoring: Send + Sync + 'static {
    /// The JSON of endpoint `path` (`"/jsz"`) for these query parameters, or `None` when the
    /// path is not this extension's. An `Err` is answered as nats-server answers a bad request.
    fn endpoint(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Option<Result<serde_json::Value, String>>;

    /// Its section of `/varz`: the key (`"jetstream"`) and the value.
    fn varz(&self) -> Option<(&'static str, serde_json::Value)> {
        None
    }

    /// Appends Prometheus text (`# HELP`, `# TYPE` and samples) to `/metrics`.
    fn metrics(&self, out: &mut String) {
        let _ = out;
    }
}

/// The extensions given to one builder.
#[derive(Clone, Default)]
pub(crate) struct Extensions(Vec<Arc<dyn Extension>>);

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|e| e.name()))
            .finish()
    }
}

impl Extensions {
    pub(crate) fn push(&mut self, e: Arc<dyn Extension>) {
        self.0.push(e);
    }

    pub(crate) fn features(&self) -> Features {
        let mut f = Features::default();
        for e in &self.0 {
            e.features(&mut f);
        }
        f
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<dyn Extension>> {
        self.0.iter()
    }
}
