//! The app's own probes, run by the sidecar for kubelet. In capture mode the injector points the
//! app's `httpGet`/`tcpSocket` probes of the app port at `GET /app-health/<container>/<kind>` on
//! the admin port (see `k8s::mutate`) and hands the originals over in `BATON_APP_PROBES`; this
//! module parses that table once at start-up and runs a probe when kubelet asks for its path.
//!
//! The checks reach the app itself, not the inbound listener: they go to `127.0.0.1`, and
//! `baton init-net` redirects neither loopback destinations nor anything the sidecar's uid
//! (65532) sends; its inbound redirect only sees traffic arriving from outside the pod. An app
//! that listens on the pod IP only, not on loopback or all addresses, fails these checks.

use crate::k8s::{APP_HEALTH, APP_PROBES_ENV};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::env::VarError;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// kubelet's timeout when a probe sets no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long after a check's start its answer is given to new requests: under kubelet's
/// shortest period (1 s), so each of kubelet's probes runs its own check.
pub const REUSE: Duration = Duration::from_millis(500);

/// Why the probe table could not be read. The sidecar refuses to start: the table is config.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not valid UTF-8.
    #[error("{APP_PROBES_ENV}: not valid UTF-8")]
    NotUnicode,
    /// Not a JSON object of probes.
    #[error("{APP_PROBES_ENV}: not a JSON object of probes: {0}")]
    Json(#[source] serde_json::Error),
    /// One probe is malformed.
    #[error("{APP_PROBES_ENV}: {path:?}: {reason}")]
    Probe {
        /// The probe's `/app-health/...` path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client for `httpGet` probes could not be built.
    #[error("{APP_PROBES_ENV}: build the probe client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Why a probe failed; the text is the 503's body. It never carries the app's body or headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The app answered outside 200–399.
    #[error("app answered {}", .0.as_u16())]
    Status(StatusCode),
    /// No answer (or no connection) within the probe's timeout.
    #[error("app did not answer within {}s", .0.as_secs())]
    Timeout(Duration),
    /// The connection failed, e.g. refused: nothing listens on the port.
    #[error("cannot connect to the app on 127.0.0.1:{port}: {reason}")]
    Connect {
        /// The app port.
        port: u16,
        /// The OS error, e.g. `connection refused`.
        reason: String,
    },
    /// Connected, but the exchange failed (TLS handshake, malformed response, reset).
    #[error("request to the app on 127.0.0.1:{0} failed")]
    Request(u16),
}

/// The app probes by `/app-health/...` path, read once at start-up.
#[derive(Debug, Default)]
pub struct AppProbes {
    probes: HashMap<String, Probe>,
}

#[derive(Debug)]
struct Probe {
    check: Check,
    timeout: Duration,
    /// The last check's answer; held while a check runs, so one runs at a time.
    last: tokio::sync::Mutex<Option<Answer>>,
}

/// A check's answer and when the check started and ended.
#[derive(Debug)]
struct Answer {
    started: Instant,
    ended: Instant,
    result: Result<(), Failure>,
}

#[derive(Debug)]
enum Check {
    /// GET `url`, success on 200–399, redirects not followed. Header values are marked sensitive
    /// so `Debug` never prints them (a probe may carry credentials).
    Http {
        client: reqwest::Client,
        url: reqwest::Url,
        port: u16,
        headers: HeaderMap,
    },
    /// A TCP connect to `127.0.0.1:port`.
    Tcp { port: u16 },
}

// The table's format, as `k8s::mutate` writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProbe {
    http_get: Option<RawHttpGet>,
    tcp_socket: Option<RawTcp>,
    timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHttpGet {
    port: u16,
    path: Option<String>,
    scheme: Option<String>,
    #[serde(default)]
    http_headers: Vec<RawHeader>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    port: u16,
}

// === impl AppProbes ===

impl AppProbes {
    /// No app probes: every `/app-health/...` path is unknown.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads the table from the `BATON_APP_PROBES` env var; absent or blank means none. Fails
    /// like [`AppProbes::from_json`], or when the value is not UTF-8.
    pub fn from_env() -> Result<Self, Error> {
        match std::env::var(APP_PROBES_ENV) {
            Ok(text) if !text.trim().is_empty() => Self::from_json(&text),
            Ok(_) | Err(VarError::NotPresent) => Ok(Self::none()),
            Err(VarError::NotUnicode(_)) => Err(Error::NotUnicode),
        }
    }

    /// Parses a table: a JSON object from `/app-health/...` paths to
    /// `{"httpGet": {"port", "path", "scheme", "httpHeaders"}}` or `{"tcpSocket": {"port"}}`,
    /// each with an optional `timeoutSeconds`. Fails on anything else, naming the probe.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let raw: BTreeMap<String, RawProbe> = serde_json::from_str(text).map_err(Error::Json)?;
        let mut client = None;
        let mut probes = HashMap::with_capacity(raw.len());
        for (path, p) in raw {
            let bad = |reason: &str| Error::Probe {
                path: path.clone(),
                reason: reason.to_owned(),
            };
            if !path.starts_with(APP_HEALTH) {
                return Err(bad("the path must start with /app-health/"));
            }
            let check = match (p.http_get, p.tcp_socket) {
                (Some(get), None) => {
                    let client = match &client {
                        Some(c) => reqwest::Client::clone(c),
                        None => client.insert(http_client()?).clone(),
                    };
                    http_check(client, get).map_err(|reason| bad(&reason))?
                }
                (None, Some(tcp)) if tcp.port != 0 => Check::Tcp { port: tcp.port },
                (None, Some(_)) => return Err(bad("tcpSocket.port: must be 1-65535")),
                _ => return Err(bad("needs exactly one of httpGet and tcpSocket")),
            };
            // kubelet's default, and its reading of 0.
            let timeout = match p.timeout_seconds {
                None | Some(0) => DEFAULT_TIMEOUT,
                Some(s) => Duration::from_secs(s),
            };
            let last = tokio::sync::Mutex::new(None);
            probes.insert(
                path,
                Probe {
                    check,
                    timeout,
                    last,
                },
            );
        }
        Ok(Self { probes })
    }

    /// How many probes the table holds.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// The longest timeout of any probe (zero when none): the admin listener must give a
    /// request at least this long.
    pub fn longest_timeout(&self) -> Duration {
        self.probes
            .values()
            .map(|p| p.timeout)
            .max()
            .unwrap_or_default()
    }

    /// Answers the probe at `path`; `None` when there is none. Runs a check of the app unless
    /// one ended since this request arrived or one started within [`REUSE`]: then its answer is
    /// shared. `user_agent` (kubelet's `kube-probe/<version>`) is passed on unless the probe
    /// sets its own.
    pub async fn run(
        &self,
        path: &str,
        user_agent: Option<HeaderValue>,
    ) -> Option<Result<(), Failure>> {
        let probe = self.probes.get(path)?;
        let arrived = Instant::now();
        let mut last = probe.last.lock().await;
        if let Some(a) = last.as_ref()
            && (a.ended >= arrived || a.started.elapsed() < REUSE)
        {
            return Some(a.result.clone());
        }
        let started = Instant::now();
        let result = probe.check(user_agent).await;
        *last = Some(Answer {
            started,
            ended: Instant::now(),
            result: result.clone(),
        });
        Some(result)
    }
}

impl Probe {
    /// One check of the app.
    async fn check(&self, user_agent: Option<HeaderValue>) -> Result<(), Failure> {
        match &self.check {
            Check::Tcp { port } => tcp(*port, self.timeout).await,
            Check::Http {
                client,
                url,
                port,
                headers,
            } => {
                let mut headers = headers.clone();
                if let Some(ua) = user_agent {
                    headers.entry(header::USER_AGENT).or_insert(ua);
                }
                let send = client
                    .get(url.clone())
                    .headers(headers)
                    .timeout(self.timeout)
                    .send();
                match send.await {
                    // kubelet's rule: 2xx and 3xx pass. The body is not read.
                    Ok(rsp) if (200..400).contains(&rsp.status().as_u16()) => Ok(()),
                    Ok(rsp) => Err(Failure::Status(rsp.status())),
                    Err(e) if e.is_timeout() => Err(Failure::Timeout(self.timeout)),
                    Err(e) if e.is_connect() => Err(Failure::Connect {
                        port: *port,
                        reason: io_reason(&e),
                    }),
                    Err(_) => Err(Failure::Request(*port)),
                }
            }
        }
    }
}

/// Like kubelet's prober: no proxy, no redirects followed, certificates not verified (the app's
/// certificate is for its service name, not 127.0.0.1), HTTP/1.1, a new connection every time
/// (a kept-alive connection could pass while the app accepts no new ones).
fn http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .http1_only()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(Error::Client)
}

fn http_check(client: reqwest::Client, get: RawHttpGet) -> Result<Check, String> {
    if get.port == 0 {
        return Err("httpGet.port: must be 1-65535".into());
    }
    let scheme = match get.scheme.as_deref() {
        None | Some("HTTP") => "http",
        Some("HTTPS") => "https",
        Some(_) => return Err("httpGet.scheme: must be HTTP or HTTPS".into()),
    };
    let path = get.path.unwrap_or_default();
    let slash = if path.starts_with('/') { "" } else { "/" };
    let url = reqwest::Url::parse(&format!("{scheme}://127.0.0.1:{}{slash}{path}", get.port))
        .map_err(|e| format!("httpGet.path: {e}"))?;
    let mut headers = HeaderMap::new();
    for (i, h) in get.http_headers.into_iter().enumerate() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("httpGet.httpHeaders[{i}].name: not a header name"))?;
        // The value may be a credential: never quoted in errors, never printed by Debug.
        let mut value = HeaderValue::from_str(&h.value)
            .map_err(|_| format!("httpGet.httpHeaders[{i}].value: not a header value"))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(Check::Http {
        client,
        url,
        port: get.port,
        headers,
    })
}

async fn tcp(port: u16, timeout: Duration) -> Result<(), Failure> {
    match tokio::time::timeout(timeout, TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Failure::Connect {
            port,
            reason: e.kind().to_string(),
        }),
        Err(_) => Err(Failure::Timeout(timeout)),
    }
}

/// The OS error under a client error (`connection refused`), without the URL reqwest adds.
fn io_reason(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        source = s.source();
    }
    "connect failed".into()
}
