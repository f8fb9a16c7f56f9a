//! What a user may publish and subscribe to: nats-server's `permissions { publish subscribe
//! allow_responses }`, given per user, per account (`default_permissions`) or for every user
//! (`authorization { default_permissions }`).
//!
//! [`Permissions`] is the configuration; [`Compiled`] is its matchers, built once per user and
//! shared by every connection of that user. What each connection keeps (a publish cache owned
//! by its read loop, the reply subjects it may answer) lives with the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use starling_sublist::{is_valid_subject, subject_matches, subjects_collide, Sublist};

use crate::error::AccountError;

/// How many reply subjects one response permission may answer by default (nats-server's
/// `DEFAULT_ALLOW_RESPONSE_MAX_MSGS`).
pub const DEFAULT_ALLOW_RESPONSE_MAX_MSGS: u64 = 1;

/// How long a reply subject stays answerable by default (nats-server's
/// `DEFAULT_ALLOW_RESPONSE_EXPIRATION`).
pub const DEFAULT_ALLOW_RESPONSE_EXPIRATION: Duration = Duration::from_secs(120);

/// A user's publish and subscribe permissions.
///
/// ```
/// use starling_server::{Permissions, SubjectPermission};
/// let p = Permissions::new()
///     .publish(SubjectPermission::new().allow(["orders.>"]).deny(["orders.secret"]))
///     .subscribe(SubjectPermission::new().allow(["_INBOX.>", "orders.* workers"]));
/// # let _ = p;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub(crate) publish: Option<SubjectPermission>,
    pub(crate) subscribe: Option<SubjectPermission>,
    pub(crate) responses: Option<ResponsePermission>,
}

impl Permissions {
    /// No restrictions until [`publish`](Self::publish), [`subscribe`](Self::subscribe) or
    /// [`allow_responses`](Self::allow_responses) add some.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the user may publish to.
    pub fn publish(mut self, permission: SubjectPermission) -> Self {
        self.publish = Some(permission);
        self
    }

    /// What the user may subscribe to. Entries may name a queue group: `"orders.* workers"`
    /// allows only queue subscriptions in group `workers` (the group may be a wildcard).
    pub fn subscribe(mut self, permission: SubjectPermission) -> Self {
        self.subscribe = Some(permission);
        self
    }

    /// Lets the user publish to the reply subject of each message it receives, within
    /// `permission`'s count and time. As in nats-server, without an explicit publish allow
    /// list this also makes the allow list empty: the user may then only reply.
    pub fn allow_responses(mut self, permission: ResponsePermission) -> Self {
        self.responses = Some(permission);
        self
    }

    /// Checks every subject as nats-server does when it loads a config (the builder's
    /// `check` and `start` call this for every user's and default permissions).
    pub fn validate(&self) -> Result<(), AccountError> {
        if let Some(p) = &self.publish {
            for s in p.allow.iter().flatten().chain(&p.deny) {
                if !is_valid_subject(s.as_bytes()) {
                    return Err(AccountError::InvalidPermission(format!(
                        "subject {s:?} is not a valid subject"
                    )));
                }
            }
        }
        if let Some(p) = &self.subscribe {
            for s in p.allow.iter().flatten().chain(&p.deny) {
                split_queue(s)?;
            }
        }
        Ok(())
    }
}

/// Allow and deny lists of subjects (wildcards allowed). Deny wins over allow.
///
/// With no allow list everything not denied is allowed. An empty allow list differs by
/// direction, as in nats-server: for publish it allows nothing, for subscribe everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectPermission {
    pub(crate) allow: Option<Vec<String>>,
    pub(crate) deny: Vec<String>,
}

impl SubjectPermission {
    /// Allows everything until [`allow`](Self::allow) or [`deny`](Self::deny) narrow it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds subjects to the allow list (creating it: `allow([] as [&str; 0])` is an empty one).
    pub fn allow<I, S>(mut self, subjects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow
            .get_or_insert_with(Vec::new)
            .extend(subjects.into_iter().map(Into::into));
        self
    }

    /// Adds subjects to the deny list.
    pub fn deny<I, S>(mut self, subjects: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.deny.extend(subjects.into_iter().map(Into::into));
        self
    }
}

/// `allow_responses`: how many messages may answer one received reply subject, and for how
/// long. The default is nats-server's: one response within two minutes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponsePermission {
    pub(crate) max_msgs: Option<u64>,
    pub(crate) expires: Option<Duration>,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        Self {
            max_msgs: Some(DEFAULT_ALLOW_RESPONSE_MAX_MSGS),
            expires: Some(DEFAULT_ALLOW_RESPONSE_EXPIRATION),
        }
    }
}

impl ResponsePermission {
    /// One response within two minutes.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` responses per reply subject; `None` for any number (nats-server: a
    /// negative `max`). 0 means the default, as in nats-server.
    pub fn max_msgs(mut self, n: Option<u64>) -> Self {
        self.max_msgs = match n {
            Some(0) => Some(DEFAULT_ALLOW_RESPONSE_MAX_MSGS),
            n => n,
        };
        self
    }

    /// How long a reply subject stays answerable; `None` for ever (nats-server: a negative
    /// `expires`). Zero means the default, as in nats-server.
    pub fn expires(mut self, ttl: Option<Duration>) -> Self {
        self.expires = match ttl {
            Some(d) if d.is_zero() => Some(DEFAULT_ALLOW_RESPONSE_EXPIRATION),
            d => d,
        };
        self
    }
}

/// Splits a subscribe entry `"subject [queue]"`, with nats-server's errors.
fn split_queue(entry: &str) -> Result<(&str, Option<&str>), AccountError> {
    if is_valid_subject(entry.as_bytes()) {
        return Ok((entry, None));
    }
    let parts: Vec<&str> = entry.split_whitespace().collect();
    match parts[..] {
        [subject, queue] => {
            if !is_valid_subject(subject.as_bytes()) {
                Err(AccountError::InvalidPermission(format!(
                    "subject {subject:?} is not a valid subject"
                )))
            } else if !is_valid_subject(queue.as_bytes()) {
                Err(AccountError::InvalidPermission(format!(
                    "queue {queue:?} is not a valid queue"
                )))
            } else {
                Ok((subject, Some(queue)))
            }
        }
        _ => Err(AccountError::InvalidPermission(format!(
            "subject {entry:?} is not a valid subject"
        ))),
    }
}

/// A user's permissions as matchers, shared by all its connections.
pub(crate) struct Compiled {
    pub_allow: Option<SubjectSet>,
    pub_deny: Option<SubjectSet>,
    sub_allow: Option<Sublist<()>>,
    /// Checked at SUB, and at delivery once a subscription overlaps an entry.
    sub_deny: Option<SubjectSet>,
    /// The subscribe deny entries' subjects, to see whether a subscription overlaps one.
    deny_subjects: Vec<String>,
    /// See [`Self::caches_publish`].
    cache_publish: bool,
    responses: Option<ResponsePermission>,
    /// What it was compiled from (to tell whether new permissions change anything).
    source: Permissions,
}

impl Compiled {
    /// Builds the matchers; `permissions` must have passed [`Permissions::validate`].
    pub(crate) fn new(permissions: &Permissions) -> Self {
        let mut publish = permissions.publish.clone();
        if permissions.responses.is_some() {
            // nats-server turns the blanket publish allow off: such a user may only reply.
            publish
                .get_or_insert_with(SubjectPermission::new)
                .allow
                .get_or_insert_with(Vec::new);
        }
        let (mut pub_allow, mut pub_deny) = (None, None);
        if let Some(p) = &publish {
            // An empty publish allow list allows nothing: an empty set.
            pub_allow = p.allow.as_ref().map(|list| SubjectSet::new(list));
            if !p.deny.is_empty() {
                pub_deny = Some(SubjectSet::new(&p.deny));
            }
        }
        let (mut sub_allow, mut sub_deny, mut deny_subjects) = (None, None, Vec::new());
        if let Some(p) = &permissions.subscribe {
            // An empty subscribe allow list allows everything: no matcher.
            if let Some(list) = p.allow.as_ref().filter(|l| !l.is_empty()) {
                sub_allow = Some(queue_matcher(list));
            }
            if !p.deny.is_empty() {
                sub_deny = Some(SubjectSet::new(&p.deny));
                deny_subjects = p
                    .deny
                    .iter()
                    .filter_map(|e| split_queue(e).ok())
                    .map(|(s, _)| s.to_owned())
                    .collect();
            }
        }
        let cache_publish = [&pub_allow, &pub_deny]
            .into_iter()
            .flatten()
            .any(|set| matches!(set, SubjectSet::Many(_)));
        Self {
            pub_allow,
            pub_deny,
            sub_allow,
            sub_deny,
            deny_subjects,
            cache_publish,
            responses: permissions.responses.clone(),
            source: permissions.clone(),
        }
    }

    /// Whether `other` was compiled from the same permissions.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.source == other.source
    }

    /// Whether publishes need a check at all.
    pub(crate) fn checks_publish(&self) -> bool {
        self.pub_allow.is_some() || self.pub_deny.is_some()
    }

    /// Whether a publish check costs enough to be worth caching per connection (a few
    /// patterns compare faster than a cache lookup hashes).
    #[inline]
    pub(crate) fn caches_publish(&self) -> bool {
        self.cache_publish
    }

    /// The static publish check: allow (if any), then deny.
    pub(crate) fn may_publish(&self, subject: &[u8]) -> bool {
        if let Some(allow) = &self.pub_allow {
            if !allow.matches(subject, None) {
                return false;
            }
        }
        match &self.pub_deny {
            Some(deny) => !deny.matches(subject, None),
            None => true,
        }
    }

    /// nats-server's `canSubscribeInternal`: a plain subscription needs a plain allow entry;
    /// a queue subscription may also match a queue-qualified one, whose group then must
    /// match. A deny entry wins.
    pub(crate) fn may_subscribe(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        let mut allowed = true;
        if let Some(allow) = &self.sub_allow {
            let r = allow.matches(subject);
            allowed = !r.plain.is_empty();
            if let Some(queue) = queue {
                if !r.queues.is_empty() {
                    allowed = queue_matches(queue, r.queues.iter().map(|g| &g.name[..]));
                }
            }
        }
        allowed && !self.denies_delivery(subject, queue)
    }

    /// Whether a new subscription could receive messages a deny entry forbids (a wildcard,
    /// or a queue subscription, that collides with one): deliveries to the connection are
    /// then checked one by one.
    pub(crate) fn overlaps_deny(&self, subject: &[u8], queue: bool) -> bool {
        (queue || !starling_sublist::subject_is_literal(subject))
            && self
                .deny_subjects
                .iter()
                .any(|d| subjects_collide(d.as_bytes(), subject))
    }

    /// The deny check (nats-server's `checkDenySub`, the same rule as at SUB): whether
    /// `subject` is denied to a subscription (of queue group `queue`).
    pub(crate) fn denies_delivery(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        self.sub_deny
            .as_ref()
            .is_some_and(|deny| deny.matches(subject, queue))
    }
}

/// Permission entries matched against a message's subject.
enum SubjectSet {
    /// A handful of `(subject, queue)` entries, compared in turn: cheaper than hashing the
    /// subject for a cache, and nothing to allocate on a miss.
    Few(Vec<(Pattern, Option<Box<[u8]>>)>),
    /// Many entries: a sublist (with its match cache).
    Many(Box<Sublist<()>>),
}

/// One permission subject, sorted by the cheapest way to match it: most entries are `>`,
/// a literal, or a literal prefix ending in `>`.
enum Pattern {
    /// `>`: any subject.
    Any,
    /// No wildcards: byte equality.
    Literal(Box<[u8]>),
    /// `a.b.>`, kept as `a.b.`: the subject starts with it and has more.
    Prefix(Box<[u8]>),
    /// Anything else (a `*` somewhere).
    General(Box<[u8]>),
}

impl Pattern {
    fn new(subject: &str) -> Self {
        let b = subject.as_bytes();
        if b == b">" {
            return Self::Any;
        }
        if starling_sublist::subject_is_literal(b) {
            return Self::Literal(b.into());
        }
        match b.strip_suffix(b">") {
            Some(prefix) if starling_sublist::subject_is_literal(prefix) => {
                Self::Prefix(prefix.into())
            }
            _ => Self::General(b.into()),
        }
    }

    #[inline]
    fn matches(&self, subject: &[u8]) -> bool {
        match self {
            Self::Any => !subject.is_empty(),
            Self::Literal(l) => &l[..] == subject,
            Self::Prefix(p) => subject.len() > p.len() && subject.starts_with(p),
            Self::General(g) => subject_matches(g, subject),
        }
    }
}

/// Up to this many entries are compared one by one.
const FEW: usize = 8;

impl SubjectSet {
    fn new(entries: &[String]) -> Self {
        let parsed = entries.iter().filter_map(|e| split_queue(e).ok());
        if entries.len() <= FEW {
            Self::Few(
                parsed
                    .map(|(s, q)| (Pattern::new(s), q.map(|q| q.as_bytes().into())))
                    .collect(),
            )
        } else {
            let list = Sublist::new();
            for (subject, queue) in parsed {
                // Validated when the server was built.
                let _ = list.insert(subject.as_bytes(), queue.map(str::as_bytes), ());
            }
            Self::Many(Box::new(list))
        }
    }

    /// Whether `subject` matches a plain entry, or (for a subscription of group `queue`) an
    /// entry naming the group.
    #[inline]
    fn matches(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        match self {
            Self::Few(entries) => entries.iter().any(|(pattern, group)| {
                pattern.matches(subject)
                    && match (group, queue) {
                        (None, _) => true,
                        (Some(group), Some(queue)) => {
                            queue_matches(queue, std::iter::once(&group[..]))
                        }
                        (Some(_), None) => false,
                    }
            }),
            Self::Many(list) => list.with_matches(subject, |r| {
                !r.plain.is_empty()
                    || queue.is_some_and(|q| {
                        !r.queues.is_empty()
                            && queue_matches(q, r.queues.iter().map(|g| &g.name[..]))
                    })
            }),
        }
    }
}

/// nats-server's `queueMatches`: the group by name, or by a wildcard entry.
fn queue_matches<'a>(queue: &[u8], mut names: impl Iterator<Item = &'a [u8]>) -> bool {
    names.any(|name| {
        name == queue
            || (!starling_sublist::subject_is_literal(name) && subject_matches(name, queue))
    })
}

fn queue_matcher(entries: &[String]) -> Sublist<()> {
    let list = Sublist::new();
    for entry in entries {
        if let Ok((subject, queue)) = split_queue(entry) {
            let _ = list.insert(subject.as_bytes(), queue.map(str::as_bytes), ());
        }
    }
    list
}

/// Per-connection state delivery needs: set at CONNECT for connections with permissions.
pub(crate) struct ConnPermissions {
    compiled: std::sync::Arc<Compiled>,
    /// Set once a subscription overlaps a deny entry: deliveries are checked from then on.
    filter_deliveries: AtomicBool,
    /// Reply subjects of delivered messages, answerable under `allow_responses`.
    replies: Option<Mutex<Replies>>,
}

/// nats-server prunes its reply map every 4096 additions or once a second.
const REPLY_PRUNE_EVERY: u32 = 4096;
const REPLY_PRUNE_INTERVAL: Duration = Duration::from_secs(1);

struct Replies {
    map: HashMap<Box<[u8]>, (Instant, u64)>,
    since_prune: u32,
    last_prune: Instant,
}

impl ConnPermissions {
    pub(crate) fn new(compiled: std::sync::Arc<Compiled>) -> Self {
        let replies = compiled.responses.as_ref().map(|_| {
            Mutex::new(Replies {
                map: HashMap::new(),
                since_prune: 0,
                last_prune: Instant::now(),
            })
        });
        Self {
            compiled,
            filter_deliveries: AtomicBool::new(false),
            replies,
        }
    }

    pub(crate) fn compiled(&self) -> &std::sync::Arc<Compiled> {
        &self.compiled
    }

    pub(crate) fn filter_deliveries(&self) {
        self.filter_deliveries.store(true, Ordering::Relaxed);
    }

    /// Whether deliveries to the connection must be checked at all: replies it may answer are
    /// tracked, or a subscription overlaps a deny entry.
    pub(crate) fn checks_deliveries(&self) -> bool {
        self.replies.is_some() || self.filter_deliveries.load(Ordering::Relaxed)
    }

    /// Whether a message on `subject` with `reply` may go to this connection; remembers the
    /// reply subject when the connection may answer it only under `allow_responses`.
    #[inline]
    pub(crate) fn on_delivery(
        &self,
        subject: &[u8],
        queue: Option<&[u8]>,
        reply: Option<&[u8]>,
    ) -> bool {
        if self.replies.is_none() && !self.filter_deliveries.load(Ordering::Relaxed) {
            return true;
        }
        self.check_delivery(subject, queue, reply)
    }

    fn check_delivery(&self, subject: &[u8], queue: Option<&[u8]>, reply: Option<&[u8]>) -> bool {
        if self.filter_deliveries.load(Ordering::Relaxed)
            && self.compiled.denies_delivery(subject, queue)
        {
            return false;
        }
        if let (Some(replies), Some(reply)) = (&self.replies, reply) {
            if !self.compiled.may_publish(reply) {
                let mut r = replies.lock();
                r.map.insert(reply.into(), (Instant::now(), 0));
                r.since_prune += 1;
                if r.since_prune > REPLY_PRUNE_EVERY
                    || r.last_prune.elapsed() > REPLY_PRUNE_INTERVAL
                {
                    self.prune(&mut r);
                }
            }
        }
        true
    }

    /// Whether `subject` is a reply subject this connection received and may still answer
    /// (counting this answer).
    pub(crate) fn may_respond(&self, subject: &[u8]) -> bool {
        let (Some(replies), Some(resp)) = (&self.replies, &self.compiled.responses) else {
            return false;
        };
        let mut r = replies.lock();
        let Some((at, n)) = r.map.get_mut(subject) else {
            return false;
        };
        *n += 1;
        let spent = resp.max_msgs.is_some_and(|max| *n > max);
        let expired = resp.expires.is_some_and(|ttl| at.elapsed() > ttl);
        if spent || expired {
            r.map.remove(subject);
            return false;
        }
        true
    }

    fn prune(&self, r: &mut Replies) {
        if let Some(resp) = &self.compiled.responses {
            r.map.retain(|_, (at, n)| {
                resp.max_msgs.is_none_or(|max| *n < max)
                    && resp.expires.is_none_or(|ttl| at.elapsed() <= ttl)
            });
        }
        r.since_prune = 0;
        r.last_prune = Instant::now();
    }
}

/// The read loop's publish cache (nats-server's `pcache`, 128 entries, 32 dropped when
/// full): owned by the connection's task, so a hit costs a hash lookup and no atomics.
pub(crate) struct PublishCache {
    map: hashbrown::HashMap<Box<[u8]>, bool>,
    /// The last subject checked and its answer: publishers mostly repeat a subject, and a
    /// compare is cheaper than hashing it.
    last: Vec<u8>,
    last_allowed: Option<bool>,
}

const PUBLISH_CACHE_MAX: usize = 128;
const PUBLISH_CACHE_PRUNE: usize = 32;

impl PublishCache {
    pub(crate) fn new() -> Self {
        Self {
            map: hashbrown::HashMap::default(),
            last: Vec::new(),
            last_allowed: None,
        }
    }

    /// The publish check for `subject`: cached, except that answers allowed only as
    /// responses are never cached (each one counts).
    #[inline]
    pub(crate) fn may_publish(&mut self, perms: &ConnPermissions, subject: &[u8]) -> bool {
        match self.last_allowed {
            Some(allowed) if self.last == subject => allowed,
            _ => self.lookup(perms, subject),
        }
    }

    fn lookup(&mut self, perms: &ConnPermissions, subject: &[u8]) -> bool {
        let cached = perms.compiled.caches_publish();
        if let Some(&allowed) = cached.then(|| self.map.get(subject)).flatten() {
            self.remember(subject, allowed);
            return allowed;
        }
        let allowed = perms.compiled.may_publish(subject);
        if !allowed && perms.replies.is_some() {
            return perms.may_respond(subject);
        }
        if !cached {
            self.remember(subject, allowed);
            return allowed;
        }
        if self.map.len() >= PUBLISH_CACHE_MAX {
            let mut seen = 0;
            self.map.retain(|_, _| {
                seen += 1;
                seen > PUBLISH_CACHE_PRUNE
            });
        }
        self.map.insert(subject.into(), allowed);
        self.remember(subject, allowed);
        allowed
    }

    fn remember(&mut self, subject: &[u8], allowed: bool) {
        self.last.clear();
        self.last.extend_from_slice(subject);
        self.last_allowed = Some(allowed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(allow: &[&str], deny: &[&str]) -> Compiled {
        let mut p = SubjectPermission::new().deny(deny.iter().copied());
        if !allow.is_empty() {
            p = p.allow(allow.iter().copied());
        }
        Compiled::new(&Permissions::new().subscribe(p))
    }

    #[test]
    fn subscribe_rules_follow_nats_server() {
        let c = sub(&["foo", "bar v1", "baz.*"], &["baz.secret"]);
        assert!(c.may_subscribe(b"foo", None));
        assert!(c.may_subscribe(b"foo", Some(b"any")));
        assert!(!c.may_subscribe(b"bar", None), "queue-only entry");
        assert!(c.may_subscribe(b"bar", Some(b"v1")));
        assert!(!c.may_subscribe(b"bar", Some(b"v2")));
        assert!(c.may_subscribe(b"baz.*", None));
        assert!(c.may_subscribe(b"baz.x", None));
        assert!(!c.may_subscribe(b"baz.secret", None));
        assert!(!c.may_subscribe(b"other", None));
        assert!(c.overlaps_deny(b"baz.*", false));
        assert!(!c.overlaps_deny(b"baz.x", false));
        assert!(c.denies_delivery(b"baz.secret", None));
        assert!(!c.denies_delivery(b"baz.x", None));
    }

    #[test]
    fn deny_entries_refuse_wildcard_subscriptions_as_nats_server_does() {
        // Go's sublist matches a wildcard subscription's tokens literally: a deny `*` or `>`
        // covers them, a deny literal does not (deliveries are then filtered instead).
        let c = sub(&[], &["a.*", "b.>", "c.x"]);
        assert!(!c.may_subscribe(b"a.*", None));
        assert!(!c.may_subscribe(b"b.*", None));
        assert!(!c.may_subscribe(b"b.>", None));
        assert!(c.may_subscribe(b"c.*", None));
        assert!(c.overlaps_deny(b"c.*", false));
    }

    #[test]
    fn a_wildcard_queue_entry_matches_groups() {
        let c = sub(&["jobs v1.*"], &[]);
        assert!(c.may_subscribe(b"jobs", Some(b"v1.a")));
        assert!(!c.may_subscribe(b"jobs", Some(b"v2.a")));
    }

    #[test]
    fn many_entries_match_as_a_few_do() {
        let mut allow: Vec<String> = (0..20).map(|i| format!("s{i}.>")).collect();
        allow.push("last".into());
        let few = Compiled::new(
            &Permissions::new().publish(
                SubjectPermission::new()
                    .allow(["s3.>", "last"])
                    .deny(["s3.x"]),
            ),
        );
        let many = Compiled::new(
            &Permissions::new().publish(SubjectPermission::new().allow(allow).deny(["s3.x"])),
        );
        assert!(!few.caches_publish());
        assert!(many.caches_publish());
        for c in [&few, &many] {
            assert!(c.may_publish(b"s3.a"));
            assert!(c.may_publish(b"last"));
            assert!(!c.may_publish(b"s3.x"));
            assert!(!c.may_publish(b"nope"));
        }
        let deny: Vec<String> = (0..20)
            .map(|i| format!("d{i} q{i}"))
            .chain(["plain.*".into()])
            .collect();
        let c = sub(&[], &deny.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(c.denies_delivery(b"d3", Some(b"q3")));
        assert!(!c.denies_delivery(b"d3", Some(b"q4")));
        assert!(!c.denies_delivery(b"d3", None));
        assert!(c.denies_delivery(b"plain.x", None));
        // The same entries as a few: each kind of pattern.
        let c = sub(&[], &["d3 q3", "plain.*", "p.>", "lit", "*.mid.>"]);
        assert!(c.denies_delivery(b"d3", Some(b"q3")));
        assert!(!c.denies_delivery(b"d3", None));
        assert!(c.denies_delivery(b"plain.x", None));
        assert!(!c.denies_delivery(b"plain.x.y", None));
        assert!(c.denies_delivery(b"p.a.b", None));
        assert!(!c.denies_delivery(b"p", None));
        assert!(c.denies_delivery(b"lit", None));
        assert!(!c.denies_delivery(b"lit.x", None));
        assert!(c.denies_delivery(b"a.mid.b", None));
        assert!(!c.denies_delivery(b"a.mid", None));
        let any = Compiled::new(&Permissions::new().publish(SubjectPermission::new().allow([">"])));
        assert!(any.may_publish(b"x.y"));
    }

    #[test]
    fn a_publish_cache_answers_as_the_check_does() {
        let mut allow: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
        allow.push("t.>".into());
        let compiled = std::sync::Arc::new(Compiled::new(
            &Permissions::new().publish(SubjectPermission::new().allow(allow).deny(["t.no"])),
        ));
        let conn = ConnPermissions::new(compiled);
        let mut cache = PublishCache::new();
        // More subjects than the cache holds, twice over, interleaved with a denied one.
        for round in 0..2 {
            for i in 0..300 {
                let subject = format!("s{i}");
                assert_eq!(
                    cache.may_publish(&conn, subject.as_bytes()),
                    i < 200,
                    "{round} {i}"
                );
                assert!(!cache.may_publish(&conn, b"t.no"));
                assert!(cache.may_publish(&conn, b"t.yes"));
            }
        }
        assert!(cache.map.len() <= PUBLISH_CACHE_MAX);
    }

    #[test]
    fn empty_allow_lists_differ_by_direction() {
        let p = Permissions::new()
            .publish(SubjectPermission::new().allow([] as [&str; 0]))
            .subscribe(SubjectPermission::new().allow([] as [&str; 0]));
        let c = Compiled::new(&p);
        assert!(!c.may_publish(b"anything"));
        assert!(c.may_subscribe(b"anything", None));
    }

    #[test]
    fn deny_beats_allow_for_publish() {
        let p = Permissions::new().publish(SubjectPermission::new().allow(["a.>"]).deny(["a.b"]));
        let c = Compiled::new(&p);
        assert!(c.may_publish(b"a.c"));
        assert!(!c.may_publish(b"a.b"));
        assert!(!c.may_publish(b"b"));
    }

    #[test]
    fn responses_turn_the_blanket_publish_allow_off_and_count() {
        let p = Permissions::new().allow_responses(ResponsePermission::new());
        let compiled = std::sync::Arc::new(Compiled::new(&p));
        assert!(!compiled.may_publish(b"x"));
        let conn = ConnPermissions::new(compiled);
        let mut cache = PublishCache::new();
        assert!(!cache.may_publish(&conn, b"_INBOX.1"));
        assert!(conn.on_delivery(b"svc", None, Some(b"_INBOX.1")));
        assert!(cache.may_publish(&conn, b"_INBOX.1"));
        assert!(!cache.may_publish(&conn, b"_INBOX.1"), "max 1 response");
    }

    #[test]
    fn bad_subjects_are_refused_with_nats_server_texts() {
        let p = Permissions::new().subscribe(SubjectPermission::new().allow(["foo bar baz"]));
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "subject \"foo bar baz\" is not a valid subject"
        );
        let p = Permissions::new().publish(SubjectPermission::new().allow(["foo bar"]));
        assert!(p.validate().is_err());
        let p = Permissions::new().subscribe(SubjectPermission::new().allow(["foo bar"]));
        assert!(p.validate().is_ok());
    }
}
