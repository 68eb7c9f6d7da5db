//! A real OTLP/HTTP receiver on 127.0.0.1:0: decodes every `POST /v1/traces` body with the
//! official protobuf definitions (`opentelemetry-proto`) and keeps the spans.

use baton::http::{Body, full};
use baton::server::{self, Limits};
use http::{Request, Response};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One received span with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub kind: i32,
    pub attributes: Vec<(String, String)>,
    /// Every attribute value, the resource's included (for the secret scan).
    pub all_values: Vec<String>,
}

impl Span {
    /// The attribute `key` as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A running receiver.
pub struct Receiver {
    /// The base URL to configure (`/v1/traces` is appended by the exporter).
    pub url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn pairs(kvs: &[KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    /// Starts the receiver; it answers 200 with an empty `ExportTraceServiceResponse`.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let s = spans.clone();
        let handler = move |req: Request<hyper::body::Incoming>, _| {
            let s = s.clone();
            async move {
                assert_eq!(req.uri().path(), "/v1/traces");
                assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                let body = req.into_body().collect().await.expect("body").to_bytes();
                let export = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut got = s.lock().expect("lock");
                for rs in export.resource_spans {
                    let resource = rs
                        .resource
                        .map(|r| pairs(&r.attributes))
                        .unwrap_or_default();
                    let service = resource
                        .iter()
                        .find(|(k, _)| k == "service.name")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for sp in ss.spans {
                            let attributes = pairs(&sp.attributes);
                            let mut all_values: Vec<String> =
                                resource.iter().map(|(_, v)| v.clone()).collect();
                            all_values.extend(attributes.iter().map(|(_, v)| v.clone()));
                            all_values.extend(
                                sp.events
                                    .iter()
                                    .flat_map(|e| pairs(&e.attributes))
                                    .map(|(_, v)| v),
                            );
                            all_values.push(sp.name.clone());
                            got.push(Span {
                                service: service.clone(),
                                name: sp.name,
                                trace_id: hex(&sp.trace_id),
                                span_id: hex(&sp.span_id),
                                parent: hex(&sp.parent_span_id),
                                kind: sp.kind,
                                attributes,
                                all_values,
                            });
                        }
                    }
                }
                Response::<Body>::new(full(Vec::new()))
            }
        };
        tokio::spawn(server::serve(
            listener,
            Limits::default(),
            handler,
            std::future::pending(),
        ));
        Receiver {
            url: format!("http://{addr}"),
            spans,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("lock").clone()
    }

    /// The spans of `trace_id`, once at least `n` arrived (waits at most 15 s, then returns what
    /// came).
    pub async fn trace(&self, trace_id: &str, n: usize) -> Vec<Span> {
        for _ in 0..150 {
            let got: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}
