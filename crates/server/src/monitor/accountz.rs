//! `/accountz` (the accounts, or one account's details with `?acc=`) and `/accstatz` (what
//! each account's connections did), with nats-server's keys.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::account::config::{Latency, ResponseType, Sampling};

use super::subsz::Figures;
use super::{now, BadRequest, Handled, Monitor, Query};
use crate::gotime::rfc3339;

#[derive(Serialize)]
struct Accountz {
    server_id: String,
    now: String,
    system_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_detail: Option<AccountDetail>,
}

/// One account (nats-server 2.10+'s `AccountInfo`, the keys Starling has).
#[derive(Serialize)]
struct AccountDetail {
    account_name: String,
    update_time: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    is_system: bool,
    expired: bool,
    complete: bool,
    jetstream_enabled: bool,
    leafnode_connections: usize,
    client_connections: usize,
    subscriptions: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exports: Vec<Export>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    imports: Vec<Import>,
    name_tag: String,
    sublist_stats: Figures,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    responses: BTreeMap<String, Import>,
}

#[derive(Serialize)]
struct Export {
    subject: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_latency: Option<LatencyInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    approved_accounts: Vec<String>,
}

#[derive(Serialize)]
struct LatencyInfo {
    /// A percentage, or `"headers"`.
    sampling: Value,
    results: String,
}

#[derive(Serialize)]
struct Import {
    subject: String,
    account: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    to: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    local_subject: String,
    #[serde(rename = "type")]
    kind: &'static str,
    invalid: bool,
    share: bool,
    tracking: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<LatencyInfo>,
}

fn latency_info(l: &Latency) -> LatencyInfo {
    LatencyInfo {
        sampling: match l.sampling {
            Sampling::Percent(p) => Value::from(p),
            Sampling::Headers => Value::from("headers"),
        },
        results: l.subject.clone(),
    }
}

fn response_type(r: ResponseType) -> &'static str {
    match r {
        ResponseType::Singleton => "Singleton",
        ResponseType::Stream => "Streamed",
        ResponseType::Chunked => "Chunked",
    }
}

pub(super) fn accountz(mon: &Monitor<'_>, query: &Query) -> Handled {
    let view = mon.view();
    let detail = match query.get("acc").filter(|a| !a.is_empty()) {
        None => None,
        Some(name) => {
            let Some(account) = view.account(name) else {
                return Err(BadRequest(format!("Account {name} does not exist")));
            };
            let s = account.sublist_stats();
            let exports = account
                .describe_exports()
                .into_iter()
                .map(|e| Export {
                    subject: e.subject,
                    kind: if e.service { "service" } else { "stream" },
                    response_type: e.response.map(response_type),
                    service_latency: e.latency.as_ref().map(latency_info),
                    approved_accounts: e.accounts,
                })
                .collect();
            let imports = account
                .describe_imports()
                .into_iter()
                .map(|i| Import {
                    to: if i.service && i.local != i.subject {
                        i.local.clone()
                    } else {
                        String::new()
                    },
                    local_subject: i.local,
                    subject: i.subject,
                    account: i.account,
                    kind: if i.service { "service" } else { "stream" },
                    invalid: false,
                    share: i.share,
                    tracking: false,
                    latency: i.latency.as_ref().map(latency_info),
                })
                .collect();
            let responses = account
                .describe_responses()
                .into_iter()
                .map(|r| {
                    let import = Import {
                        subject: r.subject.clone(),
                        account: r.requester,
                        to: r.reply,
                        local_subject: String::new(),
                        kind: "service",
                        invalid: false,
                        share: false,
                        tracking: r.tracking,
                        latency: None,
                    };
                    (r.subject, import)
                })
                .collect();
            Some(AccountDetail {
                account_name: name.to_string(),
                update_time: rfc3339(view.start()),
                is_system: view.system_account() == Some(name),
                expired: false,
                complete: true,
                jetstream_enabled: false,
                leafnode_connections: account.leaf_count(),
                client_connections: account.conn_count() - account.leaf_count(),
                subscriptions: s.num_subscriptions,
                exports,
                imports,
                name_tag: name.to_string(),
                sublist_stats: Figures::from(&s),
                responses,
            })
        }
    };
    Ok(mon.json(&Accountz {
        server_id: mon.server_id(),
        now: now(),
        system_account: view.system_account().unwrap_or_default().to_string(),
        accounts: detail.is_none().then(|| {
            view.accounts()
                .iter()
                .map(|a| a.name().to_string())
                .collect()
        }),
        account_detail: detail,
    }))
}

/// One account's figures (nats-server's `AccountStat`).
#[derive(Serialize)]
struct AccountStat {
    acc: String,
    name: String,
    conns: usize,
    leafnodes: usize,
    total_conns: u64,
    num_subscriptions: u32,
    sent: MsgBytes,
    received: MsgBytes,
    slow_consumers: u64,
}

#[derive(Serialize)]
struct MsgBytes {
    msgs: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct Accstatz {
    server_id: String,
    now: String,
    account_statz: Vec<AccountStat>,
}

/// `/accstatz`: accounts with connections (all of them with `unused=1`; only those named by
/// `accs=A,B` when given).
pub(super) fn accstatz(mon: &Monitor<'_>, query: &Query) -> Handled {
    let unused = query.flag("unused")?;
    let only: Option<Vec<&str>> = query
        .get("accs")
        .filter(|a| !a.is_empty())
        .map(|a| a.split(',').collect());
    let view = mon.view();
    let account_statz = view
        .accounts()
        .iter()
        .filter(|a| only.as_ref().is_none_or(|o| o.contains(&a.name())))
        .map(|a| (a, a.figures()))
        .filter(|(_, f)| unused || f.conns + f.leafnodes > 0)
        .map(|(a, f)| AccountStat {
            acc: a.name().to_string(),
            name: a.name().to_string(),
            conns: f.conns,
            leafnodes: f.leafnodes,
            total_conns: f.total_conns,
            num_subscriptions: a.sublist_stats().num_subscriptions,
            sent: MsgBytes {
                msgs: f.out_msgs,
                bytes: f.out_bytes,
            },
            received: MsgBytes {
                msgs: f.in_msgs,
                bytes: f.in_bytes,
            },
            slow_consumers: f.slow_consumers,
        })
        .collect();
    Ok(mon.json(&Accstatz {
        server_id: mon.server_id(),
        now: now(),
        account_statz,
    }))
}
