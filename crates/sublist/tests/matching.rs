//! Matching edge cases, with and without the cache.

use starling_sublist::{Interest, MatchResult, Sublist, SublistError};

fn both() -> [Sublist<u32>; 2] {
    [Sublist::new(), Sublist::without_cache()]
}

type Sorted = (Vec<u32>, Vec<(Vec<u8>, Vec<u32>)>);

fn sorted(r: &MatchResult<u32>) -> Sorted {
    let mut plain = r.plain.to_vec();
    plain.sort_unstable();
    let mut queues: Vec<_> = r
        .queues
        .iter()
        .map(|g| {
            let mut m = g.members.clone();
            m.sort_unstable();
            (g.name.to_vec(), m)
        })
        .collect();
    queues.sort();
    (plain, queues)
}

fn plain(s: &Sublist<u32>, subject: &[u8]) -> Vec<u32> {
    // Twice: the second answer comes from the cache when there is one.
    let first = sorted(&s.matches(subject)).0;
    let second = sorted(&s.matches(subject)).0;
    assert_eq!(
        first,
        second,
        "cache disagrees for {:?}",
        String::from_utf8_lossy(subject)
    );
    first
}

#[test]
fn literal_and_wildcards() {
    for s in both() {
        s.insert(b"foo", None, 1).unwrap();
        s.insert(b"foo.bar", None, 2).unwrap();
        s.insert(b"foo.*", None, 3).unwrap();
        s.insert(b"foo.>", None, 4).unwrap();
        s.insert(b">", None, 5).unwrap();
        s.insert(b"*", None, 6).unwrap();
        s.insert(b"*.bar", None, 7).unwrap();
        s.insert(b"*.*.baz", None, 8).unwrap();
        assert_eq!(plain(&s, b"foo"), [1, 5, 6]);
        assert_eq!(plain(&s, b"foo.bar"), [2, 3, 4, 5, 7]);
        assert_eq!(plain(&s, b"foo.bar.baz"), [4, 5, 8]);
        assert_eq!(plain(&s, b"foo.baz"), [3, 4, 5]);
        assert_eq!(plain(&s, b"bar"), [5, 6]);
        assert_eq!(plain(&s, b"x.y.z.w"), [5]);
        assert_eq!(s.len(), 8);
    }
}

#[test]
fn full_wildcard_needs_a_token() {
    for s in both() {
        s.insert(b"foo.>", None, 1).unwrap();
        assert!(plain(&s, b"foo").is_empty());
        assert!(!s.has_interest(b"foo"));
        assert_eq!(plain(&s, b"foo.a"), [1]);
        assert_eq!(plain(&s, b"foo.a.b.c.d"), [1]);
        assert!(s.has_interest(b"foo.a.b"));
    }
}

#[test]
fn full_wildcard_alone() {
    for s in both() {
        s.insert(b">", None, 1).unwrap();
        for subj in [&b"a"[..], b"a.b", b"a.b.c.d.e.f.g", b"*", b">", b"a.*.>"] {
            assert_eq!(plain(&s, subj), [1], "{:?}", String::from_utf8_lossy(subj));
        }
        assert!(plain(&s, b"").is_empty());
        assert!(plain(&s, b".").is_empty());
    }
}

#[test]
fn partial_wildcard_at_every_position() {
    for s in both() {
        s.insert(b"*.b.c.d", None, 0).unwrap();
        s.insert(b"a.*.c.d", None, 1).unwrap();
        s.insert(b"a.b.*.d", None, 2).unwrap();
        s.insert(b"a.b.c.*", None, 3).unwrap();
        s.insert(b"*.*.*.*", None, 4).unwrap();
        s.insert(b"*.*.*", None, 5).unwrap();
        assert_eq!(plain(&s, b"a.b.c.d"), [0, 1, 2, 3, 4]);
        assert_eq!(plain(&s, b"x.b.c.d"), [0, 4]);
        assert_eq!(plain(&s, b"a.x.c.d"), [1, 4]);
        assert_eq!(plain(&s, b"a.b.x.d"), [2, 4]);
        assert_eq!(plain(&s, b"a.b.c.x"), [3, 4]);
        assert_eq!(plain(&s, b"a.b.c"), [5]);
        assert!(plain(&s, b"a.b.c.d.e").is_empty());
    }
}

#[test]
fn published_wildcards_are_literal_but_reach_wildcard_subs() {
    for s in both() {
        s.insert(b"foo.*", None, 1).unwrap();
        s.insert(b"foo.>", None, 2).unwrap();
        s.insert(b"foo.bar", None, 3).unwrap();
        assert_eq!(plain(&s, b"foo.*"), [1, 2]);
        assert_eq!(plain(&s, b"foo.>"), [1, 2]);
        assert_eq!(plain(&s, b"foo.bar"), [1, 2, 3]);
    }
}

#[test]
fn empty_tokens_match_nothing() {
    for s in both() {
        s.insert(b">", None, 1).unwrap();
        s.insert(b"foo.*", None, 2).unwrap();
        for subj in [
            &b""[..],
            b".",
            b"foo.",
            b".foo",
            b"foo..bar",
            b"foo.bar.",
            b"...",
        ] {
            assert!(
                plain(&s, subj).is_empty(),
                "{:?}",
                String::from_utf8_lossy(subj)
            );
            assert!(!s.has_interest(subj));
        }
    }
}

#[test]
fn invalid_inserts() {
    let s = Sublist::new();
    for subj in [
        &b""[..],
        b".",
        b"foo.",
        b".foo",
        b"foo..bar",
        b"foo.>.bar",
        b">.>",
        b"a.>.*",
    ] {
        assert_eq!(s.insert(subj, None, 1), Err(SublistError::InvalidSubject));
    }
    assert_eq!(
        s.insert(b"foo", Some(b""), 1),
        Err(SublistError::InvalidQueue)
    );
    assert!(s.is_empty());
    assert_eq!(s.stats().num_inserts, 0);
}

#[test]
fn unusual_bytes() {
    for s in both() {
        s.insert(b"f\xc3\xa9e.*", None, 1).unwrap();
        s.insert(b"a\x01b", None, 2).unwrap();
        s.insert(b"\xff\x00.>", None, 3).unwrap();
        s.insert(b"foo*.>bar", None, 4).unwrap();
        assert_eq!(plain(&s, b"f\xc3\xa9e.x"), [1]);
        assert_eq!(plain(&s, b"a\x01b"), [2]);
        assert_eq!(plain(&s, b"\xff\x00.a.b"), [3]);
        assert_eq!(plain(&s, b"foo*.>bar"), [4]);
        assert!(plain(&s, b"foo.>bar").is_empty());
        assert!(plain(&s, b"fee.x").is_empty());
    }
}

#[test]
fn very_long_subjects() {
    for s in both() {
        let tokens: Vec<String> = (0..300).map(|i| format!("t{i}")).collect();
        let long = tokens.join(".");
        let mut wild = tokens.clone();
        wild[150] = "*".into();
        let wild = wild.join(".");
        let prefix = format!("{}.>", tokens[..299].join("."));
        s.insert(long.as_bytes(), None, 1).unwrap();
        s.insert(wild.as_bytes(), None, 2).unwrap();
        s.insert(prefix.as_bytes(), None, 3).unwrap();
        let big_token = vec![b'x'; 100_000];
        s.insert(&big_token, None, 4).unwrap();
        assert_eq!(plain(&s, long.as_bytes()), [1, 2, 3]);
        assert_eq!(plain(&s, &big_token), [4]);
        let h = s.insert(&big_token, Some(b"q"), 5).unwrap();
        assert_eq!(s.remove(&h), Some(5));
    }
}

#[test]
fn queue_groups() {
    for s in both() {
        s.insert(b"foo", Some(b"q1"), 1).unwrap();
        s.insert(b"foo", Some(b"q1"), 2).unwrap();
        s.insert(b"foo.*", Some(b"q1"), 3).unwrap();
        s.insert(b"foo", Some(b"q2"), 4).unwrap();
        s.insert(b"*", Some(b"q.x"), 5).unwrap();
        s.insert(b"foo", None, 6).unwrap();
        let r = s.matches(b"foo");
        assert_eq!(r.len(), 5);
        assert_eq!(r.fanout(), 4);
        let (plain, queues) = sorted(&r);
        assert_eq!(plain, [6]);
        assert_eq!(
            queues,
            [
                (b"q.x".to_vec(), vec![5]),
                (b"q1".to_vec(), vec![1, 2]),
                (b"q2".to_vec(), vec![4])
            ]
        );
        assert_eq!(r.queue(b"q2").unwrap().members, [4]);
        assert!(r.queue(b"nope").is_none());
        let r = s.matches(b"foo.bar");
        assert_eq!(sorted(&r).1, [(b"q1".to_vec(), vec![3])]);
    }
}

#[test]
fn same_subscriber_twice_is_two_entries() {
    for s in both() {
        s.insert(b"foo.*", None, 7).unwrap();
        s.insert(b"foo.>", None, 7).unwrap();
        s.insert(b"foo.bar", None, 7).unwrap();
        assert_eq!(plain(&s, b"foo.bar"), [7, 7, 7]);
    }
}

#[test]
fn remove_and_handles() {
    for s in both() {
        let a = s.insert(b"foo.bar", None, 1).unwrap();
        let b = s.insert(b"foo.*", Some(b"q"), 2).unwrap();
        let c = s.insert(b"foo.bar", None, 3).unwrap();
        assert_eq!(a.subject(), b"foo.bar");
        assert_eq!(b.queue(), Some(&b"q"[..]));
        assert!(a.id() < b.id() && b.id() < c.id());
        assert_eq!(plain(&s, b"foo.bar"), [1, 3]);
        let g = s.generation();
        assert_eq!(s.remove(&a), Some(1));
        assert!(s.generation() > g);
        assert_eq!(s.remove(&a), None);
        assert_eq!(s.try_remove(&a), Err(SublistError::NotFound));
        assert_eq!(plain(&s, b"foo.bar"), [3]);
        assert_eq!(s.remove(&b), Some(2));
        assert!(s.matches(b"foo.bar").queues.is_empty());
        assert_eq!(s.remove(&c), Some(3));
        assert!(s.matches(b"foo.bar").is_empty());
        assert!(s.is_empty());
        // A handle from another sublist removes nothing here.
        let other = Sublist::new();
        let h = other.insert(b"foo.bar", None, 9).unwrap();
        s.insert(b"foo.bar", None, 10).unwrap();
        assert_eq!(s.remove(&h), None);
        assert_eq!(plain(&s, b"foo.bar"), [10]);
    }
}

#[test]
fn many_on_one_subject_remove_in_any_order() {
    let s = Sublist::new();
    let handles: Vec<_> = (0..2000)
        .map(|i| s.insert(b"foo", None, i).unwrap())
        .collect();
    assert_eq!(s.matches(b"foo").plain.len(), 2000);
    // Remove every third, then the rest backwards.
    for h in handles.iter().step_by(3) {
        assert!(s.remove(h).is_some());
    }
    let mut left: Vec<u32> = (0..2000).filter(|i| i % 3 != 0).collect();
    assert_eq!(plain(&s, b"foo"), left);
    for (i, h) in handles.iter().enumerate().rev() {
        let v = s.remove(h);
        assert_eq!(v.is_some(), i % 3 != 0);
        if let Some(v) = v {
            left.retain(|&x| x != v);
        }
    }
    assert!(left.is_empty());
    assert!(s.is_empty());
    assert!(!s.has_interest(b"foo"));
}

#[test]
fn interest_and_for_each() {
    let s = Sublist::new();
    s.insert(b"foo", None, 1).unwrap();
    s.insert(b"foo", None, 2).unwrap();
    s.insert(b"foo", Some(b"q"), 3).unwrap();
    s.insert(b"foo.*", None, 4).unwrap();
    s.insert(b"foo.>", Some(b"q"), 5).unwrap();
    s.insert(b"bar.baz", None, 6).unwrap();
    let mut got = s.interest();
    got.sort();
    let i = |subject: &[u8], queue: Option<&[u8]>, count| Interest {
        subject: subject.into(),
        queue: queue.map(Into::into),
        count,
    };
    let mut want = vec![
        i(b"bar.baz", None, 1),
        i(b"foo", None, 2),
        i(b"foo", Some(b"q"), 1),
        i(b"foo.*", None, 1),
        i(b"foo.>", Some(b"q"), 1),
    ];
    want.sort();
    assert_eq!(got, want);
    let mut all = Vec::new();
    s.for_each(|subject, queue, v| all.push((subject.to_vec(), queue.map(<[u8]>::to_vec), *v)));
    all.sort();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0], (b"bar.baz".to_vec(), None, 6));
    assert!(all.contains(&(b"foo.>".to_vec(), Some(b"q".to_vec()), 5)));
}

#[test]
fn stats_and_cache() {
    let s = Sublist::new();
    s.insert(b"foo", None, 1).unwrap();
    s.insert(b"foo.*", None, 2).unwrap();
    s.insert(b"foo.bar", Some(b"q"), 3).unwrap();
    let r1 = s.matches(b"foo.bar");
    let r2 = s.matches(b"foo.bar");
    assert!(std::sync::Arc::ptr_eq(&r1, &r2));
    s.matches(b"foo");
    s.matches(b"nothing");
    s.matches(b"nothing");
    let st = s.stats();
    assert_eq!(st.num_subscriptions, 3);
    assert_eq!(st.num_inserts, 3);
    assert_eq!(st.num_matches, 5);
    assert_eq!(st.num_cache, 3);
    assert!((st.cache_hit_rate - 0.4).abs() < 1e-9);
    assert_eq!(st.max_fanout, 2);
    assert!((st.avg_fanout - 1.0).abs() < 1e-9); // (2 + 1 + 0) / 3 cached results

    // A literal insert touches only its own subject; a wildcard insert only what it matches.
    s.insert(b"foo", None, 4).unwrap();
    assert_eq!(s.cache_len(), 2);
    assert!(std::sync::Arc::ptr_eq(&r1, &s.matches(b"foo.bar")));
    s.insert(b"nothing.*", None, 5).unwrap();
    assert_eq!(s.cache_len(), 2);
    s.insert(b"*", None, 6).unwrap();
    assert_eq!(s.cache_len(), 1);
    assert!(std::sync::Arc::ptr_eq(&r1, &s.matches(b"foo.bar")));

    // Bounded.
    for i in 0..5000 {
        s.matches(format!("x.{i}").as_bytes());
    }
    assert!(s.cache_len() <= 1024, "{}", s.cache_len());
    assert!(s.cache_len() >= 256, "{}", s.cache_len());

    let mut merged = s.stats();
    merged.merge(&st);
    assert_eq!(merged.num_subscriptions, 6 + 3);

    let n = Sublist::<u32>::without_cache();
    n.matches(b"a");
    assert_eq!(n.stats().num_matches, 1);
    assert_eq!(n.stats().cache_hit_rate, 0.0);
    assert_eq!(n.cache_len(), 0);
}

#[test]
fn has_interest_matches_matches() {
    for s in both() {
        s.insert(b"a.*.c", None, 1).unwrap();
        s.insert(b"x.>", Some(b"q"), 2).unwrap();
        for subj in [&b"a.b.c"[..], b"a.b", b"x", b"x.y", b"a.b.c.d", b"q"] {
            assert_eq!(s.has_interest(subj), !s.matches(subj).is_empty());
            assert_eq!(s.has_interest(subj), !s.matches(subj).is_empty());
        }
    }
}

#[test]
fn long_lists_follow_every_change() {
    for s in both() {
        let mut live: Vec<u32> = Vec::new();
        let mut handles = Vec::new();
        for i in 0..100 {
            handles.push((i, s.insert(b"foo", None, i).unwrap()));
            live.push(i);
            assert_eq!(plain(&s, b"foo"), live);
        }
        // One list: shared with the trie, and it stays correct through removes.
        let r = s.matches(b"foo");
        assert_eq!(r.plain.len(), 100);
        for (i, h) in handles.iter().filter(|(i, _)| i % 3 == 0) {
            assert_eq!(s.remove(h), Some(*i));
            live.retain(|v| v != i);
            assert_eq!(plain(&s, b"foo"), live);
        }
        assert_eq!(r.plain.len(), 100, "an earlier result is unchanged");
        // Two lists (a wildcard too): copied into one.
        let w = s.insert(b"*", None, 1000).unwrap();
        let mut with_wildcard = live.clone();
        with_wildcard.push(1000);
        assert_eq!(plain(&s, b"foo"), with_wildcard);
        s.remove(&w);
        assert_eq!(plain(&s, b"foo"), live);
        for (i, h) in &handles {
            if i % 3 != 0 {
                assert_eq!(s.remove(h), Some(*i));
                live.retain(|v| v != i);
                assert_eq!(plain(&s, b"foo"), live);
            }
        }
        assert!(s.is_empty());
    }
}
