//! Sans-IO codec for the NATS protocols: bytes in, ops out; ops in, bytes out.
//!
//! No I/O, no clock, no tokio: a connection task reads into a buffer, hands the front of it to a
//! parser and gets typed ops that borrow from the buffer. Every slice in a parsed op points *into*
//! the buffer that was parsed, so a caller holding the buffer as [`bytes::Bytes`] gets a zero-copy
//! payload with [`Bytes::slice_ref`](bytes::Bytes::slice_ref) (the `decode` methods do exactly
//! that on a [`bytes::BytesMut`]).
//!
//! Parsing is incremental and stateless between ops: a parser re-reads the control line at the
//! front of the buffer on every call, so the same bytes split at any boundary give the same ops.
//!
//! # Layout
//!
//! - `limits`: [`Limits`] (max control line, max payload) enforced while parsing.
//! - `error`: [`ProtoError`] and the exact `-ERR` text nats-server sends for each.
//! - `line`, `args`: control-line framing (SIMD line search with `memchr`), verb lookup,
//!   argument splitting (spaces or tabs), size parsing.
//! - `client`: [`ClientParser`], what a server reads from a client (`PUB`, `HPUB`, `SUB`, ...).
//! - `server_ops`: [`ServerParser`], what a client reads from a server (`MSG`, `HMSG`, `INFO`, ...).
//! - `route`: [`RouteParser`], the cluster route protocol (`RS+`, `RS-`, `RMSG`, `LS+`, `LMSG`, ...).
//! - `leaf`: [`LeafParser`], the leafnode protocol (`LS+`, `LS-`, `LMSG`, ...), same op type as routes.
//! - [`encode`]: writers for every op into a caller's [`bytes::BufMut`], no allocation.
//! - `headers`: [`HeaderMap`], the `NATS/1.0` header block.
//! - `info`, `connect`: the `INFO` and `CONNECT` JSON documents ([`Info`], [`Connect`],
//!   [`RouteConnect`]).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod args;
mod client;
mod connect;
pub mod encode;
mod error;
mod headers;
mod info;
mod leaf;
mod limits;
mod line;
mod route;
mod server_ops;

pub use client::{ClientOp, ClientParser, OwnedClientOp, OwnedPublish, Publish};
pub use connect::{Connect, RouteConnect};
pub use error::{HeaderError, ProtoError};
pub use headers::HeaderMap;
pub use info::{Info, SubjectPermission};
pub use leaf::LeafParser;
pub use limits::Limits;
pub use route::{QueueIter, QueueNames, RemoteSub, RouteOp, RouteParser, RoutedMessage};
pub use server_ops::{Message, OwnedMessage, OwnedServerOp, ServerOp, ServerParser};
