//! The real thing, live: `cargo run -p consul-worker --example demo [-- SECONDS]`.
//!
//! Starts the project's Consul dev server, `worker-resolver serve`, three `consul-worker`
//! processes (real `datafusion_distributed::Worker`s with HTTP checks) and a coordinator whose
//! `WorkerResolver` is `worker-resolver-client`; then runs SQL over generated Parquet once a
//! second, checks each answer against single-node DataFusion, prints the worker set, the tasks
//! per stage and the outcome, and churns the cluster every 8 s: a worker joins, one drains on
//! SIGTERM, one is `kill -9`ed, another joins. Runs 60 s by default; Ctrl-C stops it.
//! Needs the TypeScript build (`npm ci && npm run build` at the repository root).

use worker_resolver_test_support as support;
use worker_resolver_test_support::cluster as kit;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion_distributed::display_plan_ascii;
use kit::{SERVICE, max_tasks};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{DevConsul, SidecarProcess};
use tokio::process::{Child, Command};
use worker_resolver_client::datafusion::plan_snapshot;
use worker_resolver_client::{ClientConfig, RoutingStrategy, SidecarWorkerResolver};

const QUERIES: &[(&str, &str)] = &[
    (
        "revenue by region",
        "SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM orders GROUP BY region ORDER BY region",
    ),
    (
        "revenue by segment (join)",
        "SELECT c.segment, COUNT(*) AS n, SUM(o.amount) AS total FROM orders o JOIN customers c \
         ON o.customer_id = c.customer_id GROUP BY c.segment ORDER BY c.segment",
    ),
];

struct WorkerProc {
    child: Child,
    id: String,
}

async fn start_worker(bin: &Path, consul: &str) -> WorkerProc {
    let mut command = kit::worker_command(bin, consul, Duration::from_millis(500));
    command
        .args(["--drain-grace", "1s"])
        .env("RUST_LOG", "warn");
    let (child, registered) = kit::spawn_worker(command).await;
    WorkerProc {
        child,
        id: registered["id"].as_str().unwrap().to_owned(),
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let bin = kit::worker_binary();
    let dir = std::env::temp_dir().join(format!("worker-resolver-demo-{}", std::process::id()));
    kit::generate_data(&dir).await;
    let consul = DevConsul::start().await;
    let sidecar = SidecarProcess::start(&consul.http_addr, SERVICE, 0, &["--wait", "30s"]).await;
    println!(
        "consul dev server {}  ·  sidecar {}",
        consul.http_addr, sidecar.url
    );
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(start_worker(&bin, &consul.http_addr).await);
    }
    let client = SidecarWorkerResolver::start(
        ClientConfig::builder(sidecar.url.clone())
            .wait(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
    .unwrap();
    client.ready(Duration::from_secs(30)).await.expect("ready");
    let coordinator = kit::coordinator(&client, RoutingStrategy::Rendezvous, &dir).await;
    let expected = kit::reference_answers(&dir, QUERIES.iter().map(|(_, q)| *q)).await;

    let start = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut step = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while start.elapsed() < Duration::from_secs(seconds) {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tick.tick() => {}
        }
        step += 1;
        if step.is_multiple_of(8) {
            match (step / 8) % 4 {
                1 => {
                    let w = start_worker(&bin, &consul.http_addr).await;
                    println!("── churn: {} joins", w.id);
                    workers.push(w);
                }
                2 if workers.len() > 1 => {
                    let w = workers.remove(0);
                    println!(
                        "── churn: SIGTERM {} (drain: maintenance → tasks done → deregister)",
                        w.id
                    );
                    let pid = w.child.id().unwrap().to_string();
                    let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
                    tokio::spawn(async move {
                        let mut c = w.child;
                        let _ = c.wait().await;
                    });
                }
                3 if workers.len() > 1 => {
                    let mut w = workers.remove(0);
                    println!("── churn: kill -9 {}", w.id);
                    let _ = w.child.start_kill();
                }
                _ => {
                    let w = start_worker(&bin, &consul.http_addr).await;
                    println!("── churn: {} joins", w.id);
                    workers.push(w);
                }
            }
        }
        let qi = (step as usize) % QUERIES.len();
        let (name, sql) = QUERIES[qi];
        let ctx = &coordinator;
        let mut snapshot = client.snapshot();
        let t = Instant::now();
        let result = async {
            let plan = ctx.sql(sql).await?.create_physical_plan().await?;
            let batches =
                datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx()).await?;
            Ok::<_, datafusion::error::DataFusionError>((
                plan,
                pretty_format_batches(&batches)?.to_string(),
            ))
        }
        .await;
        if let Some(pinned) = result
            .as_ref()
            .ok()
            .and_then(|(plan, _)| plan_snapshot(plan))
        {
            snapshot = pinned; // the snapshot the query was planned and routed with
        }
        let status = client.status();
        let view = format!(
            "v{} {} workers from {}{}",
            snapshot.version,
            snapshot.urls.len(),
            snapshot.source.as_str(),
            if status.is_stale() { " (stale)" } else { "" }
        );
        match result {
            Ok((plan, got)) => {
                if step == 1 {
                    println!("{}", display_plan_ascii(plan.as_ref(), false));
                }
                let verdict = if got == expected[qi] {
                    ok += 1;
                    "ok, = single-node"
                } else {
                    failed += 1;
                    "WRONG ANSWER"
                };
                println!(
                    "{:>4}s  {view:<28}  {name:<26} {} tasks/stage  {:>4} ms  {verdict}",
                    start.elapsed().as_secs(),
                    max_tasks(&plan),
                    t.elapsed().as_millis()
                );
            }
            Err(e) => {
                failed += 1;
                println!(
                    "{:>4}s  {view:<28}  {name:<26} FAILED: {e}",
                    start.elapsed().as_secs()
                );
            }
        }
    }
    println!("{ok} queries ok, {failed} failed");
    client.close().await;
    drop(workers);
    drop(sidecar);
    consul.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
