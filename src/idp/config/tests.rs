use super::*;

// Inline secrets keep these tests short: `demo: true` accepts them (tested in check/tests.rs).
const BASE: &str = r#"
demo: true
issuer: http://127.0.0.1:9000/
keys: {dir: keys}
clients:
  - id: a
    secret: secret-a-123
    redirect_uris: [http://127.0.0.1:8080/cb]
    grant_types: [authorization_code, "urn:ietf:params:oauth:grant-type:token-exchange"]
  - id: b
    secret: secret-b-123
"#;

fn errors(extra: &str) -> Vec<String> {
    match Config::from_yaml(&format!("{BASE}{extra}"), "idp.yaml") {
        Ok(_) => Vec::new(),
        // Without the position: these tests are about the fields and reasons.
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}: {}: {}", e.file, e.field, e.reason))
                .collect()
        }
    }
}

#[test]
fn the_deploy_example_is_valid() {
    let cfg = Config::demo("http://127.0.0.1:1234/", "/tmp/k");
    assert_eq!(cfg.issuer, "http://127.0.0.1:1234");
    assert!(cfg.edge("service-a", "service-b").is_some());
    assert_eq!(cfg.resources["https://builds.example/api"], "builds-api");
    assert!(cfg.max_token_lifetime() >= 86_400);
}

#[test]
fn a_minimal_config_loads_with_defaults() {
    let cfg = Config::from_yaml(BASE, "idp.yaml").expect("valid");
    assert_eq!(cfg.issuer, "http://127.0.0.1:9000");
    assert_eq!(cfg.lifetimes.access, 300);
    assert_eq!(cfg.keys.algorithm, Algorithm::ES256);
}

#[test]
fn edges_must_name_known_clients_and_not_set_reserved_claims() {
    let e = errors(
        "grants:\n  - {client: a, target: nope, claims: {sub: x, acr: y}}\n  - {client: ghost, target: b}\n",
    );
    assert!(
        e.contains(
            &"idp.yaml: grants[0].target: unknown target nope: targets are client ids".to_string()
        ),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("idp.yaml: grants[0].claims.sub: is reserved"))
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("idp.yaml: grants[0].claims.acr: is reserved"))
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("idp.yaml: grants[1].client: unknown client ghost"))
    );
}

#[test]
fn two_edges_to_one_target_may_not_disagree_on_a_scalar() {
    let e = errors(
        "  - id: c\n    secret: secret-c-123\ngrants:\n  - {client: a, target: b, claims: {tier: gold, o: {x: 1}, l: [1]}}\n  - {client: c, target: b, claims: {tier: silver, o: {y: 2}, l: [2]}}\n",
    );
    assert_eq!(
        e,
        vec![
            "idp.yaml: grants[1].claims.tier: grants[0] also reaches b and sets a different value"
                .to_string()
        ]
    );
}

#[test]
fn uris_and_lifetimes_are_checked() {
    let e = errors(
        "  - id: d\n    secret: secret-d-123\n    grant_types: [authorization_code]\n    redirect_uris: [\"http://x/cb#frag\", /relative]\n    post_logout_redirect_uris: [\"http://x/bye#f\", /bye]\nresources:\n  \"https://r.example/api#x\": b\n  \"not a uri\": b\nlifetimes: {access: 0, code: 3600}\n",
    );
    let joined = e.join("\n");
    assert!(
        joined.contains("clients[2].redirect_uris: http://x/cb#frag must be absolute"),
        "{joined}"
    );
    assert!(joined.contains("clients[2].redirect_uris: /relative must be absolute"));
    assert!(
        joined.contains("clients[2].post_logout_redirect_uris: http://x/bye#f must be absolute")
    );
    assert!(joined.contains("clients[2].post_logout_redirect_uris: /bye must be absolute"));
    assert!(joined.contains("resources.https://r.example/api#x: must be an absolute URI"));
    assert!(joined.contains("resources.not a uri: must be an absolute URI"));
    assert!(joined.contains("lifetimes.access: must be between"));
    assert!(joined.contains("lifetimes.code: must be between"));
}

#[test]
fn unknown_fields_and_missing_credentials_are_reported() {
    let e = errors("  - id: e\n");
    assert!(
        e.iter().any(|m| m.contains("clients[2]: needs secret")),
        "{e:?}"
    );
    let e = errors("surprise: 1\n");
    assert!(e[0].contains("unknown field `surprise`"), "{e:?}");
}

#[test]
fn acr_levels_default_and_totp_secrets_are_checked() {
    let cfg = Config::from_yaml(BASE, "idp.yaml").expect("valid");
    assert_eq!(cfg.acr["mfa"], [Factor::Pwd, Factor::Otp]);
    assert_eq!(cfg.lifetimes.session, 28_800);
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$r+5TdXsBB9POuvffwWAHTQ$NTuHHT2TSdubsihZXpTDWDmoInOKlgMu5mgjKpzyKj8";
    let e = errors(&format!(
        "users:\n  - {{username: u, password_hash: \"{hash}\", totp_secret: JBSWY3DP}}\nacr:\n  otp-only: [otp]\n"
    ));
    assert!(
        e.iter().any(|m| m.contains("users[0].totp_secret")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("acr.otp-only: must start with pwd")),
        "{e:?}"
    );
}

#[test]
fn login_limits_default_and_are_checked() {
    let cfg = Config::from_yaml(BASE, "idp.yaml").expect("valid");
    assert!((1..=4).contains(&cfg.login.hash_workers));
    assert_eq!(cfg.login.hash_queue, 16);
    let cfg = Config::from_yaml(
        &format!("{BASE}login: {{hash_workers: 3, hash_queue: 0}}\n"),
        "idp.yaml",
    )
    .expect("valid");
    assert_eq!((cfg.login.hash_workers, cfg.login.hash_queue), (3, 0));
    let e = errors("login: {hash_workers: 0, hash_queue: 5000}\n");
    assert!(e.iter().any(|m| m.contains("login.hash_workers")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("login.hash_queue")), "{e:?}");
    assert!(
        !errors("login: {throttle: 1}\n").is_empty(),
        "unknown field"
    );
}

/// `BASE` without `demo: true`, with `extra` appended, read with `env`.
fn load_strict(extra: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<String>> {
    let text = format!("{}{extra}", BASE.replace("demo: true\n", ""));
    let opts = Options {
        allow_inline_secrets: false,
        env,
    };
    // The clients' inline secrets are allowed; only the store's URL is under test.
    let text = text
        .replace("secret: secret-a-123", "secret_env: A_SECRET")
        .replace("secret: secret-b-123", "secret_env: B_SECRET");
    Config::load(&text, "idp.yaml", &opts)
        .map(|l| l.config)
        .map_err(|r| {
            r.errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.reason))
                .collect()
        })
}

fn env_with_url(name: &str) -> Option<String> {
    match name {
        "A_SECRET" | "B_SECRET" => Some("a-long-enough-secret".into()),
        "DB_URL" => Some("postgres://baton:pw@db:5432/baton".into()),
        _ => None,
    }
}

#[test]
fn the_store_is_memory_unless_postgres_is_asked_with_a_url_from_a_file_or_the_environment() {
    let cfg = load_strict("", &env_with_url).expect("valid");
    assert!(matches!(cfg.store, StoreConfig::Memory));
    let cfg = load_strict(
        "store: {kind: postgres, url_env: DB_URL, pool_size: 4, connect_timeout: 3}\n",
        &env_with_url,
    )
    .expect("valid");
    let StoreConfig::Postgres(pg) = cfg.store else {
        panic!("postgres");
    };
    assert_eq!(pg.url.expose(), "postgres://baton:pw@db:5432/baton");
    assert_eq!((pg.pool_size, pg.connect_timeout.as_secs()), (4, 3));
    assert!(!format!("{:?}", pg.url).contains("pw@"));
}

#[test]
fn an_inline_database_url_is_refused_like_an_inline_secret_and_never_echoed() {
    let e = load_strict(
        "store: {kind: postgres, url: \"postgres://baton:hunter2@db/baton\"}\n",
        &env_with_url,
    )
    .err()
    .expect("refused");
    assert!(
        e.iter()
            .any(|m| m.starts_with("store.url: inline database URL")),
        "{e:?}"
    );
    assert!(!e.iter().any(|m| m.contains("hunter2")), "{e:?}");
    let e = load_strict("store: {kind: postgres}\n", &env_with_url)
        .err()
        .expect("refused");
    assert!(
        e.iter().any(|m| m.contains("needs url_file or url_env")),
        "{e:?}"
    );
    let e = load_strict("store: {kind: redis}\n", &env_with_url)
        .err()
        .expect("refused");
    assert!(e.iter().any(|m| m.starts_with("store.kind:")), "{e:?}");
    let e = load_strict(
        "store: {kind: postgres, url_env: DB_URL, pool_size: 0}\n",
        &env_with_url,
    )
    .err()
    .expect("refused");
    assert!(e.iter().any(|m| m.starts_with("store.pool_size:")), "{e:?}");
    let e = load_strict("store: {kind: postgres, url_env: NOT_SET}\n", &env_with_url)
        .err()
        .expect("refused");
    assert!(e.iter().any(|m| m.contains("NOT_SET is not set")), "{e:?}");
    let e = load_strict("store: {kind: memory, url_env: DB_URL}\n", &env_with_url)
        .err()
        .expect("refused");
    assert!(e.iter().any(|m| m.starts_with("store.url:")), "{e:?}");
}

#[test]
fn a_key_encryption_key_is_32_bytes_in_hex_or_base64_and_never_inline() {
    let env = |name: &str| match name {
        "KEK_HEX" => Some("00".repeat(31) + "ff"),
        "KEK_B64" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
        "KEK_SHORT" => Some("c2hvcnQ=".into()),
        other => env_with_url(other),
    };
    let kek = |extra: &str| {
        let store = format!("store: {{kind: postgres, url_env: DB_URL, {extra}}}\n");
        match load_strict(&store, &env) {
            Ok(cfg) => match cfg.store {
                StoreConfig::Postgres(pg) => Ok(pg.key_encryption_key),
                StoreConfig::Memory => panic!("postgres"),
            },
            Err(e) => Err(e),
        }
    };
    assert_eq!(
        kek("key_encryption_key_env: KEK_HEX")
            .expect("hex")
            .map(|k| k[31]),
        Some(0xff)
    );
    assert_eq!(
        kek("key_encryption_key_env: KEK_B64")
            .expect("b64")
            .map(|k| k[31]),
        Some(31)
    );
    assert_eq!(kek("pool_size: 2").expect("none"), None);
    let e = kek("key_encryption_key_env: KEK_SHORT").expect_err("short");
    assert!(
        e.iter()
            .any(|m| m.starts_with("store.key_encryption_key: must be 32 bytes")),
        "{e:?}"
    );
    let e = kek("key_encryption_key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .expect_err("inline");
    assert!(
        e.iter()
            .any(|m| m.starts_with("store.key_encryption_key: inline")),
        "{e:?}"
    );
    assert!(!e.iter().any(|m| m.contains("AAECAw")), "{e:?}");
}

#[test]
fn txn_tokens_name_a_trust_domain_short_lifetimes_and_known_exchange_clients() {
    let ok = "txn_tokens: {audience: \"https://baton.example/td\", clients: [a]}\n";
    let cfg = Config::from_yaml(&format!("{BASE}{ok}"), "idp.yaml").expect("valid");
    let t = cfg.txn_tokens.expect("txn_tokens");
    assert_eq!(t.lifetime, 300);
    assert!(t.allows("a") && !t.allows("b") && !t.allows_unsigned("a"));
    let e = errors(
        "txn_tokens: {audience: a, lifetime: 3600, clients: [b, ghost], unsigned_subject_clients: [x]}\n",
    );
    for field in [
        "txn_tokens.audience: must not be a client id",
        "txn_tokens.lifetime: must be between 1 and 900",
        "txn_tokens.clients[0]: the client must be allowed the token-exchange grant type",
        "txn_tokens.clients[1]: no such client",
        "txn_tokens.unsigned_subject_clients[0]: must also be listed",
    ] {
        assert!(e.iter().any(|m| m.contains(field)), "{field}: {e:?}");
    }
}

#[test]
fn trusted_issuers_name_their_keys_audiences_clients_and_safe_mappings() {
    let ok = r#"
trusted_issuers:
  - name: corp
    issuer: https://sso.corp.example/realms/staff
    jwks_uri: https://sso.corp.example/realms/staff/certs
    audiences: [b]
    clients: [b]
    typ: jwt
    claims: {roles: realm_access.roles}
"#;
    let cfg = Config::from_yaml(&format!("{BASE}{ok}"), "idp.yaml").expect("valid");
    let t = &cfg.trusted_issuers[0];
    assert_eq!(
        t.sub_prefix, "corp:",
        "a foreign sub is kept apart by default"
    );
    assert_eq!(t.mappings[0].source, ["realm_access", "roles"]);
    let bad = r#"
trusted_issuers:
  - name: corp
    issuer: http://127.0.0.1:9000
    jwks_file: corp.json
    jwks_uri: https://x.example/certs
    audiences: []
    clients: [nobody]
    sub_prefix: ""
    claims: {grants: roles, sid: x, roles: "a..b"}
  - name: corp
    issuer: https://Corp.example/
    jwks_uri: http://corp.example/certs
    audiences: [b]
    clients: [b]
    algorithms: [HS256]
  - name: other
    issuer: https://corp.example
    jwks_file: other.json
    audiences: [b]
    clients: [b]
  - name: near
    issuer: https://near.example
    jwks_file: near.json
    audiences: [b]
    clients: [b]
    sub_prefix: b
"#;
    let e = errors(bad).join("\n");
    for needle in [
        "trusted_issuers[0].issuer: is this IdP's own issuer",
        "trusted_issuers[0].jwks_uri: exactly one",
        "trusted_issuers[0].audiences",
        "trusted_issuers[0].clients[0]: no client nobody",
        "trusted_issuers[0].sub_prefix",
        "trusted_issuers[0].claims.grants",
        "trusted_issuers[0].claims.sid",
        "trusted_issuers[0].claims.roles",
        "trusted_issuers[1].name: duplicate",
        "trusted_issuers[1].jwks_uri: must be",
        "trusted_issuers[1].algorithms[0]",
        "trusted_issuers[2].issuer: trusted_issuers[1] already names it",
        "trusted_issuers[3].sub_prefix: b is a user or client here",
        "trusted_issuers[3].sub_prefix: must end with ':'",
    ] {
        assert!(e.contains(needle), "{needle} in:\n{e}");
    }
}

#[test]
fn spiffe_clients_need_a_configured_trust_domain_and_a_strict_id() {
    let dir =
        std::env::temp_dir().join(format!("baton-idp-spiffe-{}", crate::secret::random_u64()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = crate::jwt::keys::SigningKey::generate(Algorithm::ES256).expect("key");
    let bundle = dir.join("td.json");
    let mut jwk = key.public_jwk();
    jwk["use"] = serde_json::json!("jwt-svid");
    std::fs::write(&bundle, serde_json::json!({"keys": [jwk]}).to_string()).expect("write");
    let spiffe = format!(
        "spiffe:\n  trust_domains:\n    - {{name: td.test, bundle_file: \"{}\"}}\n    - {{name: Bad.Test, bundle_file: x.json}}\n    - {{name: web.test, bundle_url: \"http://plain.example/b\"}}\n  max_lifetime: 0\n  algorithms: [HS256]\n",
        bundle.display()
    );
    let e = errors(&format!(
        "  - {{id: c, spiffe_id: \"spiffe://td.test/ns/x/sa/c\"}}\n  - {{id: d, spiffe_id: \"spiffe://td.test/ns/x/sa/c\"}}\n  - {{id: e, spiffe_id: \"spiffe://nowhere.test/a\"}}\n  - {{id: f, spiffe_id: \"spiffe://td.test/a/\"}}\n  - {{id: g, spiffe_id: \"spiffe://td.test/g\", secret: secret-g-123}}\n{spiffe}"
    ));
    for expected in [
        "clients[3].spiffe_id: also the SPIFFE ID of client c",
        "clients[4].spiffe_id: trust domain nowhere.test is not among spiffe.trust_domains",
        "clients[5].spiffe_id: path segments must be",
        "clients[6]: set either spiffe_id or a secret or JWK set, not both",
        "spiffe.trust_domains[1].name: must be a trust domain name",
        "spiffe.trust_domains[2].bundle_url: must be an absolute https URL",
        "spiffe.max_lifetime: must be between 1 and 3600 seconds",
        "spiffe.algorithms[0]: must be one of",
    ] {
        assert!(
            e.iter().any(|m| m.contains(expected)),
            "{expected} not in {e:?}"
        );
    }
    let ok = format!(
        "  - {{id: c, spiffe_id: \"spiffe://td.test/ns/x/sa/c\"}}\nspiffe:\n  trust_domains:\n    - {{name: td.test, bundle_file: \"{}\"}}\n",
        bundle.display()
    );
    let cfg = Config::from_yaml(&format!("{BASE}{ok}"), "idp.yaml").expect("valid");
    let spiffe = cfg.spiffe.as_ref().expect("spiffe");
    assert_eq!(spiffe.max_lifetime, 300);
    assert!(spiffe.trust_domains.contains_key("td.test"));
    assert!(
        matches!(&cfg.clients["c"].auth, ClientAuth::Spiffe(id) if id.trust_domain() == "td.test")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
