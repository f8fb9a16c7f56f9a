//! Client authentication: the one place credentials from CONNECT are checked and a connection
//! is given its account and user (TLS client certificates, nkeys and JWTs will slot in here).
//!
//! As nats-server: a single user/password or token puts clients in `$G`; `users` (of `$G` and
//! of every account) map a user to its account; `no_auth_user` stands for clients that present
//! no credentials at all.

use std::collections::HashMap;
use std::sync::Arc;

use starling_proto::Connect;

use crate::account::{Account, Accounts};
use crate::options::{Auth, Options};
use crate::permissions::{Compiled, Permissions};

/// Who a client is, once its credentials are accepted.
pub(crate) struct Verdict {
    pub(crate) account: Arc<Account>,
    /// The authenticated user (`authorized_user` in `/connz`), if any.
    pub(crate) user: Option<String>,
    /// The user's permissions, if it has any.
    pub(crate) permissions: Option<Arc<Compiled>>,
}

struct UserEntry {
    password: String,
    account: Arc<Account>,
    /// Compiled once per user, shared by all its connections.
    permissions: Option<Arc<Compiled>>,
}

fn compile(own: Option<&Permissions>, default: Option<&Permissions>) -> Option<Arc<Compiled>> {
    own.or(default).map(|p| Arc::new(Compiled::new(p)))
}

/// The broker's users and how clients without credentials are treated.
pub(crate) struct Authenticator {
    single: Auth,
    users: HashMap<String, UserEntry>,
    /// The user a client without credentials becomes.
    no_auth_user: Option<String>,
    /// The account of clients that need not (or cannot) authenticate.
    default_account: Arc<Account>,
    /// Users exist only in the system account: clients without credentials go to `$G`.
    anonymous_global: bool,
}

impl Authenticator {
    /// The users `opts` describes (validated: names unique, `no_auth_user` among them).
    pub(crate) fn new(opts: &Options, accounts: &Accounts) -> Self {
        let global = accounts.global();
        let mut users = HashMap::new();
        for u in &opts.users {
            let entry = UserEntry {
                password: u.password.clone(),
                account: global.clone(),
                permissions: compile(u.permissions.as_ref(), opts.default_permissions.as_ref()),
            };
            users.insert(u.name.clone(), entry);
        }
        for a in &opts.accounts {
            let Some(account) = accounts.get(&a.name) else {
                continue;
            };
            for u in &a.users {
                let entry = UserEntry {
                    password: u.password.clone(),
                    account: account.clone(),
                    permissions: compile(u.permissions.as_ref(), a.default_permissions.as_ref()),
                };
                users.insert(u.name.clone(), entry);
            }
        }
        let mut no_auth_user = opts.no_auth_user.clone();
        let default_account = no_auth_user
            .as_ref()
            .and_then(|u| users.get(u))
            .map_or_else(|| global.clone(), |e| e.account.clone());
        // As nats-server: when the only users are the system account's (and `$G` has no
        // authorization of its own), clients without credentials still get into `$G`.
        let system = accounts.system().map(|a| a.name().to_string());
        let only_system_users = !users.is_empty()
            && users
                .values()
                .all(|e| Some(e.account.name()) == system.as_deref());
        let anonymous_global =
            no_auth_user.is_none() && !opts.auth.is_required() && only_system_users;
        if anonymous_global {
            no_auth_user = None;
        }
        Self {
            single: opts.auth.clone(),
            users,
            no_auth_user,
            default_account,
            anonymous_global,
        }
    }

    /// Whether clients must present credentials at all.
    fn credentials_configured(&self) -> bool {
        self.single.is_required() || !self.users.is_empty()
    }

    /// INFO's `auth_required`: credentials are configured and a client without them would not
    /// be let in (`no_auth_user` lets it in).
    pub(crate) fn auth_required(&self) -> bool {
        self.credentials_configured() && self.no_auth_user.is_none() && !self.anonymous_global
    }

    /// The account of a client that does not authenticate (ops before CONNECT, CONNECT without
    /// credentials), if such clients are allowed.
    pub(crate) fn anonymous(&self) -> Option<&Arc<Account>> {
        (!self.auth_required()).then_some(&self.default_account)
    }

    /// Checks `connect`'s credentials.
    pub(crate) fn authenticate(&self, connect: &Connect) -> Option<Verdict> {
        if connect.account.is_some() || connect.new_account {
            return None;
        }
        let no_credentials =
            connect.user.is_none() && connect.pass.is_none() && connect.auth_token.is_none();
        if no_credentials && self.anonymous_global {
            return Some(Verdict {
                account: self.default_account.clone(),
                user: None,
                permissions: None,
            });
        }
        if no_credentials {
            if let Some(name) = &self.no_auth_user {
                let entry = self.users.get(name)?;
                return Some(Verdict {
                    account: entry.account.clone(),
                    user: Some(name.clone()),
                    permissions: entry.permissions.clone(),
                });
            }
        }
        if !self.credentials_configured() {
            return Some(Verdict {
                account: self.default_account.clone(),
                user: connect.user.clone(),
                permissions: None,
            });
        }
        match &self.single {
            Auth::UserPassword { user, password } => {
                let ok = credentials_match(connect.user.as_deref(), user)
                    & credentials_match(connect.pass.as_deref(), password);
                return ok.then(|| Verdict {
                    account: self.default_account.clone(),
                    user: Some(user.clone()),
                    permissions: None,
                });
            }
            Auth::Token(token) => {
                return credentials_match(connect.auth_token.as_deref(), token).then(|| Verdict {
                    account: self.default_account.clone(),
                    user: None,
                    permissions: None,
                });
            }
            Auth::None => {}
        }
        let name = connect.user.as_deref()?;
        let entry = self.users.get(name)?;
        credentials_match(connect.pass.as_deref(), &entry.password).then(|| Verdict {
            account: entry.account.clone(),
            user: Some(name.to_string()),
            permissions: entry.permissions.clone(),
        })
    }
}

/// Compares a credential a peer sent with the configured one in time that does not depend on
/// where they differ (as nats-server does, with Go's `subtle.ConstantTimeCompare`), so a client
/// cannot find a password byte by byte by timing rejections. Only the length may show.
pub(crate) fn credentials_match(given: Option<&str>, expected: &str) -> bool {
    let Some(given) = given else {
        return false;
    };
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    if given.len() != expected.len() {
        return false;
    }
    let diff = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | std::hint::black_box(a ^ b));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::credentials_match;

    #[test]
    fn credentials_compare() {
        assert!(credentials_match(Some("s3cret"), "s3cret"));
        assert!(!credentials_match(Some("s3creT"), "s3cret"));
        assert!(!credentials_match(Some("s3cre"), "s3cret"));
        assert!(!credentials_match(Some(""), "s3cret"));
        assert!(!credentials_match(None, "s3cret"));
        assert!(credentials_match(Some(""), ""));
    }
}
