//! e2e: outbound
