//! The client protocol as a server parses it: every op, every error, every limit.

use bytes::{Bytes, BytesMut};
use starling_proto::{
    ClientOp, ClientParser, Limits, OwnedClientOp, OwnedPublish, ProtoError, Publish,
};

fn parse(input: &[u8]) -> Result<Option<(ClientOp<'_>, usize)>, ProtoError> {
    ClientParser::new(Limits::default()).parse(input)
}

fn op(input: &[u8]) -> ClientOp<'_> {
    let (op, n) = parse(input).expect("parses").expect("complete");
    assert_eq!(
        n,
        input.len(),
        "consumed all of {:?}",
        String::from_utf8_lossy(input)
    );
    op
}

fn err(input: &[u8]) -> ProtoError {
    parse(input).expect_err("error")
}

fn publish<'a>(
    subject: &'a [u8],
    reply: Option<&'a [u8]>,
    header_len: Option<usize>,
    data: &'a [u8],
) -> ClientOp<'a> {
    ClientOp::Pub(Publish {
        subject,
        reply,
        header_len,
        data,
    })
}

#[test]
fn pub_forms() {
    assert_eq!(
        op(b"PUB foo 5\r\nhello\r\n"),
        publish(b"foo", None, None, b"hello")
    );
    assert_eq!(
        op(b"PUB foo bar 5\r\nhello\r\n"),
        publish(b"foo", Some(b"bar"), None, b"hello")
    );
    assert_eq!(
        op(b"PUB foo.bar 0\r\n\r\n"),
        publish(b"foo.bar", None, None, b"")
    );
    // Case, tabs and runs of blanks, bare LF, trailing blanks.
    assert_eq!(
        op(b"pub  foo \t r  3\nabc\r\n"),
        publish(b"foo", Some(b"r"), None, b"abc")
    );
    assert_eq!(
        op(b"Pub\tfoo\t3 \t\r\nabc\r\n"),
        publish(b"foo", None, None, b"abc")
    );
    // Payload bytes are opaque, including CR/LF.
    assert_eq!(
        op(b"PUB a 4\r\n\r\n\r\n\r\n"),
        publish(b"a", None, None, b"\r\n\r\n")
    );
    // Any non-blank byte is part of a token.
    assert_eq!(
        op(b"PUB f\xc3\xa9e a\x01b 1\r\nx\r\n"),
        publish(b"f\xc3\xa9e", Some(b"a\x01b"), None, b"x")
    );
    // The reply subject is never validated.
    assert_eq!(
        op(b"PUB foo bar.* 1\r\nx\r\n"),
        publish(b"foo", Some(b"bar.*"), None, b"x")
    );
}

#[test]
fn hpub_forms() {
    let input = b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
    let ClientOp::Pub(p) = op(input) else {
        panic!()
    };
    assert_eq!(
        p,
        Publish {
            subject: b"foo",
            reply: None,
            header_len: Some(12),
            data: b"NATS/1.0\r\n\r\nhi"
        }
    );
    assert_eq!(p.headers(), Some(&b"NATS/1.0\r\n\r\n"[..]));
    assert_eq!(p.payload(), b"hi");
    assert_eq!(
        op(b"hpub foo r 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
        publish(b"foo", Some(b"r"), Some(12), b"NATS/1.0\r\n\r\n")
    );
    // Header content is not validated by the parser (nats-server forwards it verbatim).
    assert_eq!(
        op(b"HPUB foo 2 4\r\n\r\nhi\r\n"),
        publish(b"foo", None, Some(2), b"\r\nhi")
    );
    assert_eq!(
        op(b"HPUB foo 0 0\r\n\r\n"),
        publish(b"foo", None, Some(0), b"")
    );
    assert_eq!(err(b"HPUB foo 3 2\r\n"), ProtoError::HeaderSize);
    assert_eq!(
        err(b"HPUB foo 2\r\n"),
        ProtoError::InvalidArgs { op: "HPUB" }
    );
    assert_eq!(
        err(b"HPUB foo a b 2 3 4\r\n"),
        ProtoError::InvalidArgs { op: "HPUB" }
    );
    assert_eq!(
        err(b"HPUB foo x 3\r\n"),
        ProtoError::InvalidArgs { op: "HPUB" }
    );
    assert_eq!(
        err(b"HPUB foo 1 x\r\n"),
        ProtoError::InvalidArgs { op: "HPUB" }
    );
}

#[test]
fn pub_argument_errors_close_silently() {
    for bad in [
        &b"PUB a b c 1\r\n"[..],
        b"PUB a xx\r\n",
        b"PUB a\r\n",
        b"PUB \r\n",
        b"PUB a -1\r\n",
        b"PUB a 1000000000\r\n",
    ] {
        let e = err(bad);
        assert_eq!(
            e,
            ProtoError::InvalidArgs { op: "PUB" },
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(e.err_text(), None);
    }
}

#[test]
fn payload_must_be_followed_by_crlf() {
    // Wrong byte count: -ERR 'Unknown Protocol Operation'.
    let e = err(b"PUB foo 1\r\nxyz\r\n");
    assert_eq!(e, ProtoError::MissingCrlf);
    assert_eq!(e.err_text(), Some("Unknown Protocol Operation"));
    assert_eq!(err(b"PUB foo 2\r\nhi\n"), ProtoError::MissingCrlf);
    assert_eq!(err(b"PUB foo 2\r\nhi\rx"), ProtoError::MissingCrlf);
    // Detected as soon as the wrong byte is there.
    assert_eq!(err(b"PUB foo 2\r\nhix"), ProtoError::MissingCrlf);
    assert_eq!(parse(b"PUB foo 2\r\nhi\r"), Ok(None));
    // Too few bytes: the server keeps waiting.
    assert_eq!(parse(b"PUB foo 10\r\nab\r\nPING\r\n"), Ok(None));
}

#[test]
fn sub_and_unsub() {
    assert_eq!(
        op(b"SUB foo 1\r\n"),
        ClientOp::Sub {
            subject: b"foo",
            queue: None,
            sid: b"1"
        }
    );
    assert_eq!(
        op(b"SUB\tfoo\t\t7\r\n"),
        ClientOp::Sub {
            subject: b"foo",
            queue: None,
            sid: b"7"
        }
    );
    assert_eq!(
        op(b"sub foo.> q.x 2\n"),
        ClientOp::Sub {
            subject: b"foo.>",
            queue: Some(b"q.x"),
            sid: b"2"
        }
    );
    assert_eq!(
        op(b"SUB foo > 3\r\n"),
        ClientOp::Sub {
            subject: b"foo",
            queue: Some(b">"),
            sid: b"3"
        }
    );
    assert_eq!(err(b"SUB  1\r\n"), ProtoError::InvalidArgs { op: "SUB" });
    assert_eq!(
        err(b"SUB a b c d\r\n"),
        ProtoError::InvalidArgs { op: "SUB" }
    );

    assert_eq!(
        op(b"UNSUB 1\r\n"),
        ClientOp::Unsub {
            sid: b"1",
            max: None
        }
    );
    assert_eq!(
        op(b"unsub 1 2\r\n"),
        ClientOp::Unsub {
            sid: b"1",
            max: Some(2)
        }
    );
    assert_eq!(
        op(b"UNSUB 1 0\r\n"),
        ClientOp::Unsub {
            sid: b"1",
            max: Some(0)
        }
    );
    // An unparsable max is a plain unsubscribe, as in nats-server.
    assert_eq!(
        op(b"UNSUB 1 abc\r\n"),
        ClientOp::Unsub {
            sid: b"1",
            max: None
        }
    );
    assert_eq!(err(b"UNSUB\t\r\n"), ProtoError::InvalidArgs { op: "UNSUB" });
    assert_eq!(
        err(b"UNSUB 1 2 3\r\n"),
        ProtoError::InvalidArgs { op: "UNSUB" }
    );
}

#[test]
fn control_ops() {
    assert_eq!(op(b"PING\r\n"), ClientOp::Ping);
    assert_eq!(op(b"PING\n"), ClientOp::Ping);
    assert_eq!(op(b"ping \r\n"), ClientOp::Ping);
    assert_eq!(op(b"PONG\r\n"), ClientOp::Pong);
    assert_eq!(op(b"+OK\r\n"), ClientOp::Ok);
    assert_eq!(op(b"+ok\n"), ClientOp::Ok);
    assert_eq!(
        op(b"CONNECT {\"verbose\":false} \r\n"),
        ClientOp::Connect(b"{\"verbose\":false}")
    );
    assert_eq!(op(b"connect\t{}\n"), ClientOp::Connect(b"{}"));
    assert_eq!(op(b"INFO {}\r\n"), ClientOp::Info(b"{}"));
    assert_eq!(op(b"-ERR 'x'\r\n"), ClientOp::Err(b"'x'"));
    // As nats-server: PING, PONG and +OK are recognised by their first bytes (the rest of the
    // line is ignored), and CONNECT/INFO take whatever follows as their argument (the JSON
    // then fails to parse: silent close).
    assert_eq!(op(b"PINGX\r\n"), ClientOp::Ping);
    assert_eq!(op(b"pingpong\r\n"), ClientOp::Ping);
    assert_eq!(op(b"PONGX\r\n"), ClientOp::Pong);
    assert_eq!(op(b"+OKAY\r\n"), ClientOp::Ok);
    assert_eq!(op(b"CONNECT\r\n"), ClientOp::Connect(b""));
    assert_eq!(op(b"CONNECTX {}\r\n"), ClientOp::Connect(b"X {}"));
    assert_eq!(op(b"INFO\r\n"), ClientOp::Info(b""));
}

#[test]
fn unknown_operations() {
    for bad in [
        &b"FOO\r\n"[..],
        b"MSG foo 1 1\r\nx\r\n",
        b"HMSG foo 1 0 0\r\n\r\n",
        b"PUBX foo 1\r\n",
        b"PUB\r\n",
        b"-ERRX\r\n",
        b"\r\n",
        b" PING\r\n",
        b"RS+ $G foo\r\n",
        b"X",
        b"PX",
    ] {
        let e = err(bad);
        assert_eq!(
            e,
            ProtoError::UnknownOp,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(e.err_text(), Some("Unknown Protocol Operation"));
    }
    // Valid prefixes wait for more.
    for partial in [
        &b""[..],
        b"P",
        b"pu",
        b"PUB",
        b"PUB ",
        b"PUB foo",
        b"CONNEC",
        b"+O",
        b"-ER",
        b"UNSUB 1",
    ] {
        assert_eq!(
            parse(partial),
            Ok(None),
            "{:?}",
            String::from_utf8_lossy(partial)
        );
    }
}

#[test]
fn max_payload_is_checked_on_the_control_line() {
    let limits = Limits {
        max_control_line: 4096,
        max_payload: 8,
    };
    let mut p = ClientParser::new(limits);
    assert!(p.parse(b"PUB foo 8\r\n12345678\r\n").unwrap().is_some());
    let e = p.parse(b"PUB foo 9\r\n").unwrap_err();
    assert_eq!(e, ProtoError::MaxPayload { size: 9, max: 8 });
    assert_eq!(e.err_text(), Some("Maximum Payload Violation"));
    assert_eq!(
        p.parse(b"HPUB foo 2 9\r\n").unwrap_err(),
        ProtoError::MaxPayload { size: 9, max: 8 }
    );
    assert_eq!(
        p.parse(b"PUB foo r 1048577\r\n").unwrap_err(),
        ProtoError::MaxPayload {
            size: 1_048_577,
            max: 8
        }
    );
    p.set_limits(Limits::default());
    assert_eq!(p.parse(b"PUB foo 9\r\n"), Ok(None));
    assert_eq!(p.frame_len_hint(), Some(11 + 9 + 2));
    assert_eq!(
        p.parse(b"PUB foo 1048577\r\n").unwrap_err(),
        ProtoError::MaxPayload {
            size: 1_048_577,
            max: 1_048_576
        }
    );
}

#[test]
fn max_control_line() {
    let mut p = ClientParser::new(Limits {
        max_control_line: 16,
        max_payload: 1024,
    });
    // The limit applies to the arguments (after the verb and its blanks), as in nats-server.
    assert!(p.parse(b"SUB 0123456789abcd 1\r\n").unwrap().is_some());
    let e = p.parse(b"SUB 0123456789abcde 1\r\n").unwrap_err();
    assert_eq!(e, ProtoError::MaxControlLine);
    assert_eq!(e.err_text(), Some("maximum control line exceeded"));
    // Reported before the line is complete.
    assert_eq!(
        p.parse(b"SUB 0123456789abcde 1"),
        Err(ProtoError::MaxControlLine)
    );
    assert_eq!(p.parse(b"SUB 0123456789abcd 1\r"), Ok(None));
    assert_eq!(
        p.parse(b"CONNECT {\"verbose\":false}\r\n"),
        Err(ProtoError::MaxControlLine)
    );

    // Default: 4096.
    let mut p = ClientParser::default();
    let mut line = b"SUB ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 4094));
    line.extend_from_slice(b" 1\r\n");
    assert!(p.parse(&line).unwrap().is_some());
    line.insert(5, b'a');
    assert_eq!(p.parse(&line), Err(ProtoError::MaxControlLine));
    // A line without an end never grows past the limit.
    assert_eq!(
        p.parse(&[b'P', b'U', b'B', b' '].repeat(2000)),
        Err(ProtoError::MaxControlLine)
    );
    let mut junk = b"PING ".to_vec();
    junk.extend(std::iter::repeat_n(b'x', 5000));
    assert_eq!(p.parse(&junk), Err(ProtoError::MaxControlLine));
}

#[test]
fn frame_len_hint() {
    let mut p = ClientParser::default();
    assert_eq!(p.parse(b"PUB foo 100\r\nabc"), Ok(None));
    assert_eq!(p.frame_len_hint(), Some(13 + 100 + 2));
    assert_eq!(p.parse(b"PUB foo 10"), Ok(None));
    assert_eq!(p.frame_len_hint(), None);
    assert_eq!(p.parse(b"HPUB foo 12 14\r\n"), Ok(None));
    assert_eq!(p.frame_len_hint(), Some(16 + 14 + 2));
    assert!(p.parse(b"PING\r\n").unwrap().is_some());
    assert_eq!(p.frame_len_hint(), None);
}

#[test]
fn decode_is_zero_copy() {
    let mut p = ClientParser::default();
    let mut buf =
        BytesMut::from(&b"PUB foo reply 5\r\nhello\r\nSUB foo q 1\r\nPING\r\nPUB x 3\r\nab"[..]);
    let base = buf.as_ptr() as usize;
    let end = base + buf.len();
    let Some(OwnedClientOp::Pub(OwnedPublish {
        subject,
        reply,
        header_len,
        data,
    })) = p.decode(&mut buf).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (&subject[..], reply.as_deref(), header_len, &data[..]),
        (&b"foo"[..], Some(&b"reply"[..]), None, &b"hello"[..])
    );
    let ptr = data.as_ptr() as usize;
    assert!(
        ptr >= base && ptr + data.len() <= end,
        "payload shares the read buffer"
    );
    assert_eq!(
        p.decode(&mut buf).unwrap(),
        Some(OwnedClientOp::Sub {
            subject: Bytes::from_static(b"foo"),
            queue: Some(Bytes::from_static(b"q")),
            sid: Bytes::from_static(b"1")
        })
    );
    assert_eq!(p.decode(&mut buf).unwrap(), Some(OwnedClientOp::Ping));
    assert_eq!(p.decode(&mut buf).unwrap(), None);
    assert_eq!(&buf[..], b"PUB x 3\r\nab");
    buf.extend_from_slice(b"c\r\n");
    assert!(matches!(
        p.decode(&mut buf).unwrap(),
        Some(OwnedClientOp::Pub(_))
    ));
    assert!(buf.is_empty());
}

#[test]
fn many_ops_in_one_buffer() {
    let input = b"CONNECT {}\r\nSUB foo 1\r\nPUB foo 5\r\nhello\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nUNSUB 1 2\r\nPING\r\n";
    let mut p = ClientParser::default();
    let mut at = 0;
    let mut ops = Vec::new();
    while let Some((op, n)) = p.parse(&input[at..]).unwrap() {
        ops.push(format!("{op:?}"));
        at += n;
    }
    assert_eq!(at, input.len());
    assert_eq!(ops.len(), 6);
}

/// What nats-server 2.9.10 did with each input (probed on loopback after
/// `CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}`): `Ok(op)` when it
/// accepted an op, `Err(Some(text))` when it sent `-ERR 'text'` and closed, `Err(None)` when it
/// closed silently. The parser (plus `Connect::from_json` for CONNECT) must lead to the same.
#[test]
fn golden_edge_cases_from_nats_server_2_9_10() {
    use starling_proto::Connect;
    /// `Ok(op)`, or `Err(-ERR text or None for a silent close)`.
    type Outcome = Result<&'static str, Option<&'static str>>;
    let cases: &[(&[u8], Outcome)] = &[
        (b"\r\n", Err(Some("Unknown Protocol Operation"))),
        (b"PINGX\r\n", Ok("Ping")),
        (b"pingpong\r\n", Ok("Ping")),
        (b"PING foo\r\n", Ok("Ping")),
        (b"PONGX\r\n", Ok("Pong")),
        (b"+OKAY\r\n", Ok("Ok")),
        (b"+OKX\r\n", Ok("Ok")),
        (b"PUB foo 0000000005\r\n", Err(None)),
        (b"PUB foo 1234567890\r\n", Err(None)),
        (b"PUB foo\r\n", Err(None)),
        (b"PUB\r\n", Err(Some("Unknown Protocol Operation"))),
        (b"SUB\r\n", Err(Some("Unknown Protocol Operation"))),
        (b"UNSUB\r\n", Err(Some("Unknown Protocol Operation"))),
        (b"HPUB\r\n", Err(Some("Unknown Protocol Operation"))),
        (b"PUBX foo 1\r\n", Err(Some("Unknown Protocol Operation"))),
        (b"RS+ $G foo\r\n", Err(Some("Unknown Protocol Operation"))),
        (b" PING\r\n", Err(Some("Unknown Protocol Operation"))),
        (b"-ERR\r\n", Err(Some("Unknown Protocol Operation"))),
        (b"-ERRX\r\n", Err(Some("Unknown Protocol Operation"))),
        (b"-ERR 'x'\r\n", Ok("Err")),
        (b"CONNECT\r\n", Err(None)),
        (b"CONNECTX {}\r\n", Err(None)),
        (b"UNSUB 1 abc\r\n", Ok("Unsub { sid: [49], max: None }")),
        (b"PUB\tfoo\t1\r\nx\r\n", Ok("Pub")),
        (b"PUB foo 1 \r\nx\r\n", Ok("Pub")),
        (
            b"PUB foo 2\r\nhi\r\r\n",
            Err(Some("Unknown Protocol Operation")),
        ),
        (
            b"PUB foo 1\r\nxyz\r\n",
            Err(Some("Unknown Protocol Operation")),
        ),
        (b"PUB a b c 1\r\n", Err(None)),
        (b"PUB a xx\r\n", Err(None)),
        (b"SUB  1\r\n", Err(None)),
        (
            b"MSG foo 1 1\r\nx\r\n",
            Err(Some("Unknown Protocol Operation")),
        ),
    ];
    for (input, want) in cases {
        let got = match parse(input) {
            Ok(Some((ClientOp::Connect(json), _))) => match Connect::from_json(json) {
                Ok(_) => Ok("Connect".to_string()),
                Err(e) => Err(e.err_text()),
            },
            Ok(Some((op, _))) => Ok(format!("{op:?}")),
            Ok(None) => panic!("incomplete: {:?}", String::from_utf8_lossy(input)),
            Err(e) => Err(e.err_text()),
        };
        match (want, &got) {
            (Ok(w), Ok(g)) => assert!(
                g.starts_with(w),
                "{:?}: {g} vs {w}",
                String::from_utf8_lossy(input)
            ),
            (Err(w), Err(g)) => assert_eq!(w, g, "{:?}", String::from_utf8_lossy(input)),
            _ => panic!(
                "{:?}: got {got:?}, nats-server {want:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }
}
