//! `baton.dev/*` annotations → validated [`Settings`], and the `sidecar.yaml` generated from them
//! when no ConfigMap is named.
//!
//! A namespace's annotations are defaults; the pod's own annotations override them. Every bad
//! annotation is reported at once, named like a config field: `Deployment/web: baton.dev/app-port:
//! must be a port number`. Images must be ones the [`Policy`] allows, and a generated config must
//! pass the sidecar's own validation (the function `baton check` and `baton run` call), so that
//! admission never accepts a pod whose sidecar would refuse to start.

use super::policy::Policy;
use super::{ADMIN_PORT, CLIENT_SECRET_DIR, INBOUND_PORT, OUTBOUND_PORT, annotation};
use crate::config::{Config, ConfigErrors, Problems};
use serde::Serialize;
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
    /// `Some` when `baton.dev/capture: iptables`.
    pub capture: Option<Capture>,
}

impl Settings {
    /// Reads and validates the annotations under `policy`; `origin` names the object in errors.
    pub fn from_annotations(
        pod: &Map<String, Value>,
        ns: &Namespace,
        policy: &Policy,
        origin: &str,
    ) -> Result<Settings, ConfigErrors> {
        let get = |key: &str| {
            pod.get(key)
                .or_else(|| ns.annotations.get(key))
                .map(|v| v.as_str().map(str::trim).unwrap_or_default())
        };
        let mut p = Problems::new(origin);

        let image = get(annotation::IMAGE).unwrap_or(&policy.image).to_owned();
        check_image(&mut p, policy, annotation::IMAGE, &image);
        let init_image = get(annotation::INIT_IMAGE).unwrap_or(&image).to_owned();
        check_image(&mut p, policy, annotation::INIT_IMAGE, &init_image);
        let app_port = match get(annotation::APP_PORT) {
            None => DEFAULT_APP_PORT,
            Some(v) => port(&mut p, annotation::APP_PORT, v).unwrap_or(DEFAULT_APP_PORT),
        };
        let client_secret = get(annotation::CLIENT_SECRET).map(str::to_owned);
        if let Some(name) = &client_secret {
            check_name(&mut p, annotation::CLIENT_SECRET, name);
        }
        let issuer = get(annotation::ISSUER).map(str::to_owned);
        let idp = issuer.as_deref().and_then(|i| issuer_authority(&mut p, i));

        let config = match get(annotation::CONFIG) {
            Some(name) => {
                check_name(&mut p, annotation::CONFIG, name);
                ConfigSource::ConfigMap(name.to_owned())
            }
            None => ConfigSource::Generated(generate(
                &mut p,
                issuer.as_deref(),
                get(annotation::AUDIENCE),
                app_port,
                get(annotation::OUTBOUND_ROUTES),
                client_secret.is_some(),
            )),
        };

        let capture = match get(annotation::CAPTURE) {
            None => None,
            Some("iptables") => {
                let outbound_ports = match get(annotation::CAPTURE_OUTBOUND_PORTS) {
                    None => DEFAULT_CAPTURE_PORTS.to_vec(),
                    Some(list) => list
                        .split(',')
                        .filter_map(|v| port(&mut p, annotation::CAPTURE_OUTBOUND_PORTS, v.trim()))
                        .collect(),
                };
                Some(Capture {
                    outbound_ports,
                    exclude: idp,
                })
            }
            Some(_) => {
                p.push(
                    annotation::CAPTURE,
                    "must be iptables (or absent for HTTP_PROXY only)",
                );
                None
            }
        };
        let settings = p.finish(Settings {
            image,
            init_image,
            app_port,
            config,
            client_secret,
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

/// `sidecar.yaml` as `baton run` reads it (inbound, outbound and admin listeners on the fixed
/// ports, the app on loopback, one route that needs a valid token, outbound routes by host).
#[derive(Serialize)]
struct SidecarYaml<'a> {
    issuer: &'a str,
    audience: &'a str,
    listeners: Listeners,
    app: String,
    routes: Vec<InboundRoute>,
    outbound: Outbound,
}

#[derive(Serialize)]
struct Listeners {
    inbound: String,
    outbound: String,
    admin: String,
}

#[derive(Serialize)]
struct InboundRoute {
    name: &'static str,
    path: &'static str,
}

#[derive(Serialize)]
struct Outbound {
    client: Client,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<OutboundRoute>,
}

#[derive(Serialize)]
struct Client {
    client_id: String,
    secret_file: String,
}

#[derive(Serialize)]
struct OutboundRoute {
    name: String,
    host: String,
    audience: String,
}

fn generate(
    p: &mut Problems,
    issuer: Option<&str>,
    audience: Option<&str>,
    app_port: u16,
    routes: Option<&str>,
    has_secret: bool,
) -> String {
    let need = "required unless baton.dev/config names a ConfigMap";
    if issuer.is_none() {
        p.push(annotation::ISSUER, need);
    }
    let audience = audience.unwrap_or_default();
    if audience.is_empty() || audience.chars().any(char::is_whitespace) {
        p.push(
            annotation::AUDIENCE,
            format!("{need}; one word, e.g. service-b"),
        );
    }
    let routes = routes.map(|r| outbound_routes(p, r)).unwrap_or_default();
    if !has_secret {
        p.push(
            annotation::CLIENT_SECRET,
            format!("{need}: the sidecar is an OAuth client of the IdP (client_id = audience)"),
        );
    }
    let yaml = SidecarYaml {
        issuer: issuer.unwrap_or_default(),
        audience,
        listeners: Listeners {
            inbound: format!("0.0.0.0:{INBOUND_PORT}"),
            outbound: format!("127.0.0.1:{OUTBOUND_PORT}"),
            admin: format!("0.0.0.0:{ADMIN_PORT}"),
        },
        app: format!("127.0.0.1:{app_port}"),
        routes: vec![InboundRoute {
            name: "default",
            path: "/",
        }],
        outbound: Outbound {
            client: Client {
                client_id: audience.to_owned(),
                secret_file: format!("{CLIENT_SECRET_DIR}/client-secret"),
            },
            routes,
        },
    };
    let body = serde_yaml::to_string(&yaml).unwrap_or_default();
    format!("# generated by baton from the pod's baton.dev/* annotations\n{body}")
}

/// Runs the sidecar's own validation over a generated config and records what it refuses under
/// the annotation it came from. Only the client secret's file is left out: it is mounted in the
/// pod, not here.
fn check_generated(p: &mut Problems, yaml: &str) {
    let Err(errors) = Config::from_yaml(yaml, "sidecar.yaml") else {
        return;
    };
    for e in errors.0 {
        if e.field == "outbound.client.secret_file" {
            continue;
        }
        let key = if e.field.starts_with("outbound.routes") {
            annotation::OUTBOUND_ROUTES
        } else if e.field == "issuer" {
            annotation::ISSUER
        } else if e.field == "audience" || e.field.starts_with("outbound.client") {
            annotation::AUDIENCE
        } else {
            annotation::SIDECAR_CONFIG
        };
        p.push(
            key,
            format!(
                "the sidecar would refuse the config generated from the annotations: {}: {}",
                e.field, e.reason
            ),
        );
    }
}

/// `service-b:8080=service-b,service-c=service-c` → outbound routes named after their audience.
fn outbound_routes(p: &mut Problems, list: &str) -> Vec<OutboundRoute> {
    let mut routes = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((host, audience)) = item.split_once('=') else {
            p.push(
                annotation::OUTBOUND_ROUTES,
                format!("{item:?}: expected host[:port]=audience"),
            );
            continue;
        };
        let (host, audience) = (host.trim(), audience.trim());
        let host_ok = !host.is_empty() && url::Url::parse(&format!("http://{host}/")).is_ok();
        if !host_ok || audience.is_empty() || audience.chars().any(char::is_whitespace) {
            p.push(
                annotation::OUTBOUND_ROUTES,
                format!("{item:?}: expected host[:port]=audience"),
            );
            continue;
        }
        routes.push(OutboundRoute {
            name: audience.to_owned(),
            host: host.to_owned(),
            audience: audience.to_owned(),
        });
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn settings(a: Value) -> Result<Settings, ConfigErrors> {
        Settings::from_annotations(
            a.as_object().unwrap(),
            &Namespace::default(),
            &Policy::default(),
            "Pod/x",
        )
    }

    #[test]
    fn sidecar_ports_cannot_be_the_app_port_or_captured() {
        let base = json!({"baton.dev/issuer": "http://idp:9000", "baton.dev/audience": "x",
                          "baton.dev/client-secret": "x-client"});
        for port in ["15001", "15006", "15020"] {
            let mut a = base.clone();
            a["baton.dev/app-port"] = port.into();
            a["baton.dev/capture"] = "iptables".into();
            a["baton.dev/capture-outbound-ports"] = format!("80,{port}").into();
            let text = settings(a).unwrap_err().to_string();
            assert!(text.contains(&format!(
                "baton.dev/app-port: {port} is one of the sidecar's ports"
            )));
            assert!(text.contains(&format!(
                "baton.dev/capture-outbound-ports: {port} is one of"
            )));
        }
    }

    #[test]
    fn the_idp_exemption_comes_from_the_issuer_with_its_default_port() {
        let a = json!({"baton.dev/issuer": "https://login.example.com/realms/x", "baton.dev/audience": "x",
                       "baton.dev/client-secret": "x-client", "baton.dev/capture": "iptables"});
        let s = settings(a).unwrap();
        assert_eq!(
            s.capture.unwrap().exclude.as_deref(),
            Some("login.example.com:443")
        );
    }

    #[test]
    fn annotations_whose_generated_config_the_sidecar_refuses_are_refused_with_its_reason() {
        let base = json!({"baton.dev/issuer": "http://idp:9000", "baton.dev/audience": "x",
                          "baton.dev/client-secret": "x-client"});
        let prefix = "Pod/x: baton.dev/outbound-routes: the sidecar would refuse the config \
                      generated from the annotations: ";
        for (routes, reason) in [
            (
                "service-b:8080/x?=service-b",
                "outbound.routes[0].host: required as host[:port]",
            ),
            (
                "svc-b:8080/=svc-b",
                "outbound.routes[0].host: required as host[:port]",
            ),
            (
                "user@svc-b:8080=svc-b",
                "outbound.routes[0].host: required as host[:port]",
            ),
            (
                "a:8080=svc, b:8080=svc",
                "outbound.routes[1].name: duplicate route name",
            ),
            (
                "a=svc,a=svc",
                "outbound.routes[1].name: duplicate route name",
            ),
        ] {
            let mut a = base.clone();
            a["baton.dev/outbound-routes"] = routes.into();
            let text = settings(a).unwrap_err().to_string();
            assert!(
                text.contains(&format!("{prefix}{reason}")),
                "{routes}: {text}"
            );
        }
        let mut quoted = base.clone();
        quoted["baton.dev/audience"] = "x\"y".into();
        let text = settings(quoted).unwrap_err().to_string();
        assert!(
            text.contains("Pod/x: baton.dev/audience: the sidecar would refuse the config generated from the annotations: audience:"),
            "{text}"
        );
        let mut fine = base.clone();
        fine["baton.dev/outbound-routes"] = "a:8080=svc-a, b=svc-b".into();
        assert!(settings(fine).is_ok());
    }

    #[test]
    fn a_pod_names_only_images_the_policy_allows() {
        let base = json!({"baton.dev/config": "cfg", "baton.dev/capture": "iptables"});
        let s = settings(base.clone()).unwrap();
        assert_eq!(
            (s.image.as_str(), s.init_image.as_str()),
            ("baton:dev", "baton:dev")
        );
        for key in ["baton.dev/image", "baton.dev/init-image"] {
            for image in [
                "busybox:1.36",
                "baton:dev2",
                "docker.io/library/baton:dev",
                "baton:latest",
            ] {
                let mut a = base.clone();
                a[key] = image.into();
                let text = settings(a).unwrap_err().to_string();
                assert!(text.contains(&format!("Pod/x: {key}: ")), "{text}");
                assert!(text.contains("is not an allowed image"), "{text}");
            }
        }
        // A namespace default is held to the same list.
        let ns = Namespace::from_object(&json!({"metadata": {"annotations": {
            "baton.dev/init-image": "evil/iptables:1"}}}));
        let err =
            Settings::from_annotations(base.as_object().unwrap(), &ns, &Policy::default(), "Pod/x");
        assert!(err.is_err());
        let policy = Policy {
            image: "ghcr.io/org/baton:1.0".into(),
            allowed_images: vec!["ghcr.io/org/baton-init:*".into()],
            ..Policy::default()
        };
        let mut a = base.clone();
        a["baton.dev/init-image"] = "ghcr.io/org/baton-init:1.0".into();
        let s = Settings::from_annotations(
            a.as_object().unwrap(),
            &Namespace::default(),
            &policy,
            "Pod/x",
        )
        .unwrap();
        assert_eq!(s.image, "ghcr.io/org/baton:1.0");
        assert_eq!(s.init_image, "ghcr.io/org/baton-init:1.0");
        // The default image of another injector is not this one's.
        assert!(
            settings(
                json!({"baton.dev/config": "cfg", "baton.dev/image": "ghcr.io/org/baton:1.0"})
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn any_valid_port_list_round_trips(ports in prop::collection::vec(1u16..15000, 1..6)) {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            let a = json!({"baton.dev/config": "cfg", "baton.dev/capture": "iptables",
                           "baton.dev/capture-outbound-ports": list.join(" , ")});
            let s = settings(a).unwrap();
            prop_assert_eq!(s.capture.unwrap().outbound_ports, ports);
        }

        #[test]
        fn annotation_values_never_panic(value in ".{0,40}") {
            let mut a = Map::new();
            for key in [annotation::APP_PORT, annotation::ISSUER, annotation::OUTBOUND_ROUTES,
                        annotation::CAPTURE, annotation::CONFIG, annotation::IMAGE] {
                a.insert(key.into(), value.clone().into());
            }
            let _ = Settings::from_annotations(&a, &Namespace::default(), &Policy::default(), "Pod/x");
        }

        /// Whatever the annotations say, a config that passes admission passes the sidecar's own
        /// validation: the sidecar never refuses to start on what injection generated.
        #[test]
        fn a_generated_config_that_passes_admission_starts_the_sidecar(
            routes in prop::collection::vec(
                ("[a-z0-9.:/?#@\\[\\]%-]{0,14}", "[a-z0-9 ./:?=-]{0,10}"), 0..4),
            separator in prop::sample::select(vec![",", ", ", ",,"]),
            audience in "[a-z0-9/?# -]{0,10}",
            issuer in prop::sample::select(vec![
                "http://idp:9000", "https://idp.example/realms/x", "http://idp:9000/?x=1",
                "http://idp:9000/#f", "http://[::1]:9000", "ftp://idp",
            ]),
        ) {
            let list: Vec<String> = routes.iter().map(|(h, a)| format!("{h}={a}")).collect();
            let a = json!({"baton.dev/issuer": issuer, "baton.dev/audience": audience,
                           "baton.dev/client-secret": "x-client",
                           "baton.dev/outbound-routes": list.join(separator)});
            if let Ok(Settings { config: ConfigSource::Generated(yaml), .. }) = settings(a) {
                let refused: Vec<_> = match Config::from_yaml(&yaml, "sidecar.yaml") {
                    Ok(_) => Vec::new(),
                    Err(e) => e.0.into_iter()
                        .filter(|e| e.field != "outbound.client.secret_file")
                        .collect(),
                };
                prop_assert!(refused.is_empty(), "admitted but refused: {:?}\n{}", refused, yaml);
            }
        }
    }
}
