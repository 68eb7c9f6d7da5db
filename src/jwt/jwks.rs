//! Discovery and JWKS cache: background refresh, single-flight unknown-`kid` refetch, readiness.
