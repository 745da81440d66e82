//! The DataFusion side of the loopback cluster, shared by `consul-worker`'s `tests/cluster.rs`
//! and its examples (`demo`, `crash_bench`): the coordinator session whose `WorkerResolver` is
//! this repository's client and the `consul-worker` processes; the tables, the session's
//! settings and the plan shape are `worker_resolver_cluster_common::dataset`'s, which the
//! coordinator binary uses too.

use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{DistributedExt, WorkerResolver};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use worker_resolver_client::datafusion::SidecarResolverExt;
use worker_resolver_client::{RoutingStrategy, SidecarWorkerResolver};
use worker_resolver_cluster_common::dataset;

/// The Consul service the workers register as.
pub const SERVICE: &str = "datafusion-worker";

/// Writes the dataset's tables (`orders`, `customers`) under `dir`
/// (`worker_resolver_cluster_common::dataset`, the tables the coordinator binary queries too).
pub async fn generate_data(dir: &Path) {
    dataset::ensure(dir).await.expect("generating the tables");
}

/// A distributed coordinator over `dir`'s tables set up in one call
/// (`with_sidecar_worker_resolver`: resolver, router with `routing`, per-query pin).
pub async fn coordinator(
    resolver: &SidecarWorkerResolver,
    routing: RoutingStrategy,
    dir: &Path,
) -> SessionContext {
    dataset::context(
        dataset::builder().with_sidecar_worker_resolver_routing(resolver.clone(), routing),
        dir,
    )
    .await
    .expect("the coordinator session")
}

/// A distributed coordinator over `dir`'s tables with any `resolver` and upstream's default
/// routing (the crash benchmark's polling resolvers).
pub async fn plain_coordinator(
    resolver: impl WorkerResolver + 'static,
    dir: &Path,
) -> SessionContext {
    dataset::context(
        dataset::builder().with_distributed_worker_resolver(resolver),
        dir,
    )
    .await
    .expect("the coordinator session")
}

/// Single-node DataFusion's formatted answer to each query over `dir`'s tables.
pub async fn reference_answers<'a>(
    dir: &Path,
    queries: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    dataset::reference_answers(dir, queries)
        .await
        .expect("the single-node answers")
}

/// The largest task count of any stage of a distributed plan.
pub fn max_tasks(plan: &Arc<dyn ExecutionPlan>) -> usize {
    dataset::tasks_per_stage(plan)
        .into_values()
        .max()
        .unwrap_or(0)
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
