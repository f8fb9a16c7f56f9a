//! A connection's writer task: drains the outbound queue into the socket.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use smallvec::SmallVec;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{ClosedReason, Conn};

/// Most slices handed to one `write_vectored` call.
const MAX_IOV: usize = 64;

/// Runs until the connection closes; then flushes what is left (unless killed, and for at most
/// `drain`) and shuts the socket's write side. A write that stalls past `deadline` closes the
/// connection as a slow consumer (counted when the broker retires it).
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    conn: Arc<Conn>,
    mut w: W,
    deadline: Duration,
    drain: Duration,
) {
    loop {
        tokio::select! {
            biased;
            _ = conn.closing.cancelled() => break,
            _ = conn.out.wake.notified() => {}
        }
        if let Err(reason) = flush(&conn, &mut w, deadline).await {
            conn.close(reason);
            break;
        }
    }
    if !conn.kill.is_cancelled() {
        let drain = drain.min(deadline);
        let _ = tokio::time::timeout(drain, flush(&conn, &mut w, deadline)).await;
    }
    let _ = tokio::time::timeout(Duration::from_millis(100), w.shutdown()).await;
}

/// Writes everything queued, batch after batch, until the queue is empty.
async fn flush<W: AsyncWrite + Unpin>(
    conn: &Conn,
    w: &mut W,
    deadline: Duration,
) -> Result<(), ClosedReason> {
    loop {
        let batch = conn.out.take();
        if batch.len == 0 {
            // A stream may hold bytes of its own to send (a WebSocket's PONG or CLOSE, queued
            // by its read half): a wake with nothing queued flushes it. A no-op for TCP.
            return match tokio::time::timeout(deadline, w.flush()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(ClosedReason::WriteError),
                Err(_) => Err(ClosedReason::SlowConsumerWriteDeadline),
            };
        }
        let write = tokio::time::timeout(deadline, write_all(w, batch.bufs));
        tokio::select! {
            biased;
            _ = conn.kill.cancelled() => return Err(ClosedReason::ServerShutdown),
            r = write => match r {
                Ok(Ok(())) => conn.out.written(batch.len),
                Ok(Err(_)) => return Err(ClosedReason::WriteError),
                Err(_) => return Err(ClosedReason::SlowConsumerWriteDeadline),
            },
        }
    }
}

/// Writes all buffers with vectored writes (a batch of small messages is usually one buffer).
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut bufs: Vec<Bytes>,
) -> io::Result<()> {
    let mut idx = 0;
    while idx < bufs.len() {
        let n = if bufs.len() - idx == 1 {
            w.write(&bufs[idx]).await?
        } else {
            let slices: SmallVec<[IoSlice<'_>; MAX_IOV]> = bufs[idx..]
                .iter()
                .take(MAX_IOV)
                .map(|b| IoSlice::new(b))
                .collect();
            w.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut n = n;
        while n > 0 {
            let len = bufs[idx].len();
            if n >= len {
                n -= len;
                idx += 1;
            } else {
                bufs[idx].advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}
