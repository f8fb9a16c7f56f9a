//! Errors of the embedding API.

use std::net::SocketAddr;

use thiserror::Error;

/// Why [`crate::ServerBuilder::start`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot bind the {listener} listener on {addr}: {source}")]
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
