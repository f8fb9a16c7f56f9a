//! `/healthz`: `200 {"status":"ok"}` while the server accepts work; `503` with the reason
//! while it is in lame-duck mode or shutting down (nats-server 2.9.10 answers
//! `{"status":"error","error":"..."}` then). Compact JSON, as nats-server writes it.

use serde::Serialize;

use super::{Handled, Monitor, Query, Reply};

#[derive(Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

pub(super) fn healthz(mon: &Monitor<'_>, _query: &Query) -> Handled {
    // JetStream options (`js-enabled-only`, `js-server-only`) change nothing without JetStream.
    let view = mon.view();
    let error = if view.is_shutting_down() {
        Some("server is shutting down")
    } else if view.is_lame_duck() {
        Some("server is in lame duck mode: not accepting connections")
    } else {
        None
    };
    let (status, health) = match error {
        None => (
            200,
            Health {
                status: "ok",
                error: None,
            },
        ),
        Some(e) => (
            503,
            Health {
                status: "error",
                error: Some(e),
            },
        ),
    };
    Ok(Reply::Json {
        status,
        body: serde_json::to_vec(&health).unwrap_or_default(),
    })
}
