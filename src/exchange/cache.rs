//! Exchanged-token cache: moka, key, TTL, single-flight.
