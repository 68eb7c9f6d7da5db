//! Login forms: the first form of a page read, filled with the user's answers, and posted the
//! way a browser posts it.

use super::{Error, Request, StepUp, flow, location, totp_code};
use reqwest::header::ORIGIN;
use url::Url;

/// Where a posted form led.
pub(super) enum Submitted {
    /// A redirect to this URL.
    Redirect(Url),
    /// Another page, with this HTML.
    Page(String),
}

/// Fills the first form on the page with what it asks for and posts it.
pub(super) async fn submit_form(
    http: &reqwest::Client,
    page: &Url,
    html: &str,
    req: &Request,
    step_up: Option<&StepUp>,
    asked: &mut Vec<String>,
) -> Result<Submitted, Error> {
    let form = Form::parse(html).ok_or_else(|| flow("login page", "no form on the page"))?;
    let action = page
        .join(&form.action)
        .map_err(|e| flow("login page", e.to_string()))?;
    let mut fields = form.fields;
    fill(&mut fields, req, step_up, asked)?;
    // The IdP takes a form only with the pre-login cookie its page set (kept by the cookie
    // store) and from its own origin, as a browser sends it.
    let rsp = http
        .post(action.clone())
        .header(ORIGIN, action.origin().ascii_serialization())
        .form(&fields)
        .send()
        .await
        .map_err(|source| Error::Http {
            step: "login",
            source,
        })?;
    match location(&rsp, &action)? {
        Some(next) => Ok(Submitted::Redirect(next)),
        None if rsp.status().is_success() => {
            let html = rsp.text().await.map_err(|source| Error::Http {
                step: "login",
                source,
            })?;
            Ok(Submitted::Page(html))
        }
        None => Err(flow(
            "login",
            format!(
                "the IdP answered {} instead of redirecting: wrong username, password or code?",
                rsp.status()
            ),
        )),
    }
}

/// Answers the username, password and one-time-code fields, noting each in `asked`. A field
/// asked for a second time means the first answer was refused.
fn fill(
    fields: &mut [(String, String)],
    req: &Request,
    step_up: Option<&StepUp>,
    asked: &mut Vec<String>,
) -> Result<(), Error> {
    for (name, value) in fields.iter_mut() {
        let answer = match name.as_str() {
            "username" => req.username.clone(),
            "password" => req.password.expose().to_owned(),
            "code" => step_up
                .and_then(|s| totp_code(&s.totp_secret, crate::jwt::unix_now()))
                .ok_or_else(|| flow("login", "the IdP asks for a one-time code"))?,
            _ => continue,
        };
        if asked.contains(name) {
            return Err(flow(
                "login",
                format!("the IdP asked for {name} again: wrong username, password or code?"),
            ));
        }
        asked.push(name.clone());
        *value = answer;
    }
    Ok(())
}

/// The first `<form>` of a page: its action and its named inputs (with their values).
#[derive(Debug, PartialEq)]
struct Form {
    action: String,
    fields: Vec<(String, String)>,
}

impl Form {
    /// A tolerant scan of the login page, enough for forms this project and common IdPs render.
    fn parse(html: &str) -> Option<Self> {
        let start = html.find("<form")?;
        let end = html[start..]
            .find("</form>")
            .map_or(html.len(), |e| start + e);
        let form = &html[start..end];
        let open = &form[..form.find('>')?];
        let action = attr(open, "action").unwrap_or_default();
        let fields = form
            .split("<input")
            .skip(1)
            .filter_map(|tag| {
                let tag = &tag[..tag.find('>')?];
                let name = attr(tag, "name")?;
                Some((name, attr(tag, "value").unwrap_or_default()))
            })
            .collect();
        Some(Self { action, fields })
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let mut from = 0;
    while let Some(i) = tag[from..].find(&needle) {
        let at = from + i;
        let boundary = at == 0 || tag.as_bytes()[at - 1].is_ascii_whitespace();
        let start = at + needle.len();
        if boundary {
            let len = tag[start..].find('"')?;
            return Some(html_unescape(&tag[start..start + len]));
        }
        from = start;
    }
    None
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests;
