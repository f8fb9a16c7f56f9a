//! Subject validation and the subscription matcher (work in progress).
#![warn(missing_docs)]
