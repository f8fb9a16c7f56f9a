//! Property tests: encode -> parse round trips for every op, split-point invariance, and
//! arbitrary bytes never panic any parser.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use starling_proto::{
    encode, ClientParser, Connect, HeaderMap, Info, LeafParser, Limits, OwnedClientOp,
    OwnedMessage, OwnedPublish, OwnedServerOp, ProtoError, RouteOp, RouteParser, ServerParser,
};

// ---------------------------------------------------------------- strategies

fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-zA-Z0-9_.$*>-]{1,12}".prop_map(String::into_bytes),
        // Any byte that is not a blank or a line end is part of a token.
        vec(
            any::<u8>().prop_filter("no blanks", |b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')),
            1..8
        ),
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..40),
        Just(b"\r\n".to_vec()),
        Just(Vec::new())
    ]
}

/// A header block (not validated by the parsers) and a payload: (header_len, data).
fn headered() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (vec(any::<u8>(), 0..30), payload()).prop_map(|(h, p)| (h.len(), [h, p].concat()))
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    proptest::option::of(s)
}

fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

// ---------------------------------------------------------------- client ops

fn client_op() -> impl Strategy<Value = OwnedClientOp> {
    prop_oneof![
        (token(), opt(token()), payload()).prop_map(|(s, r, d)| OwnedClientOp::Pub(OwnedPublish {
            subject: b(&s),
            reply: r.map(|r| b(&r)),
            header_len: None,
            data: b(&d)
        })),
        (token(), opt(token()), headered()).prop_map(|(s, r, (h, d))| OwnedClientOp::Pub(
            OwnedPublish {
                subject: b(&s),
                reply: r.map(|r| b(&r)),
                header_len: Some(h),
                data: b(&d)
            }
        )),
        (token(), opt(token()), token()).prop_map(|(s, q, sid)| OwnedClientOp::Sub {
            subject: b(&s),
            queue: q.map(|q| b(&q)),
            sid: b(&sid)
        }),
        (token(), opt(0u64..1_000_000_000))
            .prop_map(|(sid, max)| OwnedClientOp::Unsub { sid: b(&sid), max }),
        Just(OwnedClientOp::Ping),
        Just(OwnedClientOp::Pong),
        Just(OwnedClientOp::Ok),
        "\\{[a-z\":, 0-9]{0,20}\\}".prop_map(|j| OwnedClientOp::Connect(j.into())),
        "\\{[a-z\":, 0-9]{0,20}\\}".prop_map(|j| OwnedClientOp::Info(j.into())),
        "[a-zA-Z']([a-zA-Z' ]{0,20}[a-zA-Z'])?".prop_map(|t| OwnedClientOp::Err(t.into())),
    ]
}

fn encode_client(op: &OwnedClientOp, buf: &mut BytesMut) {
    match op {
        OwnedClientOp::Pub(p) => {
            match p.header_len {
                None => encode::write_pub(buf, &p.subject, p.reply.as_deref(), p.data.len()),
                Some(h) => encode::write_hpub(buf, &p.subject, p.reply.as_deref(), h, p.data.len()),
            }
            buf.extend_from_slice(&p.data);
            buf.extend_from_slice(encode::CRLF);
        }
        OwnedClientOp::Sub {
            subject,
            queue,
            sid,
        } => encode::write_sub(buf, subject, queue.as_deref(), sid),
        OwnedClientOp::Unsub { sid, max } => encode::write_unsub(buf, sid, *max),
        OwnedClientOp::Ping => buf.extend_from_slice(encode::PING),
        OwnedClientOp::Pong => buf.extend_from_slice(encode::PONG),
        OwnedClientOp::Ok => buf.extend_from_slice(encode::OK),
        OwnedClientOp::Connect(j) => {
            buf.extend_from_slice(b"CONNECT ");
            buf.extend_from_slice(j);
            buf.extend_from_slice(b"\r\n");
        }
        OwnedClientOp::Info(j) => {
            buf.extend_from_slice(b"INFO ");
            buf.extend_from_slice(j);
            buf.extend_from_slice(b" \r\n");
        }
        OwnedClientOp::Err(t) => {
            buf.extend_from_slice(b"-ERR ");
            buf.extend_from_slice(t);
            buf.extend_from_slice(b"\r\n");
        }
    }
}

// ---------------------------------------------------------------- server ops

fn server_op() -> impl Strategy<Value = OwnedServerOp> {
    prop_oneof![
        (token(), token(), opt(token()), payload()).prop_map(|(s, sid, r, d)| OwnedServerOp::Msg(
            OwnedMessage {
                subject: b(&s),
                sid: b(&sid),
                reply: r.map(|r| b(&r)),
                header_len: None,
                data: b(&d)
            }
        )),
        (token(), token(), opt(token()), headered()).prop_map(|(s, sid, r, (h, d))| {
            OwnedServerOp::Msg(OwnedMessage {
                subject: b(&s),
                sid: b(&sid),
                reply: r.map(|r| b(&r)),
                header_len: Some(h),
                data: b(&d),
            })
        }),
        Just(OwnedServerOp::Ping),
        Just(OwnedServerOp::Pong),
        Just(OwnedServerOp::Ok),
        "[a-zA-Z]([a-zA-Z \"]{0,20}[a-zA-Z\"])?".prop_map(|t| OwnedServerOp::Err(t.into())),
    ]
}

fn encode_server(op: &OwnedServerOp, buf: &mut BytesMut) {
    match op {
        OwnedServerOp::Msg(m) => {
            match m.header_len {
                None => {
                    encode::write_msg(buf, &m.subject, &m.sid, m.reply.as_deref(), m.data.len())
                }
                Some(h) => {
                    encode::write_hmsg(buf, &m.subject, &m.sid, m.reply.as_deref(), h, m.data.len())
                }
            }
            buf.extend_from_slice(&m.data);
            buf.extend_from_slice(encode::CRLF);
        }
        OwnedServerOp::Ping => buf.extend_from_slice(encode::PING),
        OwnedServerOp::Pong => buf.extend_from_slice(encode::PONG),
        OwnedServerOp::Ok => buf.extend_from_slice(encode::OK),
        OwnedServerOp::Err(t) => encode::write_err(buf, t),
        OwnedServerOp::Info(_) => unreachable!("not generated"),
    }
}

// ---------------------------------------------------------------- route and leaf ops

/// An owned, comparable route/leaf op.
#[derive(Debug, Clone, PartialEq, Eq)]
enum R {
    Sub {
        origin: Option<Vec<u8>>,
        account: Vec<u8>,
        subject: Vec<u8>,
        queue: Option<Vec<u8>>,
        weight: u32,
    },
    Unsub {
        origin: Option<Vec<u8>>,
        account: Vec<u8>,
        subject: Vec<u8>,
        queue: Option<Vec<u8>>,
    },
    Msg {
        origin: Option<Vec<u8>>,
        account: Vec<u8>,
        subject: Vec<u8>,
        reply: Option<Vec<u8>>,
        queues: Vec<Vec<u8>>,
        header_len: Option<usize>,
        data: Vec<u8>,
    },
    Ping,
    Pong,
}

impl R {
    fn from_op(op: RouteOp<'_>) -> Self {
        match op {
            RouteOp::Sub(s) => Self::Sub {
                origin: s.origin.map(<[u8]>::to_vec),
                account: s.account.to_vec(),
                subject: s.subject.to_vec(),
                queue: s.queue.map(<[u8]>::to_vec),
                weight: s.weight,
            },
            RouteOp::Unsub(s) => {
                assert_eq!(s.weight, 1);
                Self::Unsub {
                    origin: s.origin.map(<[u8]>::to_vec),
                    account: s.account.to_vec(),
                    subject: s.subject.to_vec(),
                    queue: s.queue.map(<[u8]>::to_vec),
                }
            }
            RouteOp::Msg(m) => Self::Msg {
                origin: m.origin.map(<[u8]>::to_vec),
                account: m.account.to_vec(),
                subject: m.subject.to_vec(),
                reply: m.reply.map(<[u8]>::to_vec),
                queues: m.queues.iter().map(<[u8]>::to_vec).collect(),
                header_len: m.header_len,
                data: m.data.to_vec(),
            },
            RouteOp::Ping => Self::Ping,
            RouteOp::Pong => Self::Pong,
            other => panic!("not generated: {other:?}"),
        }
    }
}

/// Route ops (`leaf = false`) or leafnode ops (`leaf = true`).
fn route_op(leaf: bool) -> impl Strategy<Value = R> {
    let account = move || {
        if leaf {
            Just(Vec::new()).boxed()
        } else {
            token().boxed()
        }
    };
    let origin = move || {
        if leaf {
            Just(None).boxed()
        } else {
            opt(token()).boxed()
        }
    };
    prop_oneof![
        (origin(), account(), token(), opt((token(), 0u32..100_000))).prop_map(
            |(origin, account, subject, q)| R::Sub {
                origin,
                account,
                subject,
                weight: q.as_ref().map_or(1, |q| q.1),
                queue: q.map(|q| q.0),
            }
        ),
        (origin(), account(), token(), opt(token())).prop_map(
            |(origin, account, subject, queue)| R::Unsub {
                origin,
                account,
                subject,
                queue
            }
        ),
        (
            origin(),
            account(),
            token(),
            opt(token()),
            vec(token(), 0..4),
            prop_oneof![
                payload().prop_map(|p| (None, p)),
                headered().prop_map(|(h, p)| (Some(h), p))
            ]
        )
            .prop_map(
                |(origin, account, subject, reply, queues, (header_len, data))| R::Msg {
                    origin,
                    account,
                    subject,
                    reply,
                    queues,
                    header_len,
                    data
                }
            ),
        Just(R::Ping),
        Just(R::Pong),
    ]
}

fn encode_route(op: &R, leaf: bool, lnocu: bool, buf: &mut BytesMut) {
    match op {
        R::Sub {
            origin,
            account,
            subject,
            queue,
            weight,
        } => {
            let q = queue.as_deref().map(|q| (q, *weight));
            match (leaf, origin) {
                (true, _) => encode::write_ls_plus(buf, subject, q),
                (false, Some(o)) => encode::write_route_ls_plus(buf, o, account, subject, q),
                (false, None) => encode::write_rs_plus(buf, account, subject, q),
            }
        }
        R::Unsub {
            origin,
            account,
            subject,
            queue,
        } => match (leaf, origin) {
            (true, _) => encode::write_ls_minus(buf, subject, queue.as_deref()),
            (false, Some(o)) => encode::write_route_ls_minus(
                buf,
                lnocu.then_some(o.as_slice()),
                account,
                subject,
                queue.as_deref(),
            ),
            (false, None) => encode::write_rs_minus(buf, account, subject, queue.as_deref()),
        },
        R::Msg {
            origin,
            account,
            subject,
            reply,
            queues,
            header_len,
            data,
        } => {
            let qs: Vec<&[u8]> = queues.iter().map(Vec::as_slice).collect();
            match (leaf, origin) {
                (true, _) => {
                    encode::write_lmsg(buf, subject, reply.as_deref(), &qs, *header_len, data.len())
                }
                (false, Some(o)) => encode::write_route_lmsg(
                    buf,
                    o,
                    account,
                    subject,
                    reply.as_deref(),
                    &qs,
                    *header_len,
                    data.len(),
                ),
                (false, None) => encode::write_rmsg(
                    buf,
                    account,
                    subject,
                    reply.as_deref(),
                    &qs,
                    *header_len,
                    data.len(),
                ),
            }
            buf.extend_from_slice(data);
            buf.extend_from_slice(encode::CRLF);
        }
        R::Ping => buf.extend_from_slice(encode::PING),
        R::Pong => buf.extend_from_slice(encode::PONG),
    }
}

/// What the parser gives back for a generated route op (what the wire cannot carry is lost).
fn expected_route(op: &R, leaf: bool, lnocu: bool) -> R {
    let mut op = op.clone();
    match &mut op {
        R::Unsub { origin, .. } if !lnocu || leaf => *origin = None,
        // LMSG on routes writes 0 for "no headers"; a 0-byte header block reads back as none.
        R::Msg {
            origin: Some(_),
            header_len,
            ..
        } if *header_len == Some(0) => *header_len = None,
        _ => {}
    }
    op
}

// ---------------------------------------------------------------- driving a parser

type Step<'p> = Box<dyn FnMut(&[u8]) -> Result<Option<(String, usize)>, ProtoError> + 'p>;

/// Feeds `input` cut at `cuts`, parsing as far as possible after each piece, and returns the
/// ops (as Debug text), the error that stopped it (if any) and, without an error, how many
/// bytes were left over (after an error the bytes buffered are whatever had arrived).
fn drive(
    input: &[u8],
    cuts: &[usize],
    mut step: Step<'_>,
) -> (Vec<String>, Option<ProtoError>, usize) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut at = 0;
    let mut ops = Vec::new();
    for p in points {
        buf.extend_from_slice(&input[fed..p]);
        fed = p;
        loop {
            match step(&buf[at..]) {
                Ok(Some((op, n))) => {
                    assert!(
                        n > 0 && n <= buf.len() - at,
                        "consumed {n} of {}",
                        buf.len() - at
                    );
                    ops.push(op);
                    at += n;
                }
                Ok(None) => break,
                Err(e) => return (ops, Some(e), 0),
            }
        }
    }
    (ops, None, buf.len() - at)
}

fn client_step(limits: Limits) -> Step<'static> {
    let mut p = ClientParser::new(limits);
    Box::new(move |b| p.parse(b).map(|o| o.map(|(op, n)| (format!("{op:?}"), n))))
}

fn server_step(limits: Limits) -> Step<'static> {
    let mut p = ServerParser::new(limits);
    Box::new(move |b| p.parse(b).map(|o| o.map(|(op, n)| (format!("{op:?}"), n))))
}

fn route_step(limits: Limits, lnocu: bool) -> Step<'static> {
    let mut p = RouteParser::new(limits);
    p.set_lnocu(lnocu);
    Box::new(move |b| p.parse(b).map(|o| o.map(|(op, n)| (format!("{op:?}"), n))))
}

fn leaf_step(limits: Limits) -> Step<'static> {
    let mut p = LeafParser::new(limits);
    Box::new(move |b| p.parse(b).map(|o| o.map(|(op, n)| (format!("{op:?}"), n))))
}

/// Protocol-shaped noise: fragments of every grammar in random order, so the parsers see
/// valid ops, near-misses, odd spellings and garbage.
fn wire_noise() -> impl Strategy<Value = Vec<u8>> {
    const FRAGMENTS: &[&[u8]] = &[
        b"PUB ",
        b"pub ",
        b"HPUB ",
        b"SUB ",
        b"UNSUB ",
        b"MSG ",
        b"HMSG ",
        b"RMSG ",
        b"LMSG ",
        b"RS+ ",
        b"RS- ",
        b"LS+ ",
        b"LS- ",
        b"PING",
        b"PONG",
        b"+OK",
        b"-ERR ",
        b"INFO ",
        b"CONNECT ",
        b"foo",
        b"foo.bar",
        b"$G",
        b"q1",
        b"+ ",
        b"| ",
        b" ",
        b"\t",
        b"  ",
        b"\r\n",
        b"\n",
        b"\r",
        b"0",
        b"1",
        b"2",
        b"5",
        b"12",
        b"14",
        b"99",
        b"1000000000",
        b"NATS/1.0\r\n\r\n",
        b"hello",
        b"{}",
        b"'x'",
        b"\x00",
        b"\xff",
    ];
    vec(prop_oneof![8 => proptest::sample::select(FRAGMENTS).prop_map(<[u8]>::to_vec), 1 => vec(any::<u8>(), 1..4)], 0..40)
        .prop_map(|parts| parts.concat())
}

fn small_limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (4usize..40, 0usize..20).prop_map(|(l, p)| Limits {
            max_control_line: l,
            max_payload: p
        })
    ]
}

// ---------------------------------------------------------------- properties

proptest! {
    // 512 cases by default; PROPTEST_CASES=N for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn client_ops_round_trip(ops in vec(client_op(), 1..12)) {
        let mut buf = BytesMut::new();
        for op in &ops {
            encode_client(op, &mut buf);
        }
        let mut p = ClientParser::default();
        let mut got = Vec::new();
        while let Some(op) = p.decode(&mut buf).unwrap() {
            got.push(op);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, ops);
    }

    #[test]
    fn server_ops_round_trip(ops in vec(server_op(), 1..12)) {
        let mut buf = BytesMut::new();
        for op in &ops {
            encode_server(op, &mut buf);
        }
        let mut p = ServerParser::default();
        let mut got = Vec::new();
        while let Some(op) = p.decode(&mut buf).unwrap() {
            got.push(op);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, ops);
    }

    #[test]
    fn route_ops_round_trip(ops in vec(route_op(false), 1..12), lnocu in any::<bool>()) {
        let mut buf = BytesMut::new();
        for op in &ops {
            encode_route(op, false, lnocu, &mut buf);
        }
        let mut p = RouteParser::new(Limits::default());
        p.set_lnocu(lnocu);
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((op, n)) = p.parse(&buf[at..]).unwrap() {
            got.push(R::from_op(op));
            at += n;
        }
        prop_assert_eq!(at, buf.len());
        let want: Vec<R> = ops.iter().map(|o| expected_route(o, false, lnocu)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn leaf_ops_round_trip(ops in vec(route_op(true), 1..12)) {
        let mut buf = BytesMut::new();
        for op in &ops {
            encode_route(op, true, false, &mut buf);
        }
        let mut p = LeafParser::new(Limits::default());
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((op, n)) = p.parse(&buf[at..]).unwrap() {
            got.push(R::from_op(op));
            at += n;
        }
        prop_assert_eq!(at, buf.len());
        let want: Vec<R> = ops.iter().map(|o| expected_route(o, true, false)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn headers_round_trip(
        status in opt((100u16..1000, opt("[A-Za-z][A-Za-z ]{0,10}[A-Za-z]"))),
        pairs in vec(("[!-9;-~]{1,10}", "[ -~]{0,12}"), 0..6),
    ) {
        let mut h = HeaderMap::new();
        if let Some((code, desc)) = &status {
            h.set_status(Some(*code), desc.as_deref()).unwrap();
        }
        for (k, v) in &pairs {
            h.append(k, v).unwrap();
        }
        let bytes = h.to_bytes();
        prop_assert_eq!(bytes.len(), h.encoded_len());
        prop_assert_eq!(HeaderMap::parse(&bytes).unwrap(), h);
    }

    #[test]
    fn connect_and_info_round_trip(
        verbose in any::<bool>(), echo in any::<bool>(), protocol in 0i32..3, name in opt("[a-z]{0,8}"),
        port in any::<u16>(), urls in vec("[a-z0-9.:]{1,12}", 0..3), client_id in any::<u64>(), nonce in opt("[a-zA-Z]{1,8}"),
    ) {
        let c = Connect { verbose, echo, protocol, name, headers: echo, ..Connect::default() };
        prop_assert_eq!(Connect::from_json(c.to_json().as_bytes()).unwrap(), c);
        let i = Info { port, connect_urls: urls, client_id, nonce, headers: verbose, max_payload: 1 << 20, ..Info::default() };
        prop_assert_eq!(Info::from_json(i.to_json().as_bytes()).unwrap(), i);
    }

    #[test]
    fn split_points_do_not_change_client_results(
        ops in vec(client_op(), 0..6), noise in wire_noise(), cuts in vec(any::<usize>(), 0..8), limits in small_limits(),
    ) {
        let mut buf = BytesMut::new();
        for op in &ops {
            encode_client(op, &mut buf);
        }
        buf.extend_from_slice(&noise);
        let whole = drive(&buf, &[], client_step(limits));
        let split = drive(&buf, &cuts, client_step(limits));
        prop_assert_eq!(whole, split);
        // Byte-at-a-time too.
        let every: Vec<usize> = (0..buf.len()).collect();
        prop_assert_eq!(drive(&buf, &[], client_step(limits)), drive(&buf, &every, client_step(limits)));
    }

    #[test]
    fn split_points_do_not_change_server_results(
        ops in vec(server_op(), 0..6), noise in wire_noise(), cuts in vec(any::<usize>(), 0..8), limits in small_limits(),
    ) {
        let mut buf = BytesMut::new();
        for op in &ops {
            encode_server(op, &mut buf);
        }
        buf.extend_from_slice(&noise);
        prop_assert_eq!(drive(&buf, &[], server_step(limits)), drive(&buf, &cuts, server_step(limits)));
    }

    #[test]
    fn split_points_do_not_change_route_results(
        ops in vec(route_op(false), 0..6), noise in wire_noise(), cuts in vec(any::<usize>(), 0..8),
        limits in small_limits(), lnocu in any::<bool>(),
    ) {
        let mut buf = BytesMut::new();
        for op in &ops {
            encode_route(op, false, lnocu, &mut buf);
        }
        buf.extend_from_slice(&noise);
        prop_assert_eq!(drive(&buf, &[], route_step(limits, lnocu)), drive(&buf, &cuts, route_step(limits, lnocu)));
    }

    #[test]
    fn split_points_do_not_change_leaf_results(
        ops in vec(route_op(true), 0..6), noise in wire_noise(), cuts in vec(any::<usize>(), 0..8), limits in small_limits(),
    ) {
        let mut buf = BytesMut::new();
        for op in &ops {
            encode_route(op, true, false, &mut buf);
        }
        buf.extend_from_slice(&noise);
        prop_assert_eq!(drive(&buf, &[], leaf_step(limits)), drive(&buf, &cuts, leaf_step(limits)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop_oneof![vec(any::<u8>(), 0..300), wire_noise()], limits in small_limits()) {
        drive(&bytes, &[], client_step(limits));
        drive(&bytes, &[], server_step(limits));
        drive(&bytes, &[], route_step(limits, false));
        drive(&bytes, &[], route_step(limits, true));
        drive(&bytes, &[], leaf_step(limits));
        let _ = HeaderMap::parse(&bytes);
        let _ = Connect::from_json(&bytes);
        let _ = Info::from_json(&bytes);
    }
}
