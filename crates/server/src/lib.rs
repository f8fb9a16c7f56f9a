//! The Starling broker (work in progress).
#![warn(missing_docs)]
