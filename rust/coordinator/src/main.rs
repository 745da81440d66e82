//! `worker-resolver-coordinator`: a long-running Distributed DataFusion coordinator built on
//! `worker-resolver-client`. It reads the worker list from the sidecar, runs a query workload
//! against the cluster's `datafusion_distributed` workers (e.g. `consul-worker`), logs each
//! query (snapshot version, tasks per stage, the answer checked against single-node
//! DataFusion), serves its metrics (Prometheus text) and exports its spans as OTLP/HTTP JSON.
//! Flags: see `usage.txt` (`--help`).
#![deny(missing_docs)]

mod metrics;
mod otel;
mod otlp;
mod workload;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use worker_resolver_client::datafusion::plan_snapshot;
use worker_resolver_client::{ClientConfig, RoutingStrategy, SidecarWorkerResolver};
use worker_resolver_cluster_common::dataset;
use worker_resolver_cluster_common::flags::duration;

/// The configuration, from flags with environment fallbacks.
struct Args {
    sidecar: String,
    listen: SocketAddr,
    interval: Duration,
    data: PathBuf,
    wait: Duration,
    routing: RoutingStrategy,
    queries: u64,
}

fn routing(flag: &str, v: &str) -> Result<RoutingStrategy, String> {
    match v {
        "rendezvous" => Ok(RoutingStrategy::Rendezvous),
        "seeded" => Ok(RoutingStrategy::Seeded),
        "round-robin" => Ok(RoutingStrategy::RoundRobin),
        _ => Err(format!(
            "{flag}: {v:?} is not one of rendezvous, seeded, round-robin"
        )),
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut sidecar =
        env("WORKER_RESOLVER_SIDECAR").unwrap_or_else(|| "http://127.0.0.1:9464".into());
    let mut listen =
        env("WORKER_RESOLVER_COORDINATOR_LISTEN").unwrap_or_else(|| "127.0.0.1:9466".into());
    let mut interval = env("WORKER_RESOLVER_QUERY_INTERVAL").unwrap_or_else(|| "1s".into());
    let mut data = env("WORKER_RESOLVER_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("worker-resolver-coordinator-data"));
    let mut wait = env("WORKER_RESOLVER_WAIT").unwrap_or_else(|| "60s".into());
    let mut route = env("WORKER_RESOLVER_ROUTING").unwrap_or_else(|| "rendezvous".into());
    let mut queries = env("WORKER_RESOLVER_QUERIES").unwrap_or_else(|| "0".into());
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sidecar" => sidecar = value()?,
            "--listen" => listen = value()?,
            "--interval" => interval = value()?,
            "--data" => data = PathBuf::from(value()?),
            "--wait" => wait = value()?,
            "--routing" => route = value()?,
            "--queries" => queries = value()?,
            "--help" | "-h" => {
                println!("{}", include_str!("usage.txt"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    Ok(Args {
        sidecar,
        listen: listen
            .parse()
            .map_err(|e| format!("--listen {listen:?}: {e} (expected HOST:PORT)"))?,
        interval: duration("--interval", &interval)?,
        data,
        wait: duration("--wait", &wait)?,
        routing: routing("--routing", &route)?,
        queries: queries
            .parse()
            .map_err(|_| format!("--queries {queries:?}: not a number"))?,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("worker-resolver-coordinator: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("worker-resolver-coordinator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exporter = otel::init("worker-resolver-coordinator");
    let result = runtime.block_on(async move {
        let stop = CancellationToken::new();
        let exporting = exporter.map(|e| tokio::spawn(e.run(stop.clone())));
        let result = run(args, stop.clone()).await;
        stop.cancel();
        if let Some(task) = exporting {
            // The exporter gives the last spans at most 2 s; this bound is a second guard.
            let _ = tokio::time::timeout(Duration::from_secs(4), task).await;
        }
        result
    });
    // Whatever is still blocked (a hung query, a poll) is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker-resolver-coordinator: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, stop: CancellationToken) -> Result<(), String> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = sigterm.recv() => "SIGTERM",
                _ = sigint.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "stopping");
            stop.cancel();
        });
    }

    let config = ClientConfig::builder(args.sidecar.clone())
        .wait(args.wait)
        // The poll span's ids (as the OTLP layer assigned them) become the request's
        // traceparent: the sidecar's span is the exported poll span's child.
        .traceparent(otlp::current_traceparent)
        .build()
        .map_err(|e| e.to_string())?;
    let resolver = SidecarWorkerResolver::start(config).map_err(|e| e.to_string())?;
    // The metrics server reads without keeping the resolver alive.
    let reader = resolver.reader();

    let metrics = Metrics::new();
    let listener = metrics::bind(args.listen).await?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(metrics::serve(
        listener,
        Arc::clone(&metrics),
        reader.clone(),
        stop.clone(),
    ));
    tracing::info!(sidecar = %args.sidecar, listen = %bound, data = %args.data.display(), interval_ms = args.interval.as_millis() as u64, "coordinator started");

    let setup = async {
        dataset::ensure(&args.data).await?;
        let ctx = workload::distributed_session(&resolver, args.routing, &args.data).await?;
        let expected = workload::reference_answers(&args.data).await?;
        Ok::<_, datafusion::error::DataFusionError>((ctx, expected))
    };
    let (ctx, expected) = tokio::select! {
        () = stop.cancelled() => { resolver.close().await; return Ok(()); }
        r = setup => r.map_err(|e| format!("preparing the workload in {}: {e}", args.data.display()))?,
    };

    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ran: u64 = 0;
    while args.queries == 0 || ran < args.queries {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if !resolver.snapshot().is_known() {
            let s = resolver.status();
            tracing::info!(failures = s.consecutive_failures, last_error = ?s.last_error.as_ref().map(|e| e.to_string()), "waiting for the sidecar's first worker list");
            continue;
        }
        let (name, sql) = workload::QUERIES[(ran as usize) % workload::QUERIES.len()];
        let want = &expected[(ran as usize) % workload::QUERIES.len()];
        ran += 1;
        let span = tracing::info_span!(
            "coordinator.query",
            query = name,
            snapshot_version = tracing::field::Empty
        );
        tokio::select! {
            () = stop.cancelled() => break,
            () = run_query(&ctx, name, sql, want, &metrics).instrument(span) => {}
        }
    }
    tracing::info!(queries = ran, "query loop ended");
    stop.cancel();
    resolver.close().await;
    let _ = server.await;
    Ok(())
}

/// Plans and runs one query (the session pins it to one snapshot), checks the answer, logs
/// and counts it.
async fn run_query(
    ctx: &SessionContext,
    name: &'static str,
    sql: &str,
    want: &str,
    metrics: &Metrics,
) {
    let started = Instant::now();
    let mut planned = None;
    let result = async {
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        planned = plan_snapshot(&plan);
        if let Some(s) = &planned {
            tracing::Span::current().record("snapshot_version", s.version);
        }
        let batches = datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx()).await?;
        Ok::<_, datafusion::error::DataFusionError>((
            plan,
            pretty_format_batches(&batches)?.to_string(),
        ))
    }
    .await;
    let took = started.elapsed();
    let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    let (version, workers) = planned
        .as_ref()
        .map_or((0, 0), |s| (s.version, s.urls.len()));
    match result {
        Ok((plan, got)) => {
            let stages = dataset::tasks_per_stage(&plan);
            metrics.tasks(&stages);
            let tasks: Vec<String> = stages.iter().map(|(s, t)| format!("{s}:{t}")).collect();
            let tasks = tasks.join(" ");
            let check = if got == want { "ok" } else { "wrong" };
            metrics.query(name, check, took);
            if check == "ok" {
                tracing::info!(query = name, snapshot_version = version, workers, tasks_per_stage = %tasks, check, ms, "query");
            } else {
                tracing::warn!(query = name, snapshot_version = version, workers, tasks_per_stage = %tasks, check, ms, "query answered differently from single-node DataFusion");
            }
        }
        Err(e) => {
            metrics.query(name, "error", took);
            tracing::warn!(query = name, snapshot_version = version, workers, check = "error", error = %e, ms, "query failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_values_name_the_flag() {
        let a = parse_args(
            [
                "--sidecar",
                "http://127.0.0.1:1",
                "--listen",
                "127.0.0.1:0",
                "--interval",
                "250ms",
                "--routing",
                "seeded",
                "--queries",
                "3",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(a.sidecar, "http://127.0.0.1:1");
        assert_eq!(a.interval, Duration::from_millis(250));
        assert_eq!(a.routing, RoutingStrategy::Seeded);
        assert_eq!(a.queries, 3);
        let err = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string())).err().unwrap();
        assert!(err(&["--interval", "5"]).contains("--interval"));
        assert!(err(&["--listen", "nowhere"]).contains("--listen"));
        assert!(err(&["--routing", "random"]).contains("--routing"));
        assert!(err(&["--bogus"]).contains("--bogus"));
    }
}
