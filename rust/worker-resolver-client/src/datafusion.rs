//! The `datafusion_distributed` integration (feature `datafusion-distributed`).
//!
//! - [`WorkerReader`] implements [`WorkerResolver`]: `get_urls()` copies the current
//!   snapshot's URLs (the trait returns an owned `Vec<Url>`); no lock, no I/O.
//! - [`PinnedSnapshot`] is a resolver fixed to one snapshot. Install one per query
//!   ([`pin_session`]) and the planner, which calls `get_urls()` for every plan node, and the
//!   router see the same worker set, however the live list changes meanwhile.
//! - [`SnapshotRouter`] is a `RouteTasksHandler` that routes each stage's tasks against the
//!   snapshot the plan used (minus workers that have left since), with a
//!   [`RoutingStrategy`] (rendezvous by default).

use crate::reader::WorkerReader;
use crate::routing::{RoutingStrategy, route_candidates, route_tasks};
use crate::snapshot::WorkerSnapshot;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::physical_plan::displayable;
use datafusion_distributed::{
    DistributedExt, RouteTasksEvent, RouteTasksEventResponse, RouteTasksHandler, WorkerResolver,
    get_distributed_worker_resolver,
};
use std::any::Any;
use std::sync::Arc;
use url::Url;

const NOT_KNOWN: &str = "worker-resolver: the worker list is not known yet (no answer from the sidecar; await SidecarClient::ready first)";

fn urls_of(s: &WorkerSnapshot) -> Result<Vec<Url>> {
    if !s.is_known() {
        return Err(DataFusionError::Execution(NOT_KNOWN.to_owned()));
    }
    Ok(s.urls.to_vec())
}

impl WorkerResolver for WorkerReader {
    /// The current URLs. Before the first snapshot this is an error (not an empty list, which
    /// would mean "no workers": plan locally).
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        if !self.with_current(WorkerSnapshot::is_known) {
            return Err(DataFusionError::Execution(NOT_KNOWN.to_owned()));
        }
        Ok(self.urls_vec())
    }
}

/// A [`WorkerResolver`] fixed to one snapshot; see [`WorkerReader::pin`].
#[derive(Debug, Clone)]
pub struct PinnedSnapshot {
    snapshot: Arc<WorkerSnapshot>,
}

impl PinnedSnapshot {
    /// The pinned snapshot.
    pub fn snapshot(&self) -> &Arc<WorkerSnapshot> {
        &self.snapshot
    }
}

impl WorkerResolver for PinnedSnapshot {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        urls_of(&self.snapshot)
    }
}

impl WorkerReader {
    /// A resolver fixed to the current snapshot, for one query.
    pub fn pin(&self) -> PinnedSnapshot {
        PinnedSnapshot {
            snapshot: self.snapshot(),
        }
    }
}

/// Pins `state` (a per-query copy of the session state, e.g. `ctx.state()`) to the reader's
/// current snapshot and returns that snapshot.
///
/// ```no_run
/// # async fn f(ctx: datafusion::prelude::SessionContext, reader: worker_resolver_client::WorkerReader) -> datafusion::common::Result<()> {
/// use datafusion::prelude::SessionContext;
/// let mut state = ctx.state();
/// let snapshot = worker_resolver_client::datafusion::pin_session(&mut state, &reader);
/// let query_ctx = SessionContext::new_with_state(state); // plan and run this query with it
/// # let _ = (query_ctx, snapshot); Ok(()) }
/// ```
pub fn pin_session(state: &mut SessionState, reader: &WorkerReader) -> Arc<WorkerSnapshot> {
    let pinned = reader.pin();
    let snapshot = Arc::clone(&pinned.snapshot);
    state.set_distributed_worker_resolver(pinned);
    snapshot
}

/// A `RouteTasksHandler` routing against the snapshot the plan used.
///
/// The plan's snapshot is the session's [`PinnedSnapshot`] when there is one (see
/// [`pin_session`]), else the live one. Workers that left since planning are skipped; if none
/// of the planned workers is left, the live list is used; with no worker at all, routing fails
/// with an error (the query fails before any task is sent).
#[derive(Debug, Clone)]
pub struct SnapshotRouter {
    live: WorkerReader,
    strategy: RoutingStrategy,
}

impl SnapshotRouter {
    /// A router over `live` with `strategy`.
    pub fn new(live: WorkerReader, strategy: RoutingStrategy) -> Self {
        SnapshotRouter { live, strategy }
    }
}

impl RouteTasksHandler for SnapshotRouter {
    fn handle(&self, ev: RouteTasksEvent) -> Option<Result<RouteTasksEventResponse>> {
        let cfg = ev.task_ctx.session_config();
        let planned = match get_distributed_worker_resolver(cfg) {
            Ok(r) => {
                let any: &dyn Any = r.as_ref();
                any.downcast_ref::<PinnedSnapshot>()
                    .map(|p| Arc::clone(&p.snapshot))
            }
            Err(_) => None,
        };
        let live = self.live.snapshot();
        let planned = planned.unwrap_or_else(|| Arc::clone(&live));
        let live_urls =
            (live.is_known() && live.version != planned.version).then(|| &live.urls[..]);
        let candidates = route_candidates(&planned.urls, live_urls);
        let query_key = format!(
            "{}/{}",
            ev.task_ctx.session_id(),
            ev.task_ctx.task_id().unwrap_or_default()
        );
        let stage_key = displayable(ev.plan.as_ref()).one_line().to_string();
        let routed = route_tasks(
            self.strategy,
            &candidates,
            ev.task_count,
            &query_key,
            &stage_key,
            rand::random(),
        );
        tracing::debug!(
            strategy = ?self.strategy,
            tasks = ev.task_count,
            planned_version = planned.version,
            live_version = live.version,
            candidates = candidates.len(),
            "routing stage tasks"
        );
        Some(match routed {
            Some(urls) => Ok(RouteTasksEventResponse::new(urls)),
            None => Err(DataFusionError::Execution(format!(
                "worker-resolver: no worker to route {} task(s) to (snapshot version {})",
                ev.task_count, planned.version
            ))),
        })
    }
}
