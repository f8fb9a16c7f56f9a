//! The `CONSUMER.*` requests.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use starling_server::Message;

use super::error::ApiError;
use super::{parse, stream_of, LIST_LIMIT, NAMES_LIMIT};
use crate::account::JsAccount;
use crate::api::types::valid_name;
use crate::consumer::{info_json, Consumer, ConsumerConfig};
use crate::events::{self, Action};

#[derive(Deserialize)]
struct CreateRequest {
    #[serde(default)]
    stream_name: String,
    config: ConsumerConfig,
    #[serde(default)]
    action: String,
}

/// `CONSUMER.CREATE.<stream>[.<name>[.<filter>]]` and `CONSUMER.DURABLE.CREATE.<stream>.<durable>`.
pub(crate) async fn create(
    js: &JsAccount,
    verb: &str,
    rest: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let req: CreateRequest = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    let mut parts = rest.splitn(3, '.');
    let stream_name = parts.next().unwrap_or_default();
    let subject_name = parts.next().filter(|n| !n.is_empty());
    let subject_filter = parts.next();
    if !req.stream_name.is_empty() && req.stream_name != stream_name {
        return Err(ApiError::new(
            400,
            10056,
            "stream name in subject does not match request",
        ));
    }
    let stream = stream_of(js, stream_name)?;
    let mut config = req.config;
    let durable = config.durable_name.clone().filter(|d| !d.is_empty());
    let name = match (verb, subject_name) {
        ("CONSUMER.DURABLE.CREATE", Some(n)) => {
            if durable.as_deref().is_some_and(|d| d != n) {
                return Err(ApiError::new(
                    400,
                    10017,
                    "consumer name in subject does not match durable name in request",
                ));
            }
            config.durable_name = Some(n.to_string());
            n.to_string()
        }
        (_, Some(n)) => {
            if let Some(cfg_name) = config.name.as_deref().filter(|c| !c.is_empty()) {
                if cfg_name != n {
                    return Err(ApiError::new(
                        400,
                        10017,
                        "consumer name in subject does not match durable name in request",
                    ));
                }
            }
            if durable.as_deref().is_some_and(|d| d != n) {
                return Err(ApiError::new(
                    400,
                    10017,
                    "consumer name in subject does not match durable name in request",
                ));
            }
            if let Some(f) = subject_filter {
                if config.filter_subject.as_deref() != Some(f) {
                    return Err(ApiError::new(
                        400,
                        10131,
                        "consumer create request did not match filtered subject from create subject",
                    ));
                }
            }
            n.to_string()
        }
        (_, None) => {
            if durable.is_some() {
                return Err(ApiError::new(
                    400,
                    10020,
                    "consumer expected to be ephemeral but a durable name was set in request",
                ));
            }
            match config.name.clone().filter(|n| !n.is_empty()) {
                Some(n) => n,
                None => ephemeral_name(),
            }
        }
    };
    if !valid_name(&name) {
        return Err(ApiError::new(
            400,
            10103,
            "consumer name can not contain path separators",
        ));
    }
    let is_durable = config
        .durable_name
        .as_deref()
        .is_some_and(|d| !d.is_empty());
    if config.name.as_deref().is_none_or(str::is_empty) {
        config.name = Some(name.clone());
    }
    config.fill_defaults(is_durable);
    if let Some(existing) = stream.consumer(&name) {
        // The same configuration again, whatever the action: nats-server answers with the
        // consumer as it is.
        if existing.config().config == config {
            return Ok(info_json(&existing, &stream, js.server().server_name()));
        }
        if req.action == "create" {
            return Err(ApiError::new(400, 10148, "consumer already exists"));
        }
        existing.update(config)?;
        save_meta(&existing)?;
        events::consumer_action(
            js.client(),
            stream.name(),
            existing.name(),
            Action::Modify,
            js.domain(),
        )
        .await;
        return Ok(info_json(&existing, &stream, js.server().server_name()));
    }
    if req.action == "update" {
        return Err(ApiError::new(400, 10149, "consumer does not exist"));
    }
    let limits = js.limits();
    if limits.max_consumers >= 0 {
        let all: usize = js
            .streams()
            .iter()
            .map(|s| s.public_consumers().len())
            .sum();
        if all as i64 >= limits.max_consumers {
            return Err(ApiError::new(400, 10026, "maximum consumers limit reached"));
        }
    }
    if limits.max_ack_pending > 0 && config.max_ack_pending > limits.max_ack_pending {
        return Err(ApiError::new(
            400,
            10121,
            format!(
                "consumer max ack pending exceeds system limit of {}",
                limits.max_ack_pending
            ),
        ));
    }
    if stream.config().retention == crate::api::types::Retention::WorkQueue {
        work_queue_rules(&stream, &config)?;
    }
    let consumer = Consumer::new(
        &stream,
        name,
        config,
        js.server().clone(),
        js.name().to_string(),
        crate::time::now_ns(),
    )?;
    save_meta(&consumer)?;
    consumer.start(js.server(), js.client()).await?;
    stream.add_consumer(consumer.clone());
    events::consumer_action(
        js.client(),
        stream.name(),
        consumer.name(),
        Action::Create,
        js.domain(),
    )
    .await;
    let mut v = info_json(&consumer, &stream, js.server().server_name());
    // A create's reply has no `cluster` (nats-server's), unlike CONSUMER.INFO's.
    if let Value::Object(o) = &mut v {
        o.remove("cluster");
    }
    Ok(v)
}

/// What nats-server requires of a consumer of a work-queue stream: explicit acks, deliver all,
/// and no two consumers that could take the same message.
fn work_queue_rules(
    stream: &crate::stream::Stream,
    config: &ConsumerConfig,
) -> Result<(), ApiError> {
    use crate::api::types::{AckPolicy, DeliverPolicy};
    if config.ack_policy != AckPolicy::Explicit {
        return Err(ApiError::new(
            400,
            10098,
            "workqueue stream requires explicit ack",
        ));
    }
    if config.deliver_policy != DeliverPolicy::All {
        return Err(ApiError::new(
            400,
            10101,
            "consumer must be deliver all on workqueue stream",
        ));
    }
    let mine = config.filters();
    for other in stream.public_consumers() {
        let theirs = other.config().config.filters();
        if mine.is_empty() || theirs.is_empty() {
            return Err(ApiError::new(
                400,
                10099,
                "multiple non-filtered consumers not allowed on workqueue stream",
            ));
        }
        let overlap = mine.iter().any(|a| {
            theirs
                .iter()
                .any(|b| starling_sublist::subjects_collide(a.as_bytes(), b.as_bytes()))
        });
        if overlap {
            return Err(ApiError::new(
                400,
                10100,
                "filtered consumer not unique on workqueue stream",
            ));
        }
    }
    Ok(())
}

/// Writes a durable consumer's `meta.json`, when it keeps one.
fn save_meta(consumer: &Consumer) -> Result<(), ApiError> {
    let Some(dir) = consumer.dir() else {
        return Ok(());
    };
    let meta = crate::account::ConsumerMeta {
        config: consumer.config().config.clone(),
        created: consumer.created(),
    };
    let body = serde_json::to_vec_pretty(&meta).map_err(ApiError::internal)?;
    crate::account::write_durably(dir, "meta.json", &body, true).map_err(ApiError::internal)
}

/// nats-server names ephemeral consumers with 8 random characters.
fn ephemeral_name() -> String {
    super::random_token()
}

fn consumer_of(
    js: &JsAccount,
    rest: &str,
) -> Result<(Arc<crate::stream::Stream>, Arc<Consumer>), ApiError> {
    let (s, c) = rest.split_once('.').ok_or_else(ApiError::bad_request)?;
    let stream = stream_of(js, s)?;
    let consumer = stream
        .consumer(c)
        .ok_or_else(ApiError::consumer_not_found)?;
    Ok((stream, consumer))
}

pub(crate) fn info(js: &JsAccount, rest: &str) -> Result<Value, ApiError> {
    let (stream, c) = consumer_of(js, rest)?;
    let mut v = info_json(&c, &stream, js.server().server_name());
    // A single server's CONSUMER.INFO has no `cluster` (nats-server's), unlike STREAM.INFO's.
    if let Value::Object(o) = &mut v {
        o.remove("cluster");
    }
    Ok(v)
}

pub(crate) async fn delete(js: &JsAccount, rest: &str) -> Result<Value, ApiError> {
    let (stream, c) = consumer_of(js, rest)?;
    stream.remove_consumer(c.name());
    events::consumer_action(
        js.client(),
        stream.name(),
        c.name(),
        Action::Delete,
        js.domain(),
    )
    .await;
    Ok(json!({ "success": true }))
}

#[derive(Deserialize, Default)]
struct Page {
    #[serde(default)]
    offset: usize,
}

pub(crate) fn names(js: &JsAccount, rest: &str, body: &[u8]) -> Result<Value, ApiError> {
    let page: Page = parse(body)?;
    let stream = stream_of(js, rest)?;
    let all = stream.public_consumers();
    let names: Vec<&str> = all
        .iter()
        .skip(page.offset)
        .take(NAMES_LIMIT)
        .map(|c| c.name())
        .collect();
    Ok(
        json!({ "total": all.len(), "offset": page.offset, "limit": NAMES_LIMIT, "consumers": names }),
    )
}

pub(crate) fn list(js: &JsAccount, rest: &str, body: &[u8]) -> Result<Value, ApiError> {
    let page: Page = parse(body)?;
    let stream = stream_of(js, rest)?;
    let all = stream.public_consumers();
    let infos: Vec<Value> = all
        .iter()
        .skip(page.offset)
        .take(LIST_LIMIT)
        .map(|c| info_json(c, &stream, js.server().server_name()))
        .collect();
    Ok(
        json!({ "total": all.len(), "offset": page.offset, "limit": LIST_LIMIT, "consumers": infos }),
    )
}

/// `CONSUMER.MSG.NEXT.<stream>.<consumer>`: queued; the consumer answers on the reply. A
/// refused request is answered with a status; a consumer that does not exist with `503`, as
/// nats-server's missing subscription answers.
pub(crate) fn next(js: &JsAccount, rest: &str, m: &Message) -> Option<(u16, String)> {
    let Ok((_, c)) = consumer_of(js, rest) else {
        return Some((503, String::new()));
    };
    let reply = m.reply.as_deref()?;
    c.request_next(reply, &m.payload).err()
}

/// `CONSUMER.PAUSE.<stream>.<consumer>`: `{"pause_until": <time>}` pauses deliveries until then;
/// no time (or one passed) resumes them.
pub(crate) fn pause(js: &JsAccount, rest: &str, body: &[u8]) -> Result<Value, ApiError> {
    #[derive(Deserialize, Default)]
    struct PauseRequest {
        #[serde(default)]
        pause_until: Option<String>,
    }
    let req: PauseRequest = parse(body)?;
    let (_, c) = consumer_of(js, rest)?;
    let until = match req.pause_until.as_deref() {
        None => None,
        Some(t) => Some(
            crate::time::parse_rfc3339(t)
                .ok_or_else(|| ApiError::invalid_json(format!("bad pause_until {t:?}")))?,
        ),
    };
    let until = c.pause(until);
    save_meta(&c)?;
    let mut v = json!({ "paused": until > 0, "pause_until": crate::time::rfc3339(until) });
    if until > 0 {
        v["pause_remaining"] = json!(until - crate::time::now_ns());
    }
    Ok(v)
}

/// `CONSUMER.UNPIN.<stream>.<consumer>`: `{"group": <name>}` drops that group's pinned client.
pub(crate) fn unpin(js: &JsAccount, rest: &str, body: &[u8]) -> Result<Value, ApiError> {
    #[derive(Deserialize, Default)]
    struct UnpinRequest {
        #[serde(default)]
        group: String,
    }
    // nats-server checks the request before it looks for the consumer.
    let req: UnpinRequest = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    if req.group.is_empty() {
        return Err(ApiError::invalid_json("consumer group not specified"));
    }
    if !crate::priority::valid_group_name(&req.group) {
        return Err(crate::priority::invalid_group_name());
    }
    let (_, c) = consumer_of(js, rest)?;
    c.unpin(&req.group)?;
    Ok(json!({}))
}

/// `CONSUMER.RESET.<stream>.<consumer>`: `{"seq": n}` starts the consumer again at stream
/// sequence `n`; no sequence, just after its ack floor. Answers with the consumer's info and
/// `reset_seq`.
pub(crate) fn reset(js: &JsAccount, rest: &str, body: &[u8]) -> Result<Value, ApiError> {
    #[derive(Deserialize, Default)]
    struct ResetRequest {
        #[serde(default)]
        seq: u64,
    }
    let req: ResetRequest = parse(body)?;
    let (stream, c) = consumer_of(js, rest)?;
    let seq = c.reset(req.seq)?;
    let mut v = info_json(&c, &stream, js.server().server_name());
    // As CONSUMER.INFO's on a single server: no `cluster`.
    if let Value::Object(o) = &mut v {
        o.remove("cluster");
    }
    v["reset_seq"] = json!(seq);
    Ok(v)
}
