//! The generated dataset: `orders` (8 Parquet files × 20 000 rows: order_id, customer_id,
//! amount, region) and `customers` (2 files × 500 rows: customer_id, name, segment), the
//! distributed session's settings for it, and the shape of a distributed plan over it.
//!
//! A worker reads the files of its tasks at the path the plan names, so coordinator and
//! workers see the tables at the same path (a shared volume in docker-compose.yml, a temporary
//! directory in the tests).

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_distributed::{DistributedExt, NetworkBoundaryExt, SessionStateBuilderExt};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The tables, as directories under the data directory.
pub const TABLES: [&str; 2] = ["orders", "customers"];

/// Writes the tables under `dir`, unless a previous run (or another coordinator sharing the
/// directory) already did. They are written under a temporary name and renamed, so a
/// concurrent reader never sees half a table.
pub async fn ensure(dir: &Path) -> Result<()> {
    if dir.join("customers/part-1.parquet").exists() {
        return Ok(());
    }
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let ctx = SessionContext::new();
    for t in TABLES {
        std::fs::create_dir_all(tmp.join(t))?;
    }
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
    for t in TABLES {
        if !dir.join(t).exists() {
            std::fs::rename(tmp.join(t), dir.join(t))?;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Registers the tables of `dir` in `ctx`.
pub async fn register(ctx: &SessionContext, dir: &Path) -> Result<()> {
    for t in TABLES {
        let path = dir.join(t);
        ctx.register_parquet(t, &path.to_string_lossy(), ParquetReadOptions::default())
            .await?;
    }
    Ok(())
}

/// A distributed session builder with the settings these tables need; the caller adds its
/// worker resolver, then [`context`] finishes it.
pub fn builder() -> SessionStateBuilder {
    // target_partitions 12: datafusion-distributed 4.0.0's file-scan scale-up fails planning
    // ("Different partition count where provided in two different variants of
    // DistributedLeafExec") when the byte-range split of the 8 files does not give every
    // task the same number of groups (e.g. target_partitions 2 or 4 with 3 workers); 12
    // splits evenly for 2, 3 and 4 workers.
    SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(12))
        .with_default_features()
        .with_distributed_planner()
}

/// The session of `builder` (from [`builder`], plus a resolver) with `dir`'s tables
/// registered; files are split by bytes so that every worker gets tasks.
pub async fn context(builder: SessionStateBuilder, dir: &Path) -> Result<SessionContext> {
    let state = builder
        .with_distributed_file_scan_config_bytes_per_partition(1)?
        .build();
    let ctx = SessionContext::new_with_state(state);
    register(&ctx, dir).await?;
    Ok(ctx)
}

/// Single-node DataFusion's formatted answer to each query over `dir`'s tables: what a
/// distributed answer is checked against.
pub async fn reference_answers<'a>(
    dir: &Path,
    queries: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>> {
    let single = SessionContext::new();
    register(&single, dir).await?;
    let mut answers = Vec::new();
    for q in queries {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ensure_writes_the_tables_once_and_they_read_back() {
        let dir = std::env::temp_dir().join(format!("cluster-common-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ensure(&dir).await.unwrap();
        let written = std::fs::metadata(dir.join("orders/part-0.parquet"))
            .and_then(|m| m.modified())
            .unwrap();
        // A second call (another coordinator on the same volume) leaves the files alone.
        ensure(&dir).await.unwrap();
        let again = std::fs::metadata(dir.join("orders/part-0.parquet"))
            .and_then(|m| m.modified())
            .unwrap();
        assert_eq!(written, again);
        assert_eq!(std::fs::read_dir(dir.join("orders")).unwrap().count(), 8);
        assert_eq!(std::fs::read_dir(dir.join("customers")).unwrap().count(), 2);
        let answers = reference_answers(
            &dir,
            [
                "SELECT COUNT(*) AS n, COUNT(DISTINCT customer_id) AS c FROM orders",
                "SELECT COUNT(*) AS n FROM customers",
            ],
        )
        .await
        .unwrap();
        assert!(answers[0].contains("| 160000 | 1000 |"), "{}", answers[0]);
        assert!(answers[1].contains("| 1000 |"), "{}", answers[1]);
        // No temporary directory is left behind.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
