//! The export path: finished spans into a bounded queue, drained in batches by a thread of
//! their own to the collector (OTLP/HTTP) or to memory; a full queue or a failed export drops
//! and counts spans.

use super::{Error, QUEUE_CAPACITY, otlp};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Spans sent in one export request at most.
const MAX_BATCH: usize = 512;

/// How long the exporter waits for a full batch before it sends what it has.
const BATCH_DELAY: Duration = Duration::from_millis(200);

/// Time allowed for one export request.
pub(super) const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Spans collected in-process, each with its `service.name`.
pub type Collected = Arc<Mutex<Vec<(Arc<str>, SpanData)>>>;

/// Where finished spans go.
pub(super) enum Sink {
    Otlp(Box<otlp::Exporter>),
    Memory(Arc<str>, Collected),
}

/// The span processor: finished spans into the bounded queue, never waiting. The export thread
/// is woken by a batch's first span and when the batch is full, not per span: a busy sidecar
/// makes tens of thousands of spans a second, and a wake-up each (a futex call and a thread
/// switch on a core the requests need) would cost more than the span.
#[derive(Debug)]
pub(super) struct Queue {
    shared: Arc<Shared>,
    dropped: Counter,
}

/// What the span processor and the export thread share.
#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled by a batch's first span, a full batch, and shutdown.
    ready: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Pending {
    spans: Vec<SpanData>,
    closed: bool,
}

impl Queue {
    /// Starts the export thread draining into `sink`; the span processor that feeds it,
    /// counting dropped spans into `dropped`.
    pub(super) fn start(sink: Sink, dropped: Counter) -> Result<Queue, Error> {
        let shared = Arc::new(Shared::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Thread)?;
        let (drained, counted) = (shared.clone(), dropped.clone());
        std::thread::Builder::new()
            .name("baton-otel".into())
            .spawn(move || runtime.block_on(export_loop(&drained, sink, counted)))
            .map_err(Error::Thread)?;
        Ok(Queue { shared, dropped })
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}

    fn on_end(&self, span: SpanData) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if pending.closed || pending.spans.len() >= QUEUE_CAPACITY {
            drop(pending);
            self.dropped.inc();
            return;
        }
        pending.spans.push(span);
        // The export thread waits for a first span, then for a full batch.
        let wake = matches!(pending.spans.len(), 1 | MAX_BATCH);
        drop(pending);
        if wake {
            self.shared.ready.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        // The export loop sends what is queued, then ends.
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        Ok(())
    }
}

/// Sends the queue in batches of at most [`MAX_BATCH`], each once it is full or [`BATCH_DELAY`]
/// after its first span, whichever comes first (a busy sidecar's batches go out back to back, a
/// quiet one's spans within the delay, an idle one's thread sleeps); a batch that fails to
/// export is dropped and counted, never retried. Ends once the queue is closed and empty.
async fn export_loop(shared: &Shared, sink: Sink, dropped: Counter) {
    while let Some(batch) = next_batch(shared).await {
        export(&sink, batch, &dropped).await;
    }
}

/// The next batch to send, `None` once the queue is closed and empty. Waits for a first span
/// without a timer, then for a full batch until [`BATCH_DELAY`] has passed.
async fn next_batch(shared: &Shared) -> Option<Vec<SpanData>> {
    while !shared.lock().ready(1) {
        shared.ready.notified().await;
    }
    let deadline = tokio::time::Instant::now() + BATCH_DELAY;
    while !shared.lock().ready(MAX_BATCH) {
        if tokio::time::timeout_at(deadline, shared.ready.notified())
            .await
            .is_err()
        {
            break;
        }
    }
    let mut pending = shared.lock();
    if pending.spans.is_empty() {
        return None; // closed
    }
    Some(if pending.spans.len() <= MAX_BATCH {
        // The next batch's room is made here, off the requests' threads.
        std::mem::replace(&mut pending.spans, Vec::with_capacity(MAX_BATCH))
    } else {
        pending.spans.drain(..MAX_BATCH).collect()
    })
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Pending {
    /// Whether there is no more waiting for `n` spans: they are here, or the queue is closed.
    fn ready(&self, n: usize) -> bool {
        self.spans.len() >= n || self.closed
    }
}

/// Sends one batch to `sink`; a failed export is counted in `dropped`.
async fn export(sink: &Sink, batch: Vec<SpanData>, dropped: &Counter) {
    let n = batch.len() as u64;
    match sink {
        Sink::Memory(service, spans) => spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(batch.into_iter().map(|s| (service.clone(), s))),
        Sink::Otlp(exporter) => {
            let sent = tokio::time::timeout(
                EXPORT_TIMEOUT + Duration::from_secs(1),
                exporter.export(&batch),
            )
            .await;
            if !matches!(sent, Ok(true)) {
                dropped.inc_by(n);
                tracing::debug!(spans = n, "trace export failed; spans dropped");
            }
        }
    }
}
