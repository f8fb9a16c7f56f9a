//! What every [`Store`] must do, run against each implementation. A persistent store is also
//! dropped and opened again between steps, so every check runs across a restart too.

use super::{Store, StoreState, SubjectState};

/// Makes the stores a check runs on.
pub(crate) trait Opener {
    /// An empty store.
    fn fresh(&mut self) -> Box<dyn Store>;
    /// `store` after a restart: a persistent store is flushed, dropped and opened again from
    /// what it wrote; one that does not persist is given back as it is.
    fn reopen(&mut self, store: Box<dyn Store>) -> Box<dyn Store>;
}

/// Runs every check.
pub(crate) fn run(o: &mut dyn Opener) {
    appends_and_loads(o);
    removals_keep_sequences(o);
    compact_and_purge(o);
    subjects_and_pending(o);
    skips_keep_what_is_held(o);
}

fn again(store: Box<dyn Store>, o: &mut dyn Opener) -> Box<dyn Store> {
    o.reopen(store)
}

fn appends_and_loads(o: &mut dyn Opener) {
    let mut s = o.fresh();
    assert_eq!(
        s.state(),
        StoreState {
            first_seq: 1,
            ..StoreState::default()
        }
    );
    assert_eq!(s.append(b"a.1", 0, b"one", 10).unwrap(), 1);
    let hdr = b"NATS/1.0\r\nK: v\r\n\r\n";
    let mut data = hdr.to_vec();
    data.extend_from_slice(b"two");
    assert_eq!(s.append(b"a.2", hdr.len(), &data, 20).unwrap(), 2);
    assert_eq!(s.append(b"b", 0, b"", 30).unwrap(), 3);
    let mut s = again(s, o);
    let st = s.state();
    assert_eq!((st.msgs, st.first_seq, st.last_seq), (3, 1, 3));
    assert_eq!((st.first_time, st.last_time, st.num_subjects), (10, 30, 3));
    assert_eq!(
        st.bytes,
        super::record_size(3, 3) + super::record_size(3, data.len()) + super::record_size(1, 0)
    );
    let m = s.load(2).unwrap().unwrap();
    assert_eq!((m.seq, m.time, &m.subject[..]), (2, 20, &b"a.2"[..]));
    assert_eq!(m.headers(), Some(&hdr[..]));
    assert_eq!(m.payload(), b"two");
    assert_eq!(s.load(1).unwrap().unwrap().headers(), None);
    assert_eq!(s.load(4).unwrap(), None);
    assert_eq!(s.load(0).unwrap(), None);
    assert_eq!(s.load_next(2, None).unwrap().unwrap().seq, 2);
    assert_eq!(s.load_next(2, Some(b"b")).unwrap().unwrap().seq, 3);
    assert_eq!(s.load_next(1, Some(b"a.*")).unwrap().unwrap().seq, 1);
    assert_eq!(s.load_next(3, Some(b"a.>")).unwrap(), None);
    assert_eq!(s.load_last(b"a.*").unwrap().unwrap().seq, 2);
    assert_eq!(s.load_last(b">").unwrap().unwrap().seq, 3);
    assert_eq!(s.load_last(b"c").unwrap(), None);
    // Appending after a reopen continues the sequence.
    assert_eq!(s.append(b"a.1", 0, b"four", 40).unwrap(), 4);
    let mut s = again(s, o);
    assert_eq!(
        s.subject_state(b"a.1"),
        Some(SubjectState {
            msgs: 2,
            first: 1,
            last: 4
        })
    );
    assert_eq!(s.load(4).unwrap().unwrap().payload(), b"four");
    s.delete().unwrap();
}

fn removals_keep_sequences(o: &mut dyn Opener) {
    let mut s = o.fresh();
    for i in 1..=10u64 {
        let subj = format!("s.{}", i % 3);
        assert_eq!(s.append(subj.as_bytes(), 0, b"x", i as i64).unwrap(), i);
    }
    assert!(s.remove(5).unwrap());
    assert!(!s.remove(5).unwrap());
    assert!(!s.remove(11).unwrap());
    assert!(s.remove(1).unwrap());
    let mut s = again(s, o);
    let st = s.state();
    assert_eq!(
        (st.msgs, st.first_seq, st.last_seq, st.num_deleted),
        (8, 2, 10, 1)
    );
    assert_eq!(st.first_time, 2);
    assert_eq!(s.load(5).unwrap(), None);
    assert_eq!(s.load_next(5, None).unwrap().unwrap().seq, 6);
    // s.2 held 2, 5, 8: 5 is gone.
    assert_eq!(
        s.subject_state(b"s.2"),
        Some(SubjectState {
            msgs: 2,
            first: 2,
            last: 8
        })
    );
    // Removing the last keeps last_seq: sequences are never reused.
    assert!(s.remove(10).unwrap());
    assert_eq!(s.append(b"s.1", 0, b"y", 11).unwrap(), 11);
    let s = again(s, o);
    assert_eq!(s.state().last_seq, 11);
    let mut s = s;
    s.delete().unwrap();
}

fn compact_and_purge(o: &mut dyn Opener) {
    let mut s = o.fresh();
    for i in 1..=20u64 {
        let subj = if i % 2 == 0 { "even" } else { "odd" };
        s.append(subj.as_bytes(), 0, b"x", i as i64).unwrap();
    }
    assert_eq!(s.compact(6).unwrap(), 5);
    let mut s = again(s, o);
    let st = s.state();
    assert_eq!((st.msgs, st.first_seq, st.last_seq), (15, 6, 20));
    // Purge odd below 15, keeping nothing: 7, 9, 11, 13.
    assert_eq!(s.purge_subject(b"odd", Some(15), None).unwrap(), 4);
    // Keep the newest 2 evens: 6..=16 go (6 messages), 18 and 20 stay.
    assert_eq!(s.purge_subject(b"even", None, Some(2)).unwrap(), 6);
    let mut s = again(s, o);
    let left: Vec<u64> = (0..=21)
        .filter_map(|q| s.load(q).unwrap().map(|m| m.seq))
        .collect();
    assert_eq!(left, vec![15, 17, 18, 19, 20]);
    assert_eq!(s.state().first_seq, 15);
    // Compacting past the end empties the store and moves its start.
    assert_eq!(s.compact(100).unwrap(), 5);
    let mut s = again(s, o);
    let st = s.state();
    assert_eq!(
        (st.msgs, st.bytes, st.first_seq, st.num_subjects),
        (0, 0, 100, 0)
    );
    assert_eq!(s.append(b"z", 0, b"", 1).unwrap(), 100);
    s.delete().unwrap();
}

fn subjects_and_pending(o: &mut dyn Opener) {
    let mut s = o.fresh();
    for i in 1..=30u64 {
        let subj = format!("kv.{}", i % 5);
        s.append(subj.as_bytes(), 0, b"v", i as i64).unwrap();
    }
    let mut subjects = s.subjects(b"kv.>");
    subjects.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(subjects.len(), 5);
    assert_eq!(&subjects[0].0[..], b"kv.0");
    assert_eq!(
        subjects[0].1,
        SubjectState {
            msgs: 6,
            first: 5,
            last: 30
        }
    );
    assert!(s.subjects(b"other").is_empty());
    assert_eq!(s.num_pending(1, &[]), 30);
    assert_eq!(s.num_pending(26, &[]), 5);
    assert_eq!(s.num_pending(1, &[b"kv.1"]), 6);
    assert_eq!(s.num_pending(12, &[b"kv.1", b"kv.2"]), 7);
    assert_eq!(s.num_pending(31, &[b">"]), 0);
    s.delete().unwrap();
}

/// `skip_to`: a mirror's gaps. What is held stays, the skipped sequences count as deleted,
/// the next append lands at the new sequence, and all of it survives a restart.
fn skips_keep_what_is_held(o: &mut dyn Opener) {
    let mut s = o.fresh();
    // Skipping on an empty store moves its start.
    s.skip_to(3).unwrap();
    let mut s = again(s, o);
    let st = s.state();
    assert_eq!((st.msgs, st.first_seq, st.last_seq), (0, 3, 2));
    assert_eq!(s.append(b"a", 0, b"3", 3).unwrap(), 3);
    assert_eq!(s.append(b"a", 0, b"4", 4).unwrap(), 4);
    // A short gap, then a long one (past any in-place holes), then one not persisted by an
    // append before the restart.
    s.skip_to(6).unwrap();
    assert_eq!(s.append(b"b", 0, b"6", 6).unwrap(), 6);
    s.skip_to(100_000).unwrap();
    let mut s = again(s, o);
    let st = s.state();
    assert_eq!(
        (st.msgs, st.first_seq, st.last_seq, st.num_deleted),
        (3, 3, 99_999, 99_994)
    );
    assert_eq!(s.append(b"a", 0, b"big", 7).unwrap(), 100_000);
    // Skipping backwards, or to the next sequence, changes nothing.
    s.skip_to(50).unwrap();
    s.skip_to(100_001).unwrap();
    assert_eq!(s.append(b"c", 0, b"next", 8).unwrap(), 100_001);
    let mut s = again(s, o);
    let held: Vec<u64> = [1, 2, 3, 4, 5, 6, 7, 99_999, 100_000, 100_001]
        .into_iter()
        .filter_map(|q| s.load(q).unwrap().map(|m| m.seq))
        .collect();
    assert_eq!(held, vec![3, 4, 6, 100_000, 100_001]);
    assert_eq!(s.load_next(5, None).unwrap().unwrap().seq, 6);
    assert_eq!(s.load_next(7, None).unwrap().unwrap().seq, 100_000);
    assert_eq!(s.load_last(b"a").unwrap().unwrap().payload(), b"big");
    assert_eq!(s.num_pending(4, &[]), 4);
    // Removing what is held around the gaps works as anywhere else.
    assert!(s.remove(3).unwrap());
    assert!(s.remove(100_000).unwrap());
    let mut s = again(s, o);
    let st = s.state();
    assert_eq!((st.msgs, st.first_seq, st.last_seq), (3, 4, 100_001));
    assert_eq!(s.compact(100_001).unwrap(), 2);
    assert_eq!(s.state().first_seq, 100_001);
    s.delete().unwrap();
}
