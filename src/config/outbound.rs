//! The outbound part of `sidecar.yaml`: routes by destination, client identity, exchange settings.
