//! The look of every HTML page baton serves: the IdP's sign-in, one-time-code, sign-out and
//! error pages, the sidecar's sign-out page and the demo's echo page. One layout ([`render`]),
//! one stylesheet inlined and allowed by its hash, the operator's [`brand::Brand`], the words of
//! [`strings`], and the headers that keep a page self-contained: nothing is fetched from
//! anywhere (`default-src 'none'`), no script runs, no page is framed, cached, or sends a
//! referrer to another site.
//!
//! Every value a page shows goes through maud's escaping; only the stylesheet (ours, plus a
//! colour that [`brand::Color`] writes as `#rrggbb`) is written raw.

pub mod brand;
mod sign_out;
pub mod strings;

use crate::http::{Body, full};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use brand::Brand;
use http::{HeaderValue, Response, StatusCode, header};
use maud::{DOCTYPE, Markup, PreEscaped, html};
pub use sign_out::app_sign_out;
use std::sync::LazyLock;
pub use strings::{fill, strings};

/// The stylesheet every page inlines.
const STYLE: &str = include_str!("page/style.css");

/// A brand made ready for pages: its stylesheet and the Content-Security-Policy that allows
/// exactly that stylesheet (by its SHA-256) and, when there is a logo, `data:` images.
#[derive(Debug, Clone)]
pub struct Theme {
    brand: Brand,
    style: String,
    csp: HeaderValue,
}

impl Theme {
    /// The theme of `brand`.
    pub fn new(brand: Brand) -> Theme {
        let accent = &brand.accent;
        let style = format!(
            ":root{{--accent:{};--on-accent:{}}}\n{STYLE}",
            accent.css(),
            accent.text_on().css()
        );
        let hash = STANDARD.encode(crate::secret::sha256(&[style.as_bytes()]));
        let images = if brand.logo.is_some() {
            "; img-src data:"
        } else {
            ""
        };
        // No `form-action`: Chromium applies it to the redirect that follows a form's POST (to
        // the client, or to the IdP from the sidecar's sign-out), which is another origin.
        let csp = format!(
            "default-src 'none'; style-src 'sha256-{hash}'{images}; base-uri 'none'; frame-ancestors 'none'"
        );
        let csp = HeaderValue::from_str(&csp).expect("a CSP of base64 and ASCII is a header value");
        Theme { brand, style, csp }
    }

    /// The default look (no logo, the default accent), for pages without an operator's brand.
    pub fn standard() -> &'static Theme {
        static STANDARD_THEME: LazyLock<Theme> = LazyLock::new(|| Theme::new(Brand::default()));
        &STANDARD_THEME
    }

    /// The brand.
    pub fn brand(&self) -> &Brand {
        &self.brand
    }

    /// The `Content-Security-Policy` of its pages.
    pub fn csp(&self) -> &HeaderValue {
        &self.csp
    }
}

impl Default for Theme {
    fn default() -> Self {
        Theme::standard().clone()
    }
}

/// One page: its heading (also its title) and what goes below it.
pub struct Page<'a> {
    /// The `<h1>` and the first part of `<title>`.
    pub title: &'a str,
    /// Everything below the heading.
    pub body: Markup,
    /// A wider card, for pages of data (the demo's echo page).
    pub wide: bool,
}

impl<'a> Page<'a> {
    /// A page titled `title` with `body`.
    pub fn new(title: &'a str, body: Markup) -> Self {
        Page {
            title,
            body,
            wide: false,
        }
    }
}

/// The whole HTML document of `page`.
pub fn document(theme: &Theme, page: &Page<'_>) -> String {
    let s = strings();
    let brand = &theme.brand;
    let title = strings::fill_text(
        s.page_title,
        &[("page", page.title), ("product", &brand.product)],
    );
    let markup = html! {
        (DOCTYPE)
        html lang=(s.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) }
                style { (PreEscaped(&theme.style)) }
            }
            body {
                header {
                    @if let Some(logo) = &brand.logo {
                        img src=(logo.data_uri()) alt="";
                    }
                    span { (brand.product) }
                }
                main class=[page.wide.then_some("wide")] {
                    h1 { (page.title) }
                    (page.body)
                }
            }
        }
    };
    markup.into_string()
}

/// `page` as a response with `status` and [`headers`].
pub fn render(theme: &Theme, status: StatusCode, page: &Page<'_>) -> Response<Body> {
    let mut rsp = Response::new(full(document(theme, page)));
    *rsp.status_mut() = status;
    headers(theme, &mut rsp);
    rsp
}

/// The headers of every page: HTML, never cached, the theme's CSP, never framed, no MIME
/// sniffing, and a referrer only to the same origin. `same-origin`, not `no-referrer`: under
/// `no-referrer` Chromium sends `Origin: null` with a form's POST, which the origin checks of
/// the forms must refuse; other sites get no referrer either way.
pub fn headers(theme: &Theme, rsp: &mut Response<Body>) {
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, theme.csp.clone());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use brand::{Color, Logo};

    fn style_of(doc: &str) -> &str {
        let start = doc.find("<style>").expect("style") + "<style>".len();
        &doc[start..start + doc[start..].find("</style>").expect("end")]
    }

    #[test]
    fn the_policy_allows_exactly_the_inlined_stylesheet() {
        let theme = Theme::new(Brand {
            accent: Color::parse("#0f766e").expect("colour"),
            ..Brand::default()
        });
        let doc = document(&theme, &Page::new("T", html! { p { "x" } }));
        let hash = STANDARD.encode(crate::secret::sha256(&[style_of(&doc).as_bytes()]));
        let csp = theme.csp().to_str().expect("ascii");
        assert_eq!(
            csp,
            format!(
                "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; frame-ancestors 'none'"
            )
        );
        assert!(style_of(&doc).starts_with(":root{--accent:#0f766e;--on-accent:#ffffff}"));
        assert_eq!(doc.matches("<style>").count(), 1);
        assert!(!doc.contains("<script") && !doc.contains(" style="));
    }

    #[test]
    fn a_logo_adds_data_images_and_nothing_else() {
        let logo = Logo::from_bytes(b"\x89PNG\r\n\x1a\nrest").expect("png");
        let theme = Theme::new(Brand {
            logo: Some(logo),
            ..Brand::default()
        });
        let csp = theme.csp().to_str().expect("ascii");
        assert!(
            csp.contains("; img-src data:; base-uri 'none'; frame-ancestors 'none'"),
            "{csp}"
        );
        let doc = document(&theme, &Page::new("T", html! {}));
        assert!(doc.contains(r#"<img src="data:image/png;base64,"#));
    }

    #[test]
    fn a_hostile_product_name_and_title_are_text() {
        let theme = Theme::new(Brand {
            product: r#"</style><script>alert(1)</script>"'"#.into(),
            ..Brand::default()
        });
        let doc = document(&theme, &Page::new("<img src=x onerror=alert(2)>", html! {}));
        assert!(!doc.contains("<script") && !doc.contains("<img"), "{doc}");
        assert!(doc.contains("&lt;/style&gt;&lt;script&gt;alert(1)&lt;/script&gt;&quot;'"));
        assert_eq!(doc.matches("</style>").count(), 1);
    }

    #[test]
    fn every_page_carries_the_headers() {
        let rsp = render(Theme::standard(), StatusCode::OK, &Page::new("T", html! {}));
        let h = rsp.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(&h["content-security-policy"], Theme::standard().csp());
    }
}
