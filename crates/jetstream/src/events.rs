//! JetStream's advisories on `$JS.EVENT.ADVISORY.>`, published in the account as nats-server
//! publishes them: stream and consumer actions, deliveries exceeded, NAKs and terminations.

use serde_json::{json, Value};
use starling_server::Client;

use crate::time::{now_ns, rfc3339};

/// `create`, `delete` or `modify`.
#[derive(Clone, Copy)]
pub(crate) enum Action {
    Create,
    Delete,
    Modify,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Modify => "modify",
        }
    }
}

/// Publishes one advisory: nats-server's `TypedEvent` (`type`, `id`, `timestamp`) with
/// `fields`, and the domain when there is one.
async fn publish(
    client: &Client,
    subject: String,
    kind: &str,
    fields: Value,
    domain: Option<&str>,
) {
    let mut v = json!({
        "type": kind,
        "id": crate::api::random_token() + &crate::api::random_token()[..6],
        "timestamp": rfc3339(now_ns()),
    });
    if let (Value::Object(out), Value::Object(more)) = (&mut v, fields) {
        out.extend(more);
    }
    if let Some(d) = domain {
        v["domain"] = json!(d);
    }
    let body = serde_json::to_vec(&v).unwrap_or_default();
    let _ = client.publish(subject, body).await;
}

/// `$JS.EVENT.ADVISORY.STREAM.{CREATED,DELETED,UPDATED}.<stream>`.
pub(crate) async fn stream_action(
    client: &Client,
    stream: &str,
    action: Action,
    domain: Option<&str>,
) {
    let verb = match action {
        Action::Create => "CREATED",
        Action::Delete => "DELETED",
        Action::Modify => "UPDATED",
    };
    publish(
        client,
        format!("$JS.EVENT.ADVISORY.STREAM.{verb}.{stream}"),
        "io.nats.jetstream.advisory.v1.stream_action",
        json!({ "stream": stream, "action": action.as_str() }),
        domain,
    )
    .await;
}

/// `$JS.EVENT.ADVISORY.CONSUMER.{CREATED,DELETED}.<stream>.<consumer>`.
pub(crate) async fn consumer_action(
    client: &Client,
    stream: &str,
    consumer: &str,
    action: Action,
    domain: Option<&str>,
) {
    let verb = match action {
        Action::Create => "CREATED",
        Action::Delete => "DELETED",
        Action::Modify => "UPDATED",
    };
    publish(
        client,
        format!("$JS.EVENT.ADVISORY.CONSUMER.{verb}.{stream}.{consumer}"),
        "io.nats.jetstream.advisory.v1.consumer_action",
        json!({ "stream": stream, "consumer": consumer, "action": action.as_str() }),
        domain,
    )
    .await;
}

/// What a consumer reports about one delivery.
pub(crate) enum Delivery {
    /// It reached `max_deliver` unacknowledged.
    MaxDeliveries,
    /// The client NAKed it.
    Nak,
    /// The client terminated it, with a reason.
    Terminated(String),
}

/// `$JS.EVENT.ADVISORY.CONSUMER.{MAX_DELIVERIES,MSG_NAKED,MSG_TERMINATED}.<stream>.<consumer>`.
pub(crate) async fn delivery(
    client: &Client,
    stream: &str,
    consumer: &str,
    what: Delivery,
    (stream_seq, consumer_seq, deliveries): (u64, u64, u64),
    domain: Option<&str>,
) {
    let (prefix, kind, mut fields) = match &what {
        Delivery::MaxDeliveries => (
            "MAX_DELIVERIES",
            "io.nats.jetstream.advisory.v1.max_deliver",
            json!({ "stream_seq": stream_seq, "deliveries": deliveries }),
        ),
        Delivery::Nak => (
            "MSG_NAKED",
            "io.nats.jetstream.advisory.v1.nak",
            json!({ "consumer_seq": consumer_seq, "stream_seq": stream_seq, "deliveries": deliveries }),
        ),
        Delivery::Terminated(reason) => (
            "MSG_TERMINATED",
            "io.nats.jetstream.advisory.v1.terminated",
            json!({ "consumer_seq": consumer_seq, "stream_seq": stream_seq, "deliveries": deliveries, "reason": reason }),
        ),
    };
    fields["stream"] = json!(stream);
    fields["consumer"] = json!(consumer);
    publish(
        client,
        format!("$JS.EVENT.ADVISORY.CONSUMER.{prefix}.{stream}.{consumer}"),
        kind,
        fields,
        domain,
    )
    .await;
}

/// `$JS.EVENT.ADVISORY.CONSUMER.{PINNED,UNPINNED}.<stream>.<consumer>`: a priority group's pin
/// changed.
pub(crate) async fn pin(
    client: &Client,
    account: &str,
    stream: &str,
    consumer: &str,
    what: crate::priority::PinEvent,
    domain: Option<&str>,
) {
    use crate::priority::PinEvent;
    let (prefix, kind, mut fields) = match what {
        PinEvent::Pinned { group, id } => (
            "PINNED",
            "io.nats.jetstream.advisory.v1.consumer_group_pinned",
            json!({ "group": group, "pinned_id": id }),
        ),
        PinEvent::Unpinned { group, reason } => (
            "UNPINNED",
            "io.nats.jetstream.advisory.v1.consumer_group_unpinned",
            json!({ "group": group, "reason": reason }),
        ),
    };
    fields["account"] = json!(account);
    fields["stream"] = json!(stream);
    fields["consumer"] = json!(consumer);
    publish(
        client,
        format!("$JS.EVENT.ADVISORY.CONSUMER.{prefix}.{stream}.{consumer}"),
        kind,
        fields,
        domain,
    )
    .await;
}
