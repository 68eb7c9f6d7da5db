//! `baton-idp check` and start-up validation: lines, warnings, the demo-material rule and
//! `default_audience`. The environment is a table here, never the process's.

use super::super::secrets::PUBLISHED;
use super::super::{Config, Loaded, Options, Report};

const DEPLOY: &str = include_str!("../../../../deploy/idp.yaml");
const COMPOSE: &str = include_str!("../../../../deploy/compose/idp.yaml");
const K8S: &str = include_str!("../../../../deploy/k8s/idp.yaml");
/// A syntactically valid argon2 PHC string that is in no example.
const FRESH_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$Xcm6hdyTZB/m9iS4ZbSPmW3yl0hCbMvBgq0mKxLMZ2k";

fn load_at(text: &str, file: &str, env: &[(&str, &str)], allow: bool) -> Result<Loaded, Report> {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let opts = Options {
        allow_inline_secrets: allow,
        env: &lookup,
    };
    Config::load(text, file, &opts)
}

fn load(text: &str, env: &[(&str, &str)], allow: bool) -> Result<Loaded, Report> {
    load_at(text, "idp.yaml", env, allow)
}

/// The 1-based line of the `nth` line of `text` containing `needle`.
fn line_of(text: &str, needle: &str, nth: usize) -> Option<u64> {
    let (i, _) = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)?;
    Some(i as u64 + 1)
}

fn fields(findings: &[crate::config::Finding]) -> Vec<(&str, Option<u64>)> {
    findings
        .iter()
        .map(|f| (f.field.as_str(), f.line))
        .collect()
}

fn refused(r: Result<Loaded, Report>) -> Report {
    match r {
        Ok(_) => panic!("expected the config to be refused"),
        Err(report) => report,
    }
}

fn loaded(r: Result<Loaded, Report>) -> Loaded {
    r.unwrap_or_else(|report| panic!("expected the config to load:\n{report}"))
}

#[test]
fn the_shipped_example_without_its_variables_refuses_each_inline_secret_at_its_line() {
    let report = refused(load(DEPLOY, &[], false));
    let secret = |c: &str| line_of(DEPLOY, &format!("secret: demo-secret-{c}"), 0);
    assert_eq!(
        fields(&report.errors),
        [
            ("clients[0].secret", secret("service-a")),
            ("clients[1].secret", secret("service-b")),
            ("clients[2].secret", secret("service-c")),
            ("clients[3].secret", secret("builds-api")),
            ("clients[4].secret", secret("resource-api")),
            (
                "users[0].password_hash",
                line_of(DEPLOY, "    password_hash: ", 0)
            ),
            (
                "users[0].totp_secret",
                line_of(DEPLOY, "    totp_secret: ", 0)
            ),
            (
                "users[1].password_hash",
                line_of(DEPLOY, "    password_hash: ", 1)
            ),
        ],
        "{report}"
    );
    assert!(
        report.errors[0]
            .reason
            .starts_with("SERVICE_A_SECRET is not set, so the inline client secret"),
        "{}",
        report.errors[0]
    );
    for e in &report.errors {
        let text = e.to_string();
        assert!(text.contains("`demo: true`"), "{text}");
        assert!(text.contains("published in baton's examples"), "{text}");
        assert!(
            PUBLISHED.iter().all(|v| !text.contains(v)),
            "a secret value in: {text}"
        );
    }
    assert!(report.errors[0].to_string().starts_with(&format!(
        "idp.yaml:{}:5: clients[0].secret: ",
        secret("service-a").expect("line")
    )));
}

#[test]
fn with_demo_true_it_loads_and_warns_once_per_client_and_user() {
    let text = format!("demo: true\n{DEPLOY}");
    let cfg = loaded(load(&text, &[], false));
    let item = |needle: &str| line_of(&text, needle, 0);
    assert_eq!(
        fields(&cfg.warnings),
        [
            ("clients[0]", item("- id: service-a")),
            ("clients[1]", item("- id: service-b")),
            ("clients[2]", item("- id: service-c")),
            ("clients[3]", item("- id: builds-api")),
            ("clients[4]", item("- id: resource-api")),
            ("users[0]", item("- username: alice")),
            ("users[1]", item("- username: bob")),
        ],
        "the shipped example warns about its demo credentials and nothing else"
    );
    assert_eq!(
        cfg.warnings[5].reason,
        "user alice uses demo credentials (password_hash, totp_secret: inline or published in \
         baton's examples): for a local demo only"
    );
    assert!(cfg.config.clients["service-a"].default_audience.is_some());
}

#[test]
fn allow_inline_secrets_does_what_demo_true_does() {
    let by_flag = loaded(load(DEPLOY, &[], true));
    let by_file = loaded(load(&format!("demo: true\n{DEPLOY}"), &[], false));
    let reasons = |l: &Loaded| {
        l.warnings
            .iter()
            .map(|w| w.reason.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(reasons(&by_flag), reasons(&by_file));
    assert_eq!(by_flag.warnings.len(), 7);
}

#[test]
fn set_variables_replace_the_inline_client_secrets_but_not_the_users_hashes() {
    let env = [
        ("SERVICE_A_SECRET", "generated-a-6f1c2d"),
        ("SERVICE_B_SECRET", "generated-b-6f1c2d"),
        ("SERVICE_C_SECRET", "generated-c-6f1c2d"),
        ("BUILDS_API_SECRET", "generated-d-6f1c2d"),
        ("RESOURCE_API_SECRET", "generated-e-6f1c2d"),
    ];
    let report = refused(load(DEPLOY, &env, false));
    let errors: Vec<&str> = report.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        errors,
        [
            "users[0].password_hash",
            "users[0].totp_secret",
            "users[1].password_hash"
        ]
    );
    // With demo: true, the variables win over the inline values and only the users warn.
    let cfg = loaded(load(&format!("demo: true\n{DEPLOY}"), &env, false));
    let warned: Vec<&str> = cfg.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(warned, ["users[0]", "users[1]"]);
    let crate::idp::config::ClientAuth::Secret(s) = &cfg.config.clients["service-a"].auth else {
        panic!("a secret client");
    };
    assert_eq!(s.expose(), "generated-a-6f1c2d");
}

fn scratch() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "baton-idp-check-{}-{:x}",
        std::process::id(),
        crate::secret::random_u64()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn a_published_value_from_a_file_or_a_variable_is_refused_without_printing_it() {
    let dir = scratch();
    std::fs::write(dir.join("b.secret"), "demo-secret-service-b\n").expect("write");
    std::fs::write(dir.join("alice.hash"), format!("{}\n", PUBLISHED[5])).expect("write");
    let text = "issuer: http://127.0.0.1:9000\nkeys: {dir: keys}\nclients:\n  - id: a\n    secret_env: A_SECRET\n  - id: b\n    secret_file: b.secret\nusers:\n  - username: alice\n    password_hash_file: alice.hash\n    totp_secret_env: ALICE_TOTP\n";
    let file = dir.join("idp.yaml").display().to_string();
    let env = [
        ("A_SECRET", "demo-secret-service-a"),
        ("ALICE_TOTP", "KRSXG5CBNRUWGZJNMRSW23ZNGEZDGNBV"),
    ];
    let report = refused(load_at(text, &file, &env, false));
    assert_eq!(
        fields(&report.errors),
        [
            ("clients[0].secret_env", Some(5)),
            ("clients[1].secret_file", Some(7)),
            ("users[0].password_hash_file", Some(10)),
            ("users[0].totp_secret_env", Some(11)),
        ],
        "{report}"
    );
    for e in &report.errors {
        let text = e.to_string();
        assert!(text.contains("published in baton's examples"), "{text}");
        assert!(PUBLISHED.iter().all(|v| !text.contains(v)), "{text}");
    }

    // Values of the operator's own are read silently.
    std::fs::write(dir.join("b.secret"), "a-fresh-secret-for-b\n").expect("write");
    std::fs::write(dir.join("alice.hash"), format!("{FRESH_HASH}\n")).expect("write");
    let env = [
        ("A_SECRET", "a-fresh-secret-for-a"),
        ("ALICE_TOTP", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
    ];
    let cfg = loaded(load_at(text, &file, &env, false));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let alice = &cfg.config.users["alice"];
    assert_eq!(alice.password_hash.expose(), FRESH_HASH);
    assert!(alice.totp_secret.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unset_variable_or_an_unreadable_file_is_named() {
    let text = "issuer: http://127.0.0.1:9000\nkeys: {dir: keys}\nclients:\n  - id: a\n    secret_env: A_SECRET\nusers:\n  - username: u\n    password_hash_file: /nonexistent/u.hash\n  - username: v\n";
    let report = refused(load(text, &[], false));
    assert_eq!(
        fields(&report.errors),
        [
            ("clients[0].secret_env", Some(5)),
            ("users[0].password_hash_file", Some(8)),
            ("users[1]", Some(9)),
        ],
        "{report}"
    );
    assert!(report.errors[0].reason.contains("A_SECRET is not set"));
    assert!(
        report.errors[2]
            .reason
            .starts_with("needs password_hash_file")
    );
}

#[test]
fn three_mistakes_in_three_sections_are_all_reported_with_their_lines() {
    let text = "\
issuer: http://127.0.0.1:9000
keys: {dir: keys}
lifetimes:
  access: 0
clients:
  - id: a
    secret_env: A_SECRET
    redirect_uris: [relative/cb]
    grant_types: [authorization_code, client_credentials]
grants:
  - client: a
    target: nobody
";
    let report = refused(load(text, &[("A_SECRET", "fresh-secret-a")], false));
    let lines: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        [
            "idp.yaml:4:3: lifetimes.access: must be between 1 and 86400 seconds",
            "idp.yaml:8:5: clients[0].redirect_uris: relative/cb must be absolute without a \
             fragment (RFC 6749 §3.1.2)",
            "idp.yaml:12:5: grants[0].target: unknown target nobody: targets are client ids",
        ]
    );
    assert!(report.to_string().starts_with("error: idp.yaml:4:3: "));
}

#[test]
fn an_unknown_field_is_named_at_its_line_and_the_rest_is_still_validated() {
    let text =
        "issuer: http://127.0.0.1:9000\nkeys: {dir: keys}\nclients:\n  - id: a\n    secrt: x\n";
    let report = refused(load(text, &[], false));
    // The misspelt secret is unknown, and so the client has no secret.
    assert_eq!(
        fields(&report.errors),
        [("clients[0]", Some(4)), ("clients[0].secrt", Some(5))]
    );
    assert!(
        report.errors[1]
            .reason
            .starts_with("unknown field `secrt`: did you mean `secret`?"),
        "{report}"
    );
    let report = refused(load("issuer: [http://x\nkeys: {dir: k}\n", &[], false));
    assert_eq!(report.errors.len(), 1);
    assert!(report.errors[0].line.is_some(), "{report}");
}

#[test]
fn yes_and_no_stay_strings() {
    let text = "demo: true\nissuer: http://127.0.0.1:9000\nkeys: {dir: keys}\nclients:\n  - {id: a, secret: secret-a-123}\ngrants:\n  - {client: a, target: a, claims: {tier: yes, beta: no}}\n";
    let cfg = loaded(load(text, &[], false));
    assert_eq!(cfg.config.grants[0].claims["tier"], "yes");
    assert_eq!(cfg.config.grants[0].claims["beta"], "no");
}

#[test]
fn what_can_never_take_effect_is_a_warning() {
    let text = "\
issuer: http://127.0.0.1:9000
keys: {dir: keys}
clients:
  - id: web
    secret_env: S
    redirect_uris: [http://127.0.0.1/cb]
    grant_types: [client_credentials]
  - id: api
    secret_env: S
    grant_types: [refresh_token]
    default_audience: web
grants:
  - client: api
    target: web
";
    let cfg = loaded(load(text, &[("S", "a-fresh-secret")], false));
    assert_eq!(
        fields(&cfg.warnings),
        [
            ("clients[0].redirect_uris", Some(6)),
            ("clients[0].grant_types", Some(7)),
            ("clients[1].default_audience", Some(11)),
            ("grants[0]", Some(13)),
        ],
        "{:?}",
        cfg.warnings
    );
    assert!(
        cfg.warnings[3]
            .reason
            .starts_with("api → web is never used")
    );
}

#[test]
fn default_audience_must_be_a_client_an_edge_reaches() {
    let base = "issuer: http://127.0.0.1:9000\nkeys: {dir: keys}\nclients:\n  - id: b\n    secret_env: S\n  - id: a\n    secret_env: S\n    grant_types: [client_credentials]\n";
    let env = [("S", "a-fresh-secret")];
    let report = refused(load(
        &format!("{base}    default_audience: ghost\n"),
        &env,
        false,
    ));
    assert_eq!(
        report.errors[0].to_string(),
        "idp.yaml:9:5: clients[1].default_audience: ghost is not a configured client"
    );
    let report = refused(load(
        &format!("{base}    default_audience: b\n"),
        &env,
        false,
    ));
    assert_eq!(
        report.errors[0].to_string(),
        "idp.yaml:9:5: clients[1].default_audience: no grants edge a → b: a token for it would \
         be refused"
    );
    let cfg = loaded(load(
        &format!("{base}    default_audience: b\ngrants:\n  - {{client: a, target: b}}\n"),
        &env,
        false,
    ));
    assert_eq!(
        cfg.config.clients["a"].default_audience.as_deref(),
        Some("b")
    );
}

/// Inline values in a shipped file (`secret:`, `password_hash:`, `totp_secret:`).
fn inline_values(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            ["secret: ", "password_hash: ", "totp_secret: "]
                .iter()
                .find_map(|k| l.strip_prefix(k))
        })
        .map(|v| {
            let v = v.split(" #").next().unwrap_or(v).trim();
            v.trim_matches('"').to_owned()
        })
        .collect()
}

#[test]
fn every_inline_value_of_the_examples_is_known_and_the_deployments_have_none() {
    let demo = inline_values(DEPLOY);
    assert_eq!(demo.len(), 8, "{demo:?}");
    for v in &demo {
        assert!(PUBLISHED.contains(&v.as_str()), "{v} is not in PUBLISHED");
    }
    assert_eq!(inline_values(COMPOSE), Vec::<String>::new());
    // The ConfigMap's idp.yaml (the Deployment's `secret:` volumes are not IdP fields).
    let k8s_idp = K8S
        .split_once("idp.yaml: |")
        .and_then(|(_, rest)| rest.split("\n---").next())
        .expect("deploy/k8s/idp.yaml holds an idp.yaml ConfigMap");
    assert!(k8s_idp.contains("password_hash_file"), "{k8s_idp}");
    assert_eq!(inline_values(k8s_idp), Vec::<String>::new());
    assert!(
        !K8S.contains("demo-secret-"),
        "the Kubernetes example holds a demo secret"
    );
}

#[test]
fn the_config_file_may_be_unreadable_as_yaml_and_still_gets_one_finding() {
    let report = refused(load("\u{0}", &[], false));
    assert_eq!(report.errors.len(), 1, "{report}");
}

#[test]
fn a_check_lists_what_this_machine_lacks_as_warnings_and_start_up_refuses_it() {
    // The compose deployment's secrets are files mounted in its containers, not here.
    let text = include_str!("../../../../deploy/compose/idp.yaml");
    let file = "deploy/compose/idp.yaml";
    let opts = Options {
        allow_inline_secrets: false,
        env: &|_| None,
    };
    let report = Config::check(text, file, &opts);
    assert!(report.errors.is_empty(), "{report}");
    let missing = [
        "clients[0].secret_file",
        "clients[1].secret_file",
        "clients[2].secret_file",
        "users[0].password_hash_file",
        "users[1].password_hash_file",
    ];
    let warned: Vec<&str> = report.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(warned, missing, "{report}");
    assert!(report.warnings.iter().all(|w| w.line.is_some()));
    let refused = refused(Config::load(text, file, &opts));
    let errors: Vec<&str> = refused.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(errors, missing, "{refused}");
}
