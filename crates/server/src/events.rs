//! Server events an embedder can watch: `server.events()`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::broadcast;

use crate::conn::{ClosedReason, ConnKind};

/// Where the broker announces its events: a broadcast channel, so that watching costs nothing
/// when nobody watches and a slow watcher skips events instead of holding the broker back.
pub(crate) struct Events {
    tx: broadcast::Sender<Event>,
}

impl Events {
    pub(crate) fn new() -> Self {
        Self {
            tx: broadcast::channel(4096).0,
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        // No receivers is fine: events are optional.
        let _ = self.tx.send(event);
    }

    /// A stream of the events from now on.
    pub(crate) fn subscribe(&self) -> EventStream {
        EventStream::new(self.tx.subscribe())
    }
}

/// Something that happened in the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A client connection was accepted (socket) or created (in-process).
    ClientConnected {
        /// The connection id (`cid` in monitoring).
        cid: u64,
        /// Socket or in-process.
        kind: ConnKind,
        /// The peer address, for socket clients.
        addr: Option<SocketAddr>,
    },
    /// A client connection ended.
    ClientClosed {
        /// The connection id.
        cid: u64,
        /// Why it ended, as nats-server words it in `/connz?state=closed`.
        reason: ClosedReason,
    },
    /// A client was authenticated (at its CONNECT).
    ClientAuthorized {
        /// The connection id.
        cid: u64,
        /// The account it was bound to.
        account: String,
        /// Its user name, if it has one.
        user: Option<String>,
    },
    /// A client's credentials were refused (it is closed with `Authorization Violation`).
    AuthorizationFailed {
        /// The connection id.
        cid: u64,
        /// The peer address.
        addr: Option<SocketAddr>,
        /// Why: an authenticator's reason, or what the configured users found wrong.
        reason: String,
    },
    /// A client could not keep up and was cut off.
    SlowConsumer {
        /// The connection id.
        cid: u64,
    },
    /// A route to a cluster peer was established.
    PeerJoined {
        /// The peer's server id.
        server_id: String,
        /// The peer's server name.
        server_name: String,
    },
    /// A route to a cluster peer ended.
    PeerLeft {
        /// The peer's server id.
        server_id: String,
        /// The peer's server name.
        server_name: String,
    },
    /// A leafnode connection completed its handshake: a hub this server joined, or a leaf
    /// that joined this server.
    LeafnodeConnected {
        /// The connection id (`id` in `/leafz`).
        cid: u64,
        /// The peer's server name.
        server_name: String,
        /// The local account the connection is bound to.
        account: String,
        /// This server dialled it (the peer is its hub).
        solicited: bool,
    },
    /// A registered leafnode connection ended.
    LeafnodeClosed {
        /// The connection id.
        cid: u64,
        /// The peer's server name.
        server_name: String,
        /// Why it ended.
        reason: ClosedReason,
        /// It closed a loop of leafnodes (either side said `Loop detected`); a dialler waits
        /// [`crate::LOOP_RECONNECT_DELAY`] before trying again.
        loop_detected: bool,
    },
    /// The server entered lame-duck mode.
    LameDuck,
    /// The server stopped.
    Shutdown,
}

/// A stream of [`Event`]s, from the moment it was created.
///
/// Events are buffered per stream; a stream that falls more than a few thousand events behind
/// skips the oldest ones rather than holding the broker back.
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Event> + Send>>,
}

impl EventStream {
    fn new(rx: broadcast::Receiver<Event>) -> Self {
        let inner = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((ev, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl Stream for EventStream {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStream")
    }
}
