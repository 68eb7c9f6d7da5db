//! Signing keys (ES256, RS256), PEM persistence, JWK export and JWK-set parsing.
