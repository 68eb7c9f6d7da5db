use super::*;
use crate::k8s::policy::Policy;

const STREAM: &str = r#"# a comment before the first document
apiVersion: v1
kind: Service
metadata:
  name: web   # kept byte for byte
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: baton-inbound}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        baton.dev/inject: enabled
        baton.dev/issuer: http://idp:8080
        baton.dev/audience: web
        baton.dev/client-secret: web-client
    spec:
      containers:
        - name: app
          image: web:1
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  namespace: jobs
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            baton.dev/issuer: http://idp:8080
            baton.dev/audience: nightly
            baton.dev/client-secret: nightly-client
        spec:
          restartPolicy: Never
          containers: [{name: job, image: job:1}]
---
"#;

fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Option<Value>>(yaml)
        .unwrap()
        .into_iter()
        .flatten()
        .collect()
}

#[test]
fn opted_in_workloads_are_injected_and_the_rest_pass_through_byte_for_byte() {
    let out = inject_stream(STREAM, &Policy::default()).unwrap();
    assert!(out.yaml.starts_with(
        "# a comment before the first document\napiVersion: v1\nkind: Service\nmetadata:\n  name: web   # kept byte for byte\n"
    ));
    let d = docs(&out.yaml);
    assert_eq!(d.len(), 3);
    let tpl = &d[1]["spec"]["template"];
    assert_eq!(tpl["spec"]["initContainers"][0]["name"], "baton");
    assert_eq!(
        tpl["metadata"]["annotations"]["baton.dev/injected"],
        crate::k8s::VERSION
    );
    assert!(
        d[2]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            .get("initContainers")
            .is_none()
    );
    assert_eq!(
        out.verdicts,
        [
            Verdict {
                origin: "Deployment/web".into(),
                skipped: None
            },
            Verdict {
                origin: "CronJob/jobs/nightly".into(),
                skipped: Some(Skip::NotEnabled)
            },
        ]
    );
}

#[test]
fn a_namespace_document_opts_in_its_workloads() {
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: jobs\n  labels:\n    baton.dev/inject: enabled\n---\n";
    let out = inject_stream(&format!("{ns}{STREAM}"), &Policy::default()).unwrap();
    let d = docs(&out.yaml);
    let job = &d[3]["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(job["spec"]["initContainers"][0]["restartPolicy"], "Always");
    assert_eq!(job["spec"]["restartPolicy"], "Never");
}

#[test]
fn injecting_twice_changes_nothing() {
    let once = inject_stream(STREAM, &Policy::default()).unwrap().yaml;
    let twice = inject_stream(&once, &Policy::default()).unwrap();
    assert_eq!(twice.yaml, once);
    assert_eq!(twice.verdicts[0].skipped, Some(Skip::AlreadyInjected));
}

#[test]
fn list_items_are_injected() {
    let list = r#"apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata:
      name: p
      annotations: {baton.dev/inject: enabled, baton.dev/config: p-baton}
    spec:
      containers: [{name: app, image: a:1}]
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: p-baton}
    data: {sidecar.yaml: "audience: p"}
"#;
    let out = inject_stream(list, &Policy::default()).unwrap();
    let d = docs(&out.yaml);
    assert_eq!(
        d[0]["items"][0]["spec"]["initContainers"][0]["name"],
        "baton"
    );
    assert_eq!(d[0]["items"][1]["data"]["sidecar.yaml"], "audience: p");
}

#[test]
fn errors_name_the_document_or_every_bad_workload() {
    let e = inject_stream("kind: Pod\n---\nkind: [unclosed\n", &Policy::default()).unwrap_err();
    assert!(e.to_string().starts_with("document 2: "), "{e}");
    let bad = STREAM.replace("baton.dev/audience: web", "baton.dev/app-port: \"70000\"");
    let e = inject_stream(&bad, &Policy::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Deployment/web: baton.dev/app-port: \"70000\" is not a port number"),
        "{e}"
    );
    assert!(
        e.contains("Deployment/web: baton.dev/audience: required"),
        "{e}"
    );
}

#[test]
fn input_beyond_the_size_or_depth_bound_is_refused() {
    // The parse stops at the 129th level, whatever follows. It recurses once per level: run it
    // with the stack of a main thread, as `baton inject` does (a debug build needs about 4 MiB
    // at the bound, a release build 512 KiB).
    let deep = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(|| {
            for deep in [
                format!("a: {}", "[".repeat(100_000)),
                format!("a: {}", "{a: ".repeat(100_000)),
                format!("{}x", "- ".repeat(100_000)),
                format!("kind: Pod\n---\nb: {}", "[".repeat(100_000)),
                format!("a:\n{}x", "- ".repeat(128)),
            ] {
                let e = inject_stream(&deep, &Policy::default())
                    .unwrap_err()
                    .to_string();
                assert!(e.starts_with("document "), "{e}");
                assert!(
                    e.contains("nested deeper than 128 levels at line ")
                        || e.contains("recursion limit exceeded at line 1"),
                    "{e}"
                );
            }
            // Deep but within the bound is fine.
            for ok in [
                format!("a: {}{}\n", "[".repeat(127), "]".repeat(127)),
                format!("{}x\n", "- ".repeat(128)),
            ] {
                assert!(inject_stream(&ok, &Policy::default()).is_ok());
            }
        })
        .expect("spawn");
    deep.join().expect("within the stack");
    let huge = "#".repeat(MAX_INPUT_BYTES + 1);
    let e = inject_stream(&huge, &Policy::default())
        .unwrap_err()
        .to_string();
    assert_eq!(e, format!("input larger than {MAX_INPUT_BYTES} bytes"));
}

#[test]
fn a_namespace_document_enforces_injection_on_its_workloads() {
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: jobs\n  labels:\n    baton.dev/inject: enabled\n---\n";
    let out_out = STREAM.replace(
        "            baton.dev/issuer: http://idp:8080\n            baton.dev/audience: nightly",
        "            baton.dev/inject: disabled\n            baton.dev/issuer: http://idp:8080\n            baton.dev/audience: nightly",
    );
    assert_ne!(out_out, STREAM);
    let e = inject_stream(&format!("{ns}{out_out}"), &Policy::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("CronJob/jobs/nightly: baton.dev/inject: disabled is refused"),
        "{e}"
    );
    // Without the Namespace in the stream, the opt-out stands.
    let out = inject_stream(&out_out, &Policy::default()).unwrap();
    assert_eq!(out.verdicts[1].skipped, Some(Skip::Disabled));
}

#[test]
fn document_markers_split_only_at_line_start() {
    let text = "a: |\n  ---not a marker\n  x\n---\nb: 1\n--- # comment\nc: 2\n";
    let parts: Vec<(&str, &str)> = split_documents(text)
        .iter()
        .map(|d| (d.separator, d.body))
        .collect();
    assert_eq!(
        parts,
        [
            ("", "a: |\n  ---not a marker\n  x\n"),
            ("---\n", "b: 1\n"),
            ("--- # comment\n", "c: 2\n")
        ]
    );
    assert_eq!(template_pointer("StatefulSet"), Some("/spec/template"));
    assert_eq!(template_pointer("Service"), None);
}
