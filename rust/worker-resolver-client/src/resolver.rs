//! The resolver: one background task, one outstanding long poll, publishing into the lock-free
//! snapshot its readers (`reader.rs`) see. The value users keep, clone and hand to
//! `with_distributed_worker_resolver` owns that task.

use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::connect::TrackingConnector;
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

/// The retry ceiling after a refused connection: nothing listens on the sidecar's port (it is
/// restarting), and trying again costs one local SYN, so a restarted sidecar is read within a
/// second instead of after the backoff cap.
const REFUSED_RETRY_CAP: Duration = Duration::from_secs(1);

/// The worker resolver of a Distributed DataFusion coordinator: an always-fresh list of
/// healthy workers, read from the `worker-resolver` sidecar.
///
/// One cheap `Clone` value, as upstream's resolvers: hand a clone to
/// `with_distributed_worker_resolver` (feature `datafusion-distributed`) and keep others for
/// [`status`](Self::status), [`subscribe`](Self::subscribe) or metrics. Every clone shares one
/// background task, which keeps one long poll of `GET /v1/workers?index=N&wait=…` outstanding
/// and publishes each change by an atomic swap; it runs until [`close`](Self::close) is called
/// or the last clone is dropped. No task, timer or socket outlives it.
#[derive(Clone)]
pub struct SidecarWorkerResolver {
    owner: Arc<Owner>,
}

/// The task's owner: dropped with the last [`SidecarWorkerResolver`] clone.
struct Owner {
    reader: WorkerReader,
    /// `Some` until [`SidecarWorkerResolver::close`] takes it.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.reader.shared.cancel.cancel();
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for SidecarWorkerResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarWorkerResolver")
            .field("reader", &self.owner.reader)
            .finish()
    }
}

impl SidecarWorkerResolver {
    /// Starts the background task on the current tokio runtime ([`Error::NoRuntime`] outside one).
    pub fn start(config: ClientConfig) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (shared, tx) = Shared::new(config, Arc::new(WorkerSnapshot::empty()), false);
        let span = tracing::info_span!(
            "worker_resolver.client",
            sidecar = shared.config.sidecar_url().as_str(),
            wait_ms = u64::try_from(shared.config.wait().as_millis()).unwrap_or(u64::MAX),
        );
        let task = runtime.spawn(run(Arc::clone(&shared), tx).instrument(span));
        Ok(SidecarWorkerResolver {
            owner: Arc::new(Owner {
                reader: WorkerReader { shared },
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// A resolver over `shared` with no task (tests publish into it by hand).
    #[cfg(all(test, feature = "datafusion-distributed"))]
    pub(crate) fn without_task(shared: Arc<Shared>) -> Self {
        SidecarWorkerResolver {
            owner: Arc::new(Owner {
                reader: WorkerReader { shared },
                task: Mutex::new(None),
            }),
        }
    }

    /// A read handle that does not keep the refresher alive (for a metrics exporter that must
    /// not extend the resolver's life); see [`WorkerReader`].
    pub fn reader(&self) -> WorkerReader {
        self.owner.reader.clone()
    }

    /// The current snapshot; see [`WorkerReader::snapshot`].
    pub fn snapshot(&self) -> Arc<WorkerSnapshot> {
        self.owner.reader.snapshot()
    }

    /// The current URLs; see [`WorkerReader::urls`].
    pub fn urls(&self) -> Arc<[Url]> {
        self.owner.reader.urls()
    }

    /// A change receiver; see [`WorkerReader::subscribe`].
    pub fn subscribe(&self) -> watch::Receiver<Arc<WorkerSnapshot>> {
        self.owner.reader.subscribe()
    }

    /// The resolver's health; see [`WorkerReader::status`].
    pub fn status(&self) -> Status {
        self.owner.reader.status()
    }

    /// Waits for the first snapshot; see [`WorkerReader::ready`].
    pub async fn ready(&self, timeout: Duration) -> Result<Arc<WorkerSnapshot>, Error> {
        self.owner.reader.ready(timeout).await
    }

    /// Stops the background task (aborting the in-flight long poll) and waits for it to end,
    /// for every clone. Idempotent. The last snapshot stays readable; `get_urls()` fails with
    /// [`Error::Closed`] from then on, and subscribers' `changed()` resolves with an error.
    pub async fn close(&self) {
        self.owner.reader.shared.cancel.cancel();
        let task = self.owner.task.lock().await.take();
        if let Some(task) = task {
            // A panic in the task is already reported by tokio; there is nothing left to stop.
            let _ = task.await;
        }
    }
}

type HttpClient = Client<TrackingConnector, Empty<Bytes>>;

/// The delay before retrying after `failures` consecutive failures, the last being `err`.
fn retry_delay(backoff: Backoff, failures: u32, err: &Error) -> Duration {
    if err.is_connection_refused() {
        backoff.random_delay_capped(failures, REFUSED_RETRY_CAP)
    } else {
        backoff.random_delay(failures)
    }
}

/// The background loop. Ends only when cancelled (or aborted); `tx` is dropped with it, which
/// closes every subscriber's channel.
async fn run(shared: Arc<Shared>, tx: watch::Sender<Arc<WorkerSnapshot>>) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let http: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(TrackingConnector::new(connector, Arc::clone(&shared)));
    let cfg = &shared.config;
    let mut index: u64 = 0;
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        // Each poll is a trace of its own (the client span lives as long as the resolver).
        let span = tracing::info_span!(
            parent: None,
            "worker_resolver.poll",
            sidecar = cfg.sidecar_url().as_str(),
            index,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let traceparent = span.in_scope(|| traceparent(cfg, &span));
        shared.in_flight.store(true, Ordering::Release);
        let result = tokio::select! {
            () = shared.cancel.cancelled() => break,
            r = fetch(&http, cfg, index, &traceparent).instrument(span.clone()) => r,
        };
        shared.in_flight.store(false, Ordering::Release);
        let _entered = span.enter();
        let pause = match result {
            Ok(answer) => {
                shared.answered();
                if failures > 0 {
                    tracing::info!(failures, "sidecar answered again");
                }
                failures = 0;
                handle_answer(&shared, &tx, &mut index, answer, started.elapsed())
            }
            Err(err) => {
                // After a failure the sidecar may be a new process whose version happens to
                // equal our index (its poll would then wait for a change we already missed):
                // ask with 0 next, which answers at once with its current state.
                index = 0;
                failures = failures.saturating_add(1);
                let delay = retry_delay(cfg.backoff(), failures, &err);
                let kept = shared.current.load().urls.len();
                let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                if failures == 1 {
                    tracing::warn!(error = %err, code = err.code(), retry_in_ms, kept_workers = kept, "sidecar poll failed; keeping the last good list");
                } else {
                    tracing::debug!(error = %err, code = err.code(), failures, retry_in_ms, "sidecar poll failed again");
                }
                shared.failed(failures, err);
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
    shared.in_flight.store(false, Ordering::Release);
    tracing::debug!("sidecar client stopped");
}

/// The request's `traceparent`: the configured provider's (e.g. the poll span's OpenTelemetry
/// context), else a fresh random trace; its ids are recorded on `span`.
fn traceparent(cfg: &ClientConfig, span: &tracing::Span) -> String {
    let value = cfg
        .traceparent_provider()
        .and_then(|f| f())
        .unwrap_or_else(|| TraceParent::random().to_string());
    let mut parts = value.split('-');
    if let (Some(_), Some(trace_id), Some(span_id)) = (parts.next(), parts.next(), parts.next()) {
        span.record("trace_id", trace_id);
        span.record("span_id", span_id);
    }
    value
}

/// Applies one answer; returns the pause before the next request.
fn handle_answer(
    shared: &Shared,
    tx: &watch::Sender<Arc<WorkerSnapshot>>,
    index: &mut u64,
    answer: Answer,
    elapsed: Duration,
) -> Duration {
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
            if let Some(p) = shared.publish_if_changed(tx, next) {
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
    traceparent: &str,
) -> Result<Answer, Error> {
    let uri = cfg.workers_url(index);
    let req = http::Request::get(uri.as_str())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("worker-resolver-client/", env!("CARGO_PKG_VERSION")),
        )
        .header("traceparent", traceparent)
        .body(Empty::<Bytes>::new())
        .map_err(Error::decode)?;
    let timeout = cfg.request_timeout();
    let exchange = async {
        let res = http.request(req).await.map_err(Error::unreachable)?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(res.into_body(), cfg.max_body_bytes)
            .collect()
            .await
            .map_err(Error::unreachable)?
            .to_bytes();
        tracing::debug!(status, bytes = body.len(), "sidecar answered");
        decode(status, retry_after.as_deref(), &body)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Error::RequestTimeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connections_retry_within_a_second_and_other_errors_back_off() {
        let backoff = Backoff {
            base: Duration::from_secs(4),
            cap: Duration::from_secs(60),
        };
        let refused =
            Error::unreachable(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let reset = Error::unreachable(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let mut longest_other = Duration::ZERO;
        for failures in 1..200 {
            assert!(retry_delay(backoff, failures, &refused) <= REFUSED_RETRY_CAP);
            longest_other = longest_other.max(retry_delay(backoff, failures, &reset));
        }
        assert!(
            longest_other > REFUSED_RETRY_CAP,
            "other errors keep the backoff: {longest_other:?}"
        );
    }
}
