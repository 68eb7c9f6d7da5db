use super::admission::API_VERSION;
use super::*;
use crate::k8s::mutate::{Outcome, mutate};
use crate::k8s::policy::Policy;
use crate::k8s::settings::Namespace;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

fn fixture(name: &str) -> &'static str {
    match name {
        "pod" => include_str!("../../../tests/k8s/fixtures/pod.json"),
        "deployment-pod" => include_str!("../../../tests/k8s/fixtures/deployment-pod.json"),
        "already-injected" => include_str!("../../../tests/k8s/fixtures/already-injected.json"),
        "opted-out" => include_str!("../../../tests/k8s/fixtures/opted-out.json"),
        "not-a-pod" => include_str!("../../../tests/k8s/fixtures/not-a-pod.json"),
        "bad-annotations" => include_str!("../../../tests/k8s/fixtures/bad-annotations.json"),
        "malformed" => include_str!("../../../tests/k8s/fixtures/malformed.json"),
        other => panic!("no fixture {other}"),
    }
}

fn object(name: &str) -> Value {
    let doc: Value = serde_json::from_str(fixture(name)).unwrap();
    doc["request"]["object"].clone()
}

/// The patch of an answer, applied to the fixture's pod.
fn patched(name: &str, answer: &Value) -> Value {
    let b64 = answer["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut pod = object(name);
    json_patch::patch(&mut pod, &patch).unwrap();
    pod
}

#[test]
fn a_pod_gets_a_json_patch_equal_to_the_pure_mutation() {
    let (answer, outcome) = review(fixture("pod").as_bytes(), false, &Policy::default()).unwrap();
    assert_eq!(outcome, "injected");
    let rsp = &answer["response"];
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(rsp["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(rsp["allowed"], true);
    assert_eq!(rsp["patchType"], "JSONPatch");
    let expected = match mutate(
        &object("pod"),
        &Namespace::default(),
        &Policy::default(),
        "Pod/shop/service-b",
    )
    .unwrap()
    {
        Outcome::Injected(v) => v,
        other => panic!("{other:?}"),
    };
    let after = patched("pod", &answer);
    assert_eq!(after, expected);
    assert_eq!(
        after["spec"]["containers"][0]["futureField"],
        json!({"kept": true})
    );
}

#[test]
fn a_deployment_pod_in_an_enabled_namespace_gets_capture_and_keeps_its_init_order() {
    let (answer, outcome) = review(
        fixture("deployment-pod").as_bytes(),
        true,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(outcome, "injected");
    let after = patched("deployment-pod", &answer);
    let names: Vec<&str> = after["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["baton-init", "baton", "migrate"]);
    assert_eq!(
        after["metadata"]["ownerReferences"],
        object("deployment-pod")["metadata"]["ownerReferences"]
    );
    let env = &after["spec"]["containers"][0]["env"];
    assert_eq!(
        env[0],
        json!({"name": "HTTP_PROXY", "value": "http://corporate-proxy:3128"})
    );
    // Capture: the app's probe moved to the sidecar's admin port, the original handed over.
    assert_eq!(
        after["spec"]["containers"][0]["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/app/readyz", "port": 15020}, "periodSeconds": 5})
    );
    assert_eq!(
        after["spec"]["initContainers"][1]["env"],
        json!([{"name": "BATON_APP_PROBES", "value": r#"{"/app-health/app/readyz":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"}}}"#}])
    );

    // Through the pod-level path the same pod is not opted in: no patch.
    let (answer, outcome) = review(
        fixture("deployment-pod").as_bytes(),
        false,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(outcome, "skipped");
    assert!(answer["response"].get("patch").is_none());
}

#[test]
fn a_forged_marker_is_injected_and_an_opt_out_is_refused_where_the_namespace_enforces() {
    // `baton.dev/injected` without the sidecar proves nothing: the pod is injected.
    for enabled in [false, true] {
        let (answer, outcome) = review(
            fixture("already-injected").as_bytes(),
            enabled,
            &Policy::default(),
        )
        .unwrap();
        assert_eq!(outcome, "injected", "namespace enabled: {enabled}");
        let after = patched("already-injected", &answer);
        assert_eq!(after["spec"]["initContainers"][0]["name"], "baton");
    }
    // `disabled` opts a pod out only where its namespace did not opt in.
    let uid = "d15ab1ed-0000-4000-8000-000000000003";
    let (answer, outcome) =
        review(fixture("opted-out").as_bytes(), false, &Policy::default()).unwrap();
    assert_eq!(outcome, "skipped");
    assert_eq!(answer["response"], json!({"uid": uid, "allowed": true}));
    let (answer, outcome) =
        review(fixture("opted-out").as_bytes(), true, &Policy::default()).unwrap();
    assert_eq!(outcome, "denied");
    assert_eq!(answer["response"]["allowed"], false);
    let msg = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Pod/shop/service-b: baton.dev/inject: disabled is refused: the namespace enforces injection"),
        "{msg}"
    );
}

#[test]
fn bad_annotations_are_denied_with_every_problem_named() {
    let (answer, outcome) = review(
        fixture("bad-annotations").as_bytes(),
        false,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(outcome, "denied");
    let rsp = &answer["response"];
    assert_eq!(rsp["allowed"], false);
    assert_eq!(rsp["status"]["code"], 400);
    let msg = rsp["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Pod/shop/service-b: baton.dev/app-port"),
        "{msg}"
    );
    assert!(msg.contains("baton.dev/capture: must be iptables"), "{msg}");
}

#[test]
fn a_non_pod_review_gets_a_clear_status_and_a_broken_body_a_400() {
    let (answer, outcome) =
        review(fixture("not-a-pod").as_bytes(), false, &Policy::default()).unwrap();
    assert_eq!(outcome, "malformed");
    assert_eq!(
        answer["response"]["uid"],
        "decade00-0000-4000-8000-000000000004"
    );
    assert_eq!(answer["response"]["allowed"], false);
    let msg = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("Pods only, got Deployment"), "{msg}");

    assert!(matches!(
        review(fixture("malformed").as_bytes(), false, &Policy::default()),
        Err(Malformed::Json(_))
    ));
    let v1beta1 = fixture("pod").replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
    assert!(matches!(
        review(v1beta1.as_bytes(), false, &Policy::default()),
        Err(Malformed::Version)
    ));
    for request in [
        json!({}),
        json!({"uid": ""}),
        json!({"uid": "u".repeat(129)}),
    ] {
        let doc = json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request});
        assert!(matches!(
            review(doc.to_string().as_bytes(), false, &Policy::default()),
            Err(Malformed::Uid)
        ));
    }
}

#[test]
fn only_create_is_mutated() {
    let delete = fixture("pod").replace("\"CREATE\"", "\"DELETE\"");
    let (answer, outcome) = review(delete.as_bytes(), false, &Policy::default()).unwrap();
    assert_eq!(outcome, "ignored");
    assert!(answer["response"].get("patch").is_none());
}

async fn call(state: &Webhook, method: Method, path: &str, body: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let rsp = handle(state, req).await;
    let status = rsp.status();
    let bytes = rsp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn handler_routes_counts_outcomes_and_never_fails_on_garbage() {
    let w = Webhook::new();
    assert_eq!(
        call(&w, Method::GET, "/healthz", "").await.0,
        StatusCode::OK
    );
    let (status, body) = call(&w, Method::POST, "/mutate", fixture("pod")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"patchType\":\"JSONPatch\""));
    let (status, body) = call(&w, Method::POST, "/mutate", fixture("malformed")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.starts_with("admission review: body is not an AdmissionReview"),
        "{body}"
    );
    let (status, _) = call(
        &w,
        Method::POST,
        "/mutate/namespace-enabled",
        fixture("opted-out"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        call(&w, Method::GET, "/mutate", "").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&w, Method::POST, "/other", "").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        (
            w.reviews("injected"),
            w.reviews("malformed"),
            w.reviews("denied")
        ),
        (1, 1, 1)
    );
    let (_, metrics) = call(&w, Method::GET, "/metrics", "").await;
    assert!(
        metrics.contains("baton_webhook_reviews_total{outcome=\"injected\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_oversized_review_is_refused_before_parsing() {
    let w = Webhook::new();
    let huge = "x".repeat(MAX_REVIEW_BYTES + 1);
    let (status, body) = call(&w, Method::POST, "/mutate", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("larger than 1048576 bytes"), "{body}");
}

#[tokio::test]
async fn beyond_the_permits_a_review_gets_a_fast_429_with_retry_after() {
    let w = Webhook::with(Policy::default(), 2);
    let held = w.permits.try_acquire_many(2).unwrap();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/mutate")
        .body(Full::new(Bytes::from(fixture("pod"))))
        .unwrap();
    let rsp = handle(&w, req).await;
    assert_eq!(rsp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rsp.headers()[header::RETRY_AFTER], "1");
    assert_eq!(w.reviews("busy"), 1);
    // Health and metrics answer even then.
    assert_eq!(
        call(&w, Method::GET, "/healthz", "").await.0,
        StatusCode::OK
    );
    drop(held);
    let (status, body) = call(&w, Method::POST, "/mutate", fixture("pod")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A body that sends its first bytes and then nothing.
struct Stalled(bool);

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if std::mem::replace(&mut self.0, true) {
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            b"{\"api",
        )))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_gives_its_permit_back_after_the_deadline() {
    let w = Webhook::with(Policy::default(), 1);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/mutate")
        .body(Stalled(false))
        .unwrap();
    let rsp = handle(&w, req).await;
    assert_eq!(rsp.status(), StatusCode::REQUEST_TIMEOUT);
    let (status, body) = call(&w, Method::POST, "/mutate", fixture("pod")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_health_listener_serves_health_and_metrics_only() {
    let w = Webhook::new();
    let get = |method: Method, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from(fixture("pod"))))
            .unwrap()
    };
    assert_eq!(
        handle_health(&w, get(Method::GET, "/healthz"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        handle_health(&w, get(Method::GET, "/metrics"))
            .await
            .status(),
        StatusCode::OK
    );
    for path in ["/mutate", "/mutate/namespace-enabled"] {
        let rsp = handle_health(&w, get(Method::POST, path)).await;
        assert_eq!(rsp.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(w.reviews("injected"), 0);
}

/// A review of `pod` (a JSON text) as the API server would send it.
fn review_of(pod: &str) -> String {
    format!(
        r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {{
            "uid": "u-1", "kind": {{"group": "", "version": "v1", "kind": "Pod"}},
            "operation": "CREATE", "namespace": "shop", "object": {pod}}}}}"#
    )
}

#[test]
fn a_pod_beyond_the_value_budget_is_denied_without_being_built() {
    let flat = format!(
        r#"{{"metadata": {{"name": "p"}}, "spec": {{"x": [{}0]}}}}"#,
        "0,".repeat(100_000)
    );
    let (answer, outcome) = review(review_of(&flat).as_bytes(), true, &Policy::default()).unwrap();
    assert_eq!(outcome, "malformed");
    assert_eq!(answer["response"]["uid"], "u-1");
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 413);
    let msg = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("more than 32768 JSON values"), "{msg}");
}

#[test]
fn reviews_with_twin_members_or_wrong_types_are_refused() {
    let pod = r#"{"metadata": {"name": "p"}, "spec": {"containers": []}}"#;
    let good = review_of(pod);
    assert!(review(good.as_bytes(), false, &Policy::default()).is_ok());
    for bad in [
        good.replacen(r#""uid": "u-1","#, r#""uid": "u-1", "uid": "u-2","#, 1),
        good.replacen(
            r#""kind": "AdmissionReview","#,
            r#""kind": "AdmissionReview", "kind": "AdmissionReview","#,
            1,
        ),
        good.replacen(
            r#""operation": "CREATE","#,
            r#""operation": ["CREATE"],"#,
            1,
        ),
        good.replacen(r#""uid": "u-1","#, r#""uid": 7,"#, 1),
    ] {
        assert!(
            matches!(
                review(bad.as_bytes(), false, &Policy::default()),
                Err(Malformed::Json(_))
            ),
            "{bad}"
        );
    }
    // A twin member inside the pod is refused in the answer (the uid is known).
    let twin = review_of(r#"{"metadata": {"name": "p"}, "metadata": {"name": "q"}, "spec": {}}"#);
    let (answer, _) = review(twin.as_bytes(), false, &Policy::default()).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    // Errors that quote the input are cut short.
    let long = good.replacen(
        r#""uid": "u-1","#,
        &format!(r#""uid": "u-1", "kind": "{}","#, "k".repeat(5000)),
        1,
    );
    match review(long.as_bytes(), false, &Policy::default()) {
        Err(Malformed::Json(e)) => assert!(e.chars().count() <= 201, "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn annotations_the_sidecar_would_refuse_are_denied_with_its_reason() {
    for (routes, reason) in [
        (
            "service-b:8080/x?=service-b",
            "outbound.routes[0].host: required as host[:port]",
        ),
        (
            "service-b:8080=svc, service-c:8080=svc",
            "outbound.routes[1].name: duplicate route name",
        ),
    ] {
        let pod = json!({"metadata": {"name": "web", "annotations": {
            "baton.dev/issuer": "http://idp:9000", "baton.dev/audience": "web",
            "baton.dev/client-secret": "web-client", "baton.dev/outbound-routes": routes}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
        let (answer, outcome) = review(
            review_of(&pod.to_string()).as_bytes(),
            true,
            &Policy::default(),
        )
        .unwrap();
        assert_eq!(outcome, "denied");
        assert_eq!(answer["response"]["allowed"], false);
        let msg = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("Pod/shop/web: baton.dev/outbound-routes: the sidecar would refuse the config generated from the annotations: {reason}")),
            "{msg}"
        );
    }
}

#[test]
fn an_image_the_policy_does_not_allow_is_denied() {
    let pod = json!({"metadata": {"name": "web", "annotations": {
        "baton.dev/config": "web-baton", "baton.dev/capture": "iptables",
        "baton.dev/init-image": "attacker/iptables:1"}},
        "spec": {"securityContext": {"runAsUser": 1000},
                 "containers": [{"name": "app", "image": "app:1"}]}});
    let (answer, outcome) = review(
        review_of(&pod.to_string()).as_bytes(),
        true,
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(outcome, "denied");
    let msg = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("baton.dev/init-image: \"attacker/iptables:1\" is not an allowed image"),
        "{msg}"
    );
}

mod equivalence {
    use super::*;
    use proptest::prelude::*;

    fn pod() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec(("[a-z]{1,6}", prop::option::of(1u16..9000)), 1..4),
            prop::option::of("[a-z]{1,6}"),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(prop::collection::vec("[a-z/~.]{1,8}", 0..3)),
        )
            .prop_map(|(containers, routes, capture, labels, extra_keys)| {
                let containers: Vec<Value> = containers
                    .into_iter()
                    .map(|(name, port)| match port {
                        Some(p) => json!({"name": format!("c-{name}"), "image": "i:1", "ports": [{"containerPort": p}]}),
                        None => json!({"name": format!("c-{name}"), "image": "i:1"}),
                    })
                    .collect();
                let mut a = json!({
                    "baton.dev/inject": "enabled",
                    "baton.dev/issuer": "http://idp:9000",
                    "baton.dev/audience": "svc",
                    "baton.dev/client-secret": "svc-client",
                });
                if let Some(r) = routes {
                    a["baton.dev/outbound-routes"] = format!("{r}:8080={r}").into();
                }
                if capture {
                    a["baton.dev/capture"] = "iptables".into();
                }
                // Keys that need JSON-pointer escaping (`/`, `~`) must survive the patch.
                for k in extra_keys.into_iter().flatten() {
                    a[format!("example.com/{k}")] = "v".into();
                }
                let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"annotations": a},
                                   "spec": {"containers": containers,
                                            "securityContext": {"runAsUser": 1000}}});
                if labels {
                    p["metadata"]["labels"] = json!({"app": "svc"});
                }
                p
            })
    }

    proptest! {
        #[test]
        fn the_webhook_patch_yields_exactly_the_mutated_pod(pod in pod()) {
            let doc = json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": {
                "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE", "namespace": "ns", "object": pod}});
            let (answer, outcome) = review(doc.to_string().as_bytes(), false, &Policy::default()).unwrap();
            prop_assert_eq!(outcome, "injected");
            let b64 = answer["response"]["patch"].as_str().unwrap();
            let patch: json_patch::Patch =
                serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &patch).unwrap();
            let Outcome::Injected(want) = mutate(&pod, &Namespace::default(), &Policy::default(), "Pod/ns/?").unwrap() else {
                return Err(TestCaseError::fail("not injected"));
            };
            prop_assert_eq!(patched, want);
        }
    }
}
