//! Errors of the embedding API.

use std::net::SocketAddr;

use thiserror::Error;

/// Why [`crate::ServerBuilder::start`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound (worded as nats-server words it for the client port).
    #[error("Error listening on {listener} port: {addr}, \"{source}\"")]
    Bind {
        /// Which listener: `"client"`, `"cluster"`, `"monitor"`.
        listener: &'static str,
        /// The address it tried.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An address string did not parse.
    #[error("invalid {listener} address {addr:?}: {reason}")]
    Address {
        /// Which listener the address was for.
        listener: &'static str,
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The options contradict each other (e.g. max_payload above max_pending).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An option is out of range or malformed ([`crate::Config::validate`]).
    #[error(transparent)]
    Invalid(#[from] crate::ConfigError),
    /// The accounts, their users, exports or imports do not fit together.
    #[error("invalid accounts: {0}")]
    Account(#[from] AccountError),
    /// The TLS configuration cannot be used (files, names, versions).
    #[cfg(feature = "tls")]
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    /// An extension (JetStream, say) could not start.
    #[error("{name}: {source}")]
    Extension {
        /// The extension's name.
        name: String,
        /// Its error.
        #[source]
        source: crate::extension::ExtensionError,
    },
    /// `start()` was called outside a tokio runtime.
    #[error("starling must be started inside a tokio runtime")]
    NoRuntime,
}

/// Why an in-process client operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The subject is not valid for this operation.
    #[error("invalid subject")]
    InvalidSubject,
    /// The queue group name is not valid.
    #[error("invalid queue group name")]
    InvalidQueue,
    /// The payload exceeds the server's max_payload.
    #[error("maximum payload exceeded")]
    MaxPayload,
    /// The connection already holds max_subscriptions subscriptions.
    #[error("maximum subscriptions exceeded")]
    MaxSubscriptions,
    /// The server shut down or closed this client (for example as a slow consumer).
    #[error("connection closed")]
    Closed,
    /// The account is at its connection limit.
    #[error("maximum account active connections exceeded")]
    MaxAccountConnections,
    /// The server has no account of that name.
    #[error("no such account")]
    UnknownAccount,
    /// A header block is not one (`NATS/1.0` first, within the message).
    #[error("invalid header block")]
    InvalidHeaders,
    /// A service or endpoint name that is not `[A-Za-z0-9_-]+`, or a service version that
    /// is not a semantic version.
    #[error("invalid service name or version")]
    InvalidService,
}

/// Why an in-process request failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Nobody is subscribed to the subject (the server answered with status 503).
    #[error("no responders")]
    NoResponders,
    /// No reply arrived in time.
    #[error("request timed out")]
    TimedOut,
    /// The request could not be sent.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Why the accounts given to the builder cannot start a server (nats-server's wording).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccountError {
    /// `$G` (or another reserved name) was given as an account.
    #[error("{0:?} is a Reserved Account")]
    Reserved(String),
    /// Two accounts have the same name.
    #[error("Duplicate Account Entry: {0}")]
    Duplicate(String),
    /// A user name appears twice (across all accounts and `$G`).
    #[error("Duplicate user {0:?} detected")]
    DuplicateUser(String),
    /// An nkey user whose key is not a user public key (`U...`).
    #[error("Not a valid public nkey for a user: {0:?}")]
    InvalidNkey(String),
    /// A single user/password or token was given together with users.
    #[error("Can not have a single user/pass and accounts")]
    SingleUserAndUsers,
    /// `no_auth_user` names nobody.
    #[error("no_auth_user: {0:?} not present as user or nkey in authorization block or account configuration")]
    NoAuthUserUnknown(String),
    /// An export's `accounts` list, or an import, names an account that does not exist.
    #[error("{account:?} account not defined for {what}")]
    UnknownAccount {
        /// The missing account.
        account: String,
        /// `stream export`, `service import`, ...
        what: &'static str,
    },
    /// The `no_auth_user` was to be removed while the server runs.
    #[error("no_auth_user {0:?} can not be removed")]
    NoAuthUserRemoved(String),
    /// A user was added to an account the server does not have.
    #[error("{0:?} account not defined")]
    NoSuchAccount(String),
    /// A permission entry is not a valid subject (or `subject queue` for subscribe).
    #[error("{0}")]
    InvalidPermission(String),
    /// An export or import subject is not a valid subject.
    #[error("Error adding {what} {subject:?}: invalid subject")]
    InvalidSubject {
        /// `stream export`, `service import`, ...
        what: &'static str,
        /// The subject as given.
        subject: String,
    },
    /// An import that the exporting account does not allow.
    #[error("Error adding {what} {subject:?}: {what} not authorized")]
    NotAuthorized {
        /// `stream import` or `service import`.
        what: &'static str,
        /// The subject as given.
        subject: String,
    },
    /// A stream import prefix with wildcards.
    #[error(
        "Error adding stream import {0:?}: stream import prefix can not contain wildcard tokens"
    )]
    BadPrefix(String),
    /// A mapping (`to`) that does not fit the subject.
    #[error("Error adding {what} {subject:?}: {reason}")]
    BadMapping {
        /// `stream import` or `service import`.
        what: &'static str,
        /// The subject as given.
        subject: String,
        /// What is wrong.
        reason: String,
    },
    /// Latency sampling outside 1..=100.
    #[error(
        "Error adding service latency sampling for {0:?}: bad sampling percentage, should be 1-100"
    )]
    BadSampling(String),
    /// Latency without a system account.
    #[error("Error adding service latency sampling for {0:?}: system account not setup")]
    NoSystemAccount(String),
    /// The configured system account does not exist... or `$G` was named.
    #[error("system account {0:?} can not be the global account")]
    SystemIsGlobal(String),
}
