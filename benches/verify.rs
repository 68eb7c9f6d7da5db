//! criterion benchmark: verify
fn main() {}
