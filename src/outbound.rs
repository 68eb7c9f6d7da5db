//! Outbound listener: forward proxy and upstream ports → route → exchange → forward.
