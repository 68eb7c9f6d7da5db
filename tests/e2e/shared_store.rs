//! The IdP's store shared by several replicas: three `baton-idp` processes on one PostgreSQL 15
//! cluster (started by the test), behind a round robin that is the issuer. Each behaviour is one
//! test body run twice: against the postgres store with three replicas, and against the memory
//! store with one (where "another replica" is the same process).

use crate::support::idp::{
    ACCESS, ALICE_PASSWORD, EXCHANGE, REDIRECT, claims, hidden, login_cookie, pkce,
};
use crate::support::postgres::PgCluster;
use crate::support::process::{Proc, deploy_idp_yaml, free_port, scratch};
use crate::support::round_robin::RoundRobin;
use baton::dpop::Holder;
use baton::jwt::keys::SigningKey;
use baton::jwt::{Algorithm, unix_now};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Replicas of one IdP and what they run on.
struct Cluster {
    /// The issuer: the round robin in front of them.
    issuer: String,
    /// `http://127.0.0.1:port` of each replica.
    replicas: Vec<String>,
    procs: Vec<Proc>,
    /// The `private_key_jwt` client's key.
    jwt_key: SigningKey,
    http: reqwest::Client,
    pg: Option<PgCluster>,
    _front: RoundRobin,
    dir: PathBuf,
}

enum Kind {
    Memory,
    Postgres,
}

/// The demo config plus a `private_key_jwt` client, a store section, and a short staleness.
fn config(issuer: &str, listen: &str, keys: &Path, jwk: &Value, store: &str) -> String {
    let text = deploy_idp_yaml(issuer, listen, keys);
    let client = format!(
        "clients:\n  - id: jwt-client\n    jwks: {}\n    grant_types: [client_credentials]\n",
        json!({"keys": [jwk]})
    );
    let edge = "grants:\n  - client: jwt-client\n    target: service-b\n    scopes: [openid]\n";
    let text = text
        .replacen("clients:\n", &client, 1)
        .replacen("grants:\n", edge, 1);
    format!("{text}\n{store}")
}

impl Cluster {
    /// Starts the replicas (three on postgres, one on memory); `None` without PostgreSQL.
    async fn start(kind: Kind) -> Option<Cluster> {
        Self::start_with(kind, "").await
    }

    /// [`Cluster::start`] with `extra` appended to every replica's config.
    async fn start_with(kind: Kind, extra: &str) -> Option<Cluster> {
        let dir = scratch("shared-store");
        let (pg, store, n) = match kind {
            Kind::Memory => (None, String::new(), 1),
            Kind::Postgres => {
                let pg = PgCluster::start()?;
                let url_file = dir.join("db-url");
                std::fs::write(&url_file, pg.url()).expect("url file");
                // The signing keys live in the database: each replica gets its own (empty)
                // key directory, so nothing but the database is shared.
                let kek_file = dir.join("kek");
                std::fs::write(&kek_file, hex(&rand::random::<[u8; 32]>())).expect("kek");
                let store = format!(
                    "store:\n  kind: postgres\n  url_file: {}\n  pool_size: 8\n  connect_timeout: 2\n  revocation_staleness: 3\n  key_encryption_key_file: {}\n",
                    url_file.display(),
                    kek_file.display()
                );
                (Some(pg), store, 3)
            }
        };
        let store = format!("{store}{extra}");
        let front = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}", front.local_addr().expect("addr"));
        let jwt_key = SigningKey::generate(Algorithm::ES256).expect("key");
        let mut procs = Vec::new();
        let mut replicas = Vec::new();
        let mut backends = Vec::new();
        for i in 0..n {
            let listen = format!("127.0.0.1:{}", free_port());
            let text = config(
                &issuer,
                &listen,
                &dir.join("keys"),
                &jwt_key.public_jwk(),
                &store,
            );
            let file = dir.join(format!("idp-{i}.yaml"));
            std::fs::write(&file, text).expect("config");
            let mut proc = Proc::spawn(
                env!("CARGO_BIN_EXE_baton-idp"),
                &[
                    "--allow-inline-secrets",
                    "-c",
                    file.to_str().expect("utf-8"),
                ],
                &dir.join(format!("idp-{i}.log")),
            );
            // One at a time: the first creates the shared keys directory.
            proc.ready(&format!("http://{listen}/readyz")).await;
            if pg.is_some() {
                assert!(
                    proc.output().contains("store: postgres ready"),
                    "{}",
                    proc.output()
                );
            }
            procs.push(proc);
            replicas.push(format!("http://{listen}"));
            backends.push(listen);
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client");
        Some(Cluster {
            issuer,
            replicas,
            procs,
            jwt_key,
            http,
            pg,
            _front: RoundRobin::start(front, backends),
            dir,
        })
    }

    /// Replica `i` (round the ring: with one replica, always that one).
    fn at(&self, i: usize) -> &str {
        &self.replicas[i % self.replicas.len()]
    }

    /// alice's code: `/authorize` at replica `a`, the password form posted at replica `b`;
    /// the code, its verifier, and the session cookie.
    async fn code(&self, a: usize, b: usize) -> (String, String, String) {
        let (verifier, challenge) = pkce();
        let rsp = self
            .http
            .get(format!("{}/authorize", self.at(a)))
            .query(&[
                ("response_type", "code"),
                ("client_id", "service-a"),
                ("redirect_uri", REDIRECT),
                ("scope", "openid profile"),
                ("state", "st-1"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .expect("authorize");
        assert_eq!(rsp.status(), StatusCode::OK);
        let cookie = login_cookie(&rsp);
        let html = rsp.text().await.expect("page");
        let rsp = self
            .http
            .post(format!("{}/login", self.at(b)))
            .header("cookie", cookie)
            .header("origin", &self.issuer)
            .form(&[
                ("request", hidden(&html, "request").as_str()),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ])
            .send()
            .await
            .expect("login");
        assert_eq!(rsp.status(), StatusCode::SEE_OTHER, "{}", self.logs());
        let session = rsp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("baton-idp="))
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_owned();
        let loc = url::Url::parse(rsp.headers()["location"].to_str().expect("ascii")).expect("url");
        let code = loc
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code");
        (code, verifier, session)
    }

    /// POST /token at replica `i` as service-a (or service-b).
    async fn token(&self, i: usize, client: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let rsp = self
            .http
            .post(format!("{}/token", self.at(i)))
            .basic_auth(client, Some(format!("demo-secret-{client}")))
            .form(form)
            .send()
            .await
            .expect("token");
        let status = rsp.status();
        (status, rsp.json().await.unwrap_or(Value::Null))
    }

    /// POST /token at replica `i` as service-a with a DPoP proof of `holder`'s key for the
    /// issuer's token endpoint (what every replica publishes).
    async fn token_dpop(
        &self,
        i: usize,
        holder: &Holder,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let url = format!("{}/token", self.issuer);
        let proof = holder
            .proof("POST", &url, None, None, unix_now())
            .expect("proof");
        let rsp = self
            .http
            .post(format!("{}/token", self.at(i)))
            .basic_auth("service-a", Some("demo-secret-service-a"))
            .header("dpop", proof)
            .form(form)
            .send()
            .await
            .expect("token");
        let status = rsp.status();
        (status, rsp.json().await.unwrap_or(Value::Null))
    }

    /// Client credentials at replica `i` with `proof`: the status, the body and the
    /// `DPoP-Nonce` sent back.
    async fn cc_proof(&self, i: usize, proof: &str) -> (StatusCode, Value, Option<String>) {
        let rsp = self
            .http
            .post(format!("{}/token", self.at(i)))
            .basic_auth("service-a", Some("demo-secret-service-a"))
            .header("dpop", proof)
            .form(&[
                ("grant_type", "client_credentials"),
                ("audience", "service-b"),
            ])
            .send()
            .await
            .expect("token");
        let status = rsp.status();
        let nonce = rsp
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().expect("ascii").to_owned());
        (status, rsp.json().await.unwrap_or(Value::Null), nonce)
    }

    async fn redeem(&self, i: usize, code: &str, verifier: &str) -> (StatusCode, Value) {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ];
        self.token(i, "service-a", &form).await
    }

    async fn refresh(&self, i: usize, rt: &str) -> (StatusCode, Value) {
        let form = [("grant_type", "refresh_token"), ("refresh_token", rt)];
        self.token(i, "service-a", &form).await
    }

    /// Exchanges alice's token (audience service-a) for service-b at replica `i`.
    async fn exchange(&self, i: usize, subject: &str) -> (StatusCode, Value) {
        let form = [
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS),
            ("audience", "service-b"),
        ];
        self.token(i, "service-a", &form).await
    }

    async fn introspect(&self, i: usize, token: &str) -> Value {
        let rsp = self
            .http
            .post(format!("{}/introspect", self.at(i)))
            .basic_auth("service-a", Some("demo-secret-service-a"))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect");
        assert_eq!(rsp.status(), StatusCode::OK);
        rsp.json().await.expect("json")
    }

    /// Signs alice in across replicas 0 and 1 and redeems at replica 2: tokens and cookie.
    async fn sign_in(&self) -> (Value, String) {
        let (code, verifier, session) = self.code(0, 1).await;
        let (status, body) = self.redeem(2, &code, &verifier).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body, session)
    }

    async fn readyz(&self, i: usize) -> Option<StatusCode> {
        let rsp = self.http.get(format!("{}/readyz", self.at(i))).send().await;
        rsp.ok().map(|r| r.status())
    }

    /// Waits (at most 20 s) until every replica's `/readyz` answers `want`.
    async fn wait_ready(&self, want: StatusCode) {
        let until = Instant::now() + Duration::from_secs(20);
        for i in 0..self.replicas.len() {
            while self.readyz(i).await != Some(want) {
                assert!(
                    Instant::now() < until,
                    "readyz never {want}:\n{}",
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn logs(&self) -> String {
        self.procs
            .iter()
            .map(Proc::output)
            .collect::<Vec<_>>()
            .join("\n----\n")
    }

    /// No replica exited or panicked.
    fn assert_healthy(&mut self) {
        for p in &mut self.procs {
            assert!(p.alive(), "a replica exited:\n{}", p.output());
            assert!(!p.output().contains("panicked"), "{}", p.output());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.procs.clear();
        self.pg.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_owned()
}

/// One body, both stores.
macro_rules! both {
    ($body:ident, $memory:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $memory() {
            let mut c = Cluster::start(Kind::Memory).await.expect("memory store");
            $body(&c).await;
            c.assert_healthy();
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(mut c) = Cluster::start(Kind::Postgres).await else {
                return;
            };
            $body(&c).await;
            c.assert_healthy();
        }
    };
}

both!(
    concurrent_redemption,
    one_code_redeemed_at_every_replica_at_once_yields_one_token_memory,
    one_code_redeemed_at_every_replica_at_once_yields_one_token_postgres
);

/// The same code at three replicas at once: exactly one token response; the replays revoke
/// what it issued (RFC 6749 §4.1.2), so its refresh token is dead too.
async fn concurrent_redemption(c: &Cluster) {
    for _ in 0..3 {
        let (code, verifier, _) = c.code(0, 1).await;
        let answers =
            futures::future::join_all((0..3).map(|i| c.redeem(i, &code, &verifier))).await;
        let won: Vec<&Value> = answers
            .iter()
            .filter(|(st, _)| *st == StatusCode::OK)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(won.len(), 1, "{answers:?}");
        for (st, body) in &answers {
            if *st != StatusCode::OK {
                assert_eq!(
                    (*st, body["error"].as_str()),
                    (StatusCode::BAD_REQUEST, Some("invalid_grant"))
                );
            }
        }
        let (st, body) = c.refresh(1, &s(won[0], "refresh_token")).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
        let gone = c.introspect(2, &s(won[0], "access_token")).await;
        assert_eq!(gone["active"], false, "{gone}");
    }
}

both!(
    refresh_reuse,
    refresh_reuse_at_another_replica_revokes_the_family_everywhere_memory,
    refresh_reuse_at_another_replica_revokes_the_family_everywhere_postgres
);

/// A rotated-away refresh token presented at another replica revokes the family: the newest
/// token stops working at every replica, and so do the access tokens it issued.
async fn refresh_reuse(c: &Cluster) {
    let (tokens, _) = c.sign_in().await;
    let rt0 = s(&tokens, "refresh_token");
    let (st, next) = c.refresh(1, &rt0).await;
    assert_eq!(st, StatusCode::OK, "{next}");
    let rt1 = s(&next, "refresh_token");
    assert_eq!(
        c.introspect(0, &s(&next, "access_token")).await["active"],
        true
    );
    let (st, reuse) = c.refresh(2, &rt0).await;
    assert_eq!(
        (st, reuse["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    for i in 0..3 {
        let (st, body) = c.refresh(i, &rt1).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "replica {i}"
        );
        assert_eq!(
            c.introspect(i, &s(&next, "access_token")).await["active"],
            false
        );
        assert_eq!(c.introspect(i, &rt1).await["active"], false);
    }
}

both!(
    bound_refresh,
    a_dpop_bound_refresh_token_needs_its_key_at_every_replica_memory,
    a_dpop_bound_refresh_token_needs_its_key_at_every_replica_postgres
);

/// A code redeemed with a proof starts a family bound to that key (RFC 9449 §5): at every
/// replica, a refresh without a proof or with another key's proof is refused and rotates
/// nothing; the key's own proof refreshes, and the next token is bound to the same key.
async fn bound_refresh(c: &Cluster) {
    let key = Holder::generate().expect("key");
    let other = Holder::generate().expect("key");
    let (code, verifier, _) = c.code(0, 1).await;
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (st, tokens) = c.token_dpop(2, &key, &redeem).await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    let rt = s(&tokens, "refresh_token");
    let seen = c.introspect(0, &rt).await;
    assert_eq!(seen["cnf"]["jkt"], key.jkt(), "{seen}");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    for i in 0..3 {
        let (st, body) = c.refresh(i, &rt).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
            "replica {i}: {body}"
        );
        let (st, body) = c.token_dpop(i, &other, &form).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
            "replica {i}: {body}"
        );
    }
    // Nothing was rotated or revoked by the refused attempts.
    let (st, next) = c.token_dpop(1, &key, &form).await;
    assert_eq!(st, StatusCode::OK, "{next}");
    assert_eq!(claims(&s(&next, "access_token"))["cnf"]["jkt"], key.jkt());
    let rt1 = s(&next, "refresh_token");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt1.as_str()),
    ];
    let (st, body) = c.token_dpop(2, &other, &form).await;
    assert_eq!(body["error"], "invalid_dpop_proof", "{st} {body}");
    let (st, body) = c.token_dpop(0, &key, &form).await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_nonces_and_proofs_are_shared_by_every_replica_memory() {
    let mut c = Cluster::start_with(Kind::Memory, DPOP_SHARED)
        .await
        .expect("memory store");
    dpop_shared(&c).await;
    c.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_nonces_and_proofs_are_shared_by_every_replica_postgres() {
    let Some(mut c) = Cluster::start_with(Kind::Postgres, DPOP_SHARED).await else {
        return;
    };
    dpop_shared(&c).await;
    c.assert_healthy();
}

/// Nonces on, and a share of three live proofs per key.
const DPOP_SHARED: &str = "dpop:\n  nonce: true\n  proofs_per_key: 3\n";

/// A nonce handed out by one replica is accepted by the others (RFC 9449 §8); a proof accepted
/// at one replica is a replay at every other (§11.1); one key gets its share of the replay
/// store and no more, wherever it sends its proofs, while another key is served.
async fn dpop_shared(c: &Cluster) {
    let key = Holder::generate().expect("key");
    let url = format!("{}/token", c.issuer);
    let proof = |h: &Holder, nonce: Option<&str>| {
        h.proof("POST", &url, None, nonce, unix_now())
            .expect("proof")
    };
    let (st, body, nonce) = c.cc_proof(0, &proof(&key, None)).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("use_dpop_nonce")),
        "{body}"
    );
    let nonce = nonce.expect("DPoP-Nonce with use_dpop_nonce");
    for wrong in ["made-up", &nonce[..nonce.len() - 2]] {
        let (st, body, _) = c.cc_proof(1, &proof(&key, Some(wrong))).await;
        assert_eq!(body["error"], "use_dpop_nonce", "{st} {body}");
    }
    let first = proof(&key, Some(&nonce));
    let (st, body, next) = c.cc_proof(1, &first).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(next.is_some(), "a success names the nonce to use next");
    let (st, body, _) = c.cc_proof(2, &first).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
        "a replay at another replica: {body}"
    );
    for i in [2, 0] {
        let (st, body, _) = c.cc_proof(i, &proof(&key, Some(&nonce))).await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    // Three live proofs: the key's share is used up at every replica.
    for i in 0..3 {
        let (st, body, _) = c.cc_proof(i, &proof(&key, Some(&nonce))).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_dpop_proof")),
            "replica {i}: {body}"
        );
    }
    let other = Holder::generate().expect("key");
    let (st, body, _) = c.cc_proof(1, &proof(&other, Some(&nonce))).await;
    assert_eq!(st, StatusCode::OK, "another key is served: {body}");
}

both!(
    sign_out_everywhere,
    sign_out_at_one_replica_refuses_the_session_tokens_at_the_others_memory,
    sign_out_at_one_replica_refuses_the_session_tokens_at_the_others_postgres
);

/// Sign-out at replica 0: at the others, introspection and refresh refuse at once; token
/// exchange (which reads each replica's copy of the revocations) refuses within the configured
/// `revocation_staleness`.
async fn sign_out_everywhere(c: &Cluster) {
    let (tokens, session) = c.sign_in().await;
    let access = s(&tokens, "access_token");
    let (st, _) = c.exchange(1, &access).await;
    assert_eq!(st, StatusCode::OK);
    let rsp = c
        .http
        .get(format!("{}/end_session", c.at(0)))
        .query(&[("id_token_hint", s(&tokens, "id_token").as_str())])
        .header("cookie", &session)
        .send()
        .await
        .expect("end_session");
    assert!(
        rsp.status().is_success() || rsp.status().is_redirection(),
        "{}",
        rsp.status()
    );
    for i in 1..3 {
        assert_eq!(
            c.introspect(i, &access).await["active"],
            false,
            "replica {i}"
        );
        let (st, body) = c.refresh(i, &s(&tokens, "refresh_token")).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
    }
    // The copies catch up within the staleness bound (3 s here): poll, bounded.
    let until = Instant::now() + Duration::from_secs(10);
    for i in 1..3 {
        loop {
            let (st, body) = c.exchange(i, &access).await;
            if st == StatusCode::BAD_REQUEST {
                assert_eq!(body["error"], "invalid_request", "{body}");
                break;
            }
            assert_eq!(st, StatusCode::OK);
            assert!(
                Instant::now() < until,
                "replica {i} still exchanges a signed-out token"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The session cookie no longer signs in anywhere: /authorize asks for a password.
    let (_, challenge) = pkce();
    let rsp = c
        .http
        .get(format!("{}/authorize", c.at(2)))
        .header("cookie", &session)
        .query(&[
            ("response_type", "code"),
            ("client_id", "service-a"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(rsp.status(), StatusCode::OK, "the login form, not a code");
}

both!(
    anonymous_sign_out_flood,
    a_flood_of_anonymous_sign_out_requests_adds_no_row_memory,
    a_flood_of_anonymous_sign_out_requests_adds_no_row_postgres
);

/// Rows in every table of the shared store; `None` for the memory store.
async fn rows(c: &Cluster) -> Option<i64> {
    use sqlx::Connection;
    let pg = c.pg.as_ref()?;
    let mut conn = sqlx::PgConnection::connect(&pg.url())
        .await
        .expect("connect");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    let mut total = 0;
    for t in tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{t}\""))
            .fetch_one(&mut conn)
            .await
            .expect("count");
        total += n;
    }
    Some(total)
}

/// Strangers' cookie-less `POST /end_session` at every replica: each is asked to confirm and no
/// row is written; then alice's confirmation, shown by one replica, is taken by another.
async fn anonymous_sign_out_flood(c: &Cluster) {
    let before = rows(c).await;
    for i in 0..2_000 {
        let rsp = c
            .http
            .post(format!("{}/end_session", c.at(i)))
            .form(&[] as &[(&str, &str)])
            .send()
            .await
            .expect("end_session");
        assert_eq!(rsp.status(), StatusCode::OK);
    }
    let after = rows(c).await;
    assert!(
        after <= before,
        "{after:?} rows after the flood, {before:?} before"
    );

    let (tokens, session) = c.sign_in().await;
    let page = c
        .http
        .get(format!("{}/end_session", c.at(0)))
        .header("cookie", &session)
        .send()
        .await
        .expect("end_session");
    assert_eq!(page.status(), StatusCode::OK);
    let confirm_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("baton-idp-logout="))
        .and_then(|v| v.split(';').next())
        .expect("confirmation cookie")
        .to_owned();
    let html = page.text().await.expect("page");
    let rsp = c
        .http
        .post(format!("{}/end_session", c.at(1)))
        .header("cookie", format!("{session}; {confirm_cookie}"))
        .header("origin", &c.issuer)
        .form(&[
            ("logout_request", hidden(&html, "logout_request").as_str()),
            ("csrf", hidden(&html, "csrf").as_str()),
        ])
        .send()
        .await
        .expect("confirm");
    assert_eq!(rsp.status(), StatusCode::OK, "{}", c.logs());
    assert!(
        rsp.text()
            .await
            .expect("page")
            .contains("You are signed out.")
    );
    assert_eq!(
        c.introspect(2, &s(&tokens, "refresh_token")).await["active"],
        false
    );
}

both!(
    assertion_replay,
    a_client_assertion_replayed_at_another_replica_is_refused_memory,
    a_client_assertion_replayed_at_another_replica_is_refused_postgres
);

/// A `private_key_jwt` assertion accepted at one replica is refused at every other.
async fn assertion_replay(c: &Cluster) {
    let now = unix_now();
    let assertion = c
        .jwt_key
        .sign(
            "JWT",
            &json!({"iss": "jwt-client", "sub": "jwt-client", "aud": c.issuer, "exp": now + 60,
                    "iat": now, "jti": format!("j-{}", rand::random::<u64>())}),
        )
        .expect("sign");
    let send = |i: usize| {
        let url = format!("{}/token", c.at(i));
        let a = assertion.clone();
        async move {
            let rsp = c
                .http
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("audience", "service-b"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", a.as_str()),
                ])
                .send()
                .await
                .expect("token");
            (
                rsp.status(),
                rsp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (st, ok) = send(0).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(claims(&s(&ok, "access_token"))["sub"], "jwt-client");
    for i in 1..4 {
        let (st, body) = send(i).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "replica {i}"
        );
    }
}

both!(
    shared_counters,
    failed_sign_ins_count_at_every_replica_memory,
    failed_sign_ins_count_at_every_replica_postgres
);

/// Wrong passwords spread over the replicas add up in one set of counters: the throttle
/// answers 429 long before each replica's own free attempts would have run out.
async fn shared_counters(c: &Cluster) {
    let (_, challenge) = pkce();
    let rsp = c
        .http
        .get(format!("{}/authorize", c.at(0)))
        .query(&[
            ("response_type", "code"),
            ("client_id", "service-a"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("authorize");
    let cookie = login_cookie(&rsp);
    let request = hidden(&rsp.text().await.expect("page"), "request");
    let mut checked = 0;
    for i in 0..40 {
        let rsp = c
            .http
            .post(format!("{}/login", c.at(i)))
            .header("cookie", &cookie)
            .header("origin", &c.issuer)
            .form(&[
                ("request", request.as_str()),
                ("username", "alice"),
                ("password", "not-her-password"),
            ])
            .send()
            .await
            .expect("login");
        match rsp.status() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => break,
            other => panic!("{other}"),
        }
    }
    // The account's free attempts (10) and a few one-second windows, not 3 × that.
    assert!(
        (10..=16).contains(&checked),
        "{checked} wrong passwords checked"
    );
}

/// The database stopped mid-run: `/readyz` turns 503, grants that need it answer 503 with
/// `Retry-After` at once, client credentials and their exchanges keep working; once it is back
/// every replica recovers without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_503_and_recovers_without_restart() {
    let Some(mut c) = Cluster::start(Kind::Postgres).await else {
        return;
    };
    let (tokens, _) = c.sign_in().await;
    let pg = c.pg.as_ref().expect("postgres");
    pg.stop_server("fast");
    c.wait_ready(StatusCode::SERVICE_UNAVAILABLE).await;
    for i in 0..3 {
        let rsp = c
            .http
            .post(format!("{}/token", c.at(i)))
            .basic_auth("service-a", Some("demo-secret-service-a"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", s(&tokens, "refresh_token").as_str()),
            ])
            .send()
            .await
            .expect("token");
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(rsp.headers().contains_key("retry-after"));
        let body: Value = rsp.json().await.expect("json");
        assert_eq!(body["error"], "temporarily_unavailable");
        // No shared state: a client-credentials token and its exchange.
        let (st, cc) = c
            .token(
                i,
                "service-a",
                &[
                    ("grant_type", "client_credentials"),
                    ("audience", "service-b"),
                ],
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{cc}");
        let (st, ex) = c
            .token(
                i,
                "service-b",
                &[
                    ("grant_type", EXCHANGE),
                    ("subject_token", s(&cc, "access_token").as_str()),
                    ("subject_token_type", ACCESS),
                    ("audience", "service-c"),
                ],
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{ex}");
        // A sign-in page needs no store; the password post needs one for the session.
        let rsp = c
            .http
            .get(format!("{}/.well-known/openid-configuration", c.at(i)))
            .send()
            .await
            .expect("discovery");
        assert_eq!(rsp.status(), StatusCode::OK);
    }
    pg.start_server();
    c.wait_ready(StatusCode::OK).await;
    let (st, body) = c.refresh(1, &s(&tokens, "refresh_token")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (fresh, _) = c.sign_in().await;
    assert_eq!(
        c.introspect(0, &s(&fresh, "access_token")).await["active"],
        true
    );
    c.assert_healthy();
}

/// A replica refuses to start against a schema newer than it knows; `baton-idp migrate` runs
/// the migrations alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_runs_alone_and_a_newer_schema_is_refused() {
    let Some(pg) = PgCluster::start() else {
        return;
    };
    let dir = scratch("migrate");
    let url_file = dir.join("db-url");
    std::fs::write(&url_file, pg.url()).expect("url file");
    let listen = format!("127.0.0.1:{}", free_port());
    let store = format!(
        "store:\n  kind: postgres\n  url_file: {}\n",
        url_file.display()
    );
    let jwk = SigningKey::generate(Algorithm::ES256)
        .expect("key")
        .public_jwk();
    let text = config(
        "http://127.0.0.1:1",
        &listen,
        &dir.join("keys"),
        &jwk,
        &store,
    );
    let file = dir.join("idp.yaml");
    std::fs::write(&file, text).expect("config");
    let run = |args: &[&str]| {
        let mut all = vec![
            "--allow-inline-secrets",
            "-c",
            file.to_str().expect("utf-8"),
        ];
        all.extend_from_slice(args);
        std::process::Command::new(env!("CARGO_BIN_EXE_baton-idp"))
            .args(&all)
            .output()
            .expect("run")
    };
    let out = run(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = format!("version {}", baton::idp::store::postgres::SCHEMA_VERSION);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&version));
    // Twice is harmless.
    assert!(run(&["migrate"]).status.success());
    // A newer baton-idp's schema.
    bump_schema(&pg).await;
    let out = run(&["migrate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer than this baton-idp knows"));
    let mut serve = Proc::spawn(
        env!("CARGO_BIN_EXE_baton-idp"),
        &[
            "--allow-inline-secrets",
            "-c",
            file.to_str().expect("utf-8"),
        ],
        &dir.join("serve.log"),
    );
    let status = serve.exited(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| !s.success()), "{}", serve.output());
    assert!(serve.output().contains("newer than this baton-idp knows"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `kid` in a JWT's header.
fn kid(token: &str) -> String {
    use base64::Engine;
    let head = token.split('.').next().expect("header");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .expect("b64");
    let v: Value = serde_json::from_slice(&raw).expect("json");
    s(&v, "kid")
}

impl Cluster {
    async fn jwks_kids(&self, i: usize) -> Vec<String> {
        let v: Value = self
            .http
            .get(format!("{}/jwks", self.at(i)))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json");
        v["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| s(k, "kid"))
            .collect()
    }

    fn config_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("idp-{i}.yaml"))
    }
}

/// The signing keys live in the database, encrypted: every replica publishes the same JWKS
/// from its own empty key directory. `keys rotate` against the database refuses while the next
/// key is too fresh; once it has been published long enough, a rotation through the command
/// line reaches every replica, and each replica only ever signs with a key that every JWKS
/// already publishes; tokens signed before the rotation still verify after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_the_database_rotate_for_every_replica_and_publish_before_use() {
    let Some(c) = Cluster::start(Kind::Postgres).await else {
        return;
    };
    let first = c.jwks_kids(0).await;
    assert_eq!(first.len(), 2, "active and next: {first:?}");
    for i in 1..3 {
        assert_eq!(c.jwks_kids(i).await, first, "replica {i}");
    }
    for i in 0..3 {
        assert!(
            !c.dir
                .join(format!("keys-{i}"))
                .join("manifest.json")
                .exists()
        );
    }
    let pg = c.pg.as_ref().expect("postgres");
    let (tokens, _) = c.sign_in().await;
    let before = s(&tokens, "access_token");
    let rotate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_baton-idp"))
            .args([
                "--allow-inline-secrets",
                "-c",
                c.config_file(0).to_str().expect("utf-8"),
                "keys",
                "rotate",
            ])
            .output()
            .expect("keys rotate")
    };
    let out = rotate();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rotate again in"),
        "{out:?}"
    );
    // The private keys are not in the database in the clear.
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&pg.url())
            .await
            .expect("connect");
        let sealed: Vec<Vec<u8>> = sqlx::query_scalar("SELECT sealed FROM signing_keys")
            .fetch_all(&mut conn)
            .await
            .expect("rows");
        assert_eq!(sealed.len(), 2);
        assert!(
            sealed
                .iter()
                .all(|k| !k.windows(7).any(|w| w == b"PRIVATE"))
        );
        // As if the next key had been published for a minute.
        sqlx::query("UPDATE signing_keys SET created_at = created_at - 60 WHERE state = 'next'")
            .execute(&mut conn)
            .await
            .expect("age");
    }
    // The next key: the published one nobody signs with yet.
    let (_, cc) = c
        .token(
            0,
            "service-a",
            &[
                ("grant_type", "client_credentials"),
                ("audience", "service-b"),
            ],
        )
        .await;
    let active = kid(&s(&cc, "access_token"));
    let next = first.iter().find(|k| **k != active).expect("next").clone();
    let out = rotate();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every replica switches within its reload interval (10 s); every token any replica signs
    // meanwhile carries a kid that all three JWKS publish.
    let until = Instant::now() + Duration::from_secs(25);
    for i in 0..3 {
        loop {
            let (st, cc) = c
                .token(
                    i,
                    "service-a",
                    &[
                        ("grant_type", "client_credentials"),
                        ("audience", "service-b"),
                    ],
                )
                .await;
            assert_eq!(st, StatusCode::OK);
            let signed_with = kid(&s(&cc, "access_token"));
            for j in 0..3 {
                assert!(
                    c.jwks_kids(j).await.contains(&signed_with),
                    "replica {j} lacks {signed_with}"
                );
            }
            if signed_with == next {
                break;
            }
            assert!(Instant::now() < until, "replica {i} never switched");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for i in 0..3 {
        let kids = c.jwks_kids(i).await;
        assert_eq!(kids.len(), 3, "retired, active, next: {kids:?}");
        assert_eq!(
            c.introspect(i, &before).await["active"],
            true,
            "signed before, verifies after"
        );
    }
}

/// Sets the schema version past this build's, as a newer baton-idp would.
async fn bump_schema(pg: &PgCluster) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&pg.url())
        .await
        .expect("connect");
    sqlx::query("UPDATE baton_schema SET version = version + 1")
        .execute(&mut conn)
        .await
        .expect("bump");
}

/// One replica killed while eight clients keep exchanging tokens through the round robin: no
/// request fails but those open to it when it died (at most one per client), every request begun
/// after it was gone succeeds, and the refresh token it issued still works at the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_fails_only_the_requests_it_held() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const CLIENTS: usize = 8;
    let Some(mut c) = Cluster::start(Kind::Postgres).await else {
        return;
    };
    // alice's tokens, redeemed at replica 1: the one about to die.
    let (code, verifier, _) = c.code(0, 2).await;
    let (status, tokens) = c.redeem(1, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let subject = s(&tokens, "access_token");
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url, subject, stop) = (
            c.http.clone(),
            format!("{}/token", c.issuer),
            subject.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            // (began, answered 200) of each request, one at a time.
            let mut done = Vec::new();
            while !stop.load(Ordering::Relaxed) && done.len() < 5_000 {
                let began = Instant::now();
                let ok = http
                    .post(&url)
                    .basic_auth("service-a", Some("demo-secret-service-a"))
                    .form(&[
                        ("grant_type", EXCHANGE),
                        ("subject_token", subject.as_str()),
                        ("subject_token_type", ACCESS),
                        ("audience", "service-b"),
                    ])
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK);
                done.push((began, ok));
            }
            done
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut dead = c.procs.remove(1);
    dead.signal(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead.alive() {
        assert!(Instant::now() < deadline, "replica 1 outlived SIGKILL");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gone = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut before = (0, 0);
    let mut after = (0, 0);
    for client in clients {
        for (began, ok) in client.await.expect("client") {
            let tally = if began < gone {
                &mut before
            } else {
                &mut after
            };
            if ok {
                tally.0 += 1;
            } else {
                tally.1 += 1;
            }
        }
    }
    eprintln!("before the kill: {before:?} (ok, failed); after: {after:?}");
    assert!(
        before.0 > 0 && after.0 > 0,
        "the load ran on both sides of the kill"
    );
    assert!(
        before.1 <= CLIENTS,
        "{} requests failed across the kill; at most {CLIENTS} were in flight",
        before.1
    );
    assert_eq!(
        after.1, 0,
        "requests begun after the replica was gone failed"
    );
    // The family replica 1 created lives in the database: the survivors rotate it.
    let (status, body) = c.refresh(2, &s(&tokens, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    c.assert_healthy();
}
