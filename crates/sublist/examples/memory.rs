//! Bytes per subscription, measured with a counting global allocator.
//!
//! `cargo run --release -p starling-sublist --example memory`
//!
//! For 100k and 1M subscriptions, each on a subject of its own, in two shapes: flat request-reply
//! inboxes (`_INBOX.<22 random characters>`, one level with N children) and a hierarchy
//! (`tenant.<i/1000>.device.<i%1000>.events`). The value stored is a `u64` (a broker's
//! `Arc<Subscription>` is the same size in the trie: one pointer; the subscription itself is the
//! broker's). Reported: live heap bytes held by the sublist after the inserts (cache included,
//! results dropped), divided by N; and, separately, what the returned handles add.

use std::alloc::{GlobalAlloc, Layout, System};
use std::mem::size_of_val;
use std::sync::atomic::{AtomicIsize, Ordering};

use starling_sublist::Sublist;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts the bytes requested.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn inbox(i: u64) -> Vec<u8> {
    // A deterministic pseudo-random 22-character token, like a NUID.
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut s = b"_INBOX.".to_vec();
    for _ in 0..22 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(ALPHABET[(x % 62) as usize]);
    }
    s
}

fn hierarchy(i: u64) -> Vec<u8> {
    format!("tenant.{}.device.{}.events", i / 1000, i % 1000).into_bytes()
}

fn measure(name: &str, n: u64, subject: fn(u64) -> Vec<u8>) {
    let subjects: Vec<Vec<u8>> = (0..n).map(subject).collect();
    let before = live();
    let sublist = Sublist::new();
    let after_new = live();
    // Allocated after `before`, so that dropping it below does not count against the sublist.
    let mut handles = Vec::with_capacity(n as usize);
    for (i, s) in subjects.iter().enumerate() {
        handles.push(sublist.insert(s, None, i as u64).unwrap());
    }
    // Fill the match cache as traffic would (results dropped).
    for s in subjects.iter().take(2048) {
        drop(sublist.matches(s));
    }
    let with_handles = live();
    let handle_size = size_of_val(&handles[0]);
    drop(handles);
    let sublist_bytes = live() - before;
    // What dropping the handles freed, less their vector: the heap the handles own.
    let handles_heap = with_handles - before - sublist_bytes - (n as usize * handle_size) as isize;
    println!(
        "{name:>10} {n:>8} subs: sublist {:>6.1} B/sub (empty sublist {} B); handle {handle_size} B + {:.1} B heap",
        sublist_bytes as f64 / n as f64,
        after_new - before,
        handles_heap as f64 / n as f64,
    );
    drop(sublist);
}

fn main() {
    for n in [100_000, 1_000_000] {
        measure("inboxes", n, inbox);
        measure("hierarchy", n, hierarchy);
    }
}
