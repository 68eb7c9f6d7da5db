//! The echo app's answer as a page: one card per hop with the claims its sidecar verified,
//! then links to the step-up page and to sign out, then the raw JSON (`#json`).

use super::super::MFA_PATH;
use super::super::report::{act_chain, s_of};
use crate::config::login::LOGOUT_PATH;
use crate::http::Body;
use crate::page::{self, Page, Theme, fill, strings};
use http::{Response, StatusCode};
use maud::{Markup, html};
use serde_json::Value;

/// The echo answer `body` (`{service, claims, next}`, nested per hop) as a page.
pub(super) fn echo(status: StatusCode, body: &Value) -> Response<Body> {
    let s = strings();
    let mut hops = Vec::new();
    let mut at = body;
    let mut last = "";
    loop {
        if let Some(service) = at["service"].as_str() {
            last = service;
            hops.push(hop(service, &at["claims"]));
        } else if let Some(code) = at["status"].as_u64() {
            let refused = fill(s.demo_refused, &[("status", &code.to_string())]);
            hops.push(html! { section .hop { p { (refused) } } });
        }
        match &at["next"] {
            next @ Value::Object(_) => at = next,
            _ => break,
        }
    }
    let raw = serde_json::to_string_pretty(body).unwrap_or_default();
    let markup = html! {
        p .lead { (s.demo_lead) }
        @for h in &hops { (h) }
        p .actions {
            a href=(MFA_PATH) { (fill(s.demo_step_up, &[("app", last)])) }
            " · "
            a href=(LOGOUT_PATH) { (s.demo_sign_out) }
        }
        details {
            summary { (s.demo_raw) }
            pre #json { (raw) }
        }
    };
    let page = Page {
        wide: true,
        ..Page::new(s.demo_title, markup)
    };
    page::render(Theme::standard(), status, &page)
}

/// One hop's card: its name and what its token says, in the terminal table's words.
fn hop(service: &str, claims: &Value) -> Markup {
    let s = strings();
    let list = |v: &Value| match v {
        Value::Array(a) => a.iter().map(s_of).collect::<Vec<_>>().join(", "),
        Value::Null => "-".to_owned(),
        other => s_of(other),
    };
    let lifetime = match (claims["exp"].as_u64(), claims["iat"].as_u64()) {
        (Some(exp), Some(iat)) => format!("{} s", exp.saturating_sub(iat)),
        _ => "-".to_owned(),
    };
    let rows = [
        ("aud", list(&claims["aud"])),
        ("grants", list(&claims["grants"])),
        ("act", act_chain(&claims["act"])),
        ("scope", list(&claims["scope"])),
        ("sub", list(&claims["sub"])),
        ("account_id", list(&claims["account_id"])),
        ("acr", list(&claims["acr"])),
        ("amr", list(&claims["amr"])),
        (s.demo_lifetime, lifetime),
    ];
    html! {
        section .hop {
            h2 { (service) }
            @if claims.is_object() {
                dl {
                    @for (k, v) in &rows { dt { (k) } dd { (v) } }
                }
            } @else {
                p .fine { (s.demo_no_claims) }
            }
        }
    }
}
