//! Kubernetes sidecar injection: the annotations baton reads, the ports the injected containers
//! use, and the map of the parts below.
//!
//! - [`policy`]: what the operator decides and no pod can change: the sidecar's uid, the images
//!   a pod may name.
//! - [`settings`]: `baton.dev/*` annotations (namespace defaults, pod overrides) → validated
//!   [`settings::Settings`], and the generated `sidecar.yaml`, checked by the sidecar's own
//!   validation.
//! - [`mutate`]: the one pure pod-template mutation both `baton inject` and the webhook use.
//! - [`inject`]: `baton inject`: multi-document YAML in, the same documents out, workloads injected.
//! - [`webhook`]: `baton webhook`: the mutating admission webhook (AdmissionReview v1, JSONPatch),
//!   reading a bounded, typed part of each review, a bounded number at a time.
//! - [`capture`]: `baton init-net` (iptables REDIRECT rules).
//!
//! Pods opt in with `baton.dev/inject: enabled` (pod annotation or label, or namespace annotation
//! or label). A namespace that opted in enforces injection: its pods cannot opt out (see
//! [`mutate`]).

pub mod capture;
pub mod inject;
pub mod mutate;
pub mod policy;
pub mod settings;
pub mod webhook;

/// The sidecar's inbound listener port (`listeners.inbound` of `sidecar.yaml`).
pub const INBOUND_PORT: u16 = 15006;
/// The sidecar's outbound forward-proxy port (`HTTP_PROXY` of the app containers).
pub const OUTBOUND_PORT: u16 = 15001;
/// The sidecar's admin port: `/healthz`, `/readyz`, `/metrics`, and in capture mode the app's
/// own probes under [`APP_HEALTH`].
pub const ADMIN_PORT: u16 = 15020;
/// Path prefix of the app probes the sidecar runs for kubelet: `/app-health/<container>/<kind>`.
pub const APP_HEALTH: &str = "/app-health/";
/// Env var of the sidecar carrying the app probes that capture mode moved to the admin port: a
/// JSON object from each `/app-health/...` path to the original probe (see [`mutate`]).
pub const APP_PROBES_ENV: &str = "BATON_APP_PROBES";
/// Where the sidecar's configuration volume is mounted.
pub const CONFIG_DIR: &str = "/etc/baton";
/// Where a client secret named by `baton.dev/client-secret` is mounted.
pub const CLIENT_SECRET_DIR: &str = "/var/run/secrets/baton";
/// Where the SPIFFE helper's volume is mounted in the sidecar (`baton.dev/spiffe-helper-volume`).
pub const SPIFFE_DIR: &str = "/run/spiffe";
/// The JWT-SVID's file name in the helper's volume when `baton.dev/jwt-svid-file` is absent.
pub const DEFAULT_JWT_SVID_FILE: &str = "jwt_svid.token";
/// The version written into `baton.dev/injected`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Annotation (or label) keys baton reads and writes.
pub mod annotation {
    /// `enabled` | `disabled`, on the pod (annotation or label) or its namespace.
    pub const INJECT: &str = "baton.dev/inject";
    /// Written by the injector: the baton version that injected this pod. For people only: the
    /// injector trusts the `baton` container it finds, and replaces it, not this marker.
    pub const INJECTED: &str = "baton.dev/injected";
    /// Sidecar image; default the injector's `--sidecar-image`; only images its policy allows.
    pub const IMAGE: &str = "baton.dev/image";
    /// Image of the capture init container (root, `NET_ADMIN`); default the sidecar image (it
    /// must hold iptables); only images the injector's policy allows.
    pub const INIT_IMAGE: &str = "baton.dev/init-image";
    /// Name of a ConfigMap holding `sidecar.yaml`; when absent the config is generated.
    pub const CONFIG: &str = "baton.dev/config";
    /// The IdP's issuer URL (generated config).
    pub const ISSUER: &str = "baton.dev/issuer";
    /// This service's audience, also its OAuth client id (generated config).
    pub const AUDIENCE: &str = "baton.dev/audience";
    /// The app's port on loopback (generated config; capture redirects it). Default 8080.
    pub const APP_PORT: &str = "baton.dev/app-port";
    /// `host[:port]=audience` pairs, comma separated: the app's calls that get an exchanged token.
    pub const OUTBOUND_ROUTES: &str = "baton.dev/outbound-routes";
    /// Name of a Secret whose key `client-secret` is this service's OAuth client secret.
    pub const CLIENT_SECRET: &str = "baton.dev/client-secret";
    /// `iptables` adds the capture init container; absent = light mode (`HTTP_PROXY` only).
    pub const CAPTURE: &str = "baton.dev/capture";
    /// Destination ports of the app's outbound TCP that capture redirects; default `80,8080`.
    pub const CAPTURE_OUTBOUND_PORTS: &str = "baton.dev/capture-outbound-ports";
    /// Name of the pod volume a SPIFFE helper writes the workload's SVIDs into (an `emptyDir`
    /// shared with spiffe-helper, or the SPIFFE CSI driver's volume): mounted read-only into the
    /// sidecar at [`super::SPIFFE_DIR`]; the generated config authenticates with the JWT-SVID in
    /// it instead of a client secret.
    pub const SPIFFE_HELPER_VOLUME: &str = "baton.dev/spiffe-helper-volume";
    /// The JWT-SVID's file name in that volume; default `jwt_svid.token`.
    pub const JWT_SVID_FILE: &str = "baton.dev/jwt-svid-file";
    /// Written by the injector: the generated `sidecar.yaml`, mounted with the downward API.
    pub const SIDECAR_CONFIG: &str = "baton.dev/sidecar-config";
}
