//! RFC 8693 token-exchange client: builds the form, calls the IdP, maps errors.

pub mod cache;
