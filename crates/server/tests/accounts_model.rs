//! A property test of account isolation and stream imports: random accounts, exports, imports,
//! subscriptions and publishes on a real broker (in-process clients), against a naive model of
//! who must receive what, under which subject.

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::StreamExt;
use proptest::prelude::*;
use starling_server::{Account, Server, StreamImport};

/// The naive matcher: token by token, `*` one token, a trailing `>` one or more.
fn matches(pattern: &str, subject: &str) -> bool {
    let (p, s): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), subject.split('.').collect());
    for (i, t) in p.iter().enumerate() {
        match *t {
            ">" => return s.len() > i,
            "*" if i < s.len() => {}
            lit if s.get(i) == Some(&lit) => {}
            _ => return false,
        }
    }
    p.len() == s.len()
}

const EXPORTS: [&str; 3] = ["a.>", "*.b", ">"];

#[derive(Clone, Debug)]
struct Case {
    /// Per account: the stream it exports (an index into EXPORTS).
    exports: Vec<usize>,
    /// (importer, exporter) pairs, importer != exporter, each at most once.
    imports: Vec<(usize, usize)>,
    /// (account, pattern).
    subs: Vec<(usize, String)>,
    /// (account, subject).
    pubs: Vec<(usize, String)>,
}

fn pattern() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("a"),
        Just("b"),
        Just("p0"),
        Just("p1"),
        Just("p2"),
        Just("*")
    ];
    (proptest::collection::vec(token, 1..4), any::<bool>()).prop_map(|(tokens, tail)| {
        let mut p = tokens.join(".");
        if tail {
            p.push_str(".>");
        }
        p
    })
}

fn subject() -> impl Strategy<Value = String> {
    let token = prop_oneof![Just("a"), Just("b"), Just("p0"), Just("c")];
    proptest::collection::vec(token, 1..4).prop_map(|t| t.join("."))
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..4).prop_flat_map(|n| {
        (
            proptest::collection::vec(0..EXPORTS.len(), n),
            proptest::collection::btree_set((0..n, 0..n), 0..n * 2),
            proptest::collection::vec((0..n, pattern()), 1..12),
            proptest::collection::vec((0..n, subject()), 1..16),
        )
            .prop_map(|(exports, imports, subs, pubs)| Case {
                exports,
                imports: imports.into_iter().filter(|(i, e)| i != e).collect(),
                subs,
                pubs,
            })
    })
}

/// Who receives what: (subscription index, subject) → count.
fn model(c: &Case) -> BTreeMap<(usize, String), usize> {
    let mut out = BTreeMap::new();
    for (publisher, subject) in &c.pubs {
        for (i, (account, pattern)) in c.subs.iter().enumerate() {
            if account == publisher && matches(pattern, subject) {
                *out.entry((i, subject.clone())).or_default() += 1;
            }
            for (importer, exporter) in &c.imports {
                let exported = EXPORTS[c.exports[*exporter]];
                if importer == account && exporter == publisher && matches(exported, subject) {
                    let seen_as = format!("p{exporter}.{subject}");
                    if matches(pattern, &seen_as) {
                        *out.entry((i, seen_as)).or_default() += 1;
                    }
                }
            }
        }
    }
    out
}

async fn run(c: &Case) -> BTreeMap<(usize, String), usize> {
    let name = |i: usize| format!("ACC{i}");
    let mut builder = Server::builder().no_system_account();
    for (i, export) in c.exports.iter().enumerate() {
        let mut account = Account::new(name(i)).export_stream(EXPORTS[*export]);
        for (importer, exporter) in &c.imports {
            if *importer == i {
                account = account.import_stream(
                    StreamImport::new(name(*exporter), EXPORTS[c.exports[*exporter]])
                        .prefix(format!("p{exporter}")),
                );
            }
        }
        builder = builder.account(account);
    }
    let server = builder.start().await.expect("a valid configuration");
    let clients: Vec<_> = (0..c.exports.len())
        .map(|i| server.client_in(&name(i)).unwrap())
        .collect();
    let mut subs = Vec::new();
    for (account, pattern) in &c.subs {
        subs.push(clients[*account].subscribe(pattern).await.unwrap());
    }
    for (account, subject) in &c.pubs {
        clients[*account].publish(subject, "x").await.unwrap();
    }
    // In-process delivery is done when publish returns: drain without waiting.
    let mut got = BTreeMap::new();
    for (i, sub) in subs.iter_mut().enumerate() {
        while let Some(Some(m)) = sub.next().now_or_never() {
            *got.entry((i, m.subject.to_string())).or_default() += 1;
        }
    }
    server.shutdown().await;
    got
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn deliveries_follow_accounts_and_imports(c in case()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = rt.block_on(run(&c));
        prop_assert_eq!(got, model(&c));
    }
}

#[test]
fn the_model_matcher() {
    assert!(matches("a.*", "a.b"));
    assert!(matches("a.>", "a.b.c"));
    assert!(!matches("a.>", "a"));
    assert!(!matches("a.*", "a.b.c"));
    assert!(matches(">", "x"));
}
