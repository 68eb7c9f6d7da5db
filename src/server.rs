//! Shared accept loop: limits, timeouts, graceful drain.
