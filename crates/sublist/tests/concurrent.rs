//! Readers match while a writer inserts and removes: no lost and no stale results, during and after.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;

use starling_sublist::{subject_matches, Sublist};

const PATTERNS: [&str; 7] = ["t.a", "t.*", "t.>", ">", "*.a", "t.b", "x.*"];
const SUBJECTS: [&str; 5] = ["t.a", "t.b", "t.c", "x.a", "t.a.b"];
const WINDOW: i64 = 24;

fn pattern(v: i64) -> &'static str {
    PATTERNS[(v % PATTERNS.len() as i64) as usize]
}

#[test]
fn readers_see_every_completed_change() {
    for cached in [true, false] {
        let subs: Arc<Sublist<i64>> = Arc::new(if cached {
            Sublist::new()
        } else {
            Sublist::without_cache()
        });
        let inserted_upto = Arc::new(AtomicI64::new(-1));
        let removed_below = Arc::new(AtomicI64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let total: i64 = if cfg!(debug_assertions) {
            6_000
        } else {
            60_000
        };

        let readers: Vec<_> = (0..3)
            .map(|r| {
                let (subs, inserted_upto, removed_below, done) = (
                    subs.clone(),
                    inserted_upto.clone(),
                    removed_below.clone(),
                    done.clone(),
                );
                thread::spawn(move || {
                    let mut checks = 0u64;
                    let mut i = r;
                    while !done.load(Ordering::Acquire) {
                        let subject = SUBJECTS[i % SUBJECTS.len()];
                        i += 1;
                        let floor_before = removed_below.load(Ordering::Acquire);
                        let hi = inserted_upto.load(Ordering::Acquire);
                        let result = subs.matches(subject.as_bytes());
                        let floor_after = removed_below.load(Ordering::Acquire);
                        for &v in &result.plain {
                            // Removed before the match began: must be gone.
                            assert!(
                                v >= floor_before,
                                "stale {v} < {floor_before} for {subject} (marked {}, {:?})",
                                result.is_stale(),
                                result.plain
                            );
                            assert!(subject_matches(pattern(v).as_bytes(), subject.as_bytes()));
                        }
                        // Inserted before the match began and not yet being removed: must be there.
                        for v in (floor_after + 1).max(0)..=hi {
                            if subject_matches(pattern(v).as_bytes(), subject.as_bytes()) {
                                assert!(
                                    result.plain.contains(&v),
                                    "lost {v} for {subject} (marked {}, {:?}, hi {hi} floor {floor_after})",
                                    result.is_stale(),
                                    result.plain
                                );
                            }
                        }
                        checks += 1;
                    }
                    checks
                })
            })
            .collect();

        let mut handles = std::collections::VecDeque::new();
        for v in 0..total {
            handles.push_back(subs.insert(pattern(v).as_bytes(), None, v).unwrap());
            inserted_upto.store(v, Ordering::Release);
            if v >= WINDOW {
                let h = handles.pop_front().unwrap();
                assert_eq!(subs.remove(&h), Some(v - WINDOW));
                removed_below.store(v - WINDOW + 1, Ordering::Release);
            }
        }
        done.store(true, Ordering::Release);
        let checks: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(checks > 0);

        // After the writer: exactly the last WINDOW values, through the cache and without it.
        for subject in SUBJECTS {
            let mut want: Vec<i64> = (total - WINDOW..total)
                .filter(|&v| subject_matches(pattern(v).as_bytes(), subject.as_bytes()))
                .collect();
            want.sort_unstable();
            for _ in 0..2 {
                let mut got = subs.matches(subject.as_bytes()).plain.to_vec();
                got.sort_unstable();
                assert_eq!(got, want, "{subject}");
            }
        }
        assert_eq!(subs.len(), WINDOW as usize);
    }
}

#[test]
fn sublist_is_send_and_sync() {
    fn check<S: Send + Sync>() {}
    check::<Sublist<Arc<String>>>();
    check::<starling_sublist::SubHandle>();
    check::<starling_sublist::MatchResult<Arc<String>>>();
}
