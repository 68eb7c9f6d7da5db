//! e2e: idp
