//! What the operator of `baton inject` and `baton webhook` decides and no pod can change: the
//! uid the sidecar runs as (the one `baton init-net` exempts from capture) and the images a pod
//! may pick with `baton.dev/image` and `baton.dev/init-image`.
//!
//! The uid is not 65532: distroless and Chainguard `nonroot` images run as 65532 by default, so
//! an app built on them would share the exemption and escape capture. The image allow-list
//! exists because `baton.dev/init-image` names the image that runs as root with `NET_ADMIN`.

use crate::config::{ConfigErrors, Problems};

/// Sidecar image when `baton.dev/image` is absent and no `--sidecar-image` is given.
pub const DEFAULT_IMAGE: &str = "baton:dev";

/// The sidecar's uid unless `--sidecar-uid` says otherwise: used by no common base image
/// (`nonroot` is 65532, `nobody` 65534, distribution users start at 100 or 1000).
pub const DEFAULT_SIDECAR_UID: i64 = 15_532;

/// The operator's side of injection, shared by `baton inject` and `baton webhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The uid (and gid) of the sidecar; capture exempts its traffic, so no app container may
    /// run as it.
    pub sidecar_uid: i64,
    /// The sidecar image when the pod names none; always allowed.
    pub image: String,
    /// Further images a pod may name: exact references, or `repository:*` for any tag or digest
    /// of exactly that repository.
    pub allowed_images: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            sidecar_uid: DEFAULT_SIDECAR_UID,
            image: DEFAULT_IMAGE.into(),
            allowed_images: Vec::new(),
        }
    }
}

/// The command-line flags of [`Policy`], the same for `baton inject` and `baton webhook`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// The uid the sidecar runs as and capture exempts; pods whose containers could run as it
    /// are refused when they ask for capture.
    #[arg(long, default_value_t = DEFAULT_SIDECAR_UID)]
    pub sidecar_uid: i64,
    /// The sidecar image when a pod names none (always allowed).
    #[arg(long, default_value = DEFAULT_IMAGE)]
    pub sidecar_image: String,
    /// An image pods may name in `baton.dev/image` or `baton.dev/init-image`, besides the sidecar
    /// image: an exact reference, or `repository:*` for any tag or digest of that repository.
    /// Repeat for several.
    #[arg(long = "allow-image")]
    pub allow_image: Vec<String>,
}

impl PolicyArgs {
    /// The validated policy; every bad flag is reported.
    pub fn policy(&self) -> Result<Policy, ConfigErrors> {
        let mut p = Problems::new("command line");
        if !(1..=i64::from(i32::MAX)).contains(&self.sidecar_uid) {
            p.push(
                "--sidecar-uid",
                "must be a uid from 1 to 2147483647 (not root)",
            );
        }
        if reference(&self.sidecar_image).is_none() {
            p.push(
                "--sidecar-image",
                "must be an image reference such as ghcr.io/org/baton:1.0",
            );
        }
        for entry in &self.allow_image {
            let repo = entry.strip_suffix(":*").unwrap_or(entry);
            if reference(repo).is_none() {
                p.push(
                    "--allow-image",
                    format!("{entry:?}: use an image reference or repository:*"),
                );
            }
        }
        p.finish(Policy {
            sidecar_uid: self.sidecar_uid,
            image: self.sidecar_image.clone(),
            allowed_images: self.allow_image.clone(),
        })
    }
}

impl Policy {
    /// Whether a pod may run `image`: the sidecar image, an exact entry of the allow-list, or a
    /// tag or digest of a repository listed as `repository:*`. Compared as written: no registry
    /// or `library/` defaults are filled in, so `baton:1` and `docker.io/library/baton:1` are
    /// different entries.
    pub fn allows_image(&self, image: &str) -> bool {
        let Some(wanted) = reference(image) else {
            return false;
        };
        image == self.image
            || self
                .allowed_images
                .iter()
                .any(|entry| match entry.strip_suffix(":*") {
                    Some(repo) => wanted.repository == repo,
                    None => entry == image,
                })
    }
}

/// An image reference split as `repository[:tag][@digest]`.
struct Reference<'a> {
    repository: &'a str,
}

/// Parses `repository[:tag][@algorithm:hex]` strictly enough that a pattern cannot be matched by
/// a look-alike: no whitespace or control characters, a lowercase repository path of
/// `[a-z0-9._-]` components (the first may be a `host[:port]`), a tag of `[A-Za-z0-9_.-]`.
fn reference(image: &str) -> Option<Reference<'_>> {
    if image.is_empty() || image.len() > 512 {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let (alg, hex) = d.split_once(':')?;
        let ok = !alg.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return None;
        }
    }
    // A tag follows the last `:` that comes after the last `/` (a registry port comes before).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return None;
        }
    }
    let mut parts = repository.split('/');
    let first = parts.next()?;
    let host_ok = |s: &str| {
        let (host, port) = s.split_once(':').unwrap_or((s, "1"));
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
    };
    let path_ok = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let first_ok = path_ok(first) || (repository.contains('/') && host_ok(first));
    (first_ok && parts.all(path_ok)).then_some(Reference { repository })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> Policy {
        Policy {
            allowed_images: allowed.iter().map(|s| s.to_string()).collect(),
            ..Policy::default()
        }
    }

    #[test]
    fn only_the_sidecar_image_is_allowed_by_default() {
        let p = Policy::default();
        assert!(p.allows_image("baton:dev"));
        for other in [
            "baton:dev2",
            "baton:de",
            "evil/baton:dev",
            "docker.io/library/baton:dev",
            "baton:dev ",
            " baton:dev",
            "BATON:dev",
            "baton:dev@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "busybox:1.36",
            "",
        ] {
            assert!(!p.allows_image(other), "{other:?} allowed");
        }
    }

    #[test]
    fn a_repository_pattern_admits_its_tags_and_digests_and_nothing_that_looks_like_it() {
        let p = policy(&["ghcr.io/org/baton:*", "registry.local:5000/baton-init:1.2"]);
        let digest = "sha256:8b1a9953c4611296a827abf8c47804d7e6c49c6b1a9953c4611296a827abf8c4";
        for ok in [
            "ghcr.io/org/baton:1.0".to_owned(),
            "ghcr.io/org/baton".to_owned(),
            format!("ghcr.io/org/baton@{digest}"),
            format!("ghcr.io/org/baton:1.0@{digest}"),
            "registry.local:5000/baton-init:1.2".to_owned(),
        ] {
            assert!(p.allows_image(&ok), "{ok:?} refused");
        }
        for bad in [
            "ghcr.io/org/baton-evil:1.0",
            "ghcr.io/org/baton/sub:1.0",
            "ghcr.io/org/batonx:1",
            "evil.io/ghcr.io/org/baton:1.0",
            "ghcr.io/org/baton:1.0 ",
            "ghcr.io/org/baton:1.0\n",
            "ghcr.io/org/baton:1/../x",
            "ghcr.io/org/baton:1.0@sha256:zz",
            "ghcr.io/org/Baton:1.0",
            "GHCR.io/org/baton:1.0",
            "registry.local:5000/baton-init:1.3",
            "registry.local:5001/baton-init:1.2",
        ] {
            assert!(!p.allows_image(bad), "{bad:?} allowed");
        }
    }

    #[test]
    fn flags_are_validated() {
        let args = |uid: i64, image: &str, allow: &[&str]| PolicyArgs {
            sidecar_uid: uid,
            sidecar_image: image.into(),
            allow_image: allow.iter().map(|s| s.to_string()).collect(),
        };
        assert!(
            args(15532, "baton:dev", &["ghcr.io/x/baton:*"])
                .policy()
                .is_ok()
        );
        let text = args(0, "bad image", &["*", "x y"])
            .policy()
            .unwrap_err()
            .to_string();
        assert!(text.contains("--sidecar-uid: must be a uid"), "{text}");
        assert!(text.contains("--sidecar-image: must be an image"), "{text}");
        assert!(text.contains("--allow-image: \"*\""), "{text}");
        assert!(text.contains("--allow-image: \"x y\""), "{text}");
    }
}
