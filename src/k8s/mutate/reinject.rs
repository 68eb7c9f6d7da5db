//! A pod injected before: baton's earlier additions stripped, and the probe table its app
//! probes still point at carried over.

use super::{CONFIG_VOLUME, INIT, SECRET_VOLUME, SIDECAR};
use crate::k8s::{ADMIN_PORT, APP_PROBES_ENV, annotation};
use serde_json::{Map, Value};

/// The pod without what an earlier injection added, when it carries a `baton` init container:
/// baton's init containers, volumes and annotations go, and the probe table of the old sidecar
/// is returned so that app probes it already rewrote keep working. Without a `baton` init
/// container nothing is removed: baton's names are then collisions, and a lone
/// `baton.dev/injected` marker is simply overwritten.
pub(super) fn strip(pod: &Value) -> (Map<String, Value>, Map<String, Value>) {
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
pub(super) fn referenced(
    spec: &Map<String, Value>,
    mut carried: Map<String, Value>,
) -> Map<String, Value> {
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
