//! The trace of one demo call as a tree for the terminal: every span the sidecars and the IdP
//! made for it ([`crate::otel::Tracing::in_memory`]), indented under its parent, with its
//! service, duration and what it found in the caches.

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::SpanData;
use std::fmt::Write as _;
use std::sync::Arc;

/// The attributes a line shows after the duration, in this order.
const SHOWN: [&str; 6] = [
    "baton.route",
    "baton.token.cache",
    "baton.exchange.cache",
    "baton.grant_type",
    "baton.act.depth",
    "http.response.status_code",
];

/// The spans of `trace` as an indented tree, roots first, children in start order.
pub fn tree(spans: &[(Arc<str>, SpanData)], trace: TraceId) -> String {
    let mut of_trace: Vec<&(Arc<str>, SpanData)> = spans
        .iter()
        .filter(|(_, s)| s.span_context.trace_id() == trace)
        .collect();
    of_trace.sort_by_key(|(_, s)| s.start_time);
    let ids: Vec<_> = of_trace
        .iter()
        .map(|(_, s)| s.span_context.span_id())
        .collect();
    let mut out = String::new();
    // Roots: spans whose parent is not in the trace (the caller's, or none).
    for (i, (_, s)) in of_trace.iter().enumerate() {
        if !ids.contains(&s.parent_span_id) {
            line(&of_trace, i, 0, &mut out);
        }
    }
    out
}

fn line(spans: &[&(Arc<str>, SpanData)], i: usize, depth: usize, out: &mut String) {
    let (service, s) = spans[i];
    let micros = s
        .end_time
        .duration_since(s.start_time)
        .map_or(0, |d| d.as_micros());
    let label = format!("{:indent$}{} {}", "", service, s.name, indent = depth * 2);
    let _ = write!(out, "   {label:<40} {:>7.1} ms", micros as f64 / 1000.0);
    for key in SHOWN {
        if let Some(kv) = s.attributes.iter().find(|kv| kv.key.as_str() == key) {
            let short = key
                .trim_start_matches("baton.")
                .trim_start_matches("http.response.");
            let _ = write!(out, "  {short}={}", kv.value.as_str());
        }
    }
    out.push('\n');
    let id = s.span_context.span_id();
    for (j, (_, c)) in spans.iter().enumerate() {
        if c.parent_span_id == id {
            line(spans, j, depth + 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::Tracing;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanKind, TraceContextExt};

    #[tokio::test]
    async fn spans_are_drawn_under_their_parents_with_their_cache_results() {
        let spans = crate::otel::Collected::default();
        let t = Tracing::in_memory("a-baton", spans.clone()).expect("tracing");
        let root = t.start_span(
            "inbound",
            SpanKind::Server,
            &opentelemetry::Context::new(),
            vec![KeyValue::new("baton.route", "all")],
        );
        let child = t.start_span(
            "outbound",
            SpanKind::Client,
            &root,
            vec![KeyValue::new("baton.exchange.cache", "miss")],
        );
        child.span().end();
        root.span().end();
        let trace = root.span().span_context().trace_id();
        t.shutdown();
        for _ in 0..50 {
            if spans.lock().expect("lock").len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let drawn = tree(&spans.lock().expect("lock"), trace);
        let lines: Vec<&str> = drawn.lines().collect();
        assert_eq!(lines.len(), 2, "{drawn}");
        assert!(
            lines[0].trim_start().starts_with("a-baton inbound"),
            "{drawn}"
        );
        assert!(lines[0].contains("route=all"));
        assert!(
            lines[1].trim_start().starts_with("a-baton outbound"),
            "{drawn}"
        );
        assert!(lines[1].contains("exchange.cache=miss"));
        let indent = |l: &str| l.len() - l.trim_start().len();
        assert_eq!(indent(lines[1]), indent(lines[0]) + 2);
    }
}
