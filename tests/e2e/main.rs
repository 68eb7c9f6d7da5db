//! End-to-end tests: real servers on 127.0.0.1:0, driven over HTTP.

mod chain;
mod check;
mod edge;
mod faults;
mod grants;
mod idp;
mod idp_attacks;
mod idp_memory;
mod idp_operator;
mod inbound;
mod k8s;
mod login_abuse;
mod logout;
mod outbound;
mod pages;
mod path_confusion;
mod revocation;
mod shared_store;
mod stepup;
mod support;
mod trust;
