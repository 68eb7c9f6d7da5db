//! `baton.dev/*` annotations → validated [`Settings`], and the `sidecar.yaml` generated from them
//! when no ConfigMap is named.
//!
//! A namespace's annotations are defaults; the pod's own annotations override them. Every bad
//! annotation is reported at once, named like a config field: `Deployment/web: baton.dev/app-port:
//! must be a port number`. Images must be ones the [`Policy`] allows, and a generated config must
//! pass the sidecar's own validation (the function `baton check` and `baton run` call), so that
//! admission never accepts a pod whose sidecar would refuse to start.

mod generate;

use super::policy::Policy;
use super::{ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT, annotation};
use crate::config::{ConfigErrors, Problems};
use generate::{check_generated, generate};
use serde_json::{Map, Value};

/// App port when `baton.dev/app-port` is absent.
pub const DEFAULT_APP_PORT: u16 = 8080;
/// Outbound destination ports captured when `baton.dev/capture-outbound-ports` is absent.
pub const DEFAULT_CAPTURE_PORTS: [u16; 2] = [80, 8080];

/// Labels and annotations of the pod's namespace, as far as injection cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Namespace {
    /// `metadata.labels`.
    pub labels: Map<String, Value>,
    /// `metadata.annotations`.
    pub annotations: Map<String, Value>,
}

impl Namespace {
    /// Reads a `Namespace` object's metadata (a missing field counts as empty).
    pub fn from_object(ns: &Value) -> Self {
        Self {
            labels: map_at(ns, "labels"),
            annotations: map_at(ns, "annotations"),
        }
    }

    /// A namespace that opted in as a whole: what the webhook knows when the
    /// MutatingWebhookConfiguration's namespace selector (label `baton.dev/inject=enabled`) matched.
    pub fn enabled() -> Self {
        let mut labels = Map::new();
        labels.insert(annotation::INJECT.into(), "enabled".into());
        Self {
            labels,
            annotations: Map::new(),
        }
    }
}

/// `metadata.<field>` of an object as a map; empty when absent or not a map.
pub(crate) fn map_at(object: &Value, field: &str) -> Map<String, Value> {
    object
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Where the sidecar's `sidecar.yaml` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A ConfigMap (`baton.dev/config`) with a `sidecar.yaml` key.
    ConfigMap(String),
    /// Generated from annotations; stored in the pod annotation `baton.dev/sidecar-config` and
    /// mounted with a downward-API volume (no ConfigMap, no init step, visible on the pod).
    Generated(String),
}

/// What capture (`baton.dev/capture: iptables`) redirects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Destination ports of the app's outbound TCP sent to the outbound listener.
    pub outbound_ports: Vec<u16>,
    /// The IdP's `host:port` (from the issuer), exempt from the outbound redirect.
    pub exclude: Option<String>,
}

/// Everything the mutation needs from the annotations, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Sidecar image.
    pub image: String,
    /// Capture init container image.
    pub init_image: String,
    /// The app's port on loopback; capture redirects inbound TCP to it.
    pub app_port: u16,
    /// Where `sidecar.yaml` comes from.
    pub config: ConfigSource,
    /// Secret holding the OAuth client secret, mounted read-only.
    pub client_secret: Option<String>,
    /// The pod volume a SPIFFE helper writes SVIDs into, mounted read-only at
    /// [`super::SPIFFE_DIR`], and the JWT-SVID's file name in it.
    pub spiffe: Option<SpiffeHelper>,
    /// `Some` when `baton.dev/capture: iptables`.
    pub capture: Option<Capture>,
}

/// A SPIFFE helper's volume and the JWT-SVID file in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeHelper {
    /// The pod volume's name.
    pub volume: String,
    /// The JWT-SVID's path relative to the volume.
    pub jwt_svid_file: String,
}

impl SpiffeHelper {
    /// Where the sidecar reads the JWT-SVID.
    pub fn jwt_svid_path(&self) -> String {
        format!("{}/{}", super::SPIFFE_DIR, self.jwt_svid_file)
    }
}

impl Settings {
    /// Reads and validates the annotations under `policy`; `origin` names the object in errors.
    pub fn from_annotations(
        pod: &Map<String, Value>,
        ns: &Namespace,
        policy: &Policy,
        origin: &str,
    ) -> Result<Settings, ConfigErrors> {
        let a = Annotations { pod, ns };
        let mut p = Problems::new(origin);
        let image = a.get(annotation::IMAGE).unwrap_or(&policy.image).to_owned();
        check_image(&mut p, policy, annotation::IMAGE, &image);
        let init_image = a.get(annotation::INIT_IMAGE).unwrap_or(&image).to_owned();
        check_image(&mut p, policy, annotation::INIT_IMAGE, &init_image);
        let app_port = match a.get(annotation::APP_PORT) {
            None => DEFAULT_APP_PORT,
            Some(v) => port(&mut p, annotation::APP_PORT, v).unwrap_or(DEFAULT_APP_PORT),
        };
        let client_secret = a.get(annotation::CLIENT_SECRET).map(str::to_owned);
        if let Some(name) = &client_secret {
            check_name(&mut p, annotation::CLIENT_SECRET, name);
        }
        let spiffe = spiffe_helper(&mut p, &a);
        let issuer = a.get(annotation::ISSUER);
        let idp = issuer.and_then(|i| issuer_authority(&mut p, i));
        let config = match a.get(annotation::CONFIG) {
            Some(name) => {
                check_name(&mut p, annotation::CONFIG, name);
                ConfigSource::ConfigMap(name.to_owned())
            }
            None => ConfigSource::Generated(generate(
                &mut p,
                issuer,
                a.get(annotation::AUDIENCE),
                app_port,
                a.get(annotation::OUTBOUND_ROUTES),
                client_secret.is_some(),
                spiffe.as_ref().map(SpiffeHelper::jwt_svid_path).as_deref(),
            )),
        };
        let capture = capture(&mut p, &a, idp);
        let settings = p.finish(Settings {
            image,
            init_image,
            app_port,
            config,
            client_secret,
            spiffe,
            capture,
        })?;
        // Once the annotations are sound, the config they give must start the sidecar.
        if let ConfigSource::Generated(yaml) = &settings.config {
            let mut p = Problems::new(origin);
            check_generated(&mut p, yaml);
            p.finish(())?;
        }
        Ok(settings)
    }
}

/// A pod's annotations over its namespace's defaults.
struct Annotations<'a> {
    pod: &'a Map<String, Value>,
    ns: &'a Namespace,
}

impl<'a> Annotations<'a> {
    /// The value of `key`, trimmed; the pod's own before the namespace's; empty when not a string.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.pod
            .get(key)
            .or_else(|| self.ns.annotations.get(key))
            .map(|v| v.as_str().map(str::trim).unwrap_or_default())
    }
}

/// `baton.dev/capture` and the ports it redirects; `idp` is exempt.
fn capture(p: &mut Problems, a: &Annotations, idp: Option<String>) -> Option<Capture> {
    match a.get(annotation::CAPTURE)? {
        "iptables" => {
            let key = annotation::CAPTURE_OUTBOUND_PORTS;
            let outbound_ports = match a.get(key) {
                None => DEFAULT_CAPTURE_PORTS.to_vec(),
                Some(list) => list
                    .split(',')
                    .filter_map(|v| port(p, key, v.trim()))
                    .collect(),
            };
            Some(Capture {
                outbound_ports,
                exclude: idp,
            })
        }
        _ => {
            p.push(
                annotation::CAPTURE,
                "must be iptables (or absent for HTTP_PROXY only)",
            );
            None
        }
    }
}

/// The image must be one the operator allows: `baton-init` runs it as root with `NET_ADMIN`, and
/// the sidecar holds the client secret and sees every request.
fn check_image(p: &mut Problems, policy: &Policy, key: &str, image: &str) {
    if !policy.allows_image(image) {
        p.push(
            key,
            format!(
                "{image:?} is not an allowed image: use {} or one the injector's --allow-image lists",
                policy.image
            ),
        );
    }
}

/// RFC 1123 names (ConfigMaps, Secrets): lowercase alphanumerics, `-` and `.`, at most 253.
/// `baton.dev/spiffe-helper-volume` (a volume name) and `baton.dev/jwt-svid-file` (a relative
/// path of plain segments inside it, which only means something with the volume).
fn spiffe_helper(p: &mut Problems, a: &Annotations) -> Option<SpiffeHelper> {
    let file = a.get(annotation::JWT_SVID_FILE);
    let Some(volume) = a.get(annotation::SPIFFE_HELPER_VOLUME) else {
        if file.is_some() {
            p.push(
                annotation::JWT_SVID_FILE,
                "needs baton.dev/spiffe-helper-volume: the volume the file is in",
            );
        }
        return None;
    };
    check_label(p, annotation::SPIFFE_HELPER_VOLUME, volume);
    let file = file.unwrap_or(super::DEFAULT_JWT_SVID_FILE);
    let plain = |seg: &str| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if file.len() > 253 || !file.split('/').all(plain) {
        p.push(
            annotation::JWT_SVID_FILE,
            "must be a relative path inside the volume: segments of letters, digits, - _ . \
             (not . or ..)",
        );
    }
    Some(SpiffeHelper {
        volume: volume.to_owned(),
        jwt_svid_file: file.to_owned(),
    })
}

/// A volume name: an RFC 1123 label (lower case, digits, `-`, at most 63 characters).
fn check_label(p: &mut Problems, key: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        p.push(key, "must be a volume name (lowercase RFC 1123 label)");
    }
}

fn check_name(p: &mut Problems, key: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        p.push(key, "must be a Kubernetes object name (lowercase RFC 1123)");
    }
}

/// A port the app may use: a number in 1..=65535 that is not one of the sidecar's.
fn port(p: &mut Problems, key: &str, value: &str) -> Option<u16> {
    match value.parse::<u16>() {
        Ok(0) | Err(_) => {
            p.push(key, format!("{value:?} is not a port number (1-65535)"));
            None
        }
        Ok(n) if [INBOUND_PORT, OUTBOUND_PORT, ADMIN_PORT].contains(&n) => {
            p.push(key, format!("{n} is one of the sidecar's ports"));
            None
        }
        Ok(n) => Some(n),
    }
}

/// The issuer's `host:port`, for the capture exemption; records a problem when it is not an
/// absolute http(s) URL.
fn issuer_authority(p: &mut Problems, issuer: &str) -> Option<String> {
    match url::Url::parse(issuer) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            let host = u.host_str()?;
            Some(format!("{host}:{}", u.port_or_known_default()?))
        }
        _ => {
            p.push(
                annotation::ISSUER,
                "must be the IdP's absolute http(s) URL, e.g. http://baton-idp.baton-system:8080",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests;
