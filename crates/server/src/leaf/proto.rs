//! One leafnode connection, either side, on the shared read loop (`conn::reader`): the
//! handshake, then interest (`LS+`, `LS-`) and messages (`LMSG`, leaf `HMSG`), keepalive.
//!
//! The handshake, as nats-server 2.9.10 and 2.15.1 do it (verified on the wire):
//! - The accepting side (the hub) sends `INFO` first, with `auth_required:true` even without
//!   leafnode authorization, a `nonce`, `client_id`, `info_on_connect:true` and
//!   `leafnode_urls` (a 2.10+ leaf refuses an INFO without `client_id` and `leafnode_urls` as
//!   "wrong port").
//! - The soliciting side (the leaf) answers with `CONNECT` only (no PING), naming its server,
//!   its cluster, `headers` and, 2.10+, `remote_account` (its local account).
//! - The hub authenticates it and binds it to an account, then sends a second `INFO` with
//!   `connect_info:true` and `remote_account`, then `LS+` for the account's whole interest
//!   and its `$LDS.` subject. When the leaf gets that INFO it registers too and sends its own
//!   `LS+` (local interest and its `$LDS.`).
//!
//! Unlike a route message, a message from a leafnode is delivered to local clients *and*
//! routes (when the leaf joined us) and other leafnodes: see `delivery.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use starling_proto::{encode, Connect, Info, LeafParser, Limits, RouteOp};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::config::LOOP_RECONNECT_DELAY;
use super::links::{key, origin_hash, LeafLink, LeafPeer, Leafs, RegisterError, LDS_PREFIX};
use super::solicit::RemoteState;
use crate::account::Account;
use crate::broker::Broker;
use crate::conn::reader::{self, Close, Keepalive, Protocol};
use crate::conn::{write_loop, ClosedReason, Conn};
use crate::delivery::{self, Msg, Touched};
use crate::subscription::{OwnedSub, Subscription, Target};

/// Which side of the connection this server is.
pub(crate) enum Role {
    /// The leaf joined us (we are its hub). `nonce` went out in our INFO.
    Accepted { nonce: String },
    /// We joined a hub; its INFO was read before the read loop started (it may have led to a
    /// TLS handshake).
    Solicited {
        remote: Arc<RemoteState>,
        info: Box<Info>,
    },
}

/// How a leafnode connection ended.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Outcome {
    /// It was registered (the handshake completed).
    pub(crate) registered: bool,
    /// A loop was detected (by either side): re-dial only after [`LOOP_RECONNECT_DELAY`].
    pub(crate) loop_detected: bool,
}

/// The INFO a hub sends a leafnode that just connected.
pub(crate) fn hub_info(broker: &Broker, leafs: &Leafs, conn: &Conn, nonce: &str) -> Info {
    let addr = leafs.listen_addr();
    let own = leafs.leafnode_urls();
    // Ours first, then those our cluster peers gossiped (route INFO `leafnode_urls`).
    let mut urls = own.clone();
    for link in broker.routes().map(|r| r.links()).unwrap_or_default() {
        for u in link.info().leafnode_urls {
            if !urls.contains(&u) {
                urls.push(u);
            }
        }
    }
    let (host, port) = match own.first().and_then(|u| u.rsplit_once(':')) {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(0)),
        None => (
            addr.map(|a| a.ip().to_string()).unwrap_or_default(),
            addr.map_or(0, |a| a.port()),
        ),
    };
    let mut info =
        broker
            .identity()
            .route_info(broker.config().max_payload, &format!("{host}:{port}"), port);
    info.proto = 1;
    info.auth_required = true;
    info.ip = own.first().cloned();
    info.client_id = conn.cid;
    info.nonce = Some(nonce.to_string());
    info.info_on_connect = true;
    info.leafnode_urls = urls;
    info.cluster = broker.routes().map(|r| r.name());
    #[cfg(feature = "tls")]
    {
        info.tls_required = leafs.tls().is_some();
        info.tls_verify = leafs.tls().is_some_and(|t| t.verifies_clients());
    }
    info
}

/// Serves one leafnode connection until it ends.
pub(crate) async fn serve<R, W>(
    broker: Arc<Broker>,
    leafs: Arc<Leafs>,
    conn: Arc<Conn>,
    reader: R,
    writer: W,
    remote_addr: Option<SocketAddr>,
    role: Role,
) -> Outcome
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let opts = broker.config();
    broker.lifecycle().spawn(write_loop(
        conn.clone(),
        writer,
        opts.write_deadline,
        opts.drain_timeout,
    ));
    let auth_timeout = leafs
        .config()
        .auth_timeout
        .unwrap_or_else(|| opts.effective_auth_timeout());
    let mut leaf = Leaf {
        broker: broker.clone(),
        leafs: leafs.clone(),
        conn: conn.clone(),
        remote_addr,
        parser: LeafParser::new(Limits {
            max_control_line: opts.max_control_line,
            max_payload: opts.max_payload,
        }),
        keepalive: Keepalive::default(),
        touched: Touched::default(),
        link: None,
        account: None,
        pending: None,
        solicited: None,
        hub_info: None,
        nonce: None,
        deadline: Instant::now() + auth_timeout,
        outcome: Outcome::default(),
    };
    match role {
        Role::Accepted { nonce } => leaf.nonce = Some(nonce),
        Role::Solicited { remote, info } => {
            conn.set_solicited_leaf(true);
            leaf.solicited = Some(remote);
            if let Err(close) = leaf.on_hub_info(*info) {
                leaf.close(close);
            }
        }
    }
    if !conn.is_closed() {
        let every = opts.ping_interval;
        // As nats-server: the first PING after 1 s (it measures the RTT).
        let first = every.min(Duration::from_secs(1));
        reader::read_loop(&mut leaf, reader, first, every).await;
    }
    conn.close(ClosedReason::ServerShutdown); // no-op if a reason is set
    leaf.retire();
    leaf.outcome
}

/// A hub's CONNECT waiting for the authentication verdict.
struct Pending {
    connect: Connect,
}

struct Leaf {
    broker: Arc<Broker>,
    leafs: Arc<Leafs>,
    conn: Arc<Conn>,
    remote_addr: Option<SocketAddr>,
    parser: LeafParser,
    keepalive: Keepalive,
    touched: Touched,
    link: Option<Arc<LeafLink>>,
    /// The account this connection is bound to, once it is.
    account: Option<Arc<Account>>,
    pending: Option<Pending>,
    /// The remote we dialled (soliciting side).
    solicited: Option<Arc<RemoteState>>,
    /// Soliciting side: the hub's first INFO, until the handshake completes.
    hub_info: Option<Info>,
    /// Accepting side: the nonce of our INFO.
    nonce: Option<String>,
    /// Until when the peer may take to complete the handshake.
    deadline: Instant,
    outcome: Outcome,
}

impl Leaf {
    fn handle_op(&mut self, op: RouteOp<'_>, chunk: &Bytes) -> Result<bool, Close> {
        match op {
            RouteOp::Connect(json) => return self.on_connect(json),
            RouteOp::Info(json) => self.on_info(json)?,
            RouteOp::Ping => self.push(|b| b.put_slice(encode::PONG)),
            RouteOp::Pong => self.keepalive.pong(&self.conn),
            RouteOp::Ok => {}
            RouteOp::Err(text) => return Err(self.on_err(text)),
            _ if self.link.is_none() => {
                // Interest or messages before the handshake completed.
                return Err(Close::err(
                    "Authorization Violation",
                    ClosedReason::ProtocolViolation,
                ));
            }
            RouteOp::Sub(sub) => self.on_sub(sub)?,
            RouteOp::Unsub(sub) => self.on_unsub(sub),
            RouteOp::Msg(m) => {
                if !self.may_receive(m.subject) {
                    debug!(cid = self.conn.cid, subject = %String::from_utf8_lossy(m.subject), "leafnode message not allowed: dropped");
                } else if let Some(account) = &self.account {
                    let msg =
                        Msg::routed(m.subject, m.reply, m.header_len, m.data, chunk, m.queues);
                    delivery::publish(&self.broker, account, &self.conn, &msg, &mut self.touched);
                }
            }
        }
        Ok(true)
    }

    // --- Soliciting side. ---

    /// The hub's first INFO: send our CONNECT; register at once unless the hub will answer
    /// the CONNECT with an INFO of its own (`info_on_connect`).
    fn on_hub_info(&mut self, info: Info) -> Result<(), Close> {
        let remote = self.solicited.clone().expect("soliciting side");
        if info.client_id == 0 && info.leafnode_urls.is_empty() {
            // A client or route port: nats-server's "attempted to connect to a wrong port".
            warn!(url = %remote.current_url(), "leafnode remote is not a leafnode port");
            return Err(Close::silent(ClosedReason::ProtocolViolation));
        }
        if info.server_id == self.broker.identity().server_id() {
            warn!("leafnode remote is this server itself");
            return Err(Close::silent(ClosedReason::ProtocolViolation));
        }
        self.conn.set_headers(info.headers);
        if let Some(cluster) = info.cluster.as_deref().filter(|c| !c.is_empty()) {
            self.conn.set_leaf_origin(origin_hash(cluster));
        }
        remote.learn_urls(&info.leafnode_urls);
        let account = self.local_account(&remote)?;
        let connect = remote.connect_json(&self.broker, &account, info.nonce.as_deref());
        let connect = connect.map_err(|e| {
            warn!(error = %e, "leafnode remote: cannot build CONNECT");
            Close::silent(ClosedReason::ProtocolViolation)
        })?;
        self.push(|b| {
            b.put_slice(b"CONNECT ");
            b.put_slice(connect.as_bytes());
            b.put_slice(b"\r\n");
        });
        self.touched.flush();
        let wait = info.info_on_connect;
        self.account = Some(account);
        self.hub_info = Some(info);
        if !wait {
            self.finish_solicited(None)?;
        }
        Ok(())
    }

    fn local_account(&self, remote: &RemoteState) -> Result<Arc<Account>, Close> {
        let name = remote.config().account.as_deref();
        let accounts = self.broker.accounts();
        match name {
            None => Ok(accounts.global().clone()),
            Some(n) => accounts.get(n).ok_or_else(|| {
                warn!(
                    account = n,
                    "leafnode remote names an account this server does not have"
                );
                Close::silent(ClosedReason::ProtocolViolation)
            }),
        }
    }

    /// The hub accepted us (its `connect_info` INFO, or its first INFO without
    /// `info_on_connect`): bind, register, send our interest.
    fn finish_solicited(&mut self, remote_account: Option<String>) -> Result<(), Close> {
        let Some(info) = self.hub_info.take() else {
            return Ok(());
        };
        let account = self.account.clone().expect("set with the CONNECT");
        let remote = self.solicited.clone().expect("soliciting side");
        if account.bind(&self.conn).is_err() {
            return Err(Close::silent(ClosedReason::MaxAccountConnectionsExceeded));
        }
        let permissions = remote
            .config()
            .permissions()
            .map(|p| Arc::new(crate::permissions::Compiled::new(&p)));
        self.apply_permissions(permissions.clone());
        let peer = LeafPeer {
            id: info.server_id.clone(),
            name: if info.server_name.is_empty() {
                info.server_id.clone()
            } else {
                info.server_name.clone()
            },
            addr: self.remote_addr,
            account: remote_account,
        };
        let link = Arc::new(LeafLink::new(
            self.conn.clone(),
            account.clone(),
            true,
            peer,
            permissions,
        ));
        match self.leafs.register(&link, b"") {
            Ok(snapshot) => self
                .broker
                .lifecycle()
                .spawn(Leafs::sync(link.clone(), snapshot)),
            Err(RegisterError::Duplicate) => {
                warn!(hub = %link.remote_name, "already connected to this hub for this account");
                return Err(Close::silent(ClosedReason::ProtocolViolation));
            }
        }
        self.link = Some(link.clone());
        self.outcome.registered = true;
        remote.connected();
        info!(
            hub = %link.remote_name,
            url = %remote.current_url(),
            account = %account.name(),
            hub_account = link.remote_account.as_deref().unwrap_or(""),
            "Leafnode connection created"
        );
        self.broker.leaf_connected(&link);
        Ok(())
    }

    fn on_info(&mut self, json: &[u8]) -> Result<(), Close> {
        let info = Info::from_json(json).map_err(|_| Close::silent(ClosedReason::ParseError))?;
        if self.solicited.is_some() && self.link.is_none() && info.connect_info {
            return self.finish_solicited(info.remote_account.clone());
        }
        // Asynchronous INFO (updated leafnode_urls, lame duck): the remote keeps the URLs.
        if let Some(remote) = &self.solicited {
            remote.learn_urls(&info.leafnode_urls);
        }
        Ok(())
    }

    fn on_err(&mut self, text: &[u8]) -> Close {
        let text = String::from_utf8_lossy(text);
        if text.contains("Loop detected") {
            self.outcome.loop_detected = true;
            warn!(error = %text, "leafnode peer detected a loop");
        } else {
            warn!(error = %text, "leafnode error from peer");
        }
        Close::silent(ClosedReason::ParseError)
    }

    // --- Accepting side. ---

    /// The leaf introduces itself: authenticate it (possibly asynchronously: parsing stops
    /// until the verdict, see `after_read`), then check it.
    fn on_connect(&mut self, json: &[u8]) -> Result<bool, Close> {
        if self.solicited.is_some() || self.link.is_some() || self.pending.is_some() {
            return Err(Close::silent(ClosedReason::ProtocolViolation));
        }
        let connect =
            Connect::from_json(json).map_err(|_| Close::silent(ClosedReason::ParseError))?;
        self.pending = Some(Pending { connect });
        Ok(false)
    }

    /// Decides about a pending CONNECT: the leafnode authorization when configured, else the
    /// server's users as for a client (as nats-server).
    async fn finish_pending(&mut self) -> Result<(), Close> {
        let Some(Pending { connect }) = self.pending.take() else {
            return Ok(());
        };
        let refused = || {
            Close::err(
                "Authorization Violation",
                ClosedReason::AuthenticationViolation,
            )
        };
        let mut permissions = None;
        let account = match self.leaf_authorization(&connect) {
            Some(decided) => decided.ok_or_else(refused)?,
            None => match self.broker.auth().anonymous() {
                Some(account) if connect.user.is_none() && connect.jwt.is_none() => account.clone(),
                _ => {
                    let presented = crate::auth::Presented {
                        connect: connect.clone(),
                        nonce: self.nonce.clone(),
                        peer_certificates: Vec::new(),
                        listener: None,
                    };
                    let verdict = self
                        .broker
                        .auth()
                        .decide(
                            self.conn.cid,
                            self.remote_addr,
                            &presented,
                            self.broker.accounts(),
                        )
                        .await;
                    match verdict {
                        Ok(v) => {
                            // The user's permissions, from the leaf's side: what it may
                            // publish (send us) and subscribe to (be sent).
                            permissions = v.permissions;
                            v.account
                        }
                        Err(why) => {
                            debug!(cid = self.conn.cid, why, "leafnode refused");
                            return Err(refused());
                        }
                    }
                }
            },
        };
        // As nats-server: these come after authentication (a client on this port with
        // the wrong credentials is told `Authorization Violation`).
        if connect.lang.is_some() {
            return Err(Close::err(
                "attempted to connect to leaf node port",
                ClosedReason::ProtocolViolation,
            ));
        }
        if let Some(gw) = &connect.gateway {
            return Err(Close::err(
                format!("Rejecting connection from gateway {gw:?} on the leafnode port"),
                ClosedReason::ProtocolViolation,
            ));
        }
        if let (Some(theirs), Some(routes)) = (&connect.cluster, self.broker.routes()) {
            if !theirs.is_empty() && *theirs == routes.name() {
                return Err(Close::err(
                    "remote leafnode has same cluster name",
                    ClosedReason::ProtocolViolation,
                ));
            }
        }
        if self.conn.is_closed() {
            return Err(Close::silent(ClosedReason::ClientClosed));
        }
        if account.bind(&self.conn).is_err() {
            return Err(Close::err(
                "maximum account active connections exceeded",
                ClosedReason::MaxAccountConnectionsExceeded,
            ));
        }
        self.conn.set_headers(connect.headers);
        if let Some(cluster) = connect.cluster.as_deref().filter(|c| !c.is_empty()) {
            self.conn.set_leaf_origin(origin_hash(cluster));
        }
        self.account = Some(account.clone());
        let name = connect
            .name
            .clone()
            .or_else(|| connect.server_id.clone())
            .unwrap_or_default();
        self.apply_permissions(permissions.clone());
        let peer = LeafPeer {
            id: connect.server_id.clone().unwrap_or_default(),
            name,
            addr: self.remote_addr,
            account: connect.remote_account.clone().filter(|a| !a.is_empty()),
        };
        let link = Arc::new(LeafLink::new(
            self.conn.clone(),
            account.clone(),
            false,
            peer,
            permissions,
        ));
        // The INFO answering the CONNECT goes first, then our interest.
        let mut info = hub_info(
            &self.broker,
            &self.leafs,
            &self.conn,
            self.nonce.as_deref().unwrap_or(""),
        );
        info.nonce = None;
        info.connect_info = true;
        info.remote_account = Some(account.name().to_string());
        let mut first = BytesMut::new();
        encode::write_info(&mut first, &info);
        if let Ok(snapshot) = self.leafs.register(&link, &first) {
            self.broker
                .lifecycle()
                .spawn(Leafs::sync(link.clone(), snapshot));
        }
        self.link = Some(link.clone());
        self.outcome.registered = true;
        info!(
            leaf = %link.remote_name,
            addr = ?self.remote_addr,
            account = %account.name(),
            "Leafnode connection created"
        );
        self.broker.leaf_connected(&link);
        Ok(())
    }

    /// `None` without leafnode authorization; else whether (and to which account) the
    /// CONNECT's user and password are admitted.
    fn leaf_authorization(&self, connect: &Connect) -> Option<Option<Arc<Account>>> {
        let config = self.leafs.config();
        if !config.has_authorization() {
            return None;
        }
        let accounts = self.broker.accounts();
        let account_named = |name: Option<&str>| match name {
            None => Some(accounts.global().clone()),
            Some(n) => accounts.get(n),
        };
        let given_user = connect.user.as_deref();
        let given_pass = connect.pass.as_deref();
        if let (Some(user), Some(pass)) = (&config.user, &config.password) {
            let ok = crate::auth::credentials_match(given_user, user)
                & crate::auth::credentials_match(given_pass, pass);
            return Some(if ok {
                account_named(config.account.as_deref())
            } else {
                None
            });
        }
        let found = config
            .users
            .iter()
            .find(|u| Some(u.user.as_str()) == given_user);
        Some(match found {
            Some(u) if crate::auth::credentials_match(given_pass, &u.password) => {
                account_named(u.account.as_deref())
            }
            _ => None,
        })
    }

    // --- Interest. ---

    fn on_sub(&mut self, sub: starling_proto::RemoteSub<'_>) -> Result<(), Close> {
        let link = self.link.clone().expect("registered");
        let account = link.account.clone();
        if sub.subject.starts_with(LDS_PREFIX) && self.leafs.lds(account.name()) == sub.subject {
            return Err(self.loop_detected(&account));
        }
        // As nats-server: a literal subject the peer may not be sent is refused here; a
        // wildcard is taken, and each message checked when it is sent (delivery.rs).
        if let Some(p) = &link.permissions {
            let literal = starling_sublist::subject_is_literal(sub.subject);
            if literal
                && !sub.subject.starts_with(LDS_PREFIX)
                && !p.may_subscribe(sub.subject, sub.queue)
            {
                debug!(subject = %String::from_utf8_lossy(sub.subject), "leafnode interest not allowed: ignored");
                return Ok(());
            }
        }
        let key = key(sub.subject, sub.queue);
        let weight = sub.weight.max(1);
        if let Some((existing, old)) = link.update_remote(&key, weight) {
            if sub.queue.is_some() && old != weight {
                let delta = i64::from(weight) - i64::from(old);
                account.weight_changed(&existing, sub.subject, sub.queue, delta, !link.solicited);
            }
            return Ok(());
        }
        let s = Arc::new(Subscription::new(self.conn.clone(), b"", Target::Wire));
        s.set_weight(weight);
        // A leaf that joined us is like a client: its interest goes to routes as well. A hub's
        // interest stays off our routes (our peers have their own leaf connections).
        let inserted = if link.solicited {
            account.insert_unannounced(&s, sub.subject, sub.queue)
        } else {
            account.insert(&s, sub.subject, sub.queue)
        };
        match inserted {
            Ok(handle) => link.add_remote(key, OwnedSub { sub: s, handle }),
            Err(_) => {
                debug!(subject = %String::from_utf8_lossy(sub.subject), "invalid subscription from leafnode");
                self.push(|b| encode::write_err(b, "Invalid Subscription"));
            }
        }
        Ok(())
    }

    fn on_unsub(&mut self, sub: starling_proto::RemoteSub<'_>) {
        let link = self.link.as_ref().expect("registered");
        if let Some(owned) = link.remove_remote(&key(sub.subject, sub.queue)) {
            remove_remote(link, &owned);
        }
    }

    /// Our own `$LDS.` subject came back: this leafnode closes a loop.
    fn loop_detected(&mut self, account: &Account) -> Close {
        self.outcome.loop_detected = true;
        let delay = crate::gotime::go_duration(LOOP_RECONNECT_DELAY);
        let text = format!(
            "Loop detected for leafnode account={:?}. Delaying attempt to reconnect for {delay}",
            account.name()
        );
        warn!("{text}");
        Close::err(text, ClosedReason::ProtocolViolation)
    }

    fn push(&mut self, build: impl FnOnce(&mut BytesMut)) {
        self.touched.push(&self.conn, build);
    }

    /// Gives the connection the peer's permissions (delivery to it checks them).
    fn apply_permissions(&mut self, permissions: Option<Arc<crate::permissions::Compiled>>) {
        let conn_perms = permissions.map(|c| Arc::new(crate::permissions::ConnPermissions::new(c)));
        self.conn.set_permissions(conn_perms);
    }

    /// Whether the peer may send us a message on `subject`.
    fn may_receive(&self, subject: &[u8]) -> bool {
        self.link
            .as_ref()
            .and_then(|l| l.permissions.as_ref())
            .is_none_or(|p| p.may_publish(subject))
    }

    /// The connection ended: its interest leaves the sublist, it leaves its account.
    fn retire(&mut self) {
        if let Some(link) = self.link.take() {
            for owned in link.take_remotes() {
                remove_remote(&link, &owned);
            }
            self.leafs.unregister(&link);
            self.broker
                .leaf_disconnected(&link, self.outcome.loop_detected);
        }
        if let Some(account) = &self.account {
            account.unbind(&self.conn);
        }
    }
}

fn remove_remote(link: &LeafLink, owned: &OwnedSub) {
    if link.solicited {
        link.account.remove_unannounced(&owned.sub, &owned.handle);
    } else {
        link.account.remove(&owned.sub, &owned.handle);
    }
}

impl Protocol for Leaf {
    type Parser = LeafParser;

    fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    fn parser(&mut self) -> &mut LeafParser {
        &mut self.parser
    }

    fn keepalive(&mut self) -> &mut Keepalive {
        &mut self.keepalive
    }

    #[inline]
    fn handle(&mut self, op: RouteOp<'_>, chunk: &Bytes) -> Result<bool, Close> {
        self.handle_op(op, chunk)
    }

    fn parse_error(&self, e: &starling_proto::ProtoError) -> Close {
        debug!(cid = self.conn.cid, error = %e, "leafnode protocol error");
        Close {
            reason: ClosedReason::ParseError,
            err: e.err_text().map(Into::into),
        }
    }

    fn count_in(&mut self, msgs: u64, bytes: u64) {
        self.conn.count_in(msgs, bytes);
        self.broker.counters().add_in(msgs, bytes);
        if let Some(account) = &self.account {
            account.count_in(msgs, bytes);
        }
    }

    async fn after_read(
        &mut self,
        buf: &mut BytesMut,
        handled: Result<(), Close>,
    ) -> Result<(), Close> {
        let mut result = handled;
        while result.is_ok() && self.pending.is_some() {
            self.touched.flush();
            result = self.finish_pending().await;
            if result.is_ok() && !buf.is_empty() {
                result = reader::process(self, buf);
            }
        }
        self.touched.flush();
        result
    }

    /// Activity makes a PING unnecessary, unless the RTT is still unmeasured.
    fn ping_timer(&mut self) -> Result<(), Close> {
        if self.link.is_none() {
            return Ok(()); // the handshake deadline covers this phase
        }
        let max = self.broker.config().max_pings_out;
        if self.keepalive.tick(&self.conn, max, true)? {
            self.push(|b| b.put_slice(encode::PING));
            self.touched.flush();
        }
        Ok(())
    }

    fn deadline(&self) -> Option<(Instant, Close)> {
        if self.link.is_some() {
            return None;
        }
        let close = if self.solicited.is_some() {
            Close::err(
                "Stale Leaf Node Connection - Closing",
                ClosedReason::StaleConnection,
            )
        } else {
            Close::err(
                "Authentication Timeout",
                ClosedReason::AuthenticationTimeout,
            )
        };
        Some((self.deadline, close))
    }

    fn close(&mut self, close: Close) {
        if let Some(text) = &close.err {
            self.conn.send(|b| encode::write_err(b, text.as_ref()));
        }
        debug!(cid = self.conn.cid, reason = %close.reason, "leafnode closing");
        self.conn.close(close.reason);
    }
}
