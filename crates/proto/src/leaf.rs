//! The leafnode protocol: `LS+ <subject> [queue weight]`, `LS- <subject> [queue]`,
//! `LMSG <subject> [reply | + reply q.. | '|' q..] <size>` and its `HMSG` form. A leafnode
//! connection is bound to one account on each side, so the ops carry no account token: the
//! parsed ops use [`RouteOp`] with `account` set to `b""` and no origin.

use crate::line::{read_line, Verb, VerbTable};
use crate::route::{control, msg_args, routed_body, sub_args, unsub, Prefix, ROUTE_CONTROL_LINE};
use crate::{Limits, ProtoError, RouteOp};

const LEAF_VERBS: &VerbTable = &[
    (b"LMSG", Verb::Lmsg),
    (b"HMSG", Verb::Hmsg),
    (b"LS+", Verb::LsPlus),
    (b"LS-", Verb::LsMinus),
    (b"PING", Verb::Ping),
    (b"PONG", Verb::Pong),
    (b"INFO", Verb::Info),
    (b"CONNECT", Verb::Connect),
    (b"+OK", Verb::Ok),
    (b"-ERR", Verb::Err),
];

/// Parses the leafnode protocol. Like routes, leafnodes are exempt from the max control line
/// (a 64 KiB cap keeps memory bounded); the max payload is enforced.
#[derive(Debug, Clone)]
pub struct LeafParser {
    limits: Limits,
    hint: Option<usize>,
}

impl LeafParser {
    /// A parser enforcing `limits.max_payload`.
    pub fn new(limits: Limits) -> Self {
        Self { limits, hint: None }
    }

    /// Changes the limits; applies from the next call.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Parses the op at the front of `buf`: `Ok(Some((op, consumed)))`, or `Ok(None)` when more
    /// bytes are needed.
    pub fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(RouteOp<'a>, usize)>, ProtoError> {
        self.hint = None;
        let Some(line) = read_line(buf, LEAF_VERBS, ROUTE_CONTROL_LINE)? else {
            return Ok(None);
        };
        let none = Prefix {
            origin: false,
            account: false,
        };
        let op = match line.verb {
            Verb::Lmsg | Verb::Hmsg => {
                let m = if line.verb == Verb::Lmsg {
                    msg_args(line.args, "LMSG", none, false, false)?
                } else {
                    msg_args(line.args, "HMSG", none, true, false)?
                };
                return routed_body(buf, line.next, m, self.limits.max_payload, &mut self.hint);
            }
            Verb::LsPlus => RouteOp::Sub(sub_args(line.args, "LS+", none)?),
            Verb::LsMinus => RouteOp::Unsub(unsub(sub_args(line.args, "LS-", none)?)),
            other => control(other, line.args)?,
        };
        Ok(Some((op, line.next)))
    }

    /// After [`parse`](Self::parse) returned `Ok(None)`: the total bytes the frame at the front
    /// needs, when its control line is complete.
    pub fn frame_len_hint(&self) -> Option<usize> {
        self.hint
    }
}
