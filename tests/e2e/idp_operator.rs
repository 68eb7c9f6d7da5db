//! e2e: what an operator meets first with baton-idp. The shipped `deploy/idp.yaml` started as it
//! is (its variables unset) is refused with each inline secret named at its line; with
//! `demo: true` it starts and logs one warning per client and user holding demo credentials;
//! `baton-idp check` lists every mistake with its line; `client_credentials` without `audience`
//! or `resource` uses the client's `default_audience`, or says which parameter to send.

use crate::support::idp as support;
use crate::support::process::{deploy_idp_yaml, free_port, http_client, scratch};
use reqwest::StatusCode;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_baton-idp");
/// The variables `deploy/idp.yaml` reads its client secrets from.
const VARIABLES: [&str; 5] = [
    "SERVICE_A_SECRET",
    "SERVICE_B_SECRET",
    "SERVICE_C_SECRET",
    "BUILDS_API_SECRET",
    "RESOURCE_API_SECRET",
];
/// How long a refused start or a `check` may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// `deploy/idp.yaml` listening on `port`, keys in `dir`, `prefix` written before it.
fn deploy_config(dir: &Path, port: u16, prefix: &str) -> (std::path::PathBuf, String) {
    let text = deploy_idp_yaml(
        &format!("http://127.0.0.1:{port}"),
        &format!("127.0.0.1:{port}"),
        &dir.join("keys"),
    );
    let text = format!("{prefix}{text}");
    let path = dir.join("idp.yaml");
    std::fs::write(&path, &text).expect("write idp.yaml");
    (path, text)
}

/// `baton-idp ARGS` with none of the demo's variables set, output to `log`; killed when dropped.
fn spawn(args: &[&str], log: &Path) -> tokio::process::Child {
    let out = std::fs::File::create(log).expect("log file");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .kill_on_drop(true);
    for v in VARIABLES {
        cmd.env_remove(v);
    }
    cmd.spawn().expect("spawn baton-idp")
}

/// Runs `baton-idp ARGS` to its end (bounded); its status and its output.
async fn run(args: &[&str], log: &Path) -> (ExitStatus, String) {
    let mut child = spawn(args, log);
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("baton-idp ends by itself")
        .expect("wait");
    (status, std::fs::read_to_string(log).expect("log"))
}

/// The 1-based line of the `nth` line of `text` containing `needle`.
fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("no {needle} in the config"))
}

/// Published demo values no message or log line may carry.
fn assert_no_demo_value(text: &str) {
    for v in [
        "demo-secret-",
        "$argon2id$",
        "KRSXG5CBNRUWGZJNMRSW23ZNGEZDGNBV",
    ] {
        assert!(!text.contains(v), "a secret value in:\n{text}");
    }
}

#[test_log::test(tokio::test)]
async fn the_shipped_config_without_its_variables_refuses_to_start_naming_each_inline_secret() {
    let dir = scratch("operator-refused");
    let (config, text) = deploy_config(&dir, free_port(), "");
    let (status, out) = run(
        &["serve", "-c", config.to_str().expect("utf-8")],
        &dir.join("idp.log"),
    )
    .await;
    assert_eq!(status.code(), Some(64), "{out}");
    let file = config.display().to_string();
    let secret = |c: &str| line_of(&text, &format!("secret: demo-secret-{c}"), 0);
    let expected = [
        (
            secret("service-a"),
            "clients[0].secret: SERVICE_A_SECRET is not set",
        ),
        (
            secret("service-b"),
            "clients[1].secret: SERVICE_B_SECRET is not set",
        ),
        (
            secret("service-c"),
            "clients[2].secret: SERVICE_C_SECRET is not set",
        ),
        (
            secret("builds-api"),
            "clients[3].secret: BUILDS_API_SECRET is not set",
        ),
        (
            secret("resource-api"),
            "clients[4].secret: RESOURCE_API_SECRET is not set",
        ),
        (
            line_of(&text, "    password_hash: ", 0),
            "users[0].password_hash: inline password hash",
        ),
        (
            line_of(&text, "    totp_secret: ", 0),
            "users[0].totp_secret: inline TOTP secret",
        ),
        (
            line_of(&text, "    password_hash: ", 1),
            "users[1].password_hash: inline password hash",
        ),
    ];
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), expected.len(), "{out}");
    for ((line, start), got) in expected.iter().zip(&errors) {
        assert!(
            // Each key is indented by four spaces: column 5.
            got.starts_with(&format!("error: {file}:{line}:5: {start}")),
            "expected {file}:{line}:5: {start}…, got {got}"
        );
        assert!(got.contains("`demo: true`"), "{got}");
    }
    assert!(!out.contains("listening"), "{out}");
    assert_no_demo_value(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test_log::test(tokio::test)]
async fn with_demo_true_it_starts_warns_once_per_client_and_user_and_is_ready() {
    let dir = scratch("operator-demo");
    let port = free_port();
    let (config, _) = deploy_config(&dir, port, "demo: true\n");
    let log = dir.join("idp.log");
    let mut child = spawn(&["-c", config.to_str().expect("utf-8")], &log);
    let http = http_client();
    let ready = async {
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let url = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
            if let Ok(rsp) = http.get(url).send().await
                && rsp.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::time::timeout(DEADLINE, ready)
        .await
        .expect("ready in time");
    let out = std::fs::read_to_string(&log).expect("log");
    let warnings: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("uses demo credentials"))
        .collect();
    assert_eq!(warnings.len(), 7, "5 clients and 2 users:\n{out}");
    for (who, field) in [
        ("client service-a", "clients[0]"),
        ("client resource-api", "clients[4]"),
        ("user alice", "users[0]"),
        ("user bob", "users[1]"),
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(who)
                && w.contains(&format!("field={field}"))
                && w.contains(" WARN ")),
            "no warning for {who}:\n{out}"
        );
    }
    assert!(out.contains("baton-idp listening"), "{out}");
    // A token for a demo client proves the accepted config is the one served.
    let rsp = http
        .post(format!("http://127.0.0.1:{port}/token"))
        .basic_auth("service-b", Some("demo-secret-service-b"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", "service-c"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_no_demo_value(&out);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test_log::test(tokio::test)]
async fn check_lists_three_mistakes_in_three_sections_with_their_lines_and_exits_64() {
    let dir = scratch("operator-check");
    std::fs::write(dir.join("a.secret"), "a-generated-secret\n").expect("write");
    let config = dir.join("idp.yaml");
    std::fs::write(
        &config,
        "\
issuer: http://127.0.0.1:9000
keys: {dir: keys}
lifetimes:
  access: 0
clients:
  - id: a
    secret_file: a.secret
    redirect_uris: [relative/cb]
    grant_types: [authorization_code, client_credentials]
grants:
  - client: a
    target: nobody
",
    )
    .expect("write");
    let path = config.to_str().expect("utf-8");
    let (status, out) = run(&["check", "-c", path], &dir.join("check.log")).await;
    assert_eq!(status.code(), Some(64), "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        errors,
        [
            format!("error: {path}:4:3: lifetimes.access: must be between 1 and 86400 seconds"),
            format!(
                "error: {path}:8:5: clients[0].redirect_uris: relative/cb must be absolute without a fragment (RFC 6749 §3.1.2)"
            ),
            format!(
                "error: {path}:12:5: grants[0].target: unknown target nobody: targets are client ids"
            ),
        ],
        "{out}"
    );
    assert!(
        out.contains(&format!("{path}: 3 errors, 0 warnings")),
        "{out}"
    );

    // Fixed, the same file passes; a warning is listed apart and does not fail the check.
    std::fs::write(
        &config,
        "issuer: http://127.0.0.1:9000\nkeys: {dir: keys}\nclients:\n  - id: a\n    secret_file: a.secret\n    redirect_uris: [http://127.0.0.1/cb]\n",
    )
    .expect("write");
    let (status, out) = run(&["check", "-c", path], &dir.join("check2.log")).await;
    assert!(status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "warning: {path}:6:5: clients[0].redirect_uris: registered, but authorization_code is not among grant_types"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("{path}: ok (1 warning)")), "{out}");

    // The shipped example: refused as it is, accepted with --allow-inline-secrets.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/idp.yaml");
    let shipped = shipped.to_str().expect("utf-8");
    let (status, out) = run(&["check", "-c", shipped], &dir.join("check3.log")).await;
    assert_eq!(status.code(), Some(64), "{out}");
    assert!(out.contains(": 8 errors, 0 warnings"), "{out}");
    let (status, out) = run(
        &["check", "--allow-inline-secrets", "-c", shipped],
        &dir.join("check4.log"),
    )
    .await;
    assert!(status.success(), "{out}");
    assert!(out.contains(": ok (7 warnings)"), "{out}");
    assert_no_demo_value(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test_log::test(tokio::test)]
async fn client_credentials_without_a_target_uses_the_default_audience_or_names_the_parameters() {
    let idp = support::start().await;
    let cc = ("grant_type", "client_credentials");
    // service-a has `default_audience: service-b` in deploy/idp.yaml.
    let (st, body) = idp.token("service-a", &[cc]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let claims = support::claims(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["aud"], "service-b");
    assert_eq!(claims["sub"], "service-a");

    // A named target wins over the default.
    let (st, body) = idp
        .token("service-a", &[cc, ("audience", "resource-api")])
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        support::claims(body["access_token"].as_str().expect("token"))["aud"],
        "resource-api"
    );
    let (st, body) = idp
        .token(
            "service-a",
            &[cc, ("resource", "https://builds.example/api")],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        support::claims(body["access_token"].as_str().expect("token"))["aud"],
        "builds-api"
    );

    // An empty value counts as omitted (RFC 6749 §3.1): the default applies. A target the
    // client has no edge to is refused, never replaced by the default.
    for form in [vec![cc, ("audience", "")], vec![cc, ("resource", "")]] {
        let (st, body) = idp.token("service-a", &form).await;
        assert_eq!(st, StatusCode::OK, "{form:?}: {body}");
        let token = body["access_token"].as_str().expect("token");
        assert_eq!(support::claims(token)["aud"], "service-b", "{form:?}");
    }
    let (st, body) = idp
        .token("service-a", &[cc, ("audience", "service-c")])
        .await;
    assert_eq!(
        (st, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_target"))
    );
    // A target in the query string or under another name is not read: the default applies.
    let rsp = idp
        .http
        .post(format!("{}/token?audience=resource-api", idp.url))
        .basic_auth("service-a", Some(support::secret("service-a")))
        .form(&[cc, ("Audience", "resource-api"), ("aud", "resource-api")])
        .send()
        .await
        .expect("token");
    assert_eq!(rsp.status(), StatusCode::OK);
    let body: serde_json::Value = rsp.json().await.expect("json");
    assert_eq!(
        support::claims(body["access_token"].as_str().expect("token"))["aud"],
        "service-b"
    );

    // Without a default, the error says what to send.
    let (st, body) = idp.token("service-b", &[cc]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_target");
    let description = body["error_description"].as_str().expect("description");
    assert!(
        description.contains("send audience")
            && description.contains("resource")
            && description.contains("default_audience"),
        "{description}"
    );
}
