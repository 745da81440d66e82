//! Crash benchmark: `cargo run -p consul-worker --example crash_bench [-- RUNS]`.
//!
//! For three resolvers — this crate's long-poll client, and a resolver that polls the sidecar's
//! plain `GET /v1/workers` every 1 s or every 5 s (what a coordinator without a blocking query
//! would do) — it starts a fresh cluster (dev server, `worker-resolver serve`, 3 real workers
//! with a 500 ms HTTP check), starts one query every 100 ms, `kill -9`s a worker and measures
//! "crash → first query planned without it" and the failed queries per crash. Each query is
//! planned and routed against the list the resolver gave at its start (pinned), so the only
//! difference between the rows is how fresh that list is. Prints a Markdown table.

use worker_resolver_test_support as support;
use worker_resolver_test_support::cluster as kit;

use datafusion::prelude::SessionContext;
use datafusion_distributed::DistributedExt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use support::{DevConsul, SidecarProcess};
use tokio::process::Child;
use url::Url;
use worker_resolver_client::{ClientConfig, SidecarWorkerResolver, WorkerReader};

use kit::SERVICE;
const SQL: &str = "SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM orders GROUP BY region ORDER BY region";

async fn start_worker(bin: &Path, consul: &str) -> (Child, Url) {
    let mut command = kit::worker_command(bin, consul, Duration::from_millis(500));
    command.env("RUST_LOG", "error");
    let (child, registered) = kit::spawn_worker(command).await;
    (
        child,
        Url::parse(registered["url"].as_str().unwrap()).unwrap(),
    )
}

/// Where a query's worker list comes from.
enum Lists {
    LongPoll(SidecarWorkerResolver),
    Polling(Arc<RwLock<Vec<Url>>>, tokio::task::JoinHandle<()>),
}

impl Lists {
    fn current(&self) -> Vec<Url> {
        match self {
            Lists::LongPoll(c) => c.reader().urls_vec(),
            Lists::Polling(l, _) => l.read().unwrap().clone(),
        }
    }
}

/// The resolver a coordinator without a blocking query writes: a plain GET every `period`.
fn polling(sidecar: String, period: Duration) -> Lists {
    let list = Arc::new(RwLock::new(Vec::new()));
    let l = Arc::clone(&list);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if let Ok((200, body)) =
                support::http("GET", &format!("{sidecar}/v1/workers"), None).await
            {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let urls = v["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| Url::parse(w["url"].as_str().unwrap()).unwrap())
                    .collect();
                *l.write().unwrap() = urls;
            }
        }
    });
    Lists::Polling(list, task)
}

struct Outcome {
    window: Duration,
    failed: usize,
    queries: usize,
}

async fn run_once(bin: &Path, dir: &Path, kind: &str) -> Outcome {
    let consul = DevConsul::start().await;
    let sidecar = SidecarProcess::start(&consul.http_addr, SERVICE, 0, &["--wait", "30s"]).await;
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(start_worker(bin, &consul.http_addr).await);
    }
    let lists = match kind {
        "long poll (this crate)" => {
            let c = SidecarWorkerResolver::start(
                ClientConfig::builder(sidecar.url.clone())
                    .wait(Duration::from_secs(30))
                    .build()
                    .unwrap(),
            )
            .unwrap();
            Lists::LongPoll(c)
        }
        "poll every 1 s" => polling(sidecar.url.clone(), Duration::from_secs(1)),
        _ => polling(sidecar.url.clone(), Duration::from_secs(5)),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while lists.current().len() < 3 {
        assert!(Instant::now() < deadline, "workers never listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let coordinator = kit::plain_coordinator(WorkerReader::fixed(lists.current()), dir).await;

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut failed, mut queries) = (0, 0);
    let mut killed_at: Option<Instant> = None;
    let victim = workers[0].1.clone();
    let mut window = None;
    let start = Instant::now();
    loop {
        tick.tick().await;
        if killed_at.is_none() && start.elapsed() > Duration::from_millis(1500) {
            let _ = workers[0].0.start_kill();
            killed_at = Some(Instant::now());
        }
        let urls = lists.current();
        if let Some(k) = killed_at
            && window.is_none()
            && !urls.contains(&victim)
        {
            window = Some(k.elapsed());
        }
        let mut st = coordinator.state();
        st.set_distributed_worker_resolver(WorkerReader::fixed(urls));
        let ctx = SessionContext::new_with_state(st);
        let r = async { ctx.sql(SQL).await?.collect().await }.await;
        if killed_at.is_some() {
            queries += 1;
            if r.is_err() {
                failed += 1;
            }
        }
        if let Some(w) = window
            && killed_at.unwrap().elapsed() > w + Duration::from_secs(1)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the crash was never noticed"
        );
    }
    if let Lists::Polling(_, t) = &lists {
        t.abort();
    }
    if let Lists::LongPoll(c) = lists {
        c.close().await;
    }
    drop(workers);
    drop(sidecar);
    consul.stop().await;
    Outcome {
        window: window.unwrap(),
        failed,
        queries,
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let bin = kit::worker_binary();
    let dir = std::env::temp_dir().join(format!(
        "worker-resolver-crash-bench-{}",
        std::process::id()
    ));
    kit::generate_data(&dir).await;
    println!(
        "| resolver | crash → first query planned without it (per run) | failed queries per crash (per run, 1 query / 100 ms) |"
    );
    println!("|---|---|---|");
    for kind in ["long poll (this crate)", "poll every 1 s", "poll every 5 s"] {
        let mut windows = Vec::new();
        let mut fails = Vec::new();
        for _ in 0..runs {
            let o = run_once(&bin, &dir, kind).await;
            windows.push(format!("{} ms", o.window.as_millis()));
            fails.push(format!("{}/{}", o.failed, o.queries));
        }
        println!("| {kind} | {} | {} |", windows.join(", "), fails.join(", "));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
