//! The query workload: the queries over the generated tables, their single-node reference
//! answers, and the distributed session (the tables and the plan shape are
//! `worker_resolver_cluster_common::dataset`'s, shared with the tests' kit).

use datafusion::common::Result;
use datafusion::prelude::SessionContext;
use std::path::Path;
use worker_resolver_client::datafusion::SidecarResolverExt;
use worker_resolver_client::{RoutingStrategy, SidecarWorkerResolver};
use worker_resolver_cluster_common::dataset;

/// The queries run in turn: (name, SQL).
pub const QUERIES: &[(&str, &str)] = &[
    (
        "revenue_by_region",
        "SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM orders GROUP BY region ORDER BY region",
    ),
    (
        "revenue_by_segment_join",
        "SELECT c.segment, COUNT(*) AS n, SUM(o.amount) AS total FROM orders o JOIN customers c \
         ON o.customer_id = c.customer_id GROUP BY c.segment ORDER BY c.segment",
    ),
];

/// The distributed session, set up in one call: `resolver` as the worker resolver, tasks
/// routed with `routing` against the snapshot each query was planned with.
pub async fn distributed_session(
    resolver: &SidecarWorkerResolver,
    routing: RoutingStrategy,
    dir: &Path,
) -> Result<SessionContext> {
    dataset::context(
        dataset::builder().with_sidecar_worker_resolver_routing(resolver.clone(), routing),
        dir,
    )
    .await
}

/// Single-node DataFusion's formatted answer to each of [`QUERIES`].
pub async fn reference_answers(dir: &Path) -> Result<Vec<String>> {
    dataset::reference_answers(dir, QUERIES.iter().map(|(_, q)| *q)).await
}
