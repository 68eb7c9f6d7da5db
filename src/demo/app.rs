//! The demo echo app: echoes the verified claims and calls the next hop through `HTTP_PROXY`.
