//! How an embedder describes accounts: [`Account`] with its [`User`]s, exports and imports, as
//! nats-server's `accounts { ... }` block describes them.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use starling_server::{Account, Server, ServiceExport, ServiceImport, StreamImport, User};
//!
//! let server = Server::builder()
//!     .account(
//!         Account::new("ORDERS")
//!             .user(User::new("orders", "s3cret"))
//!             .export_stream("orders.events.>")
//!             .export_service(ServiceExport::new("orders.place")),
//!     )
//!     .account(
//!         Account::new("WEB")
//!             .user(User::new("web", "pa55"))
//!             .import_stream(StreamImport::new("ORDERS", "orders.events.>").prefix("shop"))
//!             .import_service(ServiceImport::new("ORDERS", "orders.place").to("place")),
//!     )
//!     .start()
//!     .await?;
//! let web = server.client_in("WEB")?; // an in-process client in account WEB
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::time::Duration;

use crate::config::Config;
use crate::error::AccountError;
use crate::permissions::Permissions;

/// nats-server's default account: clients not bound to another account are in it.
pub const GLOBAL_ACCOUNT: &str = "$G";
/// nats-server's default system account name.
pub const DEFAULT_SYSTEM_ACCOUNT: &str = "$SYS";
/// How long a service's requester waits for responses before its reply mapping is dropped
/// (nats-server's `DEFAULT_SERVICE_EXPORT_RESPONSE_THRESHOLD`).
pub const DEFAULT_RESPONSE_THRESHOLD: Duration = Duration::from_secs(120);

/// An account: an isolated subject space with its own users. A message published in one account
/// reaches only subscribers of that account, unless an export of it is imported elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub(crate) name: String,
    pub(crate) users: Vec<User>,
    pub(crate) stream_exports: Vec<StreamExport>,
    pub(crate) service_exports: Vec<ServiceExport>,
    pub(crate) stream_imports: Vec<StreamImport>,
    pub(crate) service_imports: Vec<ServiceImport>,
    pub(crate) limits: AccountLimits,
    pub(crate) default_permissions: Option<Permissions>,
}

impl Account {
    /// An account named `name` (nats-server's key in `accounts { NAME: {...} }`). `$G` is
    /// reserved.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            users: Vec::new(),
            stream_exports: Vec::new(),
            service_exports: Vec::new(),
            stream_imports: Vec::new(),
            service_imports: Vec::new(),
            default_permissions: None,
            limits: AccountLimits::default(),
        }
    }

    /// The account's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The account's users.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// A user whose connections are bound to this account. User names are unique across all
    /// accounts.
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Lets other accounts import the messages published on `export` (a subject, wildcards
    /// allowed; public unless restricted with [`StreamExport::accounts`]).
    pub fn export_stream(mut self, export: impl Into<StreamExport>) -> Self {
        self.stream_exports.push(export.into());
        self
    }

    /// Lets other accounts send requests to a service of this account.
    pub fn export_service(mut self, export: impl Into<ServiceExport>) -> Self {
        self.service_exports.push(export.into());
        self
    }

    /// Permissions for the account's users that have none of their own (nats-server's
    /// account `default_permissions`).
    pub fn default_permissions(mut self, permissions: Permissions) -> Self {
        self.default_permissions = Some(permissions);
        self
    }

    /// Receives another account's exported stream.
    pub fn import_stream(mut self, import: StreamImport) -> Self {
        self.stream_imports.push(import);
        self
    }

    /// Sends requests to another account's exported service.
    pub fn import_service(mut self, import: ServiceImport) -> Self {
        self.service_imports.push(import);
        self
    }

    /// The most client connections the account may have at once (`limits.max_connections`;
    /// 0 = no limit).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n;
        self
    }

    /// The most subscriptions one connection of the account may hold (`limits.max_subscriptions`;
    /// 0 = the server's limit).
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.limits.max_subscriptions = n;
        self
    }

    /// The largest payload a connection of the account may publish (`limits.max_payload`; 0 =
    /// the server's limit).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.limits.max_payload = bytes;
        self
    }
}

/// An account's limits (nats-server's `limits { ... }`); 0 means no limit of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AccountLimits {
    pub(crate) max_connections: usize,
    pub(crate) max_subscriptions: usize,
    pub(crate) max_payload: usize,
}

/// A user and password (nats-server's `users: [{user, password}]`).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub(crate) name: String,
    pub(crate) password: String,
    /// Authenticated by signing the server's nonce with the seed of `name` (a public nkey).
    pub(crate) nkey: bool,
    pub(crate) permissions: Option<Permissions>,
}

impl User {
    /// A user `name` authenticated by `password` (plain text, or a bcrypt hash).
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            password: password.into(),
            nkey: false,
            permissions: None,
        }
    }

    /// A user authenticated by an nkey (nats-server's `users: [{nkey: U...}]`): the client
    /// signs the nonce of the server's INFO with the seed of `public_key`, a user public key
    /// (`U...`). The key is also the user's name.
    pub fn nkey(public_key: impl Into<String>) -> Self {
        Self {
            name: public_key.into(),
            password: String::new(),
            nkey: true,
            permissions: None,
        }
    }

    /// Whether the user authenticates with an nkey.
    pub fn is_nkey(&self) -> bool {
        self.nkey
    }

    /// For an nkey user: whether its key is a user public key (`U...`, checksum valid), as
    /// the server checks when it starts.
    pub fn is_valid_nkey(&self) -> bool {
        self.nkey && crate::auth::is_user_nkey(&self.name)
    }

    /// What the user may publish and subscribe to (nats-server's `permissions`); without it
    /// the account's or the server's default permissions apply, else no restriction.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = Some(permissions);
        self
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A stream export (`exports: [{stream: SUBJECT, accounts: [...]}]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamExport {
    pub(crate) subject: String,
    pub(crate) accounts: Vec<String>,
}

impl StreamExport {
    /// Exports `subject` (wildcards allowed) to every account.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            accounts: Vec::new(),
        }
    }

    /// Only these accounts may import it.
    pub fn accounts<I, S>(mut self, accounts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.accounts.extend(accounts.into_iter().map(Into::into));
        self
    }
}

impl From<&str> for StreamExport {
    fn from(subject: &str) -> Self {
        Self::new(subject)
    }
}

/// How many responses a service sends to one request (nats-server's `response_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseType {
    /// One response (the default): the reply mapping is gone after it.
    #[default]
    Singleton,
    /// Any number of responses, until the response threshold passes without one.
    Stream,
    /// Any number of responses, ended by an empty message or the threshold.
    Chunked,
}

/// Which requests service latency is measured for (nats-server's `latency.sampling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sampling {
    /// This percentage of requests (1 to 100).
    Percent(u8),
    /// Only requests that carry a trace header (`traceparent`, B3 or `uber-trace-id`).
    Headers,
}

/// Where service latency is published, and for which requests (nats-server's `latency`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latency {
    pub(crate) subject: String,
    pub(crate) sampling: Sampling,
}

impl Latency {
    /// Publishes a measurement for every request to `subject` (in the exporting account).
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            sampling: Sampling::Percent(100),
        }
    }

    /// Measures only some requests.
    pub fn sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }
}

/// A service export (`exports: [{service: SUBJECT, response_type, response_threshold, latency,
/// accounts}]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceExport {
    pub(crate) subject: String,
    pub(crate) accounts: Vec<String>,
    pub(crate) response: ResponseType,
    pub(crate) threshold: Duration,
    pub(crate) latency: Option<Latency>,
}

impl ServiceExport {
    /// Exports the service listening on `subject` (wildcards allowed) to every account.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            accounts: Vec::new(),
            response: ResponseType::Singleton,
            threshold: DEFAULT_RESPONSE_THRESHOLD,
            latency: None,
        }
    }

    /// Only these accounts may import it.
    pub fn accounts<I, S>(mut self, accounts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.accounts.extend(accounts.into_iter().map(Into::into));
        self
    }

    /// How many responses one request gets (default [`ResponseType::Singleton`]).
    pub fn response(mut self, response: ResponseType) -> Self {
        self.response = response;
        self
    }

    /// How long a request's reply mapping lives without a response (default 2 minutes).
    pub fn threshold(mut self, threshold: Duration) -> Self {
        self.threshold = threshold;
        self
    }

    /// Measures the service's latency and publishes it (needs the system account).
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = Some(latency);
        self
    }
}

impl From<&str> for ServiceExport {
    fn from(subject: &str) -> Self {
        Self::new(subject)
    }
}

/// A stream import (`imports: [{stream: {account, subject}, prefix | to}]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamImport {
    pub(crate) account: String,
    pub(crate) subject: String,
    pub(crate) prefix: Option<String>,
    pub(crate) to: Option<String>,
}

impl StreamImport {
    /// Receives what `account` publishes on `subject` (which it must export), under the same
    /// subject.
    pub fn new(account: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            subject: subject.into(),
            prefix: None,
            to: None,
        }
    }

    /// Delivers under `prefix.` + the subject (a literal prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Delivers under `to` instead (wildcards of the subject may be referenced as `$1`, `$2`,
    /// ... or kept in place).
    pub fn to(mut self, to: impl Into<String>) -> Self {
        self.to = Some(to.into());
        self
    }
}

/// A service import (`imports: [{service: {account, subject}, to, share}]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceImport {
    pub(crate) account: String,
    pub(crate) subject: String,
    pub(crate) to: Option<String>,
    pub(crate) share: bool,
}

impl ServiceImport {
    /// Sends requests published on `subject` in this account to `account`'s service on
    /// `subject` (which it must export).
    pub fn new(account: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            subject: subject.into(),
            to: None,
            share: false,
        }
    }

    /// Requests are published on `to` in this account (the exporter still sees `subject`).
    pub fn to(mut self, to: impl Into<String>) -> Self {
        self.to = Some(to.into());
        self
    }

    /// Shares the requester's details with the exporter's latency measurements.
    pub fn share(mut self, yes: bool) -> Self {
        self.share = yes;
        self
    }
}

/// Checks the accounts, users and system account of `opts` as nats-server checks its config.
pub(crate) fn validate(opts: &Config) -> Result<(), AccountError> {
    let mut names = HashSet::new();
    for a in &opts.accounts {
        if a.name == GLOBAL_ACCOUNT {
            return Err(AccountError::Reserved(a.name.clone()));
        }
        if !names.insert(a.name.as_str()) {
            return Err(AccountError::Duplicate(a.name.clone()));
        }
    }
    let all_permissions = opts
        .users
        .iter()
        .chain(opts.accounts.iter().flat_map(|a| a.users.iter()))
        .filter_map(|u| u.permissions.as_ref())
        .chain(
            opts.accounts
                .iter()
                .filter_map(|a| a.default_permissions.as_ref()),
        )
        .chain(opts.default_permissions.as_ref());
    for p in all_permissions {
        p.validate()?;
    }
    let mut users = HashSet::new();
    let all_users = opts
        .users
        .iter()
        .chain(opts.accounts.iter().flat_map(|a| a.users.iter()));
    for u in all_users {
        if u.nkey && !crate::auth::is_user_nkey(&u.name) {
            return Err(AccountError::InvalidNkey(u.name.clone()));
        }
        if !users.insert(u.name.as_str()) {
            return Err(AccountError::DuplicateUser(u.name.clone()));
        }
    }
    if !users.is_empty() && opts.auth.is_required() {
        return Err(AccountError::SingleUserAndUsers);
    }
    if let Some(name) = &opts.no_auth_user {
        if !users.contains(name.as_str()) {
            return Err(AccountError::NoAuthUserUnknown(name.clone()));
        }
    }
    if let Some(system) = &opts.system {
        if system == GLOBAL_ACCOUNT {
            return Err(AccountError::SystemIsGlobal(system.clone()));
        }
    }
    super::imports::validate(&opts.accounts, opts.system.as_deref())
}
