//! Connection set-up: K connector threads open connections one after another for the run's
//! duration, each doing the full handshake (TCP connect, INFO, TLS for a `tls://` URL,
//! CONNECT, PING/PONG) and then closing it.

use std::thread;
use std::time::{Duration, Instant};

use crate::conn::connect;
use crate::error::{BenchError, Result};
use crate::scenario::Config;

/// What a handshake run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandshakeOutcome {
    /// Connections that completed the handshake.
    pub connects: u64,
    /// From the first connection attempt to the last completed handshake.
    pub elapsed: Duration,
}

/// Runs `cfg.k` connector threads against `cfg.url` for `cfg.duration` (each stops after
/// `cfg.max_msgs` connections, if given).
pub fn run(cfg: &Config, before_start: impl FnOnce() -> Result<()>) -> Result<HandshakeOutcome> {
    // One handshake first: a server that is not there fails here, not in K threads.
    drop(connect(&cfg.url, cfg.connect_timeout)?);
    before_start()?;
    let start = Instant::now();
    let end = start + cfg.duration;
    let max = cfg.max_msgs.unwrap_or(u64::MAX);
    let results: Vec<Result<(u64, Instant)>> = thread::scope(|scope| {
        let threads: Vec<_> = (0..cfg.k)
            .map(|i| {
                scope.spawn(move || -> Result<(u64, Instant)> {
                    let mut n = 0u64;
                    let mut last = start;
                    while n < max && Instant::now() < end {
                        // Dropping the connection closes it: after its PONG nothing is
                        // left unread, so the close is a FIN, not a reset.
                        drop(
                            connect(&cfg.url, cfg.connect_timeout)
                                .map_err(|e| e.context(&format!("connector {i}")))?,
                        );
                        n += 1;
                        last = Instant::now();
                    }
                    Ok((n, last))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::Protocol("a connector thread panicked".into()))
                })
            })
            .collect()
    });
    let mut connects = 0;
    let mut last = start;
    for r in results {
        let (n, l) = r?;
        connects += n;
        last = last.max(l);
    }
    Ok(HandshakeOutcome {
        connects,
        elapsed: last.saturating_duration_since(start),
    })
}
