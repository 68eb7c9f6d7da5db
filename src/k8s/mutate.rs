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

mod checks;
mod containers;
mod decide;
mod probes;
mod reinject;

use super::VERSION;
use super::annotation;
use super::policy::Policy;
use super::settings::{ConfigSource, Namespace, Settings, map_at};
use crate::config::{ConfigErrors, Problems};
use checks::check_collisions;
use containers::{add_proxy_env, init_container, sidecar_container, volumes};
use decide::{Decision, decide};
use reinject::{referenced, strip};
use serde_json::{Map, Value};

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

/// A single problem with `field` of `origin`.
fn one(origin: &str, field: &str, reason: &str) -> ConfigErrors {
    let mut p = Problems::new(origin);
    p.push(field, reason);
    match p.finish(()) {
        Err(e) => e,
        Ok(()) => ConfigErrors(Vec::new()),
    }
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
