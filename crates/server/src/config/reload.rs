//! A reload is the difference between the running [`Config`] and a new one: [`plan`] finds
//! it, refusing (as nats-server refuses them) options that cannot change while the server
//! runs, and [`crate::Server::reload`] applies the rest. Pure, so the rules are unit-tested
//! here without a server.

use std::fmt::Debug;

use thiserror::Error;

use super::Config;
use crate::account::config::Account;

/// Why a reload was refused. The running configuration is then unchanged.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// An option that cannot change while the server runs (nats-server's words).
    #[error("config reload not supported for {option}: old={old}, new={new}")]
    NotSupported {
        /// The option, as the config file names it.
        option: &'static str,
        /// Its running value.
        old: String,
        /// The value asked for.
        new: String,
    },
    /// The new configuration is not valid (the same checks as at start).
    #[error("invalid configuration: {0}")]
    Invalid(#[from] crate::StartError),
}

/// What a reload changed, by the options' config-file names (empty: nothing did).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// The options whose values changed.
    pub changed: Vec<&'static str>,
}

/// What applying a reload has to do.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Changed options, for the log and [`Reloaded`].
    pub(crate) changed: Vec<&'static str>,
    /// Users, permissions, single user or token changed: the credentials are rebuilt and
    /// every client is checked again.
    pub(crate) auth: bool,
    /// `max_payload` or `max_control_line` changed: connections take the new limits, and
    /// INFO says so.
    pub(crate) limits: bool,
    /// Accounts were added or removed.
    pub(crate) accounts: bool,
    /// Seeds to dial and seeds whose routes to close.
    pub(crate) routes_added: Vec<String>,
    pub(crate) routes_removed: Vec<String>,
}

/// Compares the running configuration with `new`: the first option that cannot change is
/// refused, the others are listed with what applying them takes.
pub(crate) fn plan(old: &Config, new: &Config) -> Result<Plan, ReloadError> {
    fixed(old, new)?;
    let mut plan = Plan::default();
    let mut note = |name: &'static str, differs: bool| {
        if differs {
            plan.changed.push(name);
        }
        differs
    };
    let limits = [
        note("max_payload", old.max_payload != new.max_payload),
        note(
            "max_control_line",
            old.max_control_line != new.max_control_line,
        ),
    ];
    note(
        "max_connections",
        old.max_connections != new.max_connections,
    );
    note("ping_interval", old.ping_interval != new.ping_interval);
    note("ping_max", old.max_pings_out != new.max_pings_out);
    note("write_deadline", old.write_deadline != new.write_deadline);
    note(
        "client_advertise",
        old.client_advertise != new.client_advertise,
    );
    note(
        "lame_duck_duration",
        old.lame_duck_duration != new.lame_duck_duration,
    );
    note(
        "lame_duck_grace_period",
        old.lame_duck_grace_period != new.lame_duck_grace_period,
    );
    note("drain_timeout", old.drain_timeout != new.drain_timeout);
    note(
        "no_fast_producer_stall",
        old.no_fast_producer_stall != new.no_fast_producer_stall,
    );
    note(
        "authorization timeout",
        old.auth_timeout != new.auth_timeout,
    );
    let auth = [
        note("authorization", old.auth != new.auth),
        note("authorization users", old.users != new.users),
        note(
            "authorization default_permissions",
            old.default_permissions != new.default_permissions,
        ),
        note(
            "accounts",
            old.accounts
                .iter()
                .map(AccountUsers::of)
                .ne(new.accounts.iter().map(AccountUsers::of)),
        ),
    ];
    #[cfg(feature = "tls")]
    note("tls", old.tls != new.tls);
    fn names(c: &Config) -> Vec<&str> {
        let mut v: Vec<&str> = c.accounts.iter().map(|a| a.name.as_str()).collect();
        v.sort_unstable();
        v
    }
    plan.accounts = names(old) != names(new);
    plan.limits = limits.contains(&true);
    plan.auth = auth.contains(&true) || plan.accounts;
    if let (Some(o), Some(n)) = (&old.cluster, &new.cluster) {
        let (o, n) = (o.seed_urls(), n.seed_urls());
        plan.routes_added = n.iter().filter(|u| !o.contains(u)).cloned().collect();
        plan.routes_removed = o.iter().filter(|u| !n.contains(u)).cloned().collect();
        if !plan.routes_added.is_empty() || !plan.routes_removed.is_empty() {
            plan.changed.push("cluster routes");
        }
    }
    Ok(plan)
}

/// The new value of a reloaded option, for the log line nats-server writes
/// (`Reloaded: max_payload = 2097152`); `None` for those it names alone (users, TLS, ...).
pub(crate) fn describe(name: &str, c: &Config) -> Option<String> {
    let go = crate::gotime::go_duration;
    Some(match name {
        "max_payload" => c.max_payload.to_string(),
        "max_control_line" => c.max_control_line.to_string(),
        "max_connections" => c.max_connections.to_string(),
        "ping_interval" => go(c.ping_interval),
        "ping_max" => c.max_pings_out.to_string(),
        "write_deadline" => go(c.write_deadline),
        "client_advertise" => c.client_advertise.clone().unwrap_or_default(),
        "lame_duck_duration" => go(c.lame_duck_duration),
        "lame_duck_grace_period" => go(c.lame_duck_grace_period),
        "drain_timeout" => go(c.drain_timeout),
        "no_fast_producer_stall" => c.no_fast_producer_stall.to_string(),
        "authorization timeout" => go(c.effective_auth_timeout()),
        _ => return None,
    })
}

/// What may change about an account on reload: its users and their default permissions.
#[derive(PartialEq)]
struct AccountUsers<'a> {
    users: &'a [crate::User],
    default_permissions: Option<&'a crate::Permissions>,
}

impl<'a> AccountUsers<'a> {
    fn of(a: &'a Account) -> Self {
        Self {
            users: &a.users,
            default_permissions: a.default_permissions.as_ref(),
        }
    }
}

/// An account without what may change: the rest (limits, exports, imports) needs a restart.
fn shape(a: &Account) -> Account {
    let mut a = a.clone();
    a.users.clear();
    a.default_permissions = None;
    a
}

/// The options that need a restart, compared in nats-server's order of mention.
fn fixed(old: &Config, new: &Config) -> Result<(), ReloadError> {
    fn refuse(option: &'static str, old: &dyn Debug, new: &dyn Debug) -> ReloadError {
        ReloadError::NotSupported {
            option,
            old: format!("{old:?}"),
            new: format!("{new:?}"),
        }
    }
    macro_rules! same {
        ($($name:literal: $field:ident),* $(,)?) => {
            $(
                if old.$field != new.$field {
                    return Err(refuse($name, &old.$field, &new.$field));
                }
            )*
        };
    }
    same!(
        "listen": listen,
        "server_name": server_name,
        "max_pending": max_pending,
        "max_subscriptions": max_subscriptions,
        "max_closed_clients": max_closed_clients,
        "system_account": system_account,
        "no_system_account": no_system_account,
        "no_auth_user": no_auth_user,
        "allow_non_tls": allow_non_tls,
        "operator": operators,
        "resolver_preload": resolver_preload,
        "http": monitor,
        "leafnodes": leafnodes,
    );
    // Accounts may come and go; one that stays keeps its limits, exports and imports.
    for o in &old.accounts {
        if let Some(n) = new.accounts.iter().find(|n| n.name == o.name) {
            if shape(o) != shape(n) {
                return Err(ReloadError::NotSupported {
                    option: "accounts (an account's limits, exports and imports)",
                    old: o.name.clone(),
                    new: n.name.clone(),
                });
            }
        }
    }
    // As nats-server: any change to the websocket block but its TLS files needs a restart
    // (the values are not printed: the block may hold a password).
    #[cfg(feature = "websocket")]
    if old
        .websocket
        .as_ref()
        .map(crate::websocket::Websocket::without_tls)
        != new
            .websocket
            .as_ref()
            .map(crate::websocket::Websocket::without_tls)
    {
        let listen = |w: &Option<crate::websocket::Websocket>| w.as_ref().map(|w| w.listen.clone());
        return Err(refuse(
            "websocket",
            &listen(&old.websocket),
            &listen(&new.websocket),
        ));
    }
    #[cfg(feature = "tls")]
    if old.tls.is_some() != new.tls.is_some() {
        return Err(refuse("tls", &old.tls.is_some(), &new.tls.is_some()));
    }
    match (&old.cluster, &new.cluster) {
        (None, None) => {}
        (Some(o), Some(n)) => {
            if let Some((option, old, new)) = o.fixed_difference(n) {
                return Err(ReloadError::NotSupported { option, old, new });
            }
        }
        (o, n) => return Err(refuse("cluster", &o.is_some(), &n.is_some())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Cluster, Permissions, User};

    fn base() -> Config {
        let mut c = Config::standalone();
        c.users = vec![User::new("a", "pa")];
        c
    }

    #[test]
    fn an_unchanged_config_changes_nothing() {
        let p = plan(&base(), &base()).unwrap();
        assert!(p.changed.is_empty() && !p.auth && !p.limits);
    }

    #[test]
    fn limits_and_users_are_reloadable() {
        let mut new = base();
        new.max_payload = 2 * 1024 * 1024;
        new.ping_interval = Duration::from_secs(5);
        new.users.push(User::new("b", "pb"));
        let p = plan(&base(), &new).unwrap();
        assert_eq!(
            p.changed,
            ["max_payload", "ping_interval", "authorization users"]
        );
        assert!(p.auth && p.limits);
    }

    #[test]
    fn accounts_come_and_go_and_their_users_change_but_not_their_exports() {
        let mut old = base();
        old.accounts = vec![Account::new("A").user(User::new("x", "px"))];
        let mut new = old.clone();
        new.accounts = vec![Account::new("A")
            .user(User::new("x", "px").permissions(Permissions::default()))
            .user(User::new("y", "py"))];
        let p = plan(&old, &new).unwrap();
        assert_eq!(p.changed, ["accounts"]);
        assert!(p.auth && !p.accounts);
        // Accounts may be added and removed...
        new.accounts.push(Account::new("B"));
        assert!(plan(&old, &new).unwrap().accounts);
        assert!(plan(&new, &old).unwrap().accounts);
        // ... but one that stays keeps its limits, exports and imports.
        new.accounts[0] = Account::new("A").max_connections(5);
        let err = plan(&old, &new).unwrap_err().to_string();
        assert!(
            err.starts_with("config reload not supported for accounts"),
            "{err}"
        );
    }

    #[test]
    fn the_client_port_is_refused_with_both_values() {
        let mut new = base();
        new.listen = Some("0.0.0.0:4223".into());
        let err = plan(&base(), &new).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config reload not supported for listen: old=Some(\"0.0.0.0:4222\"), new=Some(\"0.0.0.0:4223\")"
        );
    }

    #[test]
    fn routes_are_added_and_removed_but_the_cluster_port_is_fixed() {
        let mut old = base();
        old.cluster = Some(
            Cluster::new("c")
                .listen("127.0.0.1:6222")
                .seeds(["nats://127.0.0.1:6223", "nats://127.0.0.1:6224"]),
        );
        let mut new = old.clone();
        new.cluster = Some(
            Cluster::new("c")
                .listen("127.0.0.1:6222")
                .seeds(["nats://127.0.0.1:6224", "nats://127.0.0.1:6225"]),
        );
        let p = plan(&old, &new).unwrap();
        assert_eq!(p.routes_added, ["nats://127.0.0.1:6225"]);
        assert_eq!(p.routes_removed, ["nats://127.0.0.1:6223"]);
        new.cluster = Some(Cluster::new("c").listen("127.0.0.1:7222"));
        let err = plan(&old, &new).unwrap_err().to_string();
        assert!(err.contains("cluster.listen"), "{err}");
        new.cluster = None;
        assert!(plan(&old, &new)
            .unwrap_err()
            .to_string()
            .contains("cluster"));
    }
}
