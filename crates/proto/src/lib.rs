//! Sans-IO codec for the NATS protocols: bytes in, ops out; ops in, bytes out.
//!
//! No I/O, no clock, no tokio: a connection task reads into a buffer, hands the front of it to a
//! parser and gets typed ops that borrow from the buffer. Every slice in a parsed op points *into*
//! the buffer that was parsed, so a caller holding the buffer as [`bytes::Bytes`] gets a zero-copy
//! payload with [`Bytes::slice_ref`](bytes::Bytes::slice_ref) (the `decode` methods do exactly
//! that on a [`bytes::BytesMut`]).
//!
//! ```
//! use bytes::BytesMut;
//! use starling_proto::{encode, ClientOp, ClientParser, Limits, OwnedClientOp};
//!
//! let mut parser = ClientParser::new(Limits::default());
//!
//! // Borrowing: ops point into the buffer.
//! let wire = b"SUB greet 1\r\nPUB greet 5\r\nhello\r\nPI";
//! let (op, used) = parser.parse(wire)?.expect("complete");
//! assert_eq!(op, ClientOp::Sub { subject: b"greet", queue: None, sid: b"1" });
//! let (op, used2) = parser.parse(&wire[used..])?.expect("complete");
//! assert!(matches!(op, ClientOp::Pub(p) if p.data == b"hello"));
//! assert_eq!(parser.parse(&wire[used + used2..])?, None); // "PI": need more bytes
//!
//! // Owned: the payload is a `Bytes` sharing the read buffer.
//! let mut buf = BytesMut::from(&b"PUB greet 5\r\nhello\r\n"[..]);
//! let Some(OwnedClientOp::Pub(p)) = parser.decode(&mut buf)? else { unreachable!() };
//! assert_eq!(&p.data[..], b"hello");
//!
//! // Encoding: control lines go straight into the caller's buffer.
//! let mut out = BytesMut::new();
//! encode::write_msg(&mut out, &p.subject, b"1", None, p.data.len());
//! assert_eq!(&out[..], b"MSG greet 1 5\r\n");
//! # Ok::<(), starling_proto::ProtoError>(())
//! ```
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
mod fast;
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
