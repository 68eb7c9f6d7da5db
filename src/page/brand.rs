//! What a page may show of its operator: a product name, a logo and an accent colour, each
//! checked where it comes in so nothing an operator (or a stolen config) writes can change the
//! markup or the stylesheet. Names are shown as escaped text and refused when they hide text
//! (control and bidirectional formatting characters); the colour is only ever `#rrggbb`; the
//! logo is a small image, embedded as a `data:` URI.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Longest product or application name shown on a page, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Largest logo accepted, in bytes: it is embedded in every page.
pub const MAX_LOGO_BYTES: usize = 32 * 1024;

/// Why a branding value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// An empty name, or one of only spaces.
    #[error("must not be empty")]
    Empty,
    /// A name longer than [`MAX_NAME_CHARS`].
    #[error("must be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    /// A name with a character that hides or reorders text.
    #[error("must not contain control or bidirectional formatting characters (found U+{0:04X})")]
    Hidden(u32),
    /// A colour that is not `#rgb` or `#rrggbb`.
    #[error("must be a hex colour such as #2563eb")]
    Color,
    /// A logo over [`MAX_LOGO_BYTES`].
    #[error("is {0} bytes: a logo may be at most {MAX_LOGO_BYTES} bytes")]
    LogoTooLarge(usize),
    /// A logo that is not a PNG, JPEG, GIF, WebP or SVG image.
    #[error("must be a PNG, JPEG, GIF, WebP or SVG image")]
    LogoType,
    /// A link that is not an absolute http(s) URL.
    #[error("must be an absolute http or https URL")]
    Url,
}

/// A checked display name: a product's or an application's.
pub fn name(text: &str) -> Result<String, Refused> {
    let t = text.trim();
    if t.is_empty() {
        return Err(Refused::Empty);
    }
    if t.chars().count() > MAX_NAME_CHARS {
        return Err(Refused::TooLong);
    }
    match t.chars().find(|c| hides_text(*c)) {
        Some(c) => Err(Refused::Hidden(u32::from(c))),
        None => Ok(t.to_owned()),
    }
}

/// Control characters and the invisible formatting characters that reorder or hide text
/// (bidirectional overrides and isolates, zero-width characters, the byte-order mark): a name
/// with them could read "Service A" and be something else.
fn hides_text(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// An accent colour: `#rrggbb`, nothing else, so it can be written into the stylesheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Color([u8; 3]);

impl Color {
    /// The default accent: a blue that white text reads on at 5.2:1.
    pub const DEFAULT: Color = Color([0x25, 0x63, 0xeb]);

    /// Parses `#rgb` or `#rrggbb` (either case).
    pub fn parse(text: &str) -> Result<Color, Refused> {
        let hex = text.trim().strip_prefix('#').ok_or(Refused::Color)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refused::Color);
        }
        let digit = |i: usize| u8::from_str_radix(&hex[i..=i], 16).unwrap_or(0);
        match hex.len() {
            3 => Ok(Color([0, 1, 2].map(|i| digit(i) * 17))),
            6 => Ok(Color([0, 2, 4].map(|i| digit(i) * 16 + digit(i + 1)))),
            _ => Err(Refused::Color),
        }
    }

    /// `#rrggbb`.
    pub fn css(&self) -> String {
        let [r, g, b] = self.0;
        format!("#{r:02x}{g:02x}{b:02x}")
    }

    /// WCAG 2.2 relative luminance.
    fn luminance(&self) -> f64 {
        let channel = |v: u8| {
            let c = f64::from(v) / 255.0;
            if c <= 0.040_45 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let [r, g, b] = self.0.map(channel);
        0.2126 * r + 0.7152 * g + 0.0722 * b
    }

    /// The WCAG contrast ratio with `other`, 1 to 21.
    pub fn contrast(&self, other: &Color) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    /// The text colour that reads best on this colour: white or black, whichever contrasts more,
    /// so a button's label stays legible whatever accent an operator picks: one of the two
    /// always reaches at least 4.58:1, above WCAG AA's 4.5:1.
    pub fn text_on(&self) -> Color {
        let (white, ink) = (Color([0xff; 3]), Color([0; 3]));
        if self.contrast(&white) >= self.contrast(&ink) {
            white
        } else {
            ink
        }
    }
}

/// A logo, embedded in each page as a `data:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logo {
    data_uri: String,
}

impl Logo {
    /// A logo from an image file's bytes, its type told by its first bytes (not its name).
    pub fn from_bytes(bytes: &[u8]) -> Result<Logo, Refused> {
        if bytes.len() > MAX_LOGO_BYTES {
            return Err(Refused::LogoTooLarge(bytes.len()));
        }
        let mime = image_type(bytes).ok_or(Refused::LogoType)?;
        Ok(Logo {
            data_uri: format!("data:{mime};base64,{}", STANDARD.encode(bytes)),
        })
    }

    /// The `data:` URI: only base64 characters after the type, safe in a quoted attribute.
    pub fn data_uri(&self) -> &str {
        &self.data_uri
    }
}

/// The image type of `bytes` by its signature. An SVG shown through `<img>` runs no script and
/// loads nothing, so it is as safe as a bitmap there.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    let head = |sig: &[u8]| bytes.starts_with(sig);
    if head(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if head(b"GIF87a") || head(b"GIF89a") {
        Some("image/gif")
    } else if head(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else {
        let text = std::str::from_utf8(bytes)
            .ok()?
            .trim_start_matches('\u{feff}');
        let start = text.trim_start();
        let svg =
            start.starts_with("<svg") || (start.starts_with("<?xml") && text.contains("<svg"));
        svg.then_some("image/svg+xml")
    }
}

/// An operator's branding: what every page shows in its header, its accent colour, and where
/// its "way back" links go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand {
    /// The product name in the header and the page title.
    pub product: String,
    /// The logo beside it.
    pub logo: Option<Logo>,
    /// The accent: the top border, buttons and focus rings.
    pub accent: Color,
    /// Where error and signed-out pages offer to go back to (the company portal).
    pub home: Option<url::Url>,
}

impl Default for Brand {
    fn default() -> Self {
        Brand {
            product: super::strings::EN.product.to_owned(),
            logo: None,
            accent: Color::DEFAULT,
            home: None,
        }
    }
}

/// A checked "way back" link: absolute http(s), so never a `javascript:` or `data:` URL.
pub fn home(text: &str) -> Result<url::Url, Refused> {
    match url::Url::parse(text.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(u),
        _ => Err(Refused::Url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_free_of_hidden_characters() {
        assert_eq!(name("  Service A ").as_deref(), Ok("Service A"));
        // Markup and quotes are text: the pages escape them.
        assert!(name("<b>\"A\" & 'B'</b>").is_ok());
        assert_eq!(name(" \t "), Err(Refused::Empty));
        assert_eq!(name(&"x".repeat(MAX_NAME_CHARS + 1)), Err(Refused::TooLong));
        assert!(
            name(&"é".repeat(MAX_NAME_CHARS)).is_ok(),
            "characters, not bytes"
        );
        for hidden in [
            '\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}', '\n', '\u{7f}',
        ] {
            assert_eq!(
                name(&format!("Pay{hidden}ment")),
                Err(Refused::Hidden(u32::from(hidden)))
            );
        }
    }

    #[test]
    fn only_hex_colours_reach_the_stylesheet() {
        assert_eq!(
            Color::parse("#2563EB").map(|c| c.css()).as_deref(),
            Ok("#2563eb")
        );
        assert_eq!(
            Color::parse("#0a3").map(|c| c.css()).as_deref(),
            Ok("#00aa33")
        );
        for bad in [
            "red",
            "#12345",
            "#1234567",
            "#ggg",
            "#fff;}body{background:url(//x)}",
            "#fff</style>",
            "rgb(1,2,3)",
            "2563eb",
            "#１２３",
        ] {
            assert_eq!(Color::parse(bad), Err(Refused::Color), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_button_text_contrasts_with_any_accent(rgb: [u8; 3]) {
            let c = Color(rgb);
            proptest::prop_assert!(c.contrast(&c.text_on()) >= 4.5, "{}", c.css());
        }
    }

    #[test]
    fn contrast_ratios_are_wcag_s() {
        let white = Color([0xff; 3]);
        assert!((Color([0; 3]).contrast(&white) - 21.0).abs() < 1e-9);
        assert!(Color::DEFAULT.contrast(&white) > 5.0);
    }

    #[test]
    fn logos_are_small_images_told_by_their_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        let logo = Logo::from_bytes(png).expect("png");
        assert!(logo.data_uri().starts_with("data:image/png;base64,"));
        let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>"#;
        assert!(
            Logo::from_bytes(svg).is_ok_and(|l| l.data_uri().starts_with("data:image/svg+xml;"))
        );
        assert_eq!(Logo::from_bytes(b"<html><script>"), Err(Refused::LogoType));
        assert_eq!(Logo::from_bytes(b"GIF"), Err(Refused::LogoType));
        let huge = [png.as_slice(), &vec![0; MAX_LOGO_BYTES]].concat();
        assert_eq!(
            Logo::from_bytes(&huge),
            Err(Refused::LogoTooLarge(huge.len()))
        );
    }

    #[test]
    fn way_back_links_are_http_only() {
        assert!(home("https://portal.example/").is_ok());
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "/relative",
            "file:///etc/passwd",
        ] {
            assert_eq!(home(bad), Err(Refused::Url), "{bad}");
        }
    }
}
