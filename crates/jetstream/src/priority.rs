//! Priority groups of pull consumers (nats-server 2.11+): which waiting pull request gets the
//! next message, under the consumer's `priority_policy`.
//!
//! - `overflow`: a request with `min_pending` / `min_ack_pending` is served only while the
//!   consumer has at least that many messages left / unacknowledged; others wait.
//! - `pinned_client`: one request's client is pinned (a `Nats-Pin-Id` header on what it gets);
//!   only requests carrying that id are served until the pin is dropped: by
//!   `CONSUMER.UNPIN`, or when no request renews it for `priority_timeout`.
//! - `prioritized`: requests are served lowest `priority` (0–9) first.
//!
//! The consumer keeps the queue and the pin; this module holds the rules, so that
//! `consumer.rs` only asks it at a few points.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::api::error::ApiError;
use crate::api::types::Nanos;
use crate::consumer::ConsumerConfig;

/// nats-server's default `priority_timeout` for `pinned_client`: 2 minutes.
pub(crate) const DEFAULT_PINNED_TTL: Nanos = 120_000_000_000;

/// `priority_policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityPolicy {
    /// No priority groups.
    #[default]
    None,
    /// Requests with minimums are served only when the consumer is behind enough.
    Overflow,
    /// One client at a time gets the messages.
    PinnedClient,
    /// Lower `priority` numbers are served first.
    Prioritized,
}

impl PriorityPolicy {
    /// Whether it is `none` (the config leaves it out then, as nats-server's `omitempty`).
    pub(crate) fn is_none(&self) -> bool {
        *self == Self::None
    }
}

/// nats-server's `validGroupName`: `^[a-zA-Z0-9/_=-]{1,16}$`.
pub(crate) fn valid_group_name(name: &str) -> bool {
    (1..=16).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'=' | b'-'))
}

/// The priority-group rules of a consumer's configuration (nats-server's `checkConsumerCfg`).
pub(crate) fn validate(config: &ConsumerConfig) -> Result<(), ApiError> {
    let groups = &config.priority_groups;
    if config.priority_policy.is_none() {
        if !groups.is_empty() {
            return Err(ApiError::new(
                400,
                10196,
                "consumer can not have priority groups when policy is none",
            ));
        }
        if config.priority_timeout > 0 {
            return Err(ApiError::new(
                400,
                10197,
                "PinnedTTL cannot be set when PriorityPolicy is none",
            ));
        }
        return Ok(());
    }
    if config.deliver_subject.is_some() {
        return Err(ApiError::new(
            400,
            10178,
            "priority groups can not be used with push consumers",
        ));
    }
    if groups.is_empty() {
        return Err(ApiError::new(
            400,
            10159,
            "Setting PriorityPolicy requires at least one PriorityGroup to be set",
        ));
    }
    for g in groups {
        if g.is_empty() {
            return Err(ApiError::new(
                400,
                10161,
                "Group name cannot be an empty string",
            ));
        }
        if !valid_group_name(g) {
            return Err(invalid_group_name());
        }
    }
    Ok(())
}

/// nats-server's `JSConsumerInvalidGroupNameErr`.
pub(crate) fn invalid_group_name() -> ApiError {
    ApiError::new(
        400,
        10162,
        "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters",
    )
}

/// nats-server's `JSConsumerInvalidPriorityGroupErr`.
pub(crate) fn unknown_group() -> ApiError {
    ApiError::new(
        400,
        10160,
        "Provided priority group does not exist for this consumer",
    )
}

/// A pull request's priority-group fields. Every JSON pull request has them (empty when not
/// sent), as nats-server's; a bare batch number has none.
/// A `null` is the same as leaving the field out, as for nats-server (async-nats sends `null`s).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct PullGroup {
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) group: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) min_pending: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) min_ack_pending: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) priority: i64,
}

/// A value, or its default for `null`.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A request's priority in the queue: one without a group goes after all others, as
/// nats-server ranks it (`MaxInt32`).
pub(crate) fn rank(group: Option<&PullGroup>) -> i64 {
    group.map_or(i64::from(i32::MAX), |g| g.priority)
}

/// The current pin of a `pinned_client` consumer.
pub(crate) struct Pin {
    /// The id its client sends (`id`) and gets (`Nats-Pin-Id`).
    pub(crate) id: String,
    /// The group it was pinned in.
    pub(crate) group: String,
    /// When it was pinned (ns since the epoch), for `pinned_ts`.
    pub(crate) since: i64,
    /// Dropped at this time unless a request with its id comes first.
    pub(crate) expires: Instant,
}

/// A change of pin, for the `CONSUMER.PINNED` / `CONSUMER.UNPINNED` advisories.
pub(crate) enum PinEvent {
    /// A client was pinned, with this id, in this group.
    Pinned { group: String, id: String },
    /// The pin was dropped: `admin` (`CONSUMER.UNPIN`) or `timeout`.
    Unpinned { group: String, reason: &'static str },
}

/// A new pin id: 22 characters, as long as nats-server's (a NUID).
pub(crate) fn new_pin_id() -> String {
    let mut id = crate::api::random_token();
    id.push_str(&crate::api::random_token());
    id.push_str(&crate::api::random_token()[..6]);
    id
}

/// Checks a new pull request against the consumer's policy and groups (nats-server's
/// `processNextMsgRequest`): the status to refuse it with, else whether it renews the pin.
pub(crate) fn check_request(
    config: &ConsumerConfig,
    group: Option<&PullGroup>,
    pin: Option<&Pin>,
) -> Result<bool, (u16, String)> {
    let Some(g) = group else { return Ok(false) };
    let policy = config.priority_policy;
    let bad = |what: &str| Err((400, format!("Bad Request - {what}")));
    if (g.min_pending != 0 || g.min_ack_pending != 0) && policy != PriorityPolicy::Overflow {
        return bad("Not a Overflow Priority consumer");
    }
    if !g.id.is_empty() && policy != PriorityPolicy::PinnedClient {
        return bad("Not a Pinned Client Priority consumer");
    }
    if !(0..=9).contains(&g.priority) {
        return bad("Priority must be between 0 and 9");
    }
    if policy.is_none() {
        return Ok(false);
    }
    if g.group.is_empty() {
        return bad("Priority Group missing");
    }
    let groups = &config.priority_groups;
    if !groups.contains(&g.group) {
        return bad("Invalid Priority Group");
    }
    match pin {
        Some(p) if g.id == p.id => Ok(true),
        Some(_) if !g.id.is_empty() => Err((423, "Nats-Pin-Id mismatch".into())),
        _ => Ok(false),
    }
}

/// Which waiting request the next message goes to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The request at this index.
    Serve(usize),
    /// The request at this index, whose client is pinned now (`pinned_client`, no pin yet).
    Pin(usize),
    /// The request at this index carries an old pin id: it is answered 423 and dropped.
    WrongPin(usize),
    /// None of them may have it now.
    Wait,
}

/// Picks the request for the next message (nats-server's `nextWaiting`), from the requests'
/// groups in queue order. `num_pending` counts the messages left including the one to deliver;
/// `ack_pending` the deliveries not yet acknowledged.
pub(crate) fn choose<'a>(
    policy: PriorityPolicy,
    groups: impl Iterator<Item = Option<&'a PullGroup>>,
    pin: Option<&Pin>,
    num_pending: u64,
    ack_pending: usize,
) -> Choice {
    for (i, g) in groups.enumerate() {
        match policy {
            PriorityPolicy::PinnedClient => {
                let id = g.map_or("", |g| g.id.as_str());
                match pin {
                    // No pin: the first request without an id takes it; one with an id holds
                    // a pin that is gone.
                    None if id.is_empty() => return Choice::Pin(i),
                    None => return Choice::WrongPin(i),
                    Some(p) if id == p.id => return Choice::Serve(i),
                    // Not the pinned client: it waits for the pin to go.
                    Some(_) if id.is_empty() => continue,
                    Some(_) => return Choice::WrongPin(i),
                }
            }
            PriorityPolicy::Overflow => {
                if let Some(g) = g {
                    let limited = g.min_pending > 0 || g.min_ack_pending > 0;
                    // Either minimum reached is enough.
                    let reached = (g.min_pending > 0 && g.min_pending as u64 <= num_pending)
                        || (g.min_ack_pending > 0
                            && g.min_ack_pending as u64 <= ack_pending as u64);
                    if limited && !reached {
                        continue;
                    }
                }
                return Choice::Serve(i);
            }
            PriorityPolicy::None | PriorityPolicy::Prioritized => return Choice::Serve(i),
        }
    }
    Choice::Wait
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(min_pending: i64, min_ack_pending: i64, id: &str) -> PullGroup {
        PullGroup {
            group: "A".into(),
            min_pending,
            min_ack_pending,
            id: id.into(),
            priority: 0,
        }
    }

    #[test]
    fn null_priority_fields_are_left_out() {
        let c: ConsumerConfig = serde_json::from_str(
            r#"{"priority_groups":null,"priority_policy":null,"priority_timeout":null}"#,
        )
        .unwrap();
        assert!(c.priority_groups.is_empty() && c.priority_policy.is_none());
        let p: ConsumerConfig =
            serde_json::from_str(r#"{"priority_policy":"pinned_client","priority_groups":["A"]}"#)
                .unwrap();
        assert_eq!(p.priority_policy, PriorityPolicy::PinnedClient);
        assert!(validate(&p).is_ok());
    }

    #[test]
    fn group_names() {
        assert!(valid_group_name("A-b_c/d=9"));
        assert!(!valid_group_name(""));
        assert!(!valid_group_name("a.b"));
        assert!(!valid_group_name("abcdefghijklmnopq"));
    }

    #[test]
    fn overflow_skips_requests_below_their_minimum() {
        let reqs = [g(10, 0, ""), g(0, 0, "")];
        let groups = || reqs.iter().map(Some);
        let pick = choose(PriorityPolicy::Overflow, groups(), None, 5, 0);
        assert_eq!(pick, Choice::Serve(1));
        let pick = choose(PriorityPolicy::Overflow, groups(), None, 10, 0);
        assert_eq!(pick, Choice::Serve(0));
        let only = [g(0, 3, "")];
        let pick = choose(PriorityPolicy::Overflow, only.iter().map(Some), None, 1, 2);
        assert_eq!(pick, Choice::Wait);
    }

    #[test]
    fn pinned_serves_the_pin_only() {
        let pin = Pin {
            id: "X".into(),
            group: "A".into(),
            since: 0,
            expires: Instant::now(),
        };
        let reqs = [g(0, 0, ""), g(0, 0, "X")];
        let pick = choose(
            PriorityPolicy::PinnedClient,
            reqs.iter().map(Some),
            Some(&pin),
            1,
            0,
        );
        assert_eq!(pick, Choice::Serve(1));
        let pick = choose(
            PriorityPolicy::PinnedClient,
            reqs.iter().map(Some),
            None,
            1,
            0,
        );
        assert_eq!(pick, Choice::Pin(0));
        let stale = [g(0, 0, "old")];
        let pick = choose(
            PriorityPolicy::PinnedClient,
            stale.iter().map(Some),
            None,
            1,
            0,
        );
        assert_eq!(pick, Choice::WrongPin(0));
    }
}
