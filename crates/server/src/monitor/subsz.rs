//! `/subsz` (alias `/subscriptionsz`): the sublist's figures and, with `subs=1`, the
//! subscriptions (optionally only those a `test=SUBJECT` would reach), paged by
//! `offset`/`limit`.
//!
//! As nats-server 2.9.10 does, the reply is the bare figures block when there is no
//! subscription to list (no `subs=1`, or nothing matches the test subject).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;
use starling_sublist::{is_valid_literal_subject, subject_matches};

use super::connz::SubDetail;
use super::format::go_float;
use super::{now, page, BadRequest, Handled, Monitor, Query};
use crate::conn::ConnKind;
use crate::subscription::Subscription;

/// nats-server's `SublistStats` keys (also `/accountz`'s `sublist_stats`).
#[derive(Serialize)]
pub(super) struct Figures {
    num_subscriptions: u32,
    num_cache: u32,
    num_inserts: u64,
    num_removes: u64,
    num_matches: u64,
    #[serde(serialize_with = "go_float")]
    cache_hit_rate: f64,
    max_fanout: u32,
    #[serde(serialize_with = "go_float")]
    avg_fanout: f64,
}

impl From<&starling_sublist::SublistStats> for Figures {
    fn from(s: &starling_sublist::SublistStats) -> Self {
        Self {
            num_subscriptions: s.num_subscriptions,
            num_cache: s.num_cache,
            num_inserts: s.num_inserts,
            num_removes: s.num_removes,
            num_matches: s.num_matches,
            cache_hit_rate: s.cache_hit_rate,
            max_fanout: s.max_fanout,
            avg_fanout: s.avg_fanout,
        }
    }
}

#[derive(Serialize)]
struct Subsz {
    server_id: String,
    now: String,
    #[serde(flatten)]
    figures: Figures,
    total: usize,
    offset: usize,
    limit: usize,
    subscriptions_list: Vec<SubDetail>,
}

pub(super) fn subsz(mon: &Monitor<'_>, query: &Query) -> Handled {
    let list = query.flag("subs")?;
    let (offset, limit) = query.page()?;
    let test = match query.get("test").filter(|t| !t.is_empty()) {
        Some(t) if !is_valid_literal_subject(t.as_bytes()) => {
            return Err(BadRequest(format!(
                "Error decoding test subject {t:?}: invalid subject"
            )))
        }
        t => t,
    };
    let acc = query.get("acc").filter(|a| !a.is_empty());
    let view = mon.view();
    let s = view.sublist_stats(acc);
    let figures = Figures::from(&s);
    // (account, subject, queue, subscription): local subscriptions only, as nats-server lists
    // them (a peer's interest is `/routez`'s).
    let mut subs: Vec<(String, String, Option<String>, Arc<Subscription>)> = Vec::new();
    if list {
        for account in view.accounts() {
            if acc.is_some_and(|a| a != account.name()) {
                continue;
            }
            account.sublist().for_each(|subject, queue, sub| {
                let local = matches!(sub.conn.kind, ConnKind::Client | ConnKind::InProcess);
                if local && test.is_none_or(|t| subject_matches(subject, t.as_bytes())) {
                    subs.push((
                        account.name().to_string(),
                        String::from_utf8_lossy(subject).into_owned(),
                        queue.map(|q| String::from_utf8_lossy(q).into_owned()),
                        sub.clone(),
                    ));
                }
            });
        }
    }
    if subs.is_empty() {
        return Ok(mon.json(&figures));
    }
    let total = subs.len();
    let subscriptions_list = page(subs, offset, limit)
        .into_iter()
        .map(|(account, subject, queue, sub)| SubDetail {
            account,
            subject,
            qgroup: queue.unwrap_or_default(),
            sid: String::from_utf8_lossy(&sub.sid).into_owned(),
            msgs: sub.delivered(),
            max: sub.max.load(Ordering::Relaxed),
            cid: sub.conn.cid,
        })
        .collect();
    Ok(mon.json(&Subsz {
        server_id: mon.server_id(),
        now: now(),
        figures,
        total,
        offset,
        limit,
        subscriptions_list,
    }))
}
