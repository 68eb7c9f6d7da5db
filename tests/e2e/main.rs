//! End-to-end tests: real servers on 127.0.0.1:0, driven over HTTP.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

mod chain;
mod check;
mod confine;
mod dpop;
mod dpop_chain;
mod dpop_inbound;
mod dpop_outbound;
mod edge;
mod faults;
mod foreign_exchange;
mod grants;
mod grpc;
mod idp;
mod idp_attacks;
mod idp_memory;
mod idp_operator;
mod inbound;
mod inbound_tls;
mod issuers;
mod k8s;
mod login_abuse;
mod logout;
mod mtls;
mod otel;
mod outbound;
mod pages;
mod path_confusion;
mod revocation;
mod shared_store;
mod spiffe;
mod stepup;
mod support;
mod trust;
mod txn;
