//! The one pure pod mutation behind both `baton inject` and `baton webhook`: a pod (or a
//! workload's pod template, `{metadata, spec}`) in, the injected pod out, no I/O.
//!
//! What it adds, and why:
//! - the sidecar `baton` as a native sidecar (an init container with `restartPolicy: Always`,
//!   Kubernetes ≥ 1.29): it starts before the app and its init containers, and it does not keep a
//!   Job's pod alive once the app exits;
//! - with `baton.dev/capture: iptables`, the `baton-init` container (`baton init-net`) first;
//! - with capture, the app containers' `httpGet`/`tcpSocket` probes of the app port rewritten to
//!   `httpGet` on the sidecar's admin port (`/app-health/<container>/<livez|readyz|startupz>`),
//!   the originals in the sidecar's `BATON_APP_PROBES` env var: capture would send kubelet's
//!   probes to the inbound listener, which wants a token;
//! - `HTTP_PROXY`/`http_proxy`/`NO_PROXY`/`no_proxy` on the app containers (kept if already set);
//! - the config volume (ConfigMap, or the generated config via the downward API) and the client
//!   secret volume;
//! - `baton.dev/injected: <version>`, which makes a second pass a no-op.
//!
//! Nothing else changes: unknown fields pass through untouched because the pod stays JSON.

use super::settings::{ConfigSource, Namespace, Settings, map_at};
use super::{
    ADMIN_PORT, APP_PROBES_ENV, CLIENT_SECRET_DIR, CONFIG_DIR, INBOUND_PORT, OUTBOUND_PORT,
    SIDECAR_UID, VERSION, annotation,
};
use crate::config::{ConfigErrors, Problems};
use serde_json::{Map, Value, json};

mod probes;

/// Name of the sidecar container.
pub const SIDECAR: &str = "baton";
/// Name of the capture init container.
pub const INIT: &str = "baton-init";
/// Path of the `baton` binary in the image (the project's image holds it at the root).
pub const BINARY: &str = "/baton";
const CONFIG_VOLUME: &str = "baton-config";
const SECRET_VOLUME: &str = "baton-client-secret";

/// The result of [`mutate`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The injected pod.
    Injected(Value),
    /// Left as it was, and why.
    Skipped(Skip),
}

/// Why a pod was left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Neither the pod nor its namespace says `baton.dev/inject: enabled`.
    NotEnabled,
    /// The pod says `baton.dev/inject: disabled`.
    Disabled,
    /// `baton.dev/injected` is already present.
    AlreadyInjected,
    /// `hostNetwork: true`: capture would rewrite the node's rules, and the ports are the node's.
    HostNetwork,
}

impl Skip {
    /// A short, stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotEnabled => "not_enabled",
            Skip::Disabled => "disabled",
            Skip::AlreadyInjected => "already_injected",
            Skip::HostNetwork => "host_network",
        }
    }
}

/// Injects the sidecar into `pod` (`{metadata, spec, ..}`) when it or `ns` opts in.
/// `origin` names the object in errors (`Deployment/web`). Fails, listing every problem, when
/// an annotation is invalid or the pod collides with what would be added.
pub fn mutate(pod: &Value, ns: &Namespace, origin: &str) -> Result<Outcome, ConfigErrors> {
    let annotations = map_at(pod, "annotations");
    if annotations.contains_key(annotation::INJECTED) {
        return Ok(Outcome::Skipped(Skip::AlreadyInjected));
    }
    if let Err(skip) = opted_in(&annotations, &map_at(pod, "labels"), ns, origin)? {
        return Ok(Outcome::Skipped(skip));
    }
    let Some(spec) = pod.get("spec").and_then(Value::as_object) else {
        return Err(one(origin, "spec", "missing: not a pod template"));
    };
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Ok(Outcome::Skipped(Skip::HostNetwork));
    }
    let settings = Settings::from_annotations(&annotations, ns, origin)?;
    check_collisions(spec, &settings, origin)?;

    let mut out = pod.as_object().cloned().unwrap_or_default();
    let meta = object_at(&mut out, "metadata");
    let notes = object_at(meta, "annotations");
    notes.insert(annotation::INJECTED.into(), VERSION.into());
    if let ConfigSource::Generated(yaml) = &settings.config {
        notes.insert(annotation::SIDECAR_CONFIG.into(), yaml.clone().into());
    }
    let spec = object_at(&mut out, "spec");
    let mut app_probes = Map::new();
    for c in array_at(spec, "containers").iter_mut() {
        if let Some(c) = c.as_object_mut() {
            add_proxy_env(c);
            if settings.capture.is_some() {
                probes::rewrite(c, settings.app_port, &mut app_probes);
            }
        }
    }
    let mut first = Vec::new();
    if settings.capture.is_some() {
        first.push(init_container(&settings));
    }
    first.push(sidecar_container(&settings, &app_probes));
    array_at(spec, "initContainers").splice(0..0, first);
    array_at(spec, "volumes").extend(volumes(&settings));
    Ok(Outcome::Injected(Value::Object(out)))
}

/// `Ok(Ok(()))` to inject, `Ok(Err(skip))` to leave alone; a value other than
/// `enabled`/`disabled` is an error.
fn opted_in(
    annotations: &Map<String, Value>,
    labels: &Map<String, Value>,
    ns: &Namespace,
    origin: &str,
) -> Result<Result<(), Skip>, ConfigErrors> {
    let pod = annotations
        .get(annotation::INJECT)
        .or_else(|| labels.get(annotation::INJECT));
    let ns = ns
        .annotations
        .get(annotation::INJECT)
        .or_else(|| ns.labels.get(annotation::INJECT));
    let mut p = Problems::new(origin);
    let mut read = |v: Option<&Value>| match v.map(|v| v.as_str().unwrap_or_default()) {
        None => None,
        Some("enabled") => Some(true),
        Some("disabled") => Some(false),
        Some(_) => {
            p.push(annotation::INJECT, "must be enabled or disabled");
            None
        }
    };
    let decision = match (read(pod), read(ns)) {
        (Some(true), _) | (None, Some(true)) => Ok(()),
        (Some(false), _) => Err(Skip::Disabled),
        _ => Err(Skip::NotEnabled),
    };
    p.finish(decision)
}

fn one(origin: &str, field: &str, reason: &str) -> ConfigErrors {
    let mut p = Problems::new(origin);
    p.push(field, reason);
    match p.finish(()) {
        Err(e) => e,
        Ok(()) => ConfigErrors(Vec::new()),
    }
}

/// Names and ports the injection would take must be free, and capture must be able to tell the
/// sidecar's traffic from the app's.
fn check_collisions(
    spec: &Map<String, Value>,
    settings: &Settings,
    origin: &str,
) -> Result<(), ConfigErrors> {
    let mut p = Problems::new(origin);
    let sidecar_ports = [INBOUND_PORT, OUTBOUND_PORT, ADMIN_PORT];
    for list in ["initContainers", "containers"] {
        let containers = spec.get(list).and_then(Value::as_array);
        for (i, c) in containers.into_iter().flatten().enumerate() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            if name == SIDECAR || name == INIT {
                p.push(
                    format!("spec.{list}[{i}].name"),
                    format!("{name} is reserved for baton"),
                );
            }
            let ports = c.get("ports").and_then(Value::as_array);
            for (j, port) in ports.into_iter().flatten().enumerate() {
                let n = port.get("containerPort").and_then(Value::as_u64);
                if n.is_some_and(|n| sidecar_ports.iter().any(|&s| u64::from(s) == n)) {
                    p.push(
                        format!("spec.{list}[{i}].ports[{j}].containerPort"),
                        "taken by the baton sidecar (15001, 15006, 15020)",
                    );
                }
            }
            let uid = c
                .pointer("/securityContext/runAsUser")
                .and_then(Value::as_i64);
            if settings.capture.is_some() && uid == Some(SIDECAR_UID) {
                p.push(
                    format!("spec.{list}[{i}].securityContext.runAsUser"),
                    "65532 is the sidecar's uid; capture would not redirect this container",
                );
            }
        }
    }
    let pod_uid = spec
        .get("securityContext")
        .and_then(|s| s.get("runAsUser"))
        .and_then(Value::as_i64);
    if settings.capture.is_some() && pod_uid == Some(SIDECAR_UID) {
        p.push(
            "spec.securityContext.runAsUser",
            "65532 is the sidecar's uid; capture would not redirect the app",
        );
    }
    for (i, v) in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if name == CONFIG_VOLUME || name == SECRET_VOLUME {
            p.push(
                format!("spec.volumes[{i}].name"),
                format!("{name} is reserved for baton"),
            );
        }
    }
    p.finish(())
}

fn add_proxy_env(c: &mut Map<String, Value>) {
    let env = array_at(c, "env");
    let proxy = format!("http://127.0.0.1:{OUTBOUND_PORT}");
    let no_proxy = "localhost,127.0.0.1,::1";
    for (name, value) in [
        ("HTTP_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("NO_PROXY", no_proxy),
        ("no_proxy", no_proxy),
    ] {
        if !env
            .iter()
            .any(|e| e.get("name").and_then(Value::as_str) == Some(name))
        {
            env.push(json!({"name": name, "value": value}));
        }
    }
}

/// The sidecar; `app_probes` (path → original probe) goes into its `BATON_APP_PROBES` when any.
fn sidecar_container(s: &Settings, app_probes: &Map<String, Value>) -> Value {
    let mut mounts =
        vec![json!({"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": true})];
    if s.client_secret.is_some() {
        mounts
            .push(json!({"name": SECRET_VOLUME, "mountPath": CLIENT_SECRET_DIR, "readOnly": true}));
    }
    let probe = |path: &str, failures: u32| {
        json!({
            "httpGet": {"path": path, "port": "baton-admin"},
            "periodSeconds": 5,
            "failureThreshold": failures,
        })
    };
    let mut sidecar = json!({
        "name": SIDECAR,
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [BINARY],
        "args": ["run", "-c", format!("{CONFIG_DIR}/sidecar.yaml")],
        "restartPolicy": "Always",
        "ports": [
            {"name": "baton-inbound", "containerPort": INBOUND_PORT, "protocol": "TCP"},
            {"name": "baton-outbound", "containerPort": OUTBOUND_PORT, "protocol": "TCP"},
            {"name": "baton-admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
        ],
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"cpu": "1", "memory": "128Mi"},
        },
        "startupProbe": probe("/healthz", 24),
        "livenessProbe": probe("/healthz", 3),
        "readinessProbe": probe("/readyz", 3),
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": SIDECAR_UID,
            "runAsGroup": SIDECAR_UID,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    });
    if !app_probes.is_empty() {
        // Keys sorted (serde_json's map), so the same pod always gives the same text.
        let table = Value::Object(app_probes.clone()).to_string();
        sidecar["env"] = json!([{"name": APP_PROBES_ENV, "value": table}]);
    }
    sidecar
}

/// `baton init-net` with the ports to redirect; root for iptables, NET_ADMIN + NET_RAW only.
fn init_container(s: &Settings) -> Value {
    let mut args = vec![
        "init-net".to_owned(),
        "--inbound-ports".to_owned(),
        s.app_port.to_string(),
    ];
    if let Some(c) = &s.capture {
        let ports: Vec<String> = c.outbound_ports.iter().map(u16::to_string).collect();
        args.extend(["--outbound-ports".to_owned(), ports.join(",")]);
        if let Some(idp) = &c.exclude {
            args.extend(["--exclude".to_owned(), idp.clone()]);
        }
    }
    json!({
        "name": INIT,
        "image": s.init_image,
        "imagePullPolicy": "IfNotPresent",
        "command": [BINARY],
        "args": args,
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": false,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
    })
}

fn volumes(s: &Settings) -> Vec<Value> {
    let config = match &s.config {
        ConfigSource::ConfigMap(name) => json!({
            "name": CONFIG_VOLUME,
            "configMap": {"name": name, "items": [{"key": "sidecar.yaml", "path": "sidecar.yaml"}]},
        }),
        ConfigSource::Generated(_) => json!({
            "name": CONFIG_VOLUME,
            "downwardAPI": {"items": [{
                "path": "sidecar.yaml",
                "fieldRef": {"fieldPath": format!("metadata.annotations['{}']", annotation::SIDECAR_CONFIG)},
            }]},
        }),
    };
    let mut out = vec![config];
    if let Some(name) = &s.client_secret {
        out.push(json!({
            "name": SECRET_VOLUME,
            "secret": {"secretName": name, "items": [{"key": "client-secret", "path": "client-secret"}]},
        }));
    }
    out
}

/// `map[key]` as an object, created (or replacing a null) if needed.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert(Value::Null);
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("made an object above")
}

/// `map[key]` as an array, created (or replaced when null) if needed.
fn array_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key).or_insert(Value::Null);
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().expect("made an array above")
}

#[cfg(test)]
mod tests;
