//! INFO and CONNECT documents: nats-server's own lines re-encode byte for byte; CONNECT is
//! applied on top of nats-server's defaults.

use bytes::BytesMut;
use starling_proto::{encode, Connect, Info, ProtoError, RouteConnect, SubjectPermission};

fn roundtrip_info(json: &str) -> Info {
    let info = Info::from_json(json.as_bytes()).expect("parses");
    assert_eq!(info.to_json(), json, "re-encodes byte for byte");
    assert_eq!(Info::from_json(info.to_json().as_bytes()).unwrap(), info);
    info
}

#[test]
fn client_info_2_9_10() {
    let info = roundtrip_info(
        r#"{"server_id":"NDZIJ7RE7LXF","server_name":"s29","version":"2.9.10","proto":1,"go":"go1.19.8","host":"127.0.0.1","port":14222,"headers":true,"max_payload":1048576,"client_id":4,"client_ip":"127.0.0.1"}"#,
    );
    assert_eq!(
        (info.port, info.max_payload, info.client_id, info.headers),
        (14222, 1_048_576, 4, true)
    );
    let mut b = BytesMut::new();
    encode::write_info(&mut b, &info);
    assert!(b.starts_with(b"INFO {\"server_id\":"));
    assert!(
        b.ends_with(b"\"client_ip\":\"127.0.0.1\"} \r\n"),
        "trailing space before CRLF"
    );
}

#[test]
fn client_info_2_15_1() {
    let info = roundtrip_info(
        r#"{"server_id":"NX","server_name":"s215","version":"2.15.1","proto":1,"git_commit":"b2fd3ef","go":"go1.27.2","host":"0.0.0.0","port":4222,"headers":true,"max_payload":1048576,"client_id":5,"client_ip":"127.0.0.1","api_lvl":5,"xkey":"XB7E"}"#,
    );
    assert_eq!(
        (
            info.git_commit.as_deref(),
            info.api_lvl,
            info.xkey.as_deref()
        ),
        (Some("b2fd3ef"), 5, Some("XB7E"))
    );
    let info = roundtrip_info(
        r#"{"server_id":"NX","server_name":"s215","version":"2.15.1","proto":1,"go":"go1.27.2","host":"0.0.0.0","port":4222,"headers":true,"max_payload":1048576,"client_id":5,"connect_info":true,"remote_account":"$G"}"#,
    );
    assert!(info.connect_info);
}

#[test]
fn route_infos() {
    let info = roundtrip_info(
        r#"{"server_id":"NAAD","server_name":"B","version":"2.9.10","proto":2,"go":"go1.19.8","host":"127.0.0.1","port":6302,"headers":true,"max_payload":1048576,"nonce":"Aaii0yBDUnUQBAU","cluster":"demo","connect_urls":["127.0.0.1:4302"],"lnoc":true}"#,
    );
    assert_eq!(
        (
            info.cluster.as_deref(),
            info.connect_urls.as_slice(),
            info.lnoc
        ),
        (Some("demo"), &["127.0.0.1:4302".to_string()][..], true)
    );
    // Forwarded (gossiped) INFO with ip.
    roundtrip_info(
        r#"{"server_id":"NCLM","server_name":"C","version":"2.9.10","proto":2,"go":"go1.19.8","host":"127.0.0.1","port":6303,"headers":true,"max_payload":1048576,"ip":"nats-route://127.0.0.1:6303/","cluster":"demo","connect_urls":["127.0.0.1:4303"],"lnoc":true}"#,
    );
    // 2.15.1: the unknown "ln" is dropped, everything else is kept in order.
    let real = r#"{"server_id":"NDQY","server_name":"R","version":"2.15.1","proto":3,"go":"go1.27.2","host":"127.0.0.1","port":35301,"headers":true,"max_payload":1048576,"nonce":"Kigj","cluster":"demo","connect_urls":["127.0.0.1:35302"],"compression":"accept","lnoc":true,"lnocu":true,"ln":true,"route_pool_size":3}"#;
    let info = Info::from_json(real.as_bytes()).unwrap();
    assert_eq!(info.to_json(), real.replace(r#""ln":true,"#, ""));
    assert_eq!(
        (
            info.route_pool_size,
            info.compression.as_deref(),
            info.lnocu
        ),
        (3, Some("accept"), true)
    );
    roundtrip_info(
        r#"{"server_id":"NACU","server_name":"R2","version":"2.15.1","proto":3,"go":"go1.27.2","host":"127.0.0.1","port":35211,"headers":true,"max_payload":1048576,"ip":"nats-route://127.0.0.1:35211/","cluster":"demo","connect_urls":["127.0.0.1:35212"],"compression":"off","lnoc":true,"route_pool_size":3,"gossip_mode":1}"#,
    );
    // Lame duck and dynamic cluster names.
    let info = roundtrip_info(
        r#"{"server_id":"N","server_name":"F","version":"2.9.10","proto":2,"go":"","host":"h","port":1,"headers":true,"max_payload":1,"cluster":"x","cluster_dynamic":true,"ldm":true}"#,
    );
    assert!(info.ldm && info.cluster_dynamic);
}

#[test]
fn leaf_infos() {
    let info = roundtrip_info(
        r#"{"server_id":"NDPL","server_name":"HUB","version":"2.9.10","proto":1,"go":"go1.19.8","host":"127.0.0.1","port":35902,"headers":true,"auth_required":true,"max_payload":1048576,"ip":"127.0.0.1:35902","client_id":6,"nonce":"5cxI","info_on_connect":true,"leafnode_urls":["127.0.0.1:35902"]}"#,
    );
    assert!(info.auth_required && info.info_on_connect);
    roundtrip_info(
        r#"{"server_id":"NDPL","server_name":"HUB","version":"2.9.10","proto":1,"go":"go1.19.8","host":"127.0.0.1","port":35902,"headers":true,"auth_required":true,"max_payload":1048576,"ip":"127.0.0.1:35902","client_id":6,"nonce":"5cxI","info_on_connect":true,"connect_info":true,"leafnode_urls":["127.0.0.1:35902"],"remote_account":"$G"}"#,
    );
}

#[test]
fn info_is_lenient() {
    let info = Info::from_json(br#"{"server_id":null,"port":4222,"connect_urls":null,"cluster":null,"unknown":{"a":[1,2]},"max_payload":5}"#).unwrap();
    assert_eq!(
        (
            info.server_id.as_str(),
            info.port,
            info.cluster,
            info.max_payload
        ),
        ("", 4222, None, 5)
    );
    assert!(
        Info::from_json(br#"{"port":70000}"#).is_err(),
        "port must fit u16"
    );
    assert!(matches!(Info::from_json(b"{"), Err(ProtoError::Json(_))));
    // Every field, encoded and parsed back.
    let full = Info {
        server_id: "N".into(),
        server_name: "n".into(),
        version: "2.10.0".into(),
        proto: 1,
        git_commit: Some("abc".into()),
        go: "rust".into(),
        host: "0.0.0.0".into(),
        port: 4222,
        headers: true,
        auth_required: true,
        tls_required: true,
        tls_verify: true,
        tls_available: true,
        max_payload: 1024,
        jetstream: true,
        ip: Some("nats-route://h:1/".into()),
        client_id: 9,
        client_ip: Some("1.2.3.4".into()),
        nonce: Some("nonce".into()),
        cluster: Some("c".into()),
        cluster_dynamic: true,
        domain: Some("d".into()),
        connect_urls: vec!["a:1".into()],
        ws_connect_urls: vec!["b:2".into()],
        ldm: true,
        compression: Some("off".into()),
        import: Some(SubjectPermission {
            allow: vec!["a".into()],
            deny: vec![],
        }),
        export: Some(SubjectPermission {
            allow: vec![],
            deny: vec!["b".into()],
        }),
        lnoc: true,
        lnocu: true,
        info_on_connect: true,
        connect_info: true,
        route_pool_size: 3,
        route_pool_idx: 1,
        route_account: Some("$SYS".into()),
        route_acc_add_reqid: Some("r".into()),
        gossip_mode: 2,
        gateway: Some("g".into()),
        gateway_urls: vec!["g:1".into()],
        gateway_url: Some("g:1".into()),
        gateway_cmd: 1,
        gateway_cmd_payload: Some("AQI=".into()),
        gateway_nrp: true,
        gateway_iom: true,
        leafnode_urls: vec!["l:1".into()],
        remote_account: Some("$G".into()),
        api_lvl: 5,
        xkey: Some("X".into()),
    };
    assert_eq!(Info::from_json(full.to_json().as_bytes()).unwrap(), full);
    // Empty optional strings are omitted, as Go's omitempty does.
    let sparse = Info {
        nonce: Some(String::new()),
        ..Info::default()
    };
    assert!(!sparse.to_json().contains("nonce"));
    assert_eq!(
        Info::default().to_json(),
        r#"{"server_id":"","server_name":"","version":"","proto":0,"go":"","host":"","port":0,"headers":false,"max_payload":0}"#
    );
}

#[test]
fn connect_defaults_are_applied_under_the_json() {
    // `CONNECT {}` is a verbose + pedantic + echo session.
    let c = Connect::from_json(b"{}").unwrap();
    assert!(c.verbose && c.pedantic && c.echo);
    assert_eq!(c, Connect::default());
    let c = Connect::from_json(br#"{"verbose":false,"echo":true}"#).unwrap();
    assert!(!c.verbose && c.pedantic && c.echo);
    // null keeps the default.
    let c = Connect::from_json(
        br#"{"verbose":null,"pedantic":null,"echo":null,"headers":null,"protocol":null}"#,
    )
    .unwrap();
    assert_eq!(c, Connect::default());
    // Unknown fields are ignored.
    assert!(
        Connect::from_json(br#"{"verbose":true,"foo":1,"bar":{"x":[1]},"ln":true}"#)
            .unwrap()
            .verbose
    );
    // A type mismatch is an error (silent close).
    let e = Connect::from_json(br#"{"verbose":"yes"}"#).unwrap_err();
    assert!(matches!(e, ProtoError::Json(_)));
    assert_eq!(e.err_text(), None);
    assert!(Connect::from_json(br#"{"protocol":1.5}"#).is_err());
    assert!(Connect::from_json(b"{\"verbose\":false").is_err());
    assert!(Connect::from_json(b"{} x").is_err());
    // Only objects (fuzz regression: serde reads structs from arrays too).
    assert!(Connect::from_json(b"[]").is_err());
    assert!(Info::from_json(b" [1]").is_err());
    assert!(RouteConnect::from_json(b"\"x\"").is_err());
    assert!(Connect::from_json(b" \r\n{}").is_ok());
}

#[test]
fn connect_from_async_nats_and_nats_go() {
    // async-nats sends null for every absent option.
    let c = Connect::from_json(
        br#"{"verbose":false,"pedantic":false,"jwt":null,"nkey":null,"sig":null,"name":null,"echo":true,"lang":"rust","version":"0.42.0","protocol":1,"tls_required":false,"user":null,"pass":null,"auth_token":null,"headers":true,"no_responders":true}"#,
    )
    .unwrap();
    assert_eq!(
        (
            c.verbose,
            c.pedantic,
            c.echo,
            c.protocol,
            c.headers,
            c.no_responders,
            c.lang.as_deref(),
            c.user
        ),
        (false, false, true, 1, true, true, Some("rust"), None)
    );
    let c = Connect::from_json(
        br#"{"verbose":false,"pedantic":false,"user":"u","pass":"p","tls_required":false,"name":"n","lang":"go","version":"1.37.0","protocol":1,"echo":false,"headers":true,"no_responders":true}"#,
    )
    .unwrap();
    assert_eq!(
        (
            c.user.as_deref(),
            c.pass.as_deref(),
            c.echo,
            c.name.as_deref()
        ),
        (Some("u"), Some("p"), false, Some("n"))
    );
    assert_eq!(Connect::from_json(c.to_json().as_bytes()).unwrap(), c);
}

#[test]
fn connect_reapplied() {
    let mut c = Connect::from_json(br#"{"verbose":false,"name":"a"}"#).unwrap();
    c.apply_json(br#"{"verbose":true,"name":null}"#).unwrap();
    assert!(c.verbose);
    assert_eq!(c.name.as_deref(), Some("a"));
    assert!(c.apply_json(br#"{"echo":1}"#).is_err());
    // Fuzz regression: invalid UTF-8 inside an ignored field is accepted by both paths.
    let odd = b"{\"host\":\"127.0.0\xff\xff\",\"verbose\":false}";
    let fresh = Connect::from_json(odd).unwrap();
    let mut applied = Connect::default();
    applied.apply_json(odd).unwrap();
    assert_eq!(applied, fresh);
    // Fields set back to their empty value are applied too.
    let mut c = Connect::from_json(br#"{"new_account":true,"deny_pub":["x"]}"#).unwrap();
    c.apply_json(br#"{"new_account":false,"deny_pub":[]}"#)
        .unwrap();
    assert_eq!(c, Connect::default());
}

#[test]
fn route_and_leaf_connect() {
    let line = r#"{"echo":true,"verbose":false,"pedantic":false,"tls_required":false,"headers":true,"name":"NB","cluster":"demo","lnoc":true}"#;
    let rc = RouteConnect::from_json(line.as_bytes()).unwrap();
    assert_eq!(rc.to_json(), line);
    assert_eq!(
        (rc.name.as_str(), rc.cluster.as_str(), rc.lnoc, rc.echo),
        ("NB", "demo", true, true)
    );
    let mut b = BytesMut::new();
    encode::write_route_connect(&mut b, &rc);
    assert_eq!(&b[..], format!("CONNECT {line}\r\n").as_bytes());
    // 2.15.1 adds "ln" (ignored) and lnocu.
    let rc = RouteConnect::from_json(
        br#"{"echo":true,"verbose":false,"pedantic":false,"tls_required":false,"headers":true,"name":"NB","cluster":"demo","lnoc":true,"lnocu":true,"ln":true}"#,
    )
    .unwrap();
    assert!(rc.lnocu);
    let with_auth = RouteConnect {
        user: Some("u".into()),
        pass: Some("p".into()),
        cluster_dynamic: true,
        ..rc
    };
    assert!(with_auth
        .to_json()
        .contains(r#""pedantic":false,"user":"u","pass":"p","tls_required":false"#));
    // The same line also parses as a Connect: "lang" absent marks a real route.
    let c = Connect::from_json(line.as_bytes()).unwrap();
    assert_eq!(
        (c.lang, c.cluster.as_deref(), c.lnoc),
        (None, Some("demo"), true)
    );

    // Leafnode CONNECTs (2.9.10 and 2.15.1 spokes).
    let c = Connect::from_json(br#"{"version":"2.9.10","tls_required":false,"server_id":"NB4W","name":"SPOKE","cluster":"SPOKE","headers":true}"#).unwrap();
    assert_eq!(
        (c.server_id.as_deref(), c.cluster.as_deref()),
        (Some("NB4W"), Some("SPOKE"))
    );
    let c = Connect::from_json(
        br#"{"version":"2.15.1","server_id":"N","name":"SPOKE","cluster":"SPOKE","headers":true,"compress_mode":"s2_uncompressed","remote_account":"$G","protocol":3}"#,
    )
    .unwrap();
    assert_eq!(
        (
            c.compress_mode.as_deref(),
            c.remote_account.as_deref(),
            c.protocol
        ),
        (Some("s2_uncompressed"), Some("$G"), 3)
    );
}

#[test]
fn write_connect_line() {
    let c = Connect {
        verbose: false,
        pedantic: false,
        lang: Some("rust".into()),
        protocol: 1,
        headers: true,
        ..Connect::default()
    };
    let mut b = BytesMut::new();
    encode::write_connect(&mut b, &c);
    assert_eq!(
        &b[..],
        br#"CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"lang":"rust","protocol":1,"echo":true,"headers":true,"no_responders":false}"#
            .iter()
            .chain(b"\r\n")
            .copied()
            .collect::<Vec<u8>>()
            .as_slice()
    );
}
