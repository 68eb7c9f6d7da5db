//! Capture mode's probe rewrite (Istio's approach): kubelet probes the app from outside the pod,
//! so `baton init-net` would redirect an app probe on the captured port to the inbound listener,
//! where an `httpGet` probe fails for want of a token and a `tcpSocket` probe always succeeds. Such
//! probes are pointed at the sidecar's admin port instead (`/app-health/<container>/<kind>`), and
//! the originals are handed to the sidecar, which runs them against the app over loopback.
//!
//! Left as they are: probes on other ports (not redirected), `exec` probes (run inside the
//! container), `grpc` probes (a remaining gap: the sidecar has no gRPC health client), and probes
//! with an explicit `host` (kubelet connects to that host, not through the pod's redirect).

use crate::k8s::{ADMIN_PORT, APP_HEALTH};
use serde_json::{Map, Value, json};

/// Each probe field of a container and the last path segment it gets on the admin port.
const KINDS: [(&str, &str); 3] = [
    ("livenessProbe", "livez"),
    ("readinessProbe", "readyz"),
    ("startupProbe", "startupz"),
];

/// Rewrites the probes of `container` that target `app_port` to the sidecar's admin port and
/// adds their originals to `table` (`/app-health/...` path → original), with ports resolved to
/// numbers, `path` and `scheme` defaulted as the API server does.
pub(super) fn rewrite(
    container: &mut Map<String, Value>,
    app_port: u16,
    table: &mut Map<String, Value>,
) {
    let Some(name) = container
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    let ports = container.get("ports").cloned().unwrap_or(Value::Null);
    for (field, kind) in KINDS {
        let Some(probe) = container.get_mut(field).and_then(Value::as_object_mut) else {
            continue;
        };
        let Some(original) = original(probe, &ports, app_port) else {
            continue;
        };
        let path = format!("{APP_HEALTH}{name}/{kind}");
        probe.remove("httpGet");
        probe.remove("tcpSocket");
        probe.insert("httpGet".into(), json!({"path": path, "port": ADMIN_PORT}));
        table.insert(path, original);
    }
}

/// What the sidecar needs to run `probe` itself, when it is an `httpGet` or `tcpSocket` probe
/// of `app_port` (reached through the pod's IP, so redirected by capture); `None` otherwise.
fn original(probe: &Map<String, Value>, ports: &Value, app_port: u16) -> Option<Value> {
    let (kind, action) = ["httpGet", "tcpSocket"]
        .into_iter()
        .find_map(|k| Some((k, probe.get(k)?.as_object()?)))?;
    let host = action
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !host.is_empty() || resolve(action.get("port")?, ports)? != u64::from(app_port) {
        return None;
    }
    let mut check = match kind {
        "httpGet" => json!({"httpGet": http_get(action, app_port)?}),
        _ => json!({"tcpSocket": {"port": app_port}}),
    };
    if let Some(t) = probe.get("timeoutSeconds") {
        check["timeoutSeconds"] = t.clone();
    }
    Some(check)
}

/// An `httpGet` action with the API server's defaults (`path: /`, `scheme: HTTP`) and only the
/// fields the sidecar reads; `None` for a scheme other than HTTP or HTTPS or a malformed header.
fn http_get(get: &Map<String, Value>, port: u16) -> Option<Value> {
    let scheme = get.get("scheme").map_or(Some("HTTP"), Value::as_str)?;
    if !matches!(scheme, "HTTP" | "HTTPS") {
        return None;
    }
    let path = get
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let mut out = json!({"port": port, "path": path.unwrap_or("/"), "scheme": scheme});
    let headers = get.get("httpHeaders").and_then(Value::as_array);
    if let Some(headers) = headers.filter(|h| !h.is_empty()) {
        let pairs = headers
            .iter()
            .map(|h| Some(json!({"name": h.get("name")?, "value": h.get("value")?})))
            .collect::<Option<Vec<Value>>>()?;
        out["httpHeaders"] = Value::Array(pairs);
    }
    Some(out)
}

/// A probe's `port` as a number: a number as is, a name through the container's
/// `ports[].name` → `containerPort`, or a number written as a string (kubelet's last resort).
fn resolve(port: &Value, ports: &Value) -> Option<u64> {
    match port {
        Value::Number(n) => n.as_u64(),
        Value::String(name) => ports
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("containerPort")?.as_u64())
            .or_else(|| name.parse().ok()),
        _ => None,
    }
}
