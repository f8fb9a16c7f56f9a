//! The in-process client: `server.client()`. No socket and no codec: it calls the same
//! delivery path socket clients use, so it obeys the same semantics and limits (max payload,
//! max subscriptions, slow-consumer policy) and shows up in monitoring as a connection.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use starling_sublist::{is_valid_literal_subject, is_valid_queue_name};

use super::{Item, LocalQueue, Taken};
use crate::account::Account;
use crate::broker::Broker;
use crate::conn::{ClosedReason, Conn, ConnKind};
use crate::delivery::{self, Msg, Touched};
use crate::error::{ClientError, RequestError};
use crate::message::{Message, Subject, INLINE};
use crate::subscription::{OwnedSub, Subscription, Target};

/// The most messages [`Client::publish_many`] hands over as one run.
pub const PUBLISH_MANY_RUN: usize = 1024;
/// A run of [`Client::publish_many`] ends once its payloads reach this many bytes.
const PUBLISH_MANY_BYTES: usize = 256 * 1024;
/// The most messages one [`Subscriber::next_batch`] adds: a batch a consumer handles while
/// it is still in cache, however far behind the subscriber is.
pub const NEXT_BATCH_MAX: usize = 1024;

/// How long [`Client::request`] waits by default (async-nats uses the same).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// When [`Client::request_many`] stops gathering replies (the strategies of the NATS "request
/// many" pattern, ADR-47). Several may be set; the first one met ends the gathering.
///
/// ```
/// use std::time::Duration;
/// use starling_server::Gather;
///
/// // Everyone who answers within 200 ms, at most 16, stopping early if replies pause 20 ms.
/// let gather = Gather::within(Duration::from_millis(200))
///     .max_replies(16)
///     .stall(Duration::from_millis(20));
/// # let _ = gather;
/// ```
#[derive(Clone)]
pub struct Gather {
    max_wait: Duration,
    max_replies: Option<usize>,
    stall: Option<Duration>,
    sentinel: Option<Sentinel>,
}

/// Says whether a reply ends a [`Gather`].
type Sentinel = Arc<dyn Fn(&Message) -> bool + Send + Sync>;

impl Gather {
    /// Gathers until `max_wait` after the request has gone out.
    pub fn within(max_wait: Duration) -> Self {
        Self {
            max_wait,
            max_replies: None,
            stall: None,
            sentinel: None,
        }
    }

    /// Stops after `n` replies.
    pub fn max_replies(mut self, n: usize) -> Self {
        self.max_replies = Some(n);
        self
    }

    /// Stops when no reply has come for `gap` since the last one (once one has come).
    pub fn stall(mut self, gap: Duration) -> Self {
        self.stall = Some(gap);
        self
    }

    /// Stops at the first reply `is_end` says is the end; that reply is not returned.
    pub fn sentinel(mut self, is_end: impl Fn(&Message) -> bool + Send + Sync + 'static) -> Self {
        self.sentinel = Some(Arc::new(is_end));
        self
    }

    /// Stops at an empty reply without headers, the sentinel ADR-47 names.
    pub fn until_empty(self) -> Self {
        self.sentinel(|m| m.payload.is_empty() && m.headers.is_none())
    }
}

impl Default for Gather {
    /// As long as a single request waits ([`DEFAULT_REQUEST_TIMEOUT`]), with no other limit.
    fn default() -> Self {
        Self::within(DEFAULT_REQUEST_TIMEOUT)
    }
}

impl std::fmt::Debug for Gather {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gather")
            .field("max_wait", &self.max_wait)
            .field("max_replies", &self.max_replies)
            .field("stall", &self.stall)
            .field("sentinel", &self.sentinel.is_some())
            .finish()
    }
}

/// Completes when a request's requester has given up ([`Client::cancelled`]).
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct Cancelled(Option<tokio::sync::oneshot::Receiver<()>>);

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            // The watch fired (or the account went away with the server): either way
            // nobody waits for an answer any more.
            Some(rx) => Pin::new(rx).poll(cx).map(|_| ()),
            None => Poll::Pending,
        }
    }
}

/// An in-process client of a [`crate::Server`]. Cheap to clone; the connection closes when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Arc<Broker>,
    account: Arc<Account>,
    conn: Arc<Conn>,
    next_sid: AtomicU64,
    inbox_prefix: String,
    /// The limits a publish checks, as of `limits_generation` of the broker's config: read
    /// from the config only when a reload changed it (its `ArcSwap` load, twice per message,
    /// was a tenth of an in-process publish).
    max_payload: AtomicUsize,
    stall: AtomicBool,
    limits_generation: AtomicU64,
}

/// One message an in-process publish hands to delivery.
struct Outgoing<'a> {
    /// The subject it is routed by.
    subject: &'a str,
    /// The subject its receivers see, when not `subject` (a JetStream delivery).
    shown: Option<&'a str>,
    reply: Option<&'a str>,
    /// The length of the header block at the start of `data`, if any.
    header_len: Option<usize>,
    data: Bytes,
}

/// What a publish checks against, read once per publish or batch.
#[derive(Clone, Copy)]
struct Limits {
    max_payload: usize,
    /// Whether a producer stalls for consumers over half their limit.
    stall: bool,
}

impl Inner {
    fn limits(&self) -> Limits {
        let generation = self.broker.config_generation();
        if self.limits_generation.load(Ordering::Acquire) != generation {
            let config = self.broker.config();
            let max_payload = self.account.max_payload().unwrap_or(config.max_payload);
            self.max_payload.store(max_payload, Ordering::Relaxed);
            self.stall
                .store(!config.no_fast_producer_stall, Ordering::Relaxed);
            self.limits_generation.store(generation, Ordering::Release);
            return Limits {
                max_payload,
                stall: !config.no_fast_producer_stall,
            };
        }
        Limits {
            max_payload: self.max_payload.load(Ordering::Relaxed),
            stall: self.stall.load(Ordering::Relaxed),
        }
    }
}

/// The subject of an in-process publish as every message delivered carries it, `None` if it
/// is not a valid literal subject. A short subject is kept inline in the message (no
/// allocation, no reference count). Longer ones are shared `Bytes`: publishers send to few
/// subjects, over and over, so the last few a thread used are kept, and a repeated subject is
/// one reference count instead of a check, an allocation and a copy per message (and a free on
/// the subscriber's side). Per thread, so no lock: at most `SUBJECT_CACHE` subjects each.
fn subject_of(subject: &str) -> Option<Subject> {
    const SUBJECT_CACHE: usize = 8;
    const CACHED_MAX_LEN: usize = 128;
    thread_local! {
        static RECENT: RefCell<(usize, [Bytes; SUBJECT_CACHE])> = RefCell::default();
    }
    let bytes = subject.as_bytes();
    if bytes.len() <= INLINE || bytes.len() > CACHED_MAX_LEN {
        return is_valid_literal_subject(bytes).then(|| Subject::from(subject));
    }
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        let (next, slots) = &mut *recent;
        if let Some(hit) = slots.iter().find(|b| b[..] == *bytes) {
            return Some(Subject::from_checked(hit.clone()));
        }
        if !is_valid_literal_subject(bytes) {
            return None;
        }
        let shared = Bytes::copy_from_slice(bytes);
        slots[*next] = shared.clone();
        *next = (*next + 1) % SUBJECT_CACHE;
        Some(Subject::from_checked(shared))
    })
}

/// Runs `f` with this thread's `Touched` for single publishes ([`Touched::direct`]), left
/// flushed and empty by each of them. Reused rather than made per publish: making and
/// dropping one (six containers, 400 bytes) was a sixth of an in-process publish's
/// instructions (callgrind). A nested publish on the same thread, or one while the thread is
/// exiting, gets a fresh one.
fn with_direct_touched<R>(f: impl FnOnce(&mut Touched) -> R) -> R {
    thread_local! {
        static DIRECT: RefCell<Touched> = RefCell::new(Touched::direct());
    }
    // Not there only while the thread exits (a publish from a thread-local's destructor).
    if DIRECT.try_with(|_| ()).is_err() {
        return f(&mut Touched::direct());
    }
    DIRECT.with(|t| match t.try_borrow_mut() {
        Ok(mut t) => f(&mut t),
        Err(_) => f(&mut Touched::direct()),
    })
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.conn.close(ClosedReason::ClientClosed);
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cid", &self.inner.conn.cid)
            .finish()
    }
}

impl Client {
    /// A client bound to `account`; fails when the account is at its connection limit.
    pub(crate) fn new(broker: Arc<Broker>, account: Arc<Account>) -> Result<Self, ClientError> {
        let conn = broker.register_client(ConnKind::InProcess, None);
        conn.set_headers(true);
        conn.set_protocol(1);
        // The connection has no reader task; this one forgets it once it closes.
        {
            let (broker, conn) = (broker.clone(), conn.clone());
            broker.clone().lifecycle().spawn(async move {
                conn.closing().cancelled().await;
                broker.retire_client(&conn);
            });
        }
        if broker.lifecycle().is_shutting_down() {
            conn.close(ClosedReason::ServerShutdown);
        }
        if account.bind(&conn).is_err() {
            conn.close(ClosedReason::MaxAccountConnectionsExceeded);
            return Err(ClientError::MaxAccountConnections);
        }
        broker.client_connected(&conn);
        let inbox_prefix = format!("_INBOX.{}", crate::identity::new_server_id().split_at(23).1);
        Ok(Self {
            inner: Arc::new(Inner {
                broker,
                account,
                conn,
                next_sid: AtomicU64::new(1),
                inbox_prefix,
                max_payload: AtomicUsize::new(0),
                stall: AtomicBool::new(true),
                // Not a generation the broker has: the first publish reads the config.
                limits_generation: AtomicU64::new(u64::MAX),
            }),
        })
    }

    /// The connection id (`cid` in monitoring and events).
    pub fn cid(&self) -> u64 {
        self.inner.conn.cid
    }

    /// Publishes `payload` to `subject`. The payload is shared with every in-process
    /// subscriber, not copied.
    pub async fn publish(
        &self,
        subject: impl AsRef<str>,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.send(subject.as_ref(), None, None, None, payload.into())
            .await
            .map(|_| ())
    }

    /// Publishes with a reply subject (for hand-rolled request/reply).
    pub async fn publish_with_reply(
        &self,
        subject: impl AsRef<str>,
        reply: impl AsRef<str>,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.send(
            subject.as_ref(),
            None,
            Some(reply.as_ref()),
            None,
            payload.into(),
        )
        .await
        .map(|_| ())
    }

    /// Publishes with headers, given as `(name, value)` pairs.
    pub async fn publish_with_headers(
        &self,
        subject: impl AsRef<str>,
        headers: &[(&str, &str)],
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let payload = payload.into();
        let mut block = BytesMut::with_capacity(64 + payload.len());
        block.put_slice(b"NATS/1.0\r\n");
        for (k, v) in headers {
            block.put_slice(k.as_bytes());
            block.put_slice(b": ");
            block.put_slice(v.as_bytes());
            block.put_slice(b"\r\n");
        }
        block.put_slice(b"\r\n");
        let header_len = block.len();
        block.put_slice(&payload);
        self.send(
            subject.as_ref(),
            None,
            None,
            Some(header_len),
            block.freeze(),
        )
        .await
        .map(|_| ())
    }

    /// Publishes a message in its wire form and tells whether anyone received it: `data` is the
    /// `NATS/1.0` header block (its first `header_len` bytes, when there are headers) followed
    /// by the payload, as a stored message or one received from a [`Subscriber`] keeps them.
    /// Nothing is copied: subscribers get slices of `data`.
    pub async fn publish_frame(
        &self,
        subject: impl AsRef<str>,
        reply: Option<&str>,
        header_len: Option<usize>,
        data: Bytes,
    ) -> Result<bool, ClientError> {
        if let Some(n) = header_len {
            if n > data.len() || !data.starts_with(b"NATS/1.0") {
                return Err(ClientError::InvalidHeaders);
            }
        }
        self.send(subject.as_ref(), None, reply, header_len, data)
            .await
    }

    /// Delivers a message in its wire form to the subscribers of `to`, who see it with
    /// `subject` as its subject (JetStream delivers a stored message to a consumer's inbox this
    /// way, as nats-server does). Otherwise as [`Self::publish_frame`].
    pub async fn deliver_frame(
        &self,
        to: &str,
        subject: &str,
        reply: Option<&str>,
        header_len: Option<usize>,
        data: Bytes,
    ) -> Result<bool, ClientError> {
        if let Some(n) = header_len {
            if n > data.len() || !data.starts_with(b"NATS/1.0") {
                return Err(ClientError::InvalidHeaders);
            }
        }
        if !is_valid_literal_subject(subject.as_bytes()) {
            return Err(ClientError::InvalidSubject);
        }
        self.send(to, Some(subject), reply, header_len, data).await
    }

    /// Delivers several messages as [`Self::deliver_frame`] would, as one batch: every
    /// receiving connection gets them in one hand-over and one wake-up, as the messages of one
    /// socket read do. Returns how many were received by anyone. A JetStream consumer hands over
    /// a pull request's batch this way.
    pub async fn deliver_frames(&self, frames: &[Frame<'_>]) -> Result<usize, ClientError> {
        let inner = &*self.inner;
        if inner.conn.is_closed() {
            return Err(ClientError::Closed);
        }
        for f in frames {
            if let Some(n) = f.header_len {
                if n > f.data.len() || !f.data.starts_with(b"NATS/1.0") {
                    return Err(ClientError::InvalidHeaders);
                }
            }
            if !is_valid_literal_subject(f.to.as_bytes())
                || !is_valid_literal_subject(f.subject.as_bytes())
                || f.reply
                    .is_some_and(|r| r.is_empty() || r.contains(char::is_whitespace))
            {
                return Err(ClientError::InvalidSubject);
            }
        }
        // Stored messages are delivered whatever their size, as before they were stored.
        let limits = Limits {
            max_payload: usize::MAX,
            ..inner.limits()
        };
        let mut touched = Touched::default();
        let mut delivered = 0;
        for f in frames {
            let out = Outgoing {
                subject: f.to,
                shown: Some(f.subject),
                reply: f.reply,
                header_len: f.header_len,
                data: f.data.clone(),
            };
            let routed = self.route(out, limits, &mut touched);
            match routed {
                Ok(true) => delivered += 1,
                Ok(false) => {}
                Err(e) => {
                    touched.flush();
                    return Err(e);
                }
            }
        }
        self.after(&mut touched, limits).await;
        Ok(delivered)
    }

    /// Publishes every payload of `payloads` to `subject`, in order, as one batch: each
    /// in-process subscriber gets them in one hand-over and one wake-up (up to
    /// [`PUBLISH_MANY_RUN`] at a time) instead of one per message, and the publisher does
    /// almost no work per message: the fastest way to send many messages in-process. Socket
    /// subscribers, queue groups and peers get each message as from [`Self::publish`];
    /// semantics and limits are those of `publish` for each message. A payload over the
    /// limit fails the call; the runs before it were published.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = starling_server::Server::builder().start().await?;
    /// let client = server.client();
    /// let mut sub = client.subscribe("metrics.cpu").await?;
    /// client.publish_many("metrics.cpu", ["41", "42", "43"]).await?;
    /// let mut batch = Vec::new();
    /// assert!(sub.next_batch(&mut batch).await);
    /// let readings: Vec<&[u8]> = batch.iter().map(|m| &m.payload[..]).collect();
    /// assert_eq!(readings, [b"41", b"42", b"43"]);
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish_many<I>(
        &self,
        subject: impl AsRef<str>,
        payloads: I,
    ) -> Result<(), ClientError>
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        let subject = subject.as_ref();
        let limits = self.inner.limits();
        let mut payloads = payloads.into_iter().map(Into::into).peekable();
        while payloads.peek().is_some() {
            let mut run = self.inner.broker.run_buffers().take(payloads.size_hint().0);
            let mut bytes = 0;
            for payload in payloads.by_ref() {
                bytes += payload.len();
                run.push(payload);
                if run.len() == PUBLISH_MANY_RUN || bytes >= PUBLISH_MANY_BYTES {
                    break;
                }
            }
            let mut touched = Touched::default();
            let routed = self.route_run(subject, run, limits, &mut touched);
            // Each run ends as a publish does: handed over, and a stall for slow consumers.
            self.after(&mut touched, limits).await;
            routed?;
        }
        Ok(())
    }

    /// [`Self::route`] for a run of payloads to one subject.
    fn route_run(
        &self,
        subject: &str,
        payloads: Vec<Bytes>,
        limits: Limits,
        touched: &mut Touched,
    ) -> Result<(), ClientError> {
        let inner = &*self.inner;
        if inner.conn.is_closed() {
            return Err(ClientError::Closed);
        }
        let shown = subject_of(subject).ok_or(ClientError::InvalidSubject)?;
        let mut bytes = 0;
        for p in &payloads {
            if p.len() > limits.max_payload && !inner.conn.is_local_only() {
                return Err(ClientError::MaxPayload);
            }
            bytes += p.len() as u64;
        }
        let n = payloads.len() as u64;
        delivery::publish_run(
            &inner.broker,
            &inner.account,
            &inner.conn,
            &shown,
            payloads,
            touched,
        );
        inner.conn.count_in(n, bytes);
        inner.broker.counters().add_in(n, bytes);
        inner.account.count_in(n, bytes);
        Ok(())
    }

    /// Keeps this client's interest on this server (see [`crate::Server::local_client_in`]).
    pub(crate) fn keep_interest_local(&self) {
        self.inner.conn.set_local_only(true);
    }

    /// Routes one message; returns whether anyone got it.
    async fn send(
        &self,
        subject: &str,
        shown: Option<&str>,
        reply: Option<&str>,
        header_len: Option<usize>,
        data: Bytes,
    ) -> Result<bool, ClientError> {
        let limits = self.inner.limits();
        // The delivery itself is synchronous: its state (a `Touched`, the message) stays off
        // this future, which is then small to create and move.
        let out = Outgoing {
            subject,
            shown,
            reply,
            header_len,
            data,
        };
        let (delivered, stalled) = with_direct_touched(|touched| {
            let delivered = self.route(out, limits, touched);
            touched.flush();
            delivered.map(|d| (d, touched.take_stalled()))
        })?;
        if limits.stall && !stalled.is_empty() {
            delivery::stall(stalled, self.inner.conn.closing()).await;
        }
        // Publishing completes without waiting on anything, so a loop of publishes would never
        // yield: take part in tokio's cooperative budget like any I/O does.
        tokio::task::consume_budget().await;
        Ok(delivered)
    }

    /// Checks one message and hands it to the delivery path; counts it as received from this
    /// client. What it delivered to connections waits in `touched`.
    fn route(
        &self,
        out: Outgoing<'_>,
        limits: Limits,
        touched: &mut Touched,
    ) -> Result<bool, ClientError> {
        let Outgoing {
            subject,
            shown,
            reply,
            header_len,
            data,
        } = out;
        let inner = &*self.inner;
        if inner.conn.is_closed() {
            return Err(ClientError::Closed);
        }
        // Receivers see `shown`: that is the subject the message carries, so it is the one
        // kept as `Bytes`; the routing subject is only matched.
        let shown = match shown {
            None => subject_of(subject).ok_or(ClientError::InvalidSubject)?,
            Some(shown) => {
                if !is_valid_literal_subject(subject.as_bytes()) {
                    return Err(ClientError::InvalidSubject);
                }
                subject_of(shown).ok_or(ClientError::InvalidSubject)?
            }
        };
        if reply.is_some_and(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            return Err(ClientError::InvalidSubject);
        }
        // The server's own clients (JetStream's, see `Server::local_client_in`) answer with
        // what they hold, which may be larger (a stream's info listing its subjects), as
        // nats-server's internal clients do.
        if data.len() - header_len.unwrap_or(0) > limits.max_payload && !inner.conn.is_local_only()
        {
            return Err(ClientError::MaxPayload);
        }
        let bytes = data.len() as u64;
        // The message as in-process subscribers get it, built here once: the payload is
        // moved in, the subject is a shared `Bytes`, and delivery only clones it.
        let (frame, headers, payload) = match header_len {
            Some(h) => (Some(data.clone()), Some(data.slice(..h)), data.slice(h..)),
            None => (None, None, data),
        };
        let local = Message {
            subject: shown,
            reply: reply.map(Subject::from),
            headers,
            payload,
        };
        let owner = frame.as_ref().unwrap_or(&local.payload);
        let msg = Msg::new(
            subject.as_bytes(),
            local.reply.as_ref().map(Subject::as_bytes),
            header_len,
            owner,
            owner,
        )
        .shown_as(local.subject.as_bytes())
        .with_local(&local);
        let delivered =
            delivery::publish(&inner.broker, &inner.account, &inner.conn, &msg, touched);
        inner.conn.count_in(1, bytes);
        inner.broker.counters().add_in(1, bytes);
        inner.account.count_in(1, bytes);
        Ok(delivered)
    }

    /// Ends a batch of publishes: hands over what is staged, wakes the receivers, stalls for
    /// consumers over half their limit (unless configured not to).
    async fn after(&self, touched: &mut Touched, limits: Limits) {
        touched.flush();
        if limits.stall {
            touched.stall(self.inner.conn.closing()).await;
        }
        // Publishing completes without waiting on anything, so a loop of publishes would never
        // yield: take part in tokio's cooperative budget like any I/O does.
        tokio::task::consume_budget().await;
    }

    /// Subscribes to `subject` (wildcards allowed).
    pub async fn subscribe(&self, subject: impl AsRef<str>) -> Result<Subscriber, ClientError> {
        self.add_subscription(subject.as_ref(), None)
    }

    /// Joins queue group `queue` on `subject`: each message goes to one member of the group.
    pub async fn queue_subscribe(
        &self,
        subject: impl AsRef<str>,
        queue: impl AsRef<str>,
    ) -> Result<Subscriber, ClientError> {
        let queue = queue.as_ref();
        if !is_valid_queue_name(queue.as_bytes()) {
            return Err(ClientError::InvalidQueue);
        }
        self.add_subscription(subject.as_ref(), Some(queue))
    }

    fn add_subscription(
        &self,
        subject: &str,
        queue: Option<&str>,
    ) -> Result<Subscriber, ClientError> {
        let inner = &*self.inner;
        if inner.conn.is_closed() {
            return Err(ClientError::Closed);
        }
        let sid = Bytes::from(inner.next_sid.fetch_add(1, Ordering::Relaxed).to_string());
        let messages = Arc::new(LocalQueue::default());
        let sub = Arc::new(Subscription::new(
            inner.conn.clone(),
            &sid,
            Target::Local(messages.clone()),
        ));
        let mut subs = inner.conn.subs.lock();
        let max = inner
            .account
            .max_subscriptions()
            .unwrap_or(inner.broker.config().max_subscriptions);
        if max > 0 && subs.len() >= max {
            return Err(ClientError::MaxSubscriptions);
        }
        let handle = inner
            .account
            .subscribe(&sub, subject.as_bytes(), queue.map(str::as_bytes))
            .map_err(|_| ClientError::InvalidSubject)?;
        subs.insert(OwnedSub {
            sub: sub.clone(),
            handle,
        });
        Ok(Subscriber {
            queue: messages,
            taken: VecDeque::new(),
            ended: false,
            sub: Arc::downgrade(&sub),
            sid,
            client: self.inner.clone(),
        })
    }

    /// Sends a request and waits for the first reply (10 s timeout).
    pub async fn request(
        &self,
        subject: impl AsRef<str>,
        payload: impl Into<Bytes>,
    ) -> Result<Message, RequestError> {
        self.request_with_timeout(subject, payload, DEFAULT_REQUEST_TIMEOUT)
            .await
    }

    /// Sends a request and waits up to `timeout` for the first reply. Fails fast with
    /// [`RequestError::NoResponders`] when nobody is subscribed.
    pub async fn request_with_timeout(
        &self,
        subject: impl AsRef<str>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        let inbox = self.new_inbox();
        let mut sub = self.add_subscription(&inbox, None)?;
        sub.unsubscribe_after(1);
        let delivered = self
            .send(subject.as_ref(), None, Some(&inbox), None, payload.into())
            .await?;
        if !delivered {
            return Err(RequestError::NoResponders);
        }
        match tokio::time::timeout(timeout, sub.next()).await {
            Ok(Some(m)) if m.status() == Some(503) => Err(RequestError::NoResponders),
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(ClientError::Closed.into()),
            Err(_) => Err(RequestError::TimedOut),
        }
    }

    /// Sends one request and gathers the replies of everyone who answers (the broadcast-query
    /// pattern: every instance of a service replies), until `gather` says stop: its time
    /// limit, its count, a pause between replies, or a sentinel reply (not returned). Fails
    /// fast with [`RequestError::NoResponders`] when nobody is subscribed; otherwise returns
    /// what arrived, which may be nothing if no one answered in time.
    pub async fn request_many(
        &self,
        subject: impl AsRef<str>,
        payload: impl Into<Bytes>,
        gather: Gather,
    ) -> Result<Vec<Message>, RequestError> {
        let inbox = self.new_inbox();
        let mut sub = self.add_subscription(&inbox, None)?;
        if let Some(n) = gather.max_replies {
            // The sentinel, if any, counts as one more.
            sub.unsubscribe_after(n as u64 + u64::from(gather.sentinel.is_some()));
        }
        let delivered = self
            .send(subject.as_ref(), None, Some(&inbox), None, payload.into())
            .await?;
        if !delivered {
            return Err(RequestError::NoResponders);
        }
        let end = tokio::time::Instant::now() + gather.max_wait;
        let mut replies = Vec::new();
        loop {
            if gather.max_replies.is_some_and(|n| replies.len() >= n) {
                break;
            }
            let mut until = end;
            if let (Some(stall), false) = (gather.stall, replies.is_empty()) {
                until = until.min(tokio::time::Instant::now() + stall);
            }
            match tokio::time::timeout_at(until, sub.next()).await {
                Ok(Some(m)) if m.status() == Some(503) => {
                    if replies.is_empty() {
                        return Err(RequestError::NoResponders);
                    }
                    break;
                }
                Ok(Some(m)) if gather.sentinel.as_ref().is_some_and(|s| s(&m)) => break,
                Ok(Some(m)) => replies.push(m),
                Ok(None) => {
                    if self.inner.conn.is_closed() {
                        return Err(ClientError::Closed.into());
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        sub.unsubscribe();
        Ok(replies)
    }

    /// Completes once everything published so far has been handed to its subscribers'
    /// connections. In-process publishing is synchronous, so this only checks the connection.
    pub async fn flush(&self) -> Result<(), ClientError> {
        if self.inner.conn.is_closed() {
            Err(ClientError::Closed)
        } else {
            Ok(())
        }
    }

    /// A unique inbox subject for replies.
    pub fn new_inbox(&self) -> String {
        let n = self.inner.next_sid.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", self.inner.inbox_prefix)
    }

    /// Completes when the requester of `request` gives up: it dropped or timed out its
    /// request (an in-process one), unsubscribed its reply subject, or its connection closed,
    /// here or on a cluster peer. At once if that already happened; never for a message
    /// without a reply subject. A responder selects on it to stop work nobody waits for:
    ///
    /// ```no_run
    /// # async fn run(client: starling_server::Client, mut requests: starling_server::Subscriber) {
    /// use futures::StreamExt;
    /// while let Some(request) = requests.next().await {
    ///     let cancelled = client.cancelled(&request);
    ///     tokio::select! {
    ///         answer = place_volume(&request.payload) => {
    ///             let _ = client.publish(request.reply.unwrap().as_str(), answer).await;
    ///         }
    ///         () = cancelled => {} // the scheduler gave up: stop
    ///     }
    /// }
    /// # }
    /// # async fn place_volume(_: &[u8]) -> bytes::Bytes { bytes::Bytes::new() }
    /// ```
    ///
    /// Socket clients get the same by subscribing to `$CANCEL.<reply subject>` (see
    /// [`crate::CANCEL_PREFIX`]).
    pub fn cancelled(&self, request: &Message) -> Cancelled {
        let Some(reply) = &request.reply else {
            return Cancelled(None);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.account.watch_reply(
            Bytes::copy_from_slice(reply.as_str().as_bytes()),
            crate::account::cancel::Fire::Wake(tx),
        );
        Cancelled(Some(rx))
    }

    /// A NATS service named `name` at `version` (a semantic version) on this client: it
    /// answers `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` as the micro service protocol says,
    /// so `nats micro` and the clients' service modules find and call it. See
    /// [`crate::Service`].
    pub fn service(
        &self,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> super::service::ServiceBuilder {
        super::service::ServiceBuilder::new(self.clone(), name.into(), version.into())
    }

    /// Whether the server closed this client (shutdown, slow consumer).
    pub fn is_closed(&self) -> bool {
        self.inner.conn.is_closed()
    }
}

/// One message for [`Client::deliver_frames`]: routed by `to`, seen with `subject`, the header
/// block (its first `header_len` bytes) and payload in `data`.
#[derive(Clone, Debug)]
pub struct Frame<'a> {
    /// The subject it is routed by (a consumer's inbox).
    pub to: &'a str,
    /// The subject its receivers see.
    pub subject: &'a str,
    /// Its reply subject (an ack subject).
    pub reply: Option<&'a str>,
    /// The length of the header block at the start of `data`, if any.
    pub header_len: Option<usize>,
    /// The header block and the payload.
    pub data: Bytes,
}

/// What [`Subscriber::next_payloads`] read.
#[derive(Debug)]
pub enum Batch {
    /// Payloads were put in the caller's vector: of messages to this subject, in order, none
    /// with a reply or headers.
    Payloads(Subject),
    /// The next message carries a reply or headers: here whole.
    Message(Message),
}

/// A subscription's messages, as a `Stream`. Dropping it unsubscribes. The stream ends once
/// the subscription is gone (unsubscribed, its max reached, the client or server closed) and
/// the messages delivered before have been read.
pub struct Subscriber {
    /// Where delivery leaves its messages.
    queue: Arc<LocalQueue>,
    /// Messages taken from the queue in one go, read from here without touching it. Their
    /// `max_pending` bytes were released when they were taken: like a socket client's read
    /// buffer, they are the subscriber's, so at most twice `max_pending` is held.
    taken: VecDeque<Item>,
    ended: bool,
    /// Weak: the subscription lives in the sublist and the owner's sid map only, so removing
    /// it there ends this stream.
    sub: Weak<Subscription>,
    sid: Bytes,
    client: Arc<Inner>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("sid", &self.sid)
            .finish()
    }
}

impl Subscriber {
    /// Stops the subscription; messages already delivered can still be read.
    pub fn unsubscribe(&mut self) {
        if let Some(sub) = self.sub.upgrade() {
            self.client.account.unsubscribe(&sub);
        }
    }

    /// Unsubscribes automatically after `n` messages in total.
    pub fn unsubscribe_after(&mut self, n: u64) {
        let Some(sub) = self.sub.upgrade() else {
            return;
        };
        if n == 0 || sub.delivered() >= n {
            self.client.account.unsubscribe(&sub);
        } else {
            sub.max.store(n, Ordering::Relaxed);
        }
    }
}

impl Subscriber {
    /// Waits for messages and appends those delivered so far to `batch`, in order: at least
    /// one, at most [`NEXT_BATCH_MAX`] (the rest wait for the next call). A consumer that
    /// handles messages in batches pays one hand-over per batch. Returns false, adding
    /// nothing, once the subscription has ended and all its messages were read.
    pub async fn next_batch(&mut self, batch: &mut Vec<Message>) -> bool {
        let before = batch.len();
        loop {
            std::future::poll_fn(|cx| self.poll_fill(cx)).await;
            if self.taken.is_empty() {
                return batch.len() > before;
            }
            let mut room = NEXT_BATCH_MAX;
            while room > 0 {
                let Some(item) = self.taken.front_mut() else {
                    break;
                };
                match item {
                    Item::Run(run) => {
                        room -= run.take_into(batch, room);
                        if run.is_spent() {
                            self.recycle_front();
                        }
                    }
                    Item::One(_) => {
                        if let Some(Item::One(m)) = self.taken.pop_front() {
                            batch.push(m);
                            room -= 1;
                        }
                    }
                }
            }
            if batch.len() > before {
                return true;
            }
        }
    }

    /// Reads messages as their payloads alone, the fastest way to read what
    /// [`Client::publish_many`] sends: waits for messages, empties `payloads`, then fills it
    /// with the payloads of the next messages while they go to one subject and carry neither
    /// reply nor headers, at most [`NEXT_BATCH_MAX`] of them, and returns
    /// [`Batch::Payloads`] with that subject. A whole run of `publish_many` is handed over as
    /// its buffer: no `Message` is made and nothing is copied. If the next message has a
    /// reply or headers, it is returned whole ([`Batch::Message`], `payloads` left empty).
    /// Returns `None` once the subscription has ended and all its messages were read.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use starling_server::Batch;
    /// let server = starling_server::Server::builder().start().await?;
    /// let client = server.client();
    /// let mut sub = client.subscribe("metrics.*").await?;
    /// client.publish_many("metrics.cpu", ["41", "42"]).await?;
    /// client.publish_with_reply("metrics.disk", "answers", "full?").await?;
    /// let mut payloads = Vec::new();
    /// match sub.next_payloads(&mut payloads).await {
    ///     Some(Batch::Payloads(subject)) => {
    ///         assert_eq!(subject, "metrics.cpu");
    ///         assert_eq!(payloads, ["41", "42"]);
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// match sub.next_payloads(&mut payloads).await {
    ///     Some(Batch::Message(m)) => assert!(m.reply.is_some() && payloads.is_empty()),
    ///     other => panic!("{other:?}"),
    /// }
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next_payloads(&mut self, payloads: &mut Vec<Bytes>) -> Option<Batch> {
        payloads.clear();
        loop {
            std::future::poll_fn(|cx| self.poll_fill(cx)).await;
            if self.taken.is_empty() {
                return None;
            }
            let mut subject: Option<Subject> = None;
            let mut room = NEXT_BATCH_MAX;
            while room > 0 {
                let same = |s: &Subject| subject.as_ref().is_none_or(|have| have == s);
                match self.taken.front_mut() {
                    Some(Item::Run(run)) if same(run.subject()) => {
                        subject.get_or_insert_with(|| run.subject().clone());
                        let (n, spare) = run.take_payloads_into(payloads, room);
                        room -= n;
                        if let Some(spare) = spare {
                            self.client.broker.run_buffers().give(spare);
                        }
                        if run.is_spent() {
                            self.recycle_front();
                        }
                    }
                    Some(Item::One(m))
                        if m.reply.is_none() && m.headers.is_none() && same(&m.subject) =>
                    {
                        if let Some(Item::One(m)) = self.taken.pop_front() {
                            subject.get_or_insert(m.subject);
                            payloads.push(m.payload);
                            room -= 1;
                        }
                    }
                    Some(Item::One(_)) if subject.is_none() => {
                        if let Some(Item::One(m)) = self.taken.pop_front() {
                            return Some(Batch::Message(m));
                        }
                    }
                    _ => break,
                }
            }
            if let Some(subject) = subject {
                return Some(Batch::Payloads(subject));
            }
            // Only an empty run was there (none is queued; spent ones leave `taken` with
            // their last message): look again.
        }
    }

    /// Removes the spent run at the front of `taken`, keeping its buffer for later runs.
    fn recycle_front(&mut self) {
        if let Some(Item::Run(run)) = self.taken.pop_front() {
            self.client.broker.run_buffers().give(run.into_buffer());
        }
    }

    /// The next message in `taken`, dropping spent items.
    fn pop_taken(&mut self) -> Option<Message> {
        loop {
            match self.taken.front_mut()? {
                Item::Run(run) => {
                    let m = run.next_message();
                    // A spent run leaves `taken` with its last message, so every read finds
                    // a message at the front.
                    if run.is_spent() {
                        self.recycle_front();
                    }
                    if m.is_some() {
                        return m;
                    }
                }
                // Moved out whole: a message is four `Bytes`, worth not copying twice.
                Item::One(_) => {
                    if let Some(Item::One(m)) = self.taken.pop_front() {
                        return Some(m);
                    }
                }
            }
        }
    }

    /// Makes sure `taken` holds messages, or that the stream has ended.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.taken.is_empty() || self.ended {
            return Poll::Ready(());
        }
        match self.queue.poll_take(cx, &mut self.taken) {
            Poll::Ready(Taken::Msgs { reserved }) => {
                self.client.conn.release_local(reserved);
                Poll::Ready(())
            }
            Poll::Ready(Taken::Ended) => {
                self.ended = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Stream for Subscriber {
    type Item = Message;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            if let Some(m) = self.pop_taken() {
                return Poll::Ready(Some(m));
            }
            match self.poll_fill(cx) {
                // Taken items may all be spent (an empty run): look again.
                Poll::Ready(()) if !self.taken.is_empty() => continue,
                Poll::Ready(()) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.unsubscribe();
        // Whatever was delivered and not taken gives its budget back.
        let reserved = self.queue.close();
        self.client.conn.release_local(reserved);
    }
}
