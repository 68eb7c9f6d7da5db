//! `baton demo`: the whole A→B→C chain in one process.

pub mod app;
