//! The coordinator's own metrics, as Prometheus text on `GET /metrics`, and `GET /healthz`,
//! served by a minimal hyper HTTP/1 server (the format is small enough to write by hand; a
//! metrics library would add more than it saves here).

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use worker_resolver_client::WorkerReader;

/// Per (query, result): count and total seconds.
#[derive(Default)]
struct QueryStats {
    count: u64,
    seconds: f64,
}

/// The coordinator's metrics.
pub struct Metrics {
    queries: Mutex<BTreeMap<(&'static str, &'static str), QueryStats>>,
    last_tasks: Mutex<BTreeMap<usize, usize>>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics {
            queries: Mutex::new(BTreeMap::new()),
            last_tasks: Mutex::new(BTreeMap::new()),
        })
    }

    /// Records one query: `result` is `ok`, `wrong` or `error`.
    pub fn query(&self, name: &'static str, result: &'static str, took: Duration) {
        let mut q = self.queries.lock().unwrap();
        let s = q.entry((name, result)).or_default();
        s.count += 1;
        s.seconds += took.as_secs_f64();
    }

    /// The task counts per stage of the last distributed plan.
    pub fn tasks(&self, stages: &BTreeMap<usize, usize>) {
        *self.last_tasks.lock().unwrap() = stages.clone();
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self, reader: &WorkerReader) -> String {
        let mut out = String::new();
        let q = self.queries.lock().unwrap();
        out.push_str("# HELP worker_resolver_coordinator_queries_total Queries run, by query and result (ok: same answer as single-node DataFusion; wrong: a different answer; error: failed).\n# TYPE worker_resolver_coordinator_queries_total counter\n");
        for ((name, result), s) in q.iter() {
            let _ = writeln!(
                out,
                "worker_resolver_coordinator_queries_total{{query=\"{name}\",result=\"{result}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP worker_resolver_coordinator_query_seconds_total Time spent in queries (planning and execution), by query and result.\n# TYPE worker_resolver_coordinator_query_seconds_total counter\n");
        for ((name, result), s) in q.iter() {
            let _ = writeln!(
                out,
                "worker_resolver_coordinator_query_seconds_total{{query=\"{name}\",result=\"{result}\"}} {}",
                s.seconds
            );
        }
        drop(q);
        out.push_str("# HELP worker_resolver_coordinator_stage_tasks Tasks per stage of the last distributed plan.\n# TYPE worker_resolver_coordinator_stage_tasks gauge\n");
        for (stage, tasks) in self.last_tasks.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "worker_resolver_coordinator_stage_tasks{{stage=\"{stage}\"}} {tasks}"
            );
        }
        let status = reader.status();
        let snap = &status.snapshot;
        let gauges: [(&str, &str, f64); 7] = [
            (
                "worker_resolver_client_connected",
                "1 while a connection to the sidecar is open (a held long poll counts).",
                f64::from(u8::from(status.connected)),
            ),
            (
                "worker_resolver_client_snapshot_version",
                "The client's snapshot version (0: not known yet).",
                snap.version as f64,
            ),
            (
                "worker_resolver_client_sidecar_index",
                "The sidecar's index of the current snapshot.",
                snap.sidecar_index as f64,
            ),
            (
                "worker_resolver_client_workers",
                "Workers in the current snapshot.",
                snap.urls.len() as f64,
            ),
            (
                "worker_resolver_client_stale",
                "1 when the list is stale (the sidecar says so, no contact for stale_after, or closed).",
                f64::from(u8::from(status.is_stale())),
            ),
            (
                "worker_resolver_client_consecutive_failures",
                "Failed sidecar requests in a row.",
                f64::from(status.consecutive_failures),
            ),
            (
                "worker_resolver_client_seconds_since_contact",
                "Seconds since the last contact with the sidecar (-1: never).",
                status.since_last_contact.map_or(-1.0, |d| d.as_secs_f64()),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

fn response(status: u16, content_type: &str, body: String) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    reader: WorkerReader,
    stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        let reader = reader.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let res = match req.uri().path() {
                    "/metrics" => response(
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.render(&reader),
                    ),
                    "/healthz" => {
                        let s = reader.status();
                        let body = format!(
                            "{{\"ready\":{},\"version\":{},\"workers\":{},\"stale\":{}}}\n",
                            s.snapshot.is_known(),
                            s.snapshot.version,
                            s.snapshot.urls.len(),
                            s.is_stale()
                        );
                        response(
                            if s.snapshot.is_known() { 200 } else { 503 },
                            "application/json",
                            body,
                        )
                    }
                    _ => response(404, "text/plain", "not found\n".into()),
                };
                async move { Ok::<_, std::convert::Infallible>(res) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

/// Binds `addr` (an error names the address).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}
