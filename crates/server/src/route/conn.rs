//! One route connection, either side: the INFO/CONNECT handshake, then interest (`RS+`,
//! `RS-`), routed messages (`RMSG`/`HMSG`), keepalive, and gossip (an INFO about another
//! server is a peer to dial).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use starling_proto::{
    encode, Connect, Info, Limits, RemoteSub, RouteConnect, RouteOp, RouteParser,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tracing::{debug, trace, warn};

use super::{DialTarget, RouteLink, ACCOUNT};
use crate::client::{ClientShared, ClosedReason, ConnKind, OwnedSub};
use crate::delivery::{Msg, Touched};
use crate::server::Shared;
use crate::subscription::Subscription;

const READ_SIZE: usize = 64 * 1024;

/// How a route connection ended, for its dialer.
pub(crate) enum Outcome {
    /// It was registered and has now closed.
    Closed(Arc<RouteLink>),
    /// The peer already had a route: this one was dropped; the other one is returned.
    Duplicate(Arc<RouteLink>),
    /// We dialled ourselves.
    SelfRoute,
    /// The handshake failed or the connection died before registering.
    Failed,
}

/// Serves one route connection until it ends.
pub(crate) async fn serve<R, W>(
    shared: Arc<Shared>,
    reader: R,
    writer: W,
    remote: Option<SocketAddr>,
    dial: Option<DialTarget>,
) -> Outcome
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let routes = shared
        .cluster
        .as_ref()
        .expect("routes only exist with a cluster");
    let cid = shared.next_cid();
    let conn = Arc::new(ClientShared::new(
        cid,
        ConnKind::Route,
        shared.opts.max_pending,
        &shared.shutdown,
        &shared.kill_all,
    ));
    conn.meta.lock().addr = remote;
    conn.headers.store(true, Ordering::Relaxed);
    let our_info = shared.route_info();
    if let Some(target) = &dial {
        // 2.9-style dialer: CONNECT and our INFO in one write.
        let connect = RouteConnect {
            echo: true,
            verbose: false,
            pedantic: false,
            headers: true,
            name: shared.server_id.clone(),
            cluster: routes.name(),
            cluster_dynamic: routes.is_dynamic(),
            user: target.user.clone().or_else(|| routes.config.user.clone()),
            pass: target
                .pass
                .clone()
                .or_else(|| routes.config.password.clone()),
            ..RouteConnect::default()
        };
        conn.out.push_with(|b| {
            encode::write_route_connect(b, &connect);
            encode::write_info(b, &our_info);
        });
    } else {
        conn.out.push_with(|b| encode::write_info(b, &our_info));
    }
    conn.out.wake.notify_one();
    shared.tracker.spawn(crate::client::write_loop(
        shared.clone(),
        conn.clone(),
        writer,
    ));

    let mut route = Route {
        shared: shared.clone(),
        conn: conn.clone(),
        remote,
        dial,
        link: None,
        connected: false,
        outcome: None,
        touched: Touched::default(),
        pings_out: 0,
        active: false,
        ping_sent: None,
    };
    route.run(reader).await;
    conn.close(ClosedReason::ServerShutdown); // no-op if a reason is set
    match route.link.take() {
        Some(link) => {
            let subs: Vec<OwnedSub> = link.remote_subs.lock().drain().map(|(_, s)| s).collect();
            for owned in subs {
                owned.sub.removed.store(true, Ordering::Relaxed);
                shared.sublist.remove(&owned.handle);
            }
            if routes.unregister(&link) {
                shared.route_removed(&link);
            }
            Outcome::Closed(link)
        }
        None => route.outcome.take().unwrap_or(Outcome::Failed),
    }
}

struct Route {
    shared: Arc<Shared>,
    conn: Arc<ClientShared>,
    remote: Option<SocketAddr>,
    dial: Option<DialTarget>,
    link: Option<Arc<RouteLink>>,
    /// The dialer's CONNECT was accepted (listener side).
    connected: bool,
    outcome: Option<Outcome>,
    touched: Touched,
    pings_out: u32,
    active: bool,
    /// When our last unanswered PING went out (its PONG measures the round trip).
    ping_sent: Option<std::time::Instant>,
}

/// Why the reader stops.
struct Stop(ClosedReason, Option<String>);

impl Route {
    async fn run<R: AsyncRead + Unpin>(&mut self, mut reader: R) {
        let every = self.shared.opts.ping_interval;
        // As nats-server: the first PING goes out after 1 s (it measures the RTT).
        let first = every.min(std::time::Duration::from_secs(1));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let closing = self.conn.closing.clone();
        let mut parser = RouteParser::new(Limits {
            max_control_line: self.shared.opts.max_control_line,
            max_payload: crate::options::MAX_PAYLOAD_CEILING,
        });
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        loop {
            if buf.capacity() - buf.len() < READ_SIZE / 4 {
                buf.reserve(READ_SIZE);
            }
            let stop = tokio::select! {
                biased;
                _ = closing.cancelled() => break,
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) => Some(Stop(ClosedReason::ClientClosed, None)),
                    Err(_) => Some(Stop(ClosedReason::ReadError, None)),
                    Ok(_) => {
                        self.active = true;
                        self.conn.touch();
                        if parser.frame_len_hint().is_some_and(|n| buf.len() < n) {
                            continue;
                        }
                        let r = self.process(&mut parser, &mut buf);
                        self.touched.flush(&self.shared);
                        r.err()
                    }
                },
                _ = ping.tick() => self.ping_timer().err(),
            };
            if let Some(Stop(reason, err)) = stop {
                if let Some(text) = err {
                    self.conn.out.push_with(|b| encode::write_err(b, &text));
                    self.conn.out.wake.notify_one();
                }
                trace!(cid = self.conn.cid, %reason, "route closing");
                self.conn.close(reason);
                break;
            }
        }
    }

    fn process(&mut self, parser: &mut RouteParser, buf: &mut BytesMut) -> Result<(), Stop> {
        let chunk = buf.split().freeze();
        let mut pos = 0;
        let mut result = Ok(());
        let (mut msgs, mut bytes) = (0u64, 0u64);
        while pos < chunk.len() {
            match parser.parse(&chunk[pos..]) {
                Ok(Some((op, n))) => {
                    pos += n;
                    if let RouteOp::Msg(m) = &op {
                        (msgs, bytes) = (msgs + 1, bytes + m.data.len() as u64);
                    }
                    if let Err(stop) = self.handle(op, &chunk) {
                        result = Err(stop);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(cid = self.conn.cid, error = %e, "route protocol error");
                    result = Err(Stop(
                        ClosedReason::ParseError,
                        e.err_text().map(str::to_string),
                    ));
                    break;
                }
            }
        }
        self.conn.count_in(&self.shared, msgs, bytes);
        if result.is_ok() && pos < chunk.len() {
            buf.reserve(parser.frame_len_hint().unwrap_or(0).max(READ_SIZE));
            buf.extend_from_slice(&chunk[pos..]);
        }
        result
    }

    fn handle(&mut self, op: RouteOp<'_>, chunk: &Bytes) -> Result<(), Stop> {
        match op {
            RouteOp::Connect(json) => self.on_connect(json),
            RouteOp::Info(json) => self.on_info(json),
            RouteOp::Ping => {
                self.push(|b| b.put_slice(encode::PONG));
                Ok(())
            }
            RouteOp::Pong => {
                self.pings_out = 0;
                if let Some(sent) = self.ping_sent.take() {
                    self.conn.set_rtt(sent.elapsed());
                }
                Ok(())
            }
            RouteOp::Ok => Ok(()),
            RouteOp::Err(text) => {
                debug!(cid = self.conn.cid, error = %String::from_utf8_lossy(text), "route error from peer");
                Err(Stop(ClosedReason::ParseError, None))
            }
            _ if self.link.is_none() => {
                // Interest or messages before the handshake completed.
                Err(Stop(ClosedReason::ProtocolViolation, None))
            }
            RouteOp::Sub(sub) => {
                self.on_remote_sub(sub);
                Ok(())
            }
            RouteOp::Unsub(sub) => {
                self.on_remote_unsub(sub);
                Ok(())
            }
            RouteOp::Msg(m) => {
                if m.account == ACCOUNT {
                    let msg =
                        Msg::routed(m.subject, m.reply, m.header_len, m.data, chunk, m.queues);
                    self.shared.publish(&self.conn, &msg, &mut self.touched);
                }
                Ok(())
            }
        }
    }

    /// Listener side: the dialer introduces itself.
    fn on_connect(&mut self, json: &[u8]) -> Result<(), Stop> {
        let routes = self.shared.cluster.as_ref().unwrap();
        // A client that dialled the route port by mistake sends `lang`.
        if let Ok(client) = Connect::from_json(json) {
            if client.lang.is_some() {
                return Err(Stop(
                    ClosedReason::ProtocolViolation,
                    Some("attempted to connect to route port".into()),
                ));
            }
        }
        let connect =
            RouteConnect::from_json(json).map_err(|_| Stop(ClosedReason::ParseError, None))?;
        if let (Some(user), Some(pass)) = (&routes.config.user, &routes.config.password) {
            if !(crate::auth::credentials_match(connect.user.as_deref(), user)
                & crate::auth::credentials_match(connect.pass.as_deref(), pass))
            {
                return Err(Stop(
                    ClosedReason::AuthenticationViolation,
                    Some("Authorization Violation".into()),
                ));
            }
        }
        if connect.name == self.shared.server_id {
            self.outcome = Some(Outcome::SelfRoute);
            return Err(Stop(ClosedReason::ProtocolViolation, None));
        }
        self.check_cluster_name(&connect.cluster, connect.cluster_dynamic, true)?;
        self.connected = true;
        Ok(())
    }

    /// Applies nats-server's cluster-name rule: equal names pass; a dynamic (unnamed) side
    /// adopts the other's name; otherwise the connection is refused.
    fn check_cluster_name(
        &self,
        theirs: &str,
        theirs_dynamic: bool,
        send_err: bool,
    ) -> Result<(), Stop> {
        let routes = self.shared.cluster.as_ref().unwrap();
        let mine = routes.name();
        if theirs.is_empty() || theirs == mine {
            return Ok(());
        }
        if routes.is_dynamic() && (!theirs_dynamic || mine.as_str() < theirs) {
            *routes.name.lock() = theirs.to_string();
            if !theirs_dynamic {
                routes.dynamic.store(false, Ordering::Relaxed);
            }
            debug!(cluster = theirs, "adopted the cluster name of a peer");
            return Ok(());
        }
        if routes.is_dynamic() || theirs_dynamic {
            return Ok(());
        }
        let err = send_err.then(|| {
            format!("Rejecting connection, cluster name \"{theirs}\" does not match \"{mine}\"")
        });
        Err(Stop(ClosedReason::ProtocolViolation, err))
    }

    fn on_info(&mut self, json: &[u8]) -> Result<(), Stop> {
        let info = Info::from_json(json).map_err(|_| Stop(ClosedReason::ParseError, None))?;
        let routes = self.shared.cluster.as_ref().unwrap();
        if let Some(link) = &self.link {
            if info.server_id != link.server_id {
                // Gossip: another server joined one of our peers.
                if info.server_id != self.shared.server_id && routes.link(&info.server_id).is_none()
                {
                    if let Some(addr) = info.ip.as_deref().and_then(super::url_host_port) {
                        crate::discovery::dial_discovered(&self.shared, addr);
                    }
                }
            } else if info.ldm && routes.set_lame_duck(&link.server_id) {
                self.shared.client_urls_changed();
            }
            return Ok(());
        }
        if info.server_id == self.shared.server_id {
            self.outcome = Some(Outcome::SelfRoute);
            return Err(Stop(ClosedReason::ProtocolViolation, None));
        }
        if routes.config.user.is_some() && self.dial.is_none() && !self.connected {
            return Err(Stop(
                ClosedReason::AuthenticationViolation,
                Some("Authorization Violation".into()),
            ));
        }
        let dynamic = info.cluster_dynamic;
        self.check_cluster_name(info.cluster.as_deref().unwrap_or(""), dynamic, false)?;
        self.conn.headers.store(info.headers, Ordering::Relaxed);
        let link = Arc::new(RouteLink {
            conn: self.conn.clone(),
            server_id: info.server_id.clone(),
            info: Mutex::new(info),
            remote_addr: self.remote,
            dial: Mutex::new(self.dial.clone()),
            retry: AtomicBool::new(false),
            remote_subs: Mutex::new(HashMap::new()),
        });
        match routes.register(&link) {
            Ok(others) => {
                self.link = Some(link.clone());
                self.shared.route_added(&link, &others);
                Ok(())
            }
            Err(existing) => {
                debug!(peer = %link.server_id, "duplicate route, keeping the first one");
                // The surviving connection takes over our dial duty ("upgrade to solicited")
                // and re-dials if it drops too.
                if let Some(target) = self.dial.clone() {
                    existing.dial.lock().get_or_insert(target);
                }
                existing.retry.store(true, Ordering::Relaxed);
                self.outcome = Some(Outcome::Duplicate(existing));
                Err(Stop(ClosedReason::DuplicateRoute, None))
            }
        }
    }

    fn on_remote_sub(&mut self, sub: RemoteSub<'_>) {
        if sub.account != ACCOUNT {
            return; // $SYS and other accounts: accepted, not served
        }
        let link = self.link.as_ref().unwrap();
        let key = remote_key(sub.subject, sub.queue);
        let mut subs = link.remote_subs.lock();
        if let Some(existing) = subs.get(&key) {
            existing
                .sub
                .weight
                .store(sub.weight.max(1), Ordering::Relaxed);
            return;
        }
        let s = Arc::new(Subscription::new(self.conn.clone(), b"", None));
        s.weight.store(sub.weight.max(1), Ordering::Relaxed);
        match self
            .shared
            .sublist
            .insert(sub.subject, sub.queue, s.clone())
        {
            Ok(handle) => {
                subs.insert(key, OwnedSub { sub: s, handle });
            }
            Err(_) => {
                drop(subs);
                warn!(subject = %String::from_utf8_lossy(sub.subject), "invalid subscription from route");
                self.push(|b| encode::write_err(b, "Invalid Subscription"));
            }
        }
    }

    fn on_remote_unsub(&mut self, sub: RemoteSub<'_>) {
        if sub.account != ACCOUNT {
            return;
        }
        let link = self.link.as_ref().unwrap();
        let removed = link
            .remote_subs
            .lock()
            .remove(&remote_key(sub.subject, sub.queue));
        if let Some(owned) = removed {
            owned.sub.removed.store(true, Ordering::Relaxed);
            self.shared.sublist.remove(&owned.handle);
        }
    }

    fn ping_timer(&mut self) -> Result<(), Stop> {
        if self.pings_out + 1 > self.shared.opts.max_pings_out {
            return Err(Stop(
                ClosedReason::StaleConnection,
                Some("Stale Connection".into()),
            ));
        }
        // Activity makes a PING unnecessary, unless the RTT is still unmeasured.
        if std::mem::take(&mut self.active) && !self.conn.rtt().is_zero() {
            return Ok(());
        }
        self.pings_out += 1;
        self.ping_sent = Some(std::time::Instant::now());
        self.push(|b| b.put_slice(encode::PING));
        self.touched.flush(&self.shared);
        Ok(())
    }

    fn push(&mut self, build: impl FnOnce(&mut BytesMut)) {
        if self.conn.out.push_with(build) == crate::client::outbound::Appended::Signal {
            self.touched.signal(&self.conn);
        }
    }
}

fn remote_key(subject: &[u8], queue: Option<&[u8]>) -> Bytes {
    let mut k = BytesMut::with_capacity(subject.len() + queue.map_or(0, |q| q.len() + 1));
    k.put_slice(subject);
    if let Some(q) = queue {
        k.put_u8(b' ');
        k.put_slice(q);
    }
    k.freeze()
}
