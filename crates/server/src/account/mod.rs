//! Accounts: isolated subject spaces. An [`Account`] owns its sublist, the connections bound to
//! it, its limits, and what it exports and imports; [`Accounts`] is the broker's set of them.
//!
//! - `config`: the public description of an account ([`config::Account`], users, exports,
//!   imports), what the builder and the binary's config file produce.
//! - `imports`: stream imports (shadow subscriptions in the exporter's space) and service
//!   imports (requests crossing into the exporter, their reply mappings, latency).
//! - `system`: the system account's services and advisories.
//!
//! A connection resolves its account once, at CONNECT, and keeps the `Arc<Account>`: a published
//! message costs one lookup in that account's sublist, never a map of accounts.

pub(crate) mod cancel;
pub(crate) mod config;
mod imports;
pub(crate) mod system;
mod transform;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use starling_sublist::{SubHandle, Sublist, SublistError, SublistStats};

use crate::cluster::Routes;
use crate::config::Config;
use crate::conn::{Conn, ConnKind};
use crate::leaf::Leafs;
use crate::subscription::{OwnedSub, Subscription};
use config::AccountLimits;
pub(crate) use config::GLOBAL_ACCOUNT;
pub(crate) use imports::ShadowTarget;

/// One account at run time.
pub(crate) struct Account {
    /// Itself, for the server-side subscriptions that must find it again.
    weak: Weak<Self>,
    name: Arc<str>,
    sublist: Sublist<Arc<Subscription>>,
    /// Where this account's interest is announced (none without a cluster).
    routes: Option<Arc<Routes>>,
    /// The leafnode connections its interest is announced on (none without leafnodes).
    leafs: Option<Arc<Leafs>>,
    limits: AccountLimits,
    /// Connections bound to it, by id.
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    counters: AccountCounters,
    exports: imports::Exports,
    /// Resolved once every account exists.
    imports: OnceLock<imports::Imports>,
    /// The shadow subscriptions (in exporters' sublists) of this account's subscriptions that
    /// overlap a stream import, by the subscription's address.
    shadows: Mutex<HashMap<usize, Vec<imports::Shadow>>>,
    /// Reply mappings of requests to this account's services.
    responses: imports::ResponseMap,
    /// Responders waiting to learn that a requester gave up (see `cancel.rs`).
    watches: cancel::Watches,
}

/// What an account's connections did (nats-server's `/accstatz`).
#[derive(Default)]
struct AccountCounters {
    total_conns: AtomicU64,
    in_msgs: AtomicU64,
    in_bytes: AtomicU64,
    slow_consumers: AtomicU64,
    /// Sent to connections of the account that have since closed.
    retired_out_msgs: AtomicU64,
    retired_out_bytes: AtomicU64,
}

/// An account's figures at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccountFigures {
    /// Client connections (leafnodes not included).
    pub(crate) conns: usize,
    /// Leafnode connections bound to the account.
    pub(crate) leafnodes: usize,
    pub(crate) total_conns: u64,
    pub(crate) in_msgs: u64,
    pub(crate) in_bytes: u64,
    pub(crate) out_msgs: u64,
    pub(crate) out_bytes: u64,
    pub(crate) slow_consumers: u64,
}

impl Account {
    fn new(
        name: &str,
        limits: AccountLimits,
        exports: imports::Exports,
        routes: Option<Arc<Routes>>,
        leafs: Option<Arc<Leafs>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|weak| Self {
            weak: weak.clone(),
            name: name.into(),
            sublist: Sublist::new(),
            routes,
            leafs,
            limits,
            conns: Mutex::new(HashMap::new()),
            counters: AccountCounters::default(),
            exports,
            imports: OnceLock::new(),
            shadows: Mutex::new(HashMap::new()),
            responses: imports::ResponseMap::default(),
            watches: cancel::Watches::default(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Who is interested in `subject` in this account.
    #[inline]
    pub(crate) fn sublist(&self) -> &Sublist<Arc<Subscription>> {
        &self.sublist
    }

    /// The account's own subscription limit, if it has one.
    pub(crate) fn max_subscriptions(&self) -> Option<usize> {
        (self.limits.max_subscriptions > 0).then_some(self.limits.max_subscriptions)
    }

    /// The account's own payload limit, if it has one.
    pub(crate) fn max_payload(&self) -> Option<usize> {
        (self.limits.max_payload > 0).then_some(self.limits.max_payload)
    }

    // --- Subscriptions. ---

    /// Inserts a local subscription (a client's, or one of the server's own that peers must
    /// know about, or the interest of a leafnode that joined us) and tells cluster peers and
    /// leafnodes about new interest.
    pub(crate) fn insert(
        &self,
        sub: &Arc<Subscription>,
        subject: &[u8],
        queue: Option<&[u8]>,
    ) -> Result<SubHandle, SublistError> {
        let _order = self.leafs.as_ref().map(|l| l.hold());
        let handle = self.sublist.insert(subject, queue, sub.clone())?;
        let weight = weight_of(sub, queue);
        if let Some(routes) = self.announced_to(sub) {
            routes.interest_changed(&self.name, subject, queue, weight as i32);
        }
        self.leaf_interest(sub, subject, queue, weight);
        Ok(handle)
    }

    /// Removes a local subscription inserted by [`Self::insert`] (and peers' view of it).
    pub(crate) fn remove(&self, sub: &Subscription, handle: &SubHandle) {
        sub.mark_removed();
        let _order = self.leafs.as_ref().map(|l| l.hold());
        if self.sublist.remove(handle).is_some() {
            self.watches.after_removal(&self.sublist, handle.subject());
            let weight = weight_of(sub, handle.queue());
            if let Some(routes) = self.announced_to(sub) {
                routes.interest_changed(
                    &self.name,
                    handle.subject(),
                    handle.queue(),
                    -(weight as i32),
                );
            }
            self.leaf_interest(sub, handle.subject(), handle.queue(), -weight);
        }
    }

    /// The routes `sub`'s interest is announced to: none without a cluster, or when its
    /// connection keeps its interest on this server.
    fn announced_to(&self, sub: &Subscription) -> Option<&Arc<Routes>> {
        self.routes.as_ref().filter(|_| !sub.conn.is_local_only())
    }

    /// Tells leafnodes about a change of interest. Unlike routes, leafnodes bound to this
    /// account hear of every subscription in its sublist, remote ones included (which of them
    /// a given leafnode hears of is decided in `leaf/links.rs`).
    fn leaf_interest(&self, sub: &Subscription, subject: &[u8], queue: Option<&[u8]>, delta: i64) {
        if let Some(leafs) = &self.leafs {
            leafs.interest_changed(self, sub, subject, queue, delta);
        }
    }

    /// A remote queue subscription's weight changed by `delta` (a leafnode re-announced its
    /// group): routes hear of it when `announce`, leafnodes always.
    pub(crate) fn weight_changed(
        &self,
        sub: &Subscription,
        subject: &[u8],
        queue: Option<&[u8]>,
        delta: i64,
        announce: bool,
    ) {
        let _order = self.leafs.as_ref().map(|l| l.hold());
        if let Some(routes) = self.announced_to(sub).filter(|_| announce) {
            routes.interest_changed(&self.name, subject, queue, delta as i32);
        }
        self.leaf_interest(sub, subject, queue, delta);
    }

    /// Inserts a subscription route peers must not hear of: a peer's own interest (a route's,
    /// or a hub's), or a server-side subscription that only serves this server's clients.
    /// Leafnodes do hear of a peer's interest (a leaf sees its hub's whole interest).
    pub(crate) fn insert_unannounced(
        &self,
        sub: &Arc<Subscription>,
        subject: &[u8],
        queue: Option<&[u8]>,
    ) -> Result<SubHandle, SublistError> {
        let _order = self.leafs.as_ref().map(|l| l.hold());
        let handle = self.sublist.insert(subject, queue, sub.clone())?;
        if sub.conn.kind != ConnKind::Internal {
            self.leaf_interest(sub, subject, queue, weight_of(sub, queue));
        }
        Ok(handle)
    }

    /// Removes a subscription inserted by [`Self::insert_unannounced`].
    pub(crate) fn remove_unannounced(&self, sub: &Subscription, handle: &SubHandle) {
        sub.mark_removed();
        let _order = self.leafs.as_ref().map(|l| l.hold());
        let removed = self.sublist.remove(handle).is_some();
        if removed {
            self.watches.after_removal(&self.sublist, handle.subject());
        }
        if removed && sub.conn.kind != ConnKind::Internal {
            self.leaf_interest(
                sub,
                handle.subject(),
                handle.queue(),
                -weight_of(sub, handle.queue()),
            );
        }
    }

    /// Removes a connection's subscription: from its owner's sid map and the sublist
    /// (auto-unsubscribe, UNSUB, an in-process subscriber dropped).
    pub(crate) fn unsubscribe(&self, sub: &Arc<Subscription>) {
        let owned = {
            let mut subs = sub.conn.subs.lock();
            match subs.get(&sub.sid[..]) {
                Some(o) if Arc::ptr_eq(&o.sub, sub) => subs.remove(&sub.sid[..]),
                _ => None,
            }
        };
        if let Some(owned) = owned {
            self.remove_owned(&owned);
        }
    }

    /// Removes a client's subscription taken out of its owner's sid map (and its shadows).
    pub(crate) fn remove_owned(&self, owned: &OwnedSub) {
        self.remove_shadows(&owned.sub);
        self.remove(&owned.sub, &owned.handle);
    }

    /// Fires `fire` once no subscriber here or on a peer is interested in `reply` (a
    /// requester gave up); at once if none is now.
    pub(crate) fn watch_reply(&self, reply: bytes::Bytes, fire: cancel::Fire) {
        self.watches.watch(&self.sublist, reply, fire);
    }

    /// Subscriptions in the account's sublist (remote interest included).
    pub(crate) fn sublist_stats(&self) -> SublistStats {
        self.sublist.stats()
    }

    // --- Connections. ---

    /// Binds a connection to the account. Fails (binding nothing) when the account is at its
    /// connection limit.
    pub(crate) fn bind(self: &Arc<Self>, conn: &Arc<Conn>) -> Result<(), AccountFull> {
        let mut conns = self.conns.lock();
        let max = self.limits.max_connections;
        if max > 0 && conns.len() >= max {
            return Err(AccountFull);
        }
        conns.insert(conn.cid, conn.clone());
        drop(conns);
        conn.bind_account(self);
        self.counters.total_conns.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets a closed connection, keeping what it was sent and whether it was cut off.
    pub(crate) fn unbind(&self, conn: &Conn) {
        if self.conns.lock().remove(&conn.cid).is_none() {
            return;
        }
        let (msgs, bytes) = conn.out_counts();
        let c = &self.counters;
        c.retired_out_msgs.fetch_add(msgs, Ordering::Relaxed);
        c.retired_out_bytes.fetch_add(bytes, Ordering::Relaxed);
        if conn.closed_reason().is_some_and(|r| r.is_slow_consumer()) {
            c.slow_consumers.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts what one read batch of one of its connections brought in.
    #[inline]
    pub(crate) fn count_in(&self, msgs: u64, bytes: u64) {
        self.counters.in_msgs.fetch_add(msgs, Ordering::Relaxed);
        self.counters.in_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The connections bound to it.
    pub(crate) fn conns(&self) -> Vec<Arc<Conn>> {
        self.conns.lock().values().cloned().collect()
    }

    /// How many connections are bound to it.
    pub(crate) fn conn_count(&self) -> usize {
        self.conns.lock().len()
    }

    /// How many of them are leafnode connections.
    pub(crate) fn leaf_count(&self) -> usize {
        self.conns
            .lock()
            .values()
            .filter(|c| c.kind == ConnKind::Leaf)
            .count()
    }

    /// The account's figures now.
    pub(crate) fn figures(&self) -> AccountFigures {
        let c = &self.counters;
        let mut f = AccountFigures {
            conns: 0,
            leafnodes: 0,
            total_conns: c.total_conns.load(Ordering::Relaxed),
            in_msgs: c.in_msgs.load(Ordering::Relaxed),
            in_bytes: c.in_bytes.load(Ordering::Relaxed),
            out_msgs: c.retired_out_msgs.load(Ordering::Relaxed),
            out_bytes: c.retired_out_bytes.load(Ordering::Relaxed),
            slow_consumers: c.slow_consumers.load(Ordering::Relaxed),
        };
        for conn in self.conns() {
            if conn.kind == ConnKind::Leaf {
                f.leafnodes += 1;
            } else {
                f.conns += 1;
            }
            let (m, b) = conn.out_counts();
            f.out_msgs += m;
            f.out_bytes += b;
        }
        f
    }
}

/// How much a subscription counts in announced interest: its weight for a queue member (a
/// peer's group counts its members), 1 otherwise.
fn weight_of(sub: &Subscription, queue: Option<&[u8]>) -> i64 {
    if queue.is_some() {
        i64::from(sub.weight())
    } else {
        1
    }
}

/// The account is at its connection limit.
#[derive(Debug)]
pub(crate) struct AccountFull;

/// Every account of a broker, by name: `$G`, the configured ones, and the system account.
/// Read without a lock (a reload that adds or removes accounts swaps the whole map).
pub(crate) struct Accounts {
    by_name: ArcSwap<HashMap<String, Arc<Account>>>,
    global: Arc<Account>,
    system: Option<Arc<Account>>,
    /// What new accounts are wired to.
    routes: Option<Arc<Routes>>,
    leafs: Option<Arc<Leafs>>,
}

impl Accounts {
    /// The accounts `opts` describes (already validated), `$G`, and the system account (created
    /// if no configured account has its name).
    pub(crate) fn new(
        opts: &Config,
        routes: Option<&Arc<Routes>>,
        leafs: Option<&Arc<Leafs>>,
    ) -> Self {
        let configs = &opts.accounts;
        let system = opts.system.as_deref();
        let plain = |name: &str| {
            Account::new(
                name,
                AccountLimits::default(),
                imports::Exports::default(),
                routes.cloned(),
                leafs.cloned(),
            )
        };
        let global = plain(GLOBAL_ACCOUNT);
        let mut by_name = HashMap::new();
        by_name.insert(GLOBAL_ACCOUNT.to_string(), global.clone());
        for c in configs {
            let exports = imports::Exports::new(c);
            let account = Account::new(&c.name, c.limits, exports, routes.cloned(), leafs.cloned());
            by_name.insert(c.name.clone(), account);
        }
        let system = system.map(|name| {
            by_name
                .entry(name.to_string())
                .or_insert_with(|| plain(name))
                .clone()
        });
        let accounts = Self {
            by_name: ArcSwap::from_pointee(by_name),
            global,
            system,
            routes: routes.cloned(),
            leafs: leafs.cloned(),
        };
        for c in configs {
            if let Some(account) = accounts.get(&c.name) {
                account.resolve_imports(c, &accounts);
            }
        }
        accounts
    }

    /// A reload's accounts: those `configs` names that do not exist yet are created (their
    /// imports resolved, their service imports installed), those no longer named leave the
    /// map (the reload then checks their clients again, which closes them). `$G` and the
    /// system account stay. Returns the names added and removed.
    pub(crate) fn reconcile(
        &self,
        configs: &[config::Account],
        system: &system::System,
    ) -> (Vec<String>, Vec<String>) {
        let current = self.by_name.load_full();
        let mut next: HashMap<String, Arc<Account>> = HashMap::new();
        next.insert(GLOBAL_ACCOUNT.to_string(), self.global.clone());
        if let Some(sys) = &self.system {
            next.insert(sys.name().to_string(), sys.clone());
        }
        let mut added = Vec::new();
        for c in configs {
            let account = match current.get(&c.name) {
                Some(a) => a.clone(),
                None => {
                    added.push(c.name.clone());
                    let exports = imports::Exports::new(c);
                    Account::new(
                        &c.name,
                        c.limits,
                        exports,
                        self.routes.clone(),
                        self.leafs.clone(),
                    )
                }
            };
            next.insert(c.name.clone(), account);
        }
        let removed: Vec<String> = current
            .keys()
            .filter(|n| !next.contains_key(*n))
            .cloned()
            .collect();
        self.by_name.store(Arc::new(next));
        for c in configs.iter().filter(|c| added.contains(&c.name)) {
            if let Some(account) = self.get(&c.name) {
                account.resolve_imports(c, self);
                account.install_service_imports(system);
            }
        }
        (added, removed)
    }

    /// `$G`, where clients of no other account are.
    pub(crate) fn global(&self) -> &Arc<Account> {
        &self.global
    }

    /// The system account, unless turned off.
    pub(crate) fn system(&self) -> Option<&Arc<Account>> {
        self.system.as_ref()
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Account>> {
        self.by_name.load().get(name).cloned()
    }

    /// Starts what the accounts need while the broker runs: the expiry of service reply
    /// mappings, when any account exports a service.
    pub(crate) fn start(&self, broker: &Arc<crate::broker::Broker>) {
        let threshold = self
            .by_name
            .load()
            .values()
            .filter_map(|a| a.exports.min_threshold())
            .min();
        if let Some(threshold) = threshold {
            broker
                .lifecycle()
                .spawn(imports::sweep_responses(broker.clone(), threshold));
        }
    }

    /// Every account, sorted by name.
    pub(crate) fn all(&self) -> Vec<Arc<Account>> {
        let mut all: Vec<_> = self.by_name.load().values().cloned().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }
}
