//! `consul-worker`: a real `datafusion_distributed::Worker` (gRPC, on a loopback port) that
//! registers itself in Consul with an HTTP health check and drains on SIGTERM:
//! maintenance on → wait (bounded) until no task is in flight → deregister → exit 0.
//!
//! ```text
//! consul-worker [--listen 127.0.0.1:0] [--health-listen 127.0.0.1:0] [--consul URL]
//!               [--service datafusion-worker] [--id ID] [--check-interval 1s]
//!               [--drain-grace 2s] [--drain-timeout 30s] [--advertise HOST]
//! ```
//! In a container (docker-compose.yml) it listens on every interface and registers the name
//! other containers reach it by: `--listen 0.0.0.0:50051 --health-listen 0.0.0.0:8081
//! --advertise worker-1`. Without `--advertise`, only loopback addresses are accepted.
//! Prints one JSON line on stdout once registered: `{"event":"registered","id",..,"url",..}`,
//! and `{"event":"drained",..}` before a graceful exit. Logs (tracing) go to stderr.
#![deny(missing_docs)]

mod consul;
mod health;
mod inflight;

use consul::{Consul, Registration};
use datafusion_distributed::Worker;
use inflight::{InFlight, InFlightLayer};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use worker_resolver_cluster_common::flags::duration;

struct Args {
    listen: SocketAddr,
    health_listen: SocketAddr,
    consul: String,
    service: String,
    id: Option<String>,
    check_interval: Duration,
    drain_grace: Duration,
    drain_timeout: Duration,
    /// The host registered in Consul (service address and check URL); None: the listen IPs.
    advertise: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:0".parse().unwrap(),
        health_listen: "127.0.0.1:0".parse().unwrap(),
        consul: std::env::var("CONSUL_HTTP_ADDR")
            .unwrap_or_else(|_| "http://127.0.0.1:8500".into()),
        service: "datafusion-worker".into(),
        id: None,
        check_interval: Duration::from_secs(1),
        drain_grace: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(30),
        advertise: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--health-listen" => {
                a.health_listen = value()?
                    .parse()
                    .map_err(|e| format!("--health-listen: {e}"))?
            }
            "--consul" => a.consul = value()?,
            "--service" => a.service = value()?,
            "--id" => a.id = Some(value()?),
            "--check-interval" => a.check_interval = duration(&flag, &value()?)?,
            "--drain-grace" => a.drain_grace = duration(&flag, &value()?)?,
            "--drain-timeout" => a.drain_timeout = duration(&flag, &value()?)?,
            "--advertise" => a.advertise = Some(value()?).filter(|h| !h.is_empty()),
            "--help" | "-h" => {
                println!("{}", include_str!("usage.txt"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    if a.advertise.is_none()
        && (!a.listen.ip().is_loopback() || !a.health_listen.ip().is_loopback())
    {
        return Err(
            "--listen and --health-listen must be loopback addresses unless --advertise names the host others reach"
                .into(),
        );
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,h2=warn,tonic=warn".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("consul-worker: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consul-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let grpc = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let grpc_addr = grpc.local_addr().map_err(|e| e.to_string())?;
    let health = TcpListener::bind(args.health_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.health_listen))?;
    let health_addr = health.local_addr().map_err(|e| e.to_string())?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", args.service, grpc_addr.port()));

    let in_flight = Arc::new(InFlight::default());
    let draining = Arc::new(AtomicBool::new(false));
    let stop_health = CancellationToken::new();
    let stop_grpc = CancellationToken::new();
    let health_task = tokio::spawn(health::serve(
        health,
        Arc::clone(&draining),
        Arc::clone(&in_flight),
        stop_health.clone(),
    ));
    let shutdown = stop_grpc.clone();
    let server = tonic::transport::Server::builder()
        .layer(InFlightLayer(Arc::clone(&in_flight)))
        .add_service(Worker::default().into_worker_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), shutdown.cancelled_owned());
    let server_task = tokio::spawn(server);

    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;

    let consul = Consul::new(
        &args.consul,
        std::env::var("CONSUL_HTTP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    );
    let reg = Registration {
        service: args.service.clone(),
        id: id.clone(),
        address: args
            .advertise
            .clone()
            .unwrap_or_else(|| grpc_addr.ip().to_string()),
        port: grpc_addr.port(),
        check_url: match &args.advertise {
            Some(host) => format!("http://{host}:{}/health", health_addr.port()),
            None => format!("http://{health_addr}/health"),
        },
        check_interval: args.check_interval,
        check_timeout: args.check_interval.min(Duration::from_secs(1)),
    };
    consul.register(&reg).await.map_err(|e| e.to_string())?;
    tracing::info!(id = %id, grpc = %grpc_addr, consul = %args.consul, service = %args.service, health = %health_addr, "registered in consul");
    println!(
        "{}",
        serde_json::json!({"event": "registered", "id": id, "url": format!("http://{}:{}/", reg.address, grpc_addr.port()),
                           "grpc_port": grpc_addr.port(), "health_port": health_addr.port()})
    );

    let signal_name = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };

    // Drain. 1. Out of rotation: maintenance on (Consul drops the instance from healthy answers
    //    at once) and the health endpoint answers 503 (in case maintenance is not honoured).
    tracing::info!(
        signal = signal_name,
        in_flight = in_flight.current(),
        "draining"
    );
    draining.store(true, Ordering::Release);
    if let Err(e) = consul.maintenance(&id, true, "draining on SIGTERM").await {
        tracing::warn!(error = %e, "could not set maintenance; relying on the failing health check");
    }
    // 2. Keep serving while coordinators learn it (Consul → sidecar → client) and while queries
    //    planned just before start their tasks; then wait until no task is in flight, bounded.
    tokio::time::sleep(args.drain_grace).await;
    let drained = tokio::time::timeout(args.drain_timeout, in_flight.idle())
        .await
        .is_ok();
    if drained {
        tracing::info!(tasks_served = in_flight.total(), "no task in flight");
    } else {
        tracing::warn!(
            in_flight = in_flight.current(),
            timeout_ms = args.drain_timeout.as_millis() as u64,
            "drain timeout; stopping with tasks in flight"
        );
    }
    // 3. Deregister, 4. stop serving, exit.
    if let Err(e) = consul.deregister(&id).await {
        tracing::warn!(error = %e, "could not deregister");
    }
    stop_grpc.cancel();
    stop_health.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server_task).await;
    let _ = health_task.await;
    println!(
        "{}",
        serde_json::json!({"event": "drained", "id": id, "clean": drained, "tasks_served": in_flight.total()})
    );
    tracing::info!(clean = drained, "stopped");
    Ok(())
}
