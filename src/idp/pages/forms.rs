//! The IdP's forms and the signed-out page, each saying who asks: "Sign in to continue to
//! Service A", "Service A needs a one-time code for this action", "Service A asked to sign you
//! out". Field names and the hidden fields' order are what clients driving the form rely on.

use crate::http::Body;
use crate::idp::config::Config;
use crate::idp::pending::Pending;
use crate::page::strings::fill_text;
use crate::page::{self, Page, Theme, fill, strings};
use http::{Response, StatusCode};
use maud::{Markup, html};

/// Who asks for a login page: the application by its display name, and the user once known.
pub struct Asking<'a> {
    /// The look.
    pub theme: &'a Theme,
    /// The client's display name.
    pub app: &'a str,
    /// The user the request is bound to, after the password.
    pub user: Option<&'a str>,
}

impl<'a> Asking<'a> {
    /// Who asks for `pending`: its client's display name (its id if it is no longer
    /// configured) and its user.
    pub fn of(config: &'a Config, pending: &'a Pending) -> Self {
        let app = config
            .clients
            .get(&pending.client)
            .map_or(pending.client.as_str(), |c| c.display_name());
        Asking {
            theme: &config.branding,
            app,
            user: pending.user.as_deref(),
        }
    }
}

/// The alert above a form: announced by screen readers (`role="alert"`), and named by the
/// first field's `aria-describedby`.
fn alert(text: Option<&str>) -> Markup {
    html! {
        @if let Some(t) = text {
            p #alert .alert role="alert" { (t) }
        }
    }
}

/// The sign-in form for the sealed request `request`.
pub fn sign_in(
    a: &Asking,
    request: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    let s = strings();
    let described = error.map(|_| "alert");
    let body = html! {
        p .lead { (fill(s.sign_in_for, &[("app", a.app)])) }
        (alert(error))
        form method="post" action="/login" {
            input type="hidden" name="request" value=(request);
            div .field {
                label for="username" { (s.username) }
                input #username name="username" autocomplete="username" autocapitalize="none"
                    spellcheck="false" required autofocus aria-describedby=[described];
            }
            div .field {
                label for="password" { (s.password) }
                input #password type="password" name="password" autocomplete="current-password" required;
            }
            button type="submit" { (s.sign_in_button) }
        }
    };
    page::render(a.theme, status, &Page::new(s.sign_in, body))
}

/// The one-time-code form for the sealed request `request`: the application asked for a
/// level (`acr`) that needs this factor, and the session does not have it yet.
pub fn one_time_code(
    a: &Asking,
    request: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    let s = strings();
    let described = if error.is_some() {
        "alert code-hint"
    } else {
        "code-hint"
    };
    let body = html! {
        p .lead {
            (fill(s.code_for, &[("app", a.app)]))
            @if let Some(user) = a.user {
                " " (fill(s.signed_in_as, &[("user", user)]))
            }
        }
        (alert(error))
        form method="post" action="/otp" {
            input type="hidden" name="request" value=(request);
            div .field {
                label for="code" { (s.code_label) }
                input #code .code name="code" inputmode="numeric" pattern="[0-9]{6}" maxlength="6"
                    autocomplete="one-time-code" required autofocus aria-describedby=(described)
                    aria-invalid=[error.map(|_| "true")];
                p #code-hint .hint { (s.code_hint) }
            }
            button type="submit" { (s.code_button) }
        }
    };
    page::render(a.theme, status, &Page::new(s.code_title, body))
}

/// The sign-out confirmation: a POST with the pending confirmation `id` and its `csrf` value.
/// `app` is the display name of the client that asked, when it was identified.
pub fn confirm_sign_out(theme: &Theme, app: Option<&str>, id: &str, csrf: &str) -> Response<Body> {
    let s = strings();
    let product = theme.brand().product.as_str();
    let asked = match app {
        Some(app) => fill(s.sign_out_asked_by, &[("app", app), ("product", product)]),
        None => fill(s.sign_out_asked, &[("product", product)]),
    };
    let body = html! {
        p .lead { (asked) }
        p { (fill(s.sign_out_effect, &[("product", product)])) }
        form method="post" action="/end_session" {
            input type="hidden" name="logout_request" value=(id);
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { (s.sign_out_button) }
        }
        p .fine .actions { (s.sign_out_ignore) }
    };
    page::render(theme, StatusCode::OK, &Page::new(s.sign_out_title, body))
}

/// The page after signing out when the browser is not sent back to an application; `note`
/// says why it stays.
pub fn signed_out(theme: &Theme, note: Option<&str>) -> Response<Body> {
    let s = strings();
    let body = html! {
        p .status role="status" { (s.signed_out) }
        @if let Some(n) = note { p .actions { (n) } }
        (home_link(theme))
    };
    page::render(theme, StatusCode::OK, &Page::new(s.signed_out_title, body))
}

/// The link to the operator's home page, when configured.
pub(super) fn home_link(theme: &Theme) -> Markup {
    let brand = theme.brand();
    html! {
        @if let Some(home) = &brand.home {
            p .actions {
                a href=(home.as_str()) { (fill_text(strings().go_home, &[("product", &brand.product)])) }
            }
        }
    }
}
