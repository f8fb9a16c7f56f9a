//! The `starling-server` binary.
fn main() {}
