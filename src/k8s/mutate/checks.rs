//! What a pod must satisfy before it is injected: baton's names and ports free, and, with
//! capture, every container distinguishable from the sidecar and unable to undo the rules.

use super::{CONFIG_VOLUME, INIT, SECRET_VOLUME, SIDECAR};
use crate::config::{ConfigErrors, Problems};
use crate::k8s::policy::Policy;
use crate::k8s::settings::Settings;
use crate::k8s::{ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT};
use serde_json::{Map, Value};

/// Names and ports the injection would take must be free, and capture must be able to tell the
/// sidecar's traffic from the app's.
pub(super) fn check_collisions(
    spec: &Map<String, Value>,
    settings: &Settings,
    policy: &Policy,
    origin: &str,
) -> Result<(), ConfigErrors> {
    let mut p = Problems::new(origin);
    let sidecar_ports = [INBOUND_PORT, OUTBOUND_PORT, ADMIN_PORT];
    let pod_uid = spec
        .get("securityContext")
        .and_then(|s| s.get("runAsUser"))
        .and_then(Value::as_i64);
    for list in ["initContainers", "containers"] {
        let containers = spec.get(list).and_then(Value::as_array);
        for (i, c) in containers.into_iter().flatten().enumerate() {
            let at = |field: &str| format!("spec.{list}[{i}].{field}");
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            if name == SIDECAR || name == INIT {
                p.push(at("name"), format!("{name} is reserved for baton"));
            }
            let ports = c.get("ports").and_then(Value::as_array);
            for (j, port) in ports.into_iter().flatten().enumerate() {
                let n = port.get("containerPort").and_then(Value::as_u64);
                if n.is_some_and(|n| sidecar_ports.iter().any(|&s| u64::from(s) == n)) {
                    p.push(
                        at(&format!("ports[{j}].containerPort")),
                        "taken by the baton sidecar (15001, 15006, 15020)",
                    );
                }
            }
            if settings.capture.is_some() {
                check_capturable(&mut p, c, pod_uid, policy.sidecar_uid, &at);
            }
        }
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

/// Capture exempts the sidecar's uid, so a container that could run as it would not be
/// redirected. A container runs as its own `runAsUser`, else the pod's, else the image's default
/// `USER`, which admission cannot know: the API server has only the image's name, the image is
/// resolved by the node when it pulls (a tag can move in between), and the webhook reads no
/// registry. So every container must pin a uid (here or in `spec.securityContext`) other than the
/// sidecar's. A container that may change the pod's network rules (privileged, or `NET_ADMIN`,
/// `SYS_ADMIN`, `ALL`) could remove the capture rules and is refused too.
fn check_capturable(
    p: &mut Problems,
    c: &Value,
    pod_uid: Option<i64>,
    sidecar_uid: i64,
    at: &dyn Fn(&str) -> String,
) {
    let sc = c.get("securityContext");
    let own = sc.and_then(|s| s.get("runAsUser"));
    match own.and_then(Value::as_i64).or(pod_uid) {
        Some(uid) if uid == sidecar_uid => {
            let field = if own.is_some() {
                at("securityContext.runAsUser")
            } else {
                "spec.securityContext.runAsUser".to_owned()
            };
            p.push(
                field,
                format!("{uid} is the sidecar's uid: capture would not redirect this container"),
            );
        }
        Some(_) => {}
        None => p.push(
            at("securityContext.runAsUser"),
            format!(
                "required with capture (here or in spec.securityContext), and not \
                 {sidecar_uid}: capture exempts the sidecar's uid, and the image's default USER \
                 cannot be known at admission"
            ),
        ),
    }
    if sc
        .and_then(|s| s.get("privileged"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        p.push(
            at("securityContext.privileged"),
            "a privileged container could remove the capture rules",
        );
    }
    let added = sc
        .and_then(|s| s.pointer("/capabilities/add"))
        .and_then(Value::as_array);
    for cap in added.into_iter().flatten().filter_map(Value::as_str) {
        let name = cap.trim().to_ascii_uppercase();
        let name = name.strip_prefix("CAP_").unwrap_or(&name);
        if matches!(name, "NET_ADMIN" | "SYS_ADMIN" | "ALL") {
            p.push(
                at("securityContext.capabilities.add"),
                format!("{cap} could remove the capture rules"),
            );
        }
    }
}
