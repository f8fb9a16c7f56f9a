//! Outbound connections, for every kind that dials (routes to seeds and gossiped peers today,
//! leafnode remotes next): a TCP connect bounded by a timeout, and the back-off between
//! failed attempts, with nats-server's jitter so two servers re-dialling each other do not
//! collide again.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// Connects to `addr` (`host:port`), giving up after `timeout`; Nagle off, as for every
/// NATS connection.
pub(crate) async fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The wait between failed dials: doubling from `first` up to `max`, plus jitter.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// How long to wait after another failure.
    pub(crate) fn failed(&mut self) -> Duration {
        let wait = self.next + jitter();
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// A dial succeeded: the next failure waits `first` again.
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}

/// 0–100 ms, as nats-server adds before re-dialling.
pub(crate) fn jitter() -> Duration {
    Duration::from_millis(fastrand::u64(0..100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(50), ms(300));
        let waits: Vec<Duration> = (0..5).map(|_| b.failed()).collect();
        for (wait, base) in waits.iter().zip([50, 100, 200, 300, 300]) {
            assert!(*wait >= ms(base) && *wait < ms(base + 100), "{waits:?}");
        }
        b.reset();
        assert!(b.failed() < ms(150));
    }

    #[tokio::test]
    async fn connect_reports_a_refusal() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(connect(&addr, Duration::from_secs(1)).await.is_err());
    }
}
