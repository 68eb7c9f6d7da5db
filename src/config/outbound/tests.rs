use super::*;

fn parse(yaml: &str) -> Result<Outbound, Vec<String>> {
    let raw: RawOutbound = serde_saphyr::from_str(yaml).map_err(|e| vec![e.to_string()])?;
    let mut problems = Problems::new("sidecar.yaml");
    let out = validate(raw, &mut problems);
    problems
        .finish(out)
        .map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

#[test]
fn a_full_config_validates() {
    let out = parse(
        r#"
client: {client_id: service-a, secret: s3cret}
timeout: 1500ms
cache: {skew: 1m}
routes:
  - {name: b, host: "Service-B:8080", audience: service-b, scope: "read write"}
  - {name: b-admin, host: "admin.b", resources: ["https://b/admin"], without_subject: client_credentials}
ports:
  - {listen: "127.0.0.1:15101", upstream: "service-b:8080", route: b}
"#,
    )
    .expect("valid");
    assert_eq!(out.connect_timeout, Duration::from_millis(2_000));
    assert_eq!(out.timeout, Duration::from_millis(1_500));
    assert_eq!(out.cache.skew, 60);
    assert_eq!(
        out.route_for("service-b", 8080).map(|r| &*r.name),
        Some("b")
    );
    assert_eq!(
        out.route_for("admin.b", 80).map(|r| &*r.name),
        Some("b-admin")
    );
    assert!(out.route_for("service-b", 80).is_none());
    assert_eq!(out.ports[0].route, 0);
    assert_eq!(
        out.routes[1].without_subject,
        WithoutSubject::ClientCredentials
    );
    assert!(!format!("{out:?}").contains("s3cret"));
}

#[test]
fn every_problem_is_reported_with_its_field_path() {
    let errs = parse(
        r#"
client: {client_id: a, secret: x, secret_env: Y}
unknown: allow
timeout: soon
routes:
  - {name: b, host: "service-b:8080"}
  - {name: b, host: "bad host:99999", audience: b, without_subject: maybe}
  - {name: c, host: c, audience: c, resources: ["not a uri"]}
ports:
  - {listen: nope, upstream: "c:1", route: zzz}
"#,
    )
    .expect_err("invalid");
    let all = errs.join("\n");
    for needle in [
        "sidecar.yaml: outbound.client: set exactly one",
        "outbound.unknown: \"allow\"",
        "outbound.routes[0].audience: set audience or resources",
        "outbound.routes[1].host: required",
        "outbound.routes[2].resources[0]: must be an absolute URI",
        "outbound.ports[0].listen",
        "outbound.ports[0].route: no route named \"zzz\"",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn unknown_fields_are_refused() {
    let errs = parse("client: {client_id: a, secret: x}\nroutez: []\n").expect_err("unknown");
    assert!(errs[0].contains("routez"), "{errs:?}");
}

#[test]
fn an_empty_section_is_valid_and_denies_everything() {
    let out = parse("{}").expect("empty outbound is valid");
    assert!(out.routes.is_empty());
    assert_eq!(out.unknown, Policy::Deny);
    let errs =
        parse("routes: [{name: b, host: b, audience: b}]").expect_err("routes need a client");
    assert!(
        errs[0].contains("outbound.client.client_id: required"),
        "{errs:?}"
    );
}

#[test]
fn authorities_split_into_a_lowercase_host_and_a_port() {
    let split = |s: &str| split_authority(s, 80);
    let ok = |h: &str, p: u16| Some((h.to_owned(), p));
    assert_eq!(split("Service-B:8080"), ok("service-b", 8080));
    assert_eq!(split("service-b"), ok("service-b", 80));
    assert_eq!(split("service-b:"), ok("service-b", 80));
    assert_eq!(split("10.0.0.7:9"), ok("10.0.0.7", 9));
    assert_eq!(split("[::1]"), ok("::1", 80));
    assert_eq!(split("[::1]:8443"), ok("::1", 8443));
    assert_eq!(split("[FE80::1]:1"), ok("fe80::1", 1));
    for refused in [
        "user@service-b:8080",
        ":8080",
        "service-b:99999",
        "service-b:+80",
        "service-b:8o",
        "",
        "a b:80",
    ] {
        assert_eq!(split(refused), None, "{refused:?}");
    }
    // A request URI's authority, parsed once by `http`, splits the same way.
    let uri: http::Uri = "http://Service-B:8080/x".parse().expect("uri");
    assert_eq!(
        split_parsed(uri.authority().expect("authority"), 80),
        ok("service-b", 8080)
    );
}

#[test]
fn a_jwt_svid_file_is_one_credential_and_may_appear_later() {
    let out = parse(
        "client: {client_id: a, jwt_svid_file: /nonexistent/svid.token}\nroutes:\n  - {name: b, host: b, audience: b}\n",
    )
    .expect("valid: the helper writes the file after the sidecar starts");
    assert!(matches!(out.client.auth, ClientAuth::Svid(_)));
    let errs = parse(
        "client: {client_id: a, secret: x, jwt_svid_file: /x}\nroutes:\n  - {name: b, host: b, audience: b}\n",
    )
    .unwrap_err();
    assert!(
        errs.iter().any(|e| e.contains("set exactly one of")),
        "{errs:?}"
    );
}

#[test]
fn a_client_certificate_needs_its_key() {
    let errs = parse(
        "client: {client_id: a, secret: x}\nroutes:\n  - {name: b, host: b, audience: b, tls: {cert_file: /x.pem}}\n",
    )
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("set both cert_file and key_file, or neither")),
        "{errs:?}"
    );
}

#[test]
fn the_dpop_algorithm_is_eddsa_unless_es256_is_asked() {
    let base = "client: {client_id: a, secret: s}\n";
    let alg = |extra: &str| parse(&format!("{base}{extra}")).map(|o| o.dpop_alg);
    assert_eq!(alg(""), Ok(crate::dpop::ProofAlg::EdDSA));
    assert_eq!(alg("dpop_alg: EdDSA\n"), Ok(crate::dpop::ProofAlg::EdDSA));
    assert_eq!(alg("dpop_alg: ES256\n"), Ok(crate::dpop::ProofAlg::ES256));
    let errs = alg("dpop_alg: RS256\n").expect_err("refused");
    assert!(errs[0].contains("outbound.dpop_alg"), "{errs:?}");
}
