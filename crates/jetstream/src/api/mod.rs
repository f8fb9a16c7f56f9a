//! The JetStream API: JSON requests on `$JS.API.>` answered on their reply subject, as
//! nats-server answers them (the same keys, error codes and response types).
//!
//! - `types`: the request and response JSON.
//! - `error`: nats-server's API errors.

mod consumer;
pub mod error;
pub mod types;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use starling_server::Message;

use crate::account::JsAccount;
use crate::events::{self, Action};
use crate::stream::Stream;
use crate::time::{now_ns, rfc3339};
use error::ApiError;
use types::StreamConfig;

/// Most names one STREAM.NAMES page holds (nats-server's `JSApiNamesLimit`).
pub(crate) const NAMES_LIMIT: usize = 1024;
/// Most streams one STREAM.LIST page holds (nats-server's `JSApiListLimit`).
pub(crate) const LIST_LIMIT: usize = 256;

/// What to send back for one request.
pub(crate) enum Reply {
    /// A JSON body.
    Json(Value),
    /// A message with headers (DIRECT.GET): the header block's length, then headers + payload.
    Frame(usize, Bytes),
    /// Nothing (an unknown API subject gets no answer, as from nats-server).
    None,
}

/// Answers one API request of `js`. `api` is the subject after `$JS.API.`.
pub(crate) async fn handle(js: &Arc<JsAccount>, api: &str, m: &Message) -> Reply {
    let body: &[u8] = &m.payload;
    let (verb, rest) = split_verb(api);
    let result = match verb {
        "INFO" => Ok(account_info(js)),
        "STREAM.CREATE" => stream_create(js, rest, body).await,
        "STREAM.UPDATE" => stream_update(js, rest, body).await,
        "STREAM.INFO" => stream_info(js, rest, body),
        "STREAM.DELETE" => stream_delete(js, rest).await,
        "STREAM.NAMES" => stream_names(js, body),
        "STREAM.LIST" => stream_list(js, body),
        "STREAM.PURGE" => stream_purge(js, rest, body),
        "STREAM.MSG.GET" => msg_get(js, rest, body),
        "STREAM.MSG.DELETE" => msg_delete(js, rest, body),
        "DIRECT.GET" => return direct_get(js, rest, body),
        "CONSUMER.CREATE" | "CONSUMER.DURABLE.CREATE" => {
            consumer::create(js, verb, rest, body).await
        }
        "CONSUMER.INFO" => consumer::info(js, rest),
        "CONSUMER.DELETE" => consumer::delete(js, rest).await,
        "CONSUMER.PAUSE" => consumer::pause(js, rest, body),
        "CONSUMER.UNPIN" => consumer::unpin(js, rest, body),
        "CONSUMER.RESET" => consumer::reset(js, rest, body),
        "CONSUMER.NAMES" => consumer::names(js, rest, body),
        "CONSUMER.LIST" => consumer::list(js, rest, body),
        "CONSUMER.MSG.NEXT" => {
            return match consumer::next(js, rest, m) {
                None => Reply::None,
                Some((code, text)) => status(code, &text),
            };
        }
        _ => return Reply::None,
    };
    js.api_total.fetch_add(1, Ordering::Relaxed);
    let kind = response_type(verb);
    let value = match result {
        Ok(mut v) => {
            if let Value::Object(o) = &mut v {
                let mut out = Map::new();
                out.insert("type".into(), json!(kind));
                out.append(o);
                v = Value::Object(out);
            }
            v
        }
        Err(e) => {
            js.api_errors.fetch_add(1, Ordering::Relaxed);
            let mut v = json!({ "type": kind, "error": e });
            if verb == "STREAM.INFO" {
                v["total"] = json!(0);
                v["offset"] = json!(0);
                v["limit"] = json!(0);
            }
            v
        }
    };
    Reply::Json(value)
}

/// Splits `STREAM.CREATE.ORDERS` into the verb and what follows it.
fn split_verb(api: &str) -> (&str, &str) {
    const VERBS: [&str; 21] = [
        "CONSUMER.PAUSE",
        "CONSUMER.UNPIN",
        "CONSUMER.RESET",
        "CONSUMER.DURABLE.CREATE",
        "CONSUMER.MSG.NEXT",
        "CONSUMER.CREATE",
        "CONSUMER.INFO",
        "CONSUMER.DELETE",
        "CONSUMER.NAMES",
        "CONSUMER.LIST",
        "STREAM.MSG.DELETE",
        "STREAM.MSG.GET",
        "STREAM.CREATE",
        "STREAM.UPDATE",
        "STREAM.INFO",
        "STREAM.DELETE",
        "STREAM.NAMES",
        "STREAM.LIST",
        "STREAM.PURGE",
        "DIRECT.GET",
        "INFO",
    ];
    for v in VERBS {
        if let Some(rest) = api.strip_prefix(v) {
            if rest.is_empty() {
                return (v, "");
            }
            if let Some(rest) = rest.strip_prefix('.') {
                return (v, rest);
            }
        }
    }
    (api, "")
}

fn response_type(verb: &str) -> String {
    let name = match verb {
        "INFO" => "account_info",
        "STREAM.CREATE" => "stream_create",
        "STREAM.UPDATE" => "stream_update",
        "STREAM.INFO" => "stream_info",
        "STREAM.DELETE" => "stream_delete",
        "STREAM.NAMES" => "stream_names",
        "STREAM.LIST" => "stream_list",
        "STREAM.PURGE" => "stream_purge",
        "STREAM.MSG.GET" => "stream_msg_get",
        "STREAM.MSG.DELETE" => "stream_msg_delete",
        "CONSUMER.CREATE" | "CONSUMER.DURABLE.CREATE" => "consumer_create",
        "CONSUMER.INFO" => "consumer_info",
        "CONSUMER.DELETE" => "consumer_delete",
        "CONSUMER.NAMES" => "consumer_names",
        "CONSUMER.LIST" => "consumer_list",
        "CONSUMER.PAUSE" => "consumer_pause",
        "CONSUMER.UNPIN" => "consumer_unpin",
        "CONSUMER.RESET" => "consumer_reset",
        "CONSUMER.MSG.NEXT" => "consumer_getnext",
        _ => "unknown",
    };
    format!("io.nats.jetstream.api.v1.{name}_response")
}

/// Parses an optional JSON request body (empty means defaults).
pub(crate) fn parse<'a, T: Deserialize<'a> + Default>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(ApiError::invalid_json)
}

pub(crate) fn stream_of(js: &JsAccount, name: &str) -> Result<Arc<Stream>, ApiError> {
    js.stream(name).ok_or_else(ApiError::stream_not_found)
}

fn account_info(js: &JsAccount) -> Value {
    let (mut memory, mut storage) = (0u64, 0u64);
    let streams = js.streams();
    for s in &streams {
        let bytes = s.store().state().bytes;
        match s.config().storage {
            types::Storage::Memory => memory += bytes,
            types::Storage::File => storage += bytes,
        }
    }
    let mut v = json!({
        "memory": memory,
        "storage": storage,
        "reserved_memory": js.usage().reserved().0,
        "reserved_storage": js.usage().reserved().1,
        "streams": streams.len(),
        "consumers": streams.iter().map(|s| s.public_consumers().len()).sum::<usize>(),
        "limits": {
            "max_memory": js.limits().max_memory,
            "max_storage": js.limits().max_storage,
            "max_streams": js.limits().max_streams,
            "max_consumers": js.limits().max_consumers,
            "max_ack_pending": js.limits().max_ack_pending,
            "memory_max_stream_bytes": js.limits().memory_max_stream_bytes,
            "storage_max_stream_bytes": js.limits().storage_max_stream_bytes,
            "max_bytes_required": js.limits().max_bytes_required,
        },
        "api": {
            "level": 1,
            "total": js.api_total.load(Ordering::Relaxed),
            "errors": js.api_errors.load(Ordering::Relaxed),
        },
    });
    if let Some(d) = js.domain() {
        v["domain"] = json!(d);
    }
    v
}

/// Most subjects one STREAM.INFO page lists (nats-server's `JSMaxSubjectDetails`).
const SUBJECTS_LIMIT: usize = 100_000;

/// A stream's info: config, created, state, cluster, ts; with `subjects_filter`, the page of
/// subjects from `offset` and how many there are in all.
fn info_of(js: &JsAccount, s: &Stream, subjects_filter: Option<(&str, usize)>) -> (Value, usize) {
    let mut state = s.state_json();
    let mut total = 0;
    if let Some((filter, offset)) = subjects_filter {
        let mut subjects = s.store().subjects(filter.as_bytes());
        total = subjects.len();
        subjects.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut map = Map::new();
        for (subject, st) in subjects.into_iter().skip(offset).take(SUBJECTS_LIMIT) {
            map.insert(
                String::from_utf8_lossy(&subject).into_owned(),
                json!(st.msgs),
            );
        }
        if !map.is_empty() {
            state.subjects = Some(map);
        }
    }
    let mut v = json!({
        "config": s.config(),
        "created": rfc3339(s.created()),
        "state": state,
        "cluster": {},
        "ts": rfc3339(now_ns()),
    });
    if s.is_leader() {
        v["cluster"]["leader"] = json!(js.server().server_name());
    }
    crate::source::info(s, &mut v);
    (v, total)
}

async fn stream_create(js: &JsAccount, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let config = StreamConfig::from_request(body)?;
    if config.name.is_empty() {
        return Err(ApiError::stream_name_required());
    }
    if config.name != name {
        return Err(ApiError::stream_name_mismatch());
    }
    let (stream, created) = js.create_stream(config).await?;
    let (mut v, _) = info_of(js, &stream, None);
    // A create's reply has no `cluster` (nats-server's), unlike STREAM.INFO's.
    if let Value::Object(o) = &mut v {
        o.remove("cluster");
    }
    if created {
        v["did_create"] = json!(true);
        events::stream_action(js.client(), name, Action::Create, js.domain()).await;
    }
    Ok(v)
}

async fn stream_update(js: &JsAccount, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let config = StreamConfig::from_request(body)?;
    if config.name != name {
        return Err(ApiError::stream_name_mismatch());
    }
    let stream = js.update_stream(config).await?;
    events::stream_action(js.client(), name, Action::Modify, js.domain()).await;
    Ok(info_of(js, &stream, None).0)
}

#[derive(Deserialize, Default)]
struct InfoRequest {
    #[serde(default)]
    subjects_filter: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    deleted_details: bool,
    #[serde(default)]
    offset: usize,
}

fn stream_info(js: &JsAccount, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let req: InfoRequest = parse(body)?;
    let s = stream_of(js, name)?;
    let filter = req.subjects_filter.as_deref().filter(|f| !f.is_empty());
    let (mut v, total) = info_of(js, &s, filter.map(|f| (f, req.offset)));
    let mut out = Map::new();
    out.insert("total".into(), json!(total));
    out.insert(
        "offset".into(),
        json!(if filter.is_some() { req.offset } else { 0 }),
    );
    out.insert(
        "limit".into(),
        json!(if filter.is_some() { SUBJECTS_LIMIT } else { 0 }),
    );
    if let Value::Object(o) = &mut v {
        out.append(o);
    }
    Ok(Value::Object(out))
}

async fn stream_delete(js: &JsAccount, name: &str) -> Result<Value, ApiError> {
    js.delete_stream(name)?;
    events::stream_action(js.client(), name, Action::Delete, js.domain()).await;
    Ok(json!({ "success": true }))
}

#[derive(Deserialize, Default)]
struct NamesRequest {
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    subject: Option<String>,
}

/// The streams a NAMES/LIST request selects: those with a subject that `subject` collides with.
fn selected(js: &JsAccount, req: &NamesRequest) -> Vec<Arc<Stream>> {
    js.streams()
        .into_iter()
        .filter(|s| match &req.subject {
            Some(f) if !f.is_empty() => s
                .config()
                .subjects
                .iter()
                .any(|x| starling_sublist::subjects_collide(x.as_bytes(), f.as_bytes())),
            _ => true,
        })
        .collect()
}

fn stream_names(js: &JsAccount, body: &[u8]) -> Result<Value, ApiError> {
    let req: NamesRequest = parse(body)?;
    let all = selected(js, &req);
    let names: Vec<&str> = all
        .iter()
        .skip(req.offset)
        .take(NAMES_LIMIT)
        .map(|s| s.name())
        .collect();
    Ok(json!({
        "total": all.len(),
        "offset": req.offset,
        "limit": NAMES_LIMIT,
        "streams": names,
    }))
}

fn stream_list(js: &JsAccount, body: &[u8]) -> Result<Value, ApiError> {
    let req: NamesRequest = parse(body)?;
    let all = selected(js, &req);
    let infos: Vec<Value> = all
        .iter()
        .skip(req.offset)
        .take(LIST_LIMIT)
        .map(|s| info_of(js, s, None).0)
        .collect();
    Ok(json!({
        "total": all.len(),
        "offset": req.offset,
        "limit": LIST_LIMIT,
        "streams": infos,
    }))
}

#[derive(Deserialize, Default)]
struct PurgeRequest {
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    keep: Option<u64>,
}

fn stream_purge(js: &JsAccount, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let req: PurgeRequest = parse(body)?;
    let s = stream_of(js, name)?;
    let config = s.config();
    if config.sealed {
        return Err(ApiError::sealed());
    }
    if config.deny_purge {
        return Err(ApiError::purge_denied());
    }
    if req.seq.is_some() && req.keep.is_some() {
        return Err(ApiError::bad_request());
    }
    let mut store = s.store();
    let purged = match req.filter.as_deref().filter(|f| !f.is_empty() && *f != ">") {
        Some(filter) => store.purge_subject(filter.as_bytes(), req.seq, req.keep),
        None => {
            let st = store.state();
            let to = match (req.seq, req.keep) {
                (Some(seq), _) => seq,
                (None, Some(keep)) => {
                    if keep >= st.msgs {
                        return Ok(json!({ "success": true, "purged": 0 }));
                    }
                    // Keep the newest `keep`: find the sequence of the first kept.
                    let mut seq = st.first_seq;
                    let mut skip = st.msgs - keep;
                    while skip > 0 {
                        match store.load_next(seq, None) {
                            Ok(Some(m)) => {
                                seq = m.seq + 1;
                                skip -= 1;
                            }
                            _ => break,
                        }
                    }
                    seq
                }
                (None, None) => st.last_seq + 1,
            };
            store.compact(to)
        }
    }
    .map_err(ApiError::internal)?;
    store.flush().map_err(ApiError::internal)?;
    drop(store);
    s.recount();
    Ok(json!({ "success": true, "purged": purged }))
}

#[derive(Deserialize, Default)]
struct GetRequest {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    last_by_subj: Option<String>,
    #[serde(default)]
    next_by_subj: Option<String>,
}

/// The message a MSG.GET or DIRECT.GET request selects.
fn select(s: &Stream, req: &GetRequest) -> Result<crate::store::StoredMsg, ApiError> {
    let mut store = s.store();
    let found = match (&req.seq, &req.last_by_subj, &req.next_by_subj) {
        (Some(seq), None, None) => store.load(*seq),
        (_, Some(subj), None) => store.load_last(subj.as_bytes()),
        (seq, None, Some(subj)) => store.load_next(seq.unwrap_or(0).max(1), Some(subj.as_bytes())),
        _ => return Err(ApiError::bad_request()),
    }
    .map_err(ApiError::internal)?;
    found.ok_or_else(ApiError::no_message_found)
}

fn msg_get(js: &JsAccount, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let req: GetRequest = parse(body)?;
    let s = stream_of(js, name)?;
    let m = select(&s, &req)?;
    Ok(json!({ "message": Stream::message_json(&m) }))
}

#[derive(Deserialize, Default)]
struct DeleteRequest {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    #[allow(dead_code)]
    no_erase: bool,
}

fn msg_delete(js: &JsAccount, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let req: DeleteRequest = parse(body)?;
    let s = stream_of(js, name)?;
    let config = s.config();
    if config.sealed {
        return Err(ApiError::sealed());
    }
    if config.deny_delete {
        return Err(ApiError::delete_denied());
    }
    let mut store = s.store();
    let removed = store.remove(req.seq).map_err(ApiError::internal)?;
    if !removed {
        return Err(ApiError::delete_failed("no message found"));
    }
    store.flush().map_err(ApiError::internal)?;
    drop(store);
    s.recount();
    Ok(json!({ "success": true }))
}

/// DIRECT.GET: the stored message itself with `Nats-Stream`, `Nats-Subject`, `Nats-Sequence`
/// and `Nats-Time-Stamp` headers, or a header-only status.
fn direct_get(js: &JsAccount, rest: &str, body: &[u8]) -> Reply {
    let (name, subject) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    let served = js.stream(name).filter(|s| s.config().allow_direct);
    // `mirror_direct`: a mirror answers for its origin when the origin is not here (another
    // account or domain), as nats-server's mirrors join the origin's DIRECT.GET.
    let served = served.or_else(|| {
        js.streams().into_iter().find(|s| {
            let c = s.config();
            c.extra.get("mirror_direct").and_then(Value::as_bool) == Some(true)
                && crate::source::mirror_of(&c).is_some_and(|m| m.name == name)
        })
    });
    let Some(s) = served else {
        // No stream serves it: what nats-server's missing subscription answers.
        return status(503, "");
    };
    let req = match subject {
        // `DIRECT.GET.<stream>.<subject>`: the last message on that subject.
        Some(subj) => {
            if !body.is_empty() {
                return status(408, "Bad Request");
            }
            GetRequest {
                last_by_subj: Some(subj.to_string()),
                ..GetRequest::default()
            }
        }
        None => {
            if body.is_empty() {
                return status(408, "Empty Request");
            }
            match serde_json::from_slice::<GetRequest>(body) {
                Ok(r) => r,
                Err(_) => return status(408, "Bad Request"),
            }
        }
    };
    match select(&s, &req) {
        Ok(m) => {
            let mut h = BytesMut::with_capacity(128 + m.data.len());
            h.put_slice(b"NATS/1.0\r\n");
            if let Some(orig) = m.headers() {
                // The stored block's own lines, without its status line and final CRLF.
                let inner = orig.split(|&b| b == b'\n').skip(1).filter(|l| l.len() > 1);
                for line in inner {
                    h.put_slice(line);
                    h.put_slice(b"\n");
                }
            }
            for (k, v) in [
                ("Nats-Stream", s.name().to_string()),
                ("Nats-Subject", m.subject_str().to_string()),
                ("Nats-Sequence", m.seq.to_string()),
                ("Nats-Time-Stamp", rfc3339(m.time)),
            ] {
                h.put_slice(k.as_bytes());
                h.put_slice(b": ");
                h.put_slice(v.as_bytes());
                h.put_slice(b"\r\n");
            }
            h.put_slice(b"\r\n");
            let header_len = h.len();
            h.put_slice(m.payload());
            Reply::Frame(header_len, h.freeze())
        }
        Err(e) if e.err_code == 10037 => status(404, "Message Not Found"),
        Err(_) => status(408, "Bad Request"),
    }
}

/// A header-only status reply.
fn status(code: u16, text: &str) -> Reply {
    let block = if text.is_empty() {
        format!("NATS/1.0 {code}\r\n\r\n")
    } else {
        format!("NATS/1.0 {code} {text}\r\n\r\n")
    };
    Reply::Frame(block.len(), Bytes::from(block))
}

/// Eight random characters from `[A-Za-z0-9]` (ephemeral consumer names, flow-control
/// subjects), as nats-server makes them.
pub(crate) fn random_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 8];
    let _ = getrandom::getrandom(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}
