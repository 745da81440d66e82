//! The immutable worker snapshot the client publishes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use url::Url;

/// Where the sidecar's list came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Nothing is known yet (the initial, empty snapshot).
    None,
    /// Consul health (blocking queries).
    Consul,
    /// The DNS SRV fallback.
    Dns,
    /// A static list.
    Static,
    /// A source this client version does not know, by its wire name.
    Other(String),
}

impl Source {
    pub(crate) fn from_wire(s: &str) -> Self {
        match s {
            "consul" => Source::Consul,
            "dns" => Source::Dns,
            "static" => Source::Static,
            other => Source::Other(other.to_owned()),
        }
    }

    /// The wire name (`consul`, `dns`, `static`, …; `none` before the first snapshot).
    pub fn as_str(&self) -> &str {
        match self {
            Source::None => "none",
            Source::Consul => "consul",
            Source::Dns => "dns",
            Source::Static => "static",
            Source::Other(s) => s,
        }
    }
}

/// One healthy worker as the sidecar reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Worker {
    /// The URL tasks are sent to.
    pub url: Url,
    /// The service instance id (Consul's service ID).
    pub id: String,
    /// The node it runs on.
    pub node: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its service metadata.
    pub meta: BTreeMap<String, String>,
    /// Its aggregated check status (`passing`, or `warning` when warnings are accepted).
    pub status: String,
}

/// An immutable, whole view of the worker set; the client swaps the pointer, never the content.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerSnapshot {
    /// This client's own publish counter: 0 before the first answer, then +1 on each change of
    /// the worker set, its source or its staleness, and never otherwise.
    pub version: u64,
    /// The sidecar's index (its snapshot version) of the answer this snapshot was built from.
    pub sidecar_index: u64,
    /// Where the sidecar's list came from.
    pub source: Source,
    /// The sidecar's own staleness flag: it serves a last good list it could not refresh.
    pub stale: bool,
    /// The sidecar's `updatedAt` (RFC 3339), when it gave one.
    pub updated_at: Option<String>,
    /// The workers, sorted by URL.
    pub workers: Arc<[Worker]>,
    /// The workers' URLs, in the same order (what `get_urls()` returns).
    pub urls: Arc<[Url]>,
    /// When this client built the snapshot.
    pub received_at: Instant,
}

impl WorkerSnapshot {
    pub(crate) fn empty() -> Self {
        WorkerSnapshot {
            version: 0,
            sidecar_index: 0,
            source: Source::None,
            stale: false,
            updated_at: None,
            workers: Arc::from(Vec::new()),
            urls: Arc::from(Vec::new()),
            received_at: Instant::now(),
        }
    }

    /// Whether a first answer has arrived (`version > 0`). Before it, an empty list means
    /// "not known yet", not "no workers".
    pub fn is_known(&self) -> bool {
        self.version > 0
    }

    /// Same workers, source and staleness (what decides whether a new answer is published).
    pub fn same_content(&self, other: &WorkerSnapshot) -> bool {
        self.source == other.source && self.stale == other.stale && self.workers == other.workers
    }
}
