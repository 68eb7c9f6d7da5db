//! e2e: chain
