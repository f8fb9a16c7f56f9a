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
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, trace, warn};

use super::discovery::{dial_discovered, DialTarget};
use super::routes::{url_host_port, RemoteSub, RouteLink, Routes};
use crate::account::Account;
use crate::broker::Broker;
use crate::conn::reader::{self, Close, Keepalive, Protocol};
use crate::conn::{write_loop, ClosedReason, Conn, ConnKind};
use crate::delivery::{self, Msg, Touched};
use crate::subscription::{OwnedSub, Subscription, Target};

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
        keepalive: Keepalive::default(),
        parser: RouteParser::new(Limits {
            max_control_line: opts.max_control_line,
            max_payload: crate::options::MAX_PAYLOAD_CEILING,
        }),
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
    keepalive: Keepalive,
    parser: RouteParser,
    /// The account of the last routed message or interest: peers send runs of one account, so
    /// this saves the look-up by name for most of them.
    last_account: Option<Arc<Account>>,
    /// Accounts the peer used that this server does not have (warned about once).
    unknown_accounts: HashSet<Bytes>,
}

impl Route {
    async fn run<R: AsyncRead + Unpin>(&mut self, reader: R) {
        let every = self.broker.opts().ping_interval;
        // As nats-server: the first PING goes out after 1 s (it measures the RTT).
        let first = every.min(std::time::Duration::from_secs(1));
        reader::read_loop(self, reader, first, every).await;
    }

    fn handle_op(&mut self, op: RouteOp<'_>, chunk: &Bytes) -> Result<(), Close> {
        match op {
            RouteOp::Connect(json) => self.on_connect(json),
            RouteOp::Info(json) => self.on_info(json),
            RouteOp::Ping => {
                self.push(|b| b.put_slice(encode::PONG));
                Ok(())
            }
            RouteOp::Pong => {
                self.keepalive.pong(&self.conn);
                Ok(())
            }
            RouteOp::Ok => Ok(()),
            RouteOp::Err(text) => {
                debug!(cid = self.conn.cid, error = %String::from_utf8_lossy(text), "route error from peer");
                Err(Close::silent(ClosedReason::ParseError))
            }
            _ if self.link.is_none() => {
                // Interest or messages before the handshake completed.
                Err(Close::silent(ClosedReason::ProtocolViolation))
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
    fn on_connect(&mut self, json: &[u8]) -> Result<(), Close> {
        let routes = &self.routes;
        // A client that dialled the route port by mistake sends `lang`.
        if let Ok(client) = Connect::from_json(json) {
            if client.lang.is_some() {
                return Err(Close::err(
                    "attempted to connect to route port",
                    ClosedReason::ProtocolViolation,
                ));
            }
        }
        let connect =
            RouteConnect::from_json(json).map_err(|_| Close::silent(ClosedReason::ParseError))?;
        let config = routes.config();
        if let (Some(user), Some(pass)) = (&config.user, &config.password) {
            if !(crate::auth::credentials_match(connect.user.as_deref(), user)
                & crate::auth::credentials_match(connect.pass.as_deref(), pass))
            {
                return Err(Close::err(
                    "Authorization Violation",
                    ClosedReason::AuthenticationViolation,
                ));
            }
        }
        if connect.name == self.broker.identity().server_id() {
            self.outcome = Some(Outcome::SelfRoute);
            return Err(Close::silent(ClosedReason::ProtocolViolation));
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
    ) -> Result<(), Close> {
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
        Err(Close {
            reason: ClosedReason::ProtocolViolation,
            err: err.map(Into::into),
        })
    }

    fn on_info(&mut self, json: &[u8]) -> Result<(), Close> {
        let info = Info::from_json(json).map_err(|_| Close::silent(ClosedReason::ParseError))?;
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
            return Err(Close::silent(ClosedReason::ProtocolViolation));
        }
        if routes.config().user.is_some() && self.dial.is_none() && !self.connected {
            return Err(Close::err(
                "Authorization Violation",
                ClosedReason::AuthenticationViolation,
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
                Err(Close::silent(ClosedReason::DuplicateRoute))
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
        if let Some((existing, old)) = link.update_remote(&key, weight) {
            if sub.queue.is_some() && old != weight {
                // Leafnodes are told the hub's whole interest, queue weights included.
                let delta = i64::from(weight) - i64::from(old);
                account.weight_changed(&existing, sub.subject, sub.queue, delta, false);
            }
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

    fn push(&mut self, build: impl FnOnce(&mut BytesMut)) {
        self.touched.push(&self.conn, build);
    }
}

impl Protocol for Route {
    type Parser = RouteParser;

    fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    fn parser(&mut self) -> &mut RouteParser {
        &mut self.parser
    }

    fn keepalive(&mut self) -> &mut Keepalive {
        &mut self.keepalive
    }

    #[inline]
    fn handle(&mut self, op: RouteOp<'_>, chunk: &Bytes) -> Result<bool, Close> {
        self.handle_op(op, chunk).map(|()| true)
    }

    fn parse_error(&self, e: &starling_proto::ProtoError) -> Close {
        debug!(cid = self.conn.cid, error = %e, "route protocol error");
        Close {
            reason: ClosedReason::ParseError,
            err: e.err_text().map(Into::into),
        }
    }

    fn count_in(&mut self, msgs: u64, bytes: u64) {
        self.conn.count_in(msgs, bytes);
        self.broker.counters().add_in(msgs, bytes);
    }

    async fn after_read(
        &mut self,
        _buf: &mut BytesMut,
        handled: Result<(), Close>,
    ) -> Result<(), Close> {
        self.touched.flush();
        handled
    }

    /// Activity makes a PING unnecessary, unless the RTT is still unmeasured.
    fn ping_timer(&mut self) -> Result<(), Close> {
        let max = self.broker.opts().max_pings_out;
        if self.keepalive.tick(&self.conn, max, true)? {
            self.push(|b| b.put_slice(encode::PING));
            self.touched.flush();
        }
        Ok(())
    }

    fn close(&mut self, close: Close) {
        if let Some(text) = &close.err {
            self.conn.send(|b| encode::write_err(b, text.as_ref()));
        }
        trace!(cid = self.conn.cid, reason = %close.reason, "route closing");
        self.conn.close(close.reason);
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
