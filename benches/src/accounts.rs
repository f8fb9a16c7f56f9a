//! Many accounts, a few subscriptions each: what an account costs the server in memory.
//!
//! The server is started with [`server_config`] (N accounts `bench0`..`benchN-1`, each with
//! one user `u<i>`/`p<i>`); one client per account logs in as that account's user and makes
//! its subscriptions. The figure is the server's RSS growth from before the first client
//! connects to after the last subscription is confirmed, per account: the account itself
//! (its subject space, its bookkeeping), its subscriptions, and one client connection.

use std::time::{Duration, Instant};

use starling_proto::ServerOp;

use crate::conn::{connect, is_tls, resolve, with_tls, Conn};
use crate::error::{BenchError, Result};
use crate::scenario::Config;

/// nats-server's configuration of `n` accounts, one user each; clients without credentials
/// (the tool's readiness check) are the first account's user.
pub fn server_config(n: usize) -> String {
    let mut text = String::from("accounts {\n");
    for i in 0..n {
        text.push_str(&format!(
            "  bench{i}: {{ users: [{{user: u{i}, password: p{i}}}] }}\n"
        ));
    }
    text.push_str("}\nno_auth_user: u0\n");
    text
}

/// A configuration that puts clients without credentials in account `name`
/// (`no_auth_user`), so that any scenario runs in a named account.
/// The config that puts every client in as user `bench` (`no_auth_user`): of account
/// `account` if given (else `$G`), with [`PERMISSIONS`] if `permissions`. `None` when
/// neither applies (the server's defaults).
pub fn clients_config(account: Option<&str>, permissions: bool) -> Option<String> {
    let user = if permissions {
        format!("{{user: bench, password: bench, permissions: {PERMISSIONS}}}")
    } else {
        "{user: bench, password: bench}".to_string()
    };
    match account {
        None if !permissions => None,
        None => Some(format!(
            "authorization {{\n  users: [{user}]\n}}\nno_auth_user: bench\n"
        )),
        Some(name) => Some(format!(
            "accounts {{\n  {name}: {{ users: [{user}] }}\n}}\nno_auth_user: bench\n"
        )),
    }
}

/// Permissions that let every scenario run yet make the server check each message: every
/// publish against an allow and a deny list. No scenario's subscriptions overlap the deny
/// entries, so deliveries are not filtered.
pub const PERMISSIONS: &str = "{ publish: { allow: [\">\"], deny: [\"denied.>\", \"secret\"] }, subscribe: { allow: [\">\"], deny: [\"denied.>\", \"secret\"] } }";

/// What an accounts run measured; the connections stay open until this is dropped, so the
/// server's memory can be sampled first.
#[derive(Debug)]
pub struct AccountsOutcome {
    /// From the first connection to the PONG confirming the last subscription.
    pub elapsed: Duration,
    /// One connection per account.
    pub conns: Vec<Conn>,
}

/// Connects `cfg.accounts` clients (one per account), each making `cfg.subs_per_account`
/// subscriptions, and checks isolation on the way: a message published in the first account
/// reaches its own subscriber and not the same subject in the second.
pub fn run(cfg: &Config, before_start: impl FnOnce() -> Result<()>) -> Result<AccountsOutcome> {
    let addr = resolve(&cfg.url)?;
    before_start()?;
    let start = Instant::now();
    let mut conns = Vec::with_capacity(cfg.accounts);
    for i in 0..cfg.accounts {
        let url = with_tls(&format!("nats://u{i}:p{i}@{addr}"), is_tls(&cfg.url));
        let mut conn = connect(&url, cfg.connect_timeout)?;
        for j in 0..cfg.subs_per_account {
            conn.writer
                .subscribe(format!("bench.acc.{j}").as_bytes(), None, j as u64);
        }
        conn.writer.flush()?;
        conns.push(conn);
    }
    let timeout = cfg.connect_timeout + cfg.drain_timeout;
    for conn in &mut conns {
        conn.round_trip(timeout)?;
    }
    let elapsed = start.elapsed();
    check_isolation(&mut conns, timeout)?;
    Ok(AccountsOutcome { elapsed, conns })
}

/// The first account's client publishes on a subject both first accounts subscribe to: only
/// the first may get it.
fn check_isolation(conns: &mut [Conn], timeout: Duration) -> Result<()> {
    let Some((first, rest)) = conns.split_first_mut() else {
        return Ok(());
    };
    first.writer.publish(b"bench.acc.0", None, b"isolated")?;
    first.writer.flush()?;
    first.reader.poll_until(
        Instant::now() + timeout,
        "the first account's own message",
        |op| Ok(matches!(op, ServerOp::Msg(_))),
    )?;
    if let Some(second) = rest.first_mut() {
        // Every op on the second connection up to a PONG: a message there is a leak.
        second.writer.ping();
        second.writer.flush()?;
        second.reader.poll_until(
            Instant::now() + timeout,
            "the second account's PONG",
            |op| match op {
                ServerOp::Msg(_) => Err(BenchError::Sequence(
                    "accounts: a message crossed into another account".into(),
                )),
                ServerOp::Pong => Ok(true),
                _ => Ok(false),
            },
        )?;
    }
    Ok(())
}
