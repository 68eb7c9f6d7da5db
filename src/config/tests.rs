use super::sidecar::redact;
use super::*;
use std::time::Duration;

const GOOD: &str = r#"
issuer: https://idp.example
audience: service-b
mode: observe
app: "127.0.0.1:8080"
jwks: {refresh_min: 1m, stale_window: 2h}
limits: {request_timeout: 500ms}
routes:
  - {name: health, path: /healthz, public: true}
  - name: api
    path: /api/
    methods: [get, POST]
    scopes: [read]
    claims:
      - {claim: grants, contains: service-b}
      - {claim: tier, equals: gold}
    acr: [mfa]
    max_age: 300
outbound:
  client: {client_id: service-b, secret: test-only}
"#;

#[test]
fn a_full_config_validates_into_typed_values() {
    let cfg = Config::from_yaml(GOOD, "sidecar.yaml").expect("valid");
    assert_eq!(cfg.mode, Mode::Observe);
    assert_eq!(cfg.listeners.inbound.port(), 15006);
    assert_eq!(cfg.jwks.refresh_min, Duration::from_secs(60));
    assert_eq!(cfg.limits.request_timeout, Duration::from_millis(500));
    assert_eq!(cfg.routes[1].path, "/api");
    assert_eq!(
        cfg.routes[1].methods,
        Some(vec![http::Method::GET, http::Method::POST])
    );
    let routes::Access::Token(req) = &cfg.routes[1].access else {
        panic!("api is protected")
    };
    assert_eq!(req.claims.len(), 2);
    assert_eq!(req.max_age, Some(300));
}

#[test]
fn every_problem_is_reported_with_its_line_column_and_field() {
    let bad = r#"
issuer: not-a-url
audience: b
app: localhost
leeway: 120
algorithms: [HS256]
jwks: {fetch_timeout: soon}
routes:
  - {name: a, path: /a}
  - {name: a, path: /b}
  - {name: c, path: nope}
  - {name: d, path: /d, public: true, scopes: [x]}
  - {name: e, path: /e, claims: [{claim: grants}]}
  - {name: f, path: "/f//x"}
  - {name: g, path: "/%67"}
  - {name: h, path: "/h;x"}
  - {name: i, path: "/i/../j"}
"#;
    let errs = Config::from_yaml(bad, "sidecar.yaml").expect_err("invalid");
    let text = errs.to_string();
    assert_eq!(errs.0.len(), 13, "{text}");
    for needle in [
        "sidecar.yaml:2:1: issuer: must be an absolute",
        "sidecar.yaml:4:1: app: must be an IP address",
        "sidecar.yaml:5:1: leeway: must be at most 60",
        "sidecar.yaml:6:14: algorithms[0]:",
        "sidecar.yaml:7:8: jwks.fetch_timeout:",
        "sidecar.yaml:10:6: routes[1].name: duplicate",
        "sidecar.yaml:11:15: routes[2].path: must start with /",
        "sidecar.yaml:12:25: routes[3].public:",
        "sidecar.yaml:13:34: routes[4].claims[0]: needs exactly one",
        "sidecar.yaml:14:15: routes[5].path: must be written in canonical form, here /f/x",
        "sidecar.yaml:15:15: routes[6].path: must be written in canonical form, here /g",
        "sidecar.yaml:16:15: routes[7].path: has no canonical form: path parameter (;)",
        "sidecar.yaml:17:15: routes[8].path: must be written in canonical form, here /j",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn inbound_and_admin_settings_default_to_the_strict_reading() {
    use crate::http::path::{EscapedSlashes, Parameters, PathRules, TrailingDots};
    let cfg = Config::from_yaml(GOOD, "sidecar.yaml").expect("valid");
    assert_eq!(cfg.inbound, InboundSettings::default());
    assert_eq!(cfg.inbound.paths.escaped_slashes, EscapedSlashes::Reject);
    assert_eq!(cfg.inbound.paths.parameters, Parameters::Reject);
    assert_eq!(cfg.inbound.paths.trailing_dots, TrailingDots::Reject);
    assert!(!cfg.inbound.drop_underscore_headers && !cfg.admin.expose_config);
    assert!(!cfg.routes[0].case_insensitive);
    let text = format!(
        "{GOOD}inbound: {{escaped_slashes: unescape, path_parameters: strip, trailing_dots: keep, \
         drop_underscore_headers: true}}\nadmin: {{expose_config: true}}\n"
    )
    .replace("path: /healthz,", "path: /healthz, case_insensitive: true,");
    let cfg = Config::from_yaml(&text, "sidecar.yaml").expect("valid");
    assert_eq!(
        cfg.inbound.paths,
        PathRules {
            escaped_slashes: EscapedSlashes::Unescape,
            parameters: Parameters::Strip,
            trailing_dots: TrailingDots::Keep,
        }
    );
    assert!(cfg.inbound.drop_underscore_headers && cfg.admin.expose_config);
    assert!(cfg.routes[0].case_insensitive);
    let bad = format!("{GOOD}inbound: {{escaped_slashes: decode}}\n");
    let errs = Config::from_yaml(&bad, "sidecar.yaml").expect_err("unknown variant");
    assert!(
        errs.to_string().contains("unknown variant `decode`"),
        "{errs}"
    );
}

#[test]
fn unknown_fields_are_refused() {
    let text = GOOD.replace("mode: observe", "mode: observe\nmodes: x");
    let errs = Config::from_yaml(&text, "sidecar.yaml").expect_err("unknown field");
    assert!(errs.to_string().contains("unknown field `modes`"), "{errs}");
}

#[test]
fn the_tracing_section_is_checked_and_kept() {
    let on =
        format!("{GOOD}tracing: {{endpoint: \"http://collector:4318\", sampler_ratio: 0.5}}\n");
    let cfg = Config::from_yaml(&on, "sidecar.yaml").expect("valid");
    let t = cfg.tracing.expect("tracing");
    assert_eq!(t.endpoint.as_deref(), Some("http://collector:4318"));
    assert_eq!(t.sampler_ratio, Some(0.5));
    assert!(
        Config::from_yaml(GOOD, "sidecar.yaml")
            .expect("valid")
            .tracing
            .is_none()
    );
    for bad in [
        "tracing: {endpoint: \"collector:4318\"}",
        "tracing: {endpoint: \"http://c:4318\", sampler_ratio: 2}",
        "tracing: {endpoint: \"http://c:4318\", headers: x}",
    ] {
        let errs = Config::from_yaml(&format!("{GOOD}{bad}\n"), "sidecar.yaml").expect_err(bad);
        assert!(errs.to_string().contains("tracing"), "{bad}: {errs}");
    }
}

#[test]
fn secrets_are_redacted_for_the_config_endpoint() {
    let v = redact(serde_json::json!({"a": {"client_secret": "s3cr3t", "n": 1}, "password": "p"}));
    let s = v.to_string();
    assert!(!s.contains("s3cr3t") && !s.contains("\"p\""), "{s}");
    assert!(s.contains("\"n\":1"));
}

#[test]
fn the_shipped_example_is_valid_and_names_the_secret_file_it_needs() {
    // The example's client secret is mounted only in a deployment: missing here, which a check
    // reports as a warning and start-up as an error.
    let text = include_str!("../../sidecar.yaml");
    let report = Config::check(text, "sidecar.yaml");
    assert!(report.errors.is_empty(), "{report}");
    let missing: Vec<&str> = report.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(missing, ["outbound.client.secret_file"], "{report}");
    assert!(report.warnings[0].line.is_some());
    let errors = Config::from_yaml(text, "sidecar.yaml").expect_err("secret missing");
    assert_eq!(errors.0.len(), 1, "{errors}");
}

#[test]
fn browser_login_routes_need_a_login_section_and_the_sidecars_own_client() {
    let base = "issuer: https://idp.example\naudience: service-a\napp: \"127.0.0.1:8080\"\n";
    let ok = format!(
        "{base}routes:\n  - {{name: web, path: /, login: browser}}\n\
         login: {{external_url: \"https://a.example\", scope: profile, session_ttl: 1h}}\n\
         outbound:\n  client: {{client_id: service-a, secret: test-only}}\n"
    );
    let cfg = Config::from_yaml(&ok, "sidecar.yaml").expect("valid");
    assert!(cfg.routes[0].browser_login);
    let login = cfg.login.expect("login");
    assert_eq!(login.scope, "openid profile");
    assert_eq!(login.redirect_uri(), "https://a.example/_baton/callback");
    assert!(login.secure());
    assert_eq!(login.session_ttl, Duration::from_secs(3600));

    let fields = |yaml: &str| -> Vec<String> {
        Config::from_yaml(yaml, "sidecar.yaml")
            .expect_err("invalid")
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    };
    let no_section = format!("{base}routes:\n  - {{name: web, path: /, login: browser}}\n");
    assert_eq!(fields(&no_section), ["routes[0].login"]);
    let bad = format!(
        "{base}routes:\n  - {{name: web, path: /, login: oidc}}\n  - {{name: p, path: /p, public: true, login: browser}}\n\
         login: {{external_url: \"https://a.example/app\", refresh_skew: soon, max_sessions: 0, post_logout_path: \"//evil.example\"}}\n\
         outbound:\n  client: {{client_id: service-x, secret: test-only}}\n"
    );
    assert_eq!(
        fields(&bad),
        [
            "routes[0].login",
            "routes[1].login",
            "login",
            "login.external_url",
            "login.refresh_skew",
            "login.max_sessions",
            "login.post_logout_path",
        ]
    );
}

/// Three mistakes in three sections, one a misspelt nested key, and a secret from a variable
/// that is not set here.
const THREE_MISTAKES: &str = "\
issuer: https://idp.example
audience: service-b
app: \"127.0.0.1:8080\"
jwks:
  refresh_min: soon
routes:
  - name: api
    path: /api
    scopez: [read]
outbound:
  client:
    client_id: service-b
    secret_env: BATON_TEST_UNSET_SECRET
  routes:
    - name: c
      host: service-c:8080
      audience: service-c
      without_subject: maybe
";

#[test]
fn three_mistakes_in_three_sections_are_all_reported_with_their_place() {
    let report = Config::check(THREE_MISTAKES, "sidecar.yaml");
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "sidecar.yaml:5:3: jwks.refresh_min: must be a positive duration like 500ms, 10s, 5m \
             or 1h",
            "sidecar.yaml:9:5: routes[0].scopez: unknown field `scopez`: did you mean `scopes`?",
            "sidecar.yaml:18:7: outbound.routes[0].without_subject: \"maybe\": use deny or \
             client_credentials",
        ]
    );
    let warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "sidecar.yaml:13:5: outbound.client.secret_env: environment variable \
          BATON_TEST_UNSET_SECRET is not set"
        ]
    );
    // At start-up the missing secret is one more error, in its place in the file.
    let errors = Config::from_yaml(THREE_MISTAKES, "sidecar.yaml").expect_err("refused");
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "jwks.refresh_min",
            "routes[0].scopez",
            "outbound.client.secret_env",
            "outbound.routes[0].without_subject"
        ]
    );
}

#[test]
fn a_value_of_the_wrong_type_is_reported_and_the_rest_still_validated() {
    let text = GOOD
        .replace("mode: observe", "mode: watching")
        .replace("max_age: 300", "max_age: 5m")
        .replace(
            "limits: {request_timeout: 500ms}",
            "limits: {request_timeout: 0s}",
        );
    let errors = Config::from_yaml(&text, "sidecar.yaml").expect_err("refused");
    let found: Vec<(&str, &str)> = errors
        .0
        .iter()
        .map(|e| (e.field.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "mode",
                "unknown variant `watching`, expected `enforce` or `observe`"
            ),
            (
                "limits.request_timeout",
                "must be a positive duration like 500ms, 10s, 5m or 1h"
            ),
            (
                "routes[1].max_age",
                "invalid type: string \"5m\", expected u64"
            ),
        ]
    );
}

#[test]
fn app_protocol_is_http1_unless_http2_is_asked_and_nothing_else_is_taken() {
    use crate::config::AppProtocol;
    let cfg = Config::from_yaml(GOOD, "sidecar.yaml").expect("valid");
    assert_eq!(cfg.inbound.app_protocol, AppProtocol::Http1);
    let text = format!("{GOOD}inbound: {{app_protocol: http2}}\n");
    let cfg = Config::from_yaml(&text, "sidecar.yaml").expect("valid");
    assert_eq!(cfg.inbound.app_protocol, AppProtocol::Http2);
    for bad in ["h2c", "HTTP2", "grpc", "http3", "2"] {
        let text = format!("{GOOD}inbound: {{app_protocol: {bad}}}\n");
        let report = Config::check(&text, "sidecar.yaml");
        let found = report
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            found.contains("inbound.app_protocol") && found.contains("expected `http1` or `http2`"),
            "{bad}: {found}"
        );
    }
}

#[test]
fn txn_token_sections_validate_their_mode_audience_and_headers() {
    let ok = format!("{GOOD}txn_token: {{mode: issue, audience: \"https://baton.example/td\"}}\n");
    let cfg = Config::from_yaml(&ok, "sidecar.yaml").expect("valid");
    let t = cfg.txn_token.expect("txn_token");
    assert_eq!(t.mode, txn::TxnMode::Issue);
    assert_eq!(t.claims_header.as_str(), "x-baton-txn");
    let fields = |extra: &str| -> Vec<String> {
        Config::from_yaml(&format!("{GOOD}{extra}"), "sidecar.yaml")
            .expect_err("invalid")
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    };
    assert_eq!(fields("txn_token: {audience: td}\n"), ["txn_token.mode"]);
    assert_eq!(
        fields("txn_token: {mode: require}\n"),
        ["txn_token.audience"]
    );
    assert_eq!(
        fields("txn_token: {mode: accept, audience: td, claims_header: x-baton-claims}\n"),
        ["txn_token.claims_header"]
    );
    assert_eq!(
        fields("txn_token: {mode: accept, audience: td, claims_header: txn-token}\n"),
        ["txn_token.claims_header"]
    );
    for taken in [
        "x-baton-peer",
        "x_baton_peer",
        "x_baton_claims",
        "grpc-timeout",
    ] {
        assert_eq!(
            fields(&format!(
                "txn_token: {{mode: accept, audience: td, claims_header: {taken}}}\n"
            )),
            ["txn_token.claims_header"],
            "{taken}"
        );
    }
    assert_eq!(
        fields("txn_token: {mode: require, audience: td, scope: x}\n"),
        ["txn_token.scope"]
    );
    assert_eq!(
        fields("txn_token: {mode: sometimes, audience: td}\n"),
        ["txn_token.mode"]
    );
}

const ISSUERS: &str = r#"
issuer: https://idp.example
audience: service-b
app: "127.0.0.1:8080"
issuers:
  - name: corp
    issuer: https://sso.corp.example/realms/staff
    audiences: [service-b, api://service-b]
    algorithms: [RS256]
    typ: jwt
    jwks: {kid_cooldown: 1m}
    claims:
      roles: realm_access.roles
      teams: groups
routes:
  - {name: ops, path: /ops, issuers: [corp], claims: [{claim: roles, contains: admin}]}
  - {name: both, path: /both, issuers: [primary, corp]}
  - {name: api, path: /api}
outbound:
  client: {client_id: service-b, secret: test-only}
"#;

#[test]
fn issuer_alone_is_the_one_primary_issuer_every_route_accepts() {
    let cfg = Config::from_yaml(GOOD, "sidecar.yaml").expect("valid");
    assert_eq!(cfg.issuers.len(), 1);
    let primary = &cfg.issuers[0];
    assert_eq!(
        (primary.name.as_str(), primary.issuer.as_str()),
        (issuers::PRIMARY, "https://idp.example")
    );
    assert_eq!(primary.audiences, vec!["service-b".to_owned()]);
    assert_eq!(primary.algorithms, cfg.algorithms);
    assert!(cfg.routes.iter().all(|r| r.issuers.is_empty()));
}

#[test]
fn foreign_issuers_take_their_own_settings_and_routes_name_them() {
    let cfg = Config::from_yaml(ISSUERS, "sidecar.yaml").expect("valid");
    assert_eq!(cfg.issuer, "https://idp.example");
    let corp = &cfg.issuers[1];
    assert_eq!(corp.name, "corp");
    assert_eq!(corp.algorithms, vec![crate::jwt::Algorithm::RS256]);
    assert_eq!(corp.typ, issuers::TokenTyp::Jwt);
    assert_eq!(corp.jwks.kid_cooldown, Duration::from_secs(60));
    assert_eq!(
        corp.jwks.refresh_max, cfg.jwks.refresh_max,
        "the rest from jwks:"
    );
    assert_eq!(corp.audiences.len(), 2);
    let targets: Vec<&str> = corp.mappings.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(targets, ["roles", "teams"]);
    assert_eq!(corp.mappings[0].source, ["realm_access", "roles"]);
    assert_eq!(cfg.routes[0].issuers, ["corp"]);
    assert!(cfg.routes[2].issuers.is_empty());
}

#[test]
fn the_first_of_issuers_is_the_primary_when_issuer_is_absent() {
    let text = r#"
audience: service-b
app: "127.0.0.1:8080"
issuers:
  - {name: baton, issuer: https://idp.example}
  - {name: corp, issuer: https://corp.example}
routes: [{name: api, path: /api, issuers: [baton, corp]}]
outbound: {client: {client_id: service-b, secret: test-only}}
"#;
    let cfg = Config::from_yaml(text, "sidecar.yaml").expect("valid");
    assert_eq!(cfg.issuer, "https://idp.example");
    assert_eq!(cfg.issuers[0].name, "baton");
    assert_eq!(cfg.issuers[1].audiences, vec!["service-b".to_owned()]);
}

#[test]
fn issuer_mistakes_are_each_reported_at_their_field() {
    let text = r#"
issuer: https://idp.example
audience: service-b
app: "127.0.0.1:8080"
issuers:
  - {name: corp, issuer: https://corp.example, claims: {act: sub, grants: roles, roles: "a..b"}}
  - {name: corp, issuer: https://CORP.example/, audiences: []}
  - {name: "bad name", issuer: "https://x.example?q=1", jwks_uri: "http://x.example/keys"}
  - {name: primary, issuer: https://idp.example/}
routes:
  - {name: a, path: /a, issuers: [nobody]}
  - {name: b, path: /b, public: true, issuers: [corp]}
outbound: {client: {client_id: service-b, secret: test-only}}
"#;
    let errors = Config::from_yaml(text, "sidecar.yaml")
        .expect_err("invalid")
        .to_string();
    for field in [
        "issuers[0].claims.act",
        "issuers[0].claims.grants",
        "issuers[0].claims.roles",
        "issuers[1].name: duplicate issuer name corp",
        "issuers[1].issuer: already trusted as corp",
        "issuers[1].audiences",
        "issuers[2].name",
        "issuers[2].issuer",
        "issuers[2].jwks_uri",
        "issuers[3].name: duplicate issuer name primary",
        "issuers[3].issuer: already trusted as primary",
        "routes[0].issuers[0]: no issuer named nobody",
        "routes[1].issuers",
    ] {
        assert!(errors.contains(field), "{field} in:\n{errors}");
    }
    let text = r#"
audience: service-b
app: "127.0.0.1:8080"
issuers:
  - {name: baton, issuer: https://idp.example, claims: {roles: groups}, typ: jwt}
outbound: {client: {client_id: service-b, secret: test-only}}
"#;
    let errors = Config::from_yaml(text, "sidecar.yaml")
        .expect_err("invalid")
        .to_string();
    assert!(
        errors.contains("issuers[0].claims: the primary issuer"),
        "{errors}"
    );
    assert!(
        errors.contains("issuers[0].typ: the primary issuer"),
        "{errors}"
    );
}
