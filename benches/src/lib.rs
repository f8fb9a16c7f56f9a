//! Criterion benchmarks live in `benches/`; this library is the `starling-bench` load tool,
//! which measures any NATS server at a URL and compares Starling with nats-server side by side.
//!
//! # Layout
//!
//! - `conn`: a raw NATS client connection on blocking sockets ([`connect`], [`Conn`]): large
//!   buffered writes, a large-read parser loop; TLS for `tls://` URLs.
//! - `seq`: sequence numbers in payloads and the checks that fail a run on loss, duplication or
//!   reordering ([`Tracker`]).
//! - `flow`: the publish/subscribe engine with flow control and a bounded drain ([`Flow`]).
//! - `reqrep`, `subs`, `accounts`, `handshake`: the request/reply, many-subscriptions,
//!   many-accounts and connection set-up scenarios (and the server configurations accounts
//!   need).
//! - `js`: the JetStream scenarios (acknowledged publishes, pull consumers, replay, KV) and
//!   their checks ([`js::PubAckCheck`], [`js::DeliveryCheck`], [`js::GetCheck`]).
//! - `tls`: the certificate `compare --tls` generates and what `tls://` clients trust.
//! - `scenario`: [`Scenario`], [`Config`] and [`run`], one scenario against one server.
//! - `procstat`: server CPU time and RSS from `/proc`.
//! - `report`: [`RunResult`], tables and JSON lines.
//! - `compare`: starts Starling and nats-server and runs scenarios against both, alternately.
//! - `recover`: disk per message and the time back after `kill -9`, for a file stream on both.
//! - `args`: the hand-written command-line parser of the binary.

pub mod accounts;
pub mod args;
pub mod compare;
pub mod conn;
mod error;
pub mod flow;
pub mod handshake;
pub mod js;
pub mod procstat;
pub mod recover;
pub mod report;
pub mod reqrep;
mod scenario;
pub mod seq;
pub mod subs;
pub mod tls;

pub use conn::{connect, Conn};
pub use error::{BenchError, Result};
pub use flow::{Flow, FlowOutcome};
pub use report::{Latency, RunResult};
pub use scenario::{run, Config, Scenario, Topology, SIZE_RANGE};
pub use seq::Tracker;
