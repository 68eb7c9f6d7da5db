use super::*;
use crate::config::Config;
use proptest::prelude::*;
use serde_json::json;

fn settings(a: Value) -> Result<Settings, ConfigErrors> {
    Settings::from_annotations(
        a.as_object().unwrap(),
        &Namespace::default(),
        &Policy::default(),
        "Pod/x",
    )
}

#[test]
fn sidecar_ports_cannot_be_the_app_port_or_captured() {
    let base = json!({"baton.dev/issuer": "http://idp:9000", "baton.dev/audience": "x",
                      "baton.dev/client-secret": "x-client"});
    for port in ["15001", "15006", "15020"] {
        let mut a = base.clone();
        a["baton.dev/app-port"] = port.into();
        a["baton.dev/capture"] = "iptables".into();
        a["baton.dev/capture-outbound-ports"] = format!("80,{port}").into();
        let text = settings(a).unwrap_err().to_string();
        assert!(text.contains(&format!(
            "baton.dev/app-port: {port} is one of the sidecar's ports"
        )));
        assert!(text.contains(&format!(
            "baton.dev/capture-outbound-ports: {port} is one of"
        )));
    }
}

#[test]
fn the_idp_exemption_comes_from_the_issuer_with_its_default_port() {
    let a = json!({"baton.dev/issuer": "https://login.example.com/realms/x", "baton.dev/audience": "x",
                   "baton.dev/client-secret": "x-client", "baton.dev/capture": "iptables"});
    let s = settings(a).unwrap();
    assert_eq!(
        s.capture.unwrap().exclude.as_deref(),
        Some("login.example.com:443")
    );
}

#[test]
fn annotations_whose_generated_config_the_sidecar_refuses_are_refused_with_its_reason() {
    let base = json!({"baton.dev/issuer": "http://idp:9000", "baton.dev/audience": "x",
                      "baton.dev/client-secret": "x-client"});
    let prefix = "Pod/x: baton.dev/outbound-routes: the sidecar would refuse the config \
                  generated from the annotations: ";
    for (routes, reason) in [
        (
            "service-b:8080/x?=service-b",
            "outbound.routes[0].host: required as host[:port]",
        ),
        (
            "svc-b:8080/=svc-b",
            "outbound.routes[0].host: required as host[:port]",
        ),
        (
            "user@svc-b:8080=svc-b",
            "outbound.routes[0].host: required as host[:port]",
        ),
        (
            "a:8080=svc, b:8080=svc",
            "outbound.routes[1].name: duplicate route name",
        ),
        (
            "a=svc,a=svc",
            "outbound.routes[1].name: duplicate route name",
        ),
    ] {
        let mut a = base.clone();
        a["baton.dev/outbound-routes"] = routes.into();
        let text = settings(a).unwrap_err().to_string();
        assert!(
            text.contains(&format!("{prefix}{reason}")),
            "{routes}: {text}"
        );
    }
    let mut quoted = base.clone();
    quoted["baton.dev/audience"] = "x\"y".into();
    let text = settings(quoted).unwrap_err().to_string();
    assert!(
        text.contains("Pod/x: baton.dev/audience: the sidecar would refuse the config generated from the annotations: audience:"),
        "{text}"
    );
    let mut fine = base.clone();
    fine["baton.dev/outbound-routes"] = "a:8080=svc-a, b=svc-b".into();
    assert!(settings(fine).is_ok());
}

#[test]
fn a_pod_names_only_images_the_policy_allows() {
    let base = json!({"baton.dev/config": "cfg", "baton.dev/capture": "iptables"});
    let s = settings(base.clone()).unwrap();
    assert_eq!(
        (s.image.as_str(), s.init_image.as_str()),
        ("baton:dev", "baton:dev")
    );
    for key in ["baton.dev/image", "baton.dev/init-image"] {
        for image in [
            "busybox:1.36",
            "baton:dev2",
            "docker.io/library/baton:dev",
            "baton:latest",
        ] {
            let mut a = base.clone();
            a[key] = image.into();
            let text = settings(a).unwrap_err().to_string();
            assert!(text.contains(&format!("Pod/x: {key}: ")), "{text}");
            assert!(text.contains("is not an allowed image"), "{text}");
        }
    }
    // A namespace default is held to the same list.
    let ns = Namespace::from_object(&json!({"metadata": {"annotations": {
        "baton.dev/init-image": "evil/iptables:1"}}}));
    let err =
        Settings::from_annotations(base.as_object().unwrap(), &ns, &Policy::default(), "Pod/x");
    assert!(err.is_err());
    let policy = Policy {
        image: "ghcr.io/org/baton:1.0".into(),
        allowed_images: vec!["ghcr.io/org/baton-init:*".into()],
        ..Policy::default()
    };
    let mut a = base.clone();
    a["baton.dev/init-image"] = "ghcr.io/org/baton-init:1.0".into();
    let s = Settings::from_annotations(
        a.as_object().unwrap(),
        &Namespace::default(),
        &policy,
        "Pod/x",
    )
    .unwrap();
    assert_eq!(s.image, "ghcr.io/org/baton:1.0");
    assert_eq!(s.init_image, "ghcr.io/org/baton-init:1.0");
    // The default image of another injector is not this one's.
    assert!(
        settings(json!({"baton.dev/config": "cfg", "baton.dev/image": "ghcr.io/org/baton:1.0"}))
            .is_err()
    );
}

proptest! {
    #[test]
    fn any_valid_port_list_round_trips(ports in prop::collection::vec(1u16..15000, 1..6)) {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let a = json!({"baton.dev/config": "cfg", "baton.dev/capture": "iptables",
                       "baton.dev/capture-outbound-ports": list.join(" , ")});
        let s = settings(a).unwrap();
        prop_assert_eq!(s.capture.unwrap().outbound_ports, ports);
    }

    #[test]
    fn annotation_values_never_panic(value in ".{0,40}") {
        let mut a = Map::new();
        for key in [annotation::APP_PORT, annotation::ISSUER, annotation::OUTBOUND_ROUTES,
                    annotation::CAPTURE, annotation::CONFIG, annotation::IMAGE] {
            a.insert(key.into(), value.clone().into());
        }
        let _ = Settings::from_annotations(&a, &Namespace::default(), &Policy::default(), "Pod/x");
    }

    /// Whatever the annotations say, a config that passes admission passes the sidecar's own
    /// validation: the sidecar never refuses to start on what injection generated.
    #[test]
    fn a_generated_config_that_passes_admission_starts_the_sidecar(
        routes in prop::collection::vec(
            ("[a-z0-9.:/?#@\\[\\]%-]{0,14}", "[a-z0-9 ./:?=-]{0,10}"), 0..4),
        separator in prop::sample::select(vec![",", ", ", ",,"]),
        audience in "[a-z0-9/?# -]{0,10}",
        issuer in prop::sample::select(vec![
            "http://idp:9000", "https://idp.example/realms/x", "http://idp:9000/?x=1",
            "http://idp:9000/#f", "http://[::1]:9000", "ftp://idp",
        ]),
    ) {
        let list: Vec<String> = routes.iter().map(|(h, a)| format!("{h}={a}")).collect();
        let a = json!({"baton.dev/issuer": issuer, "baton.dev/audience": audience,
                       "baton.dev/client-secret": "x-client",
                       "baton.dev/outbound-routes": list.join(separator)});
        if let Ok(Settings { config: ConfigSource::Generated(yaml), .. }) = settings(a) {
            let refused = Config::check(&yaml, "sidecar.yaml").errors;
            prop_assert!(refused.is_empty(), "admitted but refused: {:?}\n{}", refused, yaml);
        }
    }
}

#[test]
fn spiffe_helper_annotations_are_checked() {
    let base = json!({"baton.dev/issuer": "http://idp:9000", "baton.dev/audience": "x"});
    let with = |extra: Value| {
        let mut a = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        settings(a)
    };
    let s = with(json!({"baton.dev/spiffe-helper-volume": "svids"})).unwrap();
    let h = s.spiffe.unwrap();
    assert_eq!(h.jwt_svid_path(), "/run/spiffe/jwt_svid.token");
    for (extra, reason) in [
        (
            json!({"baton.dev/spiffe-helper-volume": "Svids"}),
            "baton.dev/spiffe-helper-volume: must be a volume name",
        ),
        (
            json!({"baton.dev/spiffe-helper-volume": "svids", "baton.dev/jwt-svid-file": "../etc/x"}),
            "baton.dev/jwt-svid-file: must be a relative path",
        ),
        (
            json!({"baton.dev/spiffe-helper-volume": "svids", "baton.dev/jwt-svid-file": "/abs"}),
            "baton.dev/jwt-svid-file: must be a relative path",
        ),
        (
            json!({"baton.dev/jwt-svid-file": "svid.token", "baton.dev/client-secret": "x"}),
            "baton.dev/jwt-svid-file: needs baton.dev/spiffe-helper-volume",
        ),
        (
            json!({"baton.dev/spiffe-helper-volume": "svids", "baton.dev/client-secret": "x"}),
            "not both",
        ),
    ] {
        let text = with(extra.clone()).unwrap_err().to_string();
        assert!(text.contains(reason), "{extra}: {text}");
    }
}
