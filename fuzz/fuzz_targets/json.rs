//! INFO and CONNECT documents. Invariant: whatever parses re-encodes to JSON that parses back
//! to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_proto::{Connect, Info, RouteConnect};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Connect::from_json(data) {
        assert_eq!(
            Connect::from_json(c.to_json().as_bytes()).expect("re-parses"),
            c
        );
        let mut d = Connect::default();
        d.apply_json(data)
            .expect("apply accepts what from_json accepts");
        assert_eq!(d, c);
    }
    if let Ok(i) = Info::from_json(data) {
        assert_eq!(
            Info::from_json(i.to_json().as_bytes()).expect("re-parses"),
            i
        );
    }
    if let Ok(r) = RouteConnect::from_json(data) {
        assert_eq!(
            RouteConnect::from_json(r.to_json().as_bytes()).expect("re-parses"),
            r
        );
    }
});
