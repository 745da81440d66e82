//! A minimal OTLP/HTTP JSON span exporter, as a `tracing` layer.
//!
//! Why by hand: `opentelemetry_sdk` / `tracing-opentelemetry` turn on the `default` features of
//! `futures-executor` and `tracing-core`, which nothing else in the workspace uses, so every
//! crate above them (tonic, object_store, parquet, all of DataFusion) would be compiled a second
//! time for this one binary. The coordinator's needs are small: closed spans with ids, parent,
//! name, times and string attributes, POSTed as OTLP JSON (`{endpoint}/v1/traces`) with the
//! hyper client already in the build. No sampling, no retries: a batch the collector does not
//! take is dropped with a (rate-limited) warning.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, field};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Spans kept while the collector is slow or away; more are dropped.
const MAX_BUFFERED: usize = 4096;
/// How often the buffer is sent.
const EXPORT_EVERY: Duration = Duration::from_secs(2);

/// The ids of a span, in its extensions (also what [`current_traceparent`] reads).
#[derive(Clone, Copy)]
struct Ids {
    trace_id: u128,
    span_id: u64,
    parent: Option<u64>,
}

/// A span being recorded, in its extensions.
struct Open {
    start: u64,
    attributes: Vec<(String, String)>,
}

/// A finished span, waiting to be sent.
struct Finished {
    ids: Ids,
    name: &'static str,
    start: u64,
    end: u64,
    attributes: Vec<(String, String)>,
}

/// The layer: records spans, queues them when they close.
pub struct OtlpLayer {
    queue: Arc<Mutex<Vec<Finished>>>,
}

/// Sends the queue; [`Exporter::run`] until stopped, then [`Exporter::flush`].
pub struct Exporter {
    queue: Arc<Mutex<Vec<Finished>>>,
    url: String,
    service: String,
    http: Client<HttpConnector, Full<Bytes>>,
    failures: u64,
}

/// The layer and its exporter for `endpoint` (the `OTEL_EXPORTER_OTLP_ENDPOINT` base URL).
pub fn pipeline(endpoint: &str, service: &str) -> (OtlpLayer, Exporter) {
    let queue = Arc::new(Mutex::new(Vec::new()));
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    (
        OtlpLayer {
            queue: Arc::clone(&queue),
        },
        Exporter {
            queue,
            url,
            service: service.to_owned(),
            http: Client::builder(TokioExecutor::new()).build(connector),
            failures: 0,
        },
    )
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn nonzero_u64() -> u64 {
    loop {
        let v = rand::random::<u64>();
        if v != 0 {
            return v;
        }
    }
}

/// Field values as strings.
struct Fields<'a>(&'a mut Vec<(String, String)>);

impl field::Visit for Fields<'_> {
    fn record_str(&mut self, f: &field::Field, value: &str) {
        self.0.push((f.name().to_owned(), value.to_owned()));
    }
    fn record_debug(&mut self, f: &field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((f.name().to_owned(), format!("{value:?}")));
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Ids>().copied());
        let ids = Ids {
            trace_id: parent.map_or_else(
                || loop {
                    let t = rand::random::<u128>();
                    if t != 0 {
                        break t;
                    }
                },
                |p| p.trace_id,
            ),
            span_id: nonzero_u64(),
            parent: parent.map(|p| p.span_id),
        };
        let mut attributes = Vec::new();
        attrs.record(&mut Fields(&mut attributes));
        let mut ext = span.extensions_mut();
        ext.insert(ids);
        ext.insert(Open {
            start: now_nanos(),
            attributes,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(open) = span.extensions_mut().get_mut::<Open>() {
            values.record(&mut Fields(&mut open.attributes));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let ids = span.extensions().get::<Ids>().copied();
        let open = span.extensions_mut().remove::<Open>();
        let (Some(ids), Some(open)) = (ids, open) else {
            return;
        };
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() < MAX_BUFFERED {
            queue.push(Finished {
                ids,
                name: span.name(),
                start: open.start,
                end: now_nanos(),
                attributes: open.attributes,
            });
        }
    }
}

/// The W3C `traceparent` of the current span (its ids as this layer assigned them).
pub fn current_traceparent() -> Option<String> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            let ids = span.extensions().get::<Ids>().copied()?;
            Some(format!("00-{:032x}-{:016x}-01", ids.trace_id, ids.span_id))
        })
        .flatten()
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The OTLP/JSON `ExportTraceServiceRequest` of `spans`.
fn encode(service: &str, spans: &[Finished]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":{}}}}}]}},"scopeSpans":[{{"scope":{{"name":"worker-resolver-coordinator"}},"spans":["#,
        json_string(service)
    );
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"traceId":"{:032x}","spanId":"{:016x}","#,
            s.ids.trace_id, s.ids.span_id
        );
        if let Some(p) = s.ids.parent {
            let _ = write!(out, r#""parentSpanId":"{p:016x}","#);
        }
        // The sidecar request is a client span; the rest are internal.
        let kind = if s.name == "worker_resolver.poll" {
            3
        } else {
            1
        };
        let _ = write!(
            out,
            r#""name":{},"kind":{kind},"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":["#,
            json_string(s.name),
            s.start,
            s.end
        );
        for (j, (k, v)) in s.attributes.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                r#"{{"key":{},"value":{{"stringValue":{}}}}}"#,
                json_string(k),
                json_string(v)
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}]}]}");
    out
}

impl Exporter {
    /// Sends the queue every [`EXPORT_EVERY`] until `stop`, then once more.
    pub async fn run(mut self, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(EXPORT_EVERY) => {}
            }
            self.send().await;
        }
        // The last spans get a bounded chance: an unreachable collector must not hold the exit.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.send()).await;
    }

    async fn send(&mut self) {
        let spans = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        if spans.is_empty() {
            return;
        }
        let body = encode(&self.service, &spans);
        let req = http::Request::post(self.url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else { return };
        let outcome =
            match tokio::time::timeout(Duration::from_secs(5), self.http.request(req)).await {
                Ok(Ok(res)) if res.status().is_success() => Ok(()),
                Ok(Ok(res)) => Err(format!("collector answered HTTP {}", res.status())),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            };
        match outcome {
            Ok(()) => self.failures = 0,
            Err(e) => {
                self.failures += 1;
                // The first failure, then one in a hundred: a warning, not a flood.
                if self.failures % 100 == 1 {
                    tracing::warn!(target: "otlp", url = %self.url, error = %e, dropped = spans.len(), failures = self.failures, "OTLP export failed; spans dropped");
                }
            }
        }
    }
}
