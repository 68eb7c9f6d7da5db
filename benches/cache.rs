//! criterion benchmark: cache
fn main() {}
