//! What a pod says about itself and what it is not allowed to decide: its uid under capture, its
//! way out of an enforcing namespace, a forged marker or stand-in sidecar.

use super::*;

fn capture() -> Value {
    let mut a = enabled();
    a["baton.dev/capture"] = "iptables".into();
    a
}

fn refusal(p: &Value, ns: &Namespace) -> String {
    mutate(p, ns, &Policy::default(), "Pod/web")
        .unwrap_err()
        .to_string()
}

#[test]
fn under_capture_every_container_pins_a_uid_other_than_the_sidecars() {
    // No uid anywhere: the image's USER decides, which admission cannot know.
    let mut p = pod(capture());
    p["spec"].as_object_mut().unwrap().remove("securityContext");
    p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m:1"}]);
    let text = refusal(&p, &Namespace::default());
    for field in [
        "spec.containers[0].securityContext.runAsUser: required with capture",
        "spec.initContainers[0].securityContext.runAsUser: required with capture",
    ] {
        assert!(text.contains(field), "{field} missing:\n{text}");
    }
    assert!(text.contains("image's default USER cannot be known at admission"));

    // The sidecar's uid, on the container or inherited from the pod.
    let mut own = pod(capture());
    own["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 15532});
    assert!(
        refusal(&own, &Namespace::default())
            .contains("spec.containers[0].securityContext.runAsUser: 15532 is the sidecar's uid")
    );
    let mut inherited = pod(capture());
    inherited["spec"]["securityContext"] = json!({"runAsUser": 15532});
    assert!(
        refusal(&inherited, &Namespace::default())
            .contains("spec.securityContext.runAsUser: 15532 is the sidecar's uid")
    );

    // Overriding the pod's value per container is what counts, both ways.
    let mut overridden = pod(capture());
    overridden["spec"]["securityContext"] = json!({"runAsUser": 15532});
    overridden["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 1000});
    assert!(
        mutate(
            &overridden,
            &Namespace::default(),
            &Policy::default(),
            "Pod/web"
        )
        .is_ok()
    );
    let mut pinned = pod(capture());
    pinned["spec"]["securityContext"] = json!({"runAsUser": 1000});
    pinned["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 15532});
    assert!(refusal(&pinned, &Namespace::default()).contains("15532 is the sidecar's uid"));

    // Distroless `nonroot` (65532) is an ordinary app uid now.
    let mut nonroot = pod(capture());
    nonroot["spec"]["securityContext"] = json!({"runAsUser": 65532});
    assert!(
        mutate(
            &nonroot,
            &Namespace::default(),
            &Policy::default(),
            "Pod/web"
        )
        .is_ok()
    );

    // Without capture there is no exemption to share, so nothing is required.
    let mut light = pod(enabled());
    light["spec"]
        .as_object_mut()
        .unwrap()
        .remove("securityContext");
    assert!(mutate(&light, &Namespace::default(), &Policy::default(), "Pod/web").is_ok());
}

#[test]
fn under_capture_no_container_may_hold_what_could_undo_the_rules() {
    for (sc, field) in [
        (json!({"privileged": true}), "securityContext.privileged"),
        (
            json!({"capabilities": {"add": ["NET_ADMIN"]}}),
            "capabilities.add: NET_ADMIN",
        ),
        (
            json!({"capabilities": {"add": ["net_admin"]}}),
            "capabilities.add: net_admin",
        ),
        (
            json!({"capabilities": {"add": ["CAP_SYS_ADMIN"]}}),
            "capabilities.add: CAP_SYS_ADMIN",
        ),
        (
            json!({"capabilities": {"add": ["ALL"]}}),
            "capabilities.add: ALL",
        ),
        (
            json!({"capabilities": {"add": [" all "]}}),
            "capabilities.add:  all ",
        ),
    ] {
        let mut p = pod(capture());
        let mut sc = sc;
        sc["runAsUser"] = 1000.into();
        p["spec"]["containers"][0]["securityContext"] = sc;
        let text = refusal(&p, &Namespace::default());
        assert!(text.contains(field), "{field} missing:\n{text}");
    }
    let mut harmless = pod(capture());
    harmless["spec"]["containers"][0]["securityContext"] =
        json!({"runAsUser": 1000, "capabilities": {"add": ["NET_BIND_SERVICE"]}});
    assert!(
        mutate(
            &harmless,
            &Namespace::default(),
            &Policy::default(),
            "Pod/web"
        )
        .is_ok()
    );
}

#[test]
fn the_operators_uid_is_the_sidecars_and_the_one_capture_exempts() {
    let policy = Policy {
        sidecar_uid: 4242,
        ..Policy::default()
    };
    let out = match mutate(&pod(capture()), &Namespace::default(), &policy, "Pod/web").unwrap() {
        Outcome::Injected(v) => v,
        other => panic!("{other:?}"),
    };
    let sidecar = container(&out, "initContainers", "baton");
    assert_eq!(sidecar["securityContext"]["runAsUser"], 4242);
    let args = container(&out, "initContainers", "baton-init")["args"].clone();
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--proxy-uid").unwrap();
    assert_eq!(args[at + 1], "4242");
    let mut clash = pod(capture());
    clash["spec"]["securityContext"] = json!({"runAsUser": 4242});
    let text = mutate(&clash, &Namespace::default(), &policy, "Pod/web")
        .unwrap_err()
        .to_string();
    assert!(text.contains("4242 is the sidecar's uid"), "{text}");
}

#[test]
fn a_namespace_that_opted_in_enforces_injection() {
    let plain = pod(
        json!({"baton.dev/issuer": "http://idp:8080", "baton.dev/audience": "web",
               "baton.dev/client-secret": "web-client"}),
    );
    let enforced = Namespace::enabled();
    let annotated = Namespace::from_object(
        &json!({"metadata": {"annotations": {"baton.dev/inject": "enabled"}}}),
    );
    for ns in [&enforced, &annotated] {
        for (place, key) in [
            ("annotations", "baton.dev/inject"),
            ("labels", "baton.dev/inject"),
        ] {
            let mut p = plain.clone();
            p["metadata"][place][key] = "disabled".into();
            let text = refusal(&p, ns);
            assert!(
                text.contains("Pod/web: baton.dev/inject: disabled is refused: the namespace enforces injection"),
                "{text}"
            );
        }
        // `enabled` on one and `disabled` on the other is still an attempt to opt out.
        let mut mixed = plain.clone();
        mixed["metadata"]["labels"]["baton.dev/inject"] = "enabled".into();
        mixed["metadata"]["annotations"]["baton.dev/inject"] = "disabled".into();
        assert!(refusal(&mixed, ns).contains("disabled is refused"));
        let mut host = plain.clone();
        host["spec"]["hostNetwork"] = true.into();
        assert!(refusal(&host, ns).contains("spec.hostNetwork: the namespace enforces injection"));
    }
    // Where the namespace did not opt in, the pod decides, and `disabled` wins over `enabled`.
    let mut mixed = pod(enabled());
    mixed["metadata"]["labels"]["baton.dev/inject"] = "disabled".into();
    assert_eq!(
        mutate(&mixed, &Namespace::default(), &Policy::default(), "Pod/web").unwrap(),
        Outcome::Skipped(Skip::Disabled)
    );
}

#[test]
fn a_forged_marker_does_not_skip_injection() {
    for ns in [Namespace::default(), Namespace::enabled()] {
        let mut p = pod(enabled());
        p["metadata"]["annotations"]["baton.dev/injected"] = VERSION.into();
        p["metadata"]["annotations"]["baton.dev/sidecar-config"] = "mode: observe\n".into();
        let out = injected(&p, &ns);
        assert_eq!(
            container(&out, "initContainers", "baton")["image"],
            "baton:dev"
        );
        let yaml = out["metadata"]["annotations"]["baton.dev/sidecar-config"]
            .as_str()
            .unwrap();
        assert!(yaml.starts_with("# generated by baton") && !yaml.contains("observe"));
    }
}

#[test]
fn a_stand_in_sidecar_is_replaced_by_the_real_one() {
    let mut p = pod(capture());
    p["metadata"]["annotations"]["baton.dev/injected"] = VERSION.into();
    p["metadata"]["annotations"]["baton.dev/sidecar-config"] = "mode: observe\n".into();
    p["spec"]["initContainers"] = json!([
        {"name": "baton", "image": "busybox:1.36", "command": ["sleep", "infinity"],
         "restartPolicy": "Always"},
        {"name": "migrate", "image": "m:1"},
    ]);
    p["spec"]["volumes"] =
        json!([{"name": "data", "emptyDir": {}}, {"name": "baton-config", "emptyDir": {}}]);
    let out = injected(&p, &Namespace::enabled());
    let names: Vec<&str> = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["baton-init", "baton", "migrate"]);
    let real = injected(&pod(capture()), &Namespace::enabled());
    assert_eq!(
        container(&out, "initContainers", "baton"),
        container(&real, "initContainers", "baton")
    );
    assert_eq!(
        out["metadata"]["annotations"]["baton.dev/sidecar-config"],
        real["metadata"]["annotations"]["baton.dev/sidecar-config"]
    );
    let volumes: Vec<&str> = out["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, ["data", "baton-config", "baton-client-secret"]);
    assert!(out["spec"]["volumes"][1].get("emptyDir").is_none());
}

#[test]
fn an_earlier_injection_is_redone_keeping_the_app_probes_it_moved() {
    let first = injected(&probed_pod(true), &Namespace::default());
    // Injected again unchanged: nothing to do.
    assert_eq!(
        mutate(&first, &Namespace::default(), &Policy::default(), "Pod/web").unwrap(),
        Outcome::Skipped(Skip::AlreadyInjected)
    );
    // Injected by an injector with another uid: redone with this one's, probes kept working.
    let older = Policy {
        sidecar_uid: 4242,
        ..Policy::default()
    };
    let old = match mutate(&probed_pod(true), &Namespace::default(), &older, "Pod/web").unwrap() {
        Outcome::Injected(v) => v,
        other => panic!("{other:?}"),
    };
    let redone = injected(&old, &Namespace::default());
    assert_eq!(redone, first);
    assert_eq!(
        container(&redone, "initContainers", "baton")["env"],
        container(&first, "initContainers", "baton")["env"]
    );
    // A probe table entry no app probe points at is not carried over.
    let mut extra = old.clone();
    let sidecar = extra["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "baton")
        .unwrap();
    let mut table: Value =
        serde_json::from_str(sidecar["env"][0]["value"].as_str().unwrap()).unwrap();
    table["/app-health/ghost/livez"] = json!({"tcpSocket": {"port": 22}});
    sidecar["env"][0]["value"] = table.to_string().into();
    assert_eq!(injected(&extra, &Namespace::default()), first);
}
