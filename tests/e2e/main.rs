//! End-to-end tests: real servers on 127.0.0.1:0, driven over HTTP.

mod chain;
mod faults;
mod idp;
mod idp_attacks;
mod inbound;
mod k8s;
mod outbound;
mod stepup;
mod support;
