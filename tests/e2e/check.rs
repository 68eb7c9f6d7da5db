//! e2e: `baton check` on the real binary. A config with three mistakes in three sections gets all
//! three, each with its line, column and field, and a count; the shipped `sidecar.yaml` is valid
//! on a machine without its secret file, which is listed as a warning (`--strict` makes it fatal);
//! `baton run` refuses to start without that file.

use crate::support::process::scratch;
use std::path::Path;
use std::process::{Command, Output};

/// `baton ARGS`, without the variable the three-mistakes config reads its secret from.
fn baton(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .env_remove("BATON_CHECK_E2E_SECRET")
        .output()
        .expect("run baton")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn check_lists_three_mistakes_in_three_sections_with_their_places_and_exits_64() {
    let dir = scratch("check-three");
    let config = dir.join("sidecar.yaml");
    std::fs::write(
        &config,
        "\
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
    secret_env: BATON_CHECK_E2E_SECRET
  routes:
    - name: c
      host: service-c:8080
      audience: service-c
      without_subject: maybe
",
    )
    .expect("write");
    let path = config.to_str().expect("utf-8");
    let out = baton(&["check", "-c", path]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "error: {path}:5:3: jwks.refresh_min: must be a positive duration like 500ms, \
                 10s, 5m or 1h"
            ),
            format!(
                "error: {path}:9:5: routes[0].scopez: unknown field `scopez`: did you mean \
                 `scopes`?"
            ),
            format!(
                "error: {path}:18:7: outbound.routes[0].without_subject: \"maybe\": use deny or \
                 client_credentials"
            ),
            format!(
                "warning: {path}:13:5: outbound.client.secret_env: environment variable \
                 BATON_CHECK_E2E_SECRET is not set"
            ),
            format!("{path}: 3 errors, 1 warning"),
        ]
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_example_is_valid_here_with_its_missing_secret_file_as_a_warning() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecar.yaml");
    let shipped = shipped.to_str().expect("utf-8");
    let secret = "/var/run/secrets/baton/client-secret";
    assert!(
        !Path::new(secret).exists(),
        "this test needs a machine without {secret}"
    );
    let out = baton(&["check", "-c", shipped]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("warning: {shipped}:"))
            && lines[0].contains(&format!(": outbound.client.secret_file: read {secret}: ")),
        "{stdout}"
    );
    assert_eq!(lines[1], format!("{shipped}: ok (1 warning)"));

    // On the machine the sidecar runs on, nothing it names may be missing.
    let out = baton(&["check", "--strict", "-c", shipped]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.starts_with("warning: "), "{err}");
    assert!(
        err.ends_with(&format!(
            "{shipped}: ok (1 warning); --strict: warnings fail the check\n"
        )),
        "{err}"
    );

    // And `baton run` refuses to start without it, naming it as an error.
    let out = baton(&["run", "-c", shipped]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(64), "{all}");
    assert!(all.contains("outbound.client.secret_file: read "), "{all}");
}

#[test]
fn a_file_that_cannot_be_read_is_one_error() {
    let out = baton(&["check", "-c", "/nonexistent/baton/sidecar.yaml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.starts_with("error: /nonexistent/baton/sidecar.yaml: (file): read: "),
        "{err}"
    );
    assert!(
        err.ends_with("/nonexistent/baton/sidecar.yaml: 1 error, 0 warnings\n"),
        "{err}"
    );
}
