//! The JSON of the JetStream API, with nats-server's keys and defaults. Fields Starling does not
//! act on yet are kept in `extra` and echoed back, so a client's configuration survives a round
//! trip and an identical create stays idempotent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
pub use crate::consumer::{AckPolicy, ConsumerConfig, DeliverPolicy, PriorityPolicy};

/// A duration in nanoseconds, as JetStream's JSON has them.
pub type Nanos = i64;

/// The default duplicate window: two minutes.
pub const DEFAULT_DUPLICATE_WINDOW: Nanos = 120_000_000_000;

/// `retention`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Kept until a limit removes it.
    #[default]
    Limits,
    /// Kept while a consumer has yet to ack it.
    Interest,
    /// Removed once acknowledged by its one consumer.
    #[serde(rename = "workqueue")]
    WorkQueue,
}

/// `storage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk.
    #[default]
    File,
    /// In memory.
    Memory,
}

/// `discard`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// At a limit, old messages go.
    #[default]
    Old,
    /// At a limit, new messages are refused.
    New,
}

fn minus_one() -> i64 {
    -1
}
fn one() -> i64 {
    1
}
fn is_no_time(n: &Nanos) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// Stream configuration keys of nats-server 2.12 that Starling (speaking 2.11) does not know.
const UNSUPPORTED_2_12: [&str; 4] = [
    "allow_atomic",
    "allow_msg_counter",
    "allow_msg_schedules",
    "persist_mode",
];

/// A stream's configuration (nats-server's `StreamConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// The stream's name.
    #[serde(default)]
    pub name: String,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The subjects it captures (none for a mirror).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// What keeps messages.
    #[serde(default)]
    pub retention: Retention,
    /// Most consumers; -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_consumers: i64,
    /// Most messages; -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_msgs: i64,
    /// Most bytes; -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_bytes: i64,
    /// Oldest message age in nanoseconds; 0 = unlimited.
    #[serde(default)]
    pub max_age: Nanos,
    /// Most messages per subject; -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_msgs_per_subject: i64,
    /// Largest message; -1 = unlimited.
    #[serde(default = "minus_one")]
    pub max_msg_size: i64,
    /// What goes at a limit.
    #[serde(default)]
    pub discard: Discard,
    /// Where messages live.
    #[serde(default)]
    pub storage: Storage,
    /// Replicas (1 on a single server).
    #[serde(default = "one")]
    pub num_replicas: i64,
    /// How long `Nats-Msg-Id`s are remembered, in nanoseconds (0 for mirrors and sources
    /// unless set).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub duplicate_window: Nanos,
    /// `Nats-Rollup` is honoured.
    #[serde(default)]
    pub allow_rollup_hdrs: bool,
    /// MSG.DELETE is refused.
    #[serde(default)]
    pub deny_delete: bool,
    /// PURGE is refused.
    #[serde(default)]
    pub deny_purge: bool,
    /// DIRECT.GET is served.
    #[serde(default)]
    pub allow_direct: bool,
    /// Nothing changes any more.
    #[serde(default)]
    pub sealed: bool,
    /// With `discard: new`, the per-subject limit refuses too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    /// Publishes are not acknowledged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_ack: bool,
    /// `Nats-TTL` headers are honoured (nats-server 2.11).
    #[serde(default)]
    pub allow_msg_ttl: bool,
    /// The TTL of the marker left when age or a TTL removes a subject's last message, in
    /// nanoseconds; 0 = no markers.
    #[serde(default, skip_serializing_if = "is_no_time")]
    pub subject_delete_marker_ttl: Nanos,
    /// User metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Everything else the client sent, echoed back.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl StreamConfig {
    /// Parses a request, then fills nats-server's defaults and checks the result.
    pub(crate) fn from_request(body: &[u8]) -> Result<Self, ApiError> {
        if body.is_empty() {
            return Err(ApiError::invalid_json("unexpected end of JSON input"));
        }
        let mut c: Self = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
        crate::source::normalize(&mut c);
        c.fill_defaults();
        Ok(c)
    }

    /// nats-server's defaults (`checkStreamCfg`).
    fn fill_defaults(&mut self) {
        // What 2.12 added and Starling does not do (atomic batches, counters, schedules, async
        // persistence) is dropped, as a 2.11 server that does not know the keys drops them:
        // echoed back, they would tell a client the feature is on.
        for k in UNSUPPORTED_2_12 {
            self.extra.remove(k);
        }
        let sourced = self.extra.get("mirror").is_some_and(|m| !m.is_null())
            || self
                .extra
                .get("sources")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
        if self.subjects.is_empty() && !sourced {
            self.subjects.push(self.name.clone());
        }
        // A mirror or a stream with sources deduplicates only when asked to (nats-server's).
        if self.duplicate_window == 0 && !sourced {
            self.duplicate_window = DEFAULT_DUPLICATE_WINDOW;
        }
        if self.max_age > 0 && self.duplicate_window > self.max_age {
            self.duplicate_window = self.max_age;
        }
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        for (k, v) in [
            ("compression", Value::from("none")),
            ("mirror_direct", Value::from(false)),
            ("consumer_limits", Value::Object(Map::new())),
        ] {
            self.extra.entry(k).or_insert(v);
        }
        // Markers need TTLs (their own) and roll-ups (they replace the subject's messages).
        if self.subject_delete_marker_ttl > 0 {
            self.allow_msg_ttl = true;
            self.allow_rollup_hdrs = true;
            self.deny_purge = false;
        }
        if self.max_msgs == 0 {
            self.max_msgs = -1;
        }
        if self.max_bytes == 0 {
            self.max_bytes = -1;
        }
        if self.max_msgs_per_subject == 0 {
            self.max_msgs_per_subject = -1;
        }
        if self.max_msg_size == 0 {
            self.max_msg_size = -1;
        }
        if self.max_consumers == 0 {
            self.max_consumers = -1;
        }
    }

    /// What nats-server refuses in a stream's own configuration.
    pub(crate) fn validate(&self) -> Result<(), ApiError> {
        if self.name.is_empty() {
            return Err(ApiError::invalid_config("stream name is required"));
        }
        if !valid_name(&self.name) {
            return Err(ApiError::invalid_stream_name());
        }
        if self.num_replicas > 1 {
            return Err(ApiError::new(
                500,
                10074,
                "replicas > 1 not supported in non-clustered mode",
            ));
        }
        if self.discard_new_per_subject
            && (self.discard != Discard::New || self.max_msgs_per_subject <= 0)
        {
            let text = if self.discard != Discard::New {
                "discard new per subject requires discard new policy to be set"
            } else {
                "discard new per subject requires max msgs per subject > 0"
            };
            return Err(ApiError::invalid_config(text));
        }
        if let Some((src, dest)) = self.subject_transform_spec() {
            if crate::transform::Transform::new(&src, &dest).is_err() {
                return Err(ApiError::invalid_config(format!(
                    "stream configuration for subject transform from '{src}' to '{dest}' not valid"
                )));
            }
        }
        if let Some((src, dest, _)) = self.republish_spec() {
            if crate::transform::Transform::new(&src, &dest).is_err() {
                return Err(ApiError::invalid_config(format!(
                    "stream configuration for republish with transform from '{src}' to '{dest}' not valid"
                )));
            }
            if self
                .subjects
                .iter()
                .any(|s| starling_sublist::subjects_collide(s.as_bytes(), dest.as_bytes()))
            {
                return Err(ApiError::invalid_config(
                    "stream configuration for republish destination forms a cycle",
                ));
            }
        }
        let has_mirror = self.extra.get("mirror").is_some_and(|m| !m.is_null());
        if self.extra.get("mirror_direct").and_then(Value::as_bool) == Some(true) && !has_mirror {
            return Err(ApiError::invalid_config(
                "stream has no mirror but does have mirror direct",
            ));
        }
        crate::source::validate(self)?;
        if self.max_age != 0 && self.max_age < 100_000_000 {
            return Err(ApiError::invalid_config("max age needs to be >= 100ms"));
        }
        if self.duplicate_window < 0 {
            return Err(ApiError::invalid_config(
                "duplicates window can not be negative",
            ));
        }
        if self.subject_delete_marker_ttl > 0 {
            if self.subject_delete_marker_ttl < 1_000_000_000 {
                return Err(ApiError::invalid_config(
                    "subject delete marker TTL must be at least 1 second",
                ));
            }
            if has_mirror {
                return Err(ApiError::invalid_config(
                    "subject delete markers forbidden on mirrors",
                ));
            }
        } else if self.subject_delete_marker_ttl < 0 {
            return Err(ApiError::invalid_config(
                "subject delete marker TTL must not be negative",
            ));
        }
        if self.deny_purge && self.allow_rollup_hdrs {
            return Err(ApiError::invalid_config(
                "roll-ups require the purge permission",
            ));
        }
        for s in &self.subjects {
            if !starling_sublist::is_valid_subject(s.as_bytes()) {
                return Err(ApiError::invalid_config("invalid subject"));
            }
            if starling_sublist::subjects_collide(s.as_bytes(), b"$JS.API.>") && !self.no_ack {
                return Err(ApiError::invalid_config(
                    "subjects that overlap with jetstream api require no-ack to be true",
                ));
            }
        }
        for (i, a) in self.subjects.iter().enumerate() {
            for b in &self.subjects[i + 1..] {
                if starling_sublist::subjects_collide(a.as_bytes(), b.as_bytes()) {
                    return Err(ApiError::invalid_config("duplicate subjects detected"));
                }
            }
        }
        Ok(())
    }
}

impl StreamConfig {
    /// `subject_transform`: source (default `>`) and destination.
    pub(crate) fn subject_transform_spec(&self) -> Option<(String, String)> {
        let t = self.extra.get("subject_transform")?;
        let dest = t.get("dest")?.as_str()?.to_string();
        let src = t
            .get("src")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(">")
            .to_string();
        Some((src, dest))
    }

    /// `republish`: source (default `>`), destination, headers only.
    pub(crate) fn republish_spec(&self) -> Option<(String, String, bool)> {
        let r = self.extra.get("republish")?;
        let dest = r.get("dest")?.as_str()?.to_string();
        let src = r
            .get("src")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(">")
            .to_string();
        let headers_only = r.get("headers_only").and_then(Value::as_bool) == Some(true);
        Some((src, dest, headers_only))
    }
}

/// A stream or consumer name nats-server accepts: no whitespace, `.`, `*`, `>`, or path
/// separators.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| {
            c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_control()
        })
}

/// A stream's state, as STREAM.INFO reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStateJson {
    /// Messages held.
    pub messages: u64,
    /// Bytes held.
    pub bytes: u64,
    /// The first sequence held (0 for a new stream).
    pub first_seq: u64,
    /// When the first held message was stored.
    pub first_ts: String,
    /// The last sequence.
    pub last_seq: u64,
    /// When the last message was stored.
    pub last_ts: String,
    /// Distinct subjects held.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_subjects: u64,
    /// Interior deletes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_deleted: u64,
    /// Per-subject counts, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Map<String, Value>>,
    /// Consumers of the stream.
    pub consumer_count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A publish acknowledgement (`PubAck`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PubAck<'a> {
    /// The stream that stored it.
    pub stream: &'a str,
    /// Its sequence.
    pub seq: u64,
    /// The JetStream domain, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<&'a str>,
    /// It was a duplicate: `seq` is the original's.
    #[serde(skip_serializing_if = "is_false")]
    pub duplicate: bool,
}
