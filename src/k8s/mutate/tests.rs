use super::*;
use proptest::prelude::*;
use serde_json::json;

mod trust;

fn pod(annotations: Value) -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}, "annotations": annotations},
        "spec": {
            "containers": [{
                "name": "app",
                "image": "web:1",
                "ports": [{"name": "http", "containerPort": 8080}],
                "someFutureField": {"kept": [1, 2]},
            }],
            "terminationGracePeriodSeconds": 45,
            "securityContext": {"runAsUser": 1000},
        },
    })
}

fn enabled() -> Value {
    json!({
        "baton.dev/inject": "enabled",
        "baton.dev/issuer": "http://idp.baton-system:8080",
        "baton.dev/audience": "web",
        "baton.dev/client-secret": "web-client",
    })
}

fn injected(pod: &Value, ns: &Namespace) -> Value {
    match mutate(pod, ns, &Policy::default(), "Pod/web").unwrap() {
        Outcome::Injected(v) => v,
        other => panic!("not injected: {other:?}"),
    }
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} {name}"))
}

#[test]
fn injects_a_hardened_native_sidecar_with_probes_on_its_admin_port() {
    let out = injected(&pod(enabled()), &Namespace::default());
    let inits = out["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(
        inits[0]["name"], "baton",
        "the sidecar starts before everything else"
    );
    let s = &inits[0];
    assert_eq!(s["restartPolicy"], "Always");
    assert_eq!(s["image"], "baton:dev");
    assert_eq!(s["command"], json!(["/baton"]));
    assert_eq!(s["args"], json!(["run", "-c", "/etc/baton/sidecar.yaml"]));
    let sc = &s["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 15532);
    assert_eq!(sc["runAsGroup"], 15532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let ports: Vec<(&str, u64)> = s["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("baton-inbound", 15006),
            ("baton-outbound", 15001),
            ("baton-admin", 15020)
        ]
    );
    assert_eq!(
        s["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "baton-admin"})
    );
    assert_eq!(
        s["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "baton-admin"})
    );
    assert!(s["resources"]["requests"]["memory"].is_string());
    assert!(s["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        out["metadata"]["annotations"]["baton.dev/injected"],
        VERSION
    );
}

#[test]
fn app_containers_get_the_proxy_env_and_keep_everything_else() {
    let original = pod(enabled());
    let out = injected(&original, &Namespace::default());
    let app = container(&out, "containers", "app");
    let env: Vec<(&str, &str)> = app["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert!(env.contains(&("HTTP_PROXY", "http://127.0.0.1:15001")));
    assert!(env.contains(&("http_proxy", "http://127.0.0.1:15001")));
    assert!(
        env.iter()
            .any(|(n, v)| *n == "NO_PROXY" && v.contains("127.0.0.1"))
    );
    // Everything that was there is still there, unchanged.
    let mut without_env = app.clone();
    without_env.as_object_mut().unwrap().remove("env");
    assert_eq!(without_env, original["spec"]["containers"][0]);
    assert_eq!(out["spec"]["terminationGracePeriodSeconds"], 45);
    assert_eq!(out["metadata"]["labels"], original["metadata"]["labels"]);
}

#[test]
fn an_app_proxy_setting_is_kept() {
    let mut p = pod(enabled());
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "HTTP_PROXY", "value": "http://corp:3128"}]);
    let out = injected(&p, &Namespace::default());
    let env = out["spec"]["containers"][0]["env"].as_array().unwrap();
    let proxies: Vec<&Value> = env.iter().filter(|e| e["name"] == "HTTP_PROXY").collect();
    assert_eq!(
        proxies,
        [&json!({"name": "HTTP_PROXY", "value": "http://corp:3128"})]
    );
}

#[test]
fn a_spiffe_helper_volume_is_mounted_and_its_jwt_svid_authenticates_the_sidecar() {
    let mut a = enabled();
    a.as_object_mut().unwrap().remove("baton.dev/client-secret");
    a["baton.dev/spiffe-helper-volume"] = "spiffe-svids".into();
    a["baton.dev/jwt-svid-file"] = "jwt/svid.token".into();
    let mut p = pod(a);
    p["spec"]["volumes"] = json!([{"name": "spiffe-svids", "emptyDir": {"medium": "Memory"}}]);
    let out = injected(&p, &Namespace::default());
    let yaml = out["metadata"]["annotations"]["baton.dev/sidecar-config"]
        .as_str()
        .unwrap();
    let cfg: Value = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(
        cfg["outbound"]["client"],
        json!({"client_id": "web", "jwt_svid_file": "/run/spiffe/jwt/svid.token"})
    );
    let mounts = container(&out, "initContainers", "baton")["volumeMounts"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        mounts.contains(
            &json!({"name": "spiffe-svids", "mountPath": "/run/spiffe", "readOnly": true})
        )
    );
    // The pod's own volume stays as it was; no second one is defined.
    let vols = out["spec"]["volumes"].as_array().unwrap();
    assert_eq!(
        vols.iter().filter(|v| v["name"] == "spiffe-svids").count(),
        1
    );
}

#[test]
fn generated_config_is_mounted_from_a_pod_annotation_via_the_downward_api() {
    let mut a = enabled();
    a["baton.dev/outbound-routes"] = "api:8080=api, billing=billing".into();
    a["baton.dev/client-secret"] = "web-client".into();
    a["baton.dev/app-port"] = "9000".into();
    let out = injected(&pod(a), &Namespace::default());
    let yaml = out["metadata"]["annotations"]["baton.dev/sidecar-config"]
        .as_str()
        .unwrap();
    let cfg: Value = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(cfg["issuer"], "http://idp.baton-system:8080");
    assert_eq!(cfg["audience"], "web");
    assert_eq!(cfg["app"], "127.0.0.1:9000");
    assert_eq!(cfg["listeners"]["inbound"], "0.0.0.0:15006");
    assert_eq!(cfg["outbound"]["client"]["client_id"], "web");
    assert_eq!(
        cfg["outbound"]["client"]["secret_file"],
        "/var/run/secrets/baton/client-secret"
    );
    assert_eq!(
        cfg["outbound"]["routes"][1],
        json!({"name": "billing", "host": "billing", "audience": "billing"})
    );
    let vols = out["spec"]["volumes"].as_array().unwrap();
    let field = &vols[0]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"];
    assert_eq!(field, "metadata.annotations['baton.dev/sidecar-config']");
    assert_eq!(vols[1]["secret"]["secretName"], "web-client");
    let mounts = &container(&out, "initContainers", "baton")["volumeMounts"];
    assert_eq!(mounts[1]["mountPath"], "/var/run/secrets/baton");
}

#[test]
fn a_named_config_map_replaces_the_generated_config() {
    let a = json!({"baton.dev/inject": "enabled", "baton.dev/config": "web-baton"});
    let out = injected(&pod(a), &Namespace::default());
    assert!(
        out["metadata"]["annotations"]
            .get("baton.dev/sidecar-config")
            .is_none()
    );
    assert_eq!(out["spec"]["volumes"][0]["configMap"]["name"], "web-baton");
}

#[test]
fn capture_adds_the_init_container_first_with_only_net_admin_and_net_raw() {
    let mut a = enabled();
    a["baton.dev/capture"] = "iptables".into();
    let mut p = pod(a);
    p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m:1"}]);
    let out = injected(&p, &Namespace::default());
    let names: Vec<&str> = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["baton-init", "baton", "migrate"]);
    let init = container(&out, "initContainers", "baton-init");
    assert_eq!(init["securityContext"]["runAsUser"], 0);
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        json!(["NET_ADMIN", "NET_RAW"])
    );
    assert_eq!(
        init["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert!(
        init.get("restartPolicy").is_none(),
        "runs to completion before the app"
    );
    assert_eq!(
        init["args"],
        json!([
            "init-net",
            "--inbound-ports",
            "8080",
            "--proxy-uid",
            "15532",
            "--outbound-ports",
            "80,8080",
            "--exclude",
            "idp.baton-system:8080"
        ])
    );
}

#[test]
fn opt_in_and_opt_out_by_pod_and_namespace() {
    let plain = pod(
        json!({"baton.dev/issuer": "http://idp:8080", "baton.dev/audience": "web",
                           "baton.dev/client-secret": "web-client"}),
    );
    let skip =
        |p: &Value, ns: &Namespace| match mutate(p, ns, &Policy::default(), "Pod/web").unwrap() {
            Outcome::Skipped(s) => Some(s),
            Outcome::Injected(_) => None,
        };
    assert_eq!(skip(&plain, &Namespace::default()), Some(Skip::NotEnabled));
    assert_eq!(skip(&plain, &Namespace::enabled()), None);
    let ns_annotated = Namespace::from_object(
        &json!({"metadata": {"annotations": {"baton.dev/inject": "enabled"}}}),
    );
    assert_eq!(skip(&plain, &ns_annotated), None);
    let mut out = plain.clone();
    out["metadata"]["annotations"]["baton.dev/inject"] = "disabled".into();
    assert_eq!(skip(&out, &Namespace::default()), Some(Skip::Disabled));
    let mut label = plain.clone();
    label["metadata"]["labels"]["baton.dev/inject"] = "enabled".into();
    assert_eq!(skip(&label, &Namespace::default()), None);
    let mut host = pod(enabled());
    host["spec"]["hostNetwork"] = true.into();
    assert_eq!(skip(&host, &Namespace::default()), Some(Skip::HostNetwork));
}

#[test]
fn namespace_annotations_are_defaults_the_pod_overrides() {
    let ns = Namespace::from_object(&json!({"metadata": {"annotations": {
        "baton.dev/inject": "enabled",
        "baton.dev/issuer": "http://idp:8080",
        "baton.dev/image": "registry.local/baton:1",
    }}}));
    let p = pod(
        json!({"baton.dev/audience": "web", "baton.dev/image": "registry.local/baton:2",
                       "baton.dev/client-secret": "web-client"}),
    );
    let policy = Policy {
        allowed_images: vec!["registry.local/baton:*".into()],
        ..Policy::default()
    };
    let Outcome::Injected(out) = mutate(&p, &ns, &policy, "Pod/web").unwrap() else {
        panic!("not injected");
    };
    assert_eq!(
        container(&out, "initContainers", "baton")["image"],
        "registry.local/baton:2"
    );
    let yaml = out["metadata"]["annotations"]["baton.dev/sidecar-config"]
        .as_str()
        .unwrap();
    assert!(yaml.contains("issuer: http://idp:8080"));
}

#[test]
fn every_bad_annotation_is_reported_at_once_with_its_name() {
    let a = json!({
        "baton.dev/inject": "enabled",
        "baton.dev/app-port": "http",
        "baton.dev/capture": "nftables",
        "baton.dev/issuer": "idp:8080",
        "baton.dev/outbound-routes": "api",
    });
    let err = mutate(
        &pod(a),
        &Namespace::default(),
        &Policy::default(),
        "Deployment/web",
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "Deployment/web: baton.dev/app-port: \"http\" is not a port number",
        "Deployment/web: baton.dev/capture: must be iptables",
        "Deployment/web: baton.dev/issuer: must be the IdP's absolute http(s) URL",
        "Deployment/web: baton.dev/audience: required",
        "Deployment/web: baton.dev/outbound-routes: \"api\": expected host[:port]=audience",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let bad = mutate(
        &pod(json!({"baton.dev/inject": "yes"})),
        &Namespace::default(),
        &Policy::default(),
        "Pod/x",
    );
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("baton.dev/inject: must be enabled or disabled")
    );
}

#[test]
fn collisions_with_the_sidecar_are_refused() {
    let mut a = enabled();
    a["baton.dev/capture"] = "iptables".into();
    let mut p = pod(a);
    p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 15020}]);
    p["spec"]["securityContext"] = json!({"runAsUser": 15532});
    p["spec"]["volumes"] = json!([{"name": "baton-config", "emptyDir": {}}]);
    let text = mutate(&p, &Namespace::default(), &Policy::default(), "Pod/web")
        .unwrap_err()
        .to_string();
    assert!(text.contains("spec.containers[0].ports[0].containerPort: taken by the baton sidecar"));
    assert!(text.contains("spec.securityContext.runAsUser: 15532 is the sidecar's uid"));
    assert!(text.contains("spec.volumes[0].name: baton-config is reserved"));
}

#[test]
fn a_template_without_spec_is_an_error_not_a_panic() {
    let p = json!({"metadata": {"annotations": {"baton.dev/inject": "enabled"}}});
    assert!(mutate(&p, &Namespace::default(), &Policy::default(), "Pod/x").is_err());
    let weird =
        json!({"metadata": {"annotations": enabled()}, "spec": {"containers": null, "volumes": 7}});
    let out = injected(&weird, &Namespace::default());
    assert_eq!(
        out["spec"]["volumes"].as_array().unwrap().len(),
        2,
        "config and client secret"
    );
}

/// A capture pod whose probes cover every case: `httpGet` by number and by name (the app port),
/// `tcpSocket` on the app port, HTTPS, an explicit `host`, `exec`, `grpc`, another port, and an
/// init container's probe.
fn probed_pod(capture: bool) -> Value {
    let mut a = enabled();
    if capture {
        a["baton.dev/capture"] = "iptables".into();
    }
    json!({
        "metadata": {"annotations": a},
        "spec": {
            "securityContext": {"runAsUser": 1000},
            "initContainers": [{
                "name": "helper", "image": "h:1", "restartPolicy": "Always",
                "readinessProbe": {"httpGet": {"path": "/h", "port": 8080}},
            }],
            "containers": [
                {
                    "name": "web",
                    "image": "web:1",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "livenessProbe": {
                        "httpGet": {"path": "/health", "port": 8080, "host": "",
                                    "httpHeaders": [{"name": "X-Probe", "value": "live"}]},
                        "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                        "initialDelaySeconds": 1, "successThreshold": 1,
                    },
                    "startupProbe": {"tcpSocket": {"port": "http"}, "failureThreshold": 30},
                },
                {
                    "name": "side",
                    "image": "side:1",
                    "ports": [{"name": "metrics", "containerPort": 9090}],
                    "livenessProbe": {"exec": {"command": ["true"]}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "metrics"}},
                    "startupProbe": {"grpc": {"port": 8080}},
                },
                {
                    "name": "tls",
                    "image": "tls:1",
                    "livenessProbe": {"httpGet": {"path": "/x", "port": 8080, "host": "10.0.0.9"}},
                    "readinessProbe": {"httpGet": {"port": 8080, "scheme": "HTTPS"}, "timeoutSeconds": 5},
                },
            ],
        },
    })
}

#[test]
fn capture_moves_app_port_probes_to_the_admin_port_and_hands_the_originals_to_the_sidecar() {
    let before = probed_pod(true);
    let out = injected(&before, &Namespace::default());
    let web = container(&out, "containers", "web");
    assert_eq!(
        web["livenessProbe"],
        json!({
            "httpGet": {"path": "/app-health/web/livez", "port": 15020},
            "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
        })
    );
    assert_eq!(
        web["readinessProbe"],
        json!({
            "httpGet": {"path": "/app-health/web/readyz", "port": 15020},
            "initialDelaySeconds": 1, "successThreshold": 1,
        })
    );
    assert_eq!(
        web["startupProbe"],
        json!({
            "httpGet": {"path": "/app-health/web/startupz", "port": 15020},
            "failureThreshold": 30,
        })
    );
    assert_eq!(
        container(&out, "containers", "tls")["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/tls/readyz", "port": 15020}, "timeoutSeconds": 5})
    );
    // exec, grpc, another port, an explicit host and init containers are left alone.
    for (list, name, probe) in [
        ("containers", "side", "livenessProbe"),
        ("containers", "side", "readinessProbe"),
        ("containers", "side", "startupProbe"),
        ("containers", "tls", "livenessProbe"),
        ("initContainers", "helper", "readinessProbe"),
    ] {
        let i = before["spec"][list]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c["name"] == name)
            .unwrap();
        assert_eq!(
            container(&out, list, name)[probe],
            before["spec"][list][i][probe],
            "{name} {probe}"
        );
    }

    let env = container(&out, "initContainers", "baton")["env"]
        .as_array()
        .unwrap();
    assert_eq!(env.len(), 1);
    assert_eq!(env[0]["name"], "BATON_APP_PROBES");
    let text = env[0]["value"].as_str().unwrap();
    let table: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        table,
        json!({
            "/app-health/web/livez": {
                "httpGet": {"port": 8080, "path": "/health", "scheme": "HTTP",
                            "httpHeaders": [{"name": "X-Probe", "value": "live"}]},
                "timeoutSeconds": 2,
            },
            "/app-health/web/readyz": {
                "httpGet": {"port": 8080, "path": "/ready", "scheme": "HTTP"},
            },
            "/app-health/web/startupz": {"tcpSocket": {"port": 8080}},
            "/app-health/tls/readyz": {
                "httpGet": {"port": 8080, "path": "/", "scheme": "HTTPS"},
                "timeoutSeconds": 5,
            },
        })
    );
    // The same pod always gives the same text (the webhook and `baton inject` agree byte for byte).
    let again = injected(&probed_pod(true), &Namespace::default());
    assert_eq!(
        container(&again, "initContainers", "baton")["env"][0]["value"],
        text
    );
}

#[test]
fn without_capture_probes_stay_and_the_sidecar_gets_no_probe_table() {
    let before = probed_pod(false);
    let out = injected(&before, &Namespace::default());
    for (i, c) in out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            assert_eq!(c[probe], before["spec"]["containers"][i][probe]);
        }
    }
    assert!(
        container(&out, "initContainers", "baton")
            .get("env")
            .is_none()
    );
}

#[test]
fn capture_of_another_app_port_leaves_probes_of_8080_alone() {
    let mut p = probed_pod(true);
    p["metadata"]["annotations"]["baton.dev/app-port"] = "9090".into();
    let out = injected(&p, &Namespace::default());
    assert_eq!(
        container(&out, "containers", "web")["livenessProbe"],
        p["spec"]["containers"][0]["livenessProbe"]
    );
    // The named port `metrics` is 9090, the app port now.
    assert_eq!(
        container(&out, "containers", "side")["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/side/readyz", "port": 15020}})
    );
    let env = &container(&out, "initContainers", "baton")["env"][0]["value"];
    let table: Value = serde_json::from_str(env.as_str().unwrap()).unwrap();
    assert_eq!(
        table,
        json!({"/app-health/side/readyz": {"httpGet": {"port": 9090, "path": "/ready", "scheme": "HTTP"}}})
    );
}

fn app_container() -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9-]{0,10}",
        prop::collection::vec(1u16..15000, 0..3),
        prop::option::of(("[A-Z_]{1,8}", "[a-z0-9]{0,8}")),
    )
        .prop_map(|(name, ports, env)| {
            let mut c = json!({
                "name": format!("c-{name}"),
                "image": "x:1",
                "ports": ports.iter().map(|p| json!({"containerPort": p})).collect::<Vec<_>>(),
            });
            if let Some((k, v)) = env {
                c["env"] = json!([{"name": k, "value": v}]);
            }
            c
        })
}

proptest! {
    #[test]
    fn mutation_is_idempotent_and_keeps_every_app_container(
        containers in prop::collection::vec(app_container(), 1..4),
        capture in any::<bool>(),
    ) {
        let mut a = enabled();
        if capture {
            a["baton.dev/capture"] = "iptables".into();
        }
        let p = json!({"metadata": {"annotations": a},
                       "spec": {"containers": containers.clone(), "securityContext": {"runAsUser": 1000}}});
        let once = injected(&p, &Namespace::default());
        prop_assert_eq!(
            mutate(&once, &Namespace::default(), &Policy::default(), "Pod/web").unwrap(),
            Outcome::Skipped(Skip::AlreadyInjected)
        );
        let out = once["spec"]["containers"].as_array().unwrap();
        prop_assert_eq!(out.len(), containers.len());
        for (before, after) in containers.iter().zip(out) {
            prop_assert_eq!(&before["name"], &after["name"]);
            prop_assert_eq!(&before["ports"], &after["ports"]);
            for e in before["env"].as_array().into_iter().flatten() {
                prop_assert!(after["env"].as_array().unwrap().contains(e));
            }
        }
    }
}
