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
//! - `baton.dev/injected: <version>`, a marker for people; nothing trusts it.
//!
//! Nothing the pod says about itself is trusted. A pod that already carries a `baton` init
//! container (injected by `baton inject`, or forged) has baton's containers, volumes and
//! annotations replaced by what this mutation makes of its annotations, so a stand-in sidecar
//! cannot skip injection; when that changes nothing the pod is reported as already injected
//! (which keeps both paths idempotent). In a namespace that opted in as a whole the pod cannot
//! opt out: `baton.dev/inject: disabled` and `hostNetwork` are refused there. With capture, every
//! container must run as a pinned uid other than the sidecar's and hold no capability that could
//! undo the capture rules.
//!
//! Nothing else changes: unknown fields pass through untouched because the pod stays JSON.

use super::policy::Policy;
use super::settings::{ConfigSource, Namespace, Settings, map_at};
use super::{
    ADMIN_PORT, APP_PROBES_ENV, CLIENT_SECRET_DIR, CONFIG_DIR, INBOUND_PORT, OUTBOUND_PORT,
    VERSION, annotation,
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
    /// The pod says `baton.dev/inject: disabled`, and its namespace does not enforce injection.
    Disabled,
    /// The pod already is what the injection would make of it (injected earlier, unchanged since).
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

/// Injects the sidecar into `pod` (`{metadata, spec, ..}`) when it or `ns` opts in, under the
/// operator's `policy`. `origin` names the object in errors (`Deployment/web`). Fails, listing
/// every problem, when an annotation is invalid, the pod collides with what would be added, or
/// it tries to leave a namespace that enforces injection.
pub fn mutate(
    pod: &Value,
    ns: &Namespace,
    policy: &Policy,
    origin: &str,
) -> Result<Outcome, ConfigErrors> {
    let annotations = map_at(pod, "annotations");
    let enforced = match decide(&annotations, &map_at(pod, "labels"), ns, origin)? {
        Decision::Inject { enforced } => enforced,
        Decision::Skip(skip) => return Ok(Outcome::Skipped(skip)),
    };
    let Some(spec) = pod.get("spec").and_then(Value::as_object) else {
        return Err(one(origin, "spec", "missing: not a pod template"));
    };
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        if enforced {
            return Err(one(
                origin,
                "spec.hostNetwork",
                "the namespace enforces injection (baton.dev/inject=enabled) and a pod on the \
                 node's network cannot be injected: run it in another namespace",
            ));
        }
        return Ok(Outcome::Skipped(Skip::HostNetwork));
    }
    let settings = Settings::from_annotations(&annotations, ns, policy, origin)?;
    let (mut out, carried) = strip(pod);
    let spec = object_at(&mut out, "spec");
    check_collisions(spec, &settings, policy, origin)?;

    let mut app_probes = referenced(spec, carried);
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
        first.push(init_container(&settings, policy));
    }
    first.push(sidecar_container(&settings, policy, &app_probes));
    array_at(spec, "initContainers").splice(0..0, first);
    array_at(spec, "volumes").extend(volumes(&settings));
    let meta = object_at(&mut out, "metadata");
    let notes = object_at(meta, "annotations");
    notes.insert(annotation::INJECTED.into(), VERSION.into());
    if let ConfigSource::Generated(yaml) = &settings.config {
        notes.insert(annotation::SIDECAR_CONFIG.into(), yaml.clone().into());
    }
    let out = Value::Object(out);
    if out == *pod {
        return Ok(Outcome::Skipped(Skip::AlreadyInjected));
    }
    Ok(Outcome::Injected(out))
}

/// What [`decide`] concluded.
enum Decision {
    /// Inject; `enforced` when the namespace opted in as a whole (no opt-out).
    Inject { enforced: bool },
    /// Leave the pod alone.
    Skip(Skip),
}

/// The opt-in rule. A namespace that says `enabled` (label, or annotation for `baton inject`)
/// enforces injection: its pods are injected whatever they say, and one that says `disabled` is
/// refused rather than silently injected. Elsewhere the pod decides; `disabled` on either its
/// annotation or its label wins over `enabled` on the other. Other values are errors.
fn decide(
    annotations: &Map<String, Value>,
    labels: &Map<String, Value>,
    ns: &Namespace,
    origin: &str,
) -> Result<Decision, ConfigErrors> {
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
    let said = [
        read(annotations.get(annotation::INJECT)),
        read(labels.get(annotation::INJECT)),
    ];
    let pod = if said.contains(&Some(false)) {
        Some(false)
    } else {
        said.into_iter().flatten().next()
    };
    // The label is what the webhook's namespace selector matches, so it speaks first.
    let ns = read(
        ns.labels
            .get(annotation::INJECT)
            .or_else(|| ns.annotations.get(annotation::INJECT)),
    );
    let decision = match (pod, ns) {
        (Some(false), Some(true)) => {
            p.push(
                annotation::INJECT,
                "disabled is refused: the namespace enforces injection (baton.dev/inject=enabled \
                 on the namespace), so its pods cannot opt out; run the pod in another namespace",
            );
            Decision::Skip(Skip::Disabled)
        }
        (_, Some(true)) => Decision::Inject { enforced: true },
        (Some(true), _) => Decision::Inject { enforced: false },
        (Some(false), _) => Decision::Skip(Skip::Disabled),
        (None, _) => Decision::Skip(Skip::NotEnabled),
    };
    p.finish(decision)
}

/// The pod without what an earlier injection added, when it carries a `baton` init container:
/// baton's init containers, volumes and annotations go, and the probe table of the old sidecar
/// is returned so that app probes it already rewrote keep working. Without a `baton` init
/// container nothing is removed: baton's names are then collisions, and a lone
/// `baton.dev/injected` marker is simply overwritten.
fn strip(pod: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let mut out = pod.as_object().cloned().unwrap_or_default();
    let mut carried = Map::new();
    let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) else {
        return (out, carried);
    };
    let is = |c: &Value, name: &str| c.get("name").and_then(Value::as_str) == Some(name);
    let Some(inits) = spec.get_mut("initContainers").and_then(Value::as_array_mut) else {
        return (out, carried);
    };
    let Some(old) = inits.iter().find(|c| is(c, SIDECAR)) else {
        return (out, carried);
    };
    let table = old
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| is(e, APP_PROBES_ENV))
        .and_then(|e| e.get("value")?.as_str())
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok());
    carried = table.unwrap_or_default();
    inits.retain(|c| !is(c, SIDECAR) && !is(c, INIT));
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        volumes.retain(|v| !is(v, CONFIG_VOLUME) && !is(v, SECRET_VOLUME));
    }
    if let Some(notes) = out
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        notes.remove(annotation::INJECTED);
        notes.remove(annotation::SIDECAR_CONFIG);
    }
    (out, carried)
}

/// The entries of a carried probe table that some app container's probe still points at.
fn referenced(spec: &Map<String, Value>, mut carried: Map<String, Value>) -> Map<String, Value> {
    let mut paths = std::collections::BTreeSet::new();
    for c in spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for field in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let get = c.get(field).and_then(|p| p.get("httpGet"));
            if get.and_then(|g| g.get("port")).and_then(Value::as_u64) == Some(ADMIN_PORT.into())
                && let Some(path) = get.and_then(|g| g.get("path")).and_then(Value::as_str)
            {
                paths.insert(path.to_owned());
            }
        }
    }
    carried.retain(|path, probe| paths.contains(path) && probe.is_object());
    carried
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
fn sidecar_container(s: &Settings, policy: &Policy, app_probes: &Map<String, Value>) -> Value {
    let mut mounts =
        vec![json!({"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": true})];
    if s.client_secret.is_some() {
        mounts
            .push(json!({"name": SECRET_VOLUME, "mountPath": CLIENT_SECRET_DIR, "readOnly": true}));
    }
    if let Some(h) = &s.spiffe {
        // The pod's own volume (the helper writes it): only mounted here, never defined.
        mounts.push(json!({"name": h.volume, "mountPath": super::SPIFFE_DIR, "readOnly": true}));
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
fn init_container(s: &Settings, policy: &Policy) -> Value {
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
