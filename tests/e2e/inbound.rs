//! e2e: inbound
