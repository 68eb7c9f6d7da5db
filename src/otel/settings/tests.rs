use super::*;

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn off_without_an_endpoint_and_the_file_wins_field_by_field() {
    assert_eq!(
        Settings::resolve_with(None, "baton", env(&[])).ok(),
        Some(None)
    );
    let on = Settings::resolve_with(
        None,
        "baton",
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
            ("OTEL_SERVICE_NAME", "svc"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]),
    )
    .expect("valid")
    .expect("on");
    assert_eq!(on.endpoint, "http://c:4318/v1/traces");
    assert_eq!(on.service_name, "svc");
    assert_eq!(on.sampler, Ratio::Share(0.25));
    let file = RawTracing {
        endpoint: Some("https://f:4318".into()),
        service_name: None,
        sampler_ratio: Some(0.0),
    };
    let both = Settings::resolve_with(
        Some(&file),
        "baton",
        env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]),
    )
    .expect("valid")
    .expect("on");
    assert_eq!(both.endpoint, "https://f:4318/v1/traces");
    assert_eq!(both.service_name, "baton");
    assert_eq!(both.sampler, Ratio::Never);
    let disabled = env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_SDK_DISABLED", "true"),
    ]);
    assert_eq!(Settings::resolve_with(None, "b", disabled).ok(), Some(None));
}

#[test]
fn bad_values_are_refused_with_the_setting_named() {
    for (k, v) in [
        ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ("OTEL_TRACES_SAMPLER_ARG", "half"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
    ] {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            (k, v),
        ];
        let vars: Vec<_> = vars.iter().rev().cloned().collect();
        assert!(
            Settings::resolve_with(None, "b", env(&vars)).is_err(),
            "{k}={v}"
        );
    }
    for bad in ["ftp://c", "c:4318", "http://user:pw@c:4318"] {
        let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", bad)];
        assert!(
            Settings::resolve_with(None, "b", env(&vars)).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn export_headers_come_from_the_traces_variable_first_and_a_bad_one_is_named_not_shown() {
    assert!(otlp_headers(env(&[])).expect("none").is_empty());
    let h = otlp_headers(env(&[
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            " api-key = s%3Dcret%2C1 , x-tenant=acme,, ",
        ),
    ]))
    .expect("valid");
    assert_eq!(h.len(), 2);
    assert_eq!(h["api-key"], "s=cret,1");
    assert_eq!(h["x-tenant"], "acme");
    let h = otlp_headers(env(&[("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1")])).expect("valid");
    assert_eq!(h["x-general"], "1");
    for (bad, value) in [
        ("bad key=secret", "secret"),
        ("k=secret%zz", "secret"),
        ("k=secret%4", "secret"),
        ("k=sec%0Aret", "sec"),
    ] {
        let e = otlp_headers(env(&[("OTEL_EXPORTER_OTLP_HEADERS", bad)]))
            .expect_err(bad)
            .to_string();
        assert!(e.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
        assert!(!e.contains(value), "{e}");
    }
}

#[test]
fn a_compression_is_refused_and_none_accepted() {
    assert!(check_compression(env(&[])).is_ok());
    assert!(check_compression(env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "None")])).is_ok());
    let e = check_compression(env(&[
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
    ]))
    .expect_err("gzip");
    assert!(
        e.to_string()
            .contains("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"),
        "{e}"
    );
}

#[test]
fn credentials_in_a_malformed_header_entry_or_endpoint_are_never_shown() {
    let secret = "s3cr3t-t0ken";
    for list in [
        format!("Authorization: Bearer {secret}"),
        format!("Authorization: Bearer {secret}=="),
        format!("x=1,{secret}"),
    ] {
        let e = otlp_headers(env(&[("OTEL_EXPORTER_OTLP_HEADERS", &list)]))
            .expect_err("malformed")
            .to_string();
        assert!(!e.contains(secret), "{e}");
        assert!(e.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
    }
    for url in [
        format!("http://user:{secret}@collector:bad"),
        format!("ftp://user:{secret}@collector"),
        format!("http://user:{secret}@collector:4318"),
    ] {
        let e = checked_url(&url).expect_err("refused").to_string();
        assert!(!e.contains(secret), "{e}");
    }
}
