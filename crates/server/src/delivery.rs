//! The hot path: one published message, matched against the sublist and appended to each
//! interested connection's outbound queue (DESIGN.md, "The hot path").

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use starling_proto::{encode, QueueNames};
use starling_sublist::{MatchResult, QueueGroup};

use crate::account::Account;
use crate::broker::Broker;
use crate::client::{LocalQueue, Run};
use crate::conn::outbound::{Appended, INLINE_MAX};
use crate::conn::{Conn, ConnKind};
use crate::message::{Message, Subject};
use crate::subscription::{Subscription, Target};

/// A subscription the server handles itself (service imports, the system account's services):
/// called on the publisher's task, in place of an append to a connection.
pub(crate) trait Handler: Send + Sync {
    /// Handles one message published in `account`; returns whether it counts as delivered
    /// (no-responders needs to know).
    fn handle(
        &self,
        broker: &Broker,
        account: &Account,
        from: &Conn,
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> bool;
}

/// The 503 "no responders" header block nats-server 2.9 sends.
pub(crate) const NO_RESPONDERS_HDR: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// One message being routed. Every slice lies inside `owner` when the message came from a
/// socket, so payloads can be shared without copying.
pub(crate) struct Msg<'a> {
    /// The subject it is routed by.
    pub(crate) subject: &'a [u8],
    /// The subject its receivers see: the routing subject, except for JetStream deliveries,
    /// routed by their delivery subject and shown with the subject the message was stored under.
    pub(crate) shown: &'a [u8],
    pub(crate) reply: Option<&'a [u8]>,
    pub(crate) header_len: Option<usize>,
    /// Headers (if any) followed by the payload.
    pub(crate) data: &'a [u8],
    pub(crate) owner: &'a Bytes,
    /// For a message that came over a route: the queue groups the origin server picked this
    /// server for. `None` for messages published here.
    pub(crate) queues: Option<QueueNames<'a>>,
    /// The message as in-process subscribers get it, built on the first such delivery.
    local: OnceCell<Message>,
    /// The same, built by the publisher (the in-process client).
    given: Option<&'a Message>,
    /// The subject receivers see, as a `Bytes` to share instead of copying.
    shown_bytes: Option<&'a Subject>,
    /// In-process plain subscriptions got this message already, in a run
    /// ([`publish_run`]): delivery skips them.
    skip_local: bool,
}

impl<'a> Msg<'a> {
    pub(crate) fn new(
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        header_len: Option<usize>,
        data: &'a [u8],
        owner: &'a Bytes,
    ) -> Self {
        Self {
            subject,
            shown: subject,
            reply,
            header_len,
            data,
            owner,
            queues: None,
            local: OnceCell::new(),
            given: None,
            shown_bytes: None,
            skip_local: false,
        }
    }

    /// A message routed by `subject` whose receivers see `shown` as its subject.
    pub(crate) fn shown_as(mut self, shown: &'a [u8]) -> Self {
        self.shown = shown;
        self
    }

    /// A message whose in-process form its publisher built already (the in-process client,
    /// which owns the payload and keeps its subjects as `Bytes`): in-process subscribers get
    /// clones of it, with nothing copied or checked again. Its slices must be `local`'s.
    pub(crate) fn with_local(self, local: &'a Message) -> Self {
        Self {
            given: Some(local),
            ..self
        }
    }

    /// A message received from a route, with the queue groups picked for us.
    pub(crate) fn routed(
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        header_len: Option<usize>,
        data: &'a [u8],
        owner: &'a Bytes,
        queues: QueueNames<'a>,
    ) -> Self {
        Self {
            queues: Some(queues),
            ..Self::new(subject, reply, header_len, data, owner)
        }
    }

    /// The payload without headers.
    pub(crate) fn payload(&self) -> &'a [u8] {
        &self.data[self.header_len.unwrap_or(0)..]
    }

    /// The header block, if any.
    pub(crate) fn headers(&self) -> Option<&'a [u8]> {
        self.header_len.map(|h| &self.data[..h])
    }

    /// Headers length and bytes as a connection gets the message: headers kept when it takes
    /// them, else stripped.
    fn wire_form(&self, wants_headers: bool) -> (Option<usize>, &'a [u8]) {
        match self.header_len {
            Some(h) if wants_headers => (Some(h), self.data),
            Some(h) => (None, &self.data[h..]),
            None => (None, self.data),
        }
    }

    fn local(&self) -> &Message {
        if let Some(given) = self.given {
            return given;
        }
        self.local.get_or_init(|| {
            let (headers, payload) = match self.header_len {
                Some(h) => (
                    Some(share(self.owner, &self.data[..h])),
                    share(self.owner, &self.data[h..]),
                ),
                None => (None, share(self.owner, self.data)),
            };
            Message {
                subject: match self.shown_bytes {
                    Some(shown) => shown.clone(),
                    None => Subject::from_bytes(share(self.owner, self.shown)),
                },
                reply: self
                    .reply
                    .map(|r| Subject::from_bytes(share(self.owner, r))),
                headers,
                payload,
            }
        })
    }
}

/// A `Bytes` for `part`: a zero-copy slice of `owner` when it lies inside it, else a copy.
fn share(owner: &Bytes, part: &[u8]) -> Bytes {
    let start = owner.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if part.is_empty() {
        Bytes::new()
    } else if p >= start && p + part.len() <= start + owner.len() {
        owner.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// One peer (a route or a leafnode) a message goes to, and the queue groups it was picked for.
struct RouteTarget<'r> {
    conn: &'r Arc<Conn>,
    queues: SmallVec<[&'r [u8]; 2]>,
}

/// The peer's entry in `routes`, added if new: each peer gets one RMSG per message.
fn route_target<'a, 'r>(
    routes: &'a mut SmallVec<[RouteTarget<'r>; 4]>,
    conn: &'r Arc<Conn>,
) -> &'a mut RouteTarget<'r> {
    let i = match routes.iter().position(|t| Arc::ptr_eq(t.conn, conn)) {
        Some(i) => i,
        None => {
            routes.push(RouteTarget {
                conn,
                queues: SmallVec::new(),
            });
            routes.len() - 1
        }
    };
    &mut routes[i]
}

/// The outcome of a queue pick.
enum Pick<'r> {
    /// Delivered to a local member.
    Local,
    /// A peer was picked: its RMSG names the group.
    Route(&'r Arc<Conn>),
    /// No member could take it.
    None,
}

/// Connections a producer may stage output for at once; further ones are appended to directly.
const MAX_STAGED: usize = 8;
/// A staged batch this large is handed over at once (bounds the producer's memory).
const STAGE_LIMIT: usize = 64 * 1024;

/// Small messages for one consumer, laid out by a producer during one read batch and handed to
/// the consumer's outbound queue under a single lock at the end of the batch (the per-message
/// lock was a fifth of the server's CPU for small messages: the queue's cache line bounces
/// between the producer's core and the writer's).
struct Staged {
    conn: Arc<Conn>,
    buf: BytesMut,
    msgs: u64,
    payload: u64,
}

impl Staged {
    /// Appends one message: its control line built by `ctl`, then `data` and CRLF.
    fn push(&mut self, ctl: impl FnOnce(&mut BytesMut), data: &[u8]) {
        ctl(&mut self.buf);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
        self.msgs += 1;
        self.payload += data.len() as u64;
    }
}

/// In-process messages for one subscription, handed to its queue under one lock and with one
/// wake-up at the end of the producer's batch (the in-process form of [`Staged`]).
struct LocalStaged {
    queue: Arc<LocalQueue>,
    conn: Arc<Conn>,
    msgs: Vec<Message>,
    /// The `max_pending` bytes reserved for them.
    bytes: usize,
}

/// In-process messages staged for one subscription before they are handed over anyway (bounds
/// the producer's memory and the subscriber's wait).
const LOCAL_STAGE_MSGS: usize = 256;

/// Connections a producer touched during one read batch: output staged for them is handed over
/// and each writer is woken once at the end (flush coalescing), and consumers over half their
/// pending limit may stall the producer.
#[derive(Default)]
pub(crate) struct Touched {
    wake: SmallVec<[Arc<Conn>; 8]>,
    stalled: Stalled,
    staged: SmallVec<[Staged; 2]>,
    /// Emptied staging buffers, kept for the next batch.
    spare: Vec<BytesMut>,
    local: SmallVec<[LocalStaged; 2]>,
    local_spare: Vec<Vec<Message>>,
    /// Hands in-process messages over at once instead of staging them: a batch of one
    /// message (a single in-process publish) gains nothing from staging.
    direct: bool,
}

impl Touched {
    /// For a batch of one message: in-process deliveries go straight to their queues.
    pub(crate) fn direct() -> Self {
        Self {
            direct: true,
            ..Self::default()
        }
    }

    /// Stages one in-process message for `queue`, or hands it over now when staging is off
    /// or full. Returns false if the subscriber is gone (its reservation released).
    fn stage_local(
        &mut self,
        conn: &Arc<Conn>,
        queue: &Arc<LocalQueue>,
        msg: Message,
        size: usize,
    ) -> bool {
        let i = match self.local.iter().position(|s| Arc::ptr_eq(&s.queue, queue)) {
            Some(i) => i,
            None if !self.direct && self.local.len() < MAX_STAGED => {
                let msgs = self.local_spare.pop().unwrap_or_default();
                self.local.push(LocalStaged {
                    queue: queue.clone(),
                    conn: conn.clone(),
                    msgs,
                    bytes: 0,
                });
                self.local.len() - 1
            }
            None => {
                if !queue.push_one(msg, size) {
                    conn.release_local(size);
                    return false;
                }
                conn.count_local_out(1, size);
                return true;
            }
        };
        let staged = &mut self.local[i];
        staged.msgs.push(msg);
        staged.bytes += size;
        if staged.msgs.len() >= LOCAL_STAGE_MSGS || staged.bytes >= STAGE_LIMIT {
            let staged = self.local.swap_remove(i);
            self.hand_over_local(staged);
        }
        true
    }

    /// Hands what is staged for `queue` over now (before its subscription ends, so that the
    /// end comes after its messages).
    fn flush_local(&mut self, queue: &Arc<LocalQueue>) {
        if let Some(i) = self.local.iter().position(|s| Arc::ptr_eq(&s.queue, queue)) {
            let staged = self.local.swap_remove(i);
            self.hand_over_local(staged);
        }
    }

    fn hand_over_local(&mut self, mut staged: LocalStaged) {
        let n = staged.msgs.len() as u64;
        if staged.queue.push(&mut staged.msgs, staged.bytes) {
            staged.conn.count_local_out(n, staged.bytes);
        } else {
            // The subscriber went away meanwhile.
            staged.conn.release_local(staged.bytes);
            staged.msgs.clear();
        }
        if staged.msgs.capacity() <= 4 * LOCAL_STAGE_MSGS {
            self.local_spare.push(staged.msgs);
        }
    }

    pub(crate) fn signal(&mut self, conn: &Arc<Conn>) {
        self.wake.push(conn.clone());
    }

    fn stalled(&mut self, conn: &Arc<Conn>) {
        if !self.stalled.iter().any(|c| Arc::ptr_eq(c, conn)) {
            self.stalled.push(conn.clone());
        }
    }

    /// The staging entry for `conn`, created if there is room; `None` if there is not.
    fn stage(&mut self, conn: &Arc<Conn>) -> Option<&mut Staged> {
        let i = match self.staged.iter().position(|s| Arc::ptr_eq(&s.conn, conn)) {
            Some(i) => i,
            None if self.staged.len() < MAX_STAGED => {
                let buf = self.spare.pop().unwrap_or_default();
                self.staged.push(Staged {
                    conn: conn.clone(),
                    buf,
                    msgs: 0,
                    payload: 0,
                });
                self.staged.len() - 1
            }
            None => return None,
        };
        Some(&mut self.staged[i])
    }

    /// Hands what is staged for `conn` to its queue now (before appending to it directly, so
    /// that its output stays in order).
    pub(crate) fn flush_conn(&mut self, conn: &Arc<Conn>) {
        if let Some(i) = self.staged.iter().position(|s| Arc::ptr_eq(&s.conn, conn)) {
            let staged = self.staged.swap_remove(i);
            self.hand_over(staged);
        }
    }

    fn hand_over(&mut self, mut staged: Staged) {
        let conn = &staged.conn;
        if !staged.buf.is_empty() {
            let appended = conn.push_staged(&mut staged.buf, staged.msgs, staged.payload);
            // Pending bytes only grow here for staged output: check for a stall now.
            if self.appended(conn, appended) && conn.is_stalled() {
                self.stalled(conn);
            }
        }
        staged.buf.clear();
        if staged.buf.capacity() <= 2 * STAGE_LIMIT {
            self.spare.push(staged.buf);
        }
    }

    /// Hands staged output over and wakes every writer touched since the last flush.
    pub(crate) fn flush(&mut self) {
        while let Some(staged) = self.staged.pop() {
            self.hand_over(staged);
        }
        // In the order they were staged: subscribers are woken in the order their first
        // message was delivered, as a message-by-message hand-over would (tasks that serve
        // different subscriptions of one socket client's requests run in the order it sent).
        if !self.local.is_empty() {
            for staged in std::mem::take(&mut self.local) {
                self.hand_over_local(staged);
            }
        }
        if !self.wake.is_empty() {
            for conn in self.wake.drain(..) {
                conn.wake();
            }
        }
    }

    /// Appends control lines to `conn` (after what is staged for it, so its output stays in
    /// order); its writer is woken at the end of the batch.
    pub(crate) fn push(&mut self, conn: &Arc<Conn>, build: impl FnOnce(&mut BytesMut)) {
        self.flush_conn(conn);
        let appended = conn.push_with(build);
        self.appended(conn, appended);
    }

    /// Whether an append delivered; the writer is woken once per batch. (An append past the
    /// limit already closed the connection as a slow consumer: `Conn`'s one outcome path.)
    fn appended(&mut self, conn: &Arc<Conn>, appended: Appended) -> bool {
        match appended {
            Appended::Signal => {
                self.signal(conn);
                true
            }
            Appended::Queued => true,
            Appended::SlowConsumer | Appended::Closed => false,
        }
    }

    /// The consumers this batch fed that are over half their limit, for [`stall`] (taken:
    /// a publisher that awaits it need not keep the whole `Touched` in its future).
    pub(crate) fn take_stalled(&mut self) -> Stalled {
        std::mem::take(&mut self.stalled)
    }

    /// Stalls the producer for the consumers it fed that are over half their limit (see
    /// [`stall`]).
    pub(crate) async fn stall(&mut self, cancel: &tokio_util::sync::CancellationToken) {
        stall(self.take_stalled(), cancel).await;
    }
}

/// Consumers over half their limit, which a producer waits for.
pub(crate) type Stalled = SmallVec<[Arc<Conn>; 2]>;

/// Stalls a producer briefly while consumers it fed are over half their limit, as nats-server
/// does (2–5 ms per consumer, 10 ms at most per batch), so a fast producer slows down instead
/// of pushing a merely slow consumer over its limit. Ends early when `cancel` fires (the
/// producer closes or the server shuts down).
pub(crate) async fn stall(stalled: Stalled, cancel: &tokio_util::sync::CancellationToken) {
    const MAX_EACH: Duration = Duration::from_millis(5);
    const MAX_TOTAL: Duration = Duration::from_millis(10);
    if stalled.is_empty() {
        return;
    }
    let start = tokio::time::Instant::now();
    for conn in stalled {
        let left = MAX_TOTAL.saturating_sub(start.elapsed());
        if left.is_zero() {
            continue;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {}
            _ = conn.closing().cancelled() => {}
            _ = tokio::time::timeout(left.min(MAX_EACH), conn.wait_drained()) => {}
        }
    }
}

/// Routes one message published in `account` to every matching subscription. Returns whether
/// anything was delivered (no-responders needs to know; a route counts).
///
/// A message published here reaches each peer with matching interest once (one `RMSG` carrying
/// the queue groups that peer was picked for); a message from a route goes to local subscribers
/// only (one hop) and leafnodes that joined us, and to local queue members only for the groups
/// the origin server picked us for. A message from a leafnode goes to local subscribers,
/// routes (unless it came from our hub) and other leafnodes.
pub(crate) fn publish(
    broker: &Broker,
    account: &Account,
    from: &Conn,
    msg: &Msg<'_>,
    touched: &mut Touched,
) -> bool {
    Delivery { broker, account }.publish(from, msg, touched)
}

/// Publishes a run of payloads to one subject, without reply or headers (an in-process
/// client's `publish_many`). In-process plain subscriptions get the run whole: one claim, one
/// reservation, one hand-over and wake-up, and per message only the payload moved (cloned for
/// all but the last of them). Everyone else (sockets, routes, leafnodes, queue groups,
/// imports) gets each message as [`publish`] delivers it.
pub(crate) fn publish_run(
    broker: &Broker,
    account: &Account,
    from: &Conn,
    subject: &Subject,
    payloads: Vec<Bytes>,
    touched: &mut Touched,
) {
    Delivery { broker, account }.publish_run(from, subject, payloads, touched)
}

/// Delivers one message from `from` to one subscription (no-responders answers go straight to
/// the requester's own subscription).
pub(crate) fn deliver(
    broker: &Broker,
    account: &Account,
    from: &Conn,
    sub: &Arc<Subscription>,
    msg: &Msg<'_>,
    touched: &mut Touched,
) -> bool {
    Delivery { broker, account }.deliver(from, sub, None, msg, touched)
}

/// One publish in progress: the broker and the account the message is published in.
struct Delivery<'b> {
    broker: &'b Broker,
    account: &'b Account,
}

impl Delivery<'_> {
    fn publish(&self, from: &Conn, msg: &Msg<'_>, touched: &mut Touched) -> bool {
        // Borrowed, not `matches`: taking the shared result's `Arc` would be two atomic writes
        // per message on a count every publisher of the subject contends on.
        self.account.sublist().with_matches(msg.subject, |result| {
            self.publish_to(result, from, msg, touched)
        })
    }

    fn publish_run(
        &self,
        from: &Conn,
        subject: &Subject,
        payloads: Vec<Bytes>,
        touched: &mut Touched,
    ) {
        let routing = subject.as_bytes();
        self.account.sublist().with_matches(routing, |result| {
            let no_echo = !from.echo();
            let runs: SmallVec<[&Arc<Subscription>; 4]> = result
                .plain
                .iter()
                .filter(|sub| matches!(sub.target, Target::Local(_)))
                .filter(|sub| !(no_echo && sub.conn.cid == from.cid))
                .collect();
            if runs.len() < result.plain.len() || !result.queues.is_empty() {
                for payload in &payloads {
                    let mut msg = Msg::new(routing, None, None, payload, payload);
                    msg.shown_bytes = Some(subject);
                    msg.skip_local = true;
                    self.publish_to(result, from, &msg, touched);
                }
            }
            let mut payloads = Some(payloads);
            for (i, sub) in runs.iter().enumerate() {
                let these = match payloads.take() {
                    Some(last) if i + 1 == runs.len() => last,
                    Some(all) => {
                        let mut copy = self.broker.run_buffers().take(all.len());
                        copy.extend_from_slice(&all);
                        payloads = Some(all);
                        copy
                    }
                    None => Vec::new(),
                };
                deliver_run(sub, subject, these, touched);
            }
        })
    }

    fn publish_to(
        &self,
        result: &MatchResult<Arc<Subscription>>,
        from: &Conn,
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> bool {
        let from_route = from.kind == ConnKind::Route;
        let from_leaf = from.kind == ConnKind::Leaf;
        // A message from our hub does not go on to our routes (our peers have their own leaf
        // connections), as nats-server's `isSpokeLeafNode` rule.
        let to_routes = !from_route && !from.is_solicited_leaf();
        let no_echo = !from.echo();
        let mut delivered = false;
        let mut routes: SmallVec<[RouteTarget<'_>; 4]> = SmallVec::new();
        for sub in result.plain.iter() {
            match sub.conn.kind {
                ConnKind::Route => {
                    if to_routes {
                        route_target(&mut routes, &sub.conn);
                    }
                    continue;
                }
                // Unlike a route's, a leafnode's messages reach other leafnodes (never one
                // into the cluster it came from); a routed message reaches only leafnodes that
                // joined us (a hub we joined is told by the peer that got it first).
                ConnKind::Leaf => {
                    if sub.conn.cid != from.cid
                        && (!from_route || !sub.conn.is_solicited_leaf())
                        && !sub.conn.same_leaf_origin(from)
                        && !sub.is_removed()
                    {
                        route_target(&mut routes, &sub.conn);
                    }
                    continue;
                }
                _ => {}
            }
            if no_echo && sub.conn.cid == from.cid {
                continue;
            }
            if msg.skip_local && matches!(sub.target, Target::Local(_)) {
                continue;
            }
            delivered |= self.deliver(from, sub, None, msg, touched);
        }
        for group in result.queues.iter() {
            let pick = match &msg.queues {
                // The sender picked us for these groups: a route's message goes to a local
                // member (a leafnode's as a fallback); a leafnode's is picked again here, over
                // every member but the sender (it may go on to a route or another leaf).
                Some(picked) if picked.iter().any(|q| q == &group.name[..]) => {
                    if from_leaf {
                        self.pick_member(from, no_echo, to_routes, group, msg, touched)
                    } else {
                        self.deliver_to_local_member(from, group, msg, touched)
                    }
                }
                Some(_) => Pick::None,
                // Published here: pick one member cluster-wide.
                None if !from_route && !from_leaf => {
                    self.pick_member(from, no_echo, true, group, msg, touched)
                }
                None => Pick::None,
            };
            match pick {
                Pick::Local => delivered = true,
                Pick::Route(conn) => route_target(&mut routes, conn).queues.push(&group.name),
                Pick::None => {}
            }
        }
        for target in &routes {
            delivered |= self.forward(target, msg, touched);
        }
        delivered
    }

    /// Picks one member of a queue group as nats-server's origin server does: a random point
    /// over local members (weight 1 each) and peers (weighted by their member counts), then
    /// the first member from there that accepts. A local pick is delivered here. A leafnode
    /// member is taken only when no local or route member is (nats-server defers leafs), and
    /// never the connection the message came from; routes only when `to_routes`.
    fn pick_member<'r>(
        &self,
        from: &Conn,
        no_echo: bool,
        to_routes: bool,
        group: &'r QueueGroup<Arc<Subscription>>,
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> Pick<'r> {
        let members = &group.members[..];
        let n = members.len();
        if n == 0 {
            return Pick::None;
        }
        let is_remote = |k: ConnKind| matches!(k, ConnKind::Route | ConnKind::Leaf);
        let start = if n == 1 {
            0
        } else if members.iter().all(|m| !is_remote(m.conn.kind)) {
            fastrand::usize(..n)
        } else {
            let total: u64 = members.iter().map(|m| m.weight() as u64).sum();
            let mut point = fastrand::u64(..total);
            members
                .iter()
                .position(|m| {
                    let w = m.weight() as u64;
                    if point < w {
                        true
                    } else {
                        point -= w;
                        false
                    }
                })
                .unwrap_or(0)
        };
        let mut leaf: Option<&'r Arc<Conn>> = None;
        for i in 0..n {
            let sub = &members[(start + i) % n];
            match sub.conn.kind {
                ConnKind::Route => {
                    if to_routes && !sub.is_removed() && !sub.conn.is_closed() {
                        return Pick::Route(&sub.conn);
                    }
                    continue;
                }
                ConnKind::Leaf => {
                    if leaf.is_none()
                        && sub.conn.cid != from.cid
                        && !sub.conn.same_leaf_origin(from)
                        && !sub.is_removed()
                        && !sub.conn.is_closed()
                    {
                        leaf = Some(&sub.conn);
                    }
                    continue;
                }
                _ => {}
            }
            if no_echo && sub.conn.cid == from.cid {
                continue;
            }
            if self.deliver(from, sub, Some(&group.name), msg, touched) {
                return Pick::Local;
            }
        }
        leaf.map_or(Pick::None, Pick::Route)
    }

    /// For a routed message: one local member of the group (never another route); a
    /// leafnode member if no local one takes it.
    fn deliver_to_local_member<'r>(
        &self,
        from: &Conn,
        group: &'r QueueGroup<Arc<Subscription>>,
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> Pick<'r> {
        let members = &group.members[..];
        let n = members.len();
        if n == 0 {
            return Pick::None;
        }
        let start = if n == 1 { 0 } else { fastrand::usize(..n) };
        let mut leaf = None;
        for sub in (0..n).map(|i| &members[(start + i) % n]) {
            match sub.conn.kind {
                ConnKind::Route => {}
                ConnKind::Leaf => {
                    if leaf.is_none() && !sub.is_removed() && !sub.conn.is_closed() {
                        leaf = Some(&sub.conn);
                    }
                }
                _ => {
                    if self.deliver(from, sub, Some(&group.name), msg, touched) {
                        return Pick::Local;
                    }
                }
            }
        }
        leaf.map_or(Pick::None, Pick::Route)
    }

    /// Sends one `RMSG` (or `HMSG`) to a route peer, or one `LMSG` (or leaf `HMSG`) to a
    /// leafnode, naming the queue groups it was picked for. A leafnode connection is bound
    /// to one account on each side, so its form carries no account.
    fn forward(&self, target: &RouteTarget<'_>, msg: &Msg<'_>, touched: &mut Touched) -> bool {
        let conn = target.conn;
        let leaf = conn.kind == ConnKind::Leaf;
        // A leafnode's permissions (its remote's deny_exports, its user's subscribe
        // permissions) apply to each message it is sent (its wildcard interest may be wider).
        if leaf {
            if let Some(p) = conn.permissions() {
                if !p.compiled().may_subscribe(msg.subject, None) {
                    return false;
                }
            }
        }
        let (header_len, data) = msg.wire_form(conn.wants_headers());
        let appended = conn.push_msg(
            |b| {
                if leaf {
                    encode::write_lmsg(
                        b,
                        msg.subject,
                        msg.reply,
                        &target.queues,
                        header_len,
                        data.len(),
                    )
                } else {
                    encode::write_rmsg(
                        b,
                        self.account.name().as_bytes(),
                        msg.subject,
                        msg.reply,
                        &target.queues,
                        header_len,
                        data.len(),
                    )
                }
            },
            data,
            msg.owner,
        );
        touched.appended(conn, appended)
    }

    /// Appends one message to one subscription's connection.
    fn deliver(
        &self,
        from: &Conn,
        sub: &Arc<Subscription>,
        queue: Option<&[u8]>,
        msg: &Msg<'_>,
        touched: &mut Touched,
    ) -> bool {
        if let Target::Shadow(shadow) = &sub.target {
            // The subscriber's own subscription counts the delivery (and its max).
            let subject = shadow.subject(msg.subject);
            let mapped = Msg::new(
                subject.as_bytes(),
                msg.reply,
                msg.header_len,
                msg.data,
                msg.owner,
            );
            return self.deliver(from, &shadow.of, queue, &mapped, touched);
        }
        if !sub.conn.may_deliver(msg.subject, queue, msg.reply) {
            return false;
        }
        let Some(last) = sub.claim() else {
            return false;
        };
        let conn = &sub.conn;
        let delivered = match &sub.target {
            Target::Wire => self.deliver_socket(sub, msg, touched),
            Target::Local(queue) => {
                let delivered = deliver_local(conn, queue, msg, touched);
                if last {
                    touched.flush_local(queue);
                }
                delivered
            }
            Target::Internal(handler) => {
                handler.handle(self.broker, self.account, from, msg, touched)
            }
            // Delivered through the subscription it stands for, above.
            Target::Shadow(_) => false,
        };
        if delivered && conn.is_stalled() {
            touched.stalled(conn);
        }
        if last {
            unsubscribe(sub);
        }
        delivered
    }

    /// Delivers to a socket client: a small message is staged for the end of the producer's
    /// batch; a large one (its payload shared, not copied) or one for a connection beyond the
    /// staging slots is appended at once, after whatever is staged for that connection.
    fn deliver_socket(&self, sub: &Subscription, msg: &Msg<'_>, touched: &mut Touched) -> bool {
        let conn = &sub.conn;
        let (header_len, data) = msg.wire_form(conn.wants_headers());
        let ctl = |b: &mut BytesMut| match header_len {
            Some(h) => encode::write_hmsg(b, msg.shown, &sub.sid, msg.reply, h, data.len()),
            None => encode::write_msg(b, msg.shown, &sub.sid, msg.reply, data.len()),
        };
        if data.len() <= INLINE_MAX && !conn.out_closed() {
            if let Some(staged) = touched.stage(conn) {
                staged.push(ctl, data);
                if staged.buf.len() >= STAGE_LIMIT {
                    touched.flush_conn(conn);
                }
                return true;
            }
        }
        touched.flush_conn(conn); // keep this consumer's output in order
        let appended = conn.push_msg(ctl, data, msg.owner);
        touched.appended(conn, appended)
    }
}

/// Delivers to an in-process subscriber: bounded by the connection's max_pending like a socket.
fn deliver_local(
    conn: &Arc<Conn>,
    queue: &Arc<LocalQueue>,
    msg: &Msg<'_>,
    touched: &mut Touched,
) -> bool {
    let size = msg.shown.len() + msg.data.len();
    if !reserve_local(conn, size) {
        return false;
    }
    touched.stage_local(conn, queue, msg.local().clone(), size)
}

/// Delivers a run of messages to an in-process subscription ([`publish_run`]).
fn deliver_run(
    sub: &Arc<Subscription>,
    subject: &Subject,
    mut payloads: Vec<Bytes>,
    touched: &mut Touched,
) {
    let Target::Local(queue) = &sub.target else {
        return;
    };
    let conn = &sub.conn;
    if !conn.may_deliver(subject.as_bytes(), None, None) {
        return;
    }
    let Some((n, last)) = sub.claim_many(payloads.len()) else {
        return;
    };
    payloads.truncate(n);
    let subject_len = subject.as_bytes().len();
    let size = payloads.iter().map(|p| subject_len + p.len()).sum();
    if reserve_local(conn, size) {
        // The subscriber's own copy of the subject (inline if short): the clone it makes for
        // each message it reads then touches no count the publisher or others write.
        let own = Subject::from(subject.as_str());
        touched.flush_local(queue); // after what is staged for it
        if queue.push_run(Run::new(own, payloads), size) {
            conn.count_local_out(n as u64, size);
            if conn.is_stalled() {
                touched.stalled(conn);
            }
        } else {
            conn.release_local(size);
        }
    }
    if last {
        unsubscribe(sub);
    }
}

/// Takes `size` bytes of an in-process subscriber's `max_pending`; false if it cannot take
/// them (closed, or over its limit and now closed as a slow consumer).
fn reserve_local(conn: &Arc<Conn>, size: usize) -> bool {
    if conn.is_closed() {
        return false;
    }
    if conn.reserve_local(size) {
        return true;
    }
    if conn.is_local_only() {
        // The server's own client (JetStream's) is never closed as a slow consumer: that
        // would take JetStream down for the account. What is past its limit is refused
        // instead, as if nobody listened (a publisher gets no PubAck, or a 503, and may
        // try again), and memory stays bounded.
        let refused = conn.count_local_refused();
        if refused == 1 || refused.is_multiple_of(10_000) {
            tracing::warn!(
                cid = conn.cid,
                refused,
                "server-side client at max_pending: messages refused"
            );
        }
        return false;
    }
    // The one outcome of going past the limit, as for a socket's queue.
    conn.close(crate::conn::ClosedReason::SlowConsumerPendingBytes);
    false
}

/// Removes a connection's subscription from its account (auto-unsubscribe after max).
fn unsubscribe(sub: &Arc<Subscription>) {
    if let Some(account) = sub.conn.account() {
        account.unsubscribe(sub);
    }
}
