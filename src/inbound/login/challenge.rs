//! Pure parts of the edge login: which requests are browser navigations, which answers are an
//! RFC 9470 step-up challenge, and which return paths are safe to redirect to.

use http::{HeaderMap, Method, Response, StatusCode, Uri, header};

/// What an RFC 9470 `insufficient_user_authentication` challenge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    /// `acr_values` to request at /authorize, space-separated, when the challenge names them.
    pub acr_values: Option<String>,
    /// `max_age` to request at /authorize, seconds.
    pub max_age: Option<u64>,
}

impl StepUp {
    /// A stable key for the loop bound: the same challenge twice in a row is not stepped up again.
    pub fn key(&self) -> String {
        format!(
            "acr={};max_age={}",
            self.acr_values.as_deref().unwrap_or(""),
            self.max_age.map(|m| m.to_string()).unwrap_or_default()
        )
    }
}

/// True for a top-level browser navigation: `GET` with `Sec-Fetch-Mode: navigate` or an
/// `Accept` that lists `text/html`. API calls (JSON, non-GET) get a 401, never a redirect.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    match get("sec-fetch-mode") {
        Some(mode) => mode.eq_ignore_ascii_case("navigate"),
        None => get(header::ACCEPT.as_str()).is_some_and(|a| {
            a.split(',')
                .any(|t| t.trim().to_ascii_lowercase().starts_with("text/html"))
        }),
    }
}

/// The path and query to come back to after sign-in, always relative to this origin: anything
/// that a browser could read as another origin (`//host`, `/\host`) or that carries control
/// characters becomes `/` (no open redirect).
pub fn return_path(uri: &Uri) -> String {
    let p = uri.path_and_query().map_or("/", |p| p.as_str());
    safe_return(p).to_owned()
}

/// `p` when it is a safe same-origin path, else `/`.
pub fn safe_return(p: &str) -> &str {
    let b = p.as_bytes();
    let ok = b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && !p.contains("/_baton/")
        && p.bytes().all(|c| c.is_ascii_graphic());
    if ok { p } else { "/" }
}

/// The step-up an app's answer asks for: a 401 whose `WWW-Authenticate` is a Bearer challenge
/// with `error="insufficient_user_authentication"` (RFC 9470 §3), possibly relayed from a hop
/// further down the chain.
pub fn step_up<B>(rsp: &Response<B>) -> Option<StepUp> {
    if rsp.status() != StatusCode::UNAUTHORIZED {
        return None;
    }
    rsp.headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_challenge)
}

/// Reads one `Bearer` challenge; `None` unless its error is `insufficient_user_authentication`.
pub fn parse_challenge(value: &str) -> Option<StepUp> {
    let rest = value.trim_start();
    let params = rest
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("bearer "))
        .map(|_| &rest[7..])?;
    let mut error = None;
    let mut acr_values = None;
    let mut max_age = None;
    for (k, v) in auth_params(params) {
        match k.to_ascii_lowercase().as_str() {
            "error" => error = Some(v),
            "acr_values" => acr_values = Some(v),
            "max_age" => max_age = v.parse().ok(),
            _ => {}
        }
    }
    if error.as_deref() != Some("insufficient_user_authentication") {
        return None;
    }
    // acr values are space-separated tokens (OIDC Core §3.1.2.1); keep only sane characters.
    let acr_values = acr_values
        .map(|a| {
            a.split_ascii_whitespace()
                .filter(|t| {
                    t.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-_.:/".contains(&c))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|a| !a.is_empty());
    Some(StepUp {
        acr_values,
        max_age,
    })
}

/// `name=value` and `name="quoted value"` pairs of an RFC 9110 §11.2 challenge.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_owned();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &q[end.min(q.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        out.push((name, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn challenges_are_read_from_rfc9470_answers_only() {
        let c = parse_challenge(
            r#"Bearer realm="service-c", error="insufficient_user_authentication", error_description="stronger, please", acr_values="mfa", max_age=600"#,
        )
        .expect("step-up");
        assert_eq!(c.acr_values.as_deref(), Some("mfa"));
        assert_eq!(c.max_age, Some(600));
        assert_eq!(c.key(), "acr=mfa;max_age=600");
        assert!(parse_challenge(r#"Bearer error="invalid_token""#).is_none());
        assert!(parse_challenge(r#"Basic realm="x""#).is_none());
        assert!(parse_challenge("Bearer").is_none());
        let odd = parse_challenge(
            r#"bearer error=insufficient_user_authentication, acr_values="a&b mfa""#,
        )
        .expect("token form");
        assert_eq!(
            odd.acr_values.as_deref(),
            Some("mfa"),
            "unsafe values dropped"
        );
        let mut rsp = Response::new(());
        rsp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="insufficient_user_authentication""#),
        );
        assert!(step_up(&rsp).is_none(), "only a 401 is a challenge");
        *rsp.status_mut() = StatusCode::UNAUTHORIZED;
        assert_eq!(
            step_up(&rsp),
            Some(StepUp {
                acr_values: None,
                max_age: None
            })
        );
    }

    #[test]
    fn only_get_navigations_are_redirected() {
        let mut h = HeaderMap::new();
        assert!(!is_navigation(&Method::GET, &h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,*/*;q=0.8"),
        );
        assert!(is_navigation(&Method::GET, &h));
        assert!(!is_navigation(&Method::POST, &h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        assert!(
            !is_navigation(&Method::GET, &h),
            "fetch() from a page is an API call"
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_navigation(&Method::GET, &h));
    }

    #[test]
    fn return_paths_never_leave_the_origin() {
        for (given, want) in [
            ("/mfa/x?y=1", "/mfa/x?y=1"),
            ("/", "/"),
            ("//evil.example/", "/"),
            ("/\\evil.example", "/"),
            ("https://evil.example/", "/"),
            ("", "/"),
            ("/a b", "/"),
            ("/_baton/logout", "/"),
        ] {
            assert_eq!(safe_return(given), want, "{given}");
        }
        let uri: Uri = "http://evil.example/x?q=1".parse().expect("uri");
        assert_eq!(
            return_path(&uri),
            "/x?q=1",
            "absolute-form keeps only the path"
        );
    }
}
