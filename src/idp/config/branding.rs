//! `branding:` of `idp.yaml` and each client's `name`: what the sign-in pages show. Every value
//! is checked by [`crate::page::brand`] (names without hidden characters, a `#rrggbb` accent, a
//! small image for the logo, an http(s) link home) and collected into the report, so a value
//! that could alter a page's markup or stylesheet never starts the IdP.

use super::Client;
use crate::config::Problems;
use crate::page::Theme;
use crate::page::brand::{self, Brand, Color, Logo};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `branding:`; every field optional: the defaults are a complete look.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBranding {
    product_name: Option<String>,
    logo_file: Option<PathBuf>,
    accent_color: Option<String>,
    home_url: Option<String>,
}

/// The theme of `raw`; a refused value is reported under `branding.<field>` and left at its
/// default.
pub(super) fn theme(raw: RawBranding, base: &Path, p: &mut Problems) -> Theme {
    let mut b = Brand::default();
    let mut check = |field: &str, r: Result<(), brand::Refused>| {
        if let Err(e) = r {
            p.push(format!("branding.{field}"), e.to_string());
        }
    };
    if let Some(name) = &raw.product_name {
        check("product_name", brand::name(name).map(|n| b.product = n));
    }
    if let Some(c) = &raw.accent_color {
        check("accent_color", Color::parse(c).map(|c| b.accent = c));
    }
    if let Some(url) = &raw.home_url {
        check("home_url", brand::home(url).map(|u| b.home = Some(u)));
    }
    if let Some(path) = &raw.logo_file {
        let logo = read_capped(&base.join(path), brand::MAX_LOGO_BYTES)
            .map_err(|e| format!("read {}: {e}", path.display()))
            .and_then(|bytes| Logo::from_bytes(&bytes).map_err(|e| e.to_string()));
        match logo {
            Ok(l) => b.logo = Some(l),
            Err(e) => p.push("branding.logo_file", e),
        }
    }
    Theme::new(b)
}

/// The file at `path`, reading at most one byte past `cap` (so a huge file is refused by size
/// without being read whole).
fn read_capped(path: &Path, cap: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A client's checked display `name` (`clients[i].name`), reported when refused.
pub(super) fn client_name(name: Option<String>, f: &str, p: &mut Problems) -> Option<String> {
    match brand::name(&name?) {
        Ok(n) => Some(n),
        Err(e) => {
            p.push(format!("{f}.name"), e.to_string());
            None
        }
    }
}

impl Client {
    /// What the pages call this client: its `name`, else its id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(branding: &str, dir: &Path) -> (Theme, Vec<String>) {
        let raw: RawBranding = serde_saphyr::from_str(branding).expect("yaml");
        let mut p = Problems::new("idp.yaml");
        let theme = theme(raw, dir, &mut p);
        let report = p.report(|_| None, crate::config::Missing::Error);
        (
            theme,
            report.errors.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn hostile_branding_is_refused_with_its_field() {
        let dir = std::env::temp_dir();
        let (_, errors) = load(
            "product_name: \"Pay\\u202Epal\"\naccent_color: \"#fff;}body{background:url(//x)}\"\nhome_url: \"javascript:alert(1)\"\n",
            &dir,
        );
        let joined = errors.join("\n");
        assert_eq!(errors.len(), 3, "{joined}");
        for field in [
            "branding.product_name",
            "branding.accent_color",
            "branding.home_url",
        ] {
            assert!(joined.contains(field), "{field}: {joined}");
        }
    }

    /// The same minimal file, with `name` for its one client and `branding` as given.
    fn load_file(name: &str, branding: &str) -> Result<super::super::Config, Vec<String>> {
        let text = format!(
            "demo: true\nissuer: http://127.0.0.1:9000\nkeys: {{dir: keys}}\nclients:\n  - id: a\n    name: {name}\n    secret: secret-a-123\n{branding}"
        );
        super::super::Config::from_yaml(&text, "idp.yaml")
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_client_name_is_text_or_refused_with_its_field() {
        // Markup and quotes load: the pages escape them.
        let cfg = load_file(r#"'<b>"A" & </style></b>'"#, "").expect("loads");
        assert_eq!(cfg.clients["a"].display_name(), r#"<b>"A" & </style></b>"#);
        assert_eq!(cfg.branding.brand().product, "baton", "the default look");
        for (name, reason) in [
            ("\"Pay\\u202Emal\"", "bidirectional"),
            ("\"\\u200BService A\"", "bidirectional"),
            (&"x".repeat(65), "at most 64 characters"),
        ] {
            let errors = load_file(name, "").err().unwrap_or_default();
            assert!(
                errors.len() == 1
                    && errors[0].contains("clients[0].name")
                    && errors[0].contains(reason),
                "{name}: {errors:?}"
            );
        }
        let errors = load_file(
            "A",
            "branding:\n  accent_color: \"url(x)\"\n  product_name: \"\"\n",
        )
        .err()
        .unwrap_or_default();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            load_file("A", "branding:\n  colour: \"#fff\"\n").is_err(),
            "unknown fields"
        );
    }

    #[test]
    fn logos_are_read_capped_and_checked() {
        let dir =
            std::env::temp_dir().join(format!("baton-branding-{}", crate::secret::random_u64()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("logo.svg"),
            r#"<svg xmlns="http://www.w3.org/2000/svg"/>"#,
        )
        .expect("write");
        std::fs::write(dir.join("page.html"), "<html><script>x</script>").expect("write");
        std::fs::write(dir.join("big.png"), vec![0x89; brand::MAX_LOGO_BYTES * 4]).expect("write");
        let (theme, errors) = load("logo_file: logo.svg\naccent_color: \"#0F766E\"\n", &dir);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(theme.brand().logo.is_some());
        assert_eq!(theme.brand().accent.css(), "#0f766e");
        for (file, reason) in [
            ("page.html", "must be a PNG, JPEG, GIF, WebP or SVG image"),
            (
                "big.png",
                &format!("is {} bytes", brand::MAX_LOGO_BYTES + 1),
            ),
            ("missing.png", "read missing.png:"),
        ] {
            let (theme, errors) = load(&format!("logo_file: {file}\n"), &dir);
            assert!(theme.brand().logo.is_none());
            assert!(
                errors.len() == 1
                    && errors[0].contains("branding.logo_file")
                    && errors[0].contains(reason),
                "{file}: {errors:?}"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
