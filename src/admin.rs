//! Admin listener: /healthz, /readyz, /metrics, /config.
