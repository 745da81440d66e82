//! The read side: the state the background task publishes into, and the cheap handles that
//! read it ([`WorkerReader`], [`Status`]) without a lock or I/O.

use crate::config::ClientConfig;
use crate::error::Error;
use crate::snapshot::{Source, Worker, WorkerSnapshot};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::Url;

/// What readers and the background task share. Times are stored as nanoseconds since `epoch`
/// plus 1, so that 0 can mean "never" in a lock-free atomic.
pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    /// The published snapshot: replaced whole by the task (one `store`), never mutated.
    pub(crate) current: ArcSwap<WorkerSnapshot>,
    /// A receiver of the task's watch channel, cloned for subscribers. Its sender lives in the
    /// background task only, so when the task ends every `changed()` resolves (closed).
    rx: watch::Receiver<Arc<WorkerSnapshot>>,
    /// The origin of the stored times.
    epoch: Instant,
    /// When the last answer of any kind completed; 0 = never.
    last_answer: AtomicU64,
    /// Open TCP connections to the sidecar (pooled or carrying a poll).
    open_connections: AtomicUsize,
    /// When `open_connections` last went from 0 to 1 or from 1 to 0 (0 = never: since `epoch`).
    connection_changed: AtomicU64,
    /// A request is outstanding (set by the task around each request).
    pub(crate) in_flight: AtomicBool,
    /// Failed requests since the last answer; 0 once the sidecar answers.
    pub(crate) consecutive_failures: AtomicU32,
    /// The last request error; kept after recovery, for diagnostics.
    last_error: ArcSwapOption<Error>,
    /// When `last_error` was stored; 0 = never.
    last_error_at: AtomicU64,
    /// Cancelled when the resolver closes or its last owning handle drops.
    pub(crate) cancel: CancellationToken,
    /// A fixed list ([`WorkerReader::fixed`]): no task, nothing to refresh, never stale.
    fixed: bool,
}

impl Shared {
    /// Shared state starting from `snapshot`, and the sender the background task publishes with.
    pub(crate) fn new(
        config: ClientConfig,
        snapshot: Arc<WorkerSnapshot>,
        fixed: bool,
    ) -> (Arc<Shared>, watch::Sender<Arc<WorkerSnapshot>>) {
        let (tx, rx) = watch::channel(Arc::clone(&snapshot));
        let shared = Arc::new(Shared {
            config,
            current: ArcSwap::new(snapshot),
            rx,
            epoch: Instant::now(),
            last_answer: AtomicU64::new(0),
            open_connections: AtomicUsize::new(0),
            connection_changed: AtomicU64::new(0),
            in_flight: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            last_error: ArcSwapOption::empty(),
            last_error_at: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            fixed,
        });
        (shared, tx)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn age(&self, stamp: u64) -> Option<Duration> {
        (stamp != 0).then(|| {
            self.epoch
                .elapsed()
                .saturating_sub(Duration::from_nanos(stamp - 1))
        })
    }

    /// Records a completed answer of any kind from the sidecar.
    pub(crate) fn answered(&self) {
        self.last_answer.store(self.now(), Ordering::Release);
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Records a failed request.
    pub(crate) fn failed(&self, failures: u32, err: Error) {
        self.consecutive_failures.store(failures, Ordering::Relaxed);
        self.last_error.store(Some(Arc::new(err)));
        self.last_error_at.store(self.now(), Ordering::Release);
    }

    pub(crate) fn connection_opened(&self) {
        if self.open_connections.fetch_add(1, Ordering::AcqRel) == 0 {
            self.connection_changed.store(self.now(), Ordering::Release);
        }
    }

    pub(crate) fn connection_closed(&self) {
        if self.open_connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.connection_changed.store(self.now(), Ordering::Release);
        }
    }

    fn connected(&self) -> bool {
        self.open_connections.load(Ordering::Acquire) > 0
    }

    /// Time since the last contact: zero while a poll is held on a live connection (the
    /// sidecar is there, it just has nothing new), else since the last completed answer.
    pub(crate) fn since_last_contact(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) && self.connected() {
            return Some(Duration::ZERO);
        }
        self.age(self.last_answer.load(Ordering::Acquire))
    }

    /// The resolver was closed or dropped: nothing refreshes the list any more.
    pub(crate) fn is_closed(&self) -> bool {
        !self.fixed && self.cancel.is_cancelled()
    }

    /// Publishes `next` (one store, one watch send) unless it has the same content as the current one.
    pub(crate) fn publish_if_changed(
        &self,
        tx: &watch::Sender<Arc<WorkerSnapshot>>,
        mut next: WorkerSnapshot,
    ) -> Option<Arc<WorkerSnapshot>> {
        let current = self.current.load();
        if current.is_known() && current.same_content(&next) {
            return None;
        }
        next.version = current.version + 1;
        let next = Arc::new(next);
        self.current.store(Arc::clone(&next));
        tx.send_replace(Arc::clone(&next));
        Some(next)
    }
}

/// Health of the client's view, for logs, metrics and readiness probes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The current snapshot.
    pub snapshot: Arc<WorkerSnapshot>,
    /// The resolver was closed, or every handle owning its refresher was dropped: the list is
    /// frozen. Always `false` for a fixed list.
    pub closed: bool,
    /// A connection to the sidecar is open (a long poll held by the sidecar counts).
    pub connected: bool,
    /// How long `connected` has had its present value (since the client started, if it never changed).
    pub since: Duration,
    /// Time since the last contact with the sidecar: zero while a poll is held on a live
    /// connection, else since the last answer (`None`: never).
    pub since_last_contact: Option<Duration>,
    /// No contact with the sidecar for longer than `stale_after` (or never any), or closed.
    pub client_stale: bool,
    /// Failed requests in a row (0 once the sidecar answers again).
    pub consecutive_failures: u32,
    /// The last request error (kept after recovery, for diagnostics).
    pub last_error: Option<Arc<Error>>,
    /// How long ago `last_error` happened.
    pub last_error_age: Option<Duration>,
}

impl Status {
    /// Stale by either measure: the sidecar says its list is stale, or the client has not been
    /// in contact with the sidecar for too long (or is closed). The list is still served.
    pub fn is_stale(&self) -> bool {
        self.snapshot.stale || self.client_stale
    }
}

/// A cheap, cloneable read handle on a resolver's snapshot. Reads never block, lock or do I/O.
///
/// A reader does not keep the refresher alive (a [`crate::SidecarWorkerResolver`] does). Once
/// every owning handle is closed or dropped, the reader still shows the last snapshot, but says
/// so: [`Status::closed`], [`Status::is_stale`], and `get_urls()` fails with [`Error::Closed`].
#[derive(Clone)]
pub struct WorkerReader {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerReader")
            .field("sidecar", &self.shared.config.sidecar_url().as_str())
            .field("version", &self.shared.current.load().version)
            .field("closed", &self.shared.is_closed())
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
        // The sender is dropped at once: a fixed list never changes.
        let (shared, _tx) = Shared::new(config, snapshot, true);
        shared.answered();
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

    /// What `get_urls()` answers: the current URLs, or [`Error::NotReady`] before the first
    /// snapshot (not an empty list, which would mean "no workers"), or [`Error::Closed`] once
    /// nothing refreshes the list.
    pub fn checked_urls(&self) -> Result<Vec<Url>, Error> {
        if self.shared.is_closed() {
            return Err(Error::Closed);
        }
        self.with_current(|s| {
            if s.is_known() {
                Ok(s.urls.to_vec())
            } else {
                Err(Error::NotReady)
            }
        })
    }

    /// The current worker URLs (an `Arc` clone of the snapshot's slice).
    pub fn urls(&self) -> Arc<[Url]> {
        self.with_current(|s| Arc::clone(&s.urls))
    }

    /// A receiver that sees every published snapshot (the latest one; intermediate ones may be
    /// skipped by a slow receiver, as with any `watch`). Its `changed()` fails once the
    /// resolver is closed: nothing will change any more.
    pub fn subscribe(&self) -> watch::Receiver<Arc<WorkerSnapshot>> {
        let mut rx = self.shared.rx.clone();
        rx.borrow_and_update();
        rx
    }

    /// The client's health: contact, staleness both ways, failures, the last error.
    pub fn status(&self) -> Status {
        let s = &self.shared;
        let since = s.since_last_contact();
        let closed = s.is_closed();
        Status {
            snapshot: self.snapshot(),
            closed,
            connected: s.connected(),
            since: s
                .age(s.connection_changed.load(Ordering::Acquire))
                .unwrap_or_else(|| s.epoch.elapsed()),
            since_last_contact: since,
            client_stale: closed || since.is_none_or(|d| d > s.config.stale_after),
            consecutive_failures: s.consecutive_failures.load(Ordering::Relaxed),
            last_error: s.last_error.load_full(),
            last_error_age: s.age(s.last_error_at.load(Ordering::Acquire)),
        }
    }

    /// Waits until a first snapshot is known, at most `timeout`.
    ///
    /// Returns at once when a snapshot is already known (even after the resolver was closed).
    /// Errors: [`Error::ReadyTimeout`] (with the last poll error, if any) or [`Error::Closed`].
    pub async fn ready(&self, timeout: Duration) -> Result<Arc<WorkerSnapshot>, Error> {
        let current = self.snapshot();
        if current.is_known() {
            return Ok(current);
        }
        let mut rx = self.subscribe();
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
                last_error: self.shared.last_error.load_full(),
            }),
        }
    }
}
