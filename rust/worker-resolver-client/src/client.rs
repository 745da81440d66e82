//! The client: one background task, one outstanding long poll, publishing into the lock-free
//! snapshot its readers (`reader.rs`) see.

use crate::config::ClientConfig;
use crate::error::Error;
use crate::index::next_index;
use crate::reader::{Shared, Status, WorkerReader};
use crate::snapshot::WorkerSnapshot;
use crate::traceparent::TraceParent;
use crate::wire::{Answer, decode};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use url::Url;

/// The longest `Retry-After` honoured on a 503 ("no snapshot yet"), so a first snapshot is
/// picked up promptly even if the sidecar asks for a long pause.
const MAX_NOT_READY_PAUSE: Duration = Duration::from_secs(1);

/// The sidecar client. Owns one background task that keeps one long poll of
/// `GET /v1/workers?index=N&wait=…` outstanding and publishes each change by an atomic swap.
///
/// [`SidecarClient::close`] stops the task and awaits it; dropping the client cancels and
/// aborts it. Either way no task, timer or socket of the client outlives it.
pub struct SidecarClient {
    reader: WorkerReader,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SidecarClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarClient")
            .field("reader", &self.reader)
            .finish()
    }
}

impl SidecarClient {
    /// Starts the background task on the current tokio runtime ([`Error::NoRuntime`] outside one).
    pub fn start(config: ClientConfig) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let shared = Shared::new(config, Arc::new(WorkerSnapshot::empty()));
        let span = tracing::info_span!(
            "worker_resolver.client",
            sidecar = shared.config.sidecar_url().as_str(),
            wait_ms = u64::try_from(shared.config.wait().as_millis()).unwrap_or(u64::MAX),
        );
        let task = runtime.spawn(run(Arc::clone(&shared)).instrument(span));
        Ok(SidecarClient {
            reader: WorkerReader { shared },
            task: Mutex::new(Some(task)),
        })
    }

    /// A cloneable read handle (for the `WorkerResolver`, a metrics exporter, …).
    pub fn reader(&self) -> WorkerReader {
        self.reader.clone()
    }

    /// The current snapshot; see [`WorkerReader::snapshot`].
    pub fn snapshot(&self) -> Arc<WorkerSnapshot> {
        self.reader.snapshot()
    }

    /// The current URLs; see [`WorkerReader::urls`].
    pub fn urls(&self) -> Arc<[Url]> {
        self.reader.urls()
    }

    /// A change receiver; see [`WorkerReader::subscribe`].
    pub fn subscribe(&self) -> watch::Receiver<Arc<WorkerSnapshot>> {
        self.reader.subscribe()
    }

    /// The client's health; see [`WorkerReader::status`].
    pub fn status(&self) -> Status {
        self.reader.status()
    }

    /// Waits for the first snapshot; see [`WorkerReader::ready`].
    pub async fn ready(&self, timeout: Duration) -> Result<Arc<WorkerSnapshot>, Error> {
        self.reader.ready(timeout).await
    }

    /// Stops the background task (aborting the in-flight long poll) and waits for it to end.
    /// Idempotent. The last snapshot stays readable.
    pub async fn close(&self) {
        self.reader.shared.cancel.cancel();
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            // A panic in the task is already reported by tokio; there is nothing left to stop.
            let _ = task.await;
        }
    }
}

impl Drop for SidecarClient {
    fn drop(&mut self) {
        self.reader.shared.cancel.cancel();
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The background loop. Ends only when cancelled.
async fn run(shared: Arc<Shared>) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let http: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    let cfg = &shared.config;
    let mut index: u64 = 0;
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        let tp = TraceParent::random();
        let span = tracing::debug_span!(
            "worker_resolver.poll",
            index,
            trace_id = %tp.trace_id_hex(),
            span_id = %tp.span_id_hex(),
        );
        let result = tokio::select! {
            () = shared.cancel.cancelled() => break,
            r = fetch(&http, cfg, index, &tp).instrument(span.clone()) => r,
        };
        let _entered = span.enter();
        let pause = match result {
            Ok(answer) => {
                shared.touch();
                if failures > 0 {
                    tracing::info!(failures, "sidecar answered again");
                }
                failures = 0;
                shared.consecutive_failures.store(0, Ordering::Relaxed);
                handle_answer(&shared, &mut index, answer, started.elapsed())
            }
            Err(err) => {
                // After a failure the sidecar may be a new process whose version happens to
                // equal our index (its poll would then wait for a change we already missed):
                // ask with 0 next, which answers at once with its current state.
                index = 0;
                failures = failures.saturating_add(1);
                shared
                    .consecutive_failures
                    .store(failures, Ordering::Relaxed);
                let delay = cfg.backoff().random_delay(failures);
                let kept = shared.current.load().urls.len();
                if failures == 1 {
                    tracing::warn!(error = %err, code = err.code(), retry_in_ms = delay.as_millis() as u64, kept_workers = kept, "sidecar poll failed; keeping the last good list");
                } else {
                    tracing::debug!(error = %err, code = err.code(), failures, retry_in_ms = delay.as_millis() as u64, "sidecar poll failed again");
                }
                shared.last_error.store(Some(Arc::new(err)));
                delay
            }
        };
        drop(_entered);
        if !pause.is_zero() {
            tokio::select! {
                () = shared.cancel.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
    tracing::debug!("sidecar client stopped");
}

/// Applies one answer; returns the pause before the next request.
fn handle_answer(shared: &Shared, index: &mut u64, answer: Answer, elapsed: Duration) -> Duration {
    let cfg = &shared.config;
    match answer {
        Answer::NotYetKnown { retry_after } => {
            *index = 0;
            tracing::debug!("sidecar has no snapshot yet");
            // An index=0 long poll waits on the sidecar's side; a plain 503 asks us to come back.
            if elapsed < cfg.wait() / 2 {
                retry_after
                    .unwrap_or(cfg.backoff().base)
                    .min(MAX_NOT_READY_PAUSE)
            } else {
                Duration::ZERO
            }
        }
        Answer::Workers {
            index: answered,
            source,
            stale,
            updated_at,
            workers,
        } => {
            let step = next_index(*index, answered);
            if step.reset {
                tracing::info!(
                    requested = *index,
                    answered,
                    "sidecar index went backwards (sidecar restarted); resyncing from 0"
                );
            }
            *index = step.next;
            let urls: Arc<[Url]> = workers.iter().map(|w| w.url.clone()).collect();
            let next = WorkerSnapshot {
                version: 0,
                sidecar_index: answered,
                source,
                stale,
                updated_at,
                workers: workers.into(),
                urls,
                received_at: Instant::now(),
            };
            if let Some(p) = shared.publish_if_changed(next) {
                tracing::info!(
                    version = p.version,
                    sidecar_index = p.sidecar_index,
                    workers = p.urls.len(),
                    source = p.source.as_str(),
                    stale = p.stale,
                    "published worker snapshot"
                );
            }
            // A wait that ended early without news (e.g. the sidecar closing) must not spin.
            if step.unchanged && elapsed < cfg.wait() / 2 {
                cfg.backoff().random_delay(1)
            } else {
                Duration::ZERO
            }
        }
    }
}

/// One request: `GET /v1/workers?index=N&wait=…` with `traceparent`, bounded by the request timeout.
async fn fetch(
    http: &HttpClient,
    cfg: &ClientConfig,
    index: u64,
    tp: &TraceParent,
) -> Result<Answer, Error> {
    let uri = cfg.workers_url(index);
    let req = http::Request::get(uri.as_str())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("worker-resolver-client/", env!("CARGO_PKG_VERSION")),
        )
        .header("traceparent", tp.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| Error::Decode(format!("cannot build request {uri}: {e}")))?;
    let timeout = cfg.request_timeout();
    let exchange = async {
        let res = http
            .request(req)
            .await
            .map_err(|e| Error::Unreachable(error_chain(&e)))?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(res.into_body(), cfg.max_body_bytes)
            .collect()
            .await
            .map_err(|e| Error::Unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        tracing::debug!(status, bytes = body.len(), "sidecar answered");
        decode(status, retry_after.as_deref(), &body)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Error::RequestTimeout(timeout)),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
