//! Any form body and client authentication sent to `/token` of the real IdP handler gets a
//! well-formed answer: 200 with an access token, or an RFC 6749 §5.2 error (RFC 8707 adds
//! `invalid_target`) as JSON with `Cache-Control: no-store`; never a panic, never a 500.
//!
//! Input: byte 0 picks the grant type (or none, or the fuzzer's own), byte 1 the client
//! authentication and content type, the rest is the remaining form body. `@S` in the body becomes
//! a valid access token addressed to service-a and `@A` service-a's own token, so the fuzzer
//! reaches the exchange policy and not only the signature check.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use baton::idp::{Config, Idp};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::sync::LazyLock;

const ISSUER: &str = "http://idp.fuzz";
const GRANTS: [&str; 4] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
];
/// RFC 6749 §5.2 plus `invalid_target` (RFC 8707 §2, RFC 8693 §2.2.2).
const CODES: [&str; 7] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
];

struct World {
    idp: Idp,
    rt: tokio::runtime::Runtime,
    subject: String,
    actor: String,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("baton-fuzz-idp-{}", std::process::id()));
    let idp = Idp::new(Config::demo(ISSUER, dir)).expect("demo idp");
    let now = baton::jwt::unix_now();
    let token = |sub: &str, extra: Value| {
        let mut c = json!({"iss": ISSUER, "sub": sub, "aud": "service-a", "client_id": "service-a",
            "iat": now, "exp": now + 86_400, "jti": format!("fuzz-{sub}"), "scope": "openid profile"});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        idp.keys().signer.sign("at+jwt", &c).expect("sign")
    };
    let subject = token("alice", json!({"account_id": "acct-1001", "acr": "pwd"}));
    let actor = token("service-a", json!({}));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    World {
        idp,
        rt,
        subject,
        actor,
    }
});

fn replace(body: &[u8], w: &World) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match &body[i..] {
            [b'@', b'S', ..] => out.extend_from_slice(w.subject.as_bytes()),
            [b'@', b'A', ..] => out.extend_from_slice(w.actor.as_bytes()),
            _ => {
                out.push(body[i]);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [grant, auth, rest @ ..] = data else {
        return;
    };
    let w = &*WORLD;
    let mut body = match grant % 6 {
        g @ 0..4 => format!("grant_type={}&", GRANTS[g as usize]).into_bytes(),
        4 => Vec::new(),
        _ => b"grant_type=".to_vec(),
    };
    body.extend(replace(rest, w));
    let mut req = Request::post("/token").header(
        "content-type",
        match auth & 0b1100 {
            0b1100 => "text/plain",
            0b1000 => "application/x-www-form-urlencoded; charset=UTF-8",
            _ => "application/x-www-form-urlencoded",
        },
    );
    req = match auth & 0b11 {
        1 => req.header(
            "authorization",
            format!(
                "Basic {}",
                STANDARD.encode("service-a:demo-secret-service-a")
            ),
        ),
        2 => req.header(
            "authorization",
            format!("Basic {}", STANDARD.encode("service-b:wrong")),
        ),
        3 => {
            body.extend_from_slice(b"&client_id=service-b&client_secret=demo-secret-service-b");
            req
        }
        _ => req,
    };
    let Ok(req) = req.body(Full::new(Bytes::from(body))) else {
        return;
    };
    w.rt.block_on(async {
        let rsp = baton::idp::handle(&w.idp, req).await;
        let (parts, body) = rsp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(parts.headers["cache-control"], "no-store");
        let v: Value = serde_json::from_slice(&bytes).expect("JSON body");
        match parts.status {
            StatusCode::OK => {
                assert!(v["access_token"].as_str().is_some_and(|t| !t.is_empty()));
                assert!(v["token_type"].is_string());
                assert!(v.get("error").is_none());
            }
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => {
                let code = v["error"].as_str().expect("error code");
                assert!(CODES.contains(&code), "unknown error {code}");
                assert_eq!(
                    parts.status == StatusCode::UNAUTHORIZED,
                    code == "invalid_client"
                );
                if let Some(d) = v.get("error_description") {
                    let d = d.as_str().expect("description is a string");
                    assert!(!d.contains(&w.subject) && !d.contains(&w.actor));
                }
            }
            s => panic!("status {s}: {v}"),
        }
    });
});
