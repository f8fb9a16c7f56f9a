//! One socket client: the INFO/CONNECT handshake, the reader loop, and the protocol ops.
//!
//! The reader reads large chunks, parses every complete op in them, routes each PUB through
//! the sublist into the subscribers' outbound queues, and wakes each touched writer once at the
//! end of the chunk. Errors become exactly the `-ERR` (or silent close) nats-server produces.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use starling_proto::{encode, ClientOp, ClientParser, Connect, Limits, ProtoError, Publish};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, error};

use crate::account::Account;
use crate::auth::{tightest, Check, Peer, PendingCheck, Presented, UserLimits, Verdict};
use crate::broker::Broker;
use crate::conn::reader::{self, Close, Keepalive, Protocol};
use crate::conn::{write_loop, ClosedReason, Conn, ConnKind};
use crate::delivery::{self, Msg, Touched, NO_RESPONDERS_HDR};
use crate::events::Event;
use crate::permissions::{ConnPermissions, PublishCache};
use crate::subscription::{OwnedSub, Subscription, Target};

/// Accepts client connections on `listener` until the broker stops accepting.
pub(crate) async fn accept(broker: Arc<Broker>, listener: tokio::net::TcpListener) {
    let stop = broker.lifecycle().stop_accepting().clone();
    crate::transport::accept_loop(
        "client",
        listener,
        stop.cancelled_owned(),
        |stream, addr| {
            broker
                .lifecycle()
                .spawn(serve_tcp(broker.clone(), stream, addr));
        },
    )
    .await;
}

/// Serves one client accepted on the client listener: its TLS phase when the listener has
/// TLS, then the protocol.
async fn serve_tcp(broker: Arc<Broker>, tcp: TcpStream, addr: SocketAddr) {
    match broker.tls().cloned() {
        None => {
            let (r, w) = tcp.into_split();
            serve(broker, r, w, Some(addr)).await;
        }
        #[cfg(feature = "tls")]
        Some(tls) => serve_tls(broker, tls, tcp, addr).await,
        #[cfg(not(feature = "tls"))]
        Some(tls) => match *tls {},
    }
}

/// Serves one client connection over any byte stream (no TLS phase) until it closes.
pub(crate) async fn serve<R, W>(
    broker: Arc<Broker>,
    reader: R,
    mut writer: W,
    addr: Option<SocketAddr>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    if refuse_over_limit(&broker, &mut writer, addr).await {
        return;
    }
    let conn = broker.register_client(ConnKind::Client, addr);
    conn.saw_urls(broker.identity().urls_version());
    let nonce = broker.auth().needs_nonce().then(crate::auth::new_nonce);
    let info = first_info(&broker, &conn, addr, nonce.as_deref());
    conn.send(|b| encode::write_info(b, &info));
    let hello = Hello {
        nonce,
        peer_certificates: Vec::new(),
        #[cfg(feature = "websocket")]
        cookies: None,
        listener: None,
    };
    run_client(broker, conn, hello, reader, writer).await;
}

/// Serves one client that upgraded to WebSocket (and did TLS first, on `wss://`): the
/// protocol runs on the frames, with INFO as nats-server sends it to WebSocket clients.
#[cfg(feature = "websocket")]
pub(crate) async fn serve_ws<R, W>(
    broker: Arc<Broker>,
    reader: R,
    writer: W,
    addr: SocketAddr,
    accepted: crate::websocket::Accepted,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    use crate::transport::websocket;

    let negotiated = accepted.upgrade.negotiated;
    let max_payload = broker.config().max_payload;
    if broker.registry().len() >= broker.config().max_connections {
        let (_, mut w) = websocket::split(
            reader,
            writer,
            negotiated,
            max_payload,
            Box::new(|| {}),
            Box::new(|| crate::websocket::close_status(Some(ClosedReason::MaxConnectionsExceeded))),
        );
        refuse_over_limit(&broker, &mut w, Some(addr)).await;
        return;
    }
    let conn = broker.register_client(ConnKind::Client, Some(addr));
    conn.saw_urls(broker.identity().urls_version());
    if let Some(ip) = &accepted.upgrade.forwarded_for {
        debug!(cid = conn.cid, %addr, forwarded_for = %ip, "websocket client behind a proxy");
    }
    {
        let mut meta = conn.meta.lock();
        meta.websocket = true;
        #[cfg(feature = "tls")]
        {
            meta.tls = accepted.tls;
        }
    }
    let (wake, close) = (conn.clone(), conn.clone());
    let (r, w) = websocket::split(
        reader,
        writer,
        negotiated,
        max_payload,
        Box::new(move || wake.wake()),
        Box::new(move || crate::websocket::close_status(close.closed_reason())),
    );
    let nonce = broker.auth().needs_nonce().then(crate::auth::new_nonce);
    let info = crate::websocket::client_info(
        &broker,
        first_info(&broker, &conn, Some(addr), nonce.as_deref()),
    );
    conn.send(|b| encode::write_info(b, &info));
    let hello = Hello {
        nonce,
        peer_certificates: accepted.peer_certificates,
        cookies: Some(accepted.upgrade.cookies),
        listener: crate::websocket::auth_override(&broker),
    };
    run_client(broker, conn, hello, r, w).await;
}

/// What a client's handshake gave it to authenticate with.
struct Hello {
    /// The nonce its INFO carried, for an nkey signature.
    nonce: Option<String>,
    /// Its TLS certificate chain, if it presented one.
    peer_certificates: Vec<Vec<u8>>,
    /// Over WebSocket: the credentials its upgrade's cookies carried.
    #[cfg(feature = "websocket")]
    cookies: Option<crate::websocket::handshake::Cookies>,
    /// The listener's own credentials, when they replace the server's (WebSocket's).
    listener: Option<Arc<crate::auth::Override>>,
}

/// The INFO a client gets first: the server's, with this connection's nonce to sign when
/// there are nkey users.
fn first_info(
    broker: &Broker,
    conn: &Conn,
    addr: Option<SocketAddr>,
    nonce: Option<&str>,
) -> starling_proto::Info {
    let mut info = broker.client_info(conn.cid, addr);
    info.nonce = nonce.map(str::to_string);
    info
}

/// At max_connections, nats-server sends its INFO, then the error, then closes.
async fn refuse_over_limit<W: AsyncWrite + Unpin>(
    broker: &Broker,
    writer: &mut W,
    addr: Option<SocketAddr>,
) -> bool {
    if broker.registry().len() < broker.config().max_connections {
        return false;
    }
    let mut buf = BytesMut::new();
    encode::write_info(&mut buf, &broker.client_info(0, addr));
    encode::write_err(&mut buf, "maximum connections exceeded");
    let _ = writer.write_all(&buf).await;
    let _ = writer.shutdown().await;
    debug!(?addr, "maximum connections exceeded");
    true
}

/// A client on a TLS listener: INFO and the handshake (in the listener's order), then the
/// protocol inside TLS. The auth timer starts only after the handshake, as in nats-server.
#[cfg(feature = "tls")]
async fn serve_tls(
    broker: Arc<Broker>,
    tls: Arc<crate::transport::Tls>,
    mut tcp: TcpStream,
    addr: SocketAddr,
) {
    use crate::transport::tls::{is_probe, HandshakeError};

    if refuse_over_limit(&broker, &mut tcp, Some(addr)).await {
        return;
    }
    let conn = broker.register_client(ConnKind::Client, Some(addr));
    conn.saw_urls(broker.identity().urls_version());
    let nonce = broker.auth().needs_nonce().then(crate::auth::new_nonce);
    let mut info = first_info(&broker, &conn, Some(addr), nonce.as_deref());
    let mut plain = BytesMut::new();
    encode::write_info(&mut plain, &info);
    match tls
        .client_handshake(tcp, &plain, broker.config().allow_non_tls)
        .await
    {
        Ok(handshake) => {
            if !handshake.info_sent {
                info.tls_required = true; // the client chose TLS first
                conn.send(|b| encode::write_info(b, &info));
            }
            conn.meta.lock().tls = handshake.tls;
            let (r, w) = handshake.stream.split();
            let hello = Hello {
                nonce,
                peer_certificates: handshake.peer_certificates,
                #[cfg(feature = "websocket")]
                cookies: None,
                listener: None,
            };
            run_client(broker, conn, hello, r, w).await;
        }
        Err(e) => {
            let cid = conn.cid;
            match e {
                HandshakeError::Timeout => debug!(cid, %addr, "TLS handshake timeout"),
                // A plaintext client or a probe: nats-server logs these at debug only.
                HandshakeError::Io(e) if is_probe(&e) => {
                    debug!(cid, %addr, "TLS handshake error: {e}")
                }
                HandshakeError::Io(e) => error!(cid, %addr, "TLS handshake error: {e}"),
            }
            debug!(cid, "Client connection closed: TLS Handshake Failure");
            conn.close(ClosedReason::TlsHandshakeError);
            broker.retire_client(&conn);
        }
    }
}

/// Runs a registered client whose INFO is queued: its writer task, then its read loop.
async fn run_client<R, W>(broker: Arc<Broker>, conn: Arc<Conn>, hello: Hello, reader: R, writer: W)
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
    let mut client = Client::new(broker.clone(), conn.clone(), hello);
    client.run(reader).await;
    broker.retire_client(&conn);
}

/// Why a CONNECT waits for its verdict.
enum Pending {
    /// A password to compare with a bcrypt hash.
    Bcrypt(PendingCheck),
    /// The embedder's authenticators to ask.
    Chain,
}

/// The reader side of one socket client.
struct Client {
    broker: Arc<Broker>,
    conn: Arc<Conn>,
    /// The account, once known (at CONNECT, or at the first op when clients need not
    /// authenticate): the hot path's one look-up is in its sublist.
    account: Option<Arc<Account>>,
    /// A CONNECT whose password is being compared with a bcrypt hash: nothing after it is
    /// handled until that is done.
    pending_connect: Option<(Connect, Pending)>,
    /// When the client must have authenticated (`auth_timeout` after the read loop starts).
    auth_deadline: tokio::time::Instant,
    /// What the handshake gave the client to authenticate with.
    hello: Hello,
    /// When the client's authorization expires, once known.
    expires: Option<tokio::time::Instant>,
    /// Clients must authenticate within the auth timeout.
    auth_required: bool,
    /// The connection's permissions generation that [`Self::permissions`] was loaded at.
    permissions_generation: u64,
    /// The broker's configuration generation the parser's limits were set at.
    config_generation: u64,
    /// The user's permissions and this read loop's cache of publish checks, if it has any.
    permissions: Option<(Arc<ConnPermissions>, PublishCache)>,
    parser: ClientParser,
    /// The user's own limits, from its verdict.
    user_limits: UserLimits,
    /// CONNECT has been received.
    connected: bool,
    verbose: bool,
    pedantic: bool,
    no_responders: bool,
    keepalive: Keepalive,
    touched: Touched,
}

impl Client {
    fn new(broker: Arc<Broker>, conn: Arc<Conn>, hello: Hello) -> Self {
        let auth_required = broker.auth().auth_required() || hello.listener.is_some();
        let config = broker.config();
        let limits = Limits {
            max_control_line: config.max_control_line,
            max_payload: config.max_payload,
        };
        let config_generation = broker.config_generation();
        drop(config);
        Self {
            broker,
            conn,
            account: None,
            pending_connect: None,
            auth_deadline: tokio::time::Instant::now(),
            hello,
            expires: None,
            auth_required,
            permissions_generation: 0,
            config_generation,
            permissions: None,
            parser: ClientParser::new(limits),
            user_limits: UserLimits::default(),
            connected: false,
            // nats-server's defaults before (and under) CONNECT: verbose and pedantic.
            verbose: true,
            pedantic: true,
            no_responders: false,
            keepalive: Keepalive::default(),
            touched: Touched::default(),
        }
    }

    async fn run<R: AsyncRead + Unpin>(&mut self, reader: R) {
        let opts = self.broker.config();
        let every = opts.ping_interval;
        self.auth_deadline = tokio::time::Instant::now() + opts.effective_auth_timeout();
        reader::read_loop(self, reader, every, every).await;
    }

    fn handle_op(&mut self, op: ClientOp<'_>, chunk: &Bytes) -> Result<(), Close> {
        match op {
            ClientOp::Pub(p) => self.with_account(|c, account| c.on_pub(account, p, chunk)),
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.with_account(|c, account| {
                c.on_sub(account, subject, queue, sid);
                Ok(())
            }),
            ClientOp::Unsub { sid, max } => self.with_account(|c, account| {
                c.on_unsub(account, sid, max);
                Ok(())
            }),
            ClientOp::Ping => {
                self.bind_anonymous()?;
                self.push(|b| b.extend_from_slice(encode::PONG));
                if self.connected && !self.conn.mark_info_ready() {
                    self.first_pong_sent();
                }
                Ok(())
            }
            ClientOp::Pong => {
                self.bind_anonymous()?;
                self.keepalive.pong(&self.conn);
                Ok(())
            }
            ClientOp::Connect(json) => self.on_connect(json),
            // Tolerated, as nats-server does: its parser shares these states with routes.
            ClientOp::Ok | ClientOp::Info(_) => Ok(()),
            ClientOp::Err(_) => Err(Close::silent(ClosedReason::ProtocolViolation)),
        }
    }

    /// Runs `op` with the connection's account (binding the anonymous one first, see
    /// [`Self::bind_anonymous`]). The account is moved out and back rather than cloned: an
    /// `Arc` clone per message would be two atomic operations on a count every connection of
    /// the account shares.
    #[inline]
    fn with_account(
        &mut self,
        op: impl FnOnce(&mut Self, &Account) -> Result<(), Close>,
    ) -> Result<(), Close> {
        let account = match self.account.take() {
            Some(account) => account,
            None => {
                self.bind_anonymous()?;
                match self.account.take() {
                    Some(account) => account,
                    None => return Ok(()),
                }
            }
        };
        let result = op(self, &account);
        self.account = Some(account);
        result
    }

    /// For an op other than CONNECT before CONNECT: binds the account of clients that need
    /// not authenticate, or fails with `Authorization Violation` when they must.
    #[inline]
    fn bind_anonymous(&mut self) -> Result<(), Close> {
        if self.account.is_some() {
            return Ok(());
        }
        self.bind_anonymous_slow()
    }

    #[cold]
    fn bind_anonymous_slow(&mut self) -> Result<(), Close> {
        let violation = || {
            Close::err(
                "Authorization Violation",
                ClosedReason::AuthenticationViolation,
            )
        };
        if self.hello.listener.is_some() {
            return Err(violation()); // the listener's own credentials are required
        }
        let account = self
            .broker
            .auth()
            .anonymous()
            .ok_or_else(violation)?
            .clone();
        self.bind(&account)
    }

    /// Binds the connection to `account`, within the account's connection limit.
    fn bind(&mut self, account: &Arc<Account>) -> Result<(), Close> {
        account.bind(&self.conn).map_err(|_| {
            Close::err(
                "maximum account active connections exceeded",
                ClosedReason::MaxAccountConnectionsExceeded,
            )
        })?;
        self.account = Some(account.clone());
        self.apply_payload_limit();
        Ok(())
    }

    /// The parser's `max_payload`: the tightest of the server's, the account's and the
    /// user's.
    fn apply_payload_limit(&mut self) {
        let account = self.account.as_ref().and_then(|a| a.max_payload());
        let max = tightest([
            Some(self.broker.config().max_payload),
            account,
            self.user_limits.max_payload,
        ]);
        let mut limits = self.parser.limits();
        limits.max_payload = max.unwrap_or(limits.max_payload);
        self.parser.set_limits(limits);
    }

    fn on_connect(&mut self, json: &[u8]) -> Result<(), Close> {
        #[allow(unused_mut)]
        let mut connect =
            Connect::from_json(json).map_err(|_| Close::silent(ClosedReason::ParseError))?;
        #[cfg(feature = "websocket")]
        if let Some(cookies) = &self.hello.cookies {
            // As nats-server: what CONNECT leaves out, the upgrade's cookies may carry.
            fill(&mut connect.jwt, &cookies.jwt);
            fill(&mut connect.user, &cookies.user);
            fill(&mut connect.pass, &cookies.pass);
            fill(&mut connect.auth_token, &cookies.token);
        }
        if !(0..=1).contains(&connect.protocol) {
            return Err(Close::err(
                "invalid client protocol",
                ClosedReason::BadClientProtocolVersion,
            ));
        }
        if self.broker.auth().has_chain() {
            // The embedder's authenticators are async: the read loop awaits them, and ops
            // after this CONNECT wait for the verdict.
            self.pending_connect = Some((connect, Pending::Chain));
            return Ok(());
        }
        match self.broker.auth().authenticate(
            &connect,
            self.hello.nonce.as_deref(),
            self.peer(),
            self.hello.listener.as_deref(),
        ) {
            Check::Allowed(verdict) => self.admit(connect, verdict),
            Check::Denied => Err(self.refuse("invalid credentials".into())),
            Check::Pending(check) => {
                // Finished by the read loop once the bcrypt comparison is done.
                self.pending_connect = Some((connect, Pending::Bcrypt(check)));
                Ok(())
            }
        }
    }

    /// Finishes a CONNECT that could not be decided at once: asks the authenticator chain,
    /// and compares a password with its bcrypt hash on a blocking thread (so a storm of such
    /// connects never stalls the reactor); all within what is left of the auth timeout (the
    /// read loop's timer is not polled meanwhile). Then admits the client or closes it.
    async fn finish_pending_connect(&mut self) -> Result<(), Close> {
        let Some((connect, pending)) = self.pending_connect.take() else {
            return Ok(());
        };
        let deadline = self.auth_deadline;
        let timed_out = |_| {
            Close::err(
                "Authentication Timeout",
                ClosedReason::AuthenticationTimeout,
            )
        };
        let verdict = match pending {
            Pending::Bcrypt(check) => {
                tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(|| check.verify()))
                    .await
                    .map_err(timed_out)?
                    .ok()
                    .flatten()
                    .ok_or_else(|| "invalid credentials".to_string())
            }
            // The chain, then the configured users: the same decision `Server::recheck` makes.
            Pending::Chain => {
                let broker = self.broker.clone();
                let presented = self.presented(&connect);
                let addr = self.conn.meta.lock().addr;
                let auth = broker.auth();
                let decided = auth.decide(self.conn.cid, addr, &presented, broker.accounts());
                tokio::time::timeout_at(deadline, decided)
                    .await
                    .map_err(timed_out)?
            }
        };
        match verdict {
            Ok(verdict) => self.admit(connect, verdict),
            Err(reason) => Err(self.refuse(reason)),
        }
    }

    /// Where the client connects from and its certificate chain, for authentication.
    fn peer(&self) -> Peer<'_> {
        Peer {
            ip: self.conn.meta.lock().addr.map(|a| a.ip()),
            certificates: &self.hello.peer_certificates,
        }
    }

    /// What the client presented at CONNECT, for deciding about it (now, and at a recheck).
    fn presented(&self, connect: &Connect) -> Presented {
        Presented {
            connect: connect.clone(),
            nonce: self.hello.nonce.clone(),
            peer_certificates: self.hello.peer_certificates.clone(),
            listener: self.hello.listener.clone(),
        }
    }

    /// A refused CONNECT: logged and reported as an event, then `Authorization Violation`.
    fn refuse(&self, reason: String) -> Close {
        let addr = self.conn.meta.lock().addr;
        debug!(cid = self.conn.cid, ?addr, %reason, "authorization failed");
        self.broker.events().emit(Event::AuthorizationFailed {
            cid: self.conn.cid,
            addr,
            reason,
        });
        Close::err(
            "Authorization Violation",
            ClosedReason::AuthenticationViolation,
        )
    }

    /// Binds an authenticated client to its account, user and permissions, and applies the
    /// rest of its CONNECT.
    fn admit(&mut self, connect: Connect, verdict: Verdict) -> Result<(), Close> {
        let violation = || {
            Close::err(
                "Authorization Violation",
                ClosedReason::AuthenticationViolation,
            )
        };
        match &self.account {
            // Ops before CONNECT already put it in the anonymous account: it cannot move.
            Some(bound) if !Arc::ptr_eq(bound, &verdict.account) => return Err(violation()),
            Some(_) => {}
            None if self.connected => return Err(violation()),
            None => self.bind(&verdict.account)?,
        }
        if connect.no_responders && !connect.headers {
            return Err(Close::err(
                "no responders requires headers support",
                ClosedReason::NoRespondersRequiresHeaders,
            ));
        }
        if verdict.limits != UserLimits::default() {
            self.user_limits = verdict.limits;
            self.apply_payload_limit();
        }
        if let (Some(compiled), None) = (&verdict.permissions, &self.permissions) {
            let permissions = Arc::new(ConnPermissions::new(compiled.clone()));
            self.conn.set_permissions(Some(permissions.clone()));
            self.permissions_generation = self.conn.permissions_generation();
            self.permissions = Some((permissions, PublishCache::new()));
        }
        self.verbose = connect.verbose;
        self.pedantic = connect.pedantic;
        self.no_responders = connect.no_responders;
        self.conn.set_echo(connect.echo);
        self.conn.set_headers(connect.headers);
        self.conn.set_protocol(connect.protocol.max(0) as u8);
        {
            let mut meta = self.conn.meta.lock();
            meta.name = connect.name.clone();
            meta.lang = connect.lang.clone();
            meta.version = connect.version.clone();
            meta.user = verdict.user.clone();
            meta.presented = Some(Arc::new(self.presented(&connect)));
        }
        if self.conn.rtt().is_zero() {
            // As nats-server: the first estimate is the time from our INFO to the CONNECT.
            let since_info = std::time::SystemTime::now().duration_since(self.conn.start);
            self.conn.set_rtt(since_info.unwrap_or_default());
        }
        if let Some(at) = verdict.expires {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            self.expires = Some(tokio::time::Instant::now() + left);
        }
        let first = !self.connected;
        self.connected = true;
        self.ok();
        if first {
            self.broker.client_connected(&self.conn);
            self.broker.events().emit(Event::ClientAuthorized {
                cid: self.conn.cid,
                account: verdict.account.name().to_string(),
                user: verdict.user,
            });
        }
        Ok(())
    }

    fn on_pub(&mut self, account: &Account, p: Publish<'_>, chunk: &Bytes) -> Result<(), Close> {
        if p.header_len.is_some() && !self.conn.wants_headers() {
            // nats-server: "message headers not supported", a parse error: silent close.
            return Err(Close::silent(ClosedReason::ParseError));
        }
        if self.pedantic && !starling_sublist::is_valid_literal_subject(p.subject) {
            // Reported, but the message is still routed (as nats-server does).
            self.push_err("Invalid Publish Subject");
        }
        if !self.may_publish(p.subject, p.reply) {
            return Ok(());
        }
        // nats-server acknowledges before routing: +OK precedes an echo of the message.
        self.ok();
        let msg = Msg::new(p.subject, p.reply, p.header_len, p.data, chunk);
        let delivered =
            delivery::publish(&self.broker, account, &self.conn, &msg, &mut self.touched);
        if !delivered && self.no_responders {
            if let Some(reply) = p.reply {
                self.no_responders(account, reply);
            }
        }
        Ok(())
    }

    /// nats-server's publish checks, in its order: the reserved gateway prefix, the user's
    /// permissions, then reply subjects the server reserves for itself. A refusal is an
    /// `-ERR` and the message is dropped; the connection stays open.
    #[inline]
    fn may_publish(&mut self, subject: &[u8], reply: Option<&[u8]>) -> bool {
        let denied = (subject.len() > 5 && subject.starts_with(b"_GR_."))
            || self.permissions.as_mut().is_some_and(|(perms, cache)| {
                perms.compiled().checks_publish() && !cache.may_publish(perms, subject)
            });
        if denied {
            let subject = String::from_utf8_lossy(subject);
            self.push_err(&format!("Permissions Violation for Publish to {subject:?}"));
            error!(
                cid = self.conn.cid,
                "Publish Violation - Subject {subject:?}"
            );
            return false;
        }
        if let Some(reply) = reply.filter(|r| is_reserved_reply(r)) {
            let reply = String::from_utf8_lossy(reply);
            self.push_err(&format!(
                "Permissions Violation for Publish with Reply of {reply:?}"
            ));
            error!(cid = self.conn.cid, "Publish Violation - Reply {reply:?}");
            return false;
        }
        true
    }

    /// nats-server's subscribe checks: the user's permissions, and the queue group name the
    /// server keeps for itself. Also turns on delivery-time checks when a wildcard
    /// subscription overlaps a deny entry.
    fn may_subscribe(&mut self, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) -> bool {
        let allowed = queue != Some(b"_sys_".as_slice())
            && match &self.permissions {
                None => true,
                Some((perms, _)) => {
                    let compiled = perms.compiled();
                    let allowed = compiled.may_subscribe(subject, queue);
                    if allowed && compiled.overlaps_deny(subject, queue.is_some()) {
                        self.conn.filter_deliveries(perms);
                    }
                    allowed
                }
            };
        if allowed {
            return true;
        }
        let subject = String::from_utf8_lossy(subject);
        let sid = String::from_utf8_lossy(sid);
        match queue.map(String::from_utf8_lossy) {
            Some(queue) => {
                self.push_err(&format!(
                    "Permissions Violation for Subscription to {subject:?} using queue {queue:?}"
                ));
                error!(
                    cid = self.conn.cid,
                    "Subscription Violation - Subject {subject:?}, Queue: {queue:?}, SID {sid}"
                );
            }
            None => {
                self.push_err(&format!(
                    "Permissions Violation for Subscription to {subject:?}"
                ));
                error!(
                    cid = self.conn.cid,
                    "Subscription Violation - Subject {subject:?}, SID {sid}"
                );
            }
        }
        false
    }

    /// After the PONG that answers a client's handshake PING, nats-server sends an INFO if
    /// the cluster's client URLs changed since the client's first INFO (PONG first: clients
    /// require it as the reply to their handshake).
    fn first_pong_sent(&mut self) {
        let version = self.broker.identity().urls_version();
        if self.conn.protocol() >= 1 && self.conn.saw_urls(version) != version {
            let info = self.broker.client_info_of(&self.conn);
            self.push(|b| encode::write_info(b, &info));
        }
    }

    /// Tells a requester nobody listens: a 503 status message on its own subscription to the
    /// reply subject, if it has one (nats-server sends nothing otherwise).
    fn no_responders(&mut self, account: &Account, reply: &[u8]) {
        let result = account.sublist().matches(reply);
        let Some(sub) = result.plain.iter().find(|s| s.conn.cid == self.conn.cid) else {
            return;
        };
        let owner = Bytes::from_static(NO_RESPONDERS_HDR);
        let msg = Msg::new(
            reply,
            None,
            Some(NO_RESPONDERS_HDR.len()),
            NO_RESPONDERS_HDR,
            &owner,
        );
        delivery::deliver(
            &self.broker,
            account,
            &self.conn,
            sub,
            &msg,
            &mut self.touched,
        );
    }

    fn on_sub(&mut self, account: &Account, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        if !self.may_subscribe(subject, queue, sid) {
            return;
        }
        let max_subs = tightest([
            self.user_limits.max_subscriptions,
            account.max_subscriptions(),
            Some(self.broker.config().max_subscriptions),
        ])
        .unwrap_or(0);
        let mut subs = self.conn.subs.lock();
        if subs.contains(sid) {
            // Re-using a sid is a silent no-op in nats-server.
            drop(subs);
            self.ok();
            return;
        }
        if max_subs > 0 && subs.len() >= max_subs {
            drop(subs);
            self.push_err("maximum subscriptions exceeded");
            return;
        }
        let sub = Arc::new(Subscription::new(self.conn.clone(), sid, Target::Wire));
        match account.subscribe(&sub, subject, queue) {
            Ok(handle) => {
                subs.insert(OwnedSub { sub, handle });
                drop(subs);
                self.ok();
            }
            Err(_) => {
                drop(subs);
                self.push_err("Invalid Subject");
            }
        }
    }

    fn on_unsub(&mut self, account: &Account, sid: &[u8], max: Option<u64>) {
        let sub = self.conn.subs.lock().get(sid).map(|o| o.sub.clone());
        if let Some(sub) = sub {
            match max {
                Some(max) if max > 0 && sub.delivered.load(Ordering::Relaxed) < max => {
                    sub.max.store(max, Ordering::Relaxed);
                }
                _ => account.unsubscribe(&sub),
            }
        }
        self.ok();
    }

    /// The keepalive timer: PING an idle client, give up after max_pings_out unanswered.
    fn keepalive_tick(&mut self) -> Result<(), Close> {
        // Clients require PONG as the first reply to their CONNECT+PING handshake: like
        // nats-server, no keepalive PING goes out before that PONG, for up to 2 s.
        const MAX_WAIT_FOR_FIRST_PONG: std::time::Duration = std::time::Duration::from_secs(2);
        if !self.conn.info_ready()
            && self.conn.start.elapsed().unwrap_or_default() < MAX_WAIT_FOR_FIRST_PONG
        {
            return Ok(());
        }
        let max = self.broker.config().max_pings_out;
        if self.keepalive.tick(&self.conn, max, false)? {
            self.push(|b| b.extend_from_slice(encode::PING));
            self.touched.flush();
        }
        Ok(())
    }

    #[inline]
    fn ok(&mut self) {
        if self.verbose {
            self.push(|b| b.extend_from_slice(encode::OK));
        }
    }

    fn push_err(&mut self, text: &str) {
        self.push(|b| encode::write_err(b, text));
    }

    fn push(&mut self, build: impl FnOnce(&mut BytesMut)) {
        // Messages this batch staged for ourselves (echo) go first: a PONG must follow them.
        self.touched.push(&self.conn, build);
    }

    /// Ends the connection: the `-ERR` (if any) is queued first so the writer flushes it.
    fn end(&mut self, close: Close) {
        self.touched.flush();
        if let Some(text) = &close.err {
            self.push_err(text);
            self.touched.flush();
        }
        debug!(cid = self.conn.cid, reason = %close.reason, "closing client connection");
        self.conn.close(close.reason);
    }
}

impl Protocol for Client {
    type Parser = ClientParser;

    fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    fn parser(&mut self) -> &mut ClientParser {
        &mut self.parser
    }

    fn keepalive(&mut self) -> &mut Keepalive {
        &mut self.keepalive
    }

    #[inline]
    fn handle(&mut self, op: ClientOp<'_>, chunk: &Bytes) -> Result<bool, Close> {
        self.handle_op(op, chunk)?;
        // The rest of the read waits for a pending CONNECT's verdict.
        Ok(self.pending_connect.is_none())
    }

    fn parse_error(&self, e: &ProtoError) -> Close {
        proto_close(e)
    }

    fn count_in(&mut self, msgs: u64, bytes: u64) {
        self.conn.count_in(msgs, bytes);
        self.broker.counters().add_in(msgs, bytes);
        if let Some(account) = &self.account {
            account.count_in(msgs, bytes);
        }
    }

    /// Permissions swapped or the configuration reloaded at runtime: one load each per read
    /// tells.
    fn before_read(&mut self) {
        let config_generation = self.broker.config_generation();
        if config_generation != self.config_generation {
            self.config_generation = config_generation;
            let mut limits = self.parser.limits();
            limits.max_control_line = self.broker.config().max_control_line;
            self.parser.set_limits(limits);
            self.apply_payload_limit();
        }
        let generation = self.conn.permissions_generation();
        if generation != self.permissions_generation {
            self.permissions_generation = generation;
            self.permissions = self.conn.permissions().map(|p| (p, PublishCache::new()));
        }
    }

    async fn after_read(
        &mut self,
        buf: &mut BytesMut,
        handled: Result<(), Close>,
    ) -> Result<(), Close> {
        let mut result = handled;
        while result.is_ok() && self.pending_connect.is_some() {
            self.touched.flush();
            result = self.finish_pending_connect().await;
            if result.is_ok() && !buf.is_empty() {
                result = reader::process(self, buf);
            }
        }
        self.touched.flush();
        result?;
        if !self.broker.config().no_fast_producer_stall {
            let closing = self.conn.closing().clone();
            self.touched.stall(&closing).await;
        }
        Ok(())
    }

    fn ping_timer(&mut self) -> Result<(), Close> {
        self.keepalive_tick()
    }

    fn deadline(&self) -> Option<(tokio::time::Instant, Close)> {
        if self.auth_required && !self.connected {
            let close = Close::err(
                "Authentication Timeout",
                ClosedReason::AuthenticationTimeout,
            );
            return Some((self.auth_deadline, close));
        }
        let close = || {
            Close::err(
                "User Authentication Expired",
                ClosedReason::AuthenticationExpired,
            )
        };
        self.expires.map(|at| (at, close()))
    }

    fn close(&mut self, close: Close) {
        self.end(close);
    }
}

/// Sets `field` from `cookie` when CONNECT left it out.
#[cfg(feature = "websocket")]
fn fill(field: &mut Option<String>, cookie: &Option<String>) {
    if field.as_deref().is_none_or(str::is_empty) {
        if let Some(v) = cookie {
            *field = Some(v.clone());
        }
    }
}

/// The close a codec error calls for, with nats-server's `-ERR` text when it sends one.
fn proto_close(e: &ProtoError) -> Close {
    let reason = match e {
        ProtoError::MaxControlLine => ClosedReason::MaxControlLineExceeded,
        ProtoError::MaxPayload { .. } => ClosedReason::MaxPayloadExceeded,
        ProtoError::UnknownOp | ProtoError::MissingCrlf => ClosedReason::ProtocolViolation,
        _ => ClosedReason::ParseError,
    };
    Close {
        reason,
        err: e.err_text().map(Into::into),
    }
}

/// Reply subjects a client may not use (nats-server's `isReservedReply`): the server's
/// service-import replies, JetStream acks and gateway-routed replies.
fn is_reserved_reply(reply: &[u8]) -> bool {
    reply.starts_with(b"_R_.")
        || (reply.len() > 8 && reply.starts_with(b"$JS.ACK."))
        || (reply.len() > 5 && reply.starts_with(b"_GR_."))
}
