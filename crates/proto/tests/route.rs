//! The route and leafnode protocols, against the transcripts of nats-protocol.md (§2.2, §2.3,
//! §2.6, part 2 §3.2 and §5).

use bytes::BytesMut;
use starling_proto::{
    encode, LeafParser, Limits, ProtoError, QueueNames, RemoteSub, RouteOp, RouteParser,
    RoutedMessage,
};

fn route(input: &[u8]) -> RouteOp<'_> {
    let (op, n) = RouteParser::new(Limits::default())
        .parse(input)
        .expect("parses")
        .expect("complete");
    assert_eq!(n, input.len(), "{:?}", String::from_utf8_lossy(input));
    op
}

fn leaf(input: &[u8]) -> RouteOp<'_> {
    let (op, n) = LeafParser::new(Limits::default())
        .parse(input)
        .expect("parses")
        .expect("complete");
    assert_eq!(n, input.len(), "{:?}", String::from_utf8_lossy(input));
    op
}

fn sub<'a>(
    origin: Option<&'a [u8]>,
    account: &'a [u8],
    subject: &'a [u8],
    queue: Option<&'a [u8]>,
    weight: u32,
) -> RemoteSub<'a> {
    RemoteSub {
        origin,
        account,
        subject,
        queue,
        weight,
    }
}

fn queues<'a>(m: &RoutedMessage<'a>) -> Vec<&'a [u8]> {
    m.queues.iter().collect()
}

fn msg(op: RouteOp<'_>) -> RoutedMessage<'_> {
    match op {
        RouteOp::Msg(m) => m,
        other => panic!("not a message: {other:?}"),
    }
}

#[test]
fn interest() {
    assert_eq!(
        route(b"RS+ $G foo\r\n"),
        RouteOp::Sub(sub(None, b"$G", b"foo", None, 1))
    );
    assert_eq!(
        route(b"RS+ $G foo q1 1\r\n"),
        RouteOp::Sub(sub(None, b"$G", b"foo", Some(b"q1"), 1))
    );
    assert_eq!(
        route(b"RS+ $G bar.> q1 12\r\n"),
        RouteOp::Sub(sub(None, b"$G", b"bar.>", Some(b"q1"), 12))
    );
    assert_eq!(
        route(b"rs+ $G bar.* q1\r\n"),
        RouteOp::Sub(sub(None, b"$G", b"bar.*", Some(b"q1"), 1))
    );
    assert_eq!(
        route(b"RS- $G foo q1\r\n"),
        RouteOp::Unsub(sub(None, b"$G", b"foo", Some(b"q1"), 1))
    );
    assert_eq!(
        route(b"RS- $G foo q1 5\r\n"),
        RouteOp::Unsub(sub(None, b"$G", b"foo", Some(b"q1"), 1))
    );
    assert_eq!(
        route(b"RS- $SYS $SYS.REQ.SERVER.PING.VARZ\r\n"),
        RouteOp::Unsub(sub(None, b"$SYS", b"$SYS.REQ.SERVER.PING.VARZ", None, 1))
    );
    assert_eq!(
        route(b"LS+ hub $G foo q 3\r\n"),
        RouteOp::Sub(sub(Some(b"hub"), b"$G", b"foo", Some(b"q"), 3))
    );
    assert_eq!(
        route(b"LS+ hub $G foo\r\n"),
        RouteOp::Sub(sub(Some(b"hub"), b"$G", b"foo", None, 1))
    );
    // LS- is 2.9-style (no origin) unless lnocu was negotiated.
    assert_eq!(
        route(b"LS- $G foo q\r\n"),
        RouteOp::Unsub(sub(None, b"$G", b"foo", Some(b"q"), 1))
    );
    let mut p = RouteParser::new(Limits::default());
    p.set_lnocu(true);
    assert_eq!(
        p.parse(b"LS- hub $G foo q\r\n").unwrap().unwrap().0,
        RouteOp::Unsub(sub(Some(b"hub"), b"$G", b"foo", Some(b"q"), 1))
    );

    let mut p = RouteParser::new(Limits::default());
    for bad in [
        &b"RS+ $G\r\n"[..],
        b"RS+ $G foo q x\r\n",
        b"RS+ $G foo q 1 2\r\n",
        b"RS+ $G foo q 99999999999\r\n",
        b"RS-  $G \r\n",
        b"LS+ o $G\r\n",
    ] {
        assert!(
            matches!(p.parse(bad), Err(ProtoError::InvalidArgs { .. })),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn routed_messages() {
    let m = msg(route(b"RMSG $G foo rep.1 2\r\nhi\r\n"));
    assert_eq!(
        (m.account, m.subject, m.reply, m.header_len, m.data),
        (
            &b"$G"[..],
            &b"foo"[..],
            Some(&b"rep.1"[..]),
            None,
            &b"hi"[..]
        )
    );
    assert!(m.queues.is_empty());

    let m = msg(route(b"RMSG $G foo + rep.1 q1 2\r\nhi\r\n"));
    assert_eq!(
        (m.reply, queues(&m)),
        (Some(&b"rep.1"[..]), vec![&b"q1"[..]])
    );

    let m = msg(route(b"RMSG $G foo | q1 1\r\nx\r\n"));
    assert_eq!((m.reply, queues(&m)), (None, vec![&b"q1"[..]]));

    let m = msg(route(b"RMSG $G foo | q1 q2\tq3 1\r\nx\r\n"));
    assert_eq!(queues(&m), vec![&b"q1"[..], b"q2", b"q3"]);
    assert_eq!(m.queues.as_bytes(), b"q1 q2\tq3");

    let m = msg(route(b"RMSG $G foo 1\r\nx\r\n"));
    assert_eq!(
        (m.reply, m.queues, m.data),
        (None, QueueNames::default(), &b"x"[..])
    );

    // Queue lists compare by their names, not by the blanks between them (fuzz regression).
    assert_eq!(
        QueueNames::new(b"$G  rofoep.1"),
        QueueNames::new(b"$G rofoep.1")
    );
    assert_ne!(QueueNames::new(b"a b"), QueueNames::new(b"a"));

    // "+ reply" with no queue names.
    let m = msg(route(b"RMSG $G foo + r 1\r\nx\r\n"));
    assert_eq!((m.reply, m.queues.is_empty()), (Some(&b"r"[..]), true));

    let m = msg(route(
        b"HMSG $G bar.x | q1 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nyo\r\n",
    ));
    assert_eq!(
        (m.subject, m.header_len, m.payload(), queues(&m)),
        (&b"bar.x"[..], Some(18), &b"yo"[..], vec![&b"q1"[..]])
    );
    assert_eq!(m.headers(), Some(&b"NATS/1.0\r\nK: v\r\n\r\n"[..]));

    let m = msg(route(b"HMSG $G foo 12 14\r\nNATS/1.0\r\n\r\nhh\r\n"));
    assert_eq!((m.reply, m.header_len), (None, Some(12)));

    // LMSG always carries a header size; 0 means none.
    let m = msg(route(b"LMSG spoke $G foo + r.1 q1 0 2\r\nhi\r\n"));
    assert_eq!(
        (m.origin, m.account, m.reply, m.header_len, queues(&m)),
        (
            Some(&b"spoke"[..]),
            &b"$G"[..],
            Some(&b"r.1"[..]),
            None,
            vec![&b"q1"[..]]
        )
    );
    let m = msg(route(b"LMSG spoke $G foo 12 14\r\nNATS/1.0\r\n\r\nho\r\n"));
    assert_eq!(m.header_len, Some(12));

    let mut p = RouteParser::new(Limits::default());
    for bad in [
        &b"RMSG $G foo\r\n"[..],
        b"RMSG $G foo x y 1\r\n",
        b"RMSG $G 1\r\n",
        b"HMSG $G foo 1\r\n",
        b"RMSG $G foo bar\r\n",
    ] {
        assert!(
            matches!(p.parse(bad), Err(ProtoError::InvalidArgs { .. })),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(p.parse(b"HMSG $G foo 3 2\r\n"), Err(ProtoError::HeaderSize));
    assert_eq!(
        p.parse(b"RMSG $G foo 1\r\nxy"),
        Err(ProtoError::MissingCrlf)
    );
    assert_eq!(
        p.parse(b"RMSG $G foo 2000000\r\n"),
        Err(ProtoError::MaxPayload {
            size: 2_000_000,
            max: 1_048_576
        })
    );
    assert_eq!(p.parse(b"RMSG $G foo 5\r\nab"), Ok(None));
    assert_eq!(p.frame_len_hint(), Some(15 + 5 + 2));
    assert_eq!(p.parse(b"MSG foo 1 1\r\nx\r\n"), Err(ProtoError::UnknownOp));
    assert_eq!(p.parse(b"PUB foo 1\r\nx\r\n"), Err(ProtoError::UnknownOp));
}

#[test]
fn routes_are_exempt_from_max_control_line() {
    let mut line = b"RMSG $G foo |".to_vec();
    for i in 0..2000 {
        line.extend_from_slice(format!(" queue{i}").as_bytes());
    }
    line.extend_from_slice(b" 1\r\nx\r\n");
    assert!(line.len() > 4096);
    let m = msg(route(&line));
    assert_eq!(m.queues.iter().count(), 2000);
    // Still bounded.
    let mut p = RouteParser::new(Limits::default());
    let huge = [b"RS+ $G ".as_slice(), &[b'a'; 70 * 1024]].concat();
    assert_eq!(p.parse(&huge), Err(ProtoError::MaxControlLine));
}

#[test]
fn control_ops() {
    assert_eq!(route(b"PING\r\n"), RouteOp::Ping);
    assert_eq!(route(b"PONG\r\n"), RouteOp::Pong);
    assert_eq!(route(b"+OK\r\n"), RouteOp::Ok);
    assert_eq!(
        route(b"-ERR 'Not possible to have a dedicated route for account \"$SYS\" between those servers'\r\n"),
        RouteOp::Err(b"Not possible to have a dedicated route for account \"$SYS\" between those servers")
    );
    assert_eq!(
        route(b"CONNECT {\"echo\":true}\r\n"),
        RouteOp::Connect(b"{\"echo\":true}")
    );
    assert_eq!(
        route(b"INFO {\"server_id\":\"N\"}\r\n"),
        RouteOp::Info(b"{\"server_id\":\"N\"}")
    );
}

/// The 2.9.10 hub/spoke leafnode transcript of part 2 §5.
#[test]
fn leaf_transcript() {
    assert_eq!(
        leaf(b"LS+ foo\r\n"),
        RouteOp::Sub(sub(None, b"", b"foo", None, 1))
    );
    assert_eq!(
        leaf(b"LS+ foo q1 2\r\n"),
        RouteOp::Sub(sub(None, b"", b"foo", Some(b"q1"), 2))
    );
    assert_eq!(
        leaf(b"LS+ $LDS.sdIlJXYZx25mqZRqaF0L0C\r\n"),
        RouteOp::Sub(sub(None, b"", b"$LDS.sdIlJXYZx25mqZRqaF0L0C", None, 1))
    );
    assert_eq!(
        leaf(b"LS+ bar.* qs 1\r\n"),
        RouteOp::Sub(sub(None, b"", b"bar.*", Some(b"qs"), 1))
    );
    assert_eq!(
        leaf(b"LS- bar\r\n"),
        RouteOp::Unsub(sub(None, b"", b"bar", None, 1))
    );
    let m = msg(leaf(b"LMSG foo + r.1 q1 2\r\nhi\r\n"));
    assert_eq!(
        (m.account, m.subject, m.reply, queues(&m), m.data),
        (
            &b""[..],
            &b"foo"[..],
            Some(&b"r.1"[..]),
            vec![&b"q1"[..]],
            &b"hi"[..]
        )
    );
    let m = msg(leaf(b"HMSG foo | q1 12 14\r\nNATS/1.0\r\n\r\nho\r\n"));
    assert_eq!(
        (m.reply, m.header_len, m.payload()),
        (None, Some(12), &b"ho"[..])
    );
    let m = msg(leaf(b"LMSG bar 1\r\nx\r\n"));
    assert_eq!((m.reply, m.header_len, m.data), (None, None, &b"x"[..]));
    let m = msg(leaf(b"LMSG bar.z + r.9 qs 1\r\ny\r\n"));
    assert_eq!((m.reply, queues(&m)), (Some(&b"r.9"[..]), vec![&b"qs"[..]]));
    assert_eq!(leaf(b"PING\r\n"), RouteOp::Ping);
    let mut p = LeafParser::new(Limits::default());
    assert_eq!(p.parse(b"RS+ $G foo\r\n"), Err(ProtoError::UnknownOp));
    assert_eq!(
        p.parse(b"RMSG $G foo 1\r\nx\r\n"),
        Err(ProtoError::UnknownOp)
    );
}

#[test]
fn encoders_match_nats_server_bytes() {
    let mut b = BytesMut::new();
    encode::write_rs_plus(&mut b, b"$G", b"foo", None);
    encode::write_rs_plus(&mut b, b"$G", b"foo", Some((b"q1", 1)));
    encode::write_rs_minus(&mut b, b"$G", b"foo", Some(b"q1"));
    encode::write_rs_minus(&mut b, b"$G", b"foo", None);
    encode::write_rmsg(&mut b, b"$G", b"foo", Some(b"rep.1"), &[], None, 2);
    encode::write_rmsg(&mut b, b"$G", b"foo", Some(b"rep.1"), &[b"q1"], None, 2);
    encode::write_rmsg(&mut b, b"$G", b"foo", None, &[b"q1"], None, 1);
    encode::write_rmsg(&mut b, b"$G", b"foo", None, &[], None, 1);
    encode::write_rmsg(&mut b, b"$G", b"bar.x", None, &[b"q1"], Some(18), 20);
    encode::write_rmsg(&mut b, b"$G", b"foo", None, &[], Some(12), 14);
    encode::write_rmsg(
        &mut b,
        b"$G",
        b"bar",
        Some(b"_INBOX.1"),
        &[b"qq", b"q2"],
        None,
        1,
    );
    encode::write_route_ls_plus(&mut b, b"spoke", b"$G", b"foo", Some((b"q", 2)));
    encode::write_route_ls_minus(&mut b, None, b"$G", b"foo", None);
    encode::write_route_ls_minus(&mut b, Some(b"spoke"), b"$G", b"foo", Some(b"q"));
    encode::write_route_lmsg(&mut b, b"spoke", b"$G", b"foo", None, &[], None, 2);
    encode::write_route_lmsg(
        &mut b,
        b"spoke",
        b"$G",
        b"foo",
        Some(b"r"),
        &[b"q"],
        Some(12),
        14,
    );
    encode::write_ls_plus(&mut b, b"foo", None);
    encode::write_ls_plus(&mut b, b"foo", Some((b"q1", 2)));
    encode::write_ls_minus(&mut b, b"bar", None);
    encode::write_lmsg(&mut b, b"foo", Some(b"r.1"), &[b"q1"], None, 2);
    encode::write_lmsg(&mut b, b"foo", None, &[b"q1"], Some(12), 14);
    encode::write_lmsg(&mut b, b"bar", None, &[], None, 1);
    let want: &[u8] = b"RS+ $G foo\r\nRS+ $G foo q1 1\r\nRS- $G foo q1\r\nRS- $G foo\r\n\
RMSG $G foo rep.1 2\r\nRMSG $G foo + rep.1 q1 2\r\nRMSG $G foo | q1 1\r\nRMSG $G foo 1\r\n\
HMSG $G bar.x | q1 18 20\r\nHMSG $G foo 12 14\r\nRMSG $G bar + _INBOX.1 qq q2 1\r\n\
LS+ spoke $G foo q 2\r\nLS- $G foo\r\nLS- spoke $G foo q\r\nLMSG spoke $G foo 0 2\r\nLMSG spoke $G foo + r q 12 14\r\n\
LS+ foo\r\nLS+ foo q1 2\r\nLS- bar\r\nLMSG foo + r.1 q1 2\r\nHMSG foo | q1 12 14\r\nLMSG bar 1\r\n";
    assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(want));
}
