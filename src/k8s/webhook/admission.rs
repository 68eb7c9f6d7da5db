//! One AdmissionReview answered: the review read as the typed shape of [`super::parse`], the pod
//! mutated by [`crate::k8s::mutate::mutate`], and the answer carrying the RFC 6902 JSONPatch from
//! the pod to its mutation, or a refusal with a status.

use super::parse;
use crate::k8s::mutate::{Outcome, mutate};
use crate::k8s::policy::Policy;
use crate::k8s::settings::Namespace;
use base64::Engine;
use serde_json::{Value, json};

/// The AdmissionReview version read and answered.
pub(super) const API_VERSION: &str = "admission.k8s.io/v1";
/// The longest `request.uid` answered: the API server sends a 36-character UUID.
const MAX_UID_CHARS: usize = 128;
/// The longest error text echoed back or logged: parse errors may quote the input.
const MAX_ERROR_CHARS: usize = 200;

/// Why a request is not a review we can answer: HTTP 400 with this text.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    /// The body is not JSON, or not shaped as an AdmissionReview (the parser's reason, cut short).
    #[error("admission review: body is not an AdmissionReview: {0}")]
    Json(String),
    /// Not `admission.k8s.io/v1` `AdmissionReview`.
    #[error("admission review: expected apiVersion {API_VERSION} and kind AdmissionReview")]
    Version,
    /// `request.uid` missing, empty or longer than any the API server sends: there is nothing
    /// to answer.
    #[error("admission review: request.uid is missing or not a uid")]
    Uid,
}

/// A parser's error, at most [`MAX_ERROR_CHARS`] characters: it may quote the input.
fn short(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Answers one AdmissionReview body under `policy`. `namespace_enabled` tells whether the
/// namespace opted in (and so enforces injection). A well-formed review always gets an
/// AdmissionReview back (`allowed: false` with a status for a non-Pod, an oversized pod or an
/// invalid annotation); only a body with no `uid` to answer is an error.
pub fn review(
    body: &[u8],
    namespace_enabled: bool,
    policy: &Policy,
) -> Result<(Value, &'static str), Malformed> {
    let doc: parse::Review<'_> =
        serde_json::from_slice(body).map_err(|e| Malformed::Json(short(&e)))?;
    if doc.api_version.as_deref() != Some(API_VERSION)
        || doc.kind.as_deref() != Some("AdmissionReview")
    {
        return Err(Malformed::Version);
    }
    let req = doc.request.ok_or(Malformed::Uid)?;
    let uid = req
        .uid
        .filter(|u| !u.is_empty() && u.chars().count() <= MAX_UID_CHARS)
        .ok_or(Malformed::Uid)?;
    let answer = |mut response: Value| {
        response["uid"] = uid.as_str().into();
        json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response})
    };
    let deny = |code: u16, message: String| {
        answer(json!({"allowed": false, "status": {"code": code, "message": message}}))
    };

    let kind = req.kind.unwrap_or_default();
    if !(kind.group.is_empty() && kind.kind == "Pod") {
        let got = if kind.kind.is_empty() {
            "no kind".to_owned()
        } else {
            kind.kind.chars().take(64).collect()
        };
        let msg = format!(
            "baton webhook mutates Pods only, got {got}; fix the MutatingWebhookConfiguration rules"
        );
        return Ok((deny(400, msg), "malformed"));
    }
    if req.operation.as_deref() != Some("CREATE") {
        return Ok((answer(json!({"allowed": true})), "ignored"));
    }
    let Some(raw) = req.object else {
        return Ok((
            deny(400, "admission review: request.object is missing".into()),
            "malformed",
        ));
    };
    let pod = match parse::pod(raw) {
        Ok(pod) if pod.is_object() => pod,
        Ok(_) => {
            let msg = "admission review: request.object is not an object".to_owned();
            return Ok((deny(400, msg), "malformed"));
        }
        Err(e) => {
            let msg = format!("admission review: request.object: {}", short(&e));
            return Ok((deny(413, msg), "malformed"));
        }
    };
    let ns_name = req.namespace.as_deref().unwrap_or("default");
    let name = pod
        .pointer("/metadata/name")
        .or_else(|| pod.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    let origin = format!("Pod/{ns_name}/{name}");
    let ns = if namespace_enabled {
        Namespace::enabled()
    } else {
        Namespace::default()
    };
    Ok(match mutate(&pod, &ns, policy, &origin) {
        Ok(Outcome::Injected(new)) => {
            let patch = json_patch::diff(&pod, &new);
            let bytes = serde_json::to_vec(&patch).unwrap_or_default();
            let patch = base64::engine::general_purpose::STANDARD.encode(bytes);
            let rsp = json!({"allowed": true, "patchType": "JSONPatch", "patch": patch});
            (answer(rsp), "injected")
        }
        Ok(Outcome::Skipped(_)) => (answer(json!({"allowed": true})), "skipped"),
        Err(problems) => (deny(400, problems.to_string()), "denied"),
    })
}
