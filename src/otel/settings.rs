//! The trace settings: the config file's `tracing:` section resolved against the standard
//! `OTEL_*` environment variables, the file winning field by field.

use super::Error;
use serde::Deserialize;

/// The `tracing:` section of `sidecar.yaml` and `idp.yaml`. Every field may be left out; the
/// standard `OTEL_*` variables fill in what the file leaves out.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is appended), e.g.
    /// `http://otel-collector:4318`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `service.name` of the spans.
    #[serde(default)]
    pub service_name: Option<String>,
    /// The share of new traces sampled, 0 to 1 (default 1). A caller's sampling decision is
    /// always followed.
    #[serde(default)]
    pub sampler_ratio: Option<f64>,
}

/// Resolved trace settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The full OTLP/HTTP traces URL.
    pub endpoint: String,
    /// `service.name`.
    pub service_name: String,
    /// How new traces are sampled; a caller's decision is always followed.
    pub sampler: Ratio,
}

/// The sampler for traces this process starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ratio {
    /// Every new trace.
    Always,
    /// None: only traces a caller sampled.
    Never,
    /// This share of new traces, by trace id.
    Share(f64),
    /// Every span, whatever the caller decided (`OTEL_TRACES_SAMPLER=always_on`).
    IgnoreParent(bool),
}

impl Settings {
    /// The settings from the file's section and the environment (`OTEL_SDK_DISABLED`,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`,
    /// `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`); the file wins field by field.
    /// `None`: tracing is off (no endpoint anywhere).
    pub fn resolve(
        file: Option<&RawTracing>,
        default_service: &str,
    ) -> Result<Option<Settings>, Error> {
        Settings::resolve_with(file, default_service, |k| std::env::var(k).ok())
    }

    /// [`Settings::resolve`] with `env` in place of the process environment.
    pub fn resolve_with(
        file: Option<&RawTracing>,
        default_service: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, Error> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let file = file.cloned().unwrap_or_default();
        let endpoint = match (file.endpoint, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
            (Some(base), _) => traces_url(&base)?,
            (None, Some(full)) => checked_url(full.trim())?,
            (None, None) => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => traces_url(&base)?,
                None => return Ok(None),
            },
        };
        let service_name = file
            .service_name
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| default_service.to_owned());
        let sampler = match file.sampler_ratio {
            Some(r) => ratio(r)?,
            None => sampler_from_env(
                env("OTEL_TRACES_SAMPLER").as_deref(),
                env("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            )?,
        };
        Ok(Some(Settings {
            endpoint,
            service_name,
            sampler,
        }))
    }
}

fn ratio(r: f64) -> Result<Ratio, Error> {
    match r {
        r if !(0.0..=1.0).contains(&r) => Err(Error::Invalid(format!(
            "sampler_ratio must be between 0 and 1, not {r}"
        ))),
        r if r >= 1.0 => Ok(Ratio::Always),
        r if r <= 0.0 => Ok(Ratio::Never),
        r => Ok(Ratio::Share(r)),
    }
}

/// The sampler `OTEL_TRACES_SAMPLER` and its argument name (the OpenTelemetry SDK spec names).
fn sampler_from_env(name: Option<&str>, arg: Option<&str>) -> Result<Ratio, Error> {
    let share = || match arg {
        None => Ok(Ratio::Always),
        Some(a) => a
            .trim()
            .parse::<f64>()
            .map_err(|_| Error::Invalid(format!("OTEL_TRACES_SAMPLER_ARG is not a number: {a:?}")))
            .and_then(ratio),
    };
    match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
        None | Some("parentbased_always_on") => Ok(Ratio::Always),
        Some("parentbased_always_off") => Ok(Ratio::Never),
        Some("parentbased_traceidratio") => share(),
        Some("always_on") => Ok(Ratio::IgnoreParent(true)),
        Some("always_off") => Ok(Ratio::IgnoreParent(false)),
        Some("traceidratio") => share(),
        Some(other) => Err(Error::Invalid(format!(
            "OTEL_TRACES_SAMPLER {other:?} is not supported (parentbased_traceidratio, \
             parentbased_always_on, parentbased_always_off, traceidratio, always_on, always_off)"
        ))),
    }
}

/// The headers every export request carries: `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, or else
/// `OTEL_EXPORTER_OTLP_HEADERS`, read from `env` (`key=value` pairs separated by commas, each
/// value percent-decoded). An entry that is not a valid header is an error that names the
/// variable and the entry's place, never its key or value (a collector's credentials).
pub fn otlp_headers(env: impl Fn(&str) -> Option<String>) -> Result<http::HeaderMap, Error> {
    let mut headers = http::HeaderMap::new();
    let Some((var, list)) = [
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ]
    .into_iter()
    .find_map(|k| Some((k, env(k)?))) else {
        return Ok(headers);
    };
    for (n, entry) in list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        // Entries hold a collector's credentials: an error names the entry by its place only.
        let bad = |what: &str| Error::Invalid(format!("{var}: entry {}: {what}", n + 1));
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| bad("not of the form key=value"))?;
        let key = key.trim();
        let name = http::HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| bad("not a valid header name"))?;
        let decoded: Vec<u8> = percent_decode(value.trim()).ok_or_else(|| bad("bad %-escape"))?;
        let mut value =
            http::HeaderValue::from_bytes(&decoded).map_err(|_| bad("not a valid header value"))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// An error when `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, or else
/// `OTEL_EXPORTER_OTLP_COMPRESSION`, asks for a compression: exports are sent uncompressed.
pub fn check_compression(env: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
    let asked = [
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ]
    .into_iter()
    .find_map(|k| Some((k, env(k)?)));
    match asked {
        Some((var, v)) if !v.trim().eq_ignore_ascii_case("none") => Err(Error::Invalid(format!(
            "{var} {:?} is not supported: exports are sent uncompressed (none)",
            v.trim()
        ))),
        _ => Ok(()),
    }
}

/// `s` with each `%XX` replaced by its byte; `None` when a `%` is not followed by two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// `base` + `/v1/traces`.
fn traces_url(base: &str) -> Result<String, Error> {
    checked_url(&format!("{}/v1/traces", base.trim().trim_end_matches('/')))
}

fn checked_url(url: &str) -> Result<String, Error> {
    // The endpoint is not echoed: a URL can carry credentials, which are refused, not printed.
    let parsed =
        url::Url::parse(url).map_err(|e| Error::Invalid(format!("endpoint is not a URL: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::Invalid("endpoint must not carry credentials".into()));
    }
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::Invalid(format!(
            "endpoint {:?} must be an http or https URL",
            parsed.as_str()
        )));
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests;
