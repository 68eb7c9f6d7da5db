//! The opt-in rule: whether a pod is injected, from its own and its namespace's say.

use super::Skip;
use crate::config::{ConfigErrors, Problems};
use crate::k8s::annotation;
use crate::k8s::settings::Namespace;
use serde_json::{Map, Value};

/// What [`decide`] concluded.
pub(super) enum Decision {
    /// Inject; `enforced` when the namespace opted in as a whole (no opt-out).
    Inject { enforced: bool },
    /// Leave the pod alone.
    Skip(Skip),
}

/// The opt-in rule. A namespace that says `enabled` (label, or annotation for `baton inject`)
/// enforces injection: its pods are injected whatever they say, and one that says `disabled` is
/// refused rather than silently injected. Elsewhere the pod decides; `disabled` on either its
/// annotation or its label wins over `enabled` on the other. Other values are errors.
pub(super) fn decide(
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
