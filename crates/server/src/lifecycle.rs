//! The broker's lifecycle: its tasks, lame duck, shutdown.
//!
//! As mini-redis does it: every task the broker starts is spawned on one task tracker, and
//! shutdown fans out through cancellation tokens that every connection's own tokens are children
//! of; `wait()` returns once the last task has ended.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where the broker is in its life, and the tasks it runs.
pub(crate) struct Lifecycle {
    /// Cancelled when the server shuts down: every connection is a child of it.
    shutdown: CancellationToken,
    /// Cancelled when shutdown gives up on draining: every connection drops its output.
    kill_all: CancellationToken,
    /// Cancelled to stop accepting new connections (lame duck, shutdown).
    stop_accepting: CancellationToken,
    tracker: TaskTracker,
    lame_duck: AtomicBool,
    /// Set as shutdown starts, before `shutdown` is cancelled: connections read it to know
    /// they are closing without locking their token (`CancellationToken::is_cancelled` takes
    /// a mutex, and the in-process hot path asks twice per message).
    down: Arc<AtomicBool>,
}

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Self {
            shutdown: CancellationToken::new(),
            kill_all: CancellationToken::new(),
            stop_accepting: CancellationToken::new(),
            tracker: TaskTracker::new(),
            lame_duck: AtomicBool::new(false),
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs `task` as one of the broker's tasks (shutdown waits for it).
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// The token a connection's `closing` token descends from.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The token a connection's `kill` token descends from.
    pub(crate) fn kill_token(&self) -> &CancellationToken {
        &self.kill_all
    }

    /// Cancelled when listeners must stop accepting.
    pub(crate) fn stop_accepting(&self) -> &CancellationToken {
        &self.stop_accepting
    }

    /// The flag set as shutdown starts (see `down`).
    pub(crate) fn down_flag(&self) -> &Arc<AtomicBool> {
        &self.down
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Completes when shutdown starts.
    pub(crate) async fn shutting_down(&self) {
        self.shutdown.cancelled().await;
    }

    /// Enters lame duck (stops accepting). Returns false if it already was.
    pub(crate) fn enter_lame_duck(&self) -> bool {
        if self.lame_duck.swap(true, Ordering::Relaxed) {
            return false;
        }
        self.stop_accepting.cancel();
        true
    }

    pub(crate) fn is_lame_duck(&self) -> bool {
        self.lame_duck.load(Ordering::Relaxed)
    }

    /// Starts shutting down: listeners stop, every connection's `closing` fires, no new task is
    /// tracked. Returns false if shutdown had already started.
    pub(crate) fn begin_shutdown(&self) -> bool {
        if self.shutdown.is_cancelled() {
            return false;
        }
        self.stop_accepting.cancel();
        self.down.store(true, Ordering::Release);
        self.shutdown.cancel();
        self.tracker.close();
        true
    }

    /// Drops every connection's pending output (draining took too long).
    pub(crate) fn kill_all(&self) {
        self.kill_all.cancel();
    }

    /// Completes once every task has ended (after shutdown began).
    pub(crate) async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Whether every task has ended.
    pub(crate) fn is_stopped(&self) -> bool {
        self.tracker.is_closed() && self.tracker.is_empty()
    }
}
