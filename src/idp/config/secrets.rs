//! Where a client secret, a password hash or a TOTP secret comes from (inline in the file, a file,
//! an environment variable), and the rule that keeps example credentials out of a deployment:
//! a value written inline, or one published in baton's examples, is refused unless the config
//! says `demo: true` (or the operator passes `--allow-inline-secrets`); then each client or user
//! holding such a value gets one warning, logged at every start (CWE-798, CWE-1392).
//!
//! Messages name the field and where the value came from, never the value.

use crate::config::Problems;
use std::path::Path;

/// Values published with baton (`deploy/idp.yaml`, and copies of the compose and Kubernetes
/// examples made when those held demo values): the demo clients' secrets, the demo users' argon2
/// hashes and the demo TOTP secret. Anyone can read them, so a deployment holding one has
/// default credentials.
pub const PUBLISHED: &[&str] = &[
    "demo-secret-service-a",
    "demo-secret-service-b",
    "demo-secret-service-c",
    "demo-secret-builds-api",
    "demo-secret-resource-api",
    // alice / wonderland-demo, bob / looking-glass-demo (deploy/idp.yaml)
    "$argon2id$v=19$m=19456,t=2,p=1$r+5TdXsBB9POuvffwWAHTQ$NTuHHT2TSdubsihZXpTDWDmoInOKlgMu5mgjKpzyKj8",
    "$argon2id$v=19$m=19456,t=2,p=1$sGWfVOCoeuPgwr7MfmJL+g$AJ66ul2iz1vATkuTjQuCoIswf2LAvB7btg+3iN89uN4",
    // alice / alice-demo-password, bob / bob-demo-password (compose and Kubernetes)
    "$argon2id$v=19$m=19456,t=2,p=1$sNomZtxQZQ2aq5OzS5cL3g$+0NfKXnzfx5NPN+Rvl6+1tSQcUa2Z5ZbzEXyEVnWD0s",
    "$argon2id$v=19$m=19456,t=2,p=1$5bYSsFnGrza5+SxjQMcL2Q$h6XYyMS/oD9kbRDX2KemcGQ7KnzFKdJhNM+u5FdsPoI",
    // alice's TOTP secret (deploy/idp.yaml)
    "KRSXG5CBNRUWGZJNMRSW23ZNGEZDGNBV",
];

/// Where secret values are read from, and whether demo material is accepted.
pub struct Sources<'a> {
    /// The config file's folder: relative `*_file` paths start there.
    pub base: &'a Path,
    /// Looks up an environment variable (`*_env`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `demo: true` or `--allow-inline-secrets`: inline and published values are accepted, with
    /// a warning.
    pub allow_demo: bool,
}

/// The three ways to give one secret field `name`: `name`, `name_file`, `name_env`.
#[derive(Clone, Copy)]
pub struct Spec<'a> {
    /// The field name, e.g. `secret`, `password_hash`.
    pub name: &'static str,
    /// What it is, for messages: `client secret`, `password hash`.
    pub what: &'static str,
    /// How to make a fresh one, for messages.
    pub make: &'static str,
    /// The value written inline.
    pub inline: Option<&'a str>,
    /// `name_file`.
    pub file: Option<&'a Path>,
    /// `name_env`.
    pub env: Option<&'a str>,
}

impl Spec<'_> {
    /// Whether any of the three is given.
    pub fn given(&self) -> bool {
        self.inline.is_some() || self.file.is_some() || self.env.is_some()
    }
}

/// Where a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The environment variable named by `name_env`.
    Env,
    /// The file named by `name_file`.
    File,
    /// Written inline.
    Inline,
}

/// A secret value and where it came from.
pub struct Found {
    /// The value (trailing whitespace of a file removed).
    pub value: String,
    /// Its origin.
    pub origin: Origin,
}

impl Sources<'_> {
    /// Reads field `spec.name` of `owner` (`clients[0]`): the environment variable when it is set,
    /// else the file, else the inline value. `None` when none is given or the one given cannot be
    /// read (recorded then: a file or variable this machine lacks as missing, see
    /// [`Problems::missing`], any other failure as an error).
    pub fn read(&self, owner: &str, spec: &Spec, p: &mut Problems) -> Option<Found> {
        let name = spec.name;
        if let Some(value) = spec.env.and_then(|v| (self.env)(v)) {
            return Some(Found {
                value,
                origin: Origin::Env,
            });
        }
        if let Some(path) = spec.file {
            return match std::fs::read_to_string(self.base.join(path)) {
                Ok(s) => Some(Found {
                    value: s.trim_end().to_owned(),
                    origin: Origin::File,
                }),
                Err(e) => {
                    let field = format!("{owner}.{name}_file");
                    let reason = format!("read {}: {e}", path.display());
                    match e.kind() {
                        std::io::ErrorKind::NotFound => p.missing(field, reason),
                        _ => p.push(field, reason),
                    }
                    None
                }
            };
        }
        if let Some(value) = spec.inline {
            return Some(Found {
                value: value.to_owned(),
                origin: Origin::Inline,
            });
        }
        if let Some(var) = spec.env {
            p.missing(
                format!("{owner}.{name}_env"),
                format!("environment variable {var} is not set (and no {name}_file is given)"),
            );
        }
        None
    }

    /// Applies the demo-material rule to `found`, read for `spec` of `owner`: refused unless
    /// allowed; when allowed, noted in `demo` for the owner's one warning.
    pub fn vet(
        &self,
        owner: &str,
        spec: &Spec,
        found: &Found,
        demo: &mut Vec<&'static str>,
        p: &mut Problems,
    ) {
        let published = PUBLISHED.contains(&found.value.as_str());
        if found.origin != Origin::Inline && !published {
            return;
        }
        if self.allow_demo {
            demo.push(spec.name);
            return;
        }
        let (name, what, make) = (spec.name, spec.what, spec.make);
        let demo_only = "inline and example values only with `demo: true` or \
                         --allow-inline-secrets (a local demo)";
        match found.origin {
            Origin::Inline => {
                let published = if published {
                    " (a value published in baton's examples)"
                } else {
                    ""
                };
                let source = match spec.env {
                    Some(var) => format!(
                        "{var} is not set, so the inline {what} would be used{published}: set \
                         {var} or use {name}_file"
                    ),
                    None => format!(
                        "inline {what}{published}: read it from a file ({name}_file) or an \
                         environment variable ({name}_env)"
                    ),
                };
                p.push(format!("{owner}.{name}"), format!("{source}; {demo_only}"));
            }
            Origin::File | Origin::Env => {
                let field = match found.origin {
                    Origin::File => format!("{owner}.{name}_file"),
                    _ => format!("{owner}.{name}_env"),
                };
                p.push(
                    field,
                    format!(
                        "holds a {what} published in baton's examples: make your own ({make}); \
                         {demo_only}"
                    ),
                );
            }
        }
    }
}

/// The one warning for an owner that holds demo material (`names`: the fields).
pub fn warn_demo(owner: &str, who: &str, names: &[&str], p: &mut Problems) {
    if names.is_empty() {
        return;
    }
    p.warn(
        owner,
        format!(
            "{who} uses demo credentials ({}: inline or published in baton's examples): \
             for a local demo only",
            names.join(", ")
        ),
    );
}
