//! The route and leafnode protocols. Invariants: every op consumes 1..=len bytes; bodies have
//! the announced length; re-encoding an op and parsing it again gives the same op; feeding
//! the same bytes in two pieces gives the same ops and the same error; the fast path agrees
//! with the general parser.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use starling_proto::{encode, LeafParser, Limits, ProtoError, RouteOp, RouteParser};

const HUGE: Limits = Limits {
    max_control_line: usize::MAX / 4,
    max_payload: usize::MAX / 4,
};

fn reencode(op: &RouteOp<'_>, leaf: bool, lnocu: bool) -> BytesMut {
    let mut b = BytesMut::new();
    match *op {
        RouteOp::Sub(s) => {
            let q = s.queue.map(|q| (q, s.weight));
            match (leaf, s.origin) {
                (true, _) => encode::write_ls_plus(&mut b, s.subject, q),
                (false, Some(o)) => encode::write_route_ls_plus(&mut b, o, s.account, s.subject, q),
                (false, None) => encode::write_rs_plus(&mut b, s.account, s.subject, q),
            }
        }
        RouteOp::Unsub(s) => match (leaf, s.origin) {
            (true, _) => encode::write_ls_minus(&mut b, s.subject, s.queue),
            (false, Some(o)) => {
                encode::write_route_ls_minus(&mut b, Some(o), s.account, s.subject, s.queue)
            }
            // An LS- without origin re-encodes as RS-, which parses to the same op.
            (false, None) => encode::write_rs_minus(&mut b, s.account, s.subject, s.queue),
        },
        RouteOp::Msg(m) => {
            let queues: Vec<&[u8]> = m.queues.iter().collect();
            match (leaf, m.origin) {
                (true, _) => encode::write_lmsg(
                    &mut b,
                    m.subject,
                    m.reply,
                    &queues,
                    m.header_len,
                    m.data.len(),
                ),
                (false, Some(o)) => encode::write_route_lmsg(
                    &mut b,
                    o,
                    m.account,
                    m.subject,
                    m.reply,
                    &queues,
                    m.header_len,
                    m.data.len(),
                ),
                (false, None) => encode::write_rmsg(
                    &mut b,
                    m.account,
                    m.subject,
                    m.reply,
                    &queues,
                    m.header_len,
                    m.data.len(),
                ),
            }
            b.extend_from_slice(m.data);
            b.extend_from_slice(b"\r\n");
        }
        RouteOp::Ping => b.extend_from_slice(encode::PING),
        RouteOp::Pong => b.extend_from_slice(encode::PONG),
        RouteOp::Ok => b.extend_from_slice(encode::OK),
        RouteOp::Info(j) => b.extend_from_slice(&[b"INFO ", j, b"\r\n"].concat()),
        RouteOp::Connect(j) => b.extend_from_slice(&[b"CONNECT ", j, b"\r\n"].concat()),
        RouteOp::Err(t) => encode::write_err(&mut b, t),
    }
    b
}

/// Re-encodes `op` and checks it parses back to the same op.
fn check(op: &RouteOp<'_>, input: &[u8], n: usize, leaf: bool, lnocu: bool) {
    assert!(n > 0 && n <= input.len());
    if let RouteOp::Msg(m) = op {
        assert!(m.header_len.unwrap_or(0) <= m.data.len());
        assert_eq!(&input[n - 2..n], b"\r\n");
        if leaf {
            assert!(m.account.is_empty() && m.origin.is_none());
        }
    }
    let again = reencode(op, leaf, lnocu);
    let parsed = if leaf {
        LeafParser::new(HUGE).parse(&again)
    } else {
        let mut p = RouteParser::new(HUGE);
        // An origin on an unsub only round-trips where the parser expects one.
        p.set_lnocu(matches!(op, RouteOp::Unsub(s) if s.origin.is_some()));
        p.parse(&again)
    };
    let (op2, n2) = parsed.expect("re-encoded op parses").expect("complete");
    let mut want = *op;
    // Route LMSG writes 0 for "no headers", so an empty header block reads back as none.
    if let RouteOp::Msg(m) = &mut want {
        if !leaf && m.origin.is_some() && m.header_len == Some(0) {
            m.header_len = None;
        }
    }
    assert_eq!(op2, want);
    assert_eq!(n2, again.len());
}

fn run<F>(input: &[u8], cut: usize, mut parse: F) -> (Vec<String>, Option<ProtoError>)
where
    F: FnMut(&[u8]) -> Result<Option<(String, usize)>, ProtoError>,
{
    let mut ops = Vec::new();
    let mut at = 0;
    for end in [cut, input.len()] {
        loop {
            match parse(&input[at..end]) {
                Ok(Some((op, n))) => {
                    assert!(n > 0 && at + n <= end);
                    ops.push(op);
                    at += n;
                }
                Ok(None) => break,
                Err(e) => return (ops, Some(e)),
            }
        }
    }
    (ops, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let limits = if selector & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_control_line: 16,
            max_payload: 32,
        }
    };
    let lnocu = selector & 2 != 0;
    let cut = if input.is_empty() {
        0
    } else {
        (selector as usize * 13) % (input.len() + 1)
    };
    let route = |b: &[u8]| {
        let mut p = RouteParser::new(limits);
        p.set_lnocu(lnocu);
        let mut general = p.clone();
        let result = p.parse(b);
        // The fast path and the general parser agree on everything.
        assert_eq!(result, general.parse_general_for_fuzzing(b));
        let Some((op, n)) = result? else {
            return Ok(None);
        };
        check(&op, b, n, false, lnocu);
        Ok(Some((format!("{op:?}"), n)))
    };
    assert_eq!(run(input, input.len(), route), run(input, cut, route));
    let leaf = |b: &[u8]| {
        let Some((op, n)) = LeafParser::new(limits).parse(b)? else {
            return Ok(None);
        };
        check(&op, b, n, true, false);
        Ok(Some((format!("{op:?}"), n)))
    };
    assert_eq!(run(input, input.len(), leaf), run(input, cut, leaf));
});
