//! The sublist, cache on and off, against a naive model: a `Vec` of subscriptions scanned linearly.

use std::collections::BTreeMap;

use proptest::prelude::*;
use starling_sublist::{subject_matches, subjects_collide, MatchResult, SubHandle, Sublist};

/// A token-by-token matcher written independently of the crate's, to check `subject_matches`.
fn naive_matches(pattern: &[&str], subject: &[&str]) -> bool {
    if subject.iter().any(|t| t.is_empty()) {
        return false;
    }
    match (pattern.split_first(), subject.split_first()) {
        (None, None) => true,
        (Some((&">", [])), Some(_)) => true,
        (Some((p, prest)), Some((s, srest))) => {
            (*p == "*" || p == s) && naive_matches(prest, srest)
        }
        _ => false,
    }
}

fn split(s: &str) -> Vec<&str> {
    s.split('.').collect()
}

/// Valid subscription patterns over a tiny alphabet, so that overlaps and cache hits are common.
fn pattern() -> impl Strategy<Value = String> {
    pattern_over(vec!["a", "b", "*"])
}

/// Wide levels (more children than a level keeps in its vector form): 12 letters and `*`.
const WIDE: [&str; 13] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "*",
];

fn pattern_over(alphabet: Vec<&'static str>) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(alphabet), 1..4),
        any::<bool>(),
    )
        .prop_map(|(mut toks, fwc)| {
            if fwc {
                toks.push(">");
            }
            toks.join(".")
        })
}

/// Published subjects: mostly literal, sometimes with `*`/`>` tokens, sometimes with empty tokens.
fn subject() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..5).prop_map(|t| t.join(".")),
        2 => prop::collection::vec(prop::sample::select(vec!["a", "b", "*", ">"]), 1..5).prop_map(|t| t.join(".")),
        1 => prop::sample::select(vec!["", ".", "a.", ".a", "a..b", "a.b."]).prop_map(str::to_owned),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, Option<&'static str>),
    Remove(usize),
    Match(String),
}

fn op() -> impl Strategy<Value = Op> {
    op_over(pattern())
}

fn wide_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => op_over(pattern_over(WIDE.to_vec())),
        2 => prop::collection::vec(prop::sample::select(&WIDE[..12]), 1..4).prop_map(|t| Op::Match(t.join("."))),
    ]
}

fn op_over(pattern: impl Strategy<Value = String>) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (pattern, prop::option::of(prop::sample::select(vec!["q1", "q2"]))).prop_map(|(p, q)| Op::Insert(p, q)),
        3 => any::<usize>().prop_map(Op::Remove),
        6 => subject().prop_map(Op::Match),
    ]
}

type Canonical = (Vec<u32>, BTreeMap<Vec<u8>, Vec<u32>>);

fn canonical(r: &MatchResult<u32>) -> Canonical {
    let mut plain = r.plain.to_vec();
    plain.sort_unstable();
    let mut queues = BTreeMap::new();
    for g in &r.queues {
        assert!(!g.members.is_empty());
        let mut m = g.members.clone();
        m.sort_unstable();
        assert!(
            queues.insert(g.name.to_vec(), m).is_none(),
            "queue group listed twice"
        );
    }
    (plain, queues)
}

struct Model {
    subs: Vec<(u32, String, Option<&'static str>, SubHandle)>,
}

impl Model {
    fn matches(&self, subject: &str) -> Canonical {
        let mut plain = Vec::new();
        let mut queues: BTreeMap<Vec<u8>, Vec<u32>> = BTreeMap::new();
        for (v, p, q, _) in &self.subs {
            if subject_matches(p.as_bytes(), subject.as_bytes()) {
                match q {
                    None => plain.push(*v),
                    Some(q) => queues.entry(q.as_bytes().to_vec()).or_default().push(*v),
                }
            }
        }
        plain.sort_unstable();
        for m in queues.values_mut() {
            m.sort_unstable();
        }
        (plain, queues)
    }
}

fn run(sublist: &Sublist<u32>, ops: &[Op]) {
    let mut model = Model { subs: Vec::new() };
    let mut next = 0u32;
    for op in ops {
        match op {
            Op::Insert(p, q) => {
                let h = sublist
                    .insert(p.as_bytes(), q.map(str::as_bytes), next)
                    .unwrap();
                model.subs.push((next, p.clone(), *q, h));
                next += 1;
            }
            Op::Remove(i) => {
                if model.subs.is_empty() {
                    continue;
                }
                let (v, _, _, h) = model.subs.swap_remove(i % model.subs.len());
                assert_eq!(sublist.remove(&h), Some(v));
                assert_eq!(sublist.remove(&h), None);
            }
            Op::Match(s) => {
                let want = model.matches(s);
                assert_eq!(
                    canonical(&sublist.matches(s.as_bytes())),
                    want,
                    "subject {s:?}"
                );
                assert_eq!(
                    sublist.has_interest(s.as_bytes()),
                    want != Canonical::default(),
                    "subject {s:?}"
                );
            }
        }
        assert_eq!(sublist.len(), model.subs.len());
    }
    // Finally every subject of the alphabet, twice (the second from the cache).
    for s in [
        "a", "b", "c", "a.b", "b.a", "a.a.a", "a.b.c", "*", "a.*", ">", "c.c.c.c",
    ] {
        for _ in 0..2 {
            assert_eq!(
                canonical(&sublist.matches(s.as_bytes())),
                model.matches(s),
                "subject {s:?}"
            );
        }
    }
    let got: BTreeMap<(Vec<u8>, Option<Vec<u8>>), usize> = sublist
        .interest()
        .into_iter()
        .map(|i| ((i.subject.to_vec(), i.queue.map(|q| q.to_vec())), i.count))
        .collect();
    let mut want: BTreeMap<(Vec<u8>, Option<Vec<u8>>), usize> = BTreeMap::new();
    for (_, p, q, _) in &model.subs {
        *want
            .entry((p.as_bytes().to_vec(), q.map(|q| q.as_bytes().to_vec())))
            .or_default() += 1;
    }
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cached_sublist_agrees_with_model(ops in prop::collection::vec(op(), 1..200)) {
        run(&Sublist::new(), &ops);
    }

    #[test]
    fn wide_levels_agree_with_model(ops in prop::collection::vec(wide_op(), 1..300)) {
        run(&Sublist::new(), &ops);
    }

    #[test]
    fn uncached_sublist_agrees_with_model(ops in prop::collection::vec(op(), 1..120)) {
        run(&Sublist::without_cache(), &ops);
    }

    #[test]
    fn subject_matches_agrees_with_naive(p in pattern(), s in subject()) {
        prop_assert_eq!(subject_matches(p.as_bytes(), s.as_bytes()), naive_matches(&split(&p), &split(&s)));
    }

    #[test]
    fn collide_iff_a_common_subject_exists(a in pattern(), b in pattern()) {
        // Brute force: every literal subject of up to 5 tokens over a slightly larger alphabet.
        let mut common = false;
        let alphabet = ["a", "b", "z"];
        let mut subjects = vec![String::new()];
        'outer: for _ in 0..5 {
            let mut longer = Vec::new();
            for s in &subjects {
                for t in alphabet {
                    let n = if s.is_empty() { t.to_owned() } else { format!("{s}.{t}") };
                    if subject_matches(a.as_bytes(), n.as_bytes()) && subject_matches(b.as_bytes(), n.as_bytes()) {
                        common = true;
                        break 'outer;
                    }
                    longer.push(n);
                }
            }
            subjects = longer;
        }
        prop_assert_eq!(subjects_collide(a.as_bytes(), b.as_bytes()), common);
    }
}
