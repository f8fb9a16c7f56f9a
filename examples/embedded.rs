//! Embeds a broker (work in progress).
fn main() {}
