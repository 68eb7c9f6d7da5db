//! JWT verification rules (RFC 8725, RFC 9068 §4).

pub mod jwks;
pub mod keys;
