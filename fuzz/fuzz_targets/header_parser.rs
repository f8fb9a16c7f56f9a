//! The NATS/1.0 header block. Invariants: a block that parses re-encodes to `encoded_len`
//! bytes, and the re-encoding parses back to the same map and re-encodes identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_proto::HeaderMap;

fuzz_target!(|data: &[u8]| {
    let Ok(map) = HeaderMap::parse(data) else {
        return;
    };
    let bytes = map.to_bytes();
    assert_eq!(bytes.len(), map.encoded_len());
    assert!(
        bytes.len() <= data.len() + 2 * map.len() + 4,
        "canonical form is not much larger"
    );
    let again = HeaderMap::parse(&bytes).expect("canonical block parses");
    assert_eq!(again, map);
    assert_eq!(again.to_bytes(), bytes);
    for (k, v) in map.iter() {
        assert_eq!(map.get_all(k).next().is_some(), true);
        assert!(!v.contains(['\r', '\n']));
    }
});
