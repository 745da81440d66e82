//! The query workload: generated Parquet tables, the queries, their single-node reference
//! answers, the distributed session, and what a distributed plan looks like (tasks per stage).

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_distributed::{DistributedExt, NetworkBoundaryExt, SessionStateBuilderExt};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use worker_resolver_client::datafusion::SidecarResolverExt;
use worker_resolver_client::{RoutingStrategy, SidecarWorkerResolver};

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

/// Writes `orders` (8 files × 20 000 rows) and `customers` (2 files × 500 rows) under `dir`,
/// unless a previous run (or another coordinator sharing the volume) already did.
pub async fn ensure_data(dir: &Path) -> Result<()> {
    if dir.join("customers/part-1.parquet").exists() {
        return Ok(());
    }
    // Written under a temporary name and renamed, so a concurrent reader never sees half a table.
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let ctx = SessionContext::new();
    std::fs::create_dir_all(tmp.join("orders"))?;
    std::fs::create_dir_all(tmp.join("customers"))?;
    for i in 0..8u64 {
        let (lo, hi) = (i * 20_000, (i + 1) * 20_000);
        let sql = format!(
            "COPY (SELECT value AS order_id, value % 1000 AS customer_id, \
               (value * 7919) % 10007 AS amount, \
               CASE value % 4 WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east' ELSE 'west' END AS region \
             FROM range({lo}, {hi})) TO '{}' STORED AS PARQUET",
            tmp.join(format!("orders/part-{i}.parquet")).display()
        );
        ctx.sql(&sql).await?.collect().await?;
    }
    for i in 0..2u64 {
        let (lo, hi) = (i * 500, (i + 1) * 500);
        let sql = format!(
            "COPY (SELECT value AS customer_id, concat('customer-', CAST(value AS VARCHAR)) AS name, \
               CASE value % 3 WHEN 0 THEN 'retail' WHEN 1 THEN 'wholesale' ELSE 'online' END AS segment \
             FROM range({lo}, {hi})) TO '{}' STORED AS PARQUET",
            tmp.join(format!("customers/part-{i}.parquet")).display()
        );
        ctx.sql(&sql).await?.collect().await?;
    }
    for t in ["orders", "customers"] {
        if !dir.join(t).exists() {
            std::fs::rename(tmp.join(t), dir.join(t))?;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Registers `orders` and `customers` from `dir`.
pub async fn register_tables(ctx: &SessionContext, dir: &Path) -> Result<()> {
    for t in ["orders", "customers"] {
        let path = dir.join(t);
        ctx.register_parquet(t, &path.to_string_lossy(), ParquetReadOptions::default())
            .await?;
    }
    Ok(())
}

/// The distributed session, set up in one call: `resolver` as the worker resolver, tasks
/// routed with `routing` against the snapshot each query was planned with.
pub async fn distributed_session(
    resolver: &SidecarWorkerResolver,
    routing: RoutingStrategy,
    dir: &Path,
) -> Result<SessionContext> {
    // target_partitions 12: datafusion-distributed 4.0.0's file-scan scale-up fails planning
    // when the byte-range split of the 8 files does not give every task the same number of
    // groups; 12 splits evenly for 2, 3 and 4 workers.
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(12))
        .with_default_features()
        .with_distributed_planner()
        .with_sidecar_worker_resolver_routing(resolver.clone(), routing)
        .with_distributed_file_scan_config_bytes_per_partition(1)?
        .build();
    let ctx = SessionContext::new_with_state(state);
    register_tables(&ctx, dir).await?;
    Ok(ctx)
}

/// Single-node DataFusion's formatted answer to each of [`QUERIES`].
pub async fn reference_answers(dir: &Path) -> Result<Vec<String>> {
    let single = SessionContext::new();
    register_tables(&single, dir).await?;
    let mut answers = Vec::new();
    for (_, q) in QUERIES {
        let batches = single.sql(q).await?.collect().await?;
        answers.push(pretty_format_batches(&batches)?.to_string());
    }
    Ok(answers)
}

/// The task count of each stage of a distributed plan, by stage number.
pub fn tasks_per_stage(plan: &Arc<dyn ExecutionPlan>) -> BTreeMap<usize, usize> {
    let mut stages = BTreeMap::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(p) = stack.pop() {
        if let Some(nb) = p.as_ref().as_network_boundary() {
            let stage = nb.input_stage();
            stages.insert(stage.num(), stage.task_count());
        }
        for c in p.children() {
            stack.push(Arc::clone(c));
        }
    }
    stages
}
