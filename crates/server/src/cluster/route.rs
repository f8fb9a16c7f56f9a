//! One route connection, either side: the INFO/CONNECT handshake, then interest (`RS+`,
//! `RS-`), routed messages (`RMSG`/`HMSG`), keepalive, and gossip (an INFO about another
//! server is a peer to dial).
//!
//! Every `RS+`, `RS-` and `RMSG` names its account. Interest and messages for accounts this
//! server does not have are dropped, with one warning per account and route.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use starling_proto::{encode, Connect, Info, Limits, RouteConnect, RouteOp, RouteParser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tracing::{debug, trace, warn};

use super::discovery::{dial_discovered, DialTarget};
use super::routes::{url_host_port, RemoteSub, RouteLink, Routes};
use crate::account::Account;
use crate::broker::Broker;
use crate::conn::{write_loop, ClosedReason, Conn, ConnKind};
use crate::delivery::{self, Msg, Touched};
use crate::subscription::{OwnedSub, Subscription, Target};

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
    broker: Arc<Broker>,
    reader: R,
    writer: W,
    remote: Option<SocketAddr>,
    dial: Option<DialTarget>,
) -> Outcome
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let routes = broker
        .routes()
        .expect("routes only exist with a cluster")
        .clone();
    let conn = broker.new_conn(ConnKind::Route, remote);
    conn.set_headers(true);
    let our_info = broker.route_info();
    if let Some(target) = &dial {
        // 2.9-style dialer: CONNECT and our INFO in one write.
        let config = routes.config();
        let connect = RouteConnect {
            echo: true,
            verbose: false,
            pedantic: false,
            headers: true,
            name: broker.identity().server_id().to_string(),
            cluster: routes.name(),
            cluster_dynamic: routes.is_dynamic(),
            user: target.user.clone().or_else(|| config.user.clone()),
            pass: target.pass.clone().or_else(|| config.password.clone()),
            ..RouteConnect::default()
        };
        conn.send(|b| {
            encode::write_route_connect(b, &connect);
            encode::write_info(b, &our_info);
        });
    } else {
        conn.send(|b| encode::write_info(b, &our_info));
    }
    let opts = broker.opts();
    broker.lifecycle().spawn(write_loop(
        conn.clone(),
        writer,
        opts.write_deadline,
        opts.drain_timeout,
    ));

    let mut route = Route {
        broker: broker.clone(),
        routes: routes.clone(),
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
        last_account: None,
        unknown_accounts: HashSet::new(),
    };
    route.run(reader).await;
    conn.close(ClosedReason::ServerShutdown); // no-op if a reason is set
    match route.link.take() {
        Some(link) => {
            for remote in link.take_remotes() {
                remote
                    .account
                    .remove_unannounced(&remote.owned.sub, &remote.owned.handle);
            }
            if routes.unregister(&link) {
                broker.route_removed(&link);
            }
            Outcome::Closed(link)
        }
        None => route.outcome.take().unwrap_or(Outcome::Failed),
    }
}

struct Route {
    broker: Arc<Broker>,
    routes: Arc<Routes>,
    conn: Arc<Conn>,
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
    /// The account of the last routed message or interest: peers send runs of one account, so
    /// this saves the look-up by name for most of them.
    last_account: Option<Arc<Account>>,
    /// Accounts the peer used that this server does not have (warned about once).
    unknown_accounts: HashSet<Bytes>,
}

/// Why the reader stops.
struct Stop(ClosedReason, Option<String>);

impl Route {
    async fn run<R: AsyncRead + Unpin>(&mut self, mut reader: R) {
        let every = self.broker.opts().ping_interval;
        // As nats-server: the first PING goes out after 1 s (it measures the RTT).
        let first = every.min(std::time::Duration::from_secs(1));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let closing = self.conn.closing().clone();
        let mut parser = RouteParser::new(Limits {
            max_control_line: self.broker.opts().max_control_line,
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
                        self.touched.flush();
                        r.err()
                    }
                },
                _ = ping.tick() => self.ping_timer().err(),
            };
            if let Some(Stop(reason, err)) = stop {
                if let Some(text) = err {
                    self.conn.send(|b| encode::write_err(b, &text));
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
        if msgs > 0 {
            self.conn.count_in(msgs, bytes);
            self.broker.counters().add_in(msgs, bytes);
        }
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
                if let Some(account) = self.account(m.account) {
                    let msg =
                        Msg::routed(m.subject, m.reply, m.header_len, m.data, chunk, m.queues);
                    delivery::publish(&self.broker, &account, &self.conn, &msg, &mut self.touched);
                }
                Ok(())
            }
        }
    }

    /// Listener side: the dialer introduces itself.
    fn on_connect(&mut self, json: &[u8]) -> Result<(), Stop> {
        let routes = &self.routes;
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
        let config = routes.config();
        if let (Some(user), Some(pass)) = (&config.user, &config.password) {
            if !(crate::auth::credentials_match(connect.user.as_deref(), user)
                & crate::auth::credentials_match(connect.pass.as_deref(), pass))
            {
                return Err(Stop(
                    ClosedReason::AuthenticationViolation,
                    Some("Authorization Violation".into()),
                ));
            }
        }
        if connect.name == self.broker.identity().server_id() {
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
        let routes = &self.routes;
        let mine = routes.name();
        if theirs.is_empty() || theirs == mine {
            return Ok(());
        }
        if routes.is_dynamic() && (!theirs_dynamic || mine.as_str() < theirs) {
            routes.adopt_name(theirs, theirs_dynamic);
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
        let routes = &self.routes;
        if let Some(link) = &self.link {
            if info.server_id != link.server_id {
                // Gossip: another server joined one of our peers.
                if info.server_id != self.broker.identity().server_id()
                    && routes.link(&info.server_id).is_none()
                {
                    if let Some(addr) = info.ip.as_deref().and_then(url_host_port) {
                        dial_discovered(&self.broker, addr);
                    }
                }
            } else if info.ldm && routes.set_lame_duck(&link.server_id) {
                self.broker.client_urls_changed();
            }
            return Ok(());
        }
        if info.server_id == self.broker.identity().server_id() {
            self.outcome = Some(Outcome::SelfRoute);
            return Err(Stop(ClosedReason::ProtocolViolation, None));
        }
        if routes.config().user.is_some() && self.dial.is_none() && !self.connected {
            return Err(Stop(
                ClosedReason::AuthenticationViolation,
                Some("Authorization Violation".into()),
            ));
        }
        let dynamic = info.cluster_dynamic;
        self.check_cluster_name(info.cluster.as_deref().unwrap_or(""), dynamic, false)?;
        self.conn.set_headers(info.headers);
        let link = Arc::new(RouteLink::new(
            self.conn.clone(),
            info,
            self.remote,
            self.dial.clone(),
        ));
        match routes.register(&link) {
            Ok((others, snapshot)) => {
                self.link = Some(link.clone());
                // Our interest goes out in chunks, paced by the route's writer.
                let (routes, sync_link) = (routes.clone(), link.clone());
                self.broker
                    .lifecycle()
                    .spawn(async move { routes.sync(&sync_link, snapshot).await });
                self.broker.route_added(&link, &others);
                Ok(())
            }
            Err(existing) => {
                debug!(peer = %link.server_id, "duplicate route, keeping the first one");
                // The surviving connection takes over our dial duty ("upgrade to solicited")
                // and re-dials if it drops too.
                existing.adopt_dial(self.dial.clone());
                self.outcome = Some(Outcome::Duplicate(existing));
                Err(Stop(ClosedReason::DuplicateRoute, None))
            }
        }
    }

    /// The account named `name`, or `None` (warned about once) if this server has none.
    fn account(&mut self, name: &[u8]) -> Option<Arc<Account>> {
        if let Some(last) = &self.last_account {
            if last.name().as_bytes() == name {
                return Some(last.clone());
            }
        }
        let found = std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.broker.accounts().get(n))
            .cloned();
        match &found {
            Some(account) => self.last_account = Some(account.clone()),
            None => {
                if self.unknown_accounts.insert(Bytes::copy_from_slice(name)) {
                    warn!(
                        account = %String::from_utf8_lossy(name),
                        peer = self.link.as_ref().map_or("", |l| l.server_id.as_str()),
                        "route uses an account this server does not have: its interest and messages are dropped"
                    );
                }
            }
        }
        found
    }

    fn on_remote_sub(&mut self, sub: starling_proto::RemoteSub<'_>) {
        let Some(account) = self.account(sub.account) else {
            return;
        };
        let link = self.link.clone().expect("registered");
        let key = remote_key(sub.account, sub.subject, sub.queue);
        let weight = sub.weight.max(1);
        if link.update_remote(&key, weight) {
            return;
        }
        let s = Arc::new(Subscription::new(self.conn.clone(), b"", Target::Wire));
        s.set_weight(weight);
        match account.insert_unannounced(&s, sub.subject, sub.queue) {
            Ok(handle) => link.add_remote(
                key,
                RemoteSub {
                    account,
                    owned: OwnedSub { sub: s, handle },
                },
            ),
            Err(_) => {
                warn!(subject = %String::from_utf8_lossy(sub.subject), "invalid subscription from route");
                self.push(|b| encode::write_err(b, "Invalid Subscription"));
            }
        }
    }

    fn on_remote_unsub(&mut self, sub: starling_proto::RemoteSub<'_>) {
        let link = self.link.as_ref().expect("registered");
        if let Some(remote) = link.remove_remote(&remote_key(sub.account, sub.subject, sub.queue)) {
            remote
                .account
                .remove_unannounced(&remote.owned.sub, &remote.owned.handle);
        }
    }

    fn ping_timer(&mut self) -> Result<(), Stop> {
        if self.pings_out + 1 > self.broker.opts().max_pings_out {
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
        self.touched.flush();
        Ok(())
    }

    fn push(&mut self, build: impl FnOnce(&mut BytesMut)) {
        self.touched.push(&self.conn, build);
    }
}

/// A peer's interest keyed as nats-server keys it: `account subject [queue]`.
fn remote_key(account: &[u8], subject: &[u8], queue: Option<&[u8]>) -> Bytes {
    let mut k = BytesMut::with_capacity(
        account.len() + 1 + subject.len() + queue.map_or(0, |q| q.len() + 1),
    );
    k.put_slice(account);
    k.put_u8(b' ');
    k.put_slice(subject);
    if let Some(q) = queue {
        k.put_u8(b' ');
        k.put_slice(q);
    }
    k.freeze()
}
