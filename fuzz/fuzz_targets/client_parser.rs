//! The client protocol, both directions. Invariants: every op consumes 1..=len bytes; every
//! slice lies inside the input; a body has the announced length and its header part fits;
//! re-encoding an op and parsing it again gives the same op; feeding the same bytes in two
//! pieces gives the same ops and the same error; the fast paths agree with the general parsers.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use starling_proto::{encode, ClientOp, ClientParser, Limits, ProtoError, ServerOp, ServerParser};

fn within(input: &[u8], part: &[u8]) {
    let (a, b) = (input.as_ptr() as usize, part.as_ptr() as usize);
    assert!(
        part.is_empty() || (b >= a && b + part.len() <= a + input.len()),
        "slice outside the input"
    );
}

fn reencode_client(op: &ClientOp<'_>) -> BytesMut {
    let mut b = BytesMut::new();
    match *op {
        ClientOp::Pub(p) => {
            match p.header_len {
                None => encode::write_pub(&mut b, p.subject, p.reply, p.data.len()),
                Some(h) => encode::write_hpub(&mut b, p.subject, p.reply, h, p.data.len()),
            }
            b.extend_from_slice(p.data);
            b.extend_from_slice(b"\r\n");
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => encode::write_sub(&mut b, subject, queue, sid),
        ClientOp::Unsub { sid, max } => encode::write_unsub(&mut b, sid, max),
        ClientOp::Ping => b.extend_from_slice(encode::PING),
        ClientOp::Pong => b.extend_from_slice(encode::PONG),
        ClientOp::Ok => b.extend_from_slice(encode::OK),
        ClientOp::Connect(j) => b.extend_from_slice(&[b"CONNECT ", j, b"\r\n"].concat()),
        ClientOp::Info(j) => b.extend_from_slice(&[b"INFO ", j, b"\r\n"].concat()),
        ClientOp::Err(t) => b.extend_from_slice(&[b"-ERR ", t, b"\r\n"].concat()),
    }
    b
}

fn reencode_server(op: &ServerOp<'_>) -> BytesMut {
    let mut b = BytesMut::new();
    match *op {
        ServerOp::Msg(m) => {
            match m.header_len {
                None => encode::write_msg(&mut b, m.subject, m.sid, m.reply, m.data.len()),
                Some(h) => encode::write_hmsg(&mut b, m.subject, m.sid, m.reply, h, m.data.len()),
            }
            b.extend_from_slice(m.data);
            b.extend_from_slice(b"\r\n");
        }
        ServerOp::Ping => b.extend_from_slice(encode::PING),
        ServerOp::Pong => b.extend_from_slice(encode::PONG),
        ServerOp::Ok => b.extend_from_slice(encode::OK),
        ServerOp::Info(j) => b.extend_from_slice(&[b"INFO ", j, b"\r\n"].concat()),
        ServerOp::Err(t) => encode::write_err(&mut b, t),
    }
    b
}

/// Parses all of `input`, fed as `input[..cut]` then the rest; returns the ops (Debug text)
/// and the error that stopped parsing.
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
                    assert!(n > 0 && at + n <= end, "consumed {n} of {}", end - at);
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

fn limits(selector: u8) -> Limits {
    match selector % 4 {
        0 => Limits::default(),
        1 => Limits {
            max_control_line: 32,
            max_payload: 64,
        },
        2 => Limits {
            max_control_line: 8,
            max_payload: 4,
        },
        _ => Limits {
            max_control_line: 4096,
            max_payload: 0,
        },
    }
}

fn client_op(limits: Limits, input: &[u8]) -> Result<Option<(String, usize)>, ProtoError> {
    let mut p = ClientParser::new(limits);
    let result = p.parse(input);
    // The fast path and the general parser agree on everything.
    assert_eq!(
        result,
        ClientParser::new(limits).parse_general_for_fuzzing(input)
    );
    let Some((op, n)) = result? else {
        return Ok(None);
    };
    if let ClientOp::Pub(pb) = op {
        within(input, pb.data);
        within(input, pb.subject);
        assert!(pb.data.len() <= limits.max_payload);
        assert!(pb.header_len.unwrap_or(0) <= pb.data.len());
        assert_eq!(&input[n - 2..n], b"\r\n");
    }
    // Canonical re-encoding parses to the same op (size limits aside).
    let again = reencode_client(&op);
    let mut q = ClientParser::new(Limits {
        max_control_line: usize::MAX / 4,
        max_payload: usize::MAX / 4,
    });
    let (op2, n2) = q
        .parse(&again)
        .expect("re-encoded op parses")
        .expect("complete");
    assert_eq!(op2, op);
    assert_eq!(n2, again.len());
    Ok(Some((format!("{op:?}"), n)))
}

fn server_op(limits: Limits, input: &[u8]) -> Result<Option<(String, usize)>, ProtoError> {
    let mut p = ServerParser::new(limits);
    let result = p.parse(input);
    assert_eq!(
        result,
        ServerParser::new(limits).parse_general_for_fuzzing(input)
    );
    let Some((op, n)) = result? else {
        return Ok(None);
    };
    if let ServerOp::Msg(m) = op {
        within(input, m.data);
        assert!(m.header_len.unwrap_or(0) <= m.data.len());
    }
    let again = reencode_server(&op);
    let (op2, n2) = ServerParser::new(Limits {
        max_control_line: usize::MAX / 4,
        max_payload: usize::MAX / 4,
    })
    .parse(&again)
    .expect("re-encoded op parses")
    .expect("complete");
    assert_eq!(op2, op);
    assert_eq!(n2, again.len());
    Ok(Some((format!("{op:?}"), n)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let l = limits(selector);
    let cut = if input.is_empty() {
        0
    } else {
        (selector as usize * 7) % (input.len() + 1)
    };
    assert_eq!(
        run(input, input.len(), |b| client_op(l, b)),
        run(input, cut, |b| client_op(l, b))
    );
    assert_eq!(
        run(input, input.len(), |b| server_op(l, b)),
        run(input, cut, |b| server_op(l, b))
    );
});
