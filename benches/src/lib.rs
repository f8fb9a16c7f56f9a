//! Benchmarks and the load tool live in this package.
