//! The client protocol as a client parses it (what servers send), and the encoders of the
//! client protocol, against lines captured from nats-server.

use bytes::BytesMut;
use starling_proto::encode::{self, OK, PING, PONG};
use starling_proto::{Limits, Message, OwnedServerOp, ProtoError, ServerOp, ServerParser};

fn op(input: &[u8]) -> ServerOp<'_> {
    let (op, n) = ServerParser::default()
        .parse(input)
        .expect("parses")
        .expect("complete");
    assert_eq!(n, input.len());
    op
}

fn msg<'a>(
    subject: &'a [u8],
    sid: &'a [u8],
    reply: Option<&'a [u8]>,
    header_len: Option<usize>,
    data: &'a [u8],
) -> ServerOp<'a> {
    ServerOp::Msg(Message {
        subject,
        sid,
        reply,
        header_len,
        data,
    })
}

#[test]
fn messages() {
    assert_eq!(
        op(b"MSG foo 1 5\r\nhello\r\n"),
        msg(b"foo", b"1", None, None, b"hello")
    );
    assert_eq!(
        op(b"MSG foo 1 bar.* 1\r\nx\r\n"),
        msg(b"foo", b"1", Some(b"bar.*"), None, b"x")
    );
    assert_eq!(
        op(b"MSG foo.bar 2 0\r\n\r\n"),
        msg(b"foo.bar", b"2", None, None, b"")
    );
    assert_eq!(
        op(b"HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
        msg(b"foo", b"1", None, Some(12), b"NATS/1.0\r\n\r\nhi")
    );
    // No-responders as 2.9.10 and 2.15.1 send it.
    let ServerOp::Msg(m) = op(b"HMSG reply.1 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n") else {
        panic!()
    };
    assert_eq!(
        (m.subject, m.sid, m.headers(), m.payload()),
        (
            &b"reply.1"[..],
            &b"9"[..],
            Some(&b"NATS/1.0 503\r\n\r\n"[..]),
            &b""[..]
        )
    );
    let ServerOp::Msg(m) =
        op(b"HMSG reply.1 9 38 38\r\nNATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n\r\n")
    else {
        panic!()
    };
    assert_eq!(m.header_len, Some(38));
    assert_eq!(
        op(b"HMSG _INBOX.1 9 r 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"),
        msg(
            b"_INBOX.1",
            b"9",
            Some(b"r"),
            Some(16),
            b"NATS/1.0 503\r\n\r\n"
        )
    );
}

#[test]
fn control_ops() {
    assert_eq!(op(b"PING\r\n"), ServerOp::Ping);
    assert_eq!(op(b"PONG\r\n"), ServerOp::Pong);
    assert_eq!(op(b"+OK\r\n"), ServerOp::Ok);
    assert_eq!(
        op(b"-ERR 'Unknown Protocol Operation'\r\n"),
        ServerOp::Err(b"Unknown Protocol Operation")
    );
    assert_eq!(
        op(b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n"),
        ServerOp::Err(b"Permissions Violation for Publish to \"x\"")
    );
    assert_eq!(op(b"-ERR unquoted\r\n"), ServerOp::Err(b"unquoted"));
    assert_eq!(
        op(b"INFO {\"server_id\":\"x\"} \r\n"),
        ServerOp::Info(b"{\"server_id\":\"x\"}")
    );
}

#[test]
fn errors() {
    let mut p = ServerParser::new(Limits {
        max_control_line: 4096,
        max_payload: 4,
    });
    assert_eq!(
        p.parse(b"MSG foo 1 5\r\n"),
        Err(ProtoError::MaxPayload { size: 5, max: 4 })
    );
    assert_eq!(
        p.parse(b"MSG foo 5\r\n"),
        Err(ProtoError::InvalidArgs { op: "MSG" })
    );
    assert_eq!(
        p.parse(b"MSG a b c d 5\r\n"),
        Err(ProtoError::InvalidArgs { op: "MSG" })
    );
    assert_eq!(p.parse(b"HMSG foo 1 3 2\r\n"), Err(ProtoError::HeaderSize));
    assert_eq!(
        p.parse(b"HMSG foo 1 2\r\n"),
        Err(ProtoError::InvalidArgs { op: "HMSG" })
    );
    assert_eq!(p.parse(b"MSG foo 1 2\r\nabc"), Err(ProtoError::MissingCrlf));
    assert_eq!(p.parse(b"PUB foo 1\r\n"), Err(ProtoError::UnknownOp));
    assert_eq!(p.parse(b"MSG foo 1 2\r\na"), Ok(None));
    assert_eq!(p.frame_len_hint(), Some(13 + 2 + 2));
    // A long INFO (many connect_urls) is fine even with the default 4096 limit.
    let mut info = b"INFO {\"connect_urls\":[".to_vec();
    for i in 0..500 {
        info.extend_from_slice(format!("\"10.0.{}.{}:4222\",", i / 256, i % 256).as_bytes());
    }
    info.extend_from_slice(b"\"x:1\"]} \r\n");
    assert!(info.len() > 4096);
    assert!(ServerParser::default().parse(&info).unwrap().is_some());
}

#[test]
fn decode_owned() {
    let mut p = ServerParser::default();
    let mut buf = BytesMut::from(&b"INFO {} \r\nMSG a 1 r 2\r\nhi\r\nPING\r\n"[..]);
    assert_eq!(
        p.decode(&mut buf).unwrap(),
        Some(OwnedServerOp::Info("{}".into()))
    );
    let Some(OwnedServerOp::Msg(m)) = p.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(
        (&m.subject[..], &m.sid[..], m.reply.as_deref(), &m.data[..]),
        (&b"a"[..], &b"1"[..], Some(&b"r"[..]), &b"hi"[..])
    );
    assert_eq!(p.decode(&mut buf).unwrap(), Some(OwnedServerOp::Ping));
    assert_eq!(p.decode(&mut buf).unwrap(), None);
}

#[test]
fn encoders_match_nats_server_bytes() {
    let mut b = BytesMut::new();
    encode::write_msg(&mut b, b"foo", b"1", None, 5);
    encode::write_msg(&mut b, b"foo", b"1", Some(b"r.2"), 5);
    encode::write_hmsg(&mut b, b"foo", b"1", None, 12, 14);
    encode::write_hmsg(&mut b, b"reply.1", b"9", Some(b"x"), 16, 16);
    encode::write_pub(&mut b, b"foo", None, 0);
    encode::write_pub(&mut b, b"foo", Some(b"_INBOX.1"), 2);
    encode::write_hpub(&mut b, b"foo", None, 12, 14);
    encode::write_hpub(&mut b, b"foo", Some(b"r"), 12, 14);
    encode::write_sub(&mut b, b"foo", None, b"1");
    encode::write_sub(&mut b, b"foo", Some(b"q1"), b"2");
    encode::write_unsub(&mut b, b"1", None);
    encode::write_unsub(&mut b, b"1", Some(2));
    encode::write_err(&mut b, "maximum control line exceeded");
    encode::write_err(&mut b, b"Invalid Subject");
    b.extend_from_slice(PING);
    b.extend_from_slice(PONG);
    b.extend_from_slice(OK);
    let want: &[u8] = b"MSG foo 1 5\r\nMSG foo 1 r.2 5\r\nHMSG foo 1 12 14\r\nHMSG reply.1 9 x 16 16\r\n\
PUB foo 0\r\nPUB foo _INBOX.1 2\r\nHPUB foo 12 14\r\nHPUB foo r 12 14\r\nSUB foo 1\r\nSUB foo q1 2\r\n\
UNSUB 1\r\nUNSUB 1 2\r\n-ERR 'maximum control line exceeded'\r\n-ERR 'Invalid Subject'\r\nPING\r\nPONG\r\n+OK\r\n";
    assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(want));
}

/// The verbose + pedantic session of nats-protocol.md §1.4, as the client sees the server.
#[test]
fn golden_verbose_session_from_server() {
    let wire = b"+OK\r\n+OK\r\nMSG foo 1 5\r\nhello\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\n-ERR 'Invalid Subject'\r\n\
+OK\r\nHMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n+OK\r\n-ERR 'Unknown Protocol Operation'\r\n";
    let mut p = ServerParser::default();
    let mut at = 0;
    let mut ops = Vec::new();
    while let Some((op, n)) = p.parse(&wire[at..]).unwrap() {
        ops.push(op);
        at += n;
    }
    assert_eq!(at, wire.len());
    assert_eq!(
        ops,
        vec![
            ServerOp::Ok,
            ServerOp::Ok,
            msg(b"foo", b"1", None, None, b"hello"),
            ServerOp::Err(b"Invalid Publish Subject"),
            ServerOp::Ok,
            ServerOp::Err(b"Invalid Subject"),
            ServerOp::Ok,
            msg(b"foo", b"1", None, Some(12), b"NATS/1.0\r\n\r\nhi"),
            ServerOp::Ok,
            ServerOp::Err(b"Unknown Protocol Operation"),
        ]
    );
}
