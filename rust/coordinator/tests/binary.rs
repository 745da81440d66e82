//! The coordinator binary as an operator runs it: flags, `/healthz` and `/metrics` on its port,
//! and SIGTERM → exit 0 within a few seconds, with an OTLP collector that does not exist.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use worker_resolver_test_support::http;

const GUARD: Duration = Duration::from_secs(60);

fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_and_metrics_and_stops_cleanly_on_sigterm() {
    let data = std::env::temp_dir().join(format!("wr-coordinator-test-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker-resolver-coordinator"))
        .args(["--sidecar", &format!("http://127.0.0.1:{}", dead_port())])
        .args(["--listen", "127.0.0.1:0", "--interval", "200ms"])
        .arg("--data")
        .arg(&data)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", dead_port()),
        )
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the coordinator");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The log line "coordinator started" names the bound address.
    let listen = tokio::time::timeout(GUARD, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("coordinator started") {
                let at = line.find("listen=").expect("listen field") + "listen=".len();
                return line[at..].split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("the coordinator exited before it started");
    })
    .await
    .expect("the coordinator starts");
    let rest = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push(l);
        }
        all
    });

    let (status, body) = http("GET", &format!("http://{listen}/healthz"), None)
        .await
        .unwrap();
    assert_eq!(status, 503, "no worker list yet: {body}");
    assert!(body.contains("\"ready\":false"), "{body}");
    let (status, metrics) = http("GET", &format!("http://{listen}/metrics"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    for name in [
        "worker_resolver_client_connected 0",
        "worker_resolver_client_snapshot_version 0",
        "# TYPE worker_resolver_coordinator_queries_total counter",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(GUARD, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    let logs = rest.await.unwrap().join("\n");
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}; logs:\n{logs}");
    assert!(logs.contains("stopping"), "{logs}");
    let _ = std::fs::remove_dir_all(&data);
}
