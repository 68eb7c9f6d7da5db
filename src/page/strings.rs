//! Every word a page shows a person, in one table: a translation is another [`Strings`] value,
//! not a hunt through the code. Templates name what they are given (`{app}`, `{product}`,
//! `{user}`); [`fill`] puts each value in as escaped, emphasised text.

use maud::{Markup, html};

/// What an error page says: what happened, and what the person can do about it.
#[derive(Debug, Clone, Copy)]
pub struct Trouble {
    /// The heading.
    pub title: &'static str,
    /// What went wrong, in the person's words.
    pub what: &'static str,
    /// What they can do now.
    pub next: &'static str,
}

/// The words of every page. Each field is named for the place it fills, and [`EN`]'s value
/// beside it is its documentation.
#[derive(Debug)]
#[allow(missing_docs)]
pub struct Strings {
    /// The page language (`<html lang>`).
    pub lang: &'static str,
    /// The product name when the operator sets none.
    pub product: &'static str,
    /// The `<title>` of a page: `{page}` and `{product}`.
    pub page_title: &'static str,

    // The sign-in page.
    pub sign_in: &'static str,
    pub sign_in_for: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub sign_in_button: &'static str,
    pub wrong_password: &'static str,
    pub throttled: &'static str,
    pub one_second: &'static str,
    pub seconds: &'static str,
    pub minutes: &'static str,
    pub hours: &'static str,
    pub busy: &'static str,

    // The one-time-code page (after the password, or a step-up).
    pub code_title: &'static str,
    pub code_for: &'static str,
    pub signed_in_as: &'static str,
    pub code_label: &'static str,
    pub code_hint: &'static str,
    pub code_button: &'static str,
    pub wrong_code: &'static str,

    // The IdP's sign-out confirmation and the signed-out page.
    pub sign_out_title: &'static str,
    pub sign_out_asked_by: &'static str,
    pub sign_out_asked: &'static str,
    pub sign_out_effect: &'static str,
    pub sign_out_button: &'static str,
    pub sign_out_ignore: &'static str,
    pub signed_out_title: &'static str,
    pub signed_out: &'static str,
    pub not_registered: &'static str,
    pub not_identified: &'static str,

    // An application's own sign-out page (the sidecar's `/_baton/logout`).
    pub app_sign_out_title: &'static str,
    pub app_sign_out: &'static str,

    // What every error page adds.
    pub go_home: &'static str,
    pub reference: &'static str,
    pub details: &'static str,

    // The error pages.
    pub bad_sign_in_link: Trouble,
    pub sign_in_expired: Trouble,
    pub sign_in_other_site: Trouble,
    pub sign_in_other_browser: Trouble,
    pub form_unreadable: Trouble,
    pub code_form_invalid: Trouble,
    pub request_too_large: Trouble,
    pub bad_return_address: Trouble,
    pub bad_sign_out_link: Trouble,
    pub sign_out_unreadable: Trouble,
    pub sign_out_needs_button: Trouble,
    pub sign_out_other_site: Trouble,
    pub sign_out_expired: Trouble,
    pub sign_out_form_invalid: Trouble,
    pub session_changed: Trouble,

    // Details for support: what exactly a request got wrong (never a value it sent).
    pub repeated_parameter: &'static str,
    pub no_client_id: &'static str,
    pub unknown_client: &'static str,
    pub no_redirect_uri: &'static str,
    pub unregistered_redirect_uri: &'static str,
    pub invalid_redirect_uri: &'static str,
    pub state_too_long: &'static str,
    pub hint_not_ours: &'static str,
    pub client_not_in_hint: &'static str,

    // The demo's echo page.
    pub demo_title: &'static str,
    pub demo_lead: &'static str,
    pub demo_lifetime: &'static str,
    pub demo_refused: &'static str,
    pub demo_no_claims: &'static str,
    pub demo_raw: &'static str,
    pub demo_step_up: &'static str,
    pub demo_sign_out: &'static str,
}

/// English.
pub static EN: Strings = Strings {
    lang: "en",
    product: "baton",
    page_title: "{page} · {product}",

    sign_in: "Sign in",
    sign_in_for: "to continue to {app}",
    username: "Username",
    password: "Password",
    sign_in_button: "Sign in",
    wrong_password: "Wrong username or password. Check them and try again.",
    throttled: "Too many failed attempts. Try again in {wait}.",
    one_second: "1 second",
    seconds: "{n} seconds",
    minutes: "{n} minutes",
    hours: "{n} hours",
    busy: "Sign-in is busy right now. Try again in a moment.",

    code_title: "Enter your one-time code",
    code_for: "{app} needs a one-time code for this action.",
    signed_in_as: "You are signed in as {user}.",
    code_label: "One-time code",
    code_hint: "The 6-digit code your authenticator app shows now.",
    code_button: "Verify",
    wrong_code: "That code is wrong or was already used. Wait for the next code and try again.",

    sign_out_title: "Sign out?",
    sign_out_asked_by: "{app} asked to sign you out of {product}.",
    sign_out_asked: "A page asked to sign you out of {product}.",
    sign_out_effect: "Every application you signed in to through {product} will ask you to sign in again.",
    sign_out_button: "Sign out",
    sign_out_ignore: "Did not mean to? Close this page: nothing happens until you press the button.",
    signed_out_title: "Signed out",
    signed_out: "You are signed out.",
    not_registered: "The application's return address is not registered, so you stay here.",
    not_identified: "The application was not identified, so you stay here.",

    app_sign_out_title: "Sign out",
    app_sign_out: "Sign out of this application? You will be signed out of the sign-in service too.",

    go_home: "Go to {product}",
    reference: "Reference",
    details: "Details for support",

    bad_sign_in_link: Trouble {
        title: "This sign-in link does not work",
        what: "The application that sent you here asked for a sign-in this service cannot accept.",
        next: "Go back to the application and try again. If it happens again, tell its support team and give them the reference below.",
    },
    sign_in_expired: Trouble {
        title: "This sign-in page expired",
        what: "A sign-in page is valid for 10 minutes.",
        next: "Go back to the application and sign in again.",
    },
    sign_in_other_site: Trouble {
        title: "Sign-in refused",
        what: "This sign-in form was sent from another site, not from this page. Nobody was signed in.",
        next: "If you wanted to sign in, go back to the application and start again.",
    },
    sign_in_other_browser: Trouble {
        title: "Cookies are needed to sign in",
        what: "This form was opened in another browser, or this browser blocks cookies for this site.",
        next: "Allow cookies for this site, then go back to the application and sign in again.",
    },
    form_unreadable: Trouble {
        title: "The form could not be read",
        what: "What your browser sent was not a complete form.",
        next: "Go back to the application and sign in again.",
    },
    code_form_invalid: Trouble {
        title: "This code form is no longer valid",
        what: "Your sign-in ended or changed while the form was open.",
        next: "Go back to the application and sign in again.",
    },
    request_too_large: Trouble {
        title: "This sign-in request is too large",
        what: "The application sent more than a sign-in page can hold.",
        next: "Go back to the application and try again. If it happens again, tell its support team.",
    },
    bad_return_address: Trouble {
        title: "The way back to the application is broken",
        what: "The application's return address is not a valid web address.",
        next: "Tell the application's support team and give them the reference below.",
    },
    bad_sign_out_link: Trouble {
        title: "This sign-out link does not work",
        what: "The application asked to sign you out in a way this service cannot accept. You are still signed in.",
        next: "Sign out again from the application. If it happens again, tell its support team and give them the reference below.",
    },
    sign_out_unreadable: Trouble {
        title: "The sign-out could not be read",
        what: "What your browser sent was not a complete form. You are still signed in.",
        next: "Sign out again from the application.",
    },
    sign_out_needs_button: Trouble {
        title: "Confirm with the button",
        what: "Signing out needs the button on the sign-out page. You are still signed in.",
        next: "Sign out again from the application.",
    },
    sign_out_other_site: Trouble {
        title: "Sign-out refused",
        what: "The confirmation was sent from another site, not from the sign-out page. You are still signed in.",
        next: "If you wanted to sign out, sign out again from the application.",
    },
    sign_out_expired: Trouble {
        title: "This sign-out page expired",
        what: "A sign-out page is valid for a few minutes. You are still signed in.",
        next: "Sign out again from the application.",
    },
    sign_out_form_invalid: Trouble {
        title: "This sign-out form is not valid",
        what: "It was opened in another browser, or this browser blocks cookies for this site. You are still signed in.",
        next: "Sign out again from the application.",
    },
    session_changed: Trouble {
        title: "Your sign-in changed",
        what: "You signed in again since the sign-out page was shown. You are still signed in.",
        next: "Sign out again from the application.",
    },

    repeated_parameter: "A parameter is repeated.",
    no_client_id: "The request has no client_id.",
    unknown_client: "Unknown client.",
    no_redirect_uri: "The request has no redirect_uri.",
    unregistered_redirect_uri: "The redirect_uri is not registered for this client.",
    invalid_redirect_uri: "The redirect URI is not a valid URL.",
    state_too_long: "The state parameter is too long.",
    hint_not_ours: "The id_token_hint is not an ID token we issued.",
    client_not_in_hint: "The client_id does not match the id_token_hint.",

    demo_title: "Signed in through the chain",
    demo_lead: "What each service of the chain saw: the token its sidecar verified, exchanged on every hop.",
    demo_lifetime: "lifetime",
    demo_refused: "The next service refused the call: HTTP {status}.",
    demo_no_claims: "No verified claims.",
    demo_raw: "The answer as JSON",
    demo_step_up: "Open a report {app} guards with a one-time code",
    demo_sign_out: "Sign out",
};

/// The table pages are rendered with.
pub fn strings() -> &'static Strings {
    &EN
}

/// `template` with each `{name}` of `values` replaced by its value, emphasised; every part is
/// escaped text. An unknown `{name}` stays as written.
pub fn fill(template: &str, values: &[(&str, &str)]) -> Markup {
    let mut parts: Vec<(&str, bool)> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let found = rest[open..].find('}').and_then(|close| {
            let key = &rest[open + 1..open + close];
            let (_, v) = values.iter().find(|(k, _)| *k == key)?;
            Some((close, *v))
        });
        match found {
            Some((close, value)) => {
                parts.push((&rest[..open], false));
                parts.push((value, true));
                rest = &rest[open + close + 1..];
            }
            None => {
                parts.push((&rest[..=open], false));
                rest = &rest[open + 1..];
            }
        }
    }
    parts.push((rest, false));
    html! {
        @for (text, value) in parts {
            @if value { strong { (text) } } @else { (text) }
        }
    }
}

/// `template` with each `{name}` of `values` replaced, as plain text (for `<title>`).
pub fn fill_text(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_owned(), |t, (k, v)| {
        t.replace(&format!("{{{k}}}"), v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_filled_in_as_escaped_emphasised_text() {
        let m = fill(
            "{app} asked {who}: {x}",
            &[("app", "<A & \"B\">"), ("who", "{app}")],
        );
        assert_eq!(
            m.into_string(),
            "<strong>&lt;A &amp; &quot;B&quot;&gt;</strong> asked <strong>{app}</strong>: {x}"
        );
        assert_eq!(
            fill("no braces <b>", &[]).into_string(),
            "no braces &lt;b&gt;"
        );
        assert_eq!(fill("{", &[]).into_string(), "{");
    }

    #[test]
    fn every_template_names_only_what_its_page_gives() {
        let s = strings();
        let given: &[(&str, &[&str])] = &[
            (s.page_title, &["page", "product"]),
            (s.sign_in_for, &["app"]),
            (s.throttled, &["wait"]),
            (s.seconds, &["n"]),
            (s.minutes, &["n"]),
            (s.hours, &["n"]),
            (s.code_for, &["app"]),
            (s.signed_in_as, &["user"]),
            (s.sign_out_asked_by, &["app", "product"]),
            (s.sign_out_asked, &["product"]),
            (s.sign_out_effect, &["product"]),
            (s.go_home, &["product"]),
            (s.demo_step_up, &["app"]),
            (s.demo_refused, &["status"]),
        ];
        for (template, names) in given {
            let values: Vec<(&str, &str)> = names.iter().map(|n| (*n, "V")).collect();
            let text = fill_text(template, &values);
            assert!(!text.contains('{'), "{template}: {text}");
        }
    }
}
