//! The system account: the server's own services and advisories, visible only to the system
//! account's clients (nats-server's `$SYS` subjects).

use std::sync::Arc;

use super::Accounts;
use crate::broker::Broker;
use crate::conn::{ClosedReason, Conn};

/// The system account's side of the broker.
pub(crate) struct System {}

impl System {
    pub(crate) fn new(_accounts: &Accounts) -> Self {
        Self {}
    }

    /// Starts the system account's services (once the broker is wired).
    pub(crate) fn start(&self, _broker: &Arc<Broker>) {}

    /// A client finished CONNECT.
    pub(crate) fn client_connected(&self, _broker: &Broker, _conn: &Conn) {}

    /// A client bound to an account closed.
    pub(crate) fn client_disconnected(
        &self,
        _broker: &Broker,
        _conn: &Conn,
        _reason: ClosedReason,
    ) {
    }

    /// The server entered lame duck.
    pub(crate) fn lame_duck(&self, _broker: &Broker) {}
}
