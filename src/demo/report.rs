//! What `baton demo` prints: each hop's token as the app behind the sidecar saw it.

use super::Chain;
use super::app::grpc::Answer;
use crate::signin::{Outcome, Tokens};
use serde_json::Value;

/// Prints the demo's progress to stdout.
pub struct Report {
    issuer: String,
    lines: Vec<String>,
}

impl Report {
    /// A report about `chain`.
    pub fn new(chain: &Chain) -> Self {
        let lines = chain
            .hops
            .iter()
            .map(|h| {
                format!(
                    "  {:<10} app {:<16} sidecar inbound {:<16} outbound {:<16} admin {}",
                    h.name, h.app, h.sidecar.inbound, h.sidecar.outbound, h.sidecar.admin
                )
            })
            .collect();
        Self {
            issuer: chain.issuer.clone(),
            lines,
        }
    }

    /// The chain is up.
    pub fn started(&self) {
        println!(
            "baton demo: browser → service-a → service-b → service-c, every hop behind a baton sidecar\n"
        );
        println!("  baton-idp  {}", self.issuer);
        for l in &self.lines {
            println!("{l}");
        }
        println!();
    }

    /// The user signed in.
    pub fn signed_in(&self, tokens: &Tokens) {
        println!(
            "1. {} signed in at service-a through the login form (authorization code + PKCE S256)",
            super::DEMO_USER
        );
        println!(
            "   access token {} ({} s), ID token {}\n",
            tokens.access_token,
            tokens.expires_in.unwrap_or_default(),
            if tokens.id_token.is_some() {
                "received"
            } else {
                "absent"
            }
        );
    }

    /// The first call went through the chain.
    pub fn first_call(&self, status: u16, body: &Value, exchanges: u64) {
        println!(
            "2. GET service-a/ with the user's token → HTTP {status}; each app saw this token:\n"
        );
        let mut hop = Some(body);
        let mut rows = Vec::new();
        while let Some(h) = hop.filter(|h| h.is_object()) {
            rows.push(row(h));
            hop = h.get("next");
        }
        print_table(&rows);
        println!("\n   token exchanges at the IdP for this call: {exchanges} (A→B and B→C)\n");
    }

    /// The trace of the first call, as [`super::trace::tree`] drew it.
    pub fn trace(&self, tree: &str) {
        println!("   its trace (OpenTelemetry spans, collected in-process):\n");
        println!("{tree}");
    }

    /// The Transaction Token each app got with the first call: one per external request, the
    /// same at every hop.
    pub fn txn_tokens(&self, body: &Value) {
        println!(
            "   and one Transaction Token for the whole call (A issues, B accepts, C requires):\n"
        );
        let mut hop = Some(body);
        while let Some(h) = hop.filter(|h| h.is_object()) {
            let t = &h["txn"];
            println!(
                "   {:<10} txn {}  sub {}  scope \"{}\"  req_wl {}  tctx {}",
                s_of(&h["service"]),
                s_of(&t["txn"]),
                s_of(&t["sub"]),
                s_of(&t["scope"]),
                s_of(&t["req_wl"]),
                t["tctx"]
            );
            hop = h.get("next");
        }
        println!();
    }

    /// The repeated call was served from the caches.
    pub fn second_call(&self, status: u16, exchanges: u64) {
        println!(
            "3. the same call again → HTTP {status}; token exchanges at the IdP: {exchanges} (served from the sidecars' caches)"
        );
    }

    /// The call to the route C guards with `acr: [mfa]` was refused; the challenge came back.
    pub fn challenged(&self, status: u16, body: &Value) {
        println!(
            "\n4. GET service-a{} → HTTP {status}: service-c demands a stronger sign-in (RFC 9470)",
            super::MFA_PATH
        );
        // Each app relayed its next hop's refusal as {status, body}: walk to the last app.
        let mut hop = body;
        while hop["next"]["body"].get("service").is_some() {
            hop = &hop["next"]["body"];
        }
        let refusal = &hop["next"]["body"];
        println!(
            "   {} got HTTP {} {} (relayed back by each app)",
            s_of(&hop["service"]),
            hop["next"]["status"],
            s_of(&refusal["error"]),
        );
    }

    /// The user stepped up at the IdP.
    pub fn stepped_up(&self, out: &Outcome) {
        let claims = crate::jwt::peek_claims(out.tokens.access_token.expose()).unwrap_or_default();
        println!(
            "\n5. step-up at the IdP with id_token_hint + acr_values=mfa: the IdP asked only for [{}]",
            out.asked.join(", ")
        );
        println!(
            "   (the password is not asked again; the code is computed from {}'s demo TOTP secret)",
            super::DEMO_USER
        );
        println!(
            "   new access token {}: acr={} amr={}",
            out.tokens.access_token,
            claims.get("acr").map_or("-".into(), s_of),
            claims.get("amr").map_or("-".into(), |a| a.to_string()),
        );
    }

    /// The same call after the step-up.
    pub fn after_step_up(&self, status: u16, body: &Value) {
        println!(
            "\n6. the same GET service-a{} → HTTP {status}; each app saw:\n",
            super::MFA_PATH
        );
        let mut hop = Some(body);
        let mut rows = Vec::new();
        while let Some(h) = hop.filter(|h| h.is_object() && h.get("service").is_some()) {
            let mut r = row(h);
            r[5] = format!("{} acr={}", r[5], s_of(&h["claims"]["acr"]));
            rows.push(r);
            hop = h.get("next");
        }
        print_table(&rows);
    }

    /// The chain is up, over gRPC.
    pub fn started_grpc(&self) {
        println!(
            "baton demo --grpc: client → service-a → service-b → service-c, every hop a gRPC call \
             (h2c) behind a baton sidecar speaking HTTP/2 to its app\n"
        );
        println!("  baton-idp  {}", self.issuer);
        for l in &self.lines {
            println!("{l}");
        }
        println!();
    }

    /// The first gRPC call went through the chain.
    pub fn first_grpc_call(&self, answer: &Answer, exchanges: u64) {
        println!(
            "2. gRPC {} at service-a with the user's token → grpc-status {}; each app saw this token:\n",
            super::app::grpc::METHOD,
            status_name(answer.status)
        );
        let mut hop = Some(&answer.body);
        let mut rows = Vec::new();
        while let Some(h) = hop.filter(|h| h.is_object()) {
            rows.push(row(h));
            hop = h.get("next");
        }
        print_table(&rows);
        println!("\n   token exchanges at the IdP for this call: {exchanges} (A→B and B→C)\n");
    }

    /// The repeated gRPC call was served from the caches.
    pub fn second_grpc_call(&self, answer: &Answer, exchanges: u64) {
        println!(
            "3. the same call again → grpc-status {}; token exchanges at the IdP: {exchanges} (served from the sidecars' caches)",
            status_name(answer.status)
        );
    }

    /// The call without a token was refused in a form gRPC clients read.
    pub fn grpc_refused(&self, answer: &Answer) {
        let header = |v: &Option<http::HeaderValue>| {
            v.as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        println!(
            "\n4. the same call without a token → grpc-status {} (grpc-message \"{}\")",
            status_name(answer.status),
            header(&answer.message)
        );
        println!("   www-authenticate: {}", header(&answer.www_authenticate));
    }

    /// `--serve`: where to point a browser.
    pub fn serving(&self, edge: &str) {
        println!("open {edge}/ in a browser (service-a signs you in at the IdP)");
        println!(
            "  user {} / password {}; {}{} needs mfa: the one-time code comes from the TOTP secret in deploy/idp.yaml",
            super::DEMO_USER,
            super::DEMO_PASSWORD,
            edge,
            super::MFA_PATH
        );
        println!("  sign out: {edge}/_baton/logout — Ctrl-C stops the chain");
    }
}

/// `16 UNAUTHENTICATED`: a gRPC status with its name, for the statuses the demo meets.
fn status_name(code: u32) -> String {
    let name = match code {
        0 => "OK",
        7 => "PERMISSION_DENIED",
        14 => "UNAVAILABLE",
        16 => "UNAUTHENTICATED",
        _ => "",
    };
    format!("{code} {name}").trim_end().to_owned()
}

/// The columns of one hop.
fn row(hop: &Value) -> [String; 7] {
    let c = &hop["claims"];
    let s = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(s_of).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    };
    let lifetime = match (c["exp"].as_u64(), c["iat"].as_u64()) {
        (Some(exp), Some(iat)) => format!("{} s", exp.saturating_sub(iat)),
        _ => "-".to_owned(),
    };
    [
        s(&hop["service"]),
        s(&c["aud"]),
        s(&c["grants"]),
        act_chain(&c["act"]),
        s(&c["scope"]),
        format!("sub={} account_id={}", s(&c["sub"]), s(&c["account_id"])),
        lifetime,
    ]
}

pub(super) fn s_of(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `service-b ← service-a`: the current actor first, prior actors after (RFC 8693 §4.1).
pub(super) fn act_chain(act: &Value) -> String {
    let mut names = Vec::new();
    let mut cur = act;
    while let Some(sub) = cur.get("sub") {
        names.push(s_of(sub));
        cur = &cur["act"];
    }
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(" ← ")
    }
}

fn print_table(rows: &[[String; 7]]) {
    let head = [
        "hop",
        "aud",
        "grants",
        "act (actor ← prior)",
        "scope",
        "user",
        "lifetime",
    ];
    let mut width = head.map(str::len);
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("   {}", parts.join(" │ "));
    };
    line(&head.map(str::to_owned));
    println!("   {}", width.map(|w| "─".repeat(w)).join("─┼─"));
    for r in rows {
        line(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_show_the_delegation_chain() {
        let hop = json!({"service": "service-c", "claims": {
            "aud": "service-c", "grants": ["service-a", "service-b", "service-c"],
            "act": {"sub": "service-b", "act": {"sub": "service-a"}}, "scope": "openid",
            "sub": "alice", "account_id": "acct-1001", "iat": 100, "exp": 400}});
        let r = row(&hop);
        assert_eq!(r[2], "service-a, service-b, service-c");
        assert_eq!(r[3], "service-b ← service-a");
        assert_eq!(r[5], "sub=alice account_id=acct-1001");
        assert_eq!(r[6], "300 s");
        assert_eq!(act_chain(&Value::Null), "-");
    }
}
