//! The coordinator binary against a real loopback cluster: the project's Consul dev server, the
//! real `worker-resolver serve` sidecar and two real `consul-worker` processes. It runs four
//! queries, each planned and routed against one snapshot, and logs each one checked against
//! single-node DataFusion.

use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use worker_resolver_test_support::cluster as kit;
use worker_resolver_test_support::{DevConsul, SidecarProcess};

const GUARD: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_its_workload_against_real_workers() {
    let consul = DevConsul::start().await;
    let sidecar =
        SidecarProcess::start(&consul.http_addr, kit::SERVICE, 0, &["--wait", "30s"]).await;
    let bin = kit::worker_binary();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let command = kit::worker_command(&bin, &consul.http_addr, Duration::from_millis(500));
        workers.push(kit::spawn_worker(command).await.0);
    }
    let data = std::env::temp_dir().join(format!("wr-coordinator-e2e-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_worker-resolver-coordinator"))
        .args(["--sidecar", &sidecar.url, "--listen", "127.0.0.1:0"])
        .args(["--interval", "100ms", "--queries", "4", "--wait", "30s"])
        .arg("--data")
        .arg(&data)
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(GUARD, run)
        .await
        .expect("four queries within the guard")
        .unwrap();
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{logs}");
    let queries: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("tasks_per_stage="))
        .collect();
    assert_eq!(queries.len(), 4, "one line per query:\n{logs}");
    for line in &queries {
        assert!(
            line.contains("check=\"ok\"") || line.contains("check=ok"),
            "every answer equals single-node DataFusion's: {line}"
        );
        assert!(line.contains("snapshot_version="), "{line}");
        assert!(
            !line.contains("snapshot_version=0 "),
            "a pinned snapshot: {line}"
        );
    }
    drop(workers);
    drop(sidecar);
    consul.stop().await;
    let _ = std::fs::remove_dir_all(&data);
}
