//! The OTLP/HTTP exporter: a batch of finished spans encoded straight to the protobuf of an
//! `ExportTraceServiceRequest` (the OTLP `trace.proto`, `common.proto` and `resource.proto`
//! messages) with `prost`'s wire primitives, and posted with baton's reqwest client.
//!
//! The body is written in two passes over the batch, each span's length first, then the bytes
//! into a buffer of exactly that size: no message structs, no copy of a name or an attribute.
//! A span's protobuf is what `opentelemetry-proto`'s conversion of `SpanData` encodes (the
//! tests decode it with `opentelemetry-proto`).

mod encode;
mod tag;
mod wire;

pub(super) use encode::{encode, resource_fields};

use super::Error;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use std::time::Duration;

/// Bytes of a collector's answer read at most.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Retries of a failed export at most (a connection failure, 429, 502, 503, 504), within
/// the export's time allowance.
const MAX_RETRIES: u32 = 3;

/// The wait before the first retry; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The longest wait between two attempts, a collector's `Retry-After` included.
const MAX_RETRY_DELAY: Duration = Duration::from_millis(1600);

/// Posts batches of spans to one collector.
#[derive(Debug)]
pub(super) struct Exporter {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` (may hold a collector's credentials: never logged).
    headers: http::HeaderMap,
    /// The `ResourceSpans` fields other than `scope_spans`, encoded once.
    resource: Vec<u8>,
    timeout: Duration,
}

/// Why one export attempt failed.
enum Failure {
    /// Worth another attempt, after at least this long.
    Retry(Duration),
    Final,
}

impl Exporter {
    /// An exporter to the full traces URL `url`, with `resource` on every batch.
    pub(super) fn new(
        url: &str,
        headers: http::HeaderMap,
        resource: &Resource,
        timeout: Duration,
    ) -> Result<Exporter, Error> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| Error::Invalid(format!("endpoint {url:?} is not a URL: {e}")))?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        Ok(Exporter {
            client,
            url,
            headers,
            resource: resource_fields(resource),
            timeout,
        })
    }

    /// Sends `spans` in one request, retrying a failure that may pass within the time
    /// allowance; true when the collector took them.
    pub(super) async fn export(&self, spans: &[SpanData]) -> bool {
        let body = bytes::Bytes::from(encode(&self.resource, spans));
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 0..=MAX_RETRIES {
            let wait = match self.send(body.clone()).await {
                Ok(()) => return true,
                Err(Failure::Retry(after)) if attempt < MAX_RETRIES => after.max(delay),
                Err(_) => return false,
            };
            let wait = wait.min(MAX_RETRY_DELAY) + jitter();
            if tokio::time::Instant::now() + wait >= deadline {
                return false;
            }
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
        false
    }

    async fn send(&self, body: bytes::Bytes) -> Result<(), Failure> {
        let rsp = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let mut rsp = match rsp {
            Ok(rsp) => rsp,
            Err(e) if e.is_timeout() => return Err(Failure::Final),
            Err(_) => return Err(Failure::Retry(Duration::ZERO)),
        };
        let status = rsp.status().as_u16();
        let retry_after = rsp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        // The answer (an `ExportTraceServiceResponse`, or an error) is read, bounded, so
        // that the connection can be used again, and not kept.
        let mut read = 0;
        while let Ok(Some(chunk)) = rsp.chunk().await {
            read += chunk.len();
            if read > MAX_ANSWER_BYTES {
                return Err(Failure::Final);
            }
        }
        match status {
            200..=299 => Ok(()),
            429 | 503 => Err(Failure::Retry(retry_after)),
            502 | 504 => Err(Failure::Retry(Duration::ZERO)),
            _ => Err(Failure::Final),
        }
    }
}

/// Up to 100 ms, so that sidecars that failed together do not retry together.
fn jitter() -> Duration {
    Duration::from_millis(fastrand::u64(0..100))
}

#[cfg(test)]
mod tests;
