//! The publish/subscribe engine behind every streaming scenario: publishers and subscribers on
//! their own threads, a window that keeps publishers from running ahead of what subscribers
//! have received, sequence checks on every message and a bounded drain at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use starling_proto::ServerOp;

use crate::conn::{connect, Conn};
use crate::error::{BenchError, Result};
use crate::seq::{self, Expect, Tracker, HEADER_LEN, PROBE_ID};

/// Bytes in flight (published, not yet received by the slowest subscriber), across all
/// publishers: far below the server's slow-consumer limit (64 MiB of pending bytes).
pub const WINDOW_BYTES: usize = 4 * 1024 * 1024;
/// The header block every `HPUB` carries.
pub const HEADERS: &[u8] = b"NATS/1.0\r\nBench: starling\r\n\r\n";

/// One publisher of a [`Flow`].
#[derive(Debug, Clone)]
pub struct PubPlan {
    /// Server to connect to.
    pub url: String,
    /// Subjects to publish on, in rotation.
    pub subjects: Vec<String>,
    /// Publish with `HPUB` and [`HEADERS`].
    pub headers: bool,
}

/// One subscriber of a [`Flow`].
#[derive(Debug, Clone)]
pub struct SubPlan {
    /// Server to connect to.
    pub url: String,
    /// Subject (may hold wildcards).
    pub subject: String,
    /// Queue group, if any: then the subscriber expects a share of the messages.
    pub queue: Option<String>,
}

/// Publishers and subscribers of one run.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The publishers; their ids are their indexes.
    pub pubs: Vec<PubPlan>,
    /// The subscribers; with none, publishers are paced by PING/PONG.
    pub subs: Vec<SubPlan>,
    /// Payload size in bytes (at least [`HEADER_LEN`]).
    pub size: usize,
    /// How long publishers publish.
    pub duration: Duration,
    /// How long subscribers may take to receive the rest once publishers stop.
    pub drain_timeout: Duration,
    /// Bound on connecting, handshakes and waiting for interest.
    pub connect_timeout: Duration,
    /// Before measuring, publish probes until every subscriber receives one (interest that
    /// crosses a route takes a moment to propagate).
    pub probe: bool,
    /// Stop each publisher after this many messages (tests); `None`: only the duration.
    pub max_msgs: Option<u64>,
}

/// What a [`Flow`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowOutcome {
    /// Messages published.
    pub published: u64,
    /// Messages delivered to subscribers (or published, with no subscribers).
    pub delivered: u64,
    /// From the first publish to the last delivery (or the last PONG, with no subscribers).
    pub elapsed: Duration,
}

struct Shared {
    abort: AtomicBool,
    /// `[sub][pub]`: messages of each publisher each subscriber has received.
    acked: Vec<Vec<AtomicU64>>,
    /// Per publisher: messages sent, valid once `pubs_done` counts it.
    sent: Vec<AtomicU64>,
    pubs_done: AtomicUsize,
    /// Messages received by all queue-group members together.
    group_received: AtomicU64,
    waiting: AtomicBool,
    pub_threads: Mutex<Vec<Thread>>,
    share: bool,
}

impl Shared {
    /// Messages of publisher `p` the subscribers have confirmed: the slowest subscriber's
    /// count, or the queue group's total.
    fn acked(&self, p: usize) -> u64 {
        let counts = self.acked.iter().map(|row| row[p].load(Ordering::Acquire));
        if self.share {
            counts.sum()
        } else {
            counts.min().unwrap_or(0)
        }
    }

    fn wake_publishers(&self) {
        if self.waiting.swap(false, Ordering::AcqRel) {
            for t in self.pub_threads.lock().expect("not poisoned").iter() {
                t.unpark();
            }
        }
    }

    fn fail(&self) {
        self.abort.store(true, Ordering::Release);
        for t in self.pub_threads.lock().expect("not poisoned").iter() {
            t.unpark();
        }
    }
}

/// Joins a bench thread; a panic becomes an error.
fn join<T>(h: thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(BenchError::Protocol("a bench thread panicked".into())))
}

impl Flow {
    /// Runs the flow; `before_start` is called just before the first publish (to sample the
    /// server's counters), after every connection is up and every subscription registered.
    pub fn run(&self, before_start: impl FnOnce() -> Result<()>) -> Result<FlowOutcome> {
        if self.size < HEADER_LEN {
            return Err(BenchError::Usage(format!(
                "message size must be at least {HEADER_LEN} bytes"
            )));
        }
        let npubs = self.pubs.len();
        let share = self.subs.iter().any(|s| s.queue.is_some());
        let mut sub_conns = Vec::with_capacity(self.subs.len());
        for (i, s) in self.subs.iter().enumerate() {
            let mut c = connect(&s.url, self.connect_timeout)?;
            c.writer.subscribe(
                s.subject.as_bytes(),
                s.queue.as_deref().map(str::as_bytes),
                1,
            );
            c.round_trip(self.connect_timeout)?;
            let expect = if s.queue.is_some() {
                Expect::Share
            } else {
                Expect::All
            };
            sub_conns.push((c, Tracker::new(format!("subscriber {i}"), npubs, expect)));
        }
        let mut pub_conns = Vec::with_capacity(npubs);
        for p in &self.pubs {
            pub_conns.push(connect(&p.url, self.connect_timeout)?);
        }
        if self.probe {
            self.wait_for_interest(&mut pub_conns[0], &mut sub_conns)?;
        }
        let shared = Shared {
            abort: AtomicBool::new(false),
            acked: (0..self.subs.len())
                .map(|_| (0..npubs).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            sent: (0..npubs).map(|_| AtomicU64::new(0)).collect(),
            pubs_done: AtomicUsize::new(0),
            group_received: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            pub_threads: Mutex::new(Vec::new()),
            share,
        };
        // Per publisher, messages in flight: the budget is shared by the publishers, and a
        // subscriber may receive from all of them.
        let window = (WINDOW_BYTES / npubs.max(1) / (self.size + 64)).max(16) as u64;
        before_start()?;
        let start = Instant::now();
        let (pub_results, sub_results) = thread::scope(|scope| {
            let shared = &shared;
            let subs: Vec<_> = sub_conns
                .into_iter()
                .enumerate()
                .map(|(i, (conn, tracker))| {
                    scope.spawn(move || {
                        let r = self
                            .subscriber(i, conn, tracker, shared, start)
                            .map_err(|e| e.context(&format!("subscriber {i}")));
                        if r.is_err() {
                            shared.fail();
                        }
                        r
                    })
                })
                .collect();
            let pubs: Vec<_> = pub_conns
                .into_iter()
                .enumerate()
                .map(|(p, conn)| {
                    scope.spawn(move || {
                        let r = self
                            .publisher(p, conn, shared, start, window)
                            .map_err(|e| e.context(&format!("publisher {p}")));
                        shared.pubs_done.fetch_add(1, Ordering::AcqRel);
                        if r.is_err() {
                            shared.fail();
                        }
                        r
                    })
                })
                .collect();
            let pr: Vec<Result<(u64, Instant)>> = pubs.into_iter().map(join).collect();
            let sr: Vec<Result<(Tracker, Option<Instant>)>> = subs.into_iter().map(join).collect();
            (pr, sr)
        });
        // Sequence errors first: they are the loudest and the most telling.
        let mut errors: Vec<BenchError> = Vec::new();
        let mut sent = Vec::new();
        let mut end = start;
        for r in pub_results {
            match r {
                Ok((n, t)) => {
                    sent.push(n);
                    end = end.max(t);
                }
                Err(e) => errors.push(e),
            }
        }
        let mut trackers = Vec::new();
        for r in sub_results {
            match r {
                Ok((t, last)) => {
                    if let Some(l) = last {
                        end = end.max(l);
                    }
                    trackers.push(t);
                }
                Err(e) => errors.push(e),
            }
        }
        if let Some(i) = errors.iter().position(BenchError::is_sequence) {
            return Err(errors.swap_remove(i));
        }
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        if share {
            seq::check_group(&trackers, &sent)?;
        } else {
            for t in &trackers {
                t.check_complete(&sent)?;
            }
        }
        let published: u64 = sent.iter().sum();
        let delivered = if self.subs.is_empty() {
            published
        } else {
            trackers.iter().map(|t| t.received).sum()
        };
        Ok(FlowOutcome {
            published,
            delivered,
            elapsed: end.saturating_duration_since(start),
        })
    }

    /// Publishes probes from `publisher` until every subscriber has received one.
    fn wait_for_interest(&self, publisher: &mut Conn, subs: &mut [(Conn, Tracker)]) -> Result<()> {
        let deadline = Instant::now() + self.connect_timeout;
        let mut probe = vec![0u8; HEADER_LEN];
        seq::stamp(&mut probe, 0, PROBE_ID);
        let subject = self.pubs[0].subjects[0].as_bytes();
        let mut seen = vec![false; subs.len()];
        while !seen.iter().all(|&s| s) {
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(
                    "interest did not propagate: no probe message arrived".into(),
                ));
            }
            publisher.writer.publish(subject, None, &probe)?;
            publisher.writer.flush()?;
            for (i, (conn, _)) in subs.iter_mut().enumerate() {
                conn.reader.poll(|op| {
                    if let ServerOp::Msg(m) = op {
                        if seq::read(m.payload())?.1 == PROBE_ID {
                            seen[i] = true;
                        }
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    fn publisher(
        &self,
        p: usize,
        mut conn: Conn,
        shared: &Shared,
        start: Instant,
        window: u64,
    ) -> Result<(u64, Instant)> {
        shared
            .pub_threads
            .lock()
            .expect("not poisoned")
            .push(thread::current());
        let plan = &self.pubs[p];
        let subjects: Vec<&[u8]> = plan.subjects.iter().map(|s| s.as_bytes()).collect();
        let mut payload = vec![b'x'; self.size];
        let end = start + self.duration;
        let max = self.max_msgs.unwrap_or(u64::MAX);
        let paced_by_pong = self.subs.is_empty();
        let ping_every = (window / 2).max(1);
        let mut pings = conn.reader.pongs();
        let mut acked = 0u64;
        let mut seq = 0u64;
        let mut subject_i = 0;
        while seq < max && !shared.abort.load(Ordering::Acquire) {
            if seq.is_multiple_of(16) && Instant::now() >= end {
                break;
            }
            if paced_by_pong {
                if seq > 0 && seq.is_multiple_of(ping_every) {
                    // At most two windows unconfirmed.
                    conn.writer.ping();
                    pings += 1;
                    if pings > conn.reader.pongs() + 2 {
                        conn.writer.flush()?;
                        conn.reader
                            .wait_pongs(pings - 2, end + self.drain_timeout)?;
                    }
                }
            } else if seq >= acked + window {
                acked = shared.acked(p);
                if seq >= acked + window {
                    conn.writer.flush()?;
                    shared.waiting.store(true, Ordering::Release);
                    // Re-check after announcing: a subscriber may have advanced meanwhile.
                    acked = shared.acked(p);
                    if seq >= acked + window {
                        thread::park_timeout(Duration::from_millis(2));
                    }
                    continue;
                }
            }
            seq::stamp(&mut payload, seq, p as u32);
            let subject = subjects[subject_i];
            subject_i += 1;
            if subject_i == subjects.len() {
                subject_i = 0;
            }
            if plan.headers {
                conn.writer.hpublish(subject, HEADERS, &payload)?;
            } else {
                conn.writer.publish(subject, None, &payload)?;
            }
            seq += 1;
        }
        conn.writer.flush()?;
        shared.sent[p].store(seq, Ordering::Release);
        let mut last = Instant::now();
        // Always end with a PING/PONG round trip before the connection is dropped: the server
        // has then processed every PUB. Closing a socket with unread input (a PONG, say) makes
        // the kernel send RST, and a server that has not read our last writes yet loses them.
        if !shared.abort.load(Ordering::Acquire) {
            conn.writer.ping();
            conn.writer.flush()?;
            conn.reader
                .wait_pongs(pings + 1, end + self.drain_timeout)?;
            if paced_by_pong {
                last = Instant::now();
            }
        }
        Ok((seq, last))
    }

    fn subscriber(
        &self,
        i: usize,
        mut conn: Conn,
        mut tracker: Tracker,
        shared: &Shared,
        start: Instant,
    ) -> Result<(Tracker, Option<Instant>)> {
        let npubs = self.pubs.len();
        let mut deadline = start + self.duration + self.drain_timeout;
        let mut drain_started = false;
        let headers = self.pubs.iter().any(|p| p.headers);
        let mut last = None;
        loop {
            if shared.abort.load(Ordering::Acquire) {
                return Ok((tracker, last));
            }
            let before = tracker.received;
            conn.reader.poll(|op| {
                if let ServerOp::Msg(m) = op {
                    if headers && m.header_len.is_none() {
                        return Err(BenchError::Protocol("MSG where HMSG was expected".into()));
                    }
                    tracker.check(m.payload())?;
                }
                Ok(())
            })?;
            let got = tracker.received - before;
            if got > 0 {
                last = Some(Instant::now());
                for p in 0..npubs {
                    shared.acked[i][p].store(tracker.count(p), Ordering::Release);
                }
                if shared.share {
                    shared.group_received.fetch_add(got, Ordering::AcqRel);
                }
                shared.wake_publishers();
            }
            if shared.pubs_done.load(Ordering::Acquire) == npubs {
                if !drain_started {
                    drain_started = true;
                    deadline = deadline.min(Instant::now() + self.drain_timeout);
                }
                let sent = |p: usize| shared.sent[p].load(Ordering::Acquire);
                let done = if shared.share {
                    shared.group_received.load(Ordering::Acquire) >= (0..npubs).map(sent).sum()
                } else {
                    (0..npubs).all(|p| tracker.count(p) >= sent(p))
                };
                if done {
                    return Ok((tracker, last));
                }
            }
            if Instant::now() >= deadline {
                // The completeness check after the run reports what is missing.
                return Ok((tracker, last));
            }
        }
    }
}
