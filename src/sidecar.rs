//! `baton run`: the inbound, outbound and admin listeners of one sidecar wired together.
