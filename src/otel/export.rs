//! The export path: finished spans into a bounded queue, drained in batches by a thread of
//! their own to the collector (OTLP/HTTP) or to memory; a full queue or a failed export drops
//! and counts spans.

use super::{Error, QUEUE_CAPACITY};
use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Spans sent in one export request at most.
const MAX_BATCH: usize = 512;

/// How long the exporter gathers spans after the first of a batch.
const BATCH_DELAY: Duration = Duration::from_millis(200);

/// Time allowed for one export request.
pub(super) const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of a collector's answer read at most.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Spans collected in-process, each with its `service.name`.
pub type Collected = Arc<Mutex<Vec<(Arc<str>, SpanData)>>>;

/// Where finished spans go.
pub(super) enum Sink {
    Otlp(Box<opentelemetry_otlp::SpanExporter>),
    Memory(Arc<str>, Collected),
}

/// The span processor: finished spans into the bounded queue, never waiting.
#[derive(Debug)]
pub(super) struct Queue {
    tx: Mutex<Option<tokio::sync::mpsc::Sender<SpanData>>>,
    dropped: Counter,
}

impl Queue {
    /// Starts the export thread draining into `sink`; the span processor that feeds it,
    /// counting dropped spans into `dropped`.
    pub(super) fn start(sink: Sink, dropped: Counter) -> Result<Queue, Error> {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_CAPACITY);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Thread)?;
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("baton-otel".into())
            .spawn(move || runtime.block_on(export_loop(rx, sink, counted)))
            .map_err(Error::Thread)?;
        Ok(Queue {
            tx: Mutex::new(Some(tx)),
            dropped,
        })
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}

    fn on_end(&self, span: SpanData) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let sent = tx.as_ref().is_some_and(|tx| tx.try_send(span).is_ok());
        if !sent {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        // The export loop ends once the queue is empty and closed.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }
}

/// Drains the queue in batches of at most [`MAX_BATCH`], each sent once it is full or
/// [`BATCH_DELAY`] after its first span, whichever comes first (a busy sidecar's batches go out
/// back to back); a batch that fails to export is dropped and counted, never retried.
async fn export_loop(mut rx: tokio::sync::mpsc::Receiver<SpanData>, sink: Sink, dropped: Counter) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match &sink {
            Sink::Memory(service, spans) => spans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(batch.drain(..).map(|s| (service.clone(), s))),
            Sink::Otlp(exporter) => {
                let sent = tokio::time::timeout(
                    EXPORT_TIMEOUT + Duration::from_secs(1),
                    exporter.export(std::mem::take(&mut batch)),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    dropped.inc_by(n);
                    tracing::debug!(spans = n, "trace export failed; spans dropped");
                }
            }
        }
        batch.clear();
    }
}

/// The exporter's HTTP client: the reqwest client (rustls) baton already uses, no proxy, a
/// timeout on the whole exchange and a bounded answer.
#[derive(Debug)]
pub(super) struct Client(reqwest::Client);

impl Client {
    pub(super) fn new() -> Result<Client, Error> {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(EXPORT_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map(Client)
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))
    }
}

impl HttpClient for Client {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut rsp = self.0.execute(request).await?;
            let mut answer = http::Response::builder().status(rsp.status().as_u16());
            let mut body = Vec::new();
            while let Some(chunk) = rsp.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err("the collector's answer is too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            if let Some(h) = answer.headers_mut() {
                for (k, v) in rsp.headers() {
                    h.append(k.clone(), v.clone());
                }
            }
            Ok(answer.body(Bytes::from(body))?)
        })
    }
}
