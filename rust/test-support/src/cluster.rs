//! The DataFusion side of the loopback cluster, shared by `consul-worker`'s `tests/cluster.rs`
//! and its examples (`demo`, `crash_bench`): the generated Parquet tables, the coordinator
//! session whose `WorkerResolver` is this repository's client, the single-node reference
//! answers, the `consul-worker` processes, and the task count of a distributed plan.

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_distributed::{
    DistributedExt, NetworkBoundaryExt, SessionStateBuilderExt, WorkerResolver,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use worker_resolver_client::datafusion::SidecarResolverExt;
use worker_resolver_client::{RoutingStrategy, SidecarWorkerResolver};

/// The Consul service the workers register as.
pub const SERVICE: &str = "datafusion-worker";

/// Generated Parquet: `orders` (8 files × 20 000 rows: order_id, customer_id, amount, region)
/// and `customers` (2 files × 500 rows: customer_id, name, segment).
pub async fn generate_data(dir: &Path) {
    let ctx = SessionContext::new();
    std::fs::create_dir_all(dir.join("orders")).unwrap();
    std::fs::create_dir_all(dir.join("customers")).unwrap();
    for i in 0..8u64 {
        let (lo, hi) = (i * 20_000, (i + 1) * 20_000);
        let sql = format!(
            "COPY (SELECT value AS order_id, value % 1000 AS customer_id, \
               (value * 7919) % 10007 AS amount, \
               CASE value % 4 WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east' ELSE 'west' END AS region \
             FROM range({lo}, {hi})) TO '{}' STORED AS PARQUET",
            dir.join(format!("orders/part-{i}.parquet")).display()
        );
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    }
    for i in 0..2u64 {
        let (lo, hi) = (i * 500, (i + 1) * 500);
        let sql = format!(
            "COPY (SELECT value AS customer_id, concat('customer-', CAST(value AS VARCHAR)) AS name, \
               CASE value % 3 WHEN 0 THEN 'retail' WHEN 1 THEN 'wholesale' ELSE 'online' END AS segment \
             FROM range({lo}, {hi})) TO '{}' STORED AS PARQUET",
            dir.join(format!("customers/part-{i}.parquet")).display()
        );
        ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    }
}

/// Registers `orders` and `customers` from `dir`.
pub async fn register_tables(ctx: &SessionContext, dir: &Path) {
    for t in ["orders", "customers"] {
        ctx.register_parquet(
            t,
            dir.join(t).to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
}

/// The session builder both coordinators share.
fn builder() -> SessionStateBuilder {
    // target_partitions 12: datafusion-distributed 4.0.0's file-scan scale-up fails planning
    // ("Different partition count where provided in two different variants of
    // DistributedLeafExec") when the byte-range split of these 8 files does not give every
    // task the same number of groups (e.g. target_partitions 2 or 4 with 3 workers); 12
    // splits evenly for 2, 3 and 4 workers.
    SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(12))
        .with_default_features()
        .with_distributed_planner()
}

async fn finish(builder: SessionStateBuilder, dir: &Path) -> SessionContext {
    let state = builder
        .with_distributed_file_scan_config_bytes_per_partition(1)
        .unwrap()
        .build();
    let ctx = SessionContext::new_with_state(state);
    register_tables(&ctx, dir).await;
    ctx
}

/// A distributed coordinator over `dir`'s tables set up in one call
/// (`with_sidecar_worker_resolver`: resolver, router with `routing`, per-query pin).
pub async fn coordinator(
    resolver: &SidecarWorkerResolver,
    routing: RoutingStrategy,
    dir: &Path,
) -> SessionContext {
    finish(
        builder().with_sidecar_worker_resolver_routing(resolver.clone(), routing),
        dir,
    )
    .await
}

/// A distributed coordinator over `dir`'s tables with any `resolver` and upstream's default
/// routing (the crash benchmark's polling resolvers).
pub async fn plain_coordinator(
    resolver: impl WorkerResolver + 'static,
    dir: &Path,
) -> SessionContext {
    finish(builder().with_distributed_worker_resolver(resolver), dir).await
}

/// Single-node DataFusion's formatted answer to each query over `dir`'s tables.
pub async fn reference_answers<'a>(
    dir: &Path,
    queries: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let single = SessionContext::new();
    register_tables(&single, dir).await;
    let mut answers = Vec::new();
    for q in queries {
        let batches = single.sql(q).await.unwrap().collect().await.unwrap();
        answers.push(pretty_format_batches(&batches).unwrap().to_string());
    }
    answers
}

/// The largest task count of any stage of a distributed plan.
pub fn max_tasks(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let mut max = 0;
    let mut stack = vec![Arc::clone(plan)];
    while let Some(p) = stack.pop() {
        if let Some(nb) = p.as_ref().as_network_boundary() {
            max = max.max(nb.input_stage().task_count());
        }
        for c in p.children() {
            stack.push(Arc::clone(c));
        }
    }
    max
}

/// The `consul-worker` binary next to an example's executable, built first if missing
/// (integration tests use `env!("CARGO_BIN_EXE_consul-worker")` instead).
pub fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("consul-worker");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "consul-worker", "--bin", "consul-worker"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building consul-worker failed");
    }
    bin
}

/// A `consul-worker` registering in `consul` as [`SERVICE`] with an HTTP check every
/// `check_interval`; stdout piped (its first line is the `registered` event), killed on drop.
pub fn worker_command(bin: &Path, consul: &str, check_interval: Duration) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["--consul", consul, "--service", SERVICE])
        .args([
            "--check-interval",
            &format!("{}ms", check_interval.as_millis()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Spawns `command` (a [`worker_command`]) and reads its `registered` event; the rest of its
/// stdout is drained in the background.
pub async fn spawn_worker(mut command: Command) -> (Child, serde_json::Value) {
    let mut child = command.spawn().expect("spawn consul-worker");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = out.next_line().await.unwrap().expect("registered line");
    let registered: serde_json::Value = serde_json::from_str(&line).unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    (child, registered)
}
