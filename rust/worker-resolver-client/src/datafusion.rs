//! The `datafusion_distributed` integration (feature `datafusion-distributed`).
//!
//! - [`SidecarWorkerResolver`] (and the non-owning [`WorkerReader`]) implement
//!   [`WorkerResolver`]: `get_urls()` copies the current snapshot's URLs; no lock, no I/O.
//!   Errors are `DataFusionError::External` carrying the crate's [`Error`] (match its
//!   [`Error::code`]).
//! - [`SidecarResolverExt::with_sidecar_worker_resolver`] installs everything on a
//!   `SessionStateBuilder` in one call: the resolver, a [`SnapshotRouter`], and a per-query pin
//!   (through DataFusion's `QueryPlanner` hook) so that planning and task routing of one query
//!   see one snapshot, however the live list changes meanwhile.
//! - The parts, for those who assemble them by hand: [`PinnedSnapshot`] / [`pin_session`]
//!   (one snapshot for one query's session state) and [`SnapshotRouter`].

use crate::error::Error;
use crate::reader::WorkerReader;
use crate::resolver::SidecarWorkerResolver;
use crate::routing::{RoutingStrategy, route_candidates, route_tasks};
use crate::snapshot::WorkerSnapshot;
use async_trait::async_trait;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, internal_err};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, displayable,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion_distributed::{
    DistributedExt, RouteTasksEvent, RouteTasksEventResponse, RouteTasksHandler, WorkerResolver,
    get_distributed_worker_resolver,
};
use std::any::Any;
use std::sync::Arc;
use url::Url;

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl WorkerResolver for SidecarWorkerResolver {
    /// The current URLs. Errors ([`Error::NotReady`] before the first snapshot, never an empty
    /// list, which would mean "no workers: plan locally"; [`Error::Closed`] after
    /// [`SidecarWorkerResolver::close`]) are `DataFusionError::External`.
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        self.reader().checked_urls().map_err(external)
    }
}

impl WorkerResolver for WorkerReader {
    /// As [`SidecarWorkerResolver`]'s; once every owning handle is gone this fails with
    /// [`Error::Closed`] instead of serving a list nothing refreshes.
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        self.checked_urls().map_err(external)
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
        if !self.snapshot.is_known() {
            return Err(external(Error::NotReady));
        }
        Ok(self.snapshot.urls.to_vec())
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

impl SidecarWorkerResolver {
    /// A resolver fixed to the current snapshot, for one query.
    pub fn pin(&self) -> PinnedSnapshot {
        self.reader().pin()
    }
}

/// Pins `state` (a per-query copy of the session state, e.g. `ctx.state()`) to the reader's
/// current snapshot and returns that snapshot. The manual form of what
/// [`SidecarResolverExt::with_sidecar_worker_resolver`] does for every query.
///
/// ```no_run
/// # async fn f(ctx: datafusion::prelude::SessionContext, resolver: worker_resolver_client::SidecarWorkerResolver) -> datafusion::common::Result<()> {
/// use datafusion::prelude::SessionContext;
/// let mut state = ctx.state();
/// let snapshot = worker_resolver_client::datafusion::pin_session(&mut state, &resolver.reader());
/// let query_ctx = SessionContext::new_with_state(state); // plan and run this query with it
/// # let _ = (query_ctx, snapshot); Ok(()) }
/// ```
pub fn pin_session(state: &mut SessionState, reader: &WorkerReader) -> Arc<WorkerSnapshot> {
    let pinned = reader.pin();
    let snapshot = Arc::clone(&pinned.snapshot);
    state.set_distributed_worker_resolver(pinned);
    snapshot
}

/// The snapshot a session (or a task context's config) is pinned to, if any.
fn pinned_in(cfg: &datafusion::prelude::SessionConfig) -> Option<Arc<WorkerSnapshot>> {
    let r = get_distributed_worker_resolver(cfg).ok()?;
    let any: &dyn Any = r.as_ref();
    any.downcast_ref::<PinnedSnapshot>()
        .map(|p| Arc::clone(&p.snapshot))
}

/// A `RouteTasksHandler` routing against the snapshot the plan used.
///
/// The plan's snapshot is the session's [`PinnedSnapshot`] when there is one (see
/// [`pin_session`] and [`SidecarResolverExt`]), else the live one. Workers that left since
/// planning are skipped; if none of the planned workers is left, the live list is used; with
/// no worker at all, routing fails with an error (the query fails before any task is sent).
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
        let planned = pinned_in(ev.task_ctx.session_config());
        let pinned = planned.is_some();
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
            pinned,
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

/// One-call setup of a [`SidecarWorkerResolver`] on a `SessionStateBuilder`.
pub trait SidecarResolverExt {
    /// Installs `resolver` as the distributed worker resolver, a [`SnapshotRouter`]
    /// (rendezvous routing) and a per-query pin: each query is planned against one snapshot of
    /// the list, and its tasks are routed against that same snapshot (minus workers that left
    /// since). Call it after `with_distributed_planner()` (it wraps the query planner in place).
    fn with_sidecar_worker_resolver(self, resolver: SidecarWorkerResolver) -> Self;

    /// [`with_sidecar_worker_resolver`](Self::with_sidecar_worker_resolver) with another
    /// routing strategy.
    fn with_sidecar_worker_resolver_routing(
        self,
        resolver: SidecarWorkerResolver,
        strategy: RoutingStrategy,
    ) -> Self;
}

impl SidecarResolverExt for SessionStateBuilder {
    fn with_sidecar_worker_resolver(self, resolver: SidecarWorkerResolver) -> Self {
        self.with_sidecar_worker_resolver_routing(resolver, RoutingStrategy::default())
    }

    fn with_sidecar_worker_resolver_routing(
        mut self,
        resolver: SidecarWorkerResolver,
        strategy: RoutingStrategy,
    ) -> Self {
        let inner = self.query_planner().take();
        self.with_distributed_worker_resolver(resolver.clone())
            .with_distributed_route_tasks_handler(SnapshotRouter::new(resolver.reader(), strategy))
            .with_query_planner(Arc::new(PinningQueryPlanner { inner, resolver }))
    }
}

/// A `QueryPlanner` that plans each query against one snapshot (a copy of the session state
/// whose resolver is a [`PinnedSnapshot`]), and wraps the plan in a [`PinnedSnapshotExec`] so
/// that its execution (task routing) sees the same snapshot.
#[derive(Debug)]
struct PinningQueryPlanner {
    /// The planner it wraps (`None`: DataFusion's default physical planner).
    inner: Option<Arc<dyn QueryPlanner + Send + Sync>>,
    resolver: SidecarWorkerResolver,
}

#[async_trait]
impl QueryPlanner for PinningQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
            return internal_err!(
                "worker-resolver: the per-query pin needs a SessionState to plan with"
            );
        };
        let pinned = self.resolver.pin();
        let mut state = state.clone();
        state.set_distributed_worker_resolver(pinned.clone());
        let plan = match &self.inner {
            Some(inner) => inner.create_physical_plan(logical_plan, &state).await?,
            None => {
                DefaultPhysicalPlanner::default()
                    .create_physical_plan(logical_plan, &state)
                    .await?
            }
        };
        Ok(Arc::new(PinnedSnapshotExec {
            input: plan,
            pinned,
        }))
    }
}

/// The root of a plan made by the one-call setup: executes its input with the task context's
/// resolver replaced by the snapshot the plan was made with. Transparent to downcasts (it
/// delegates its identity to its input, e.g. `DistributedExec`).
#[derive(Debug)]
pub struct PinnedSnapshotExec {
    input: Arc<dyn ExecutionPlan>,
    pinned: PinnedSnapshot,
}

impl PinnedSnapshotExec {
    /// The snapshot this plan was made with (and is routed against).
    pub fn snapshot(&self) -> &Arc<WorkerSnapshot> {
        self.pinned.snapshot()
    }

    /// The plan it wraps.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

/// The snapshot a plan made by the one-call setup was pinned to (its root is a
/// [`PinnedSnapshotExec`]), e.g. to log which worker set a query used.
pub fn plan_snapshot(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<WorkerSnapshot>> {
    let any: &dyn Any = plan.as_ref();
    any.downcast_ref::<PinnedSnapshotExec>()
        .map(|p| Arc::clone(p.snapshot()))
}

impl DisplayAs for PinnedSnapshotExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "PinnedSnapshotExec: version={}, workers={}",
            self.pinned.snapshot.version,
            self.pinned.snapshot.urls.len()
        )
    }
}

impl ExecutionPlan for PinnedSnapshotExec {
    fn name(&self) -> &str {
        "PinnedSnapshotExec"
    }

    fn downcast_delegate(&self) -> Option<&dyn ExecutionPlan> {
        Some(self.input.as_ref())
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("PinnedSnapshotExec has exactly one child");
        }
        Ok(Arc::new(PinnedSnapshotExec {
            input: children.remove(0),
            pinned: self.pinned.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut config = context.session_config().clone();
        config.set_distributed_worker_resolver(self.pinned.clone());
        let pinned = TaskContext::new(
            context.task_id(),
            context.session_id(),
            config,
            context.scalar_functions().clone(),
            context.higher_order_functions().clone(),
            context.aggregate_functions().clone(),
            context.window_functions().clone(),
            context.runtime_env(),
        );
        self.input.execute(partition, Arc::new(pinned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;
    use crate::reader::Shared;
    use crate::snapshot::{Source, Worker};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::logical_expr::LogicalPlanBuilder;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion_distributed::SessionStateBuilderExt;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    fn url(port: u16) -> Url {
        Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap()
    }

    fn snapshot(ports: &[u16]) -> WorkerSnapshot {
        let urls: Vec<Url> = ports.iter().map(|p| url(*p)).collect();
        let workers: Vec<Worker> = urls
            .iter()
            .map(|u| Worker {
                url: u.clone(),
                id: u.to_string(),
                node: "n".into(),
                tags: vec![],
                meta: Default::default(),
                status: "passing".into(),
            })
            .collect();
        WorkerSnapshot {
            version: 0,
            sidecar_index: 1,
            source: Source::Consul,
            stale: false,
            updated_at: None,
            workers: workers.into(),
            urls: urls.into(),
            received_at: Instant::now(),
        }
    }

    /// Records the task context it is executed with.
    #[derive(Debug)]
    struct RecordingExec {
        empty: Arc<dyn ExecutionPlan>,
        seen: Arc<Mutex<Option<Arc<TaskContext>>>>,
    }

    impl DisplayAs for RecordingExec {
        fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "RecordingExec")
        }
    }

    impl ExecutionPlan for RecordingExec {
        fn name(&self) -> &str {
            "RecordingExec"
        }
        fn properties(&self) -> &Arc<PlanProperties> {
            self.empty.properties()
        }
        fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
            vec![]
        }
        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
        ) -> Result<TreeNodeRecursion> {
            Ok(TreeNodeRecursion::Continue)
        }
        fn with_new_children(
            self: Arc<Self>,
            _: Vec<Arc<dyn ExecutionPlan>>,
        ) -> Result<Arc<dyn ExecutionPlan>> {
            Ok(self)
        }
        fn execute(
            &self,
            partition: usize,
            context: Arc<TaskContext>,
        ) -> Result<SendableRecordBatchStream> {
            *self.seen.lock().unwrap() = Some(Arc::clone(&context));
            self.empty.execute(partition, context)
        }
    }

    #[tokio::test]
    async fn one_call_installs_the_resolver_the_router_and_a_per_query_pin() {
        // Issue 20.2: no pin_session, no separate router: a query planned while the list was
        // [1, 2] is routed against [1, 2] even after worker 3 joined. (With the old manual
        // setup, forgetting pin_session routed against the live [1, 2, 3].)
        let cfg = ClientConfig::builder("http://127.0.0.1:1").build().unwrap();
        let (shared, tx) = Shared::new(cfg, Arc::new(WorkerSnapshot::empty()), false);
        let resolver = SidecarWorkerResolver::without_task(Arc::clone(&shared));
        shared.publish_if_changed(&tx, snapshot(&[9001, 9002]));
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_distributed_planner()
            .with_sidecar_worker_resolver(resolver.clone())
            .build();
        let installed = get_distributed_worker_resolver(state.config()).unwrap();
        let any: &dyn Any = installed.as_ref();
        assert!(
            any.is::<SidecarWorkerResolver>(),
            "the resolver is installed"
        );

        let logical = LogicalPlanBuilder::empty(true).build().unwrap();
        let plan = state.create_physical_plan(&logical).await.unwrap();
        let pinned = plan_snapshot(&plan).expect("the plan is pinned");
        assert_eq!(pinned.version, 1);

        shared.publish_if_changed(&tx, snapshot(&[9001, 9002, 9003]));
        assert_eq!(resolver.snapshot().version, 2);
        let seen = Arc::new(Mutex::new(None));
        let recorder: Arc<dyn ExecutionPlan> = Arc::new(RecordingExec {
            empty: Arc::new(EmptyExec::new(Arc::new(Schema::empty()))),
            seen: Arc::clone(&seen),
        });
        #[allow(deprecated)]
        let plan = Arc::clone(&plan)
            .with_new_children(vec![Arc::clone(&recorder)])
            .unwrap();
        drop(plan.execute(0, state.task_ctx()).unwrap());
        let task_ctx = seen.lock().unwrap().take().expect("executed");
        let router = SnapshotRouter::new(resolver.reader(), RoutingStrategy::Rendezvous);
        let routed = router
            .handle(RouteTasksEvent {
                task_ctx,
                plan: &recorder,
                task_count: 3,
            })
            .unwrap()
            .unwrap()
            .urls;
        assert_eq!(routed.len(), 3);
        assert!(
            routed.iter().all(|u| *u != url(9003)),
            "routed against the plan's snapshot, not the live one: {routed:?}"
        );
    }

    #[tokio::test]
    async fn get_urls_errors_are_external_and_carry_the_typed_error() {
        // Issue 20.4: a coordinator can match on the crate's error and its code.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let cfg = ClientConfig::builder(format!("http://{addr}"))
            .wait(Duration::from_secs(30))
            .build()
            .unwrap();
        let resolver = SidecarWorkerResolver::start(cfg).unwrap();
        let code = |r: Result<Vec<Url>>| match r {
            Err(DataFusionError::External(e)) => e
                .downcast_ref::<Error>()
                .map(Error::code)
                .expect("the crate's Error"),
            other => panic!("expected External, got {other:?}"),
        };
        assert_eq!(code(WorkerResolver::get_urls(&resolver)), "ERR_NOT_READY");
        assert_eq!(code(resolver.pin().get_urls()), "ERR_NOT_READY");
        resolver.close().await;
        assert_eq!(code(WorkerResolver::get_urls(&resolver)), "ERR_CLOSED");
        assert_eq!(
            code(WorkerResolver::get_urls(&resolver.reader())),
            "ERR_CLOSED"
        );
        let fixed = WorkerReader::fixed([url(9001)]);
        assert_eq!(WorkerResolver::get_urls(&fixed).unwrap(), [url(9001)]);
    }
}
