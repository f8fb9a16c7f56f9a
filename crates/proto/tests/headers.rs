//! The NATS/1.0 header block.

use starling_proto::{HeaderError, HeaderMap};

#[test]
fn status_lines() {
    assert_eq!(
        &HeaderMap::status_only(503).to_bytes()[..],
        b"NATS/1.0 503\r\n\r\n"
    );
    assert_eq!(
        &HeaderMap::status_only(503).to_bytes()[..],
        HeaderMap::NO_RESPONDERS
    );
    let h = HeaderMap::with_status(408, "Request Timeout").unwrap();
    assert_eq!(&h.to_bytes()[..], b"NATS/1.0 408 Request Timeout\r\n\r\n");
    assert_eq!(h.encoded_len(), h.to_bytes().len());
    let h = HeaderMap::parse(b"NATS/1.0 503\r\n\r\n").unwrap();
    assert_eq!((h.status(), h.description(), h.len()), (Some(503), None, 0));
    let h = HeaderMap::parse(b"NATS/1.0 409 Consumer Deleted\r\n\r\n").unwrap();
    assert_eq!(
        (h.status(), h.description()),
        (Some(409), Some("Consumer Deleted"))
    );
    let h =
        HeaderMap::parse(b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\n\r\n").unwrap();
    assert_eq!(
        (h.status(), h.get("Nats-Last-Consumer")),
        (Some(100), Some("1"))
    );
    // 2.15.1's no-responders carries the subject.
    let h = HeaderMap::parse(b"NATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n").unwrap();
    assert_eq!(
        (h.status(), h.get("Nats-Subject")),
        (Some(503), Some("nobody"))
    );
    assert_eq!(h.encoded_len(), 38);
}

#[test]
fn keys_values_and_order() {
    let raw = b"NATS/1.0 503 Desc\r\nA: 1\r\nA: 2\r\nb:3\r\n\r\n";
    assert_eq!(raw.len(), 38);
    let h = HeaderMap::parse(raw).unwrap();
    assert_eq!(
        h.iter().collect::<Vec<_>>(),
        vec![("A", "1"), ("A", "2"), ("b", "3")]
    );
    assert_eq!(h.get_all("A").collect::<Vec<_>>(), vec!["1", "2"]);
    assert_eq!(h.get("a"), None, "exact case");
    assert_eq!(h.get_ignore_case("a"), Some("1"));
    assert_eq!(h.get("b"), Some("3"));
    assert_eq!(
        &h.to_bytes()[..],
        b"NATS/1.0 503 Desc\r\nA: 1\r\nA: 2\r\nb: 3\r\n\r\n"
    );

    let mut h = HeaderMap::new();
    assert_eq!(&h.to_bytes()[..], b"NATS/1.0\r\n\r\n");
    assert_eq!(h.encoded_len(), 12);
    h.append("Nats-Msg-Id", "abc").unwrap();
    h.append("X-Multi", "1").unwrap();
    h.append("X-Multi", " 2 ").unwrap();
    h.insert("Nats-Msg-Id", "def").unwrap();
    assert_eq!(
        &h.to_bytes()[..],
        b"NATS/1.0\r\nX-Multi: 1\r\nX-Multi: 2\r\nNats-Msg-Id: def\r\n\r\n"
    );
    assert_eq!(h.remove("X-Multi"), 2);
    assert_eq!(h.len(), 1);
    assert_eq!(HeaderMap::parse(&h.to_bytes()).unwrap(), h);
    h.set_status(Some(404), Some("No Messages")).unwrap();
    assert_eq!(
        &h.to_bytes()[..],
        b"NATS/1.0 404 No Messages\r\nNats-Msg-Id: def\r\n\r\n"
    );
}

#[test]
fn lenient_forms_clients_accept() {
    // Continuation lines fold into the previous value.
    let h = HeaderMap::parse(b"NATS/1.0\r\nA: one\r\n two\r\n\r\n").unwrap();
    assert_eq!(h.get("A"), Some("one two"));
    // Empty values and blanks around values.
    let h = HeaderMap::parse(b"NATS/1.0\r\nA:\r\nB: \t x \t\r\n\r\n").unwrap();
    assert_eq!((h.get("A"), h.get("B")), (Some(""), Some("x")));
    // Blank status line after the version.
    assert_eq!(
        HeaderMap::parse(b"NATS/1.0 \r\n\r\n").unwrap(),
        HeaderMap::new()
    );
}

#[test]
fn rejected() {
    let cases: &[(&[u8], HeaderError)] = &[
        (b"FOO/1.0\r\n\r\n", HeaderError::MissingVersion),
        (b"NATS/1.1\r\n\r\n", HeaderError::MissingVersion),
        (b"NATS/1.0x\r\n\r\n", HeaderError::MissingVersion),
        (b"\r\nhi", HeaderError::MissingVersion),
        (b"NATS/1.0\r\n", HeaderError::MissingTerminator),
        (b"NATS/1.0\r\nA: 1\r\n", HeaderError::MissingTerminator),
        (b"NATS/1.0", HeaderError::MissingTerminator),
        (b"NATS/1.0\r\n\r\nextra", HeaderError::MissingTerminator),
        (b"NATS/1.0 5033\r\n\r\n", HeaderError::InvalidStatus),
        (b"NATS/1.0 50\r\n\r\n", HeaderError::InvalidStatus),
        (b"NATS/1.0 abc\r\n\r\n", HeaderError::InvalidStatus),
        (b"NATS/1.0\r\nno colon\r\n\r\n", HeaderError::MissingColon),
        (b"NATS/1.0\r\nA B: 1\r\n\r\n", HeaderError::InvalidName),
        (b"NATS/1.0\r\n: 1\r\n\r\n", HeaderError::InvalidName),
        (
            b"NATS/1.0\r\n continuation first\r\n\r\n",
            HeaderError::InvalidName,
        ),
        (b"NATS/1.0\r\nA: 1\n2\r\n\r\n", HeaderError::InvalidValue),
        // Fuzz regression: a bare LF in a continuation line.
        (
            b"NATS/1.0\r\nX: one\r\n t\0\nw\r\n\r\n",
            HeaderError::InvalidValue,
        ),
        (b"NATS/1.0\r\nA: \xff\r\n\r\n", HeaderError::NotUtf8),
    ];
    for (raw, want) in cases {
        assert_eq!(
            HeaderMap::parse(raw).as_ref().err(),
            Some(want),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    let mut h = HeaderMap::new();
    assert_eq!(h.append("A B", "1"), Err(HeaderError::InvalidName));
    assert_eq!(h.append("A:", "1"), Err(HeaderError::InvalidName));
    assert_eq!(h.append("", "1"), Err(HeaderError::InvalidName));
    assert_eq!(h.append("A", "1\r\n"), Err(HeaderError::InvalidValue));
    assert_eq!(
        h.set_status(Some(99), None),
        Err(HeaderError::InvalidStatus)
    );
    assert_eq!(
        h.set_status(None, Some("x")),
        Err(HeaderError::InvalidStatus)
    );
    assert_eq!(
        HeaderMap::with_status(503, "a\rb"),
        Err(HeaderError::InvalidValue)
    );
    assert!(h.is_empty());
}
