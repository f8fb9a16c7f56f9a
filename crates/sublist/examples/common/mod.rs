//! nats-server's sublist benchmark population, shared by the examples here and the criterion
//! bench in `benches/benches/sublist.rs` (which includes this file by path).

/// Every subject of 1 to 5 tokens over 8 words: 8 + 8^2 + ... + 8^5 = 37,448, in the order Go's
/// `subsInit` (server/sublist_test.go) produces them.
pub(crate) fn workload_subjects() -> Vec<String> {
    const WORDS: [&str; 8] = [
        "synadia",
        "nats",
        "jetstream",
        "nkeys",
        "jwt",
        "deny",
        "auth",
        "drain",
    ];
    fn init(prefix: &str, depth: usize, out: &mut Vec<String>) {
        for w in WORDS {
            let s = if prefix.is_empty() {
                w.to_owned()
            } else {
                format!("{prefix}.{w}")
            };
            out.push(s.clone());
            if depth + 1 < 5 {
                init(&s, depth + 1, out);
            }
        }
    }
    let mut out = Vec::with_capacity(37_448);
    init("", 0, &mut out);
    assert_eq!(out.len(), 37_448);
    out
}
