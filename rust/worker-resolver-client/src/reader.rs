//! The read side of the client: the state the background task publishes into, and the
//! cheap handles that read it ([`WorkerReader`], [`Status`]) without a lock or I/O.

use crate::config::ClientConfig;
use crate::error::Error;
use crate::snapshot::{Source, Worker, WorkerSnapshot};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::Url;

/// What readers and the background task share.
pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    /// The published snapshot: replaced whole by the task (one `store`), never mutated.
    pub(crate) current: ArcSwap<WorkerSnapshot>,
    /// Sends every snapshot `current` took, right after the store.
    pub(crate) tx: watch::Sender<Arc<WorkerSnapshot>>,
    /// The origin of `last_contact`.
    pub(crate) epoch: Instant,
    /// Nanoseconds since `epoch` of the last answer of any kind from the sidecar, plus 1; 0 = never.
    pub(crate) last_contact: AtomicU64,
    /// Failed requests since the last answer; 0 once the sidecar answers.
    pub(crate) consecutive_failures: AtomicU32,
    /// The last request error; kept after recovery, for diagnostics.
    pub(crate) last_error: ArcSwapOption<Error>,
    /// Cancelled when the client closes or drops (a fixed reader's is cancelled from the start).
    pub(crate) cancel: CancellationToken,
}

impl Shared {
    /// Shared state starting from `snapshot`, never in contact yet.
    pub(crate) fn new(config: ClientConfig, snapshot: Arc<WorkerSnapshot>) -> Arc<Shared> {
        let (tx, _) = watch::channel(Arc::clone(&snapshot));
        Arc::new(Shared {
            config,
            current: ArcSwap::new(snapshot),
            tx,
            epoch: Instant::now(),
            last_contact: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            last_error: ArcSwapOption::empty(),
            cancel: CancellationToken::new(),
        })
    }

    /// Records an answer of any kind from the sidecar.
    pub(crate) fn touch(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_contact.store(nanos + 1, Ordering::Release);
    }

    pub(crate) fn since_last_contact(&self) -> Option<Duration> {
        match self.last_contact.load(Ordering::Acquire) {
            0 => None,
            n => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(n - 1)),
            ),
        }
    }

    /// Publishes `next` (one store, one watch send) unless it has the same content as the current one.
    pub(crate) fn publish_if_changed(
        &self,
        mut next: WorkerSnapshot,
    ) -> Option<Arc<WorkerSnapshot>> {
        let current = self.current.load();
        if current.is_known() && current.same_content(&next) {
            return None;
        }
        next.version = current.version + 1;
        let next = Arc::new(next);
        self.current.store(Arc::clone(&next));
        self.tx.send_replace(Arc::clone(&next));
        Some(next)
    }
}

/// Health of the client's view, for logs, metrics and readiness probes.
#[derive(Debug, Clone)]
pub struct Status {
    /// The current snapshot.
    pub snapshot: Arc<WorkerSnapshot>,
    /// Time since the sidecar last answered anything (`None`: never).
    pub since_last_contact: Option<Duration>,
    /// No answer from the sidecar for longer than the configured `stale_after` (or never one).
    pub client_stale: bool,
    /// Failed requests in a row (0 once the sidecar answers again).
    pub consecutive_failures: u32,
    /// The last request error (kept after recovery, for diagnostics).
    pub last_error: Option<Arc<Error>>,
}

impl Status {
    /// Stale by either measure: the sidecar says its list is stale, or the client has not heard
    /// from the sidecar for too long. The list is still served either way.
    pub fn is_stale(&self) -> bool {
        self.snapshot.stale || self.client_stale
    }
}

/// A cheap, cloneable read handle on a client's snapshot. Reads never block, lock or do I/O.
///
/// A reader does not keep the background task alive: once its [`SidecarClient`] is closed or
/// dropped, it keeps serving the last snapshot and [`WorkerReader::status`] shows it aging.
#[derive(Clone)]
pub struct WorkerReader {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerReader")
            .field("sidecar", &self.shared.config.sidecar_url().as_str())
            .field("version", &self.shared.current.load().version)
            .finish()
    }
}

impl WorkerReader {
    /// A reader over a fixed list (source `static`), with no sidecar and no task: for tests,
    /// benchmarks and simple setups, like the TypeScript `StaticWorkerResolver`. It is never
    /// stale. Duplicate URLs are removed and the list is sorted, as the sidecar does.
    pub fn fixed(urls: impl IntoIterator<Item = Url>) -> WorkerReader {
        let mut urls: Vec<Url> = urls.into_iter().collect();
        urls.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        urls.dedup();
        let workers: Vec<Worker> = urls
            .iter()
            .map(|u| Worker {
                url: u.clone(),
                id: u.to_string(),
                node: String::new(),
                tags: Vec::new(),
                meta: Default::default(),
                status: "passing".to_owned(),
            })
            .collect();
        let snapshot = Arc::new(WorkerSnapshot {
            version: 1,
            sidecar_index: 0,
            source: Source::Static,
            stale: false,
            updated_at: None,
            workers: workers.into(),
            urls: urls.into(),
            received_at: Instant::now(),
        });
        let config = ClientConfig::builder("http://127.0.0.1:9464")
            .stale_after(Duration::MAX)
            .build()
            .expect("static configuration is valid");
        let shared = Shared::new(config, snapshot);
        shared.touch();
        shared.cancel.cancel();
        WorkerReader { shared }
    }

    /// The current snapshot (an `Arc` clone: no lock, no I/O, no copy of the list).
    pub fn snapshot(&self) -> Arc<WorkerSnapshot> {
        self.shared.current.load_full()
    }

    /// Runs `f` on the current snapshot without touching its reference count.
    pub(crate) fn with_current<R>(&self, f: impl FnOnce(&WorkerSnapshot) -> R) -> R {
        f(&self.shared.current.load())
    }

    /// The current worker URLs as an owned `Vec` (what `WorkerResolver::get_urls` returns):
    /// one allocation for the vector plus one per URL for its serialization.
    pub fn urls_vec(&self) -> Vec<Url> {
        self.with_current(|s| s.urls.to_vec())
    }

    /// The current worker URLs (an `Arc` clone of the snapshot's slice).
    pub fn urls(&self) -> Arc<[Url]> {
        self.with_current(|s| Arc::clone(&s.urls))
    }

    /// A receiver that sees every published snapshot (the latest one; intermediate ones may be
    /// skipped by a slow receiver, as with any `watch`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<WorkerSnapshot>> {
        self.shared.tx.subscribe()
    }

    /// The client's health: staleness both ways, failures, the last error.
    pub fn status(&self) -> Status {
        let since = self.shared.since_last_contact();
        Status {
            snapshot: self.snapshot(),
            since_last_contact: since,
            client_stale: since.is_none_or(|d| d > self.shared.config.stale_after),
            consecutive_failures: self.shared.consecutive_failures.load(Ordering::Relaxed),
            last_error: self.shared.last_error.load_full(),
        }
    }

    /// Waits until a first snapshot is known, at most `timeout`.
    ///
    /// Returns at once when a snapshot is already known (even after the client was closed).
    /// Errors: [`Error::ReadyTimeout`] (with the last poll error, if any) or [`Error::Closed`].
    pub async fn ready(&self, timeout: Duration) -> Result<Arc<WorkerSnapshot>, Error> {
        let current = self.snapshot();
        if current.is_known() {
            return Ok(current);
        }
        let mut rx = self.shared.tx.subscribe();
        let wait = async {
            tokio::select! {
                biased;
                r = rx.wait_for(|s| s.is_known()) => r.map(|s| Arc::clone(&s)).map_err(|_| Error::Closed),
                () = self.shared.cancel.cancelled() => Err(Error::Closed),
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(Error::ReadyTimeout {
                waited: timeout,
                last_error: self
                    .shared
                    .last_error
                    .load_full()
                    .map(|e| Box::new((*e).clone())),
            }),
        }
    }
}
