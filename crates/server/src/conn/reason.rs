//! Why a connection ended, worded as nats-server words it in `/connz?state=closed`.

use std::fmt;

/// Why a connection was closed. `Display` gives nats-server's exact reason string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClosedReason {
    /// The client closed the connection (EOF).
    ClientClosed,
    /// No CONNECT arrived within the auth timeout.
    AuthenticationTimeout,
    /// Wrong or missing credentials.
    AuthenticationViolation,
    /// Pending bytes went over max_pending.
    SlowConsumerPendingBytes,
    /// A write stalled longer than the write deadline.
    SlowConsumerWriteDeadline,
    /// Writing to the socket failed.
    WriteError,
    /// Reading from the socket failed.
    ReadError,
    /// The client sent something that does not parse.
    ParseError,
    /// The client did not answer PINGs.
    StaleConnection,
    /// The client broke a protocol rule.
    ProtocolViolation,
    /// CONNECT asked for a protocol version we do not speak.
    BadClientProtocolVersion,
    /// max_connections was reached.
    MaxConnectionsExceeded,
    /// A PUB exceeded max_payload.
    MaxPayloadExceeded,
    /// A control line exceeded max_control_line.
    MaxControlLineExceeded,
    /// The server shut down.
    ServerShutdown,
    /// `no_responders` without `headers`.
    NoRespondersRequiresHeaders,
    /// A second route to a peer that already has one.
    DuplicateRoute,
    /// The client's account is at its connection limit.
    MaxAccountConnectionsExceeded,
    /// The TLS handshake failed or timed out.
    TlsHandshakeError,
    /// The client's authorization expired.
    AuthenticationExpired,
    /// The embedder kicked the client.
    Kicked,
    /// A leafnode reconnected while its old connection was still open: the old one goes.
    DuplicateLeafnode,
}

impl ClosedReason {
    /// nats-server's wording.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ClientClosed => "Client Closed",
            Self::AuthenticationTimeout => "Authentication Timeout",
            Self::AuthenticationViolation => "Authentication Failure",
            Self::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            Self::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            Self::WriteError => "Write Error",
            Self::ReadError => "Read Error",
            Self::ParseError => "Parse Error",
            Self::StaleConnection => "Stale Connection",
            Self::ProtocolViolation => "Protocol Violation",
            Self::BadClientProtocolVersion => "Bad Client Protocol Version",
            Self::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            Self::MaxPayloadExceeded => "Maximum Message Payload Exceeded",
            Self::MaxControlLineExceeded => "Maximum Control Line Exceeded",
            Self::ServerShutdown => "Server Shutdown",
            Self::NoRespondersRequiresHeaders => "No Responders Requires Headers",
            Self::DuplicateRoute => "Duplicate Route",
            Self::MaxAccountConnectionsExceeded => "Maximum Account Connections Exceeded",
            Self::TlsHandshakeError => "TLS Handshake Failure",
            Self::AuthenticationExpired => "Authentication Expired",
            Self::Kicked => "Kicked",
            Self::DuplicateLeafnode => "Duplicate Remote LeafNode Connection",
        }
    }

    /// Whether the connection was cut off for not keeping up.
    pub(crate) fn is_slow_consumer(&self) -> bool {
        matches!(
            self,
            Self::SlowConsumerPendingBytes | Self::SlowConsumerWriteDeadline
        )
    }

    /// Whether queued output is still flushed before the socket closes (an `-ERR` must reach
    /// the client); slow consumers and dead sockets are cut off at once.
    pub(crate) fn flushes(&self) -> bool {
        !matches!(
            self,
            Self::SlowConsumerPendingBytes
                | Self::SlowConsumerWriteDeadline
                | Self::WriteError
                | Self::ReadError
                | Self::ClientClosed
        )
    }
}

impl fmt::Display for ClosedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
