//! End to end on a real cluster on loopback: the project's Consul dev server, the real
//! `worker-resolver serve` sidecar, three or more real `consul-worker` processes (each a
//! `datafusion_distributed::Worker` registered with an HTTP health check), and a coordinator
//! `SessionContext` whose `WorkerResolver` is this repository's client. Every answer is compared
//! with single-node DataFusion over the same generated Parquet files.
//!
//! Scenarios (run one at a time; each starts its own cluster):
//! - scale out: a worker joins → the next query's stages plan more tasks;
//! - drain (SIGTERM) during a stream of queries → zero failed queries;
//! - crash (`kill -9`) → only queries in flight before the removal is published may fail;
//! - sidecar restart → queries keep running on the last good list; the client resyncs.

use worker_resolver_test_support as support;
use worker_resolver_test_support::cluster as kit;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_distributed::display_plan_ascii;
use kit::{SERVICE, max_tasks};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{DevConsul, Lines, RealConsul, SidecarProcess, wait_until};
use tokio::process::{Child, Command};
use worker_resolver_client::{
    ClientConfig, RoutingStrategy, SidecarWorkerResolver, Source, WorkerReader,
};

const GUARD: Duration = Duration::from_secs(120);
/// The workers' HTTP check interval.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

const QUERIES: &[&str] = &[
    "SELECT region, COUNT(*) AS n, SUM(amount) AS total, MIN(amount) AS lo, MAX(amount) AS hi, \
     ROUND(AVG(amount), 6) AS mean FROM orders GROUP BY region ORDER BY region",
    "SELECT c.segment, COUNT(*) AS n, SUM(o.amount) AS total, COUNT(DISTINCT o.customer_id) AS buyers \
     FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.segment ORDER BY c.segment",
    "SELECT o.customer_id, c.name, SUM(o.amount) AS spent FROM orders o JOIN customers c \
     ON o.customer_id = c.customer_id WHERE o.region <> 'north' GROUP BY o.customer_id, c.name \
     ORDER BY spent DESC, o.customer_id LIMIT 20",
];

/// One serial lane: the scenarios measure failure windows, so they do not share the 2 cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// (start, end, outcome) of each query of a [`QueryStream`].
type QueryLog = Vec<(Instant, Instant, Result<(), String>)>;

/// A `consul-worker` process.
struct WorkerProcess {
    child: Child,
    id: String,
    url: String,
    stdout: Lines,
    stderr: Lines,
}

impl WorkerProcess {
    async fn start(consul: &str) -> WorkerProcess {
        let bin = Path::new(env!("CARGO_BIN_EXE_consul-worker"));
        let mut child = kit::worker_command(bin, consul, CHECK_INTERVAL)
            .args(["--drain-grace", "1s", "--drain-timeout", "20s"])
            .env("RUST_LOG", "info,h2=warn,tonic=warn")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn consul-worker");
        let stdout = Lines::default();
        let stderr = Lines::default();
        stdout.follow(child.stdout.take().unwrap());
        stderr.follow(child.stderr.take().unwrap());
        let o = stdout.clone();
        let e = stderr.clone();
        wait_until("a worker to register", GUARD, || {
            let done = o.find("\"event\":\"registered\"").is_some();
            async move { done }
        })
        .await;
        let line = stdout
            .find("\"event\":\"registered\"")
            .unwrap_or_else(|| panic!("{}", e.text()));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        WorkerProcess {
            child,
            id: v["id"].as_str().unwrap().to_owned(),
            url: v["url"].as_str().unwrap().to_owned(),
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    async fn sigterm(&self) {
        let s = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .await
            .unwrap();
        assert!(s.success());
    }

    async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }
}

/// Consul: the project's dev server, or a real agent.
enum ConsulKind {
    Dev(DevConsul),
    Real(RealConsul),
}

impl ConsulKind {
    fn http_addr(&self) -> &str {
        match self {
            ConsulKind::Dev(c) => &c.http_addr,
            ConsulKind::Real(c) => &c.http_addr,
        }
    }

    async fn stop(self) {
        match self {
            ConsulKind::Dev(c) => c.stop().await,
            ConsulKind::Real(c) => c.stop().await,
        }
    }
}

/// Which Consul a cluster runs against.
#[derive(Clone, Copy)]
enum Backend {
    /// `worker-resolver dev-server`.
    Dev,
    /// The dev server fixture with DNS and an outage switch; the sidecar has the DNS fallback.
    DevWithDns,
    /// A real `consul agent -dev`.
    Real,
}

/// The whole cluster plus the coordinator.
struct Cluster {
    consul: ConsulKind,
    sidecar: SidecarProcess,
    workers: Vec<WorkerProcess>,
    client: SidecarWorkerResolver,
    coordinator: SessionContext,
    expected: Vec<String>,
    dir: PathBuf,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, Backend::Dev).await
    }

    async fn start_with(n: usize, backend: Backend) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "worker-resolver-e2e-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        kit::generate_data(&dir).await;
        let consul = match backend {
            Backend::Dev => ConsulKind::Dev(DevConsul::start().await),
            Backend::DevWithDns => ConsulKind::Dev(DevConsul::start_controllable().await),
            Backend::Real => ConsulKind::Real(RealConsul::start().await),
        };
        let mut sidecar_args = vec!["--wait".to_owned(), "30s".to_owned()];
        if let (Backend::DevWithDns, ConsulKind::Dev(dev)) = (backend, &consul) {
            let dns = dev.dns_addr.clone().expect("the fixture has DNS");
            sidecar_args.extend([
                "--dns-srv".to_owned(),
                format!("{SERVICE}.service.consul"),
                "--dns-server".to_owned(),
                dns,
                "--failover-after".to_owned(),
                "2".to_owned(),
            ]);
        }
        let sidecar_args: Vec<&str> = sidecar_args.iter().map(String::as_str).collect();
        let sidecar = SidecarProcess::start(consul.http_addr(), SERVICE, 0, &sidecar_args).await;
        let mut workers = Vec::new();
        for _ in 0..n {
            workers.push(WorkerProcess::start(consul.http_addr()).await);
        }
        let client = SidecarWorkerResolver::start(
            ClientConfig::builder(sidecar.url.clone())
                .wait(Duration::from_secs(30))
                .backoff(Duration::from_millis(20), Duration::from_millis(500))
                // 2 s against a 30 s wait is meaningful: a poll the sidecar holds is contact,
                // so the client is stale only 2 s after it lost its connection.
                .stale_after(Duration::from_secs(2))
                .build()
                .unwrap(),
        )
        .unwrap();
        client.ready(GUARD).await.expect("client ready");
        let coordinator = kit::coordinator(&client, RoutingStrategy::Rendezvous, &dir).await;
        let expected = kit::reference_answers(&dir, QUERIES.iter().copied()).await;
        let mut c = Cluster {
            consul,
            sidecar,
            workers,
            client,
            coordinator,
            expected,
            dir,
        };
        c.wait_for_workers(n).await;
        c
    }

    fn reader(&self) -> WorkerReader {
        self.client.reader()
    }

    /// Waits until the client's list has exactly the running workers' URLs.
    async fn wait_for_workers(&mut self, n: usize) {
        let mut want: Vec<String> = self.workers.iter().map(|w| w.url.clone()).collect();
        want.sort();
        assert_eq!(want.len(), n);
        let mut rx = self.client.subscribe();
        let res = tokio::time::timeout(
            GUARD,
            rx.wait_for(|s| {
                let mut got: Vec<String> = s.urls.iter().map(|u| u.to_string()).collect();
                got.sort();
                got == want
            }),
        )
        .await;
        assert!(
            res.is_ok(),
            "client never saw {want:?}; has {:?}",
            self.client.urls()
        );
    }

    async fn stop(self) {
        self.client.close().await;
        drop(self.workers);
        drop(self.sidecar);
        self.consul.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Starts one more worker and waits until the client lists it.
    async fn add_worker(&mut self) {
        let w = WorkerProcess::start(self.consul.http_addr()).await;
        self.workers.push(w);
        let n = self.workers.len();
        self.wait_for_workers(n).await;
    }
}

/// One query, planned and routed against one snapshot (the coordinator's one-call setup pins
/// each query); its formatted answer and plan.
async fn run_query(
    coordinator: &SessionContext,
    sql: &str,
) -> Result<(String, Arc<dyn ExecutionPlan>), String> {
    let df = coordinator.sql(sql).await.map_err(|e| e.to_string())?;
    let plan = df.create_physical_plan().await.map_err(|e| e.to_string())?;
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), coordinator.task_ctx())
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        pretty_format_batches(&batches)
            .map_err(|e| e.to_string())?
            .to_string(),
        plan,
    ))
}

/// Runs every query once, asserting each answer equals single-node DataFusion's.
async fn check_all(c: &Cluster) -> usize {
    let mut tasks = 0;
    for (q, want) in QUERIES.iter().zip(&c.expected) {
        let (got, plan) = run_query(&c.coordinator, q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(
            &got, want,
            "distributed answer differs from single-node for {q}"
        );
        tasks = tasks.max(max_tasks(&plan));
    }
    tasks
}

/// A stream of queries in the background, counting successes and failures (a wrong answer
/// counts as a failure too).
struct QueryStream {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    /// (start, end, outcome) of each query.
    log: Arc<std::sync::Mutex<QueryLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl QueryStream {
    fn start(c: &Cluster) -> QueryStream {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, o, l) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&log));
        let coordinator = c.coordinator.clone();
        let expected = c.expected.clone();
        let task = tokio::spawn(async move {
            let mut i = 0;
            while !s.load(Ordering::Acquire) {
                let q = i % QUERIES.len();
                i += 1;
                let started = Instant::now();
                let outcome = match run_query(&coordinator, QUERIES[q]).await {
                    Ok((got, _)) if got == expected[q] => Ok(()),
                    Ok((got, _)) => Err(format!("wrong answer for query {q}:\n{got}")),
                    Err(e) => Err(e),
                };
                if outcome.is_ok() {
                    o.fetch_add(1, Ordering::AcqRel);
                }
                l.lock().unwrap().push((started, Instant::now(), outcome));
            }
        });
        QueryStream {
            stop,
            ok,
            log,
            task,
        }
    }

    async fn wait_ok(&self, more: usize) {
        let target = self.ok.load(Ordering::Acquire) + more;
        let ok = Arc::clone(&self.ok);
        wait_until("more successful queries", GUARD, || {
            let n = ok.load(Ordering::Acquire);
            async move { n >= target }
        })
        .await;
    }

    async fn finish(self) -> QueryLog {
        self.stop.store(true, Ordering::Release);
        self.task.await.unwrap();
        Arc::try_unwrap(self.log).unwrap().into_inner().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_plans_more_tasks_and_answers_stay_correct() {
    let _lane = SERIAL.lock().await;
    let mut c = Cluster::start(3).await;
    let tasks3 = check_all(&c).await;
    assert!(
        (2..=3).contains(&tasks3),
        "3 workers cap a stage at 3 tasks, got {tasks3}"
    );

    let (_, plan) = run_query(&c.coordinator, QUERIES[0]).await.unwrap();
    println!(
        "plan with 3 workers:\n{}",
        display_plan_ascii(plan.as_ref(), false)
    );

    c.workers
        .push(WorkerProcess::start(c.consul.http_addr()).await);
    c.wait_for_workers(4).await;
    let tasks4 = check_all(&c).await;
    let (_, plan) = run_query(&c.coordinator, QUERIES[0]).await.unwrap();
    println!(
        "plan with 4 workers:\n{}",
        display_plan_ascii(plan.as_ref(), false)
    );
    assert_eq!(
        tasks4, 4,
        "a fourth worker lets the widest stage plan 4 tasks"
    );
    assert!(tasks4 > tasks3);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_on_sigterm_during_a_query_stream_fails_no_query() {
    let _lane = SERIAL.lock().await;
    let mut c = Cluster::start(3).await;
    drain_scenario(&mut c).await;
    c.stop().await;
}

/// SIGTERM one worker while queries run: it leaves rotation, finishes its tasks, deregisters
/// and exits 0; not one query fails.
async fn drain_scenario(c: &mut Cluster) {
    check_all(c).await;
    let n = c.workers.len();
    let stream = QueryStream::start(c);
    stream.wait_ok(3).await;

    let mut leaving = c.workers.remove(0);
    leaving.sigterm().await;
    let status = tokio::time::timeout(GUARD, leaving.child.wait())
        .await
        .expect("worker exits")
        .unwrap();
    assert!(
        status.success(),
        "drained worker exit: {status:?}\n{}",
        leaving.stderr.text()
    );
    let drained = leaving
        .stdout
        .find("\"event\":\"drained\"")
        .expect("drained line");
    let v: serde_json::Value = serde_json::from_str(&drained).unwrap();
    assert_eq!(v["clean"], true, "no task left in flight: {drained}");
    assert!(
        v["tasks_served"].as_u64().unwrap() > 0,
        "the drained worker did serve tasks: {drained}"
    );
    c.wait_for_workers(n - 1).await;
    assert!(!c.client.urls().iter().any(|u| u.as_str() == leaving.url));
    stream.wait_ok(6).await;
    let log = stream.finish().await;
    let failures: Vec<_> = log
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().err())
        .collect();
    println!(
        "drain of {}: {} queries, {} failed",
        leaving.id,
        log.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "a drain must fail no query: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_fails_only_queries_started_before_the_removal_is_published() {
    let _lane = SERIAL.lock().await;
    let mut c = Cluster::start(3).await;
    kill9_scenario(&mut c).await;
    c.stop().await;
}

/// `kill -9` one worker while queries run: only queries started before its removal was
/// published may fail; the window (check interval + propagation) is measured and printed.
async fn kill9_scenario(c: &mut Cluster) {
    check_all(c).await;
    let n = c.workers.len();
    let stream = QueryStream::start(c);
    stream.wait_ok(3).await;

    let mut victim = c.workers.remove(0);
    let victim_url = victim.url.clone();
    let killed_at = Instant::now();
    victim.kill9().await;
    c.wait_for_workers(n - 1).await;
    let removed_at = Instant::now();
    stream.wait_ok(6).await;
    let log = stream.finish().await;

    let window = removed_at - killed_at;
    let failed: Vec<_> = log.iter().filter(|(_, _, r)| r.is_err()).collect();
    let in_window = log
        .iter()
        .filter(|(t, end, _)| *t < removed_at && *end >= killed_at)
        .count();
    println!(
        "kill -9: removal published {window:?} after the kill (check interval {CHECK_INTERVAL:?}); \
         {} queries, {} failed, {in_window} started while the dead worker was still listed",
        log.len(),
        failed.len()
    );
    // Only a query that started before the removal was published (and so could plan or route
    // to the dead worker) may fail; every query started after it succeeded.
    for (t, _, r) in &log {
        if *t >= removed_at {
            assert!(r.is_ok(), "a query started after the removal failed: {r:?}");
        }
    }
    assert!(failed.iter().all(|(t, _, _)| *t < removed_at));
    assert!(
        failed.len() <= in_window,
        "{} failures > {in_window} queries in the window",
        failed.len()
    );
    assert!(!c.client.urls().iter().any(|u| u.as_str() == victim_url));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_restart_keeps_the_last_good_list_and_resyncs() {
    let _lane = SERIAL.lock().await;
    let mut c = Cluster::start(3).await;
    check_all(&c).await;
    let before = c.client.snapshot();
    let port = c.sidecar.port;
    c.sidecar.kill().await;
    let reader = c.reader();
    wait_until("the client to notice the sidecar is gone", GUARD, || {
        let s = reader.status();
        async move { s.consecutive_failures >= 1 && !s.connected && s.client_stale }
    })
    .await;
    // Queries keep running on the last good list while the sidecar is down.
    assert_eq!(check_all(&c).await, 3);
    assert_eq!(
        c.client.snapshot().version,
        before.version,
        "the list was kept as it was"
    );

    c.sidecar =
        SidecarProcess::start(c.consul.http_addr(), SERVICE, port, &["--wait", "30s"]).await;
    c.workers
        .push(WorkerProcess::start(c.consul.http_addr()).await);
    c.wait_for_workers(4).await;
    let after = c.client.snapshot();
    assert!(after.version > before.version);
    // The client follows the new process: its snapshot carries the new sidecar's index.
    let (status, body) = support::http("GET", &format!("{}/v1/workers", c.sidecar.url), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["index"].as_u64(), Some(after.sidecar_index), "{body}");
    let status = c.client.status();
    assert!(!status.is_stale() && status.connected, "{status:?}");
    assert_eq!(check_all(&c).await, 4);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_real_consul_scale_out_drain_and_crash() {
    let _lane = SERIAL.lock().await;
    let mut c = Cluster::start_with(3, Backend::Real).await;
    let tasks3 = check_all(&c).await;
    c.add_worker().await;
    let tasks4 = check_all(&c).await;
    assert!(
        tasks4 > tasks3,
        "real Consul: 4 workers plan more tasks ({tasks4}) than 3 ({tasks3})"
    );
    drain_scenario(&mut c).await;
    kill9_scenario(&mut c).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_outage_falls_back_to_dns_and_queries_keep_running() {
    let _lane = SERIAL.lock().await;
    let mut c = Cluster::start_with(3, Backend::DevWithDns).await;
    assert_eq!(c.client.snapshot().source, Source::Consul);
    assert_eq!(check_all(&c).await, 3);

    // Consul's health API answers 503 from now on; the sidecar fails over to DNS SRV.
    let ConsulKind::Dev(dev) = &mut c.consul else {
        unreachable!()
    };
    dev.command("outage").await;
    let mut rx = c.client.subscribe();
    let on_dns = tokio::time::timeout(GUARD, rx.wait_for(|s| s.source == Source::Dns))
        .await
        .expect("the sidecar fails over to DNS")
        .unwrap()
        .clone();
    assert_eq!(
        on_dns.urls.len(),
        3,
        "DNS lists the same workers: {:?}",
        on_dns.urls
    );
    let stream = QueryStream::start(&c);
    stream.wait_ok(6).await;
    assert_eq!(
        check_all(&c).await,
        3,
        "queries plan and run on the DNS list"
    );

    let ConsulKind::Dev(dev) = &mut c.consul else {
        unreachable!()
    };
    dev.command("recover").await;
    let back = tokio::time::timeout(GUARD, rx.wait_for(|s| s.source == Source::Consul))
        .await
        .expect("the sidecar goes back to Consul")
        .unwrap()
        .clone();
    assert_eq!(back.urls.len(), 3);
    stream.wait_ok(3).await;
    let log = stream.finish().await;
    let failures: Vec<_> = log
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().err())
        .collect();
    println!(
        "consul outage: {} queries during failover and back, {} failed",
        log.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    c.stop().await;
}
