//! What the injection adds: the sidecar and capture init containers, their volumes, and the
//! proxy variables of the app containers.

use super::{BINARY, CONFIG_VOLUME, INIT, SECRET_VOLUME, SIDECAR, array_at};
use crate::k8s::policy::Policy;
use crate::k8s::settings::{ConfigSource, Settings};
use crate::k8s::{
    ADMIN_PORT, APP_PROBES_ENV, CLIENT_SECRET_DIR, CONFIG_DIR, INBOUND_PORT, OUTBOUND_PORT,
    annotation,
};
use serde_json::{Map, Value, json};

/// `HTTP_PROXY`, `NO_PROXY` and their lowercase forms on an app container, each kept if set.
pub(super) fn add_proxy_env(c: &mut Map<String, Value>) {
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
pub(super) fn sidecar_container(
    s: &Settings,
    policy: &Policy,
    app_probes: &Map<String, Value>,
) -> Value {
    let mut mounts =
        vec![json!({"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": true})];
    if s.client_secret.is_some() {
        mounts
            .push(json!({"name": SECRET_VOLUME, "mountPath": CLIENT_SECRET_DIR, "readOnly": true}));
    }
    if let Some(h) = &s.spiffe {
        // The pod's own volume (the helper writes it): only mounted here, never defined.
        mounts
            .push(json!({"name": h.volume, "mountPath": crate::k8s::SPIFFE_DIR, "readOnly": true}));
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
            "runAsUser": policy.sidecar_uid,
            "runAsGroup": policy.sidecar_uid,
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

/// `baton init-net` with the ports to redirect and the sidecar's uid to exempt; root for
/// iptables, NET_ADMIN + NET_RAW only.
pub(super) fn init_container(s: &Settings, policy: &Policy) -> Value {
    let mut args = vec![
        "init-net".to_owned(),
        "--inbound-ports".to_owned(),
        s.app_port.to_string(),
        "--proxy-uid".to_owned(),
        policy.sidecar_uid.to_string(),
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

/// The config volume and, when the pod names one, the client secret volume.
pub(super) fn volumes(s: &Settings) -> Vec<Value> {
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
