//! The sign-out page of an application behind a sidecar (`GET /_baton/logout`): one button whose
//! POST carries the page's CSRF token. Never signs out by itself.

use super::{Page, Theme, render, strings};
use crate::http::Body;
use http::{Response, StatusCode};
use maud::html;

/// The page, posting to `action` with `csrf`; the button's id is `sign-out`.
pub fn app_sign_out(action: &str, csrf: &str) -> Response<Body> {
    let s = strings();
    let body = html! {
        p .lead { (s.app_sign_out) }
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" #sign-out { (s.sign_out_button) }
        }
    };
    render(
        Theme::standard(),
        StatusCode::OK,
        &Page::new(s.app_sign_out_title, body),
    )
}
