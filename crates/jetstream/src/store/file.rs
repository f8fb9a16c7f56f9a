//! `storage: file`: placeholder while the segmented log is written.
