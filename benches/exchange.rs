//! criterion benchmark: exchange
fn main() {}
