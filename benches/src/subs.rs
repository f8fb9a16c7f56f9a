//! Many subscriptions on distinct subjects: how much server memory each one costs.

use std::time::{Duration, Instant};

use starling_proto::ServerOp;

use crate::conn::{connect, Conn};
use crate::error::{BenchError, Result};
use crate::scenario::Config;

/// What a subscriptions run measured. The connection holding the subscriptions stays open
/// until this is dropped, so the server's memory can be sampled first.
#[derive(Debug)]
pub struct SubsOutcome {
    /// From the first `SUB` to the `PONG` confirming the last.
    pub elapsed: Duration,
    /// The connection that holds the subscriptions.
    pub conn: Conn,
}

/// Makes `cfg.subs` subscriptions on `bench.subs.<i>`, confirms them with a PING/PONG round
/// trip and checks the last one receives a message.
pub fn run(cfg: &Config, before_start: impl FnOnce() -> Result<()>) -> Result<SubsOutcome> {
    let mut conn = connect(&cfg.url, cfg.connect_timeout)?;
    before_start()?;
    let start = Instant::now();
    for i in 0..cfg.subs {
        conn.writer
            .subscribe(format!("bench.subs.{i}").as_bytes(), None, i as u64);
        conn.writer.maybe_flush()?;
    }
    // Subscriptions are processed in order: the PONG confirms every one is registered.
    let timeout = cfg.connect_timeout + cfg.drain_timeout;
    conn.round_trip(timeout)?;
    let elapsed = start.elapsed();
    let last = cfg.subs - 1;
    conn.writer
        .publish(format!("bench.subs.{last}").as_bytes(), None, b"check")?;
    conn.writer.flush()?;
    let want = last.to_string();
    conn.reader.poll_until(
        Instant::now() + timeout,
        "a message on the last subscription",
        |op| match op {
            ServerOp::Msg(m) if m.sid == want.as_bytes() => Ok(true),
            ServerOp::Msg(m) => Err(BenchError::Sequence(format!(
                "subs: message delivered to sid {} instead of {want}",
                String::from_utf8_lossy(m.sid)
            ))),
            _ => Ok(false),
        },
    )?;
    Ok(SubsOutcome { elapsed, conn })
}
