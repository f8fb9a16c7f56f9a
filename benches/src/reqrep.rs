//! Request/reply: a responder echoes each request to its reply subject; a requester keeps
//! `concurrency` requests in flight and records every round trip.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use starling_proto::ServerOp;

use crate::conn::connect;
use crate::error::{BenchError, Result};
use crate::report::Latency;
use crate::scenario::Config;
use crate::seq;

const SUBJECT: &[u8] = b"bench.req";
const INBOX: &str = "_INBOX.bench";

/// What a request/reply run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReqRepOutcome {
    /// Replies received.
    pub requests: u64,
    /// From the first request to the last reply.
    pub elapsed: Duration,
    /// Round-trip percentiles.
    pub latency: Option<Latency>,
}

/// Runs request/reply against `cfg.url` for `cfg.duration`.
pub fn run(cfg: &Config, before_start: impl FnOnce() -> Result<()>) -> Result<ReqRepOutcome> {
    let mut responder = connect(&cfg.url, cfg.connect_timeout)?;
    responder.writer.subscribe(SUBJECT, None, 1);
    responder.round_trip(cfg.connect_timeout)?;
    let mut requester = connect(&cfg.url, cfg.connect_timeout)?;
    requester
        .writer
        .subscribe(format!("{INBOX}.*").as_bytes(), None, 1);
    requester.round_trip(cfg.connect_timeout)?;

    let stop = AtomicBool::new(false);
    let slots = cfg.concurrency;
    let replies: Vec<Vec<u8>> = (0..slots)
        .map(|i| format!("{INBOX}.{i}").into_bytes())
        .collect();
    before_start()?;
    thread::scope(|scope| {
        let stop = &stop;
        let echo = scope.spawn(move || -> Result<()> {
            while !stop.load(Ordering::Acquire) {
                let mut err = None;
                let w = &mut responder.writer;
                responder.reader.poll(|op| {
                    if let ServerOp::Msg(m) = op {
                        match m.reply {
                            Some(r) => w.publish(r, None, m.payload())?,
                            None => {
                                err = Some(BenchError::Protocol("request without reply".into()))
                            }
                        }
                    }
                    Ok(())
                })?;
                if let Some(e) = err {
                    return Err(e);
                }
                responder.writer.flush()?;
            }
            Ok(())
        });
        let result = (|| -> Result<ReqRepOutcome> {
            let start = Instant::now();
            let end = start + cfg.duration;
            let mut deadline = end + cfg.drain_timeout;
            let max = cfg.max_msgs.unwrap_or(u64::MAX);
            let mut payload = vec![b'r'; cfg.size];
            // Per slot: the sequence and send time of the request in flight.
            let mut in_flight: Vec<Option<(u64, Instant)>> = vec![None; slots];
            let mut samples = Vec::new();
            let mut next_seq = 0u64;
            let w = &mut requester.writer;
            for (slot, reply) in replies.iter().enumerate() {
                seq::stamp(&mut payload, next_seq, 0);
                w.publish(SUBJECT, Some(reply), &payload)?;
                in_flight[slot] = Some((next_seq, Instant::now()));
                next_seq += 1;
            }
            w.flush()?;
            let mut outstanding = slots;
            let mut last = start;
            let mut last_reply = start;
            while outstanding > 0 {
                let now = Instant::now();
                // A reply overdue by the drain timeout is lost (a live server answers fast).
                if now >= deadline || now.duration_since(last_reply) > cfg.drain_timeout {
                    return Err(BenchError::Sequence(format!(
                        "reqrep: {outstanding} request(s) never got a reply"
                    )));
                }
                let w = &mut requester.writer;
                requester.reader.poll(|op| {
                    let ServerOp::Msg(m) = op else { return Ok(()) };
                    let now = Instant::now();
                    let slot = m
                        .subject
                        .rsplit(|&b| b == b'.')
                        .next()
                        .and_then(|s| std::str::from_utf8(s).ok())
                        .and_then(|s| s.parse::<usize>().ok())
                        .filter(|&s| s < slots)
                        .ok_or_else(|| BenchError::Protocol("reply on an unknown inbox".into()))?;
                    let (got, _) = seq::read(m.payload())?;
                    match in_flight[slot] {
                        Some((want, sent)) if want == got => {
                            samples.push(now.duration_since(sent).as_nanos() as u64);
                            last = now;
                            last_reply = now;
                        }
                        Some((want, _)) => {
                            return Err(BenchError::Sequence(format!(
                                "reqrep: reply {got} where {want} was awaited (duplicate or stray)"
                            )))
                        }
                        None => {
                            return Err(BenchError::Sequence(format!(
                                "reqrep: reply {got} with no request in flight (duplicate)"
                            )))
                        }
                    }
                    if now < end && next_seq < max {
                        seq::stamp(&mut payload, next_seq, 0);
                        w.publish(SUBJECT, Some(&replies[slot]), &payload)?;
                        in_flight[slot] = Some((next_seq, Instant::now()));
                        next_seq += 1;
                    } else {
                        in_flight[slot] = None;
                        outstanding -= 1;
                        // Sending has stopped: the rest must come within the drain timeout.
                        deadline = deadline.min(now + cfg.drain_timeout);
                    }
                    Ok(())
                })?;
                requester.writer.flush()?;
            }
            Ok(ReqRepOutcome {
                requests: samples.len() as u64,
                elapsed: last.duration_since(start),
                latency: Latency::from_samples(samples),
            })
        })();
        stop.store(true, Ordering::Release);
        let echoed = echo
            .join()
            .unwrap_or_else(|_| Err(BenchError::Protocol("responder panicked".into())));
        let outcome = result?;
        echoed?;
        Ok(outcome)
    })
}
