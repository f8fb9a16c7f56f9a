//! Declares the `fuzzing` cfg (set by cargo-fuzz), under which the crate exposes its general
//! parsers so the fuzz targets can check the fast paths against them.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
}
