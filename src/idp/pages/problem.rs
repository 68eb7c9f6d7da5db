//! The IdP's error pages: what went wrong in the person's words, what they can do, a link home
//! when the operator configured one, and a reference that finds the log line. A page never
//! shows a token, a parameter's value or anything internal beyond that reference and a fixed
//! detail for support.

use super::forms::home_link;
use crate::http::Body;
use crate::page::strings::{Strings, Trouble};
use crate::page::{self, Page, Theme, strings};
use http::{Response, StatusCode};
use maud::html;
use tracing::info;

/// Why a request gets an error page instead of an answer at the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// `/authorize` with a client or redirect URI that cannot be trusted; the detail for
    /// support is one of the table's fixed sentences.
    BadSignInLink(&'static str),
    /// The sealed request in the form expired or was not genuine.
    SignInExpired,
    /// A login form posted from another origin (login CSRF).
    SignInOtherSite,
    /// A login form without the pre-login cookie of the browser it was shown to.
    SignInOtherBrowser,
    /// A form body that could not be read.
    FormUnreadable,
    /// A code form whose user or session does not match.
    CodeFormInvalid,
    /// A request too large to seal into the page.
    RequestTooLarge,
    /// A redirect URI that is not a URL.
    BadReturnAddress,
    /// `/end_session` with parameters refused; the detail says which rule.
    BadSignOutLink(&'static str),
    /// A sign-out form body that could not be read.
    SignOutUnreadable,
    /// A confirmation id outside the confirmation page's POST.
    SignOutNeedsButton,
    /// A confirmation posted from another origin.
    SignOutOtherSite,
    /// A confirmation that expired or was already used.
    SignOutExpired,
    /// A confirmation without the cookie of the browser it was shown to.
    SignOutFormInvalid,
    /// A confirmation for a session that is no longer the browser's.
    SessionChanged,
}

impl Problem {
    /// A stable name for logs.
    pub fn code(self) -> &'static str {
        match self {
            Problem::BadSignInLink(_) => "bad_sign_in_link",
            Problem::SignInExpired => "sign_in_expired",
            Problem::SignInOtherSite => "sign_in_other_site",
            Problem::SignInOtherBrowser => "sign_in_other_browser",
            Problem::FormUnreadable => "form_unreadable",
            Problem::CodeFormInvalid => "code_form_invalid",
            Problem::RequestTooLarge => "request_too_large",
            Problem::BadReturnAddress => "bad_return_address",
            Problem::BadSignOutLink(_) => "bad_sign_out_link",
            Problem::SignOutUnreadable => "sign_out_unreadable",
            Problem::SignOutNeedsButton => "sign_out_needs_button",
            Problem::SignOutOtherSite => "sign_out_other_site",
            Problem::SignOutExpired => "sign_out_expired",
            Problem::SignOutFormInvalid => "sign_out_form_invalid",
            Problem::SessionChanged => "session_changed",
        }
    }

    /// 403 for a form from another site, 400 for everything else.
    pub fn status(self) -> StatusCode {
        match self {
            Problem::SignInOtherSite => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn trouble(self, s: &Strings) -> &Trouble {
        match self {
            Problem::BadSignInLink(_) => &s.bad_sign_in_link,
            Problem::SignInExpired => &s.sign_in_expired,
            Problem::SignInOtherSite => &s.sign_in_other_site,
            Problem::SignInOtherBrowser => &s.sign_in_other_browser,
            Problem::FormUnreadable => &s.form_unreadable,
            Problem::CodeFormInvalid => &s.code_form_invalid,
            Problem::RequestTooLarge => &s.request_too_large,
            Problem::BadReturnAddress => &s.bad_return_address,
            Problem::BadSignOutLink(_) => &s.bad_sign_out_link,
            Problem::SignOutUnreadable => &s.sign_out_unreadable,
            Problem::SignOutNeedsButton => &s.sign_out_needs_button,
            Problem::SignOutOtherSite => &s.sign_out_other_site,
            Problem::SignOutExpired => &s.sign_out_expired,
            Problem::SignOutFormInvalid => &s.sign_out_form_invalid,
            Problem::SessionChanged => &s.session_changed,
        }
    }

    fn detail(self) -> Option<&'static str> {
        match self {
            Problem::BadSignInLink(d) | Problem::BadSignOutLink(d) => Some(d),
            _ => None,
        }
    }
}

/// The error page of `problem`, with its status (no redirect: the request may not be the
/// user's). Its reference is logged with the problem, so support can find what happened.
pub fn error_page(theme: &Theme, problem: Problem) -> Response<Body> {
    let s = strings();
    let t = problem.trouble(s);
    let id = crate::http::new_request_id();
    let reference = id.to_str().map_or("", |r| r.get(..12).unwrap_or(r));
    info!(problem = problem.code(), reference, "error page shown");
    let body = html! {
        p .alert role="alert" { (t.what) }
        p { (t.next) }
        (home_link(theme))
        div .support {
            @if let Some(d) = problem.detail() {
                p .fine { (s.details) ": " (d) }
            }
            p .fine { (s.reference) ": " code { (reference) } }
        }
    };
    page::render(theme, problem.status(), &Page::new(t.title, body))
}
